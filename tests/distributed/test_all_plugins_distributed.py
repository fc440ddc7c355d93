"""Every first-party plugin together under torch.distributed on CPU (gloo), with ``torchrun``.

* DDP, 2 processes: every rank stops at the same step, the LR is identical on every rank after
  every step, only the saving process prunes (every rename/remove of a checkpoint folder is
  recorded per process), the folder ends as the keep-last-1 + keep-best-1 policy says, and the
  per-layer gradient norms equal a single-process run of the same global batch.
* Two "nodes" on 127.0.0.1 (two ``torchrun --nnodes=2`` agents, one process each) sharing one
  output dir with ``save_on_each_node=True``: both local main processes save into and prune the
  same folder; nothing crashes, every kept checkpoint is complete, nothing kept is lost.

Each run has hard timeouts (``ddp_timeout`` in the script, and the whole process group is killed
here when it runs past its limit), so a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("run_all_plugins.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")
MAX_STEPS, EVERY = 60, 4  # as in run_all_plugins.py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINER_CALLBACKS_", "MLFLOW_"))}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return env


def run_all(commands: list[list[str]], cwd: Path, timeout: float = 480) -> None:
    """Start every command in its own process group; kill all of them if any runs past ``timeout``.

    ``timeout`` guards against a hang, it does not check speed: a run took 49 s beside busy
    processes on 2 cores, so the guard is ten times that.
    """
    procs = [
        subprocess.Popen(
            cmd,
            cwd=cwd,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for cmd in commands
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"distributed run exceeded {timeout}s and was killed") from None
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-5000:]


def ranks(out: Path, n: int) -> list[dict[str, Any]]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(n)]


def grad_norms(result: dict[str, Any]) -> dict[tuple[int, str], float]:
    return {(e["step"], k): v for e in result["log_history"] for k, v in e.items() if k.startswith("grad_norm/")}


def expected_kept(result: dict[str, Any]) -> list[str]:
    """keep_last=1 + keep_best=1 by eval_loss (lower is better) over the saved steps, as the policy says.

    Kept: the last; the policy's best (ties: the newer checkpoint wins); and the Trainer's
    ``best_model_checkpoint`` (``metric_for_best_model="eval_loss"``: it moves only on a strict
    improvement, so it is the first of the lowest). Without ties these are two folders; bf16 and
    fp16 evaluations repeat values, and then the first and the last of the lowest are both kept.
    """
    evals = {e["step"]: e["eval_loss"] for e in result["log_history"] if "eval_loss" in e}
    saved = list(range(EVERY, result["global_step"] + 1, EVERY))
    lowest = [s for s in saved if evals[s] == min(evals[t] for t in saved)]
    return [f"checkpoint-{s}" for s in sorted({saved[-1], lowest[0], lowest[-1]})]


def checkpoints(folder: Path) -> list[str]:
    return sorted(
        (p.name for p in folder.iterdir() if p.name.startswith("checkpoint-")), key=lambda n: int(n.split("-")[1])
    )


@pytest.fixture(scope="module")
def ddp_and_single(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], dict[str, Any], Path]:
    ddp, single = tmp_path_factory.mktemp("ddp"), tmp_path_factory.mktemp("single")
    run_all(
        [
            [
                str(TORCHRUN),
                "--nproc_per_node=2",
                "--master_addr=127.0.0.1",
                f"--master_port={free_port()}",
                str(SCRIPT),
                "ddp",
                str(ddp),
            ],
            [sys.executable, str(SCRIPT), "single", str(single)],
        ],
        cwd=ddp,
    )
    return ranks(ddp, 2), ranks(single, 1)[0], ddp


def test_every_rank_stops_at_the_same_step(ddp_and_single: Any) -> None:
    (r0, r1), _, _ = ddp_and_single
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["global_step"] == r1["global_step"] < MAX_STEPS  # early stopping acted, on both ranks at once
    for result in (r0, r1):
        stops = [e["step"] for e in result["log_history"] if e.get("early_stopping/stopped") == 1]
        assert stops == [result["global_step"]]


def test_the_learning_rate_is_identical_on_every_rank(ddp_and_single: Any) -> None:
    (r0, r1), _, _ = ddp_and_single
    assert r0["lrs"] == r1["lrs"]
    peaks = sorted({lr for _, lrs in r0["lrs"] for lr in lrs}, reverse=True)
    assert len(peaks) >= 2 and peaks[1] == pytest.approx(peaks[0] * 0.5)  # the plateau rule reduced it


def test_only_the_saving_process_prunes(ddp_and_single: Any) -> None:
    (r0, r1), _, out = ddp_and_single
    assert (r0["should_save"], r1["should_save"]) == (True, False)
    assert r1["deletion_calls"] == [] and r1["pruner_progress"].get("deleted_total", 0) == 0
    assert r0["deletion_calls"] and r0["pruner_progress"]["deleted_total"] > 0
    assert checkpoints(out / "run") == expected_kept(r0)


def test_gradient_norms_equal_a_single_process_run_of_the_same_global_batch(ddp_and_single: Any) -> None:
    (r0, r1), single, _ = ddp_and_single
    multi, ref = grad_norms(r0), grad_norms(single)
    common = sorted(set(multi) & set(ref))
    assert len({step for step, _ in common}) >= 3 and len({group for _, group in common}) >= 3
    for key in common:
        assert multi[key] == pytest.approx(ref[key], rel=1e-4), key
    assert grad_norms(r1) == multi  # every rank logs the same (all-reduced) norms


def test_two_nodes_sharing_one_output_dir_both_prune_it(tmp_path: Path) -> None:
    port = free_port()
    run_all(
        [
            [
                str(TORCHRUN),
                "--nnodes=2",
                f"--node_rank={rank}",
                "--nproc_per_node=1",
                "--master_addr=127.0.0.1",
                f"--master_port={port}",
                str(SCRIPT),
                "nodes",
                str(tmp_path),
            ]
            for rank in (0, 1)
        ],
        cwd=tmp_path,
    )
    n0, n1 = ranks(tmp_path, 2)
    assert n0["should_save"] and n1["should_save"]  # save_on_each_node: each node's local main saves
    assert n0["global_step"] == n1["global_step"]
    assert n0["deletion_calls"] and n1["deletion_calls"]  # both local main processes pruned the folder
    run = tmp_path / "run"
    kept = checkpoints(run)
    assert kept == expected_kept(n0)
    for name in kept:  # nothing kept is lost or half-deleted
        files = {p.name for p in (run / name).iterdir()}
        assert {"model.safetensors", "trainer_state.json", "optimizer.pt", "config.json"} <= files
    # The contents are not checked: with save_on_each_node on one shared folder both Trainers write
    # the same files at once, and a torn trainer_state.json (seen here) is the Trainer's race, which
    # is why save_on_each_node is meant for node-local disks. The pruners only rename and delete.
    assert not [p.name for p in run.iterdir() if p.name.startswith(".checkpoint-")]  # no deletion left behind
