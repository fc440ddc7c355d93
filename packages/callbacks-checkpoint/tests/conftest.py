from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


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
    from trainer_callbacks.testing import build_tiny_trainer

    monkeypatch.setenv("WANDB_DISABLED", "true")
    defaults: dict[str, Any] = dict(
        save_strategy="steps",
        save_steps=1,
        eval_strategy="steps",
        eval_steps=1,
        per_device_eval_batch_size=16,
    )

    def build(callbacks: list[Any], compute_metrics: Any = None, **overrides: Any) -> Any:
        options = {"output_dir": tmp_path / "out", **defaults, **overrides}
        return build_tiny_trainer(callbacks=callbacks, compute_metrics=compute_metrics, **options)

    return build


@pytest.fixture
def write_ckpt() -> Any:
    """:func:`write_checkpoint`, for tests (test modules cannot import conftest)."""
    return write_checkpoint


@pytest.fixture
def listdir() -> Any:
    return lambda path: sorted(os.listdir(path))
