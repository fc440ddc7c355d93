"""Fixtures of the gradviz tests; helpers live in ``gradviz_helpers`` (on pytest's ``pythonpath``, root pyproject)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from gradviz_helpers import RecordingTrainer, TokenTask, tiny_bert

from trainer_callbacks.testing import build_tiny_trainer


@pytest.fixture
def run_trainer(tmp_path: Any) -> Callable[..., RecordingTrainer]:
    """``run_trainer(callbacks, model=None, n=32, **training_args)``: a finished tiny run."""

    def run(
        callbacks: list[Any], model: Any = None, n: int = 32, train: bool = True, **overrides: Any
    ) -> RecordingTrainer:
        options: dict[str, Any] = dict(
            output_dir=tmp_path / "out",
            per_device_train_batch_size=4,
            max_steps=4,
            learning_rate=1e-3,
            dataloader_num_workers=0,
        )
        options.update(overrides)
        trainer = build_tiny_trainer(
            callbacks=callbacks,
            model=model if model is not None else tiny_bert(),
            train_dataset=TokenTask(n),
            trainer_class=RecordingTrainer,
            **options,
        )
        if train:
            trainer.train()
        return trainer  # type: ignore[return-value]

    return run
