"""Tiny real Trainer runs and an INDEPENDENT reference for the per-group norms.

``RecordingTrainer`` snapshots, after every ``training_step`` (i.e. after each micro-batch's
backward, before the Trainer clips), a float64 copy of every parameter's ``.grad``. The
snapshot of the last micro-batch of a step is the unclipped gradient the optimizer step
starts from; the tests group those per-parameter norms themselves (``reference_group``, a
hand-written rule for BERT names) and compare with what gradviz logged. Nothing in here
uses gradviz's kernel, capture or grouping.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from transformers import BertForSequenceClassification, Trainer

from trainer_callbacks import testing as kit


class TokenTask(kit.TokenTask):
    """The test kit's token task with a 100-token vocabulary and fair-coin labels."""

    def __init__(self, n: int = 32, seed: int = 0, vocab: int = 100, length: int = 8) -> None:
        super().__init__(n, seed, vocab, length, labels="random")


def tiny_bert(layers: int = 2, seed: int = 0, dtype: torch.dtype | None = None) -> BertForSequenceClassification:
    model = kit.tiny_bert(seed, vocab_size=100, num_hidden_layers=layers, max_position_embeddings=32)
    return model.to(dtype) if dtype is not None else model  # type: ignore[arg-type]  # transformers types .to oddly


def reference_group(name: str) -> str:
    """BERT's layer groups, written by hand: encoder blocks by index, the rest by top-level part."""
    m = re.match(r"(bert\.encoder\.layer\.\d+)\.", name)
    if m:
        return m.group(1)
    for prefix in ("bert.embeddings", "bert.pooler", "classifier"):
        if name.startswith(prefix + "."):
            return prefix
    raise AssertionError(f"unexpected BERT parameter {name}")


def by_leaf(name: str) -> str:
    """A module-level ``group_by`` callable: the last component of the name (``weight``, ``bias``)."""
    return name.rpartition(".")[2]


class RecordingTrainer(Trainer):
    """Records float64 copies of the gradients after each micro-batch (keyed by the coming step)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unclipped_grads: dict[int, dict[str, torch.Tensor]] = {}

    @property
    def unclipped(self) -> dict[int, dict[str, float]]:
        """Per-parameter float64 2-norms of the unclipped gradients, by step."""
        return {s: {n: float(g.norm()) for n, g in d.items()} for s, d in self.unclipped_grads.items()}

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        assert self.model is not None
        self.unclipped_grads[self.state.global_step + 1] = {
            n: p.grad.detach().double().clone() for n, p in self.model.named_parameters() if p.grad is not None
        }
        return loss


def logged(history: list[dict[str, Any]], prefix: str) -> dict[int, dict[str, float]]:
    """``{step: {group: value}}`` of the entries whose keys start with ``prefix`` (e.g. ``grad_norm/``)."""
    out: dict[int, dict[str, float]] = {}
    for entry in history:
        for key, value in entry.items():
            if key.startswith(prefix):
                out.setdefault(int(entry["step"]), {})[key[len(prefix) :]] = float(value)
    return out


def trainer_grad_norms(history: list[dict[str, Any]]) -> dict[int, float]:
    return {int(e["step"]): float(e["grad_norm"]) for e in history if "grad_norm" in e}
