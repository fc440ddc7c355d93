"""Models gradviz cannot measure as asked are told why, at train begin; branches without gradients are not errors."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from gradviz_helpers import logged, tiny_bert
from torch import nn
from transformers import TrainerControl, TrainerState, TrainingArguments

from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.gradviz import GradNormLogger


def gradviz_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if str(w.message).startswith("GradNormLogger")]


def test_a_model_without_trainable_parameters_is_told_so_at_train_begin(run_trainer) -> None:
    model = tiny_bert()
    model.requires_grad_(False)
    count = sum(1 for _ in model.parameters())
    trainer = run_trainer([GradNormLogger()], model=model, train=False)
    with pytest.raises(ConfigurationError) as info:
        trainer.train()
    assert str(info.value) == (
        "GradNormLogger: the model (BertForSequenceClassification) has no trainable parameter: all "
        f"{count} parameters have requires_grad=False, so there is no gradient to measure. Unfreeze the "
        "parameters to train (or attach an adapter), or remove GradNormLogger."
    )
    assert trainer.state.global_step == 0  # before any step ran


def test_include_that_selects_nothing_names_the_trainable_parameters(run_trainer) -> None:
    model = tiny_bert()
    model.bert.embeddings.requires_grad_(False)
    trainable = sum(p.requires_grad for p in model.parameters())
    trainer = run_trainer([GradNormLogger(include=["encoder.*"])], model=model, train=False)
    with pytest.raises(ConfigurationError) as info:
        trainer.train()
    message = str(info.value)
    assert message.startswith(
        f"GradNormLogger(include=['encoder.*'], exclude=None) selects none of the {trainable} trainable parameters; "
        "their names look like: bert.encoder.layer.0.attention.self.query.weight"
    )
    assert trainer.state.global_step == 0


class LateBranch(nn.Module):
    """A tiny BERT plus a branch ``extra`` that the loss uses only from the second forward on."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_bert()
        self.extra = nn.Linear(2, 2)
        self.calls = 0

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.calls += 1
        out = self.net(input_ids=input_ids, labels=labels)
        loss = out.loss
        if self.calls > 1:
            loss = loss + self.extra(out.logits).pow(2).mean()
        return {"loss": loss, "logits": out.logits}


def test_a_branch_without_gradient_at_the_first_step_does_not_switch_the_logger_off(run_trainer) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = run_trainer([GradNormLogger(include=["extra.*"])], model=LateBranch(), max_steps=3, logging_steps=1)
    assert gradviz_warnings(caught) == []
    groups = logged(trainer.state.log_history, "grad_norm/")
    assert sorted(groups) == [1, 2, 3]
    for step in (1, 2, 3):
        grads = trainer.unclipped[step]  # float64 norms of the .grad that exist after the step's backward
        expected = math.sqrt(sum(grads.get(n, 0.0) ** 2 for n in ("extra.weight", "extra.bias")))
        assert groups[step] == pytest.approx({"extra": expected}, rel=1e-5)
    assert groups[1] == {"extra": 0.0}  # no .grad at step 1: the branch took no part in the loss
    assert groups[2]["extra"] > 0 and groups[3]["extra"] > 0


class Detached(nn.Module):
    """A loss that depends on no parameter: the backward pass runs, and no parameter gets a .grad."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        leaf = torch.ones(2, requires_grad=True)
        return {"loss": (leaf * input_ids.float().mean()).sum()}


def test_no_gradient_anywhere_is_reported_without_blaming_deepspeed(run_trainer) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = run_trainer([GradNormLogger()], model=Detached(), max_steps=2, logging_steps=1)
    assert gradviz_warnings(caught) == [
        "GradNormLogger: no trainable parameter has a .grad after the backward pass of step 1 (the training engine "
        "keeps gradients outside p.grad, or the loss did not depend on any parameter); no gradient norms are "
        "logged for such steps."
    ]
    assert logged(trainer.state.log_history, "grad_norm/") == {}


def test_deepspeed_is_named_only_for_deepspeed() -> None:
    cb = GradNormLogger()
    cb.reset()
    # DeepSpeed without a ZeRO optimizer gradviz can read (stage 0 here): said once, with the reason
    with pytest.warns(RuntimeWarning, match="cannot be measured exactly in this DeepSpeed run: the optimizer"):
        cb.setup_run(
            SimpleNamespace(deepspeed="ds_config.json", gradient_accumulation_steps=1),
            None,
            None,
            model=tiny_bert(),
            optimizer=torch.optim.SGD(tiny_bert().parameters(), lr=0.1),
        )
    state = SimpleNamespace(global_step=0, max_steps=4, logging_steps=1)
    cb.on_step_begin(SimpleNamespace(), state, None, model=tiny_bert())
    assert not cb._capture.armed  # logs nothing in this run, costs nothing


class SparseBag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(20, 4, sparse=True)
        self.head = nn.Linear(4, 2)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(self.head(self.embed(input_ids).mean(1)), labels)}


def test_sparse_gradients_are_measured(tmp_path) -> None:
    # The Trainer of transformers 5.24 cannot run this model itself (its clip_grad_norm_ rejects sparse
    # gradients), so the Trainer's event order is driven by hand, as a custom loop would.
    net = SparseBag()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", logging_steps=1, max_steps=2)
    state, control = TrainerState(), TrainerControl()
    state.max_steps, state.logging_steps = 2, 1
    cb = GradNormLogger(log_update_ratio=True)
    cb.on_train_begin(args, state, control, model=net)
    batch = {"input_ids": torch.tensor([[1, 1, 2], [1, 3, 3]]), "labels": torch.tensor([0, 1])}  # repeated rows
    cb.on_step_begin(args, state, control, model=net, optimizer=optimizer)
    net(**batch)["loss"].backward()
    grads = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    assert grads["embed.weight"].is_sparse
    dense = grads["embed.weight"].to_dense().double()
    head = math.sqrt(sum(float(grads[n].double().pow(2).sum()) for n in ("head.weight", "head.bias")))
    before = net.embed.weight.detach().double().clone()
    cb.on_pre_optimizer_step(args, state, control, model=net)
    optimizer.step()
    cb.on_optimizer_step(args, state, control, model=net)
    state.global_step += 1
    by_step = logged(state.log_history, "grad_norm/")
    assert by_step[1] == pytest.approx({"embed": float(dense.norm()), "head": head}, rel=1e-6)
    ratio = float((net.embed.weight.detach().double() - before).norm() / before.norm())
    assert logged(state.log_history, "update_ratio/")[1]["embed"] == pytest.approx(ratio, rel=1e-5)
