"""Which directory the Trainer writes this run's checkpoints to.

It is ``args.output_dir``, except under ``Trainer.hyperparameter_search`` where each trial
writes to ``<output_dir>/<run name>`` (``hp_name(trial)`` or ``run-<trial number / id>``).
A callback is not handed the Trainer nor the trial, so core's compat layer asks the Trainer
that dispatched the current event (:func:`trainer_callbacks.core.compat.trial_output_dir`).
Without a Trainer on the stack (a simulator, a custom loop), ``state.trial_name`` (set when
``hp_name`` is given) is used, else ``args.output_dir``.
"""

from __future__ import annotations

import os
from typing import Any

from trainer_callbacks.core import compat


def find_run_dir(args: Any, state: Any) -> str:
    """The folder holding this run's ``checkpoint-N`` folders (the trial folder under hyperparameter search)."""
    found = compat.trial_output_dir()
    if found is not None:
        return found
    if getattr(state, "trial_name", None):
        return os.path.join(args.output_dir, state.trial_name)
    return str(args.output_dir)


def resume_checkpoint_on_stack() -> str | None:
    """The ``resume_from_checkpoint`` path the Trainer's training loop was called with (``None`` without one)."""
    return compat.resume_checkpoint_on_stack()
