"""Recording the callback event stream, of the simulator or of a real ``Trainer``.

:class:`Event` is one event as a callback saw it. :class:`RecordingCallback` records
the events it receives; add it to a real ``Trainer`` and to :func:`simulate` and compare
their :func:`trace` to check that both produce the same stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from transformers.trainer_callback import ExportableState, TrainerCallback

EVENTS = (
    "on_init_end",
    "on_train_begin",
    "on_epoch_begin",
    "on_step_begin",
    "on_pre_optimizer_step",
    "on_optimizer_step",
    "on_substep_end",
    "on_step_end",
    "on_evaluate",
    "on_prediction_step",
    "on_save",
    "on_log",
    "on_epoch_end",
    "on_train_end",
)

# Values that measure wall-clock time or throughput: they differ between any two runs.
WALL_CLOCK_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second", "_tokens_per_second")


class Event(NamedTuple):
    """One callback event: its name, ``state.global_step`` and ``state.epoch`` then, and its payload.

    ``payload`` is a copy of ``logs`` (``on_log``) or ``metrics`` (``on_evaluate``), else ``None``.
    """

    name: str
    global_step: int
    epoch: float | None
    payload: dict[str, Any] | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        """The sorted keys of ``payload`` (empty for events without one)."""
        return tuple(sorted(self.payload)) if self.payload else ()


class RecordingCallback(TrainerCallback):
    """Records every event it receives in :attr:`events`.

    Args:
        events (tuple[str, ...]): the event names to record (default: all of :data:`EVENTS`).
    """

    def __init__(self, events: Iterable[str] = EVENTS) -> None:
        self.recorded = frozenset(events)
        self.events: list[Event] = []

    def record(self, name: str, state: Any, kwargs: Mapping[str, Any]) -> None:
        if name in self.recorded:
            payload = (
                kwargs.get("logs") if name == "on_log" else kwargs.get("metrics") if name == "on_evaluate" else None
            )
            self.events.append(
                Event(name, state.global_step, state.epoch, dict(payload) if payload is not None else None)
            )


def _recorder(name: str) -> Any:
    def event(self: RecordingCallback, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.record(name, state, kwargs)

    event.__name__ = name
    return event


for _name in EVENTS:
    setattr(RecordingCallback, _name, _recorder(_name))


def trace(events: Iterable[Event], *, include_values: bool = False) -> list[tuple[Any, ...]]:
    """A comparable form of an event stream: ``(name, global_step, epoch, sorted payload keys)``.

    With ``include_values`` the payload values are included too, except the wall-clock ones
    (keys ending in :data:`WALL_CLOCK_SUFFIXES`).
    """
    out: list[tuple[Any, ...]] = []
    for e in events:
        row: tuple[Any, ...] = (e.name, e.global_step, e.epoch, e.keys)
        if include_values and e.payload:
            row += (tuple(sorted((k, v) for k, v in e.payload.items() if not k.endswith(WALL_CLOCK_SUFFIXES))),)
        out.append(row)
    return out


def log_keys(log_history: Iterable[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """The sorted keys of every ``state.log_history`` entry."""
    return [tuple(sorted(entry)) for entry in log_history]


class CountingCallback(TrainerCallback, ExportableState):
    """A minimal stateful callback in the Trainer's own style (no trainer-callbacks base class):
    it counts optimizer steps and evaluations, and its state goes into every checkpoint."""

    def __init__(self, tag: str = "a") -> None:
        self.tag = tag
        self.steps = 0
        self.evals = 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps += 1

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.evals += 1

    def state(self) -> dict[str, Any]:
        return {"args": {"tag": self.tag}, "attributes": {"steps": self.steps, "evals": self.evals}}
