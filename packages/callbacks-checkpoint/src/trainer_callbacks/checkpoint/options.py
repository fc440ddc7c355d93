"""The options of :class:`~trainer_callbacks.checkpoint.CheckpointPruner`, declared once (docs, checks, saved form)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from trainer_callbacks.checkpoint.policy import CheckpointInfo, normalize_monitor
from trainer_callbacks.core import CallbackOptions, Flag, Integer, OrNone, option


def _keep(value: Any) -> Any:
    from trainer_callbacks.checkpoint.callback import resolve_keep

    return resolve_keep(value)[0]


def _saved_keep(stored: Any, given: Any) -> str | None:
    from trainer_callbacks.checkpoint.callback import resolve_keep

    return resolve_keep(given)[1]


@dataclasses.dataclass(frozen=True)
class PrunerOptions(CallbackOptions):
    keep_last: int = option(
        2, "the newest N checkpoints by global step (at least 1)", Integer(minimum=1, meaning="a number of checkpoints")
    )
    keep_best: int = option(
        1,
        "for each monitored metric, the N best checkpoints (ties: the newer wins); 0 disables",
        Integer(minimum=0, meaning="a number of checkpoints"),
    )
    monitor: str | dict[str, str] | None = option(
        None,
        "`None`: `metric_for_best_model` ranked by `greater_is_better` (nothing when unset); a name (mode: "
        "`greater_is_better` if it is `metric_for_best_model`, else `min` for a loss or error rate such as loss, "
        "error, wer, cer, perplexity, mae, `max` for a score such as accuracy, f1, bleu, rouge; any other name is an "
        'error at train begin asking for the mode); or `{"eval_loss": "min", "eval_f1": "max"}`. The `eval_` '
        "prefix is added when missing, as the Trainer does; two names for one metric are an error",
        normalize_monitor,
    )
    keep_pareto: bool = option(
        False, "with two or more monitored metrics, also keep every checkpoint on their Pareto front", Flag()
    )
    keep_every_n_steps: int | None = option(
        None,
        "milestones kept forever: the first checkpoint at or after each multiple of N (exactly the multiples when "
        "`save_steps` divides N)",
        OrNone(Integer(minimum=1, meaning="a number of global steps")),
    )
    keep: Callable[[CheckpointInfo], bool] | str | None = option(
        None,
        "`keep(info: CheckpointInfo) -> bool`, asked about each checkpoint the rules would delete; `True` keeps it "
        "(if it raises, the checkpoint is kept and a warning logged). A module-level function, or its "
        "`'module:function'` name (saved with the options); a lambda or closure cannot be saved and is refused",
        _keep,
        save=_saved_keep,
        attribute="_keep",
    )
    background: bool = option(
        True,
        "remove folders in the background, in a child process (paced to finish half-way to the next save); "
        "`on_train_end` waits for it; `False` removes them and reconciles the index inside `on_save`",
        Flag(),
    )
    dry_run: bool = option(
        False,
        "decide and log exactly as usual (including the logged metrics) but delete nothing",
        Flag(),
    )
    strict: bool = option(
        True,
        "a ranking metric that an evaluation does not report is a `ConfigurationError` listing the metrics present, "
        "raised at the end of that evaluation, before any prune; `False`: a checkpoint whose rank cannot be "
        "computed is kept (one warning)",
        Flag(),
    )
