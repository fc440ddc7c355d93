"""Every benchmark runs once at toy size, so none rots (issue 9). No timing assertions here:
only that each returns well-formed results, and that the harness's arithmetic is right."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `bench` is a top-level folder of the workspace, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.__main__ import BENCHMARKS, main, render  # noqa: E402

EXPECTED_MEDIANS = {
    "trainer_overhead": ["defaults/none", "defaults/all", "worst case/none", "worst case/all"],
    "grad_norms": [
        "1L/floor",
        "1L/gradviz",
        "1L/gradviz kernel",
        "1L/item loop",
        "1L/lightning",
        "1L/wandb histograms",
    ],
    "discovery": ["import transformers.trainer_callback", "trainer-callbacks list", "python -c pass"],
    "pruning": ["2MiB/child/block", "2MiB/child/added", "2MiB/thread/block", "10 folders/block", "50 folders/block"],
    "simulator": ["no callbacks", "all plugins", "all plugins, record_events=False"],
    "update_ratio": ["toy/full copy/extra fraction", "toy/staged/extra fraction"],
    "deepspeed_zero": [f"toy/zero{stage}/{arm}" for stage in (1, 2, 3) for arm in ("gradviz", "safe_get_full_grad")],
}


DISTRIBUTED_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "DS_ACCELERATOR",
)


def _distributed_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in DISTRIBUTED_ENV or k.startswith("ACCELERATE_")}


def torch_distributed_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _positive_finite(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


# ---- the harness ------------------------------------------------------------------------------------------


def test_interleave_alternates_the_order_and_keeps_what_arms_measure() -> None:
    calls: list[str] = []

    def arm(name: str, seconds: float | None):
        def run() -> float | None:
            calls.append(name)
            return seconds

        return run

    samples = common.interleave({"a": arm("a", 1.5), "b": arm("b", None)}, rounds=3, warmup=1)
    # warm-up a b, then rounds a b / b a / a b
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert samples["a"] == [1.5, 1.5, 1.5]  # an arm's own measurement is used as is
    assert len(samples["b"]) == 3 and all(s >= 0 for s in samples["b"])  # timed whole


def test_compare_uses_paired_per_round_ratios() -> None:
    # per-round ratios arm/base: 2/1 = 2, 2/2 = 1, 2/4 = 0.5 (by hand)
    cmp = common.compare({"base": [1.0, 2.0, 4.0], "arm": [2.0, 2.0, 2.0]}, "base", "arm")
    assert cmp.ratio == 1.0
    assert (cmp.ratio_min, cmp.ratio_max) == (0.5, 2.0)
    assert (cmp.ratio_q1, cmp.ratio_q3) == (0.75, 1.5)  # linear interpolation halfway between neighbours
    assert (cmp.median_baseline, cmp.median_arm) == (2.0, 2.0)
    with pytest.raises(ValueError):
        common.compare({"base": [1.0], "arm": [1.0, 2.0]}, "base", "arm")


def test_quantile_by_hand() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # sorted 1 2 3 4; position q*(n-1)
    assert common.quantile(values, 0.0) == 1.0
    assert common.quantile(values, 1.0) == 4.0
    assert common.quantile(values, 0.5) == 2.5
    assert common.quantile([7.0], 0.25) == 7.0


def test_fmt_time_picks_the_unit() -> None:
    assert common.fmt_time(2e-9) == "2 ns"
    assert common.fmt_time(1.5e-5) == "15.0 us"
    assert common.fmt_time(0.0123) == "12.30 ms"
    assert common.fmt_time(2.0) == "2.00 s"


def test_machine_names_what_the_report_needs() -> None:
    info = common.machine()
    assert info["nproc"] >= 1 and info["cpu"]
    assert {"python", "torch", "transformers", "packages"} <= set(info)


# ---- each benchmark once, at toy size ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_at_toy_size(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib

    if name == "deepspeed_zero":
        pytest.importorskip("deepspeed", reason="deepspeed is not installed (requirements-dev.txt pins it)")
    monkeypatch.setenv("BENCH_PRUNE_DIR", str(tmp_path))
    distributed_env = _distributed_env()
    result = importlib.import_module(f"bench.{name}").run(quick=True)
    # a benchmark leaves no process group behind: RANK/WORLD_SIZE/MASTER_PORT left in the environment made a
    # later test's child Trainer try to join it (EADDRINUSE in the demo tests)
    assert {
        k: v for k, v in os.environ.items() if k in DISTRIBUTED_ENV or k.startswith("ACCELERATE_")
    } == distributed_env
    assert not torch_distributed_initialized()
    assert result.name == name
    assert set(EXPECTED_MEDIANS[name]) <= set(result.medians), sorted(result.medians)
    bad = {k: v for k, v in result.medians.items() if not _positive_finite(v)}
    assert not bad, bad
    for cmp in result.comparisons:
        assert _positive_finite(cmp.ratio) and cmp.ratio_min <= cmp.ratio <= cmp.ratio_max
        assert _positive_finite(cmp.median_arm) and _positive_finite(cmp.median_baseline)
    assert result.goals and all(isinstance(g.met, bool) and g.text and g.measured for g in result.goals)
    assert result.tables
    for table in result.tables:
        assert table.rows and all(len(row) == len(table.header) for row in table.rows)
    assert result.setup and result.wall_seconds > 0


def test_render_writes_machine_command_goals_and_sections() -> None:
    result = common.BenchResult(name="simulator", title="Simulator: x", setup={"run": "r"})
    result.tables.append(common.Table("t", ["a", "b"], [["1", "2"]]))
    result.goals.append(common.Goal(text="g", measured="m", met=False, why="slow because"))
    info = common.machine()
    text = render(
        [(result, (9.0, 1.0, 1.0), (1.0, 1.0, 1.0))],
        info,
        "python -m bench",
        False,
        __import__("datetime").datetime(2025, 1, 1),
        60.0,
    )
    assert "`python -m bench`" in text and f"`nproc` = {info['nproc']}" in text and info["cpu"] in text
    assert f"torch {info['torch']}" in text and f"transformers {info['transformers']}" in text
    assert "| simulator | g | m | **NO** |" in text and "slow because" in text
    assert "**load**" in text  # a 1-minute load of 9 is reported as a busy machine
    assert "## Simulator: x" in text and "| 1 | 2 |" in text


def test_main_quick_writes_the_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, raw = tmp_path / "benchmarks.md", tmp_path / "bench.json"
    assert main(["--quick", "--only", "simulator", "--output", str(out), "--json", str(raw)]) == 0
    text = out.read_text()
    assert "Toy sizes" in text and "## Simulator" in text and "| simulator |" in text
    import json

    data = json.loads(raw.read_text())
    assert data["results"][0]["name"] == "simulator" and data["results"][0]["medians"]
