"""The tiny torch model, optimizer and scheduler the simulator hands to callbacks.

They are real torch objects built the way ``Trainer.create_optimizer`` and
``Trainer.create_scheduler`` build them, so a callback that reads learning rates,
parameter groups or gradients sees what it would see under the Trainer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# The same patterns as ``Trainer.get_decay_parameter_names``.
_NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


class TinyModel(nn.Module):
    """A two-layer regression model that returns ``{"loss": ...}`` like a transformers model.

    Its parameter groups (``encoder.weight``, ``encoder.bias``, ``norm.weight``,
    ``norm.bias``, ``head.weight``, ``head.bias``) give per-layer callbacks something to
    group, and a ``LayerNorm`` gives weight decay something to exclude. The real
    ``Trainer`` trains it too (the differential tests use it on both sides).
    """

    def __init__(self, in_features: int = 4, hidden: int = 8, seed: int = 0) -> None:
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.encoder = nn.Linear(in_features, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, 1)
        torch.random.set_rng_state(generator_state)
        self.in_features = in_features

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self.head(torch.tanh(self.norm(self.encoder(x)))).squeeze(-1)
        result = {"logits": out}
        if labels is not None:
            result["loss"] = nn.functional.mse_loss(out, labels.to(out.dtype))
        return result


def tiny_batch(model: nn.Module, micro_step: int, batch_size: int = 2) -> dict[str, torch.Tensor]:
    """A deterministic batch for ``TinyModel`` (depends only on ``micro_step``)."""
    generator = torch.Generator().manual_seed(micro_step)
    features = getattr(model, "in_features", 4)
    x = torch.randn(batch_size, features, generator=generator)
    return {"x": x, "labels": x.sum(-1)}


def default_loss_fn(model: nn.Module, micro_step: int) -> torch.Tensor:
    """Forward ``TinyModel`` on :func:`tiny_batch` and return the loss tensor."""
    output: Mapping[str, Any] = model(**tiny_batch(model, micro_step))
    return output["loss"]


def decay_parameter_names(model: nn.Module) -> list[str]:
    """The names of the parameters that get weight decay (as ``Trainer.get_decay_parameter_names``)."""
    from transformers.trainer_pt_utils import get_parameter_names

    return get_parameter_names(model, [nn.LayerNorm], _NO_DECAY_PATTERNS)


def build_optimizer(args: Any, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``Trainer.create_optimizer`` builds for ``args`` (two groups: decay / no decay)."""
    decay = set(decay_parameter_names(model))
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if n in decay and p.requires_grad],
            "weight_decay": args.weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if n not in decay and p.requires_grad],
            "weight_decay": 0.0,
        },
    ]
    optim = str(getattr(args.optim, "value", args.optim))
    if optim in ("adamw_torch", "adamw_torch_fused"):
        # The Trainer's handler for these: torch AdamW with lr, betas and eps from args
        # (``fused`` only matters on accelerators, so it is left out on CPU).
        return torch.optim.AdamW(
            groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon
        )
    from transformers import Trainer

    # Annotated ``PreTrainedModel | None``, but the Trainer itself passes ``self.model``, any ``nn.Module``.
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, cast("PreTrainedModel", model))
    return optimizer_cls(groups, **optimizer_kwargs)


def build_scheduler(args: Any, optimizer: torch.optim.Optimizer, max_steps: int) -> Any:
    """The scheduler ``Trainer.create_scheduler`` builds (``transformers.optimization.get_scheduler``)."""
    from transformers.optimization import get_scheduler

    return get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=args.get_warmup_steps(max_steps),
        num_training_steps=max_steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )


def is_metric_driven(scheduler: Any) -> bool:
    """Schedulers the Trainer steps after evaluation with the metric (not after each optimizer step)."""
    from transformers.optimization import GreedyLR

    return isinstance(scheduler, (torch.optim.lr_scheduler.ReduceLROnPlateau, GreedyLR))


def current_learning_rate(optimizer: torch.optim.Optimizer, scheduler: Any) -> float:
    """``Trainer._get_learning_rate`` (non-DeepSpeed branch)."""
    if is_metric_driven(scheduler):
        lr = optimizer.param_groups[0]["lr"]
    else:
        lr = scheduler.get_last_lr()[0]
    if torch.is_tensor(lr):
        lr = lr.item()
    return lr


def optimizer_step_is_a_no_op(optimizer: torch.optim.Optimizer) -> bool:
    """True when ``optimizer.step()`` would change nothing: no parameter has a gradient and no step hook is set.

    The simulator (without ``compute_gradients``) then skips the call, which is most of the
    cost of a simulated step; it marks the optimizer as stepped so schedulers do not warn.
    """
    from trainer_callbacks.core.compat import optimizer_has_step_hooks

    if optimizer_has_step_hooks(optimizer):
        return False
    return all(p.grad is None for group in optimizer.param_groups for p in group["params"])
