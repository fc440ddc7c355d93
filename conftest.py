"""Workspace-wide pytest configuration: hypothesis profiles.

``ci`` (what ``make test`` uses): bounded and derandomised, so CI is repeatable and fast.
``dev``: hypothesis's defaults. ``deep``: many examples, for a run by hand:
``HYPOTHESIS_PROFILE=deep make test``.
"""

from __future__ import annotations

import os

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
