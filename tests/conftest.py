"""Shared fixtures of the cross-package tests: a clean environment for subprocesses, plugin presence."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def installed_plugins() -> set[str]:
    """Entry-point names in the ``trainer_callbacks`` group (read from metadata, nothing imported)."""
    return {ep.name for ep in metadata.entry_points(group="trainer_callbacks")}


@pytest.fixture(scope="session")
def require_plugins() -> Callable[..., None]:
    """``require_plugins("earlystop", "lr")`` skips the test unless those plugins are installed."""

    def require(*names: str) -> None:
        missing = sorted(set(names) - installed_plugins())
        if missing:
            pytest.skip(f"plugin(s) not installed: {', '.join(missing)}")

    return require


def clean_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without the switches and tracker settings a test must not inherit."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_", "TRAINER_CALLBACKS_", "TENSORBOARD_", "HF_MLFLOW", "WANDB_"))
    }
    env.update({"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"})
    env.update(extra)
    return env


@pytest.fixture(name="clean_env", scope="session")
def clean_env_fixture() -> Callable[..., dict[str, str]]:
    return clean_env


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``trainer-callbacks ARGS`` in a subprocess (the installed CLI module) and capture its output."""

    def run(
        args: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 480
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trainer_callbacks.core.cli", *args],
            cwd=cwd,
            env=env or clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
