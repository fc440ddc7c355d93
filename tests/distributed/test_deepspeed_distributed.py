"""Every first-party plugin under DeepSpeed ZeRO 1, 2 and 3, through the Trainer, on CPU.

DeepSpeed's CPU accelerator (``DS_ACCELERATOR=cpu``) runs ZeRO on gloo, as DeepSpeed's own CPU CI
does; ``run_all_plugins.py zero<N>`` keeps it on plain gloo (no JIT-compiled op). Each stage runs
``torchrun --nproc_per_node=2`` with the same model, data and global batch (16) as the
single-process run of ``run_all_plugins.py single``, so:

* gradviz's ``grad_norm/<group>`` equal the single process's (ZeRO averages the gradients over
  the data-parallel ranks as DDP does): an oracle independent of DeepSpeed, and the groups'
  squares sum to DeepSpeed's own pre-clip global norm (the Trainer's logged ``grad_norm``);
* every rank stops at the same step and holds the same LRs (the plateau rule reduced them), in
  the param groups DeepSpeed's ZeRO optimizer steps with;
* only the saving process prunes, the kept checkpoints are the policy's, and each kept folder is
  one complete unit (its ``global_stepN`` folder and ``latest`` file), which the Trainer resumes from.

Skipped when deepspeed is not importable. Measured here (2 busy cores): about 60 s a stage.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest


def _ddp_helpers() -> Any:
    """The DDP test's helpers (run_all, ranks, ...), loaded by path: the tests folder is not a package."""
    spec = importlib.util.spec_from_file_location(
        "_all_plugins_distributed", Path(__file__).with_name("test_all_plugins_distributed.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_h = _ddp_helpers()
SCRIPT, TORCHRUN = _h.SCRIPT, _h.TORCHRUN
checkpoints, expected_kept, free_port, grad_norms, ranks, run_all = (
    _h.checkpoints,
    _h.expected_kept,
    _h.free_port,
    _h.grad_norms,
    _h.ranks,
    _h.run_all,
)

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("deepspeed") is None,
        reason="deepspeed is not installed (DS_BUILD_OPS=0 pip install -r requirements-dev.txt installs it)",
    ),
]

STAGES = (1, 2, 3)


@pytest.fixture(scope="module", autouse=True)
def _cpu_accelerator() -> Any:
    old = os.environ.get("DS_ACCELERATOR")
    os.environ["DS_ACCELERATOR"] = "cpu"  # inherited by the torchrun processes
    yield
    if old is None:
        os.environ.pop("DS_ACCELERATOR", None)
    else:
        os.environ["DS_ACCELERATOR"] = old


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("single")
    run_all([[sys.executable, str(SCRIPT), "single", str(out)]], cwd=out)
    return ranks(out, 1)[0]


@pytest.fixture(scope="module", params=STAGES, ids=[f"zero{s}" for s in STAGES])
def zero_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[Any], Path]:
    stage = request.param
    out = tmp_path_factory.mktemp(f"zero{stage}")
    run_all(
        [
            [
                str(TORCHRUN),
                "--nproc_per_node=2",
                "--master_addr=127.0.0.1",
                f"--master_port={free_port()}",
                str(SCRIPT),
                f"zero{stage}",
                str(out),
            ]
        ],
        cwd=out,
    )
    return stage, ranks(out, 2), out


def test_group_norms_sum_to_deepspeeds_global_norm(zero_run: Any) -> None:
    _, (r0, r1), _ = zero_run
    for result in (r0, r1):
        groups = grad_norms(result)
        totals = {e["step"]: e["grad_norm"] for e in result["log_history"] if "grad_norm" in e}
        steps = sorted({step for step, _ in groups})
        assert len(steps) >= 3
        for step in steps:
            squares = sum(v * v for (s, _), v in groups.items() if s == step)
            assert math.sqrt(squares) == pytest.approx(totals[step], rel=1e-4), step
    assert grad_norms(r1) == grad_norms(r0)  # one all-reduce: every rank logs the same numbers


def test_group_norms_equal_a_single_process_run(zero_run: Any, single: dict[str, Any]) -> None:
    _, (r0, _), _ = zero_run
    multi, ref = grad_norms(r0), grad_norms(single)
    common = sorted(set(multi) & set(ref))
    assert len({step for step, _ in common}) >= 3 and len({group for _, group in common}) >= 3
    for key in common:
        assert multi[key] == pytest.approx(ref[key], rel=1e-4), key


def test_every_rank_stops_at_the_same_step_with_the_same_lrs(zero_run: Any) -> None:
    _, (r0, r1), _ = zero_run
    assert r0["global_step"] == r1["global_step"] < 60  # early stopping acted on both ranks at once
    assert r0["lrs"] == r1["lrs"]
    peaks = sorted({lr for _, lrs in r0["lrs"] for lr in lrs}, reverse=True)
    assert len(peaks) >= 2 and peaks[1] == pytest.approx(peaks[0] * 0.5)  # the plateau rule reduced them


def test_only_the_saving_process_prunes_whole_deepspeed_checkpoints(zero_run: Any) -> None:
    _, (r0, r1), out = zero_run
    assert (r0["should_save"], r1["should_save"]) == (True, False)
    assert r1["deletion_calls"] == [] and r0["deletion_calls"]
    run = out / "run"
    kept = checkpoints(run)
    assert kept == expected_kept(r0)
    for name in kept:  # each kept checkpoint is one complete unit DeepSpeed can load
        folder = run / name
        step = int(name.split("-")[1])
        assert (folder / "latest").read_text().strip() == f"global_step{step}"
        assert (folder / f"global_step{step}").is_dir() and any((folder / f"global_step{step}").iterdir())
    assert not [p.name for p in run.iterdir() if p.name.startswith(".checkpoint-")]
