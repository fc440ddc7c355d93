"""The heatmap PNG (via the plugin hook and ``trainer-callbacks plot``) and the run summary."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trainer_callbacks.gradviz import plugin
from trainer_callbacks.gradviz.heatmap import grad_norm_table, summary_lines

GROUPS = ["bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "classifier"]


def history(steps: int = 30) -> list[dict]:
    out = []
    for s in range(1, steps + 1):
        out.append(
            {f"grad_norm/{g}": 10.0 ** (i - 2) * (1 + math.sin(s / 3) / 2) for i, g in enumerate(GROUPS)} | {"step": s}
        )
        out.append({"loss": 1.0 / s, "learning_rate": 1e-3, "step": s})
    out.append({"grad_norm/skipped": 1.0, "step": steps + 1})
    return out


def test_table_keeps_model_order_and_ignores_skipped_marker() -> None:
    table = grad_norm_table(history(5))
    assert table.groups == GROUPS and table.steps == [1, 2, 3, 4, 5]


def test_heatmap_png_has_the_expected_size_and_is_not_blank(tmp_path) -> None:
    plt = pytest.importorskip("matplotlib.pyplot")
    paths = plugin.plot_figures(log_history=history(), output_dir=tmp_path)
    assert paths is not None
    [path] = paths
    image = plt.imread(path)
    # plot_heatmap: width 10 in, height max(3, 1.5 + 0.28 * 4 groups) = 3 in, at 100 dpi
    assert image.shape[:2] == (300, 1000)
    assert float(np.var(image[..., :3])) > 0.01


def test_no_gradviz_entries_no_figure(tmp_path) -> None:
    assert plugin.plot_figures(log_history=[{"loss": 1.0, "step": 1}], output_dir=tmp_path) is None


def test_core_plot_command_draws_the_heatmap(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from trainer_callbacks.app.plotting import plot_run

    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history(8)}))
    written = plot_run(tmp_path, tmp_path / "plots")
    assert (tmp_path / "plots" / "grad_norms.png") in written


def test_summary_names_largest_and_smallest_groups() -> None:
    lines = summary_lines(grad_norm_table(history(9)))
    assert "largest median gradient norm: classifier" in lines[1]
    assert "smallest median gradient norm: bert.embeddings" in lines[2]


def test_summary_lists_never_share_a_group() -> None:
    table = grad_norm_table(history(9))
    lines = summary_lines(table, count=len(table.groups))  # asks for more than half each way
    named = [{part.split(" (")[0] for part in line.split("norm: ", 1)[1].split(", ")} for line in lines[1:]]
    assert len(named) == 2 and not (named[0] & named[1])
    import math

    measured = {g for g, row in zip(table.groups, table.values) if any(math.isfinite(v) for v in row)}
    assert named[0] | named[1] == measured
