"""The pluggy markers of the ``trainer_callbacks`` project.

Plugins decorate their hook functions with :data:`hookimpl`; a function without it
is ignored, as in pytest.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "trainer_callbacks"
"""pluggy project name; also the entry-point group plugins declare."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
