"""Running the real ``transformers.Trainer`` on :class:`TinyModel`, for differential tests.

:func:`run_trainer` trains :class:`~.tiny_model.TinyModel` on a generated regression set
with the given ``TrainingArguments`` and callbacks, on CPU, in milliseconds per step. Use
it to check a simulated run against the real thing (as this package's own tests do) or
to test a callback end to end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset

from trainer_callbacks.testing.checkpoints import PREFIX, folder_mtime_ns, stamp_after_save
from trainer_callbacks.testing.tiny_model import TinyModel


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


@contextlib.contextmanager
def checkpoint_saves_a_second_apart() -> Iterator[None]:
    """Within this block, real ``Trainer`` saves get the simulator's clock for checkpoint folders.

    ``Trainer._save_checkpoint`` rotates checkpoints by folder modification time, but falls
    back to step order when all of them were modified within one second, which is what a
    tiny model does and a real one does not (see :mod:`.checkpoints`). Inside this block each
    save that changes its folder's mtime moves it one second past the other checkpoint folders
    just before the Trainer rotates (:func:`~.checkpoints.stamp_after_save`, what the simulator
    does on disk), so rotation sees what it would see with saves a second or more apart, and
    the outcome no longer depends on how fast the machine is. Nothing else changes.
    """
    import transformers.trainer as trainer_module

    original_save = trainer_module.Trainer._save_checkpoint
    # transformers 5.2+: the module-level function trainer_utils.rotate_checkpoints, imported into
    # transformers.trainer; transformers 4.x: the method Trainer._rotate_checkpoints.
    module_level = hasattr(trainer_module, "rotate_checkpoints")
    owner: Any = trainer_module if module_level else trainer_module.Trainer
    name = "rotate_checkpoints" if module_level else "_rotate_checkpoints"
    original_rotate = getattr(owner, name)

    def _save_checkpoint(self: Any, model: Any, trial: Any) -> None:
        folder = os.path.join(self._get_output_dir(trial), f"{PREFIX}-{self.state.global_step}")
        before = folder_mtime_ns(folder)

        def rotate(*args: Any, **kwargs: Any) -> None:  # on 4.x set on the class: args[0] is the Trainer
            stamp_after_save(folder, before)
            original_rotate(*args, **kwargs)

        setattr(owner, name, rotate)
        try:
            original_save(self, model, trial)
        finally:
            setattr(owner, name, original_rotate)

    trainer_module.Trainer._save_checkpoint = _save_checkpoint  # type: ignore[method-assign]
    try:
        yield
    finally:
        trainer_module.Trainer._save_checkpoint = original_save  # type: ignore[method-assign]
