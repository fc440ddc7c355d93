"""Core's conformance kit over a few configurations (state JSON/round trip, reuse, unrelated metrics,
main-process-only side effects, deepcopy/pickle)."""

from __future__ import annotations

import functools

import pytest

from trainer_callbacks.lr import ReduceLROnPlateau

testing = pytest.importorskip("trainer_callbacks.testing")
try:
    parametrize_with_checks = testing.parametrize_with_checks
except (ImportError, AttributeError):  # pragma: no cover - the kit not installed
    pytest.skip("trainer_callbacks.testing has no conformance kit", allow_module_level=True)

CONFIGURATIONS = [
    ReduceLROnPlateau,
    functools.partial(ReduceLROnPlateau, patience=0, factor=0.5),  # cuts during the kit's default stream
    functools.partial(ReduceLROnPlateau, patience=1, threshold_mode="abs", threshold=0.05, min_steps=4),
    functools.partial(
        ReduceLROnPlateau, monitor="eval_accuracy", mode="max", patience=1, cooldown=1, min_lr=1e-6, strict=False
    ),
]


@parametrize_with_checks(CONFIGURATIONS)
def test_conformance(callback, check) -> None:  # type: ignore[no-untyped-def]
    check()


# A strict monitor of a metric other than metric_for_best_model: the kit counts the metrics a
# callback's own options name as related, so evaluations carrying only those must not raise.
@parametrize_with_checks([functools.partial(ReduceLROnPlateau, monitor="eval_accuracy", mode="max", patience=1)])
def test_conformance_strict_other_metric(callback, check) -> None:  # type: ignore[no-untyped-def]
    check()
