"""Every first-party plugin under DeepSpeed ZeRO 1, 2 and 3, through the Trainer, on CPU.

DeepSpeed's CPU accelerator (``DS_ACCELERATOR=cpu``) runs ZeRO on gloo, as DeepSpeed's own CPU CI
does; ``run_all_plugins.py zero<N>`` keeps it on plain gloo (no JIT-compiled op). Each stage runs
``torchrun --nproc_per_node=2`` with the same model, data and global batch (16) as the
single-process run of ``run_all_plugins.py single``, in fp32, bf16 (``bf16=True``, DeepSpeed's
``"bf16": {"enabled": "auto"}``) and fp16 (``fp16=True``, dynamic loss scaling from a scale that
overflows; DeepSpeed's CPU accelerator refuses fp16 on CPUs without oneDNN fp16, so the runner
answers its capability check: see ``run_all_plugins.allow_fp16_on_cpu``), so:

* gradviz's ``grad_norm/<group>`` squared sum to DeepSpeed's own pre-clip, unscaled global norm
  (the Trainer's logged ``grad_norm``) in every precision; in fp32 they also equal the single
  process's (ZeRO averages the gradients over the data-parallel ranks as DDP does): an oracle
  independent of DeepSpeed;
* fp16: every step DeepSpeed skipped for an overflow (``engine.was_step_applied()``, recorded by
  the runner) is marked ``grad_norm/skipped`` exactly as on one process, and no other step is;
* every rank stops at the same step and holds the same LRs (the plateau rule reduced them), in
  the param groups DeepSpeed's ZeRO optimizer steps with;
* only the saving process prunes, the kept checkpoints are the policy's, and each kept folder is
  one complete unit (its ``global_stepN`` folder and ``latest`` file), which the Trainer resumes from;
* ZeRO-3 resumed from a pruned folder (``resume_from_checkpoint`` on transformers'
  ``get_last_checkpoint``, ``restore_callback_states_from_checkpoint=True``) loads DeepSpeed's
  engine state and every callback's saved progress, and ends exactly as the uninterrupted run.

The nine runs share one ``torchrun`` launch (see ``runs``); the resume tests launch two more.
Skipped when deepspeed is not importable.
"""

from __future__ import annotations

import importlib.util
import json
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
SCRIPT, TORCHRUN, MAX_STEPS = _h.SCRIPT, _h.TORCHRUN, _h.MAX_STEPS
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
FP32 = [f"zero{s}" for s in STAGES]
BF16 = [f"zero{s}-bf16" for s in STAGES]
FP16 = [f"zero{s}-fp16" for s in STAGES]
MODES = FP32 + BF16 + FP16


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


def torchrun(modes: str, out: Path, *options: str, timeout: float = 480) -> None:
    command = [str(TORCHRUN), "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}"]
    run_all([[*command, str(SCRIPT), modes, str(out), *options]], cwd=out, timeout=timeout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``runs(mode)``: that mode's 2-process run (``zero3`` also serves the resume tests).

    The first call makes every mode's run, one after the other in one ``torchrun`` launch: the two
    processes import torch, transformers and DeepSpeed once instead of once per mode (here 59 s
    for the nine runs, against about 20 s for each launched alone).
    """
    done: dict[str, tuple[str, list[Any], Path]] = {}

    def get(mode: str) -> tuple[str, list[Any], Path]:
        if not done:
            base = tmp_path_factory.mktemp("zero")
            torchrun(",".join(MODES), base, timeout=480 * 3)  # a guard against a hang, as for one run
            done.update({m: (m, ranks(base / m, 2), base / m) for m in MODES})
        return done[mode]

    return get


@pytest.fixture(scope="module")
def zero_run(request: pytest.FixtureRequest, runs: Any) -> tuple[str, list[Any], Path]:
    """The run of the mode a test names (indirect parametrization)."""
    return runs(request.param)


def group_norms(result: dict[str, Any]) -> dict[tuple[int, str], float]:
    """``grad_norm/<group>`` by (step, name), without the ``grad_norm/skipped`` marks."""
    return {key: v for key, v in grad_norms(result).items() if key[1] != "grad_norm/skipped"}


@pytest.mark.parametrize("zero_run", MODES, indirect=True)
def test_group_norms_sum_to_deepspeeds_global_norm(zero_run: Any) -> None:
    _, (r0, r1), _ = zero_run
    for result in (r0, r1):
        groups = group_norms(result)
        totals = {e["step"]: e["grad_norm"] for e in result["log_history"] if "grad_norm" in e}
        steps = sorted({step for step, _ in groups})
        assert len(steps) >= 3
        for step in steps:  # fp16: DeepSpeed's global norm is divided by its loss scale, so are gradviz's
            squares = sum(v * v for (s, _), v in groups.items() if s == step)
            assert math.sqrt(squares) == pytest.approx(totals[step], rel=1e-4), step
    assert grad_norms(r1) == grad_norms(r0)  # one all-reduce: every rank logs the same numbers


@pytest.mark.parametrize("zero_run", FP16, indirect=True)
def test_fp16_overflow_steps_are_marked_skipped_as_on_one_process(zero_run: Any) -> None:
    _, (r0, r1), _ = zero_run
    for result in (r0, r1):
        logged = {e["step"] for e in result["log_history"] if "grad_norm" in e}
        applied = dict(result["applied"])
        assert logged == set(applied)  # the fp16 runs log, and gradviz measures, every step
        overflowed = sorted(step for step, ok in applied.items() if not ok)
        # a scaled loss of about 0.69 * 2**20 is inf in fp16: the first step overflows whatever the data
        assert overflowed[:1] == [1] and len(overflowed) < len(applied) - 3
        marks = [e for e in result["log_history"] if "grad_norm/skipped" in e]
        # as on one process (gradviz's _finish under a loss scaler): one entry, nothing else for that step
        assert marks == [{"grad_norm/skipped": 1.0, "step": step} for step in overflowed]
        assert not any(step in overflowed for step, _ in group_norms(result))
        assert not any(k.startswith("grad_nonfinite/") for e in result["log_history"] for k in e)
        for step in overflowed:  # DeepSpeed's own global norm of those steps is not finite
            assert not math.isfinite(
                next(e["grad_norm"] for e in result["log_history"] if e.get("step") == step and "grad_norm" in e)
            )
    assert r0["applied"] == r1["applied"]


@pytest.mark.parametrize("zero_run", FP32, indirect=True)
def test_group_norms_equal_a_single_process_run(zero_run: Any, single: dict[str, Any]) -> None:
    _, (r0, _), _ = zero_run
    multi, ref = grad_norms(r0), grad_norms(single)
    common = sorted(set(multi) & set(ref))
    assert len({step for step, _ in common}) >= 3 and len({group for _, group in common}) >= 3
    for key in common:
        assert multi[key] == pytest.approx(ref[key], rel=1e-4), key


@pytest.mark.parametrize("zero_run", MODES, indirect=True)
def test_every_rank_stops_at_the_same_step_with_the_same_lrs(zero_run: Any) -> None:
    _, (r0, r1), _ = zero_run
    assert r0["global_step"] == r1["global_step"] < MAX_STEPS  # early stopping acted on both ranks at once
    assert r0["lrs"] == r1["lrs"]
    peaks = sorted({lr for _, lrs in r0["lrs"] for lr in lrs}, reverse=True)
    assert len(peaks) >= 2 and peaks[1] == pytest.approx(peaks[0] * 0.5)  # the plateau rule reduced them


@pytest.mark.parametrize("zero_run", MODES, indirect=True)
def test_only_the_saving_process_prunes_whole_deepspeed_checkpoints(zero_run: Any) -> None:
    _, (r0, r1), out = zero_run
    assert (r0["should_save"], r1["should_save"]) == (True, False)
    assert r1["deletion_calls"] == [] and r0["deletion_calls"]
    run = out / "run"
    kept = checkpoints(run)
    assert kept == expected_kept(r0)
    assert_complete_deepspeed_checkpoints(run)


def assert_complete_deepspeed_checkpoints(run: Path) -> None:
    """Each checkpoint left is one complete unit DeepSpeed can load; no claimed folder is left over."""
    for name in checkpoints(run):
        folder = run / name
        step = int(name.split("-")[1])
        assert (folder / "latest").read_text().strip() == f"global_step{step}"
        assert (folder / f"global_step{step}").is_dir() and any((folder / f"global_step{step}").iterdir())
        assert (folder / "trainer_state.json").is_file()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".checkpoint-")]


# ---- resume from a pruned DeepSpeed checkpoint ---------------------------------------------------
RESUME_MODE, STOP_AFTER = "zero3", 20  # ZeRO-3: the parameters are partitioned too


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory, runs: Any) -> dict[str, Any]:
    """The ZeRO-3 run of the tests above, uninterrupted (early stopping ends it); the same run stopped
    after its save at step 20 (keep_last=1 + keep_best=1 pruned older folders), then resumed in the
    same folder from transformers' ``get_last_checkpoint`` with ``restore_callback_states_from_checkpoint``."""
    from transformers.trainer_utils import get_last_checkpoint

    _, full, full_out = runs(RESUME_MODE)
    out = tmp_path_factory.mktemp("zero3-resume")
    torchrun(RESUME_MODE, out, "--stop-after", str(STOP_AFTER))
    run = out / "run"
    found = {
        "full": full,
        "full_run": full_out / "run",
        "first": ranks(out, 2),
        "run": run,
        "left_by_first": checkpoints(run),
        "last": get_last_checkpoint(str(run)),
    }
    assert_complete_deepspeed_checkpoints(run)  # what the first run left: resumable, every folder
    found["saved_state"] = json.loads(Path(found["last"], "trainer_state.json").read_text())
    torchrun(RESUME_MODE, out, "--resume")
    found["resumed"] = [json.loads((out / f"rank{r}-resumed.json").read_text()) for r in range(2)]
    return found


def test_resume_loads_the_last_kept_deepspeed_checkpoint(resumed: dict[str, Any]) -> None:
    first, run = resumed["first"], resumed["run"]
    assert [r["global_step"] for r in first] == [STOP_AFTER] * 2
    saved = range(4, STOP_AFTER + 1, 4)
    assert len(resumed["left_by_first"]) < len(saved)  # the pruner removed folders before the resume
    assert resumed["left_by_first"][-1] == f"checkpoint-{STOP_AFTER}"
    assert resumed["last"] == str(run / f"checkpoint-{STOP_AFTER}")
    for result in resumed["resumed"]:
        assert result["resumed_from"] == resumed["last"]
        # the Trainer's step and DeepSpeed's engine (loaded from global_step20) continue from the checkpoint
        assert result["at_train_begin"] == {"global_step": STOP_AFTER, "engine_global_steps": STOP_AFTER}
        assert result["lrs"][0][0] == STOP_AFTER + 1
    assert_complete_deepspeed_checkpoints(run)  # and what the resumed run left


def test_resume_restores_every_callbacks_saved_progress(resumed: dict[str, Any]) -> None:
    saved = {
        name: entry["attributes"]["progress"]
        for name, entry in resumed["saved_state"]["stateful_callbacks"].items()
        if name != "TrainerControl"
    }
    assert set(saved) == {"EarlyStopping", "ReduceLROnPlateau", "GradNormLogger", "CheckpointPruner"}
    assert saved["ReduceLROnPlateau"]["reductions"] >= 1 and saved["EarlyStopping"]["evaluations"] == STOP_AFTER // 4
    for result in resumed["resumed"]:  # before the first resumed step: exactly what checkpoint-20 holds
        assert result["progress_at_first_step"] == saved


def test_resumed_run_ends_as_the_uninterrupted_run(resumed: dict[str, Any]) -> None:
    full, (r0, r1) = resumed["full"][0], resumed["resumed"]
    # early stopping ended both runs, at the same step: the restored waits and bests decided it
    assert r0["global_step"] == r1["global_step"] == full["global_step"] < MAX_STEPS
    for result in (r0, full):
        assert [e["step"] for e in result["log_history"] if e.get("early_stopping/stopped") == 1] == [
            result["global_step"]
        ]

    def after(result: dict[str, Any], key: str) -> dict[int, float]:
        return {e["step"]: e[key] for e in result["log_history"] if key in e and e["step"] > STOP_AFTER}

    # fp32, the same operations in the same order, DeepSpeed's fp32 partitions and Adam moments
    # reloaded: bit-equal in practice; 1e-6 leaves room for a reduction order, nothing else
    for key in ("loss", "grad_norm", "eval_loss"):
        ours, ref = after(r0, key), after(full, key)
        assert set(ours) == set(ref) and ours
        assert ours == pytest.approx(ref, rel=1e-6), key
    ours_g = {k: v for k, v in group_norms(r0).items() if k[0] > STOP_AFTER}
    ref_g = {k: v for k, v in group_norms(full).items() if k[0] > STOP_AFTER}
    assert set(ours_g) == set(ref_g) and len({g for _, g in ours_g}) >= 3
    assert ours_g == pytest.approx(ref_g, rel=1e-6)
    assert r0["lrs"] == r1["lrs"] == [entry for entry in full["lrs"] if entry[0] > STOP_AFTER]
    # the rules' final state (best, waits, scales; the pruner's totals, the prune at the resumed checkpoint
    # included) as after an uninterrupted run
    final = f"checkpoint-{full['global_step']}/trainer_state.json"
    mine = json.loads((resumed["run"] / final).read_text())["stateful_callbacks"]
    theirs = json.loads((resumed["full_run"] / final).read_text())["stateful_callbacks"]
    for name in ("EarlyStopping", "ReduceLROnPlateau", "GradNormLogger", "CheckpointPruner"):
        assert mine[name] == theirs[name], name
    assert checkpoints(resumed["run"]) == checkpoints(resumed["full_run"])
    assert r1["deletion_calls"] == [] and r0["deletion_calls"]  # rank 0 alone went on pruning
