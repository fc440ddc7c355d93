"""``trainer-callbacks plot``: PNG figures from a run's ``trainer_state.json``.

``curves.png`` has one panel per curve, over the global step: the training loss, the eval loss,
the learning rate, then every other metric a callback monitors (found in the options the
callbacks saved in ``trainer_state.json``'s ``stateful_callbacks``), then the panels plugins add
through their ``plot_panels`` hook (:class:`PlotPanel`). The events plugins return from
``plot_events`` (:class:`PlotEvent`) are marked on every panel, and on the evaluation panels the
checkpoints still in the output folder (hollow squares) and the Trainer's
``best_model_checkpoint`` (a star). Plugins draw figures of their own through ``plot_figures``
(gradviz: the gradient-norm heatmap). matplotlib is imported only inside the functions.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer_callbacks.core import ConfigurationError, PlotEvent, PlotPanel


@dataclass(frozen=True)
class Checkpoints:
    """The checkpoints to mark: the steps of the ``checkpoint-N`` folders left, and the best one's step."""

    kept: tuple[int, ...] = ()
    best: int | None = None


@dataclass
class CurvesFigure:
    """The curves figure (a matplotlib ``Figure``) and what was drawn on it, for callers and tests."""

    figure: Any
    panels: list[PlotPanel] = field(default_factory=list)
    monitored: list[str] = field(default_factory=list)
    checkpoints: Checkpoints = Checkpoints()
    events: list[PlotEvent] = field(default_factory=list)


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
    """Steps and values of ``key`` in ``log_history`` (entries whose value or step is not a number are skipped)."""
    steps, values = [], []
    for entry in log_history:
        if key in entry and _is_number(entry.get("step")) and _is_number(entry[key]):
            steps.append(int(entry["step"]))
            values.append(float(entry[key]))
    return steps, values


def _strings(value: Any) -> Iterable[str]:
    """Every string in a JSON value: dict keys and values, list items, nested."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def monitored_metrics(trainer_state: Mapping[str, Any], log_history: list[dict[str, Any]]) -> list[str]:
    """The evaluation metrics the run's callbacks monitor, beyond the loss panels: ``eval_*`` keys of
    ``log_history`` named in the options (``args``) a callback saved in ``stateful_callbacks``.

    Core names no callback: any saved option value (or mapping key) that is, or with ``eval_``
    prefixed is, a numeric ``eval_*`` key of ``log_history`` counts, in the order the options name them.
    """
    logged = {key for entry in log_history for key, value in entry.items() if _is_number(value)}
    saved = trainer_state.get("stateful_callbacks") if isinstance(trainer_state, Mapping) else None
    found: dict[str, None] = {}
    for entries in (saved or {}).values() if isinstance(saved, Mapping) else []:
        for entry in entries if isinstance(entries, list) else [entries]:
            args = entry.get("args") if isinstance(entry, Mapping) else None
            for text in _strings(args or {}):
                for key in (text, f"eval_{text}"):
                    if key.startswith("eval_") and key in logged and key not in BASE_KEYS:
                        found.setdefault(key, None)
    return list(found)


_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def checkpoint_marks(state_file: Path, trainer_state: Mapping[str, Any]) -> Checkpoints:
    """The ``checkpoint-N`` folders in the run's output folder and the step of ``best_model_checkpoint``.

    The output folder is the state file's folder, or its parent when the state file is a
    checkpoint's own copy. Only the folder's name of ``best_model_checkpoint`` is read (the run
    may have been moved since).
    """
    run_dir = state_file.parent
    if _CHECKPOINT.fullmatch(run_dir.name) and not any(run_dir.glob("checkpoint-*")):
        run_dir = run_dir.parent
    kept: list[int] = []
    try:
        for child in run_dir.iterdir():
            match = _CHECKPOINT.fullmatch(child.name)
            if match and child.is_dir():
                kept.append(int(match[1]))
    except OSError:
        pass
    best_path = trainer_state.get("best_model_checkpoint") if isinstance(trainer_state, Mapping) else None
    best_match = _CHECKPOINT.fullmatch(Path(best_path).name) if isinstance(best_path, str) and best_path else None
    return Checkpoints(tuple(sorted(kept)), int(best_match[1]) if best_match else None)


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
BASE_KEYS = frozenset(key for key, _ in PANELS)


def _output_folder(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"plot --out {str(out)!r} is a file; pass a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"plot --out {str(out)!r}: cannot create the folder: {exc.strerror or exc}") from None
    return out


def read_state(state_file: Path) -> dict[str, Any]:
    """The whole ``trainer_state.json`` (already checked by :func:`load_log_history`), ``{}`` if unreadable."""
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _plugin_results(hook: str, kind: type, what: str, **kwargs: Any) -> list[Any]:
    from trainer_callbacks.core import call_each

    found: list[Any] = []
    for plugin, result in call_each(hook, **kwargs):
        if isinstance(result, Exception):
            print(
                f"trainer-callbacks plot: plugin {plugin}: no {what} ({type(result).__name__}: {result})",
                file=sys.stderr,
            )
            continue
        for item in result or []:
            if isinstance(item, kind):
                found.append(item)
            else:
                print(
                    f"trainer-callbacks plot: plugin {plugin}: {hook} returned {item!r}, "
                    f"not a {kind.__name__}; skipped",
                    file=sys.stderr,
                )
    return found


def curves_figure(
    history: list[dict[str, Any]], trainer_state: Mapping[str, Any] | None = None, state_file: Path | None = None
) -> CurvesFigure:
    """Draw the curves figure (not saved): the panels, the plugins' events and the checkpoints.

    ``trainer_state`` gives the monitored metrics and ``best_model_checkpoint``; ``state_file``
    the output folder whose ``checkpoint-N`` folders are marked.
    """
    import matplotlib.pyplot as plt

    state = dict(trainer_state or {})
    events = _plugin_results("plot_events", PlotEvent, "events", log_history=history)
    extra = _plugin_results("plot_panels", PlotPanel, "panels", log_history=history, trainer_state=state)
    monitored = monitored_metrics(state, history)
    candidates = [PlotPanel((key,), title) for key, title in PANELS]
    candidates += [PlotPanel((key,), f"{key} (monitored)") for key in monitored]
    candidates += extra
    panels = [panel for panel in candidates if any(series(history, key)[0] for key in panel.keys)]
    marks = checkpoint_marks(state_file, state) if state_file is not None else Checkpoints(best=None)
    if state_file is None and isinstance(state.get("best_model_checkpoint"), str):
        match = _CHECKPOINT.fullmatch(Path(state["best_model_checkpoint"]).name)
        marks = Checkpoints(best=int(match[1]) if match else None)

    rows = max(len(panels), 1)
    fig, axes = plt.subplots(rows, 1, figsize=(10, 3 * rows), squeeze=False)
    kinds = sorted({event.kind for event in events})
    colours = {kind: plt.get_cmap("tab10")((i + 1) % 10) for i, kind in enumerate(kinds)}  # C0 is the curve
    for ax, panel in zip(axes[:, 0], panels):
        for key in panel.keys:
            steps, values = series(history, key)
            if not steps:
                continue
            ax.plot(steps, values, marker="." if len(steps) < 50 else None, label=key)
            if key.startswith("eval_"):
                _mark_checkpoints(ax, steps, values, marks)
        ax.set_title(panel.title)
        ax.set_xlabel("global step")
        if panel.ylabel:
            ax.set_ylabel(panel.ylabel)
        if panel.log_scale:
            ax.set_yscale("log")
        elif panel.keys == ("learning_rate",):
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        _mark_events(ax, events, colours)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize="small", loc="best")
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no loss or learning-rate entries in log_history", ha="center")
    fig.tight_layout()
    return CurvesFigure(fig, panels, monitored, marks, events)


def _mark_checkpoints(ax: Any, steps: list[int], values: list[float], marks: Checkpoints) -> None:
    """Hollow squares at the kept checkpoints' steps, a star at the best one's (where the curve has a value)."""
    at = dict(zip(steps, values))
    kept = [step for step in marks.kept if step in at]
    if kept:
        ax.plot(
            kept,
            [at[s] for s in kept],
            linestyle="none",
            marker="s",
            markersize=9,
            markerfacecolor="none",
            markeredgecolor="black",
            label=f"kept checkpoints ({len(kept)})",
            gid="kept_checkpoints",
        )
    if marks.best is not None and marks.best in at:
        ax.plot(
            [marks.best],
            [at[marks.best]],
            linestyle="none",
            marker="*",
            markersize=15,
            color="gold",
            markeredgecolor="black",
            label=f"best checkpoint (step {marks.best})",
            gid="best_checkpoint",
        )


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

    drawn = curves_figure(history, read_state(state_file), state_file)
    curves = out / "curves.png"
    try:
        drawn.figure.savefig(curves, dpi=100)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {str(curves)!r}: {exc.strerror or exc}") from None
    finally:
        plt.close(drawn.figure)

    from trainer_callbacks.core import call_each

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
