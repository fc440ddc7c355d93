"""The one way plugins report their own scalars.

The Trainer calls the reporting integrations (TensorBoard, MLflow, ...) BEFORE user
callbacks in ``on_log``, so a value a callback adds to ``logs`` never reaches them.
:func:`report_scalars` writes a plugin's values itself:

* to ``state.log_history`` (so they are in every ``trainer_state.json``), on every
  process so that the state stays identical across ranks;
* to the Trainer's own TensorBoard writer (same run directory as the Trainer's
  scalars) when ``TensorBoardCallback`` is active;
* to the active MLflow run in ONE ``log_batch`` call when ``MLflowCallback`` is active;

trackers are written on the world process zero only. Keys are
``<namespace>/<name>``. In MLflow every ``/`` becomes ``.`` (``grad_norm/bert.encoder`` is logged
as ``grad_norm.bert.encoder``): MLflow's file store turns ``/`` into sub-folders, so a key that is
also the prefix of another (the Trainer's own ``grad_norm`` and a plugin's ``grad_norm/<group>``,
or ``lr_plateau/scale`` and ``lr_plateau/scale/group_0``) would make one of the writes fail. Any
other character MLflow does not accept is replaced by ``_`` exactly as transformers'
``MLflowCallback`` does.
"""

from __future__ import annotations

import math
import re
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from trainer_callbacks.core import compat

_MLFLOW_BAD_CHARS = re.compile(r"[^0-9A-Za-z_\-\.\ :/]")


def mlflow_key(key: str) -> str:
    """The name a metric gets in MLflow: ``/`` becomes ``.``, then transformers' ``MLflowCallback`` sanitising."""
    return _MLFLOW_BAD_CHARS.sub("_", key.replace("/", "."))


class _Trackers:
    """The integration callbacks of one ``CallbackHandler`` (found through :mod:`.compat`)."""

    def __init__(self, callbacks: Sequence[Any], report_to: Sequence[str] | None, args: Any = None):
        self.ids = {id(cb) for cb in callbacks}
        self.args = args  # transformers 4.x: args.logging_dir is the run directory (see compat)
        self.tensorboard, self.mlflow = compat.tracker_callbacks(callbacks, report_to)
        self.mlflow_run_id: str | None = None
        self._own_writer: Any = None
        self._own_writer_dir: str | None = None

    def tb_writer(self) -> Any:
        cb = self.tensorboard
        if cb is None:
            return None
        writer = compat.tensorboard_writer(cb)
        if writer is not None:
            return writer
        # The Trainer's writer is closed in its on_train_end, which runs before ours:
        # reopen a writer of our own in the same run directory.
        log_dir = compat.tensorboard_logging_dir(cb, self.args)
        if log_dir is None:
            return None
        if self._own_writer is None or self._own_writer_dir != log_dir:
            from torch.utils.tensorboard import SummaryWriter

            self._own_writer = SummaryWriter(log_dir=log_dir)
            self._own_writer_dir = log_dir
        return self._own_writer

    def flush(self) -> None:
        if self._own_writer is not None:
            self._own_writer.close()
            self._own_writer = None
        writer = compat.tensorboard_writer(self.tensorboard) if self.tensorboard is not None else None
        if writer is not None:
            writer.flush()

    def mlflow_run(self) -> str | None:
        """The MLflow run of this training: the active run while there is one, then the last one seen."""
        if self.mlflow is None:
            return None
        active = compat.mlflow_active_run_id()
        if active is not None:
            self.mlflow_run_id = active
        return self.mlflow_run_id


_trackers: weakref.WeakKeyDictionary[Any, _Trackers] = weakref.WeakKeyDictionary()


def _trackers_for(handler: Any, args: Any) -> _Trackers | None:
    if handler is None:
        compat.trackers_unreachable(getattr(args, "report_to", None))
        return None
    trackers = _trackers.get(handler)
    if trackers is None or {id(cb) for cb in handler.callbacks} != trackers.ids:
        trackers = _Trackers(handler.callbacks, getattr(args, "report_to", None), args)
        _trackers[handler] = trackers
    return trackers


def report_scalars(
    args: Any,
    state: Any,
    scalars: Mapping[str, float],
    *,
    step: int | None = None,
    handler: Any = None,
) -> None:
    """Record ``scalars`` at ``step`` (default ``state.global_step``) everywhere the run reports.

    ``handler`` is the Trainer's ``CallbackHandler``; :class:`PluginCallback` passes it for
    you. Without it only ``log_history`` is written.
    """
    if not scalars:
        return
    step = state.global_step if step is None else int(step)
    values = {str(k): float(v) for k, v in scalars.items()}
    state.log_history.append({**values, "step": step})
    if not state.is_world_process_zero:
        return
    trackers = _trackers_for(handler, args)
    if trackers is None:
        return
    writer = trackers.tb_writer()
    if writer is not None:
        for key, value in values.items():
            writer.add_scalar(key, value, step)
    run_id = trackers.mlflow_run()
    if run_id is not None:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_key(k), v, now, step) for k, v in values.items() if math.isfinite(v)]
        if metrics:
            MlflowClient().log_batch(run_id, metrics=metrics, synchronous=True)


def report_histogram(
    args: Any, state: Any, tag: str, values: Sequence[float], *, step: int | None = None, handler: Any = None
) -> None:
    """A TensorBoard histogram of ``values`` (TensorBoard only; other trackers have no histograms)."""
    if not state.is_world_process_zero:
        return
    trackers = _trackers_for(handler, args)
    writer = trackers.tb_writer() if trackers is not None else None
    if writer is None:
        return
    import numpy as np

    writer.add_histogram(tag, np.asarray(values, dtype=np.float64), state.global_step if step is None else step)


def flush(handler: Any) -> None:
    """Flush (and close what core opened) for this handler's trackers."""
    trackers = _trackers.get(handler) if handler is not None else None
    if trackers is not None:
        trackers.flush()
