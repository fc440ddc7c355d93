"""``trainer-callbacks plot``: PNG figures from a run's ``trainer_state.json``.

Core draws the loss and learning-rate curves and marks on them the events every plugin
returns from its ``plot_events`` hook; plugins draw figures of their own through
``plot_figures`` (gradviz: the gradient-norm heatmap). matplotlib is imported only here.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer_callbacks.core.errors import ConfigurationError


@dataclass(frozen=True)
class PlotEvent:
    """A moment to mark on the curves: a vertical line at ``step`` labelled ``label``."""

    step: int
    label: str
    kind: str = "event"
    """Plugin-defined category (``early_stop``, ``lr_reduction``, ``prune``...); one colour per kind."""


def find_trainer_state(path: str | Path) -> Path:
    """``trainer_state.json`` of ``path``: the file itself, the folder's, or its newest checkpoint's."""
    path = Path(path)
    if not path.exists():
        raise ConfigurationError(
            f"{str(path)!r} does not exist; pass a run's output_dir, a checkpoint folder, or a trainer_state.json"
        )
    if path.is_file():
        return path
    direct = path / "trainer_state.json"
    if direct.is_file():
        return direct
    from transformers.trainer_utils import get_last_checkpoint

    try:
        last = get_last_checkpoint(str(path)) if path.is_dir() else None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the folder {str(path)!r}: {exc.strerror or exc}") from None
    if last is not None and (Path(last) / "trainer_state.json").is_file():
        return Path(last) / "trainer_state.json"
    raise ConfigurationError(
        f"no trainer_state.json in {str(path)!r} nor in a checkpoint-N folder inside it; "
        "pass a run's output_dir, a checkpoint folder, or the file itself (trainer.save_state() writes one)"
    )


_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def load_log_history(path: str | Path) -> list[dict[str, Any]]:
    """``log_history`` of the run's ``trainer_state.json`` (``[]`` when it has none).

    A file that cannot be read, is empty, is not UTF-8 JSON, or is not shaped like a
    ``trainer_state.json`` (an object whose ``log_history`` is a list of objects) is a
    :class:`ConfigurationError` naming the file and what is wrong.
    """
    state_file = find_trainer_state(path)
    where = repr(str(state_file))
    try:
        raw = state_file.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {where}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise ConfigurationError(f"{where} is empty; a trainer_state.json holds the run's log_history")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{where} is not UTF-8 text (byte {exc.start}); is it a trainer_state.json?") from None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{where} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); if it was cut short, "
            "plot a checkpoint folder's copy instead"
        ) from None
    if not isinstance(state, dict):
        raise ConfigurationError(
            f"{where} holds {_json_type(state)}, not the object a trainer_state.json holds (with a log_history list)"
        )
    history = state.get("log_history")
    if history is None:
        return []
    if not isinstance(history, list):
        raise ConfigurationError(f"{where}: log_history is {_json_type(history)}; expected a list of log entries")
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise ConfigurationError(
                f"{where}: log_history[{i}] is {_json_type(entry)} {entry!r}; expected an object such as "
                '{"loss": 0.5, "step": 10}'
            )
    return history


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_numbers(log_history: list[dict[str, Any]], keys: tuple[str, ...], where: str) -> None:
    """Raise :class:`ConfigurationError` for an entry whose ``step`` or value of ``keys`` is not a number."""
    for i, entry in enumerate(log_history):
        present = [key for key in keys if key in entry]
        if not present:
            continue
        step = entry.get("step")
        whole = isinstance(step, (int, float)) and not isinstance(step, bool) and float(step).is_integer()
        if "step" in entry and not whole:
            raise ConfigurationError(
                f"{where}: log_history[{i}] has step={step!r} ({_json_type(step)}); expected a whole number"
            )
        for key in present:
            if not _is_number(entry[key]):
                raise ConfigurationError(
                    f"{where}: log_history[{i}] (step {step}) has {key}={entry[key]!r} ({_json_type(entry[key])}); "
                    "expected a number"
                )


def series(log_history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of ``key`` in ``log_history``."""
    steps, values = [], []
    for entry in log_history:
        if key in entry and "step" in entry:
            steps.append(int(entry["step"]))
            values.append(float(entry[key]))
    return steps, values


FREQUENT = 6
"""A kind with more events than this (checkpoint prunes, say) is drawn as ticks along the
bottom of the axes, so that the rare ones (a stop, an LR cut) stay readable as lines."""


def _mark_events(ax: Any, events: list[PlotEvent], colours: dict[str, Any]) -> None:
    by_kind: dict[str, list[PlotEvent]] = {}
    for event in events:
        by_kind.setdefault(event.kind, []).append(event)
    frequent = {kind for kind, group in by_kind.items() if len(group) > FREQUENT}
    for kind in sorted(frequent):
        steps = [event.step for event in by_kind[kind]]
        ax.plot(
            steps,
            [0.0] * len(steps),
            linestyle="none",
            marker="|",
            markersize=12,
            color=colours[kind],
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label=f"{kind} ({len(steps)})",
        )
    styles = ["--", ":", "-."]
    for i, kind in enumerate(sorted(set(by_kind) - frequent)):  # drawn last: on top
        for event in by_kind[kind]:
            ax.axvline(event.step, color=colours[kind], linestyle=styles[i % 3], linewidth=2, label=event.label)


PANELS = (("loss", "training loss"), ("eval_loss", "eval loss"), ("learning_rate", "learning rate"))


def _output_folder(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"plot --out {str(out)!r} is a file; pass a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"plot --out {str(out)!r}: cannot create the folder: {exc.strerror or exc}") from None
    return out


def plot_run(source: str | Path, output_dir: str | Path | None = None) -> list[Path]:
    """Write ``curves.png`` and every plugin's figures; returns the paths written.

    Every input is checked before anything is drawn: the ``trainer_state.json`` (readable,
    JSON, the right shape, numbers where numbers are plotted, a non-empty ``log_history``) and
    the output folder (not a file). Problems are :class:`ConfigurationError`.
    """
    state_file = find_trainer_state(source)
    history = load_log_history(state_file)
    if not history:
        raise ConfigurationError(
            f"nothing to plot: {str(state_file)!r} has no log_history entries (the run logged nothing yet; "
            "its logging_steps decide when it does)"
        )
    check_numbers(history, tuple(key for key, _ in PANELS), repr(str(state_file)))
    out = _output_folder(Path(output_dir) if output_dir is not None else state_file.parent / "plots")
    try:
        import matplotlib
    except ImportError:
        raise ConfigurationError("plot needs matplotlib: pip install matplotlib") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainer_callbacks.core.plugins import call_each

    events: list[PlotEvent] = []
    for plugin, result in call_each("plot_events", log_history=history):
        if isinstance(result, Exception):
            print(
                f"trainer-callbacks plot: plugin {plugin}: no events ({type(result).__name__}: {result})",
                file=sys.stderr,
            )
            continue
        events.extend(event for event in (result or []) if isinstance(event, PlotEvent))

    panels = [(key, title) for key, title in PANELS if series(history, key)[0]]
    fig, axes = plt.subplots(max(len(panels), 1), 1, figsize=(10, 3 * max(len(panels), 1)), squeeze=False)
    kinds = sorted({event.kind for event in events})
    colours = {kind: plt.get_cmap("tab10")((i + 1) % 10) for i, kind in enumerate(kinds)}  # C0 is the curve
    for ax, (key, title) in zip(axes[:, 0], panels):
        steps, values = series(history, key)
        ax.plot(steps, values, marker="." if len(steps) < 50 else None, label=key)
        ax.set_title(title)
        ax.set_xlabel("global step")
        if key == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        _mark_events(ax, events, colours)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize="small", loc="best")
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no loss or learning-rate entries in log_history", ha="center")
    fig.tight_layout()
    curves = out / "curves.png"
    try:
        fig.savefig(curves, dpi=100)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {str(curves)!r}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)

    written = [curves]
    for plugin, result in call_each("plot_figures", log_history=history, output_dir=out):
        if isinstance(result, Exception):
            print(
                f"trainer-callbacks plot: plugin {plugin}: no figure ({type(result).__name__}: {result})",
                file=sys.stderr,
            )
            continue
        written.extend(Path(p) for p in (result or []))
    return written
