"""Which directory the Trainer writes this run's checkpoints to.

It is ``args.output_dir``, except under ``Trainer.hyperparameter_search`` where each trial
writes to ``<output_dir>/<run name>`` (``Trainer._get_output_dir(trial)``: ``hp_name(trial)``
or ``run-<trial number / id>``). A callback is not handed the Trainer nor the trial, so the
Trainer method that dispatched the current event is found on the call stack and its own
``_get_output_dir`` is asked with the same ``trial`` it passes to ``_save_checkpoint``.
Without a Trainer on the stack (a simulator, a custom loop), ``state.trial_name`` (set when
``hp_name`` is given) is used, else ``args.output_dir``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_MISSING = object()


def _trainer_frame(max_depth: int = 16) -> tuple[Any, dict[str, Any]]:
    """The ``Trainer`` whose method dispatched the current event, and that method's locals."""
    try:
        from transformers import Trainer
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None, {}
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            break
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer):
            return candidate, dict(frame.f_locals)
        frame = frame.f_back  # type: ignore[assignment]
    return None, {}


def find_run_dir(args: Any, state: Any) -> str:
    """The folder holding this run's ``checkpoint-N`` folders (the trial folder under hyperparameter search)."""
    trainer, local_vars = _trainer_frame()
    if trainer is not None and hasattr(trainer, "_get_output_dir"):
        trial = local_vars.get("trial", _MISSING)
        if trial is _MISSING:
            trial = getattr(trainer, "_trial", None)
        try:
            return str(trainer._get_output_dir(trial=trial))
        except Exception:  # an exotic backend that cannot answer outside its own loop: fall through
            pass
    if getattr(state, "trial_name", None):
        return os.path.join(args.output_dir, state.trial_name)
    return str(args.output_dir)


def resume_checkpoint_on_stack() -> str | None:
    """The ``resume_from_checkpoint`` the Trainer's training loop was called with, if it is on the stack."""
    _, local_vars = _trainer_frame()
    value = local_vars.get("resume_from_checkpoint")
    return value if isinstance(value, str) else None
