"""Shared helpers for the lr tests: a Trainer-ordered event loop, tiny BERT runs, recorders."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from trainer_callbacks import testing as kit


def training_args(tmp_path: Any, **overrides: Any) -> TrainingArguments:
    options: dict[str, Any] = dict(
        output_dir=str(tmp_path),
        eval_strategy="steps",
        eval_steps=1,
        use_cpu=True,
        report_to="none",
    )
    options.update(overrides)
    return TrainingArguments(**options)


def sgd(lrs: Sequence[float]) -> torch.optim.SGD:
    """An SGD optimizer with one tiny parameter per group, group ``i`` at ``lrs[i]``."""
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


@dataclass
class LoopResult:
    used_lrs: list[list[float]] = field(default_factory=list)
    """Group LRs used by optimizer step 1, 2, ... (read just before ``optimizer.step()``)."""
    lrs_after_eval: list[list[float]] = field(default_factory=list)
    """Group LRs right after each evaluation's callbacks ran."""
    state: TrainerState | None = None


def trainer_loop(
    callback: Any,
    args: TrainingArguments,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    metrics: Iterable[float | None],
    *,
    monitor: str = "eval_loss",
    steps_per_eval: int = 1,
    state: TrainerState | None = None,
) -> LoopResult:
    """The Trainer's order of events, without a model: for each metric value, ``steps_per_eval``
    optimizer steps (pre-step LR recorded, ``optimizer.step``, ``scheduler.step``, ``global_step += 1``),
    then an evaluation whose metrics carry ``monitor`` (``None``: an evaluation without it)."""
    state = state or TrainerState()
    control = TrainerControl()
    result = LoopResult(state=state)
    kw = {"optimizer": optimizer, "lr_scheduler": scheduler}
    callback.on_train_begin(args, state, control, **kw)
    for value in metrics:
        for _ in range(steps_per_eval):
            result.used_lrs.append([float(g["lr"]) for g in optimizer.param_groups])
            optimizer.step()
            scheduler.step()
            state.global_step += 1
        evaluation = {"eval_runtime": 0.1}
        if value is not None:
            evaluation[monitor] = value
        callback.on_evaluate(args, state, control, metrics=evaluation, **kw)
        result.lrs_after_eval.append([float(g["lr"]) for g in optimizer.param_groups])
    callback.on_train_end(args, state, control, **kw)
    return result


class ScriptedMetric(TrainerCallback):
    """Overwrites ``metrics[key]`` in ``on_evaluate`` with the next scripted value (place it before the callback
    under test: the Trainer's metrics dict is shared by all callbacks)."""

    def __init__(self, key: str, values: Callable[[int], float]):
        self.key = key
        self.values = values
        self.count = 0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # type: ignore[no-untyped-def]
        metrics[self.key] = float(self.values(self._index(state)))
        self.count += 1

    @staticmethod
    def _index(state: TrainerState) -> int:
        # The evaluation index survives a resume: count evaluations in the (restored) log history. The
        # Trainer logs the evaluation before on_evaluate, so the current one is already counted.
        return sum(1 for e in state.log_history if "eval_runtime" in e) - 1


class LRRecorder(TrainerCallback):
    """The LR of every group used by each optimizer step, keyed by the step number it becomes (1-based)."""

    def __init__(self) -> None:
        self.used: dict[int, list[float]] = {}

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):  # type: ignore[no-untyped-def]
        self.used[state.global_step + 1] = [float(g["lr"]) for g in optimizer.param_groups]


def tiny_bert(seed: int = 0) -> Any:
    """The test kit's tiny BERT with a 100-token vocabulary and 32 positions."""
    return kit.tiny_bert(seed, vocab_size=100, max_position_embeddings=32)


class TinyDataset(kit.TokenTask):
    """Ids in ``[1, 100)`` (``[PAD]`` left out), fair-coin labels."""

    def __init__(self, n: int, seed: int = 0, length: int = 8):
        super().__init__(n, seed, vocab=100, length=length, labels="random", min_id=1)


def tiny_trainer(callbacks: list[Any], *, train_size: int = 32, eval_dataset: Any = None, **training_args: Any) -> Any:
    """A real Trainer on :func:`tiny_bert` and ``TinyDataset(train_size)`` (eval: ``TinyDataset(8, seed=1)``);
    ``training_args`` (``output_dir`` required) override the test kit's CPU-only, tracker-free defaults."""
    return kit.build_tiny_trainer(
        callbacks=callbacks,
        model=tiny_bert(),
        train_dataset=TinyDataset(train_size),
        eval_dataset=eval_dataset if eval_dataset is not None else TinyDataset(8, seed=1),
        **training_args,
    )


def torch_oracle_lrs(lrs: Sequence[float], metrics: Sequence[float], **plateau_kwargs: Any) -> list[list[float]]:
    """Group LRs after each ``torch.optim.lr_scheduler.ReduceLROnPlateau.step(metric)`` on a constant schedule."""
    optimizer = sgd(lrs)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **plateau_kwargs)
    out = []
    for value in metrics:
        optimizer.step()
        scheduler.step(value)
        out.append([float(g["lr"]) for g in optimizer.param_groups])
    return out
