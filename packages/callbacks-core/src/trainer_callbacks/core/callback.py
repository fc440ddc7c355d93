"""``PluginCallback``: the base class of every first-party callback.

It gives a callback, once, what every callback here must do:

* ``ExportableState``: ``state()`` returns the constructor options (``args``) and the
  progress (``attributes["progress"]``, a JSON-able dict from :meth:`state_dict`), so the
  Trainer saves it in ``trainer_state.json`` at every checkpoint;
* resume without ``restore_callback_states_from_checkpoint``: at ``on_train_begin`` of a
  resumed run (``state.global_step > 0``) the saved progress is read back from
  ``state.stateful_callbacks``;
* reuse: :meth:`reset` runs at every ``on_train_begin``, so one instance serves several
  ``train()`` calls and hyperparameter-search trials;
* validation: the ``validate_training_args`` hook of every plugin runs at the start of
  ``train()``, and all problems are raised together before any step;
* reporting: :meth:`report` sends scalars to ``log_history``, TensorBoard and MLflow.

Subclasses implement ``reset``, ``state_dict``, ``load_state_dict`` and, if they need
them, ``check_training_args`` and ``setup_run``; they call ``super().__init__(**options)``
with their constructor options (JSON-able), and do not override ``on_train_begin``.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from transformers.trainer_callback import ExportableState, TrainerCallback

from trainer_callbacks.core import reporting
from trainer_callbacks.core.compat import callback_handler, stateful_callback_key
from trainer_callbacks.core.errors import ConfigurationError

logger = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    """``value`` as it comes back from a JSON round trip (tuples become lists...)."""
    return json.loads(json.dumps(value))


class PluginCallback(TrainerCallback, ExportableState):
    """Base class for trainer-callbacks callbacks (see the module docstring)."""

    def __init__(self, **options: Any) -> None:
        try:
            self._options = _jsonable(options)
        except TypeError as exc:
            raise ConfigurationError(
                f"{type(self).__name__}: every constructor option must be JSON-serialisable so the callback "
                f"can be saved in checkpoints ({exc})"
            ) from None
        self._handler_ref: weakref.ReferenceType[Any] | None = None
        self.reset()

    # ---- what subclasses implement -------------------------------------------------
    def reset(self) -> None:
        """Forget all per-run progress (called at construction and at every ``on_train_begin``)."""

    def state_dict(self) -> dict[str, Any]:
        """The per-run progress, JSON-serialisable."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def check_training_args(self, args: Any) -> list[str]:
        """Problems with ``args`` for this callback (each names the setting and the fix)."""
        return []

    def setup_run(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Called at ``on_train_begin`` after reset, validation and resume."""

    # ---- ExportableState ------------------------------------------------------------
    @property
    def progress(self) -> dict[str, Any]:
        return _jsonable(self.state_dict())

    @progress.setter
    def progress(self, value: Mapping[str, Any]) -> None:
        self.load_state_dict(value)

    def state(self) -> dict[str, Any]:
        return {"args": dict(self._options), "attributes": {"progress": self.progress}}

    # ---- pickling and copying: never carry the Trainer along ---------------------------
    def __getstate__(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["_handler_ref"] = None
        return data

    # ---- the event that ties it together ----------------------------------------------
    @property
    def handler(self) -> Any:
        """The Trainer's ``CallbackHandler`` of the current run, if known."""
        return self._handler_ref() if self._handler_ref is not None else None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        handler = callback_handler()
        self._handler_ref = weakref.ref(handler) if handler is not None else None
        siblings: Sequence[Any] = handler.callbacks if handler is not None else [self]
        first = next((cb for cb in siblings if isinstance(cb, PluginCallback)), self)
        if first is self:
            from trainer_callbacks.core.validation import validate_training_args

            validate_training_args(args, siblings)
        self.reset()
        if state.global_step > 0:
            self._restore(state, siblings)
        self.setup_run(args, state, control, **kwargs)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        reporting.flush(self.handler)

    def _restore(self, state: Any, siblings: Sequence[Any]) -> None:
        name = stateful_callback_key(self)
        saved = (state.stateful_callbacks or {}).get(name)
        if saved is None:
            logger.warning(
                "%s: resuming at step %d from a checkpoint that holds no saved state for it; starting fresh.",
                name,
                state.global_step,
            )
            # The Trainer's _save_checkpoint indexes stateful_callbacks[name]: without an entry
            # the next save would fail with a KeyError mid-run.
            if state.stateful_callbacks is not None:
                state.stateful_callbacks[name] = self.state()
            return
        entries = saved if isinstance(saved, list) else [saved]
        same_options = [e for e in entries if _jsonable(e.get("args", {})) == self._options]
        if not same_options:
            logger.warning(
                "%s: the checkpoint's saved state was made with other options (%s); starting fresh.",
                name,
                entries[0].get("args"),
            )
            return
        # Several instances of one class share a list that the Trainer extends at every save
        # (their states at train begin first, then one more per instance per save): the
        # newest states are the last ones, in the instances' order.
        twins = [cb for cb in siblings if type(cb) is type(self) and cb._options == self._options]
        index = next((i for i, cb in enumerate(twins) if cb is self), 0)
        newest = same_options[-len(twins) :] if len(same_options) >= len(twins) else same_options
        entry = newest[min(index, len(newest) - 1)]
        self.load_state_dict(entry.get("attributes", {}).get("progress", {}))

    # ---- reporting ----------------------------------------------------------------------
    def report(self, args: Any, state: Any, scalars: Mapping[str, float], *, step: int | None = None) -> None:
        """Send ``scalars`` to ``log_history``, TensorBoard and MLflow (see :mod:`.reporting`)."""
        reporting.report_scalars(args, state, scalars, step=step, handler=self.handler)
