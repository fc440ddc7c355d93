"""Training-loop time added by one prune that deletes a large checkpoint of many files.

Usage: ``python packages/callbacks-checkpoint/bench/bench_prune.py [--size-mib 1024] [--rounds 3] [--dir PATH]``

Each round builds a run directory holding ``checkpoint-100`` (``--size-mib`` of real,
non-sparse data in 4 MiB files plus 64 small files, synced to disk) and two small newer
checkpoints, then times, on a fresh copy each:

* ``trainer rotation``: ``transformers.trainer_utils.rotate_checkpoints(save_total_limit=2)``,
  what ``Trainer._save_checkpoint`` runs synchronously on the training thread;
* ``pruner sync``: ``CheckpointPruner(background=False).on_save`` (rename + ``rmtree`` inline);
* ``pruner background``: ``CheckpointPruner().on_save`` (rename inline, ``rmtree`` on its thread):
  the time ``on_save`` blocks the caller; the background removal is then awaited untimed.

Prints the median and the max over rounds, per arm. The whole-project benchmark with CPU
contention lives in ``bench/pruning.py`` (``make bench``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

MiB = 1 << 20


def write_checkpoint(path: Path, size: int, step: int, block: bytes) -> None:
    path.mkdir(parents=True)
    for i in range(max(1, size // len(block))):
        (path / f"model-{i:05d}.safetensors").write_bytes(block)
    for i in range(64):
        (path / f"rng_state_{i}.pth").write_bytes(block[: 4096 + 37 * i])
    (path / "model.safetensors.index.json").write_text("{}")
    (path / "trainer_state.json").write_text(f'{{"global_step": {step}, "log_history": []}}')


def make_run(root: Path, name: str, size: int, block: bytes) -> Path:
    run = root / name
    write_checkpoint(run / "checkpoint-100", size, 100, block)
    for step in (200, 300):
        write_checkpoint(run / f"checkpoint-{step}", 4 * MiB, step, block)
    os.sync()
    return run


def time_rotation(run: Path) -> float:
    from transformers.trainer_utils import rotate_checkpoints

    start = time.perf_counter()
    rotate_checkpoints(str(run), save_total_limit=2, use_mtime=True)
    elapsed = time.perf_counter() - start
    assert not (run / "checkpoint-100").exists()
    return elapsed


def time_pruner(run: Path, background: bool) -> float:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from trainer_callbacks.checkpoint import CheckpointPruner

    args = TrainingArguments(output_dir=str(run), use_cpu=True, report_to="none", save_strategy="steps")
    state = TrainerState(global_step=300)
    cb = CheckpointPruner(background=background)
    cb.on_train_begin(args, state, TrainerControl())
    start = time.perf_counter()
    cb.on_save(args, state, TrainerControl())
    elapsed = time.perf_counter() - start
    cb.on_train_end(args, state, TrainerControl())  # waits for the removal (untimed)
    assert sorted(os.listdir(run)) == ["checkpoint-200", "checkpoint-300"], os.listdir(run)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir); use the checkpoint disk")
    opts = parser.parse_args()
    block = os.urandom(4 * MiB)
    arms = {
        "trainer rotation (sync rmtree)": time_rotation,
        "pruner background=False": lambda run: time_pruner(run, False),
        "pruner background=True": lambda run: time_pruner(run, True),
    }
    samples: dict[str, list[float]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        for r in range(opts.rounds):
            order = list(arms) if r % 2 == 0 else list(reversed(arms))
            for name in order:
                run = make_run(Path(tmp), f"r{r}-{len(samples[name])}-{abs(hash(name))}", opts.size_mib * MiB, block)
                samples[name].append(arms[name](run))
                shutil.rmtree(run)
    files = opts.size_mib * MiB // len(block) + 67
    print(f"prune of one {opts.size_mib} MiB checkpoint ({files} files), {opts.rounds} rounds, dir={opts.dir or 'tmp'}")
    for name, values in samples.items():
        print(f"  {name:32s} median {statistics.median(values) * 1e3:9.2f} ms   max {max(values) * 1e3:9.2f} ms")


if __name__ == "__main__":
    main()
