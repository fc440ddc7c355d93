"""The ``checkpoint`` plugin: registers ``CheckpointPruner`` and reads its logs back.

Imports neither torch nor transformers at module level (``trainer-callbacks list`` stays fast).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trainer_callbacks.core import CallbackSpec, PlotEvent, hookimpl, strategy

logger = logging.getLogger("trainer_callbacks.checkpoint")

KEPT, DELETED, FREED = "checkpoint/kept", "checkpoint/deleted", "checkpoint/bytes_freed"
NOT_REMOVED = "checkpoint/not_removed"


@hookimpl
def register_callbacks(register: Callable[[CallbackSpec], None]) -> None:
    register(
        CallbackSpec(
            name="checkpoint",
            summary="Checkpoint pruning: keep last N, best N, Pareto front, milestones; crash-safe background deletion",
            factory="trainer_callbacks.checkpoint.callback:CheckpointPruner",
            demo_options={"keep_last": 2, "keep_best": 1},
            summary_order=30,
        )
    )


def _pruners(callbacks: Sequence[Any]) -> list[Any]:
    # Called at train begin (torch is loaded by then); imported here so `trainer-callbacks list` stays light.
    from trainer_callbacks.checkpoint.callback import CheckpointPruner

    return [cb for cb in callbacks if isinstance(cb, CheckpointPruner)]


def training_args_warnings(args: Any, pruners: Sequence[Any]) -> list[str]:
    """What is legal but probably not what the user wants (logged at train begin, not raised)."""
    if not pruners:
        return []
    notes = []
    if getattr(args, "save_total_limit", None):
        notes.append(
            f"save_total_limit={args.save_total_limit} is set as well as CheckpointPruner: two pruners run. The "
            "Trainer's runs first (newest by mtime + best_model_checkpoint) and may delete checkpoints the "
            "CheckpointPruner policy would keep; set save_total_limit=None to let CheckpointPruner decide alone."
        )
    if strategy(args, "save") == "no":
        notes.append("save_strategy='no': no checkpoint is saved, so CheckpointPruner has nothing to prune.")
    return notes


@hookimpl
def validate_training_args(args: Any, callbacks: Sequence[Any]) -> list[str]:
    pruners = _pruners(callbacks)
    for note in dict.fromkeys(training_args_warnings(args, pruners)):
        logger.warning(note)
    if any(cb.monitor is None and cb.keep_best > 0 for cb in pruners) and not getattr(
        args, "metric_for_best_model", None
    ):
        logger.info(
            "CheckpointPruner(monitor=None) ranks by metric_for_best_model, which is not set: keep_best has no "
            "effect (recency, milestones and keep still apply)."
        )
    return []


@hookimpl
def plot_events(log_history: list[dict[str, Any]]) -> list[PlotEvent]:
    events = []
    for entry in log_history:
        deleted = entry.get(DELETED)
        if deleted and "step" in entry:
            # bytes freed are logged once at train end (entries from older versions carry them per prune)
            size = f" ({_size(float(entry[FREED]))})" if FREED in entry else ""
            events.append(PlotEvent(step=int(entry["step"]), label=f"pruned {int(deleted)}{size}", kind="prune"))
    return events


@hookimpl
def summarize_run(log_history: list[dict[str, Any]], output_dir: Path) -> list[str]:
    prunes = [e for e in log_history if KEPT in e]
    if not prunes:
        return []
    deleted = sum(int(e.get(DELETED, 0)) for e in prunes)
    freed = sum(float(e.get(FREED, 0.0)) for e in log_history)  # logged at train end, apart from the prunes
    not_removed = sum(int(e.get(NOT_REMOVED, 0)) for e in log_history)
    last = prunes[-1]
    lines = [
        f"checkpoint: {len(prunes)} prune(s), {deleted} checkpoint(s) deleted, {_size(freed)} freed; "
        f"{int(last[KEPT])} kept after the last prune (step {last.get('step')})"
    ]
    if not_removed:
        lines.append(
            f"checkpoint: {not_removed} deleted folder(s) could not be removed from disk; they stay hidden "
            "(.checkpoint-N.deleting-*) and the next run in this folder removes them"
        )
    try:
        remaining = sorted(
            (p.name for p in Path(output_dir).iterdir() if p.name.startswith("checkpoint-") and p.is_dir()),
            key=lambda n: (len(n), n),
        )
    except OSError:
        remaining = []
    if remaining:
        lines.append(f"checkpoint: on disk now: {', '.join(remaining)}")
    return lines


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
