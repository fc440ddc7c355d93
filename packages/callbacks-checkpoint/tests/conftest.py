from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

# test modules import the shared reference model (checkpoint_reference.py) from this folder
sys.path.insert(0, str(Path(__file__).parent))


def write_checkpoint(
    run_dir: Path,
    step: int,
    *,
    metrics: dict[str, float] | None = None,
    complete: bool = True,
    payload: bytes = b"w" * 64,
    log_history: list[dict[str, Any]] | None = None,
) -> Path:
    """A folder shaped like the Trainer's ``checkpoint-<step>``: weights, optimizer, ``trainer_state.json`` last."""
    path = run_dir / f"checkpoint-{step}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.safetensors").write_bytes(payload)
    (path / "optimizer.pt").write_bytes(payload)
    if complete:
        history = list(log_history or [])
        if metrics is not None:
            history.append({**metrics, "step": step})
        state = {"global_step": step, "log_history": history, "best_model_checkpoint": None}
        (path / "trainer_state.json").write_text(json.dumps(state))
    return path


@pytest.fixture
def training_args(tmp_path: Path) -> Any:
    """``make(**overrides)``: real ``TrainingArguments`` (built once, copied: construction costs ~70 ms)."""
    import copy

    from transformers import TrainingArguments

    base = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        report_to="none",
        save_strategy="steps",
        eval_strategy="steps",
        metric_for_best_model="loss",
        disable_tqdm=True,
    )

    def make(**overrides: Any) -> Any:
        args = copy.copy(base)
        for key, value in overrides.items():
            setattr(args, key, value)
        return args

    return make


@pytest.fixture
def tiny_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``build(callbacks, compute_metrics=None, **args)``: a real Trainer on a tiny random BERT and generated data."""
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

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"input_ids": self.x[i], "labels": self.y[i]}

    monkeypatch.setenv("WANDB_DISABLED", "true")

    def build(callbacks: list[Any], compute_metrics: Any = None, **overrides: Any) -> Any:
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=64,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
            num_labels=2,
        )
        options: dict[str, Any] = dict(
            output_dir=str(tmp_path / "out"),
            max_steps=6,
            per_device_train_batch_size=8,
            logging_steps=1,
            report_to="none",
            save_strategy="steps",
            save_steps=1,
            eval_strategy="steps",
            eval_steps=1,
            use_cpu=True,
            disable_tqdm=True,
            per_device_eval_batch_size=16,
        )
        options.update(overrides)
        return Trainer(
            model=BertForSequenceClassification(config),
            args=TrainingArguments(**options),
            train_dataset=TokenTask(64, 0),
            eval_dataset=TokenTask(16, 1),
            compute_metrics=compute_metrics,
            callbacks=callbacks,
        )

    return build


@pytest.fixture
def write_ckpt() -> Any:
    """:func:`write_checkpoint`, for tests (test modules cannot import conftest)."""
    return write_checkpoint


@pytest.fixture
def listdir() -> Any:
    return lambda path: sorted(os.listdir(path))
