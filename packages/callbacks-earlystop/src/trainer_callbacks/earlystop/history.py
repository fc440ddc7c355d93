"""Reading a run's early-stopping record back from ``log_history`` (for summaries and plots).

Pure Python over ``TrainerState.log_history`` as stored in ``trainer_state.json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "early_stopping"
REASON_KEY = f"{PREFIX}/reason"
STOPPED_KEY = f"{PREFIX}/stopped"


@dataclass
class StopRecord:
    """What ``log_history`` says about early stopping."""

    stop_step: int | None = None
    reason: str | None = None
    best: dict[str, float] = field(default_factory=dict)
    best_step: dict[str, int | None] = field(default_factory=dict)


def read_record(log_history: Iterable[Mapping[str, Any]]) -> StopRecord | None:
    """The early-stopping record of a run, or ``None`` when it logged nothing of ours."""
    record = StopRecord()
    seen = False
    for entry in log_history:
        step = entry.get("step")
        for key, value in entry.items():
            if not key.startswith(f"{PREFIX}/"):
                continue
            seen = True
            if key == STOPPED_KEY and value and record.stop_step is None:
                record.stop_step = int(step) if step is not None else None
            elif key == REASON_KEY and record.reason is None:
                record.reason = str(value)
            elif key.startswith(f"{PREFIX}/best/"):
                record.best[key[len(f"{PREFIX}/best/") :]] = float(value)
            elif key.startswith(f"{PREFIX}/wait/"):
                name = key[len(f"{PREFIX}/wait/") :]
                if name == "pareto":
                    continue
                record.best_step.setdefault(name, None)
                if float(value) == 0 and step is not None:
                    record.best_step[name] = int(step)
    return record if seen else None


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def summary_line(record: StopRecord) -> str:
    """``early stopping: stopped at step 400 (all of ... stalled ...); best eval_loss 0.41 at step 200``."""
    if record.stop_step is not None:
        reason = record.reason.split(": ", 1)[-1] if record.reason else "stopped"
        head = f"early stopping: stopped at step {record.stop_step} ({reason})"
    else:
        head = "early stopping: did not stop"
    bests = []
    for name, value in record.best.items():
        step = record.best_step.get(name)
        where = f" at step {step}" if step is not None else " (baseline, never beaten)"
        bests.append(f"best {name} {_fmt(value)}{where}")
    return "; ".join([head, *([", ".join(bests)] if bests else [])])
