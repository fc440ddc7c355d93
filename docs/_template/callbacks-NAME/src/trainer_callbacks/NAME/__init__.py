"""trainer-callbacks-NAME: rename me, and say in one line what the callback does.

``from trainer_callbacks.NAME import BestMetricLogger`` works, but importing this package imports
neither torch nor transformers: ``trainer-callbacks list`` imports the entry point
(``trainer_callbacks.NAME.plugin``), and so this file, and must stay fast. The callback module is
imported on first access of the name (the conformance kit's ``check_entry_point_is_light`` checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer_callbacks.NAME.callback import BestMetricLogger

__all__ = ["BestMetricLogger"]


def __getattr__(name: str) -> Any:
    if name == "BestMetricLogger":
        from trainer_callbacks.NAME.callback import BestMetricLogger

        return BestMetricLogger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
