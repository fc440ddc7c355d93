"""Workspace-wide pytest configuration: hypothesis profiles.

``ci`` (what ``make test`` uses): bounded and derandomised, so CI is repeatable and fast.
``dev``: hypothesis's defaults. ``deep``: many examples, for a run by hand:
``HYPOTHESIS_PROFILE=deep make test``.

Under a transformers outside the test kit's range (``make test-floors`` runs transformers 4.57),
a test that needs the simulator or a 5.x-only name is reported as skipped with the kit's reason
(``trainer_callbacks.testing.versions``), not as an error; every other failure stays one.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None)
settings.register_profile("deep", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def _cheap_real_trainer_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Real ``Trainer`` runs on tiny models, made cheap without changing what callbacks see.

    On a 2-core machine torch's thread pool costs more than it gives on tiny ops (one
    thread: 0.47 s instead of 14 s for a 16-step tiny-BERT run under load), and
    accelerate's ``free_memory`` at every ``train()`` runs a full ``gc.collect`` (~0.5 s with
    hypothesis loaded) that on CPU does nothing else.
    """
    try:
        import accelerate.utils.memory
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(accelerate.utils.memory, "clear_device_cache", lambda garbage_collection=False: None)
    yield
    torch.set_num_threads(threads)


def _as_kit_skip(report: pytest.CollectReport | pytest.TestReport, location: tuple[str, int]) -> None:
    from trainer_callbacks.testing.versions import kit_skip_reason

    if report.failed:
        reason = kit_skip_reason(str(report.longrepr))
        if reason is not None:
            report.outcome = "skipped"
            report.longrepr = (location[0], location[1], f"Skipped: {reason}")


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _as_kit_skip(report, (str(collector.path), 0))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
        _as_kit_skip(report, (str(item.path), item.location[1] or 0))
    return report
