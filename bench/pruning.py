"""Benchmark 4: what pruning costs the training loop, by checkpoint size and by number of checkpoints.

**By size** (issue 18 §1). Each round writes, for each pruner arm, a run directory holding
``checkpoint-100`` (the one to delete: ``size`` bytes of real, non-sparse data in 16 MiB shard
files plus 48 small files, like a sharded model and optimizer checkpoint) and the two newest,
small ``checkpoint-200`` and ``checkpoint-300``; the data is synced to disk and left ``SETTLE``
seconds (a real checkpoint was written one save interval earlier). Then the arms run one after
the other, each arm first in one of the rounds (the write before them affects every arm alike):

* ``no prune (control)``: the same steps, no prune;
* ``pruner (child process)``: ``CheckpointPruner()`` (defaults: ``keep_last=2``, background
  deletion) ``on_save`` at step 300 of a run that saves every 100 steps and took ``INTERVAL``
  seconds for the last 100 (the deleter's reference point is set to that; nothing else is faked):
  the deleter's child process truncates the 16 MiB shards and paces itself to be done half-way
  to the next save;
* ``pruner (thread, 0.2 before)``: the same, with the deletion on a nice-19 thread of the
  training process (``Deleter(process=False)``), for comparison.

After the call, the loop runs ``STEPS`` fixed steps (small torch ops driven from Python on one
thread, ~``STEP`` s each; the steps span one save interval) and keeps stepping until the
deletion is done. Figures: the time the call blocks; the whole-loop cost (call + the fixed
steps, minus the control's fixed steps in the same round); the slowest step while the deletion
runs, against the control's median step; and, from Linux's per-thread counters, how often the
loop's thread switched out voluntarily (it is CPU-bound: it waits only for the GIL), how long it
waited on a run queue, and how long it was off the CPU in all (wall time minus its CPU time: the
GIL, the run queue and the VM's steal), each over the control's. Those are what a deletion can
take from the loop directly, and they do not carry the drift of the loop's own speed between arms
(a few % on this VM, hundreds of ms over a save interval) that the whole-loop figure does.

**By count** (issue 18 §2). ``N`` complete milestone checkpoints (steps 100, 200, ...) and
``keep_every_n_steps=100``, ``keep_last=2``; the saves go on at steps ``100 N + 5k``, inside the
last milestone's window, so from the third on each save deletes the one two saves before it (the
earlier version's saves crossed into new windows and each became a milestone: almost no prune
deleted anything). The folders are left to age past the index's racy margin (2 s) before train begin,
as a real run's old checkpoints are. Each save goes as in the Trainer: ``on_step_end`` with
``should_save`` (the pruner starts its background reconciliation of the directory), the new
folder is written, the reconciliation is let finish (it runs during the save and the steps
between saves; untimed), then ``on_save``. Timed: the first scan at train begin, and the call
that blocks the loop at each of ``SAVES`` saves (index update, decision, on-disk checks of its
witnesses, rename), against the same with 10 folders, the counts' saves interleaved (one of each
per round); and, apart, one background reconciliation (what runs off the training thread once per
save). ``BENCH_PRUNE_PARTS=count`` runs only this part.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import BenchResult, Goal, Table, fmt_time

MiB = 1 << 20
SHARD = 16 * MiB
SMALL_FILES = 48
GiB = 1 << 30
FULL_SIZES = tuple(int(x) * GiB for x in os.environ.get("BENCH_PRUNE_GIB", "1,4,16").split(","))
TOY_SIZES = (2 * MiB,)
INTERVAL = 8.0
"""Seconds between two saves in the size benchmark (the deleter aims to be done after half of it)."""
STEP = 0.01
"""Seconds of one 'training step' of the loop (calibrated)."""
PARTS = tuple(os.environ.get("BENCH_PRUNE_PARTS", "size,count").split(","))
"""Which parts to run: ``size``, ``count`` (both by default)."""
FULL_COUNTS = (10, 1_000, 10_000)
TOY_COUNTS = (10, 50)
SAVES = 16


def _write_checkpoint(path: Path, size: int, step: int, block: bytes) -> None:
    path.mkdir(parents=True)
    written, index = 0, 0
    while written < size:
        n = min(SHARD, size - written)
        with open(path / f"shard-{index:05d}.bin", "wb") as f:
            for off in range(0, n, len(block)):
                f.write(block[: min(len(block), n - off)])
        written += n
        index += 1
    for i in range(SMALL_FILES):
        (path / f"rng_state_{i}.pth").write_bytes(block[: 4096 + 97 * i])
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))


class RunDirs:
    """Fresh run directories, each with one large old checkpoint and two small new ones."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.block = os.urandom(4 * MiB)
        self.count = 0

    def make(self, size: int) -> Path:
        self.count += 1
        run = self.root / f"run{self.count}"
        _write_checkpoint(run / "checkpoint-100", size, 100, self.block)
        for step in (200, 300):
            _write_checkpoint(run / f"checkpoint-{step}", 1 * MiB, step, self.block)
        os.sync()
        return run


def _loop(seconds_hint: float) -> Callable[[], None]:
    """A fixed stretch of 'training', calibrated once to ~``seconds_hint``.

    Small torch ops driven from Python on ONE thread: like the Trainer's own loop it needs the
    GIL between ops, so a deleter thread that holds the GIL shows up here, and with one thread a
    busy neighbour on the other core does not stretch it the way a 2-thread OpenMP region would.
    """
    import torch

    a = torch.randn(64, 64)

    def body(iters: int) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            b = a
            for _ in range(iters):
                b = torch.tanh(b @ a)
        finally:
            torch.set_num_threads(threads)

    t0 = time.perf_counter()
    body(200)
    per = (time.perf_counter() - t0) / 200
    iters = max(1, int(seconds_hint / max(per, 1e-7)))

    def loop() -> None:
        body(iters)

    return loop


def _pruner(run: Path, global_step: int, **options: Any) -> tuple[Any, Any, Any, Any]:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from trainer_callbacks.checkpoint.callback import CheckpointPruner

    args = TrainingArguments(output_dir=str(run), report_to="none", use_cpu=True, save_strategy="steps", save_steps=100)
    state = TrainerState(global_step=global_step, max_steps=10**9, save_steps=100)
    state.is_world_process_zero = True
    return CheckpointPruner(**options), args, state, TrainerControl()


def _steps(step: Callable[[], None], count: int, until: Callable[[], bool] | None = None) -> tuple[list[float], int]:
    """Step times of ``count`` steps, then more until ``until()`` (their count is returned, not their times)."""
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    extra = 0
    while until is not None and not until():
        step()
        extra += 1
    return times, extra


ARMS = ("no prune (control)", "pruner (child process)", "pruner (thread, 0.2 before)")
"""The size benchmark's arms: the product's default (the deleter in a child process) and, for comparison, the same
paced deletion on a nice-19 thread of the training process (as before issue 18 §1's last change)."""
SETTLE = 2.0
"""Seconds between writing a round's checkpoints (synced) and its first arm."""


def _thread_counters() -> tuple[float, int, float] | None:
    """(run-queue wait, voluntary context switches, CPU time) of the calling thread on Linux, else None.

    A CPU-bound loop switches out voluntarily only to wait for something: here, the GIL (CPython's forced switch
    makes the holder wait until the asker has taken it). The run-queue wait is CPU taken by others on its core.
    Wall time minus the thread's CPU time is all the time it could not run (GIL, run queue, the VM's steal).
    """
    try:
        with open("/proc/thread-self/schedstat") as f:
            wait_ns = int(f.read().split()[1])
        with open("/proc/thread-self/status") as f:
            switches = next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return wait_ns / 1e9, switches, time.thread_time()


def _counted_steps(
    step: Callable[[], None], count: int, until: Callable[[], bool] | None = None
) -> tuple[list[float], int, tuple[float, int, float] | None]:
    """:func:`_steps`, and the loop thread's (run-queue wait, voluntary switches, off-CPU time) over them."""
    before, t0 = _thread_counters(), time.perf_counter()
    times, extra = _steps(step, count, until)
    after, wall = _thread_counters(), time.perf_counter() - t0
    if before is None or after is None:
        return times, extra, None
    return times, extra, (after[0] - before[0], after[1] - before[1], wall - (after[2] - before[2]))


def _size_round(
    dirs: RunDirs, size: int, step: Callable[[], None], steps: int, interval: float, order: tuple[str, ...]
) -> dict[str, Any]:
    """One round: the checkpoints are written (and synced) first, then the arms run in ``order``."""
    from trainer_callbacks.checkpoint.deletion import Deleter

    runs = {arm: dirs.make(size) for arm in ARMS[1:]}
    time.sleep(SETTLE)  # a real checkpoint was written a save interval before it is pruned
    out: dict[str, Any] = {}
    for arm in order:
        if arm == ARMS[0]:  # the same steps, no prune
            times, _, counters = _counted_steps(step, steps)
            out[arm] = {"steps": times, "block": 0.0, "late_steps": 0, "counters": counters}
            continue
        run = runs[arm]
        # a run that took ``interval`` seconds for the last 100 steps, saving every 100
        pruner, args, state, control = _pruner(run, 300)
        if arm == ARMS[2]:
            pruner._deleter = Deleter(background=True, process=False)
        pruner.setup_run(args, state, control)
        child = pruner._deleter._child
        if child:  # started at train begin; in a real run it is ready long before the first prune
            child.ready.wait(30)
        pruner._deleter._last = (pruner._deleter.clock() - interval, 200)  # the last save, one interval ago
        state.global_step = 300
        t0 = time.perf_counter()
        pruner.on_save(args, state, control)
        block = time.perf_counter() - t0
        deleter = pruner._deleter
        times, extra, counters = _counted_steps(step, steps, until=lambda d=deleter: d.pending() == 0)
        pruner.wait()
        if (run / "checkpoint-100").exists() or pruner.last_decision is None or 100 not in pruner.last_decision.deleted:
            raise RuntimeError("CheckpointPruner did not delete checkpoint-100")
        out[arm] = {"steps": times, "block": block, "late_steps": extra, "counters": counters}
        pruner.on_train_end(args, state, control)
        shutil.rmtree(run)
    return out


def _count_dir(root: Path, count: int) -> Path:
    run = root / f"count{count}"
    run.mkdir()
    for k in range(1, count + 1):
        path = run / f"checkpoint-{100 * k}"
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"w")
        (path / "trainer_state.json").write_text("{}")
    return run


def _count_series(root: Path, counts: tuple[int, ...], saves: int, age: bool = True) -> dict[int, dict[str, Any]]:
    """First scan, per-save blocking time and one background reconciliation for each count, the saves interleaved.

    One run directory per count, each with its own pruner; save ``k`` of every count runs before save ``k+1`` of
    any, in an order reversed every other round, so a change in the machine's load hits every count alike.
    """
    from trainer_callbacks.checkpoint.scan import Scanner

    runs = {count: _count_dir(root, count) for count in counts}
    if age:  # untimed: old checkpoints were written long before train begin
        time.sleep(Scanner.RACY_SECONDS + 0.2)
    arms: dict[int, dict[str, Any]] = {}
    for count in counts:
        pruner, args, state, control = _pruner(
            runs[count], 100 * count, keep_last=2, keep_best=0, keep_every_n_steps=100
        )
        t0 = time.perf_counter()
        pruner.setup_run(args, state, control)
        arms[count] = {"first": time.perf_counter() - t0, "blocks": [], "pruner": (pruner, args, state, control)}

    def settle(index: Any) -> None:  # the background reconciliation finishes during the save and the steps around it
        if index._future is not None:
            index._future.result()

    for k in range(1, saves + 1):
        for count in counts if k % 2 else tuple(reversed(counts)):
            pruner, args, state, control = arms[count]["pruner"]
            step = 100 * count + 5 * k  # inside the last milestone's window: each deleted two saves later
            control.should_save = True
            pruner.on_step_end(args, state, control)  # the Trainer's flow decided to save: reconcile meanwhile
            path = runs[count] / f"checkpoint-{step}"
            path.mkdir()
            (path / "model.safetensors").write_bytes(b"w")
            (path / "trainer_state.json").write_text("{}")
            settle(pruner._index)
            state.global_step = step
            t0 = time.perf_counter()
            pruner.on_save(args, state, control)
            arms[count]["blocks"].append(time.perf_counter() - t0)
            settle(pruner._index)
            pruner.wait()
    for count in counts:
        pruner, args, state, control = arms[count].pop("pruner")
        index = pruner._index
        snapshot = index.scanner.snapshot(runs[count])
        assert snapshot is not None
        snapshot.stamp = None  # list it, as after every save
        t0 = time.perf_counter()
        index.scanner.compute(snapshot)
        arms[count]["background"] = time.perf_counter() - t0
        index.scanner.abandon()
        arms[count].update(listings=index.scanner.listings, checks=index.checked / saves, stale=index.stale_rounds)
        pruner.on_train_end(args, state, control)
        shutil.rmtree(runs[count])
    return arms


def run(quick: bool = False) -> BenchResult:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    sizes = (TOY_SIZES if quick else FULL_SIZES) if "size" in PARTS else ()
    rounds = 1 if quick else len(ARMS)
    interval = 1.0 if quick else INTERVAL
    step = _loop(STEP)
    steps = max(2, int(interval / STEP))
    base = Path(os.environ.get("BENCH_PRUNE_DIR") or tempfile.gettempdir())
    free = shutil.disk_usage(base).free
    result = BenchResult(
        name="pruning",
        title="Pruning: what a prune costs the training loop, by checkpoint size and by checkpoint count",
        setup={
            "checkpoint": f"real bytes in {SHARD // MiB} MiB shards + {SMALL_FILES + 2} small files, synced to disk",
            "sizes": ", ".join(f"{s / GiB:g} GiB" for s in sizes) + f" (free disk before: {free / GiB:.0f} GiB)",
            "save interval": f"{interval:g} s (the deleter aims to be done after half of it)",
            "loop": f"{steps} fixed steps of ~{STEP * 1e3:.0f} ms (small torch ops driven from Python on one thread) "
            "right after the call, then more until the deletion is done",
            "rounds": f"{rounds} rounds per size; in each, both pruners' checkpoints are written and synced, then "
            f"after {SETTLE:g} s the arms run one after the other, each arm first in one round",
            "counts": ", ".join(f"{c:,}" for c in (TOY_COUNTS if quick else FULL_COUNTS))
            + f" milestone checkpoints, {SAVES} saves each",
        },
    )
    same_disk = os.stat(base).st_dev == os.stat(Path(__file__).resolve().parent).st_dev
    result.setup["directory"] = f"a temporary directory under {base} ({'same' if same_disk else 'NOT the same'} " + (
        "filesystem as the repository)"
    )
    rows: list[list[str]] = []
    size_goal: list[tuple[str, float, float, float]] = []
    direct: list[str] = []
    """What the child-process arm took from the loop's thread, directly, per size (GIL waits, run-queue wait)."""
    worst_off_cpu = 0.0
    spreads: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-prune-", dir=base) as tmp:
        dirs = RunDirs(Path(tmp))
        if sizes:
            _size_round(dirs, MiB, step, 2, 0.1, ARMS)  # warm-up: imports, first thread start (untimed)
        for size in sizes:
            label = f"{size / GiB:g} GiB" if size >= GiB else f"{size // MiB}MiB"
            key = f"{size // MiB}MiB"
            if shutil.disk_usage(base).free < size * 2.4 + 4 * GiB:
                result.notes.append(f"{label}: skipped, not enough free disk space under {base}")
                continue
            data = []
            for r in range(rounds):
                order = ARMS[r % len(ARMS) :] + ARMS[: r % len(ARMS)]  # each arm first in turn
                data.append(_size_round(dirs, size, step, steps, interval, order))
            for arm in ARMS[1:]:
                added, blocks, worst_ratio, late, control_worst = [], [], [], [], []
                waits, switches, off_cpu = [], [], []
                for d in data:
                    ctrl, prn = d[ARMS[0]], d[arm]
                    control_median = statistics.median(ctrl["steps"])
                    added.append(prn["block"] + sum(prn["steps"]) - sum(ctrl["steps"]))
                    blocks.append(prn["block"])
                    worst_ratio.append(max(prn["steps"]) / control_median)
                    control_worst.append(max(ctrl["steps"]) / control_median)
                    late.append(prn["late_steps"])
                    if prn["counters"] is not None and ctrl["counters"] is not None:
                        waits.append(prn["counters"][0] - ctrl["counters"][0])
                        switches.append(prn["counters"][1] - ctrl["counters"][1])
                        off_cpu.append(prn["counters"][2] - ctrl["counters"][2])
                med_added, med_block = statistics.median(added), statistics.median(blocks)
                med_worst = statistics.median(worst_ratio)
                short = "child" if arm == ARMS[1] else "thread"
                result.medians[f"{key}/{short}/block"] = max(med_block, 1e-9)
                result.medians[f"{key}/{short}/added"] = max(abs(med_added), 1e-9)
                result.medians[f"{key}/{short}/slowest step / control median"] = max(med_worst, 1e-9)
                if arm == ARMS[1]:
                    size_goal.append((label, med_added, med_worst, med_block))
                    spreads.append(f"{label}: {min(added) * 1e3:+.0f}..{max(added) * 1e3:+.0f} ms")
                    if switches and waits:
                        worst_off_cpu = max(worst_off_cpu, statistics.median(off_cpu))
                        direct.append(
                            f"{label}: {statistics.median(switches):+g} GIL waits, "
                            f"{_signed(statistics.median(waits))} of run-queue wait, "
                            f"{_signed(statistics.median(off_cpu))} off the CPU in all"
                        )
                steps_time = steps * statistics.median(statistics.median(d[ARMS[0]]["steps"]) for d in data)
                rows.append(
                    [
                        label,
                        arm,
                        fmt_time(med_block),
                        _signed(med_added),
                        f"{min(added) * 1e3:+.1f}..{max(added) * 1e3:+.1f} ms",
                        f"{med_added / steps_time * 100:+.2f}%",
                        f"{med_worst:.2f}x (max {max(worst_ratio):.2f}x)",
                        f"{statistics.median(control_worst):.2f}x",
                        f"{statistics.median(switches):+g}" if switches else "n/a",
                        _signed(statistics.median(waits)) if waits else "n/a",
                        f"{_signed(statistics.median(off_cpu))} ({_signed(min(off_cpu))}..{_signed(max(off_cpu))})"
                        if off_cpu
                        else "n/a",
                        f"{statistics.median(late):g}",
                    ]
                )
        counts = (TOY_COUNTS if quick else FULL_COUNTS) if "count" in PARTS else ()
        count_rows: list[list[str]] = []
        series = _count_series(Path(tmp), counts, SAVES, age=not quick) if counts else {}
    if not sizes:
        result.setup["sizes"] = "not run (BENCH_PRUNE_PARTS)"
    if rows:
        result.tables.append(
            Table(
                "One prune deleting the old checkpoint (medians over rounds; control = the same steps, no prune)",
                [
                    "checkpoint",
                    "arm",
                    "blocks the loop",
                    "whole-loop cost over control",
                    "min..max",
                    "as a share of the steps' time",
                    "slowest step while deleting / control median step",
                    "the control's own slowest / median step",
                    "loop thread's waits for the GIL over control (voluntary switches)",
                    "loop thread's run-queue wait over control",
                    "loop thread's time off the CPU over control (min..max)",
                    "steps after the fixed ones until deleted",
                ],
                rows,
            )
        )
    ref = statistics.median(series[counts[0]]["blocks"]) if counts else 0.0
    for c in counts:
        data = series[c]
        med = statistics.median(data["blocks"])
        ratios = [b / a for a, b in zip(series[counts[0]]["blocks"], data["blocks"])]
        result.medians[f"{c} folders/block"] = max(med, 1e-9)
        result.medians[f"{c} folders/first scan"] = max(data["first"], 1e-9)
        count_rows.append(
            [
                f"{c:,}",
                fmt_time(data["first"]),
                fmt_time(med),
                f"{fmt_time(min(data['blocks']))}-{fmt_time(max(data['blocks']))}",
                f"{statistics.median(ratios):.2f}x ({_spread(ratios)})",
                f"{data['checks']:g} ({data['stale']} stale)",
                fmt_time(data["background"]),
                f"{data['listings']}",
            ]
        )
        result.medians[f"{c} folders/background reconciliation"] = max(data["background"], 1e-9)
    if counts:
        result.tables.append(
            Table(
                f"Blocking time of a prune by number of checkpoints ({SAVES} saves; ratio against {counts[0]} folders)",
                [
                    "folders",
                    "first scan (train begin)",
                    "per prune (median)",
                    "min-max",
                    f"per-round ratio vs {counts[0]} (median; IQR, min-max)",
                    "folders lstat-ed per prune (decisions re-taken)",
                    "one background reconciliation (off the loop)",
                    f"listings (1 at train begin, then in the background: 1 per save of {SAVES})",
                ],
                count_rows,
            )
        )
    if size_goal:
        worst_added = max(a for _, a, _, _ in size_goal)
        worst_step = max(w for _, _, w, _ in size_goal)
        met = worst_added < 0.005 and worst_off_cpu < 0.005
        result.goals.append(
            Goal(
                text="a prune costs the loop < 5 ms over the no-prune control at every size (1, 4, 16 GiB): the "
                "whole loop's time, and the loop thread's time off the CPU (the part that does not drift)",
                measured=", ".join(f"{lbl}: {_signed(a)} (blocks {fmt_time(b)})" for lbl, a, _, b in size_goal)
                + "; directly: "
                + ("; ".join(direct) if direct else "n/a"),
                met=met,
                why=""
                if met
                else "the whole-loop figure varies between rounds by far more than 5 ms on this VM ("
                + "; ".join(spreads)
                + "; the thread arm alike: the loop's own speed drifts by a few % between arms), so it cannot "
                "resolve 5 ms either way; the loop thread's time off the CPU does not drift that way and is the "
                "figure to judge: "
                + (f"{_signed(worst_off_cpu)} at the worst size" if direct else "not available on this OS")
                + " (last columns of the size table; GIL waits, run-queue wait, and the rest: the VM's steal)",
            )
        )
        result.goals.append(
            Goal(
                text="no step slower than twice the control's median step while a deletion runs",
                measured=", ".join(f"{lbl}: {w:.2f}x" for lbl, _, w, _ in size_goal),
                met=worst_step < 2.0,
                why=""
                if worst_step < 2.0
                else "compare with the control's own slowest step over its median (size table): under the other work "
                "on this machine single steps of the loop vary by that much without any deletion",
            )
        )
    big = statistics.median(series[counts[-1]]["blocks"]) if counts else 0.0
    big_ratio = (
        statistics.median([b / a for a, b in zip(series[counts[0]]["blocks"], series[counts[-1]]["blocks"])])
        if counts
        else 0.0
    )
    if counts:
        result.goals.append(
            Goal(
                text="blocking time of a prune independent of the number of checkpoints "
                f"({counts[0]} to {counts[-1]:,})",
                measured=f"{fmt_time(ref)} at {counts[0]}, {fmt_time(big)} at {counts[-1]:,} (median of the per-round "
                f"ratios {big_ratio:.2f}x)",
                met=big_ratio < 2.0,
                why=""
                if big_ratio < 2.0
                else "what runs on the training thread is O(changes) by construction (the index update, the "
                "incremental decision, the on-disk checks of its witnesses, one rename; tests count what a save looks "
                "at), but with 10,000 folders each of those parts measured 1.3-2x slower (timed one by one, "
                "interleaved): a few tenths of a ms in all, not a per-folder cost; not yet explained further "
                "(larger dicts and directory: cache misses is a guess)",
            )
        )
    result.notes.append(
        "'whole-loop cost' is (call + the fixed steps) - (the control's fixed steps) in the same round: it includes "
        "the deleter thread's CPU and disk contention while it runs within those steps, and the loop's own "
        "run-to-run noise. The deleter aims to finish half-way to the next save; a deletion still running after the "
        "fixed steps is counted in the last column."
    )
    result.wall_seconds = time.perf_counter() - started
    return result


def _spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return f"IQR {q[0]:.2f}-{q[2]:.2f}, min-max {min(values):.2f}-{max(values):.2f}"


def _signed(seconds: float) -> str:
    return ("-" if seconds < 0 else "") + fmt_time(abs(seconds))


def describe(data: dict[str, Any]) -> str:  # pragma: no cover - debugging aid
    return json.dumps(data, indent=1)
