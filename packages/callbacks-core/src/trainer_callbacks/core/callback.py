"""``PluginCallback``: the base class of every first-party callback.

It gives a callback, once, what every callback here must do:

* ``ExportableState``: ``state()`` returns the constructor options (``args``) and the
  progress (``attributes["progress"]``, a JSON-able dict from :meth:`state_dict`), so the
  Trainer saves it in ``trainer_state.json`` at every checkpoint;
* resume without ``restore_callback_states_from_checkpoint``: at ``on_train_begin`` of a
  resumed run (``state.global_step > 0``) the saved progress is read back from
  ``state.stateful_callbacks``; a damaged entry is a :class:`SavedStateError` naming the
  callback, the checkpoint folder and the field (``load_state_dict`` reads through
  :class:`~trainer_callbacks.core.saved_state.StateReader`), or, for a callback whose progress
  is bookkeeping only (``fresh_start_is_safe``), a warning and a fresh start;
* resume with ``restore_callback_states_from_checkpoint=True``: the Trainer replaces each
  callback with a new one built from the checkpoint's saved options; at ``on_train_begin`` the
  user's own object is put back in its place (and restored as above), with a warning naming
  any option that differs from the saved ones;
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
from typing import Any, ClassVar

from transformers.trainer_callback import ExportableState, TrainerCallback

from trainer_callbacks.core import reporting
from trainer_callbacks.core.compat import callback_handler, restoring_callback_handler, stateful_callback_key
from trainer_callbacks.core.errors import ConfigurationError, SavedStateError
from trainer_callbacks.core.saved_state import StateFieldError, describe

logger = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    """``value`` as it comes back from a JSON round trip (tuples become lists...)."""
    return json.loads(json.dumps(value))


class PluginCallback(TrainerCallback, ExportableState):
    """Base class for trainer-callbacks callbacks (see the module docstring)."""

    fresh_start_is_safe: ClassVar[bool] = False
    """True when the saved progress is bookkeeping only (nothing the callback decides depends on
    it): a damaged saved state then starts the callback fresh with a warning instead of an error."""

    _replaces: Any = None
    """On an object the Trainer rebuilt from saved options: the user's object it replaced."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = vars(cls).get("declared_options")  # a CallbackOptions dataclass (core/options.py)
        if declared is not None and cls.__doc__ and "Args:" not in cls.__doc__:
            # help(cls) lists the options, with the same text as `trainer-callbacks show`
            cls.__doc__ = f"{cls.__doc__.rstrip()}\n\n{declared.args_section()}\n"

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
        # Only the Trainer's restore_callback_states_from_checkpoint sets this, on an object it
        # has just built from the saved options and is about to put in place of the user's
        # one: remember which (the first of this class still in the handler is the one it
        # removes next), so that on_train_begin can put the user's object back.
        handler = restoring_callback_handler()
        if handler is None:  # not the Trainer's restore: load (and raise) as asked
            self.load_state_dict(value)
            return
        self._replaces = next((cb for cb in handler.callbacks if type(cb) is type(self) and cb is not self), None)
        try:
            self.load_state_dict(value)
        except (SavedStateError, KeyError, TypeError, ValueError, AttributeError):
            # reported with the checkpoint's name at on_train_begin, where the state is read again
            self.reset()

    def state(self) -> dict[str, Any]:
        return {"args": dict(self._options), "attributes": {"progress": self.progress}}

    # ---- pickling and copying: never carry the Trainer along ---------------------------
    def __getstate__(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["_handler_ref"] = None
        data.pop("_replaces", None)
        return data

    # ---- the event that ties it together ----------------------------------------------
    @property
    def handler(self) -> Any:
        """The Trainer's ``CallbackHandler`` of the current run, if known."""
        return self._handler_ref() if self._handler_ref is not None else None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        handler = callback_handler()
        if handler is not None:
            original = _put_back_user_callbacks(handler, self)
            if original is not None:  # self was built by the Trainer; the user's object takes its turn
                original.on_train_begin(args, state, control, **kwargs)
                return
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
        try:
            self._restore_checked(state, siblings)
        except SavedStateError as exc:
            name = type(self).__name__
            where = _checkpoint_file(state)
            field = exc.field if isinstance(exc, StateFieldError) else ""
            key = stateful_callback_key(self)
            path = f"stateful_callbacks.{key}" + (field if field.startswith("[") or not field else f".{field}")
            problem = exc.problem if isinstance(exc, StateFieldError) else str(exc)
            if self.fresh_start_is_safe:
                logger.warning(
                    "%s: the saved state in %s is damaged (%s: %s); starting %s fresh (its saved progress is "
                    "bookkeeping only: no decision depends on it).",
                    name,
                    where,
                    path,
                    problem,
                    name,
                )
                self.reset()
                return
            raise SavedStateError(
                f"{name}: cannot resume from the saved state in {where}: {path}: {problem}. The file was damaged "
                f"or written by another version. Resume from another checkpoint, or delete the {name!r} entry of "
                f"stateful_callbacks in that file to start {name} fresh (it then warns that it does)."
            ) from None

    def _restore_checked(self, state: Any, siblings: Sequence[Any]) -> None:
        name = stateful_callback_key(self)
        saved_all = state.stateful_callbacks
        if saved_all is not None and not isinstance(saved_all, Mapping):
            raise SavedStateError(f"stateful_callbacks is {describe(saved_all)}, not a table")
        saved = (saved_all or {}).get(name)
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
        for i, entry in enumerate(entries):
            at = f"[{i}]" if isinstance(saved, list) else ""
            if not isinstance(entry, Mapping):
                raise StateFieldError(at, f"expected a table with 'args' and 'attributes', got {describe(entry)}")
            for key in ("args", "attributes"):
                if not isinstance(entry.get(key, {}), Mapping):
                    raise StateFieldError(f"{at}.{key}".lstrip("."), f"expected a table, got {describe(entry[key])}")
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
        at = f"[{entries.index(entry)}]." if isinstance(saved, list) else ""
        progress = entry.get("attributes", {}).get("progress", {})
        try:
            if not isinstance(progress, Mapping):
                raise StateFieldError("", f"expected a table, got {describe(progress)}")
            self.load_state_dict(progress)
        except StateFieldError as exc:
            inner = f".{exc.field}" if exc.field else ""
            raise StateFieldError(f"{at}attributes.progress{inner}", exc.problem) from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a load_state_dict without StateReader
            raise StateFieldError(f"{at}attributes.progress", f"{type(exc).__name__}: {exc}") from None

    # ---- reporting ----------------------------------------------------------------------
    def report(self, args: Any, state: Any, scalars: Mapping[str, float], *, step: int | None = None) -> None:
        """Send ``scalars`` to ``log_history``, TensorBoard and MLflow (see :mod:`.reporting`)."""
        reporting.report_scalars(args, state, scalars, step=step, handler=self.handler)


def _checkpoint_file(state: Any) -> str:
    """The ``trainer_state.json`` being resumed from, as precisely as it can be known."""
    from trainer_callbacks.core.compat import resume_checkpoint_on_stack

    folder = resume_checkpoint_on_stack()
    if folder:
        return f"{folder}/trainer_state.json"
    return f"the checkpoint of step {state.global_step} (its trainer_state.json)"


def _put_back_user_callbacks(handler: Any, current: PluginCallback) -> PluginCallback | None:
    """Undo ``restore_callback_states_from_checkpoint``'s replacement of the user's objects.

    Each object the Trainer built from saved options is replaced, at its place in the handler,
    by the user's object it stood in for (a warning names the options that differ from the
    saved ones: the user's options are used). Returns the user's object if ``current`` was one
    of those replaced.
    """
    callbacks = handler.callbacks
    taken_back = None
    for i, cb in enumerate(callbacks):
        original = getattr(cb, "_replaces", None)
        if not isinstance(cb, PluginCallback) or original is None:
            continue
        cb._replaces = None
        if any(other is original for other in callbacks):
            continue
        callbacks[i] = original
        if cb is current:
            taken_back = original
        name = type(cb).__name__
        changed = {
            k: (original._options.get(k), cb._options.get(k))
            for k in sorted(set(original._options) | set(cb._options))
            if original._options.get(k) != cb._options.get(k)
        }
        if changed:
            logger.warning(
                "%s: restore_callback_states_from_checkpoint=True rebuilt it from the checkpoint's saved options; "
                "trainer-callbacks keeps your object, with your options, which differ from the saved ones: %s. Its "
                "progress is restored only when the options match (otherwise it starts fresh).",
                name,
                "; ".join(f"{k}={mine!r} (saved: {saved!r})" for k, (mine, saved) in changed.items()),
            )
        else:
            logger.info(
                "%s: restore_callback_states_from_checkpoint=True rebuilt it from the checkpoint; trainer-callbacks "
                "keeps your object (same options) and restores its progress into it.",
                name,
            )
    return taken_back
