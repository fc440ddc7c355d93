"""WHEN to measure: will the optimizer step that is about to happen be logged?

Gradients exist only between the backward pass and ``model.zero_grad()``; the Trainer
decides ``should_log`` later, in ``DefaultFlowCallback.on_step_end`` (after ``global_step``
is incremented) or in ``on_epoch_end``. So the decision is taken in advance, at
``on_step_begin``, for step ``state.global_step + 1``, with the same rules:

* ``logging_first_step`` and step 1;
* ``logging_strategy="steps"``: ``step % state.logging_steps == 0`` (``state.logging_steps`` is
  already the absolute value when ``logging_steps`` was a fraction of ``max_steps``);
* ``logging_strategy="epoch"``: the last step of an epoch (``step`` a multiple of the number of
  optimizer steps per epoch, from the train dataloader's length) or the last step of training;
* ``every_n_steps`` (the callback's own option) replaces all of the above with
  ``step % every_n_steps == 0``.

One case cannot be decided in advance: ``logging_strategy="epoch"`` with a dataloader that has
no length (an ``IterableDataset`` with ``max_steps``). The Trainer learns that a pass over the
data ended only when the iterator is exhausted, after the pass's last step, and logs that step
then. :func:`will_log` answers ``None`` ("unknown") for such steps (every step but the last
of training); the callback measures them on the device and reports the newest when the Trainer logs.
"""

from __future__ import annotations

from typing import Any

from trainer_callbacks.core import strategy


def steps_per_epoch(train_dataloader: Any, gradient_accumulation_steps: int) -> int | None:
    """Optimizer steps per epoch, as the Trainer computes it; None when the dataloader has no length."""
    try:
        length = len(train_dataloader)
    except TypeError:
        return None
    ga = max(int(gradient_accumulation_steps), 1)
    return max(length // ga + int(length % ga > 0), 1)


def logging_strategy(args: Any) -> str:
    """``args.logging_strategy`` as text (``"steps"``, ``"epoch"``, ``"no"``), enum or string (core's rule)."""
    return strategy(args, "logging")


def will_log(
    step: int,
    *,
    args: Any,
    state: Any,
    every_n_steps: int | None = None,
    updates_per_epoch: int | None = None,
) -> bool | None:
    """Whether optimizer step ``step`` (1-based: ``state.global_step + 1`` before it runs) is logged.

    ``None`` when it cannot be known before the step runs: ``logging_strategy="epoch"`` and
    ``updates_per_epoch`` unknown (a dataloader without a length), for a step before ``max_steps``.
    """
    if every_n_steps is not None:
        return step % every_n_steps == 0
    if step == 1 and getattr(args, "logging_first_step", False):
        return True
    strategy = logging_strategy(args)
    if strategy == "steps":
        every = getattr(state, "logging_steps", None) or getattr(args, "logging_steps", None)
        if not every:
            return False
        return step % int(every) == 0
    if strategy == "epoch":
        max_steps = int(getattr(state, "max_steps", 0) or 0)
        if max_steps and step >= max_steps:
            return True
        if not updates_per_epoch:
            return None
        return step % updates_per_epoch == 0
    return False
