"""Benchmark 1: what the first-party plugins cost a real ``Trainer`` loop.

A ``bert-mini``-shaped model (4 layers, hidden 256, BERT's vocabulary, random init) is
trained on CPU on generated token ids, the same steps from the same initial weights in every
arm; only ``trainer.train()`` is timed (construction is not). Two settings:

* ``defaults``: ``logging_steps=50``, evaluation every 200 steps, a model-only save every 200
  steps, every plugin with its default options (``create(name)``), ``report_to="none"``;
* ``worst case``: every step logged and evaluated (a one-batch eval set); early stopping's
  patience is raised so that no arm stops early (its rule still runs at every evaluation).

The arms of each setting run interleaved (``none`` and ``all``; in the worst case also each
plugin alone) and the ratio is ``time(arm) / time(none)`` = ``steps/s(none) / steps/s(arm)``
per round. Beside the whole ``train()`` time, each run's median optimizer-step cycle (from
one ``on_step_begin`` to the next, measured by a callback present in every arm) is compared
the same way: it keeps every per-step cost of a plugin and drops the rare slow steps a busy
neighbour causes, so on a shared machine it is the steadier of the two.

Which plugin costs what is also measured from the inside, in one instrumented run of each
setting: every ``on_*`` event method of every plugin callback, and gradviz's forward hook
and end-of-backward callback, are wrapped with a timer; the table gives the seconds spent in
each plugin's code per optimizer step. That attribution does not depend on the machine's
noise the way a 1% wall-clock difference does.
"""

from __future__ import annotations

import copy
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import BenchResult, Goal, HookTimer, Table, compare, fmt_time, interleave

FIRST_PARTY = ("earlystop", "lr", "gradviz", "checkpoint")


@dataclass(frozen=True)
class Setting:
    name: str
    steps: int
    logging_steps: int
    eval_steps: int
    save_steps: int | None
    eval_size: int
    plugin_options: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Size:
    layers: int
    hidden: int
    vocab: int
    seq_len: int
    batch: int
    rounds: int
    worst_rounds: int
    defaults_steps: int
    worst_steps: int


FULL = Size(
    layers=4, hidden=256, vocab=30522, seq_len=32, batch=8, rounds=5, worst_rounds=3, defaults_steps=200, worst_steps=30
)
TOY = Size(
    layers=1, hidden=32, vocab=100, seq_len=8, batch=2, rounds=1, worst_rounds=1, defaults_steps=4, worst_steps=2
)


def installed_plugins() -> list[str]:
    from trainer_callbacks.core import callback_specs

    specs = callback_specs()
    return [name for name in FIRST_PARTY if name in specs]


class _Tokens:
    """Random token ids and binary labels (a map-style dataset)."""

    def __init__(self, n: int, seq_len: int, vocab: int, seed: int) -> None:
        import torch

        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, vocab, (n, seq_len), generator=g)
        self.labels = torch.randint(0, 2, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def _step_clock() -> Any:
    """A callback (first in the list) noting the time at every ``on_step_begin``.

    Consecutive differences are whole optimizer-step cycles (every callback, log and
    evaluation in between included); their median is robust to a neighbour's burst of load
    that a run's total time is not, and still contains any every-step cost of a plugin.
    """
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.marks.append(time.perf_counter())

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.marks.append(time.perf_counter())

        def median_step(self) -> float:
            import statistics

            gaps = [b - a for a, b in zip(self.marks, self.marks[1:])]
            return statistics.median(gaps) if gaps else float("nan")

    return StepClock()


class Bench:
    """Builds Trainers for one size and times ``train()``."""

    def __init__(self, size: Size, workdir: str) -> None:
        from bench.models import bert

        self.size = size
        self.workdir = workdir
        self.model = bert(size.layers, size.hidden, size.vocab)
        self.train_data = _Tokens(size.batch * max(size.defaults_steps, size.worst_steps), size.seq_len, size.vocab, 0)
        self.eval_data = {n: _Tokens(n, size.seq_len, size.vocab, 1) for n in (size.batch, 4 * size.batch)}
        self._run = 0
        self.median_steps: dict[str, list[float]] = {}

    def trainer(self, setting: Setting, plugins: list[str], steps: int | None = None) -> Any:
        from transformers import Trainer, TrainingArguments
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        from trainer_callbacks.core import create

        self._run += 1
        save = setting.save_steps is not None
        args = TrainingArguments(
            output_dir=f"{self.workdir}/run{self._run}",
            max_steps=steps or setting.steps,
            per_device_train_batch_size=self.size.batch,
            per_device_eval_batch_size=self.size.batch * 4,
            learning_rate=1e-4,
            logging_steps=setting.logging_steps,
            eval_strategy="steps",
            eval_steps=setting.eval_steps,
            save_strategy="steps" if save else "no",
            save_steps=setting.save_steps or 500,
            save_only_model=True,
            metric_for_best_model="eval_loss",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            log_level="error",
            seed=0,
        )
        callbacks = [_step_clock()] + [create(name, **setting.plugin_options.get(name, {})) for name in plugins]
        trainer = Trainer(
            model=copy.deepcopy(self.model),
            args=args,
            train_dataset=self.train_data,
            eval_dataset=self.eval_data[setting.eval_size],
            callbacks=callbacks,
        )
        for cb in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(cb)
        return trainer

    def arm(self, setting: Setting, plugins: list[str], label: str) -> Callable[[], float]:
        steps = self.median_steps.setdefault(label, [])

        def run() -> float:
            trainer = self.trainer(setting, plugins)
            start = time.perf_counter()
            trainer.train()
            elapsed = time.perf_counter() - start
            clock = next(cb for cb in trainer.callback_handler.callbacks if type(cb).__name__ == "StepClock")
            steps.append(clock.median_step())
            if trainer.state.global_step != setting.steps:
                raise RuntimeError(
                    f"{'+'.join(plugins) or 'no plugins'} stopped at step {trainer.state.global_step} "
                    f"of {setting.steps}: the arms would not train the same steps"
                )
            return elapsed

        return run

    def instrumented(self, setting: Setting, plugins: list[str]) -> tuple[dict[str, float], float]:
        """Seconds per optimizer step spent in each plugin's code, and the run's seconds per step."""
        trainer = self.trainer(setting, plugins)
        timer = HookTimer()
        for name, cb in zip(plugins, [cb for cb in trainer.callback_handler.callbacks if _is_plugin(cb)]):
            timer.instrument(name, cb, hooks_label=f"{name} (backward hooks)")
        start = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - start
        return {k: v / setting.steps for k, v in timer.seconds.items()}, elapsed / setting.steps


def _is_plugin(cb: Any) -> bool:
    return type(cb).__module__.startswith("trainer_callbacks.")


def settings(size: Size) -> list[Setting]:
    d = size.defaults_steps
    return [
        Setting(
            "defaults",
            steps=d,
            logging_steps=max(d // 4, 1) if d < 200 else 50,
            eval_steps=d,
            save_steps=d,
            eval_size=4 * size.batch,
            plugin_options={},
        ),
        Setting(
            "worst case",
            steps=size.worst_steps,
            logging_steps=1,
            eval_steps=1,
            save_steps=None,
            eval_size=size.batch,
            plugin_options={"earlystop": {"patience": 10**9}},
        ),
    ]


def run(quick: bool = False) -> BenchResult:
    import torch
    from transformers.utils import logging as hf_logging

    started = time.perf_counter()
    size = TOY if quick else FULL
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("trainer_callbacks").setLevel(logging.ERROR)
    plugins = installed_plugins()
    result = BenchResult(
        name="trainer_overhead",
        title="Whole-suite overhead on a real Trainer loop",
        setup={
            "model": f"BertForSequenceClassification, {size.layers} layers, hidden {size.hidden}, "
            f"vocab {size.vocab}, random init, fp32",
            "data": f"random token ids, sequence length {size.seq_len}, batch {size.batch}, "
            f"CPU, {torch.get_num_threads()} torch threads",
            "plugins": ", ".join(plugins) or "none installed",
            "timed": "trainer.train() only (Trainer construction excluded); report_to='none'",
        },
    )
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as workdir:
        bench = Bench(size, workdir)
        attribution_rows = []
        for setting in settings(size):
            rounds = size.rounds if setting.name == "defaults" else size.worst_rounds
            bench.median_steps = {}
            arms: dict[str, Callable[[], float]] = {"none": bench.arm(setting, [], "none")}
            arms["all"] = bench.arm(setting, plugins, "all")
            # One plugin at a time where its cost is large enough to see in wall time (every step logged and
            # evaluated); at the defaults the instrumented run below attributes the cost per plugin instead.
            if not quick and setting.name == "worst case":
                for name in plugins:
                    arms[name] = bench.arm(setting, [name], name)
            # warm-up: a short run of each arm (imports, allocator, first-step costs), untimed
            warm = Setting(**{**setting.__dict__, "steps": min(setting.steps, 5)})
            if not quick:
                for names in ([], plugins):
                    bench.trainer(warm, names).train()
            samples = interleave(arms, rounds, warmup=0)
            base = compare(samples, "none", "none")
            result.medians[f"{setting.name}/none"] = base.median_baseline
            rows = [
                [
                    setting.name,
                    "none",
                    f"{setting.steps / base.median_baseline:.2f}",
                    fmt_time(base.median_baseline),
                    "1.000",
                    "",
                    fmt_time(statistics.median(bench.median_steps["none"])),
                    "1.000",
                    "",
                ]
            ]
            for name in list(arms)[1:]:
                cmp = compare(samples, "none", name)
                step_cmp = compare(bench.median_steps, "none", name)
                result.comparisons.append(cmp)
                result.medians[f"{setting.name}/{name}"] = cmp.median_arm
                result.medians[f"{setting.name}/{name}/median step"] = step_cmp.median_arm
                if setting.name == "defaults" and name == "all":
                    defaults_step_cmp = step_cmp
                rows.append(
                    [
                        setting.name,
                        name,
                        f"{setting.steps / cmp.median_arm:.2f}",
                        fmt_time(cmp.median_arm),
                        f"{cmp.ratio:.3f}",
                        cmp.spread,
                        fmt_time(step_cmp.median_arm),
                        f"{step_cmp.ratio:.3f}",
                        step_cmp.spread,
                    ]
                )
            result.tables.append(
                Table(
                    f"{setting.name}: {setting.steps} steps, logging_steps={setting.logging_steps}, "
                    f"eval every {setting.eval_steps} steps ({setting.eval_size} examples)"
                    + (f", model-only save every {setting.save_steps} steps" if setting.save_steps else ", no saves"),
                    [
                        "setting",
                        "plugins",
                        "steps/s (median)",
                        "train() median",
                        "time ratio vs none",
                        "spread",
                        "median step",
                        "median-step ratio",
                        "spread",
                    ],
                    rows,
                )
            )
            if plugins:
                per_plugin, step_seconds = bench.instrumented(setting, plugins)
                for name in sorted(per_plugin, key=lambda k: (plugins.index(k.split(" ")[0]), k)):
                    spent = per_plugin[name]
                    attribution_rows.append([setting.name, name, fmt_time(spent), f"{100 * spent / step_seconds:.2f}%"])
                total = sum(per_plugin.values())
                attribution_rows.append([setting.name, "all", fmt_time(total), f"{100 * total / step_seconds:.2f}%"])
                result.medians[f"{setting.name}/inside plugins per step"] = max(total, 1e-9)
                if setting.name == "defaults":
                    all_cmp = compare(samples, "none", "all")
                    met = all_cmp.ratio <= 1.02 and defaults_step_cmp.ratio <= 1.02
                    result.goals.append(
                        Goal(
                            text="all plugins at defaults: steps/s ratio (none / all) <= 1.02 "
                            "(whole-run and median-step ratios)",
                            measured=f"{all_cmp.ratio:.3f} ({all_cmp.spread}); median-step ratio "
                            f"{defaults_step_cmp.ratio:.3f} ({defaults_step_cmp.spread}); inside plugin code: "
                            f"{100 * total / step_seconds:.2f}% of a step",
                            met=met,
                            why="" if met else _why(per_plugin, step_seconds),
                        )
                    )
        if attribution_rows:
            result.tables.append(
                Table(
                    "Time inside each plugin's code per optimizer step (instrumented run, all plugins attached)",
                    ["setting", "plugin", "per step", "share of the step"],
                    attribution_rows,
                )
            )
    result.wall_seconds = time.perf_counter() - started
    return result


def _why(per_plugin: dict[str, float], step_seconds: float) -> str:
    ranked = sorted(per_plugin.items(), key=lambda kv: -kv[1])
    parts = ", ".join(f"{k} {fmt_time(v)}/step ({100 * v / step_seconds:.2f}%)" for k, v in ranked)
    return f"time inside plugin code: {parts}; a step is {fmt_time(step_seconds)}"
