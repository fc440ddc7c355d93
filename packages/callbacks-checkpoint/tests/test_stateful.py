"""A hypothesis state machine: save, evaluate, resume, crash mid-prune, restart, against the reference policy.

The machine plays the Trainer's part the way ``_save_checkpoint`` does it (weights, best-model
bookkeeping, ``trainer_state.json`` last, then ``on_save``) in a real directory that also
holds things the pruner must never touch. Invariants after every step:

* nothing outside the candidates is touched (another run's folder, a symlink named like a
  checkpoint, ``checkpoint-3-merged``, a file named like a checkpoint, a look-alike hidden folder);
* ``get_last_checkpoint`` returns a complete checkpoint whose ``trainer_state.json`` loads and
  whose weights are the ones written at that step, even right after a crash;
and after every prune: what remains is exactly the reference model's answer (plus the
higher-step folders, never touched), and the newest complete checkpoint, the best model
checkpoint and the resume point survive.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from checkpoint_reference import keep_sevens, reference_kept
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from trainer_callbacks.checkpoint import CheckpointPruner, deletion
from trainer_callbacks.checkpoint.deletion import TRASH_NAME, Deleter
from trainer_callbacks.checkpoint.policy import CheckpointInfo, RetentionPolicy, resolve_monitor

_BASE_ARGS: TrainingArguments | None = None


def base_args() -> TrainingArguments:
    global _BASE_ARGS
    if _BASE_ARGS is None:
        _BASE_ARGS = TrainingArguments(
            output_dir=tempfile.gettempdir(),
            use_cpu=True,
            report_to="none",
            save_strategy="steps",
            eval_strategy="steps",
            metric_for_best_model="loss",
            disable_tqdm=True,
        )
    return _BASE_ARGS


class SimulatedCrash(BaseException):
    """The process dies here (not an Exception: nothing may catch it)."""


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            out[rel] = (
                ("link:" + os.readlink(p))
                if p.is_symlink()
                else (hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            )
    return out


metric = st.one_of(st.none(), st.integers(0, 5).map(float), st.just(math.nan))
CHECKPOINT = "checkpoint-{}"


class PruningMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="prune-machine-"))
        self.run = self.root / "run"
        self.run.mkdir()
        outside = self.root / "other-run" / "checkpoint-1"
        outside.mkdir(parents=True)
        (outside / "model.safetensors").write_text("someone else's")
        os.symlink(outside, self.run / "checkpoint-0")  # a link named like a candidate, pointing outside
        (self.run / "checkpoint-3-merged").mkdir()
        (self.run / "checkpoint-3-merged" / "model.safetensors").write_text("merged")
        (self.run / "notes").write_text("mine")
        (self.run / ".checkpoint-2.deleting-not-a-uuid").mkdir()
        self.untouchable = {
            k: v for k, v in snapshot(self.root).items() if k.startswith("other-run") or not k.startswith("run/checkp")
        }
        self.untouchable |= {k: v for k, v in snapshot(self.root).items() if "merged" in k or k == "run/checkpoint-0"}
        self.args = copy.copy(base_args())
        self.args.output_dir = str(self.run)
        self.options: dict[str, Any] = {}
        self.cb: CheckpointPruner | None = None
        self.state: TrainerState | None = None
        self.resume_step: int | None = None
        self.saved_steps: set[int] = set()

    # ---- the run ----------------------------------------------------------------------------------
    @initialize(
        keep_last=st.integers(1, 3),
        keep_best=st.integers(0, 2),
        monitor=st.sampled_from(["default", "acc", "both", "pareto"]),
        every=st.one_of(st.none(), st.integers(2, 6)),
        background=st.booleans(),
        use_keep=st.booleans(),
    )
    def start(
        self, keep_last: int, keep_best: int, monitor: str, every: int | None, background: bool, use_keep: bool
    ) -> None:
        self.options = dict(
            keep_last=keep_last,
            keep_best=keep_best,
            keep_every_n_steps=every,
            background=background,
            keep=keep_sevens if use_keep else None,
            monitor={
                "default": None,
                "acc": "eval_acc",
                "both": {"eval_loss": "min", "eval_acc": "max"},
                "pareto": {"eval_loss": "min", "eval_acc": "max"},
            }[monitor],
            keep_pareto=monitor == "pareto",
        )
        self.begin(None)

    def begin(self, resume: str | None) -> None:
        self.cb = CheckpointPruner(**self.options)
        # the removals on this process's threads: this machine is about what is claimed and kept, and a child
        # process per run would cost more than the rest of it (the child: test_deleter_process.py)
        self.cb._deleter = Deleter(background=self.cb.background, process=False)
        if resume is None:
            self.state, self.resume_step = TrainerState(), None
        else:
            self.state = TrainerState.load_from_json(os.path.join(resume, "trainer_state.json"))
            self.resume_step = self.state.global_step
        self.cb.on_train_begin(self.args, self.state, TrainerControl())
        self.cb._deleter.wait()
        assert not [p for p in os.listdir(self.run) if TRASH_NAME.match(p)], "crash leftovers not cleaned at start"
        if resume is not None:
            assert os.path.isdir(resume)

    def on_disk(self) -> set[int]:
        names = (re.fullmatch(r"checkpoint-([1-9][0-9]*)", n) for n in os.listdir(self.run))
        return {int(m.group(1)) for m in names if m}

    def write_checkpoint(self, loss: float | None, acc: float | None) -> Path:
        """What Trainer._save_checkpoint does, in its order: weights, best bookkeeping, trainer_state.json."""
        state = self.state
        assert state is not None
        step = state.global_step
        if loss is not None or acc is not None:
            entry = {k: v for k, v in (("eval_loss", loss), ("eval_acc", acc)) if v is not None}
            state.log_history.append({**entry, "step": step})
            if loss is not None and not math.isnan(loss) and (state.best_metric is None or loss < state.best_metric):
                state.best_metric, state.best_global_step = loss, step
        path = self.run / CHECKPOINT.format(step)
        path.mkdir(exist_ok=True)
        (path / "model.safetensors").write_text(f"weights-{step}")
        if state.best_global_step and (self.run / CHECKPOINT.format(state.best_global_step)).exists():
            state.best_model_checkpoint = str(self.run / CHECKPOINT.format(state.best_global_step))
        state.save_to_json(str(path / "trainer_state.json"))
        self.saved_steps.add(step)
        return path

    def expected_after_prune(self) -> set[int]:
        state = self.state
        assert state is not None
        step = state.global_step
        infos = []
        for s in sorted(self.on_disk()):
            if s > step:
                continue
            metrics = {
                k: v for e in state.log_history if e.get("step") == s for k, v in e.items() if k.startswith("eval_")
            }
            if not metrics:
                with open(self.run / CHECKPOINT.format(s) / "trainer_state.json") as f:
                    metrics = {
                        k: v
                        for e in json.load(f)["log_history"]
                        if e.get("step") == s
                        for k, v in e.items()
                        if k.startswith("eval_")
                    }
            infos.append(
                CheckpointInfo(
                    path=self.run / CHECKPOINT.format(s),
                    step=s,
                    metrics=metrics,
                    complete=True,
                    is_best_model_checkpoint=state.best_model_checkpoint == str(self.run / CHECKPOINT.format(s)),
                )
            )
        policy = RetentionPolicy(
            keep_last=self.options["keep_last"],
            keep_best=self.options["keep_best"],
            monitor=resolve_monitor(self.options["monitor"], "loss", False),
            keep_pareto=self.options["keep_pareto"],
            keep_every_n_steps=self.options["keep_every_n_steps"],
        )
        kept = reference_kept(infos, policy, self.resume_step, self.options["keep"])
        return kept | {s for s in self.on_disk() if s > step}

    @rule(n=st.integers(1, 3), loss=metric, acc=metric)
    def train_and_save(self, n: int, loss: float | None, acc: float | None) -> None:
        assert self.state is not None and self.cb is not None
        self.state.global_step += n
        self.write_checkpoint(loss, acc)
        expected = self.expected_after_prune()
        best_before = self.state.best_model_checkpoint
        best_before = best_before if best_before and os.path.isdir(best_before) else None
        newest = max(self.on_disk() & set(range(self.state.global_step + 1)))
        self.cb.on_save(self.args, self.state, TrainerControl())
        self.check_loadable()  # renames are done, removal may still run: loaders already see the final set
        self.cb._deleter.wait()
        assert self.on_disk() == expected
        assert newest in self.on_disk()
        if best_before is not None:
            assert os.path.isdir(best_before)
        self.resume_step = None  # a newer complete checkpoint exists now

    @rule(n=st.integers(1, 3), loss=metric, claims_before_crash=st.integers(0, 3), mid_rmtree=st.booleans())
    def crash_mid_prune(self, n: int, loss: float | None, claims_before_crash: int, mid_rmtree: bool) -> None:
        """Save, then die while pruning (after some renames, or after all renames while removing), then restart."""
        assert self.state is not None and self.cb is not None
        self.state.global_step += n
        self.write_checkpoint(loss, None)
        self.resume_step = None  # a newer complete checkpoint exists now
        real_claim = deletion._claim
        claimed: list[Path] = []

        def dying_claim(path: Path) -> Path | bool:
            if not mid_rmtree and len(claimed) >= claims_before_crash:
                raise SimulatedCrash
            target = real_claim(path)
            if isinstance(target, Path):
                claimed.append(target)
            return target

        def dying_submit(removal: Any, paths: Any, **kwargs: Any) -> None:
            for trash in paths:  # rmtree got as far as the weights of each folder
                (trash / "model.safetensors").unlink()
            raise SimulatedCrash

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(deletion, "_claim", dying_claim)
            if mid_rmtree:
                mp.setattr(self.cb._deleter, "submit", dying_submit)
            with contextlib.suppress(SimulatedCrash):
                self.cb.on_save(self.args, self.state, TrainerControl())
        self.cb = None
        # the process is dead: what a person (or a job scheduler) finds on disk now
        self.check_loadable()
        self.nothing_else_touched()
        self.every_visible_checkpoint_is_complete()
        # restart: trainer.train(resume_from_checkpoint=True) takes the newest checkpoint by name
        last = get_last_checkpoint(str(self.run))
        assert last is not None
        self.begin(last)

    @rule(pick=st.integers(0, 10))
    def resume_from_an_earlier_checkpoint(self, pick: int) -> None:
        """Stop, and resume from any remaining checkpoint (later ones become higher-step leftovers)."""
        assert self.cb is not None and self.state is not None
        self.cb.on_train_end(self.args, self.state, TrainerControl())
        steps = sorted(self.on_disk())
        self.begin(str(self.run / CHECKPOINT.format(steps[pick % len(steps)])) if steps else None)

    # ---- invariants ---------------------------------------------------------------------------------------
    @invariant()
    def nothing_else_touched(self) -> None:
        now = snapshot(self.root)
        assert {k: now.get(k) for k in self.untouchable} == self.untouchable

    @invariant()
    def last_checkpoint_is_complete_and_loadable(self) -> None:
        self.check_loadable()

    def check_loadable(self) -> None:
        if not self.saved_steps:
            return
        last = get_last_checkpoint(str(self.run))
        assert last is not None and not os.path.islink(last)
        step = int(last.rsplit("-", 1)[1])
        state = TrainerState.load_from_json(os.path.join(last, "trainer_state.json"))
        assert state.global_step == step
        assert Path(last, "model.safetensors").read_text() == f"weights-{step}"

    @invariant()
    def every_visible_checkpoint_is_complete(self) -> None:
        for step in self.on_disk():
            path = self.run / CHECKPOINT.format(step)
            assert (path / "trainer_state.json").is_file() and (path / "model.safetensors").is_file(), path

    @invariant()
    def resume_point_survives(self) -> None:
        if self.resume_step is not None:
            assert (self.run / CHECKPOINT.format(self.resume_step)).is_dir()

    def teardown(self) -> None:
        if self.cb is not None and self.state is not None:
            self.cb.on_train_end(self.args, self.state, TrainerControl())
        shutil.rmtree(self.root, ignore_errors=True)


PruningMachine.TestCase.settings = settings(
    PruningMachine.TestCase.settings, stateful_step_count=25, max_examples=settings().max_examples
)
TestPruningMachine = PruningMachine.TestCase
