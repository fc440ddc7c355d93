"""The trainer-callbacks test kit: a Trainer-faithful simulator, hypothesis strategies and the conformance kit.

* :func:`simulate` runs callbacks through the exact event stream of ``Trainer.train()``
  (see :mod:`.simulator`) in microseconds per step;
* :mod:`.strategies` (uses ``hypothesis``, a dependency of ``trainer-callbacks-testing``)
  generates ``TrainingArguments`` and metric streams;
* :func:`check_callback`, :func:`checks` and :func:`parametrize_with_checks` run the
  properties every callback must hold (see :mod:`.checks`);
* :func:`build_tiny_trainer` builds a real ``Trainer`` on a tiny random-init BERT
  (:func:`tiny_bert`) and a generated :class:`TokenTask`, for end-to-end tests (see :mod:`.tiny_bert_trainer`).

Names are loaded on first access, so ``import trainer_callbacks.testing`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer_callbacks.testing import strategies
    from trainer_callbacks.testing.checkpoints import SavedCheckpoint
    from trainer_callbacks.testing.conformance import (
        CallbackCheckError,
        FakeClock,
        check_callback,
        check_plugin_module_is_light,
        checks,
        parametrize_with_checks,
    )
    from trainer_callbacks.testing.recording import CountingCallback, Event, RecordingCallback, log_keys, trace
    from trainer_callbacks.testing.simulator import Simulation, as_process, simulate
    from trainer_callbacks.testing.tiny_bert_trainer import (
        TokenTask,
        build_tiny_trainer,
        local_mlflow_env,
        tiny_bert,
        tiny_bert_config,
        tiny_training_args,
    )
    from trainer_callbacks.testing.tiny_model import TinyModel

__all__ = [
    "CallbackCheckError",
    "CountingCallback",
    "Event",
    "FakeClock",
    "RecordingCallback",
    "SavedCheckpoint",
    "Simulation",
    "TinyModel",
    "TokenTask",
    "as_process",
    "build_tiny_trainer",
    "check_callback",
    "check_plugin_module_is_light",
    "checks",
    "local_mlflow_env",
    "log_keys",
    "parametrize_with_checks",
    "simulate",
    "strategies",
    "tiny_bert",
    "tiny_bert_config",
    "tiny_training_args",
    "trace",
]

_LAZY = {
    "CallbackCheckError": "conformance",
    "check_callback": "conformance",
    "check_plugin_module_is_light": "conformance",
    "FakeClock": "conformance",
    "checks": "conformance",
    "parametrize_with_checks": "conformance",
    "Event": "recording",
    "CountingCallback": "recording",
    "RecordingCallback": "recording",
    "log_keys": "recording",
    "trace": "recording",
    "SavedCheckpoint": "checkpoints",
    "Simulation": "simulator",
    "as_process": "simulator",
    "simulate": "simulator",
    "TinyModel": "tiny_model",
    "TokenTask": "tiny_bert_trainer",
    "build_tiny_trainer": "tiny_bert_trainer",
    "local_mlflow_env": "tiny_bert_trainer",
    "tiny_bert": "tiny_bert_trainer",
    "tiny_bert_config": "tiny_bert_trainer",
    "tiny_training_args": "tiny_bert_trainer",
}


def __getattr__(name: str) -> Any:
    if name == "strategies":
        return importlib.import_module(f"{__name__}.strategies")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
