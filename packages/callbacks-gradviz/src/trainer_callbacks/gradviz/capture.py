"""Run a function once the backward pass has finished, before the Trainer clips.

The Trainer clips gradients between ``training_step`` and ``on_pre_optimizer_step``, so a
callback only ever sees clipped gradients; and when one gradient is NaN the clip makes them
all NaN. :class:`BackwardEndCapture` sees them before that:

1. while armed, a forward hook on the model marks the forward of the LAST micro-batch of
   the optimizer step (accelerate's ``GradientState.sync_gradients``, which the Trainer sets
   before each micro-batch; without accelerate every micro-batch counts and the last wins);
2. on that forward's outputs it registers ONE ``torch.autograd.graph.register_multi_grad_hook``
   (mode ``"any"``), which fires when the backward pass reaches the outputs;
3. the hook queues an autograd-engine final callback, which queues itself once more so it
   runs after every other end-of-backward callback queued meanwhile (DDP's reducer
   finalisation, FSDP2's reduce-scatter wait): at that point every ``.grad`` holds the
   complete, reduced, unclipped gradient of the step.

Hooking the forward outputs rather than the parameters works under FSDP2, whose sharded
parameters are not in the autograd graph. Nothing is registered while disarmed: on steps
that are not measured the capture costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from trainer_callbacks.core import compat

logger = logging.getLogger(__name__)


def _tensors_requiring_grad(output: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    stack = [output]
    while stack and len(found) < 64:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            if item.requires_grad:
                found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return found


class BackwardEndCapture:
    """Calls ``on_backward_end()`` after the backward pass of the last micro-batch of an armed step."""

    def __init__(self, on_backward_end: Callable[[], None]) -> None:
        self._on_backward_end = on_backward_end
        self._forward_handle: Any = None
        self._grad_handle: Any = None
        self.fired = False

    @property
    def armed(self) -> bool:
        return self._forward_handle is not None

    def arm(self, model: torch.nn.Module) -> None:
        """Watch the next backward passes of ``model`` (until :meth:`disarm`)."""
        self.fired = False
        if self._forward_handle is None:
            self._forward_handle = model.register_forward_hook(self._after_forward)

    def disarm(self) -> None:
        for handle in (self._forward_handle, self._grad_handle):
            if handle is not None:
                handle.remove()
        self._forward_handle = self._grad_handle = None

    def _after_forward(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if not torch.is_grad_enabled() or not compat.is_final_micro_batch():
            return
        tensors = _tensors_requiring_grad(output)
        if not tensors:
            return
        if self._grad_handle is not None:  # a second forward before backward: follow the latest
            self._grad_handle.remove()
        self._grad_handle = torch.autograd.graph.register_multi_grad_hook(tensors, self._backward_started, mode="any")

    def _backward_started(self, grad: torch.Tensor) -> None:
        # mode="any" calls this once per backward pass; the handle is removed at disarm.
        compat.queue_after_backward(self._run)

    def _run(self) -> None:
        self.fired = True
        self._on_backward_end()
