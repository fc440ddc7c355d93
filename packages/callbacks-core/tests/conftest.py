from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
def tiny_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Build a real ``Trainer`` on a tiny random-init BERT and generated data: ``tiny_trainer(callbacks, **args)``."""
    from trainer_callbacks.testing import build_tiny_trainer, local_mlflow_env

    for name, value in local_mlflow_env(tmp_path, "core-tests").items():
        monkeypatch.setenv(name, value)

    def build(callbacks: list[Any], **overrides: Any) -> Any:
        options = {"output_dir": tmp_path / "out", "logging_steps": 2, **overrides}
        return build_tiny_trainer(callbacks=callbacks, **options)

    return build
