"""Benchmark 5: simulated Trainer steps per second (core's test kit, ``simulate``).

``simulate(args, callbacks)`` with ``max_steps`` steps, ``logging_steps=50``, evaluation and an
(in-memory) save every 200 steps, interleaved: no callbacks (the simulator's own floor),
every first-party plugin at its defaults, and the same with ``record_events=False``. One
profiled run (cProfile on CPU time) says where the time goes, per package and per function.
"""

from __future__ import annotations

import cProfile
import logging
import pstats
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import BenchResult, Goal, HookTimer, Table, compare, fmt_time, interleave

FIRST_PARTY = ("earlystop", "lr", "gradviz", "checkpoint")


def _args(output_dir: str, steps: int) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        max_steps=steps,
        logging_steps=50,
        eval_strategy="steps",
        eval_steps=200,
        save_strategy="steps",
        save_steps=200,
        report_to="none",
        use_cpu=True,
    )


def _arm(args: Any, plugins: list[str], record_events: bool = True) -> Callable[[], float]:
    from trainer_callbacks.core import create
    from trainer_callbacks.testing import simulate

    def run_once() -> float:
        callbacks = [create(name) for name in plugins]
        start = time.perf_counter()
        sim = simulate(args, callbacks, record_events=record_events)
        elapsed = time.perf_counter() - start
        if sim.state.global_step != args.max_steps:
            raise RuntimeError(f"the simulation stopped at step {sim.state.global_step} of {args.max_steps}")
        return elapsed

    return run_once


def attribute(args: Any, plugins: list[str]) -> tuple[dict[str, float], float]:
    """Seconds spent inside each plugin's code (every ``on_*`` method, gradviz's hooks) in one simulation."""
    from trainer_callbacks.core import create
    from trainer_callbacks.testing import Simulation

    timer = HookTimer()
    callbacks = [create(name) for name in plugins]
    for name, cb in zip(plugins, callbacks):
        timer.instrument(name, cb)
    sim = Simulation(args, callbacks)
    start = time.perf_counter()
    sim.train()
    return dict(timer.seconds), time.perf_counter() - start


def _package(filename: str) -> str:
    parts = Path(filename).parts
    if "trainer_callbacks" in parts:
        i = parts.index("trainer_callbacks")
        pkg = parts[i + 1] if i + 1 < len(parts) else "?"
        return "testing (simulator)" if pkg == "testing" else f"trainer_callbacks.{pkg}"
    for name in ("transformers", "torch", "accelerate"):
        if name in parts:
            return name
    return "python / other"


def profile(fn: Callable[[], Any], limit: int = 10) -> tuple[list[list[str]], list[list[str]]]:
    """One profiled call of ``fn`` (CPU time, so a busy neighbour does not skew it).

    Returns the functions with the most own time, and own time summed per package.
    """
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    fn()
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.values()) or 1e-12
    ranked = sorted(stats.items(), key=lambda kv: -kv[1][2])[:limit]
    top = []
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in ranked:
        short = "/".join(Path(filename).parts[-3:]) if filename.startswith("/") else filename
        top.append(
            [
                f"{short}:{line}({func})",
                str(ncalls),
                fmt_time(tottime),
                f"{100 * tottime / total:.1f}%",
                fmt_time(cumtime),
            ]
        )
    per_package: dict[str, float] = {}
    for (filename, _line, _func), row in stats.items():
        key = _package(filename)
        per_package[key] = per_package.get(key, 0.0) + row[2]
    ordered = sorted(per_package.items(), key=lambda kv: -kv[1])
    return top, [[k, fmt_time(v), f"{100 * v / total:.1f}%"] for k, v in ordered]


def run(quick: bool = False) -> BenchResult:
    from trainer_callbacks.core import callback_specs

    started = time.perf_counter()
    steps = 200 if quick else 10_000
    rounds = 1 if quick else 5
    plugins = [name for name in FIRST_PARTY if name in callback_specs()]
    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            args = _args(tmp, steps)
            arms = {
                "no callbacks": _arm(args, []),
                "all plugins": _arm(args, plugins),
                "all plugins, record_events=False": _arm(args, plugins, record_events=False),
            }
            samples = interleave(arms, rounds, warmup=1)
            top, packages = profile(arms["all plugins"])
            inside, attributed_total = attribute(args, plugins)
    finally:
        logging.disable(logging.NOTSET)
    result = BenchResult(
        name="simulator",
        title="Simulator: simulated Trainer steps per second",
        setup={
            "run": f"simulate(args, callbacks): max_steps={steps}, logging_steps=50, eval and save every 200 steps "
            "(checkpoints in memory), default metrics (an improving eval_loss)",
            "plugins": ", ".join(plugins) or "none installed",
            "rounds": f"{rounds} interleaved rounds (+1 warm-up)",
        },
    )
    rows = []
    for name in arms:
        cmp = compare(samples, "no callbacks", name)
        result.medians[name] = cmp.median_arm
        if name != "no callbacks":
            result.comparisons.append(cmp)
        rows.append(
            [
                name,
                fmt_time(cmp.median_arm),
                f"{steps / cmp.median_arm:,.0f}",
                fmt_time(cmp.median_arm * 10_000 / steps),
                f"{cmp.ratio:.2f}",
                cmp.spread if name != "no callbacks" else "",
            ]
        )
    result.tables.append(
        Table(
            f"{steps} simulated steps (median)",
            ["callbacks", "median", "steps/s", "per 10 000 steps", "x no callbacks", "spread"],
            rows,
        )
    )
    all_cmp = compare(samples, "no callbacks", "all plugins")
    per_10k = all_cmp.median_arm * 10_000 / steps
    floor_10k = all_cmp.median_baseline * 10_000 / steps
    result.goals.append(
        Goal(
            text="10 000 simulated steps with all plugins in < 1 s",
            measured=f"{fmt_time(per_10k)} (simulator alone: {fmt_time(floor_10k)})",
            met=per_10k < 1.0,
            why=""
            if per_10k < 1.0
            else (
                f"the simulator without callbacks takes {fmt_time(floor_10k)} per 10 000 steps; the plugins add "
                f"{fmt_time(per_10k - floor_10k)}; the profile tables say where the time goes"
            ),
        )
    )
    scale = 10_000 / steps
    attribution = [
        [name, fmt_time(inside.get(name, 0.0) * scale), f"{100 * inside.get(name, 0.0) / attributed_total:.1f}%"]
        for name in plugins
    ]
    rest = attributed_total - sum(inside.values())
    attribution.append(
        ["simulator + transformers' CallbackHandler", fmt_time(rest * scale), f"{100 * rest / attributed_total:.1f}%"]
    )
    result.tables.append(
        Table(
            "Where the time goes: inside each plugin's callback code (one instrumented run, all plugins)",
            ["code", "per 10 000 steps", "share"],
            attribution,
        )
    )
    result.tables.append(
        Table(
            "Where the time goes per package, by own time (one cProfile run, all plugins, CPU time)",
            ["package", "own time", "share"],
            packages,
        )
    )
    result.tables.append(
        Table(
            "Top functions by own time (same profiled run)",
            ["function", "calls", "own time", "share", "cumulative"],
            top,
        )
    )
    result.wall_seconds = time.perf_counter() - started
    return result
