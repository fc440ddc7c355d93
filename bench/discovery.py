"""Benchmark 3: ``trainer-callbacks list`` against importing ``transformers.trainer_callback``.

Both run as fresh subprocesses of the same interpreter, interleaved: ``trainer-callbacks
list`` (the console script, every installed plugin discovered and its ``plugin`` module
loaded) and ``python -c "import transformers.trainer_callback"`` (what any callback user
pays at least once). ``python -c pass`` (the interpreter's own start-up) is measured too, so
the figure net of start-up is shown beside the raw one. A separate check confirms that
listing imports neither torch nor transformers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import BenchResult, Goal, Table, compare, fmt_time, interleave

CHECK_NO_HEAVY_IMPORTS = (
    "import sys, io, contextlib\n"
    "from trainer_callbacks.core.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    main(['list'])\n"
    "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules) or '-')\n"
)


def cli_path() -> list[str]:
    script = Path(sys.executable).with_name("trainer-callbacks")
    if script.exists():
        return [str(script), "list"]
    return [sys.executable, "-c", "from trainer_callbacks.core.cli import main; raise SystemExit(main(['list']))"]


def _subprocess_arm(cmd: list[str]) -> Callable[[], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_CALLBACKS_")}

    def run() -> float:
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        return time.perf_counter() - start

    return run


def run(quick: bool = False) -> BenchResult:
    started = time.perf_counter()
    rounds = 1 if quick else 11
    listing = cli_path()
    arms = {
        "import transformers.trainer_callback": _subprocess_arm(
            [sys.executable, "-c", "import transformers.trainer_callback"]
        ),
        "trainer-callbacks list": _subprocess_arm(listing),
        "python -c pass": _subprocess_arm([sys.executable, "-c", "pass"]),
    }
    samples = interleave(arms, rounds, warmup=0 if quick else 1)
    base = "import transformers.trainer_callback"
    listing_cmp = compare(samples, base, "trainer-callbacks list")
    start_cmp = compare(samples, base, "python -c pass")
    # net of interpreter start-up, per round
    net = [
        (li - st) / (im - st)
        for li, st, im in zip(samples["trainer-callbacks list"], samples["python -c pass"], samples[base])
    ]
    net.sort()
    net_median = net[len(net) // 2] if len(net) % 2 else (net[len(net) // 2 - 1] + net[len(net) // 2]) / 2
    heavy = (
        subprocess.run([sys.executable, "-c", CHECK_NO_HEAVY_IMPORTS], check=True, capture_output=True, text=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    result = BenchResult(
        name="discovery",
        title="Discovery: `trainer-callbacks list`",
        setup={
            "commands": f"`{' '.join(Path(listing[0]).name if i == 0 else a for i, a in enumerate(listing))}` vs "
            f'`python -c "import transformers.trainer_callback"` vs `python -c pass`, fresh subprocesses',
            "rounds": f"{rounds} interleaved rounds (+1 warm-up round: the OS page cache is warm for all)",
        },
    )
    result.comparisons += [listing_cmp, start_cmp]
    result.medians = {name: compare(samples, base, name).median_arm for name in arms}
    result.tables.append(
        Table(
            "Wall time of a fresh process (median), ratio to the transformers import",
            ["command", "median", "x import", "spread"],
            [
                [base, fmt_time(listing_cmp.median_baseline), "1.000", ""],
                [
                    "trainer-callbacks list",
                    fmt_time(listing_cmp.median_arm),
                    f"{listing_cmp.ratio:.3f}",
                    listing_cmp.spread,
                ],
                ["python -c pass", fmt_time(start_cmp.median_arm), f"{start_cmp.ratio:.3f}", start_cmp.spread],
            ],
        )
    )
    result.notes.append(f"Modules among torch/transformers imported by listing: {heavy}.")
    result.notes.append(
        f"Net of interpreter start-up (list - pass) / (import - pass): median {net_median:.3f} "
        f"(min-max {net[0]:.3f}-{net[-1]:.3f})."
    )
    result.goals.append(
        Goal(
            text="`trainer-callbacks list` takes < 10% of `import transformers.trainer_callback`",
            measured=f"{100 * listing_cmp.ratio:.1f}% ({listing_cmp.spread}); net of start-up {100 * net_median:.1f}%",
            met=listing_cmp.ratio < 0.10,
            why=""
            if listing_cmp.ratio < 0.10
            else (
                f"interpreter start-up alone is {100 * start_cmp.ratio:.1f}% of the import; listing adds "
                f"{fmt_time(listing_cmp.median_arm - start_cmp.median_arm)}"
            ),
        )
    )
    result.wall_seconds = time.perf_counter() - started
    return result
