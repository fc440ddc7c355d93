from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def tiny_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Build a real ``Trainer`` on a tiny random-init BERT and generated data: ``tiny_trainer(callbacks, **args)``."""
    from trainer_callbacks.testing import build_tiny_trainer, local_mlflow_env

    for name, value in local_mlflow_env(tmp_path, "core-tests").items():
        monkeypatch.setenv(name, value)

    def build(callbacks: list[Any], **overrides: Any) -> Any:
        options = {"output_dir": tmp_path / "out", "logging_steps": 2, **overrides}
        return build_tiny_trainer(callbacks=callbacks, **options)

    return build
