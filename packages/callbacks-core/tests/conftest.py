from __future__ import annotations

from collections.abc import Iterator

import pytest

from trainer_callbacks.core import plugins


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A registry rebuilt from scratch for the test, and again afterwards."""
    for var in (plugins.ENV_ALLOW, plugins.ENV_BLOCK, plugins.ENV_DISABLE_AUTOLOAD):
        monkeypatch.delenv(var, raising=False)
    plugins.reload()
    yield
    plugins.reload()


@pytest.fixture
def tiny_trainer(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """Build a real ``Trainer`` on a tiny random-init BERT and generated data: ``tiny_trainer(callbacks, **args)``."""
    import torch
    from torch.utils.data import Dataset
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    class TokenTask(Dataset):  # type: ignore[type-arg]
        def __init__(self, n: int, seed: int):
            g = torch.Generator().manual_seed(seed)
            self.x = torch.randint(0, 64, (n, 8), generator=g)
            self.y = (self.x[:, 0] >= 32).long()

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int) -> dict:  # type: ignore[type-arg]
            return {"input_ids": self.x[i], "labels": self.y[i]}

    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "core-tests")

    def build(callbacks, **overrides):  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=16, num_labels=2,
        )
        options = dict(
            output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=8,
            logging_steps=2, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
        )
        options.update(overrides)
        return Trainer(
            model=BertForSequenceClassification(config),
            args=TrainingArguments(**options),
            train_dataset=TokenTask(64, 0),
            eval_dataset=TokenTask(16, 1),
            callbacks=callbacks,
        )

    return build
