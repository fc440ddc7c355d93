"""Every first-party callback inside the Trainers people actually run (issue 15, "Keep it true").

Clients: TRL's SFTTrainer with a LoRA adapter, TRL's DPOTrainer, sentence-transformers'
SentenceTransformerTrainer with an evaluator, and a PEFT model under the plain Trainer (see
``clients.py``). Each test checks one thing against what the Trainer itself logged
(``state.log_history``) or left in its output folder, re-deriving the expected answer with
the reference rules of ``oracles.py``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from clients import SCENARIOS
from oracles import (
    best_model_step,
    early_stop_step,
    evaluations,
    expected_learning_rate,
    group_norms_by_step,
    kept_checkpoints,
    plateau_cut_steps,
    training_logs,
)

pytestmark = [
    pytest.mark.slow,  # each client trains once (1-4 s), shared by its tests
    # TRL turns gradient checkpointing on by default through names transformers 5 deprecates
    pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.* is deprecated:FutureWarning"),
]

CLIENTS = list(SCENARIOS)
_CHECKPOINT = re.compile(r"^checkpoint-([0-9]+)$")


@pytest.mark.parametrize("client", CLIENTS)
def test_training_stops_at_the_evaluation_the_rule_names(client: str, client_run: Any) -> None:
    run = client_run(client)
    scenario = run.scenario
    evals = evaluations(run.log_history, scenario.monitor)
    stop = early_stop_step(evals, mode="min", patience=scenario.stop_patience, threshold=10.0)

    assert stop is not None and stop < scenario.max_steps, (evals, stop)
    assert run.trainer.state.global_step == stop
    assert evals[-1][0] == stop  # no evaluation after the stop
    assert max(int(e["step"]) for e in training_logs(run.log_history)) == stop
    assert [e["step"] for e in run.log_history if "early_stopping/stopped" in e] == [stop]


@pytest.mark.parametrize("client", CLIENTS)
def test_logged_learning_rate_is_the_schedule_times_the_plateau_scale(client: str, client_run: Any) -> None:
    run = client_run(client)
    scenario = run.scenario
    evals = evaluations(run.log_history, scenario.monitor)
    cuts = plateau_cut_steps(evals, mode="min", patience=scenario.lr_patience, threshold=10.0)
    assert cuts, "the scenario is meant to cut the LR at least once"
    logs = training_logs(run.log_history)
    assert [int(e["step"]) for e in logs] == list(range(1, run.trainer.state.global_step + 1))

    for entry in logs:
        step = int(entry["step"])
        expected = expected_learning_rate(
            step,
            peak=scenario.learning_rate,
            warmup_steps=scenario.warmup_steps,
            max_steps=scenario.max_steps,
            factor=scenario.factor,
            cut_steps=cuts,
        )
        assert math.isclose(entry["learning_rate"], expected, rel_tol=1e-9, abs_tol=1e-15), (step, cuts)
    # the first cut shows in a logged step (training did not end at it)
    assert any(int(e["step"]) > cuts[0] for e in logs)


@pytest.mark.parametrize("client", CLIENTS)
def test_group_norms_add_up_to_the_trainers_grad_norm(client: str, client_run: Any) -> None:
    run = client_run(client)
    norms = group_norms_by_step(run.log_history)
    logs = {int(e["step"]): float(e["grad_norm"]) for e in training_logs(run.log_history)}

    assert set(norms) == set(logs)  # logging_steps=1: gradviz measured every step the Trainer logged
    for step, total in logs.items():
        assert total > 0
        combined = math.sqrt(sum(v * v for v in norms[step].values()))
        assert math.isclose(combined, total, rel_tol=1e-4), (step, norms[step], total)


@pytest.mark.parametrize("client", CLIENTS)
def test_layer_groups_are_one_per_block_plus_embeddings_and_head(client: str, client_run: Any) -> None:
    run = client_run(client)
    norms = group_norms_by_step(run.log_history)
    groups = set().union(*(set(g) for g in norms.values()))

    assert len(groups) == len(run.scenario.groups), sorted(groups)
    for pattern in run.scenario.groups:
        matching = [g for g in groups if re.search(pattern, g)]
        assert len(matching) == 1, (pattern, sorted(groups))
    # every measured step reports every group
    assert all(set(g) == groups for g in norms.values())


@pytest.mark.parametrize("client", CLIENTS)
def test_checkpoints_left_are_the_policys_answer_from_the_logged_evaluations(client: str, client_run: Any) -> None:
    run = client_run(client)
    monitors = dict(run.scenario.checkpoint_monitor)
    metrics_at: dict[int, dict[str, float]] = {}
    for metric in monitors:
        for step, value in evaluations(run.log_history, metric):
            metrics_at.setdefault(step, {})[metric] = value
    args = run.trainer.args
    best_model = None
    if args.metric_for_best_model:  # the Trainer's best model is kept too; re-derived, then checked against its record
        best_model = best_model_step(
            evaluations(run.log_history, args.metric_for_best_model), mode="max" if args.greater_is_better else "min"
        )
        assert run.trainer.state.best_model_checkpoint == str(run.output_dir / f"checkpoint-{best_model}")
    else:
        assert run.trainer.state.best_model_checkpoint is None
    expected = kept_checkpoints(run.saved_steps, metrics_at, monitors, best_model_step=best_model)

    names = [p.name for p in run.output_dir.iterdir()]
    on_disk = {int(m.group(1)) for n in names if (m := _CHECKPOINT.match(n))}
    assert set(run.saved_steps) == {s for s in metrics_at}, "every save comes with an evaluation here"
    assert on_disk == expected, (run.saved_steps, metrics_at)
    assert len(run.saved_steps) > len(on_disk), "the scenario is meant to delete at least one checkpoint"
    assert not [n for n in names if n.startswith(".checkpoint-")], names  # no half-deleted leftovers
    for step in on_disk:
        assert (run.output_dir / f"checkpoint-{step}" / "trainer_state.json").is_file()
