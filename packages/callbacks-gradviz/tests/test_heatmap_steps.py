"""The heatmap labels its steps: read from the figure's tick labels (matplotlib objects), not pixels."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from trainer_callbacks.core import step_ticks
from trainer_callbacks.gradviz.heatmap import GradNormTable, plot_heatmap


def drawn_ticks(table: GradNormTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], list[str]]:
    """The x tick positions and labels of the heatmap as it is saved."""
    from matplotlib.figure import Figure

    seen: dict[str, Any] = {}
    original = Figure.savefig

    def capture(self: Figure, *args: Any, **kwargs: Any) -> None:
        ax = self.axes[0]
        seen["ticks"] = list(ax.get_xticks())
        seen["labels"] = [label.get_text() for label in ax.get_xticklabels()]
        original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    plot_heatmap(table, tmp_path / "heat.png")
    return seen["ticks"], seen["labels"]


def table(steps: list[int]) -> GradNormTable:
    return GradNormTable(groups=["a", "b"], steps=steps, values=[[1.0] * len(steps), [0.5] * len(steps)])


def test_every_step_is_labelled_when_they_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    steps = list(range(20, 261, 20))  # 13 logged steps: the demo's run (the old ticks skipped step 140)
    ticks, labels = drawn_ticks(table(steps), tmp_path, monkeypatch)
    assert labels == [str(s) for s in steps]
    assert ticks == list(range(13))


def test_many_steps_are_labelled_evenly_with_the_first_and_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    steps = list(range(5, 505, 5))  # 100 columns
    ticks, labels = drawn_ticks(table(steps), tmp_path, monkeypatch)
    assert labels[0] == "5" and labels[-1] == "500" and len(labels) <= 21
    gaps = {int(b) - int(a) for a, b in itertools.pairwise(labels[:-1])}
    assert len(gaps) == 1  # evenly spaced (the last label may close a shorter gap)
    assert [steps[int(t)] for t in ticks] == [int(label) for label in labels]


@pytest.mark.parametrize("count", [0, 1, 2, 19, 20, 21, 39, 40, 41, 199, 1000])
def test_step_ticks_rule(count: int) -> None:
    steps = [10 * (i + 1) for i in range(count)]
    indices, labels = step_ticks(steps)
    assert labels == [str(steps[i]) for i in indices]
    if count == 0:
        assert indices == []
        return
    assert indices[0] == 0 and indices[-1] == count - 1 and indices == sorted(set(indices))
    assert len(indices) <= 21
    if count <= 20:
        assert indices == list(range(count))
    inner = {b - a for a, b in itertools.pairwise(indices[:-1])}
    assert len(inner) <= 1
