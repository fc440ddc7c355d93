"""Check one ``run_all_plugins.py zero*`` run's ``rank<R>.json`` files (used by deepspeed_gpu_matrix.sh).

Usage: python check_deepspeed_run.py OUT_DIR WORLD_SIZE   (exit status 1 and a reason on failure)
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def main(out: Path, world: int) -> list[str]:
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]
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
    return problems


if __name__ == "__main__":
    found = main(Path(sys.argv[1]), int(sys.argv[2]))
    for line in found:
        print(line)
    sys.exit(1 if found else 0)
