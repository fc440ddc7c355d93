"""Benchmark 4: training-loop time added by one prune of a large checkpoint.

A run directory holds ``checkpoint-100`` (the one to delete: ``size`` bytes of real,
non-sparse data in 16 MiB shard files plus 48 small files, like a sharded model and optimizer
checkpoint) and the two newest, small ``checkpoint-200`` and ``checkpoint-300``; the data is
synced to disk before timing (a real checkpoint was written one save interval earlier). It
lives in a temporary directory on the same disk as the checkpoints a run would write. Arms,
interleaved per round, each on a fresh copy of that directory:

* ``trainer rotation``: ``transformers.trainer_utils.rotate_checkpoints(save_total_limit=2)``,
  what the Trainer runs synchronously after a save (glob, sort, ``shutil.rmtree``);
* ``pruner background``: ``CheckpointPruner()`` (defaults: ``keep_last=2``, background
  deletion) ``on_save`` at step 300, with a real ``TrainingArguments``/``TrainerState``.

Two figures per arm: the time the call blocks the training thread, and the time it adds to
the next stretch of training (the call plus a fixed CPU-bound loop of small torch matmuls,
minus the same loop with no prune, measured in the same round): the second includes the
background thread's contention for the CPU and the disk.
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

from bench.common import BenchResult, Goal, Table, fmt_time, quantile

MiB = 1 << 20
SHARD = 16 * MiB
SMALL_FILES = 48
FULL_SIZES = (64 * MiB, 256 * MiB, 1024 * MiB)
TOY_SIZES = (2 * MiB,)


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


def _pruner_arm(run: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from trainer_callbacks.checkpoint.callback import CheckpointPruner

    args = TrainingArguments(output_dir=str(run), report_to="none", use_cpu=True, save_strategy="steps")
    state = TrainerState(global_step=300, max_steps=1000)
    state.is_world_process_zero = True
    control = TrainerControl()
    pruner = CheckpointPruner()
    pruner.setup_run(args, state, control)

    def call() -> None:
        pruner.on_save(args, state, control)

    def finish() -> None:
        pruner.wait()
        if (run / "checkpoint-100").exists() or pruner.last_decision is None or 100 not in pruner.last_decision.deleted:
            raise RuntimeError("CheckpointPruner did not delete checkpoint-100")

    return call, finish


def _rotation_arm(run: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    from transformers.trainer_utils import rotate_checkpoints

    def call() -> None:
        rotate_checkpoints(str(run), save_total_limit=2)

    def finish() -> None:
        if (run / "checkpoint-100").exists():
            raise RuntimeError("rotate_checkpoints did not delete checkpoint-100")

    return call, finish


def _control_arm(run: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    """No prune at all: its 'added' figure is the loop's own run-to-run noise."""
    return (lambda: None), (lambda: None)


ARMS: dict[str, Callable[[Path], tuple[Callable[[], None], Callable[[], None]]]] = {
    "no prune (control)": _control_arm,
    "trainer rotation (sync rmtree)": _rotation_arm,
    "pruner background": _pruner_arm,
}


def _measure(dirs: RunDirs, size: int, rounds: int, loop: Callable[[], None]) -> dict[str, dict[str, list[float]]]:
    """Per arm: 'block' (seconds the call blocks) and 'added' (call + loop - loop alone) per round."""
    names = list(ARMS)
    out: dict[str, dict[str, list[float]]] = {n: {"block": [], "added": []} for n in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            run = dirs.make(size if name != "no prune (control)" else MiB)
            call, finish = ARMS[name](run)
            t0 = time.perf_counter()
            loop()
            alone = time.perf_counter() - t0
            t0 = time.perf_counter()
            call()
            t1 = time.perf_counter()
            loop()
            t2 = time.perf_counter()
            finish()
            shutil.rmtree(run)
            out[name]["block"].append(t1 - t0)
            out[name]["added"].append((t2 - t0) - alone)
    return out


def run(quick: bool = False) -> BenchResult:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    sizes = TOY_SIZES if quick else FULL_SIZES
    rounds = 1 if quick else 4
    loop = _loop(0.01 if quick else 0.5)
    result = BenchResult(
        name="pruning",
        title="Pruning: training-loop time added by one prune",
        setup={
            "checkpoint": f"real bytes in {SHARD // MiB} MiB shards + {SMALL_FILES + 2} small files, synced to disk",
            "sizes": ", ".join(f"{s // MiB} MiB" for s in sizes),
            "loop": "a fixed Python-driven loop of small torch ops on one thread (~0.5 s), run right after the call "
            "and alone in the same round",
            "rounds": f"{rounds} interleaved rounds per size, a fresh run directory per arm per round",
        },
    )
    base = Path(os.environ.get("BENCH_PRUNE_DIR") or tempfile.gettempdir())
    rows: list[list[str]] = []
    worst_block: dict[str, float] = {}
    raw_added: dict[str, float] = {}
    same_disk = os.stat(base).st_dev == os.stat(Path(__file__).resolve().parent).st_dev
    result.setup["directory"] = f"a temporary directory under {base} ({'same' if same_disk else 'NOT the same'} " + (
        "filesystem as the repository)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-prune-", dir=base) as tmp:
        dirs = RunDirs(Path(tmp))
        _measure(dirs, MiB, 1, loop)  # warm-up: imports, first thread start, first scan (untimed)
        for size in sizes:
            files = -(-size // SHARD) + SMALL_FILES + 2
            data = _measure(dirs, size, rounds, loop)
            for name, series in data.items():
                block, added = statistics.median(series["block"]), statistics.median(series["added"])
                result.medians[f"{size // MiB}MiB/{name}/block"] = block
                result.medians[f"{size // MiB}MiB/{name}/added"] = max(added, 1e-9)
                worst_block[name] = max(worst_block.get(name, 0.0), block)
                raw_added[f"{size // MiB}MiB/{name}"] = added
                rows.append(
                    [
                        f"{size // MiB} MiB ({files} files)",
                        name,
                        fmt_time(block),
                        f"{fmt_time(min(series['block']))}-{fmt_time(max(series['block']))}",
                        _signed(added),
                        f"IQR {_signed(quantile(series['added'], 0.25))}..{_signed(quantile(series['added'], 0.75))}",
                    ]
                )
    result.tables.append(
        Table(
            "One prune deleting the old checkpoint (medians over rounds)",
            ["checkpoint", "arm", "blocks the loop", "min-max", "added to the loop", "spread of added"],
            rows,
        )
    )
    pruner = worst_block.get("pruner background")
    if pruner is not None:
        blocks = [result.medians[f"{s // MiB}MiB/pruner background/block"] for s in sizes]
        added = [raw_added[f"{s // MiB}MiB/pruner background"] for s in sizes]
        noise = [raw_added[f"{s // MiB}MiB/no prune (control)"] for s in sizes]
        excess = max(a - n for a, n in zip(added, noise))
        sync = [result.medians[f"{s // MiB}MiB/trainer rotation (sync rmtree)/block"] for s in sizes]
        sizes_text = ", ".join(f"{s // MiB} MiB" for s in sizes)
        result.goals.append(
            Goal(
                text="one background prune adds < 5 ms to the training loop, independent of checkpoint size",
                measured=f"blocks the loop {', '.join(fmt_time(b) for b in blocks)} for {sizes_text} "
                f"(Trainer's sync rotation: {', '.join(fmt_time(b) for b in sync)}); whole loop incl. the deleter "
                f"thread's contention: {', '.join(_signed(a) for a in added)} "
                f"(no-prune control: {', '.join(_signed(n) for n in noise)})",
                met=pruner < 0.005 and excess < 0.005,
                why=f"blocking (scan + rename + submit) is {fmt_time(pruner)} at most and does not grow with size"
                + (
                    ""
                    if excess < 0.005
                    else f"; but freeing the checkpoint still slows the loop by up to {fmt_time(excess)} over the "
                    "control, growing with size: the deleter thread already runs at nice 19 (it cost up to 33 ms "
                    "before), what remains is the kernel freeing the files' blocks (journal and page-cache work "
                    "outside the thread's priority) on a 2-core machine, the same work the Trainer's synchronous "
                    "rotation does inside the loop"
                ),
            )
        )
    result.notes.append(
        "'added to the loop' is (call + loop) - (loop alone) in the same round: it includes the deleter thread's "
        "CPU and disk contention, and carries the loop's own run-to-run noise (a few ms)."
    )
    result.wall_seconds = time.perf_counter() - started
    return result


def _signed(seconds: float) -> str:
    return ("-" if seconds < 0 else "") + fmt_time(abs(seconds))


def describe(data: dict[str, Any]) -> str:  # pragma: no cover - debugging aid
    return json.dumps(data, indent=1)
