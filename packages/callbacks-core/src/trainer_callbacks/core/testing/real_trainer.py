"""Running the real ``transformers.Trainer`` on :class:`TinyModel`, for differential tests.

:func:`run_trainer` trains :class:`~.tiny_model.TinyModel` on a generated regression set
with the given ``TrainingArguments`` and callbacks, on CPU, in milliseconds per step. Use
it to check a simulated run against the real thing (as this package's own tests do) or
to test a callback end to end.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.utils.data import Dataset

from trainer_callbacks.core.testing.tiny_model import TinyModel


class RegressionSet(Dataset):  # type: ignore[type-arg]
    """``n`` examples ``{"x": 4 floats, "labels": their sum}`` (deterministic for a seed)."""

    def __init__(self, n: int, seed: int = 0, features: int = 4) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, features, generator=generator)
        self.y = self.x.sum(-1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def build_trainer(
    args: Any,
    callbacks: Iterable[Any] = (),
    *,
    train_dataset_len: int = 8,
    eval_dataset_len: int | None = None,
    model: torch.nn.Module | None = None,
    train_dataset: Any = None,
    eval_dataset: Any = None,
    compute_metrics: Any = None,
    trainer_class: type[Any] | None = None,
) -> Any:
    """A real ``Trainer`` on :class:`TinyModel` (``eval_dataset_len`` defaults to one eval batch, like ``simulate``).

    ``model``, ``train_dataset`` and ``eval_dataset`` replace the defaults (the ``*_len`` arguments then
    do not apply); ``trainer_class`` builds a ``Trainer`` subclass instead.
    """
    from transformers import Trainer

    if train_dataset is None:
        train_dataset = RegressionSet(train_dataset_len, seed=0)
    if eval_dataset is None:
        eval_len = eval_dataset_len if eval_dataset_len is not None else args.per_device_eval_batch_size
        eval_dataset = RegressionSet(eval_len, seed=1)
    return (trainer_class or Trainer)(
        model=model if model is not None else TinyModel(),
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        compute_metrics=compute_metrics,
        callbacks=list(callbacks),
    )


def run_trainer(
    args: Any,
    callbacks: Iterable[Any] = (),
    *,
    train_dataset_len: int = 8,
    eval_dataset_len: int | None = None,
    resume_from_checkpoint: str | bool | None = None,
) -> Any:
    """Build a real ``Trainer`` (see :func:`build_trainer`), train it, and return it."""
    trainer = build_trainer(args, callbacks, train_dataset_len=train_dataset_len, eval_dataset_len=eval_dataset_len)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer
