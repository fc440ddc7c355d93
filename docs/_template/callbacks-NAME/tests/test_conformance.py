"""The conformance kit of trainer-callbacks-core: every property a callback must hold, one test each."""

from __future__ import annotations

import functools

from trainer_callbacks.testing import parametrize_with_checks
from trainer_callbacks.NAME.callback import BestMetricLogger


@parametrize_with_checks([BestMetricLogger, functools.partial(BestMetricLogger, monitor="eval_accuracy", mode="max")])
def test_conformance(callback, check):
    check()
