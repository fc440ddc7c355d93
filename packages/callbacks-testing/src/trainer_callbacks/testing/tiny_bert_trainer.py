"""A tiny random-init BERT, a generated token task and a real ``Trainer`` on them.

For end-to-end callback tests that want a transformers model rather than
:class:`~.tiny_model.TinyModel`: a run of a few steps takes well under a second on one
CPU thread, needs no download and is deterministic for a seed.

* :func:`tiny_bert_config` / :func:`tiny_bert`: a 2-layer, 16-wide
  ``BertForSequenceClassification`` with random weights;
* :class:`TokenTask`: ``n`` generated sequences of token ids with binary labels;
* :func:`build_tiny_trainer`: a ``Trainer`` on both, with CPU-only, tracker-free,
  checkpoint-free ``TrainingArguments`` defaults that every keyword overrides;
* :func:`local_mlflow_env`: the environment that points MLflow at a local file store.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch.utils.data import Dataset

from trainer_callbacks.testing.real_trainer import build_trainer

if TYPE_CHECKING:
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

TINY_BERT_CONFIG: dict[str, Any] = {
    "vocab_size": 64,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 16,
    "num_labels": 2,
}
"""The ``BertConfig`` fields :func:`tiny_bert_config` sets (the rest are BERT's defaults)."""

TINY_TRAINING_ARGS: dict[str, Any] = {
    "max_steps": 6,
    "per_device_train_batch_size": 8,
    "logging_steps": 1,
    "report_to": "none",
    "save_strategy": "no",
    "use_cpu": True,
    "disable_tqdm": True,
}
"""The ``TrainingArguments`` fields :func:`tiny_training_args` sets (the rest are the Trainer's defaults)."""


def tiny_bert_config(**overrides: Any) -> BertConfig:
    """``BertConfig(**TINY_BERT_CONFIG)`` with ``overrides`` applied (any ``BertConfig`` field)."""
    from transformers import BertConfig

    return BertConfig(**{**TINY_BERT_CONFIG, **overrides})


def tiny_bert(seed: int = 0, **config_overrides: Any) -> BertForSequenceClassification:
    """A random-init ``BertForSequenceClassification`` on :func:`tiny_bert_config`.

    Seeds torch's global generator with ``seed`` first (as ``transformers.set_seed`` would), so the
    same seed and config give the same weights.
    """
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config(**config_overrides))


class TokenTask(Dataset):  # type: ignore[type-arg]
    """``n`` examples ``{"input_ids": length ids, "labels": 0 or 1}``, deterministic for a seed.

    Args:
        n (int): number of examples.
        seed (int): seed of the private generator (torch's global one is not touched).
        vocab (int): ids are drawn uniformly from ``[min_id, vocab)``; keep it <= the model's ``vocab_size``.
        length (int): sequence length; keep it <= the model's ``max_position_embeddings``.
        labels (str): ``"first_token"``: 1 when the first id is >= ``vocab // 2`` (learnable, so losses
            fall); ``"random"``: a fair coin per example, drawn after the ids (noise).
        min_id (int): the smallest id drawn (1 keeps BERT's ``[PAD]`` id 0 out).
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        vocab: int = 64,
        length: int = 8,
        *,
        labels: Literal["first_token", "random"] = "first_token",
        min_id: int = 0,
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randint(min_id, vocab, (n, length), generator=generator)
        if labels == "first_token":
            self.y = (self.x[:, 0] >= vocab // 2).long()
        elif labels == "random":
            self.y = torch.randint(0, 2, (n,), generator=generator)
        else:
            raise ValueError(f"TokenTask(labels={labels!r}): use 'first_token' or 'random'")

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "labels": self.y[i]}


def tiny_training_args(output_dir: str | Path, **overrides: Any) -> TrainingArguments:
    """``TrainingArguments(output_dir, **TINY_TRAINING_ARGS)`` with ``overrides`` applied."""
    from transformers import TrainingArguments

    return TrainingArguments(**{"output_dir": str(output_dir), **TINY_TRAINING_ARGS, **overrides})


def build_tiny_trainer(
    output_dir: str | Path,
    callbacks: Iterable[Any] = (),
    *,
    compute_metrics: Any = None,
    eval_dataset: Any = None,
    train_dataset: Any = None,
    model: torch.nn.Module | None = None,
    trainer_class: type[Trainer] | None = None,
    **training_args_overrides: Any,
) -> Trainer:
    """A real ``Trainer`` (not yet trained) on a tiny BERT and generated data.

    ``model`` defaults to :func:`tiny_bert` (seed 0), ``train_dataset`` to ``TokenTask(64, seed=0)``,
    ``eval_dataset`` to ``TokenTask(16, seed=1)`` (a dict of datasets works as with the Trainer), and
    the arguments to :func:`tiny_training_args` with ``training_args_overrides``. ``trainer_class``
    builds a ``Trainer`` subclass instead.
    """
    model = model if model is not None else tiny_bert()
    args = tiny_training_args(output_dir, **training_args_overrides)
    return build_trainer(
        args,
        callbacks,
        model=model,
        train_dataset=train_dataset if train_dataset is not None else TokenTask(64, seed=0),
        eval_dataset=eval_dataset if eval_dataset is not None else TokenTask(16, seed=1),
        compute_metrics=compute_metrics,
        trainer_class=trainer_class,
    )


def local_mlflow_env(root: str | Path, experiment: str = "tests") -> dict[str, str]:
    """Environment variables that send the Trainer's MLflow integration to ``<root>/mlruns``.

    Set them with ``monkeypatch.setenv`` (MLflow 3 refuses a file store without
    ``MLFLOW_ALLOW_FILE_STORE``).
    """
    return {
        "MLFLOW_TRACKING_URI": (Path(root) / "mlruns").as_uri(),
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "MLFLOW_EXPERIMENT_NAME": experiment,
    }
