"""Check one ``run_all_plugins.py zero*`` run's ``rank<R>.json`` files (used by deepspeed_gpu_matrix.sh).

Usage: python check_deepspeed_run.py OUT_DIR WORLD_SIZE   (exit status 1 and a reason on failure)

The rules: gradviz's group norms squared sum to DeepSpeed's own (unscaled, pre-clip) global norm
within 1e-4 relative on at least 3 measured steps; a step DeepSpeed skipped for an fp16 overflow
(``engine.was_step_applied()`` false, recorded by the runner) is marked ``grad_norm/skipped`` and
carries no group norm, and no applied step is marked; the ``-fp16`` modes start from a loss scale
that overflows, so they must show at least one such step; every rank logs the same norms, stops at
the same step with the same LRs; only rank 0 prunes; every kept checkpoint has its ``latest`` tag
naming its ``global_stepN`` folder.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any


def main(out: Path, world: int, mode: str = "") -> list[str]:
    missing = [r for r in range(world) if not (out / f"rank{r}.json").is_file()]
    if missing:
        return [f"no result from rank(s) {missing} (the run failed: see its log)"]
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]
    mode = mode or results[0].get("mode", "")
    problems = []
    norms = []
    for result in results:
        groups: dict[int, float] = {}
        totals: dict[int, float] = {}
        skipped = set()
        for e in result["log_history"]:
            squares = [v * v for k, v in e.items() if k.startswith("grad_norm/") and k != "grad_norm/skipped"]
            if squares:
                groups[e["step"]] = groups.get(e["step"], 0.0) + sum(squares)
            if e.get("grad_norm/skipped"):
                skipped.add(e["step"])
            if "grad_norm" in e:
                totals[e["step"]] = e["grad_norm"]
        norms.append(groups)
        measured = [s for s in groups if s in totals and math.isfinite(totals[s])]
        if len(measured) < 3:
            problems.append(f"rank {result['rank']}: only {len(measured)} measured steps ({len(skipped)} skipped)")
        for s in measured:
            if abs(math.sqrt(groups[s]) / totals[s] - 1) > 1e-4:
                problems.append(
                    f"rank {result['rank']} step {s}: groups {math.sqrt(groups[s])} vs DeepSpeed {totals[s]}"
                )
        problems += _overflow_problems(result, mode, groups, totals, skipped)
    if any(n != norms[0] for n in norms):
        problems.append("the ranks logged different group norms")
    if len({r["global_step"] for r in results}) != 1 or any(r["lrs"] != results[0]["lrs"] for r in results):
        problems.append("the ranks stopped at different steps or hold different LRs")
    if any(r["deletion_calls"] for r in results[1:]):
        problems.append("a rank other than 0 pruned")
    run = out / "run"
    for folder in run.glob("checkpoint-*"):
        step = folder.name.split("-")[1]
        latest = folder / "latest"
        if not (latest.is_file() and latest.read_text().strip() == f"global_step{step}"):
            problems.append(f"{folder.name}: no latest tag naming global_step{step}")
        elif not (folder / f"global_step{step}").is_dir():
            problems.append(f"{folder.name}: no global_step{step} folder")
    return problems


def _overflow_problems(
    result: dict[str, Any], mode: str, groups: dict[int, float], totals: dict[int, float], skipped: set[int]
) -> list[str]:
    """Skipped-step marks against the steps DeepSpeed did not apply (on the steps the Trainer logged)."""
    if "applied" not in result:  # a runner that does not record it
        return []
    rank = result["rank"]
    not_applied = {step for step, applied in result["applied"] if not applied}
    logged = set(totals)
    problems = []
    if skipped != not_applied & logged:
        problems.append(
            f"rank {rank}: steps marked grad_norm/skipped {sorted(skipped)} != logged steps DeepSpeed skipped "
            f"{sorted(not_applied & logged)}"
        )
    if skipped & set(groups):
        problems.append(f"rank {rank}: skipped steps {sorted(skipped & set(groups))} also carry group norms")
    if mode.endswith("-fp16") and not skipped:
        problems.append(f"rank {rank}: fp16 from a loss scale that overflows, but no step was marked skipped")
    return problems


if __name__ == "__main__":
    found = main(Path(sys.argv[1]), int(sys.argv[2]))
    for line in found:
        print(line)
    sys.exit(1 if found else 0)
