"""trainer-callbacks-NAME: rename me, and say in one line what the callback does."""

from trainer_callbacks.NAME.callback import BestMetricLogger

__all__ = ["BestMetricLogger"]
