"""The interleaved A/B timing harness and the result types every benchmark returns.

These machines are shared and noisy, so no benchmark compares two numbers measured at
different times. :func:`interleave` runs every arm of a comparison in the same process,
round after round (``A B C``, then ``C B A``, ...: alternating the order cancels a linear
drift such as a neighbour's job starting), and :func:`compare` reports, for each arm against
the baseline, the median of the per-round ratios (paired: both sides of a ratio ran seconds
apart) with its spread (interquartile range and min-max of the per-round ratios).
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

Arm = Callable[[], "float | None"]
"""One side of a comparison: returns the seconds it measured itself, or None to be timed whole."""


def interleave(arms: Mapping[str, Arm], rounds: int, *, warmup: int = 1) -> dict[str, list[float]]:
    """Run each arm ``warmup`` times (discarded), then ``rounds`` interleaved rounds; seconds per arm per round."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    names = list(arms)
    for _ in range(warmup):
        for name in names:
            arms[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            gc.collect()
            start = time.perf_counter()
            measured = arms[name]()
            elapsed = time.perf_counter() - start
            samples[name].append(float(measured) if measured is not None else elapsed)
    return samples


def per_call(fn: Callable[[], Any], calls: int) -> Arm:
    """An arm that calls ``fn`` ``calls`` times and returns the seconds per call."""

    def arm() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls

    return arm


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (``q`` in [0, 1]) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Comparison:
    """``arm`` against ``baseline``: medians and the paired per-round ratios ``arm / baseline``."""

    baseline: str
    arm: str
    median_baseline: float
    median_arm: float
    ratio: float
    """Median of the per-round ratios."""
    ratio_q1: float
    ratio_q3: float
    ratio_min: float
    ratio_max: float
    rounds: int

    @property
    def spread(self) -> str:
        return (
            f"IQR {self.ratio_q1:.3f}-{self.ratio_q3:.3f}, "
            f"min-max {self.ratio_min:.3f}-{self.ratio_max:.3f} (n={self.rounds})"
        )


def compare(samples: Mapping[str, Sequence[float]], baseline: str, arm: str) -> Comparison:
    base, other = samples[baseline], samples[arm]
    if len(base) != len(other) or not base:
        raise ValueError("paired samples of equal, non-zero length are needed")
    ratios = [o / b for o, b in zip(other, base)]
    return Comparison(
        baseline=baseline,
        arm=arm,
        median_baseline=statistics.median(base),
        median_arm=statistics.median(other),
        ratio=statistics.median(ratios),
        ratio_q1=quantile(ratios, 0.25),
        ratio_q3=quantile(ratios, 0.75),
        ratio_min=min(ratios),
        ratio_max=max(ratios),
        rounds=len(ratios),
    )


def fmt_time(seconds: float) -> str:
    """``seconds`` in the unit that reads best (ns, us, ms, s)."""
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


class HookTimer:
    """Seconds spent inside wrapped methods, per label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, label: str, obj: Any, attr: str) -> None:
        fn = getattr(obj, attr)
        seconds, calls = self.seconds, self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - start
                calls[label] += 1

        setattr(obj, attr, timed)

    def instrument(self, label: str, callback: Any, hooks_label: str | None = None) -> None:
        """Time every ``on_*`` method of ``callback`` (and gradviz's model hooks, under ``hooks_label``)."""
        for attr in dir(type(callback)):
            if attr.startswith("on_") and callable(getattr(callback, attr)):
                self.wrap(label, callback, attr)
        capture = getattr(callback, "_capture", None)  # gradviz: forward hook and end-of-backward callback
        if capture is not None:
            for attr in ("_after_forward", "_backward_started", "_run"):
                if hasattr(capture, attr):
                    self.wrap(hooks_label or label, capture, attr)


# ---- results --------------------------------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Goal:
    text: str
    """The goal as the issue states it."""
    measured: str
    met: bool
    why: str = ""
    """For a missed goal: why, and which code is slow; for a met one, optional context."""


@dataclass
class BenchResult:
    name: str
    title: str
    setup: dict[str, Any]
    """What was measured and at which size (stated in the report)."""
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    medians: dict[str, float] = field(default_factory=dict)
    """Median seconds per arm (machine-readable; the smoke test checks them)."""
    comparisons: list[Comparison] = field(default_factory=list)
    wall_seconds: float = 0.0


# ---- machine --------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nproc() -> int:
    """The CPUs this process may run on. Not GNU ``nproc``: it answers ``OMP_NUM_THREADS`` when that is set
    (``make bench`` sets it to 1), which made the report say "1 cores" and call a 2-core machine at load 1 busy."""
    return len(os.sched_getaffinity(0))


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3  # type: ignore[return-value]


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


FIRST_PARTY = (
    "trainer-callbacks-core",
    "trainer-callbacks-earlystop",
    "trainer-callbacks-lr",
    "trainer-callbacks-gradviz",
    "trainer-callbacks-checkpoint",
    "trainer-callbacks-app",
    "trainer-callbacks-testing",
)


def machine() -> dict[str, Any]:
    import torch

    return {
        "nproc": nproc(),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "platform": platform.platform(),
        "packages": {d: version(d) for d in FIRST_PARTY},
    }
