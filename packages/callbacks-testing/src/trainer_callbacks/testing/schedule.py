"""How many epochs, steps and batches a ``train()`` call runs: ``Trainer.set_initial_training_values``.

The rules for WHEN to log, evaluate and save are not reproduced here: the simulator
runs transformers' own ``DefaultFlowCallback`` and ``TrainerState.compute_steps``, so they
cannot drift from the Trainer's. This module holds the step arithmetic of the training
loop, which lives inside ``Trainer`` methods that need a dataloader and an accelerator.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from trainer_callbacks.core import ConfigurationError


@dataclass(frozen=True)
class TrainingPlan:
    """The values ``Trainer.set_initial_training_values`` returns, for one ``train()`` call."""

    num_train_epochs: int
    num_update_steps_per_epoch: int
    num_examples: int
    num_train_samples: float
    total_train_batch_size: int
    steps_in_epoch: int
    """Micro-batches per epoch (``len(train_dataloader)``)."""
    max_steps: int
    batches_per_epoch: int | None
    """How many micro-batches the dataloader really yields per epoch (``None``: no length, endless)."""

    def resume_position(self, global_step: int, args: Any) -> tuple[int, int]:
        """``(epochs_trained, steps_trained_in_current_epoch)`` as ``Trainer._init_training_state`` computes them."""
        epochs_trained = int(global_step // self.num_update_steps_per_epoch)
        steps_trained = 0
        if not args.ignore_data_skip:
            steps_trained = (global_step % self.num_update_steps_per_epoch) * args.gradient_accumulation_steps
        return epochs_trained, steps_trained


def dataloader_length(
    args: Any, *, train_dataset_len: int | None, batches_per_epoch: int | None, steps_per_epoch: int | None
) -> tuple[int | None, int | None]:
    """``(len(train_dataloader), len(train_dataset))`` from whichever size the caller gave (at most one)."""
    given = [
        n
        for n, v in (
            ("train_dataset_len", train_dataset_len),
            ("batches_per_epoch", batches_per_epoch),
            ("steps_per_epoch", steps_per_epoch),
        )
        if v is not None
    ]
    if len(given) > 1:
        raise ConfigurationError(f"simulate(): pass at most one of {', '.join(given)} (they all size the epoch)")
    batch_size = args.per_device_train_batch_size
    if train_dataset_len is not None:
        if train_dataset_len < 0:
            raise ConfigurationError("simulate(): train_dataset_len must be >= 0")
        if args.dataloader_drop_last:
            return train_dataset_len // batch_size, train_dataset_len
        return math.ceil(train_dataset_len / batch_size), train_dataset_len
    if batches_per_epoch is not None:
        if batches_per_epoch < 0:
            raise ConfigurationError("simulate(): batches_per_epoch must be >= 0")
        return batches_per_epoch, batches_per_epoch * batch_size
    if steps_per_epoch is not None:
        if steps_per_epoch < 1:
            raise ConfigurationError("simulate(): steps_per_epoch must be >= 1")
        n = steps_per_epoch * args.gradient_accumulation_steps
        return n, n * batch_size
    return None, None


def plan_training(args: Any, len_dataloader: int | None, num_examples: int | None) -> TrainingPlan:
    """``Trainer.set_initial_training_values`` for a dataloader of ``len_dataloader`` batches (``None``: no length)."""
    ga = args.gradient_accumulation_steps
    max_steps = args.max_steps
    epoch_based = max_steps < 0
    total_train_batch_size = args.per_device_train_batch_size * ga * args.world_size
    num_update_steps_per_epoch = 0
    if len_dataloader is not None:
        num_update_steps_per_epoch = max(len_dataloader // ga + int(len_dataloader % ga > 0), 1)
        if epoch_based:
            max_steps = math.ceil(args.num_train_epochs * num_update_steps_per_epoch)
    if len_dataloader:
        examples = num_examples if num_examples is not None else len_dataloader * args.per_device_train_batch_size
        if args.max_steps > 0:
            num_train_epochs = max_steps // num_update_steps_per_epoch + int(max_steps % num_update_steps_per_epoch > 0)
            num_train_samples: float = max_steps * total_train_batch_size
        else:
            num_train_epochs = math.ceil(args.num_train_epochs)
            num_train_samples = examples * args.num_train_epochs
    elif args.max_steps > 0:
        num_train_epochs = sys.maxsize
        num_update_steps_per_epoch = max_steps
        examples = total_train_batch_size * args.max_steps
        num_train_samples = args.max_steps * total_train_batch_size
    else:  # the Trainer's error and type (ValueError), with how to size the simulated epoch
        raise ValueError(
            "args.max_steps must be set to a positive value if dataloader does not have a length, was "
            f"{args.max_steps} (pass train_dataset_len=, batches_per_epoch= or steps_per_epoch= to simulate(), "
            "or set max_steps)"
        )
    steps_in_epoch = len_dataloader if len_dataloader is not None else max_steps * ga
    return TrainingPlan(
        num_train_epochs=num_train_epochs,
        num_update_steps_per_epoch=num_update_steps_per_epoch,
        num_examples=examples,
        num_train_samples=num_train_samples,
        total_train_batch_size=total_train_batch_size,
        steps_in_epoch=steps_in_epoch,
        max_steps=max_steps,
        batches_per_epoch=len_dataloader,
    )
