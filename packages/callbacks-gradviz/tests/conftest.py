"""Fixtures of the gradviz tests; helpers live in ``gradviz_helpers`` (importable: this folder is put on sys.path)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gradviz_helpers import RecordingTrainer, TokenTask, tiny_bert
from transformers import TrainingArguments


@pytest.fixture
def run_trainer(tmp_path: Any) -> Callable[..., RecordingTrainer]:
    """``run_trainer(callbacks, model=None, n=32, **training_args)``: a finished tiny run."""

    def run(callbacks: list[Any], model: Any = None, n: int = 32, train: bool = True,
            **overrides: Any) -> RecordingTrainer:
        defaults: dict[str, Any] = dict(
            output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=4, logging_steps=1,
            use_cpu=True, report_to="none", save_strategy="no", learning_rate=1e-3, disable_tqdm=True,
            dataloader_num_workers=0,
        )
        defaults.update(overrides)
        trainer = RecordingTrainer(model=model if model is not None else tiny_bert(),
                                   args=TrainingArguments(**defaults), train_dataset=TokenTask(n), callbacks=callbacks)
        if train:
            trainer.train()
        return trainer

    return run


