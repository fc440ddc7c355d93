"""Every assumption of ``trainer_callbacks.core.compat``, asserted against the installed libraries.

One test per name in ``compat.ASSUMPTIONS`` (``test_<name>``, checked by the first test), so a
transformers / torch / accelerate / mlflow / tensorboard upgrade that breaks one fails here,
by name. Each test checks the fact itself (a real Trainer's call stack, a real scheduler, a real
backward pass), not the function's own output alone. The last tests check that a broken
assumption warns once, names itself and the installed versions, and does not degrade silently.
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch.optim import lr_scheduler
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ExportableState

from trainer_callbacks.core import compat
from trainer_callbacks.core.compat import CompatWarning
from trainer_callbacks.testing import TokenTask, build_tiny_trainer, local_mlflow_env, tiny_bert


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the once-per-process warnings afresh."""
    monkeypatch.setattr(compat, "_WARNED", set())


def test_every_assumption_has_its_test() -> None:
    names = {f"test_{name.replace('-', '_')}" for name in compat.ASSUMPTIONS}
    missing = sorted(n for n in names if not callable(globals().get(n)))
    assert not missing, missing
    for a in compat.ASSUMPTIONS.values():
        assert a.relies_on and a.public_route and a.when_broken, a.name


def test_importing_compat_imports_neither_torch_nor_transformers() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import trainer_callbacks.core.compat; "
        "print(sorted(m for m in ('torch', 'transformers', 'accelerate', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- one real Trainer run, observed from a callback ------------------------------------------


class StackProbe(TrainerCallback, ExportableState):
    """Records, at each event, what compat finds on the call stack (and is saved in every checkpoint)."""

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"events": len(self.seen)}}

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, Any, str | None, str | None]] = []
        self.handler_methods: set[str] = set()

    def _probe(self, event: str) -> None:
        self.seen.append(
            (
                event,
                compat.callback_handler(),
                compat.dispatching_trainer(),
                compat.trial_output_dir(),
                compat.resume_checkpoint_on_stack(),
            )
        )

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self._probe("train_begin")

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self._probe("step_end")

    def on_evaluate(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self._probe("evaluate")

    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self._probe("save")

    def on_train_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self._probe("train_end")


@pytest.fixture(scope="module")
def probed_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 4-step run saving at step 2, then a resume from ``checkpoint-2`` on a fresh Trainer."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("probe") / "out"
    first_probe, second_probe = StackProbe(), StackProbe()
    options: dict[str, Any] = dict(
        max_steps=4, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CompatWarning)
        first = build_tiny_trainer(out, [first_probe], **options)
        first.train()
        second = build_tiny_trainer(out, [second_probe], **options)
        checkpoint = str(out / "checkpoint-2")
        second.train(resume_from_checkpoint=checkpoint)
    return {
        "first": (first, first_probe),
        "second": (second, second_probe),
        "checkpoint": checkpoint,
        "out": out,
        "compat_warnings": [str(w.message) for w in caught if issubclass(w.category, CompatWarning)],
    }


def test_handler_on_stack(probed_runs: dict[str, Any]) -> None:
    from transformers.trainer_callback import CallbackHandler

    assert "self" in inspect.signature(CallbackHandler.call_event).parameters
    assert probed_runs["compat_warnings"] == []  # found from the call_event frame, not by a fallback
    for trainer, probe in (probed_runs["first"], probed_runs["second"]):
        events = {event for event, *_ in probe.seen}
        assert events == {"train_begin", "step_end", "evaluate", "save", "train_end"}
        for event, handler, *_ in probe.seen:
            assert handler is trainer.callback_handler, event
            assert probe in handler.callbacks


def test_trainer_on_stack(probed_runs: dict[str, Any]) -> None:
    for method in (Trainer._inner_training_loop, Trainer._maybe_log_save_evaluate):
        assert "trial" in inspect.signature(method).parameters, method.__name__
    assert "resume_from_checkpoint" in inspect.signature(Trainer._inner_training_loop).parameters
    (first, first_probe), (second, second_probe) = probed_runs["first"], probed_runs["second"]
    for event, _, trainer, _, resume in first_probe.seen:
        assert trainer is first, event
        assert resume is None, event
    resumes = {event: resume for event, _, trainer, _, resume in second_probe.seen if trainer is second}
    assert len(resumes) == 5
    assert resumes["train_begin"] == probed_runs["checkpoint"]  # the local of _inner_training_loop


def test_trial_output_dir(probed_runs: dict[str, Any], tmp_path: Path) -> None:
    from transformers.trainer_utils import HPSearchBackend

    trainer, probe = probed_runs["first"]
    assert {folder for *_, folder, _ in probe.seen} == {str(probed_runs["out"])}
    assert "trial" in inspect.signature(Trainer._get_output_dir).parameters
    assert trainer._get_output_dir(trial=None) == trainer.args.output_dir
    assert trainer._trial is None  # train() set it (the fallback when the method has no `trial` local)
    # Under a search (optuna-shaped trial), the trial folder is output_dir/hp_name(trial):
    # what CheckpointPruner must prune, computed by the Trainer itself.
    trial = type("Trial", (), {"number": 3})()
    trainer.hp_search_backend, trainer.hp_name = HPSearchBackend.OPTUNA, None
    try:
        assert trainer._get_output_dir(trial=trial) == os.path.join(trainer.args.output_dir, "run-3")
    finally:
        trainer.hp_search_backend = None


def test_stateful_callbacks_key(probed_runs: dict[str, Any]) -> None:
    import json

    (_, first_probe), (second, _) = probed_runs["first"], probed_runs["second"]
    key = compat.stateful_callback_key(first_probe)
    assert key == "StackProbe"
    saved = json.loads((probed_runs["out"] / "checkpoint-2" / "trainer_state.json").read_text())
    assert saved["stateful_callbacks"][key]["attributes"]["events"] > 0
    assert key in second.state.stateful_callbacks  # the resumed run read it back under the same name


def test_tracker_callbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.integrations import MLflowCallback, TensorBoardCallback

    for name, value in local_mlflow_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    trainer = build_tiny_trainer(tmp_path / "out", report_to=["tensorboard", "mlflow"])
    assert trainer.args.report_to == ["tensorboard", "mlflow"]
    kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
    assert kinds.count(TensorBoardCallback) == 1 and kinds.count(MLflowCallback) == 1
    tensorboard, mlflow = compat.tracker_callbacks(trainer.callback_handler.callbacks, trainer.args.report_to)
    assert isinstance(tensorboard, TensorBoardCallback) and isinstance(mlflow, MLflowCallback)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompatWarning)
        compat.tracker_callbacks(trainer.callback_handler.callbacks, trainer.args.report_to)


def test_tensorboard_writer(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments
    from transformers.integrations import TensorBoardCallback

    assert "tb_writer" in inspect.signature(TensorBoardCallback.__init__).parameters
    args = TrainingArguments(str(tmp_path), report_to="none", use_cpu=True)
    cb = TensorBoardCallback()
    cb.on_train_begin(args, TrainerState(), TrainerControl())
    writer = compat.tensorboard_writer(cb)
    assert writer is not None and hasattr(writer, "add_scalar") and hasattr(writer, "add_histogram")
    assert compat.tensorboard_logging_dir(cb) == writer.log_dir
    assert Path(writer.log_dir).is_relative_to(tmp_path)
    cb.on_train_end(args, TrainerState(), TrainerControl())
    assert compat.tensorboard_writer(cb) is None  # closed: reporting reopens one in logging_dir
    assert compat.tensorboard_logging_dir(cb) == writer.log_dir


class _ClosedTensorBoardCallback:
    """A TensorBoardCallback of transformers 4.x after its on_train_end: writer closed, no logging_dir."""

    tb_writer = None


class _Args:
    logging_dir = "runs/from-args"


@pytest.mark.parametrize("major", [4, 5])
def test_tensorboard_run_dir_without_logging_dir_depends_on_the_transformers_line(
    major: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compat, "transformers_major", lambda: major)
    cb = _ClosedTensorBoardCallback()
    if major == 4:  # 4.x's callback opens its writer in args.logging_dir (outside a search) and forgets it
        with warnings.catch_warnings():
            warnings.simplefilter("error", CompatWarning)
            assert compat.tensorboard_logging_dir(cb, _Args()) == "runs/from-args"
            assert compat.tensorboard_logging_dir(cb) is None
    else:  # 5.x always has logging_dir: its absence is a broken assumption
        with pytest.warns(CompatWarning, match="tensorboard-writer"):
            assert compat.tensorboard_logging_dir(cb, _Args()) is None


def test_tensorboard_run_dir_seen_open_wins_over_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils.tensorboard import SummaryWriter

    monkeypatch.setattr(compat, "transformers_major", lambda: 4)
    cb = _ClosedTensorBoardCallback()
    cb.tb_writer = SummaryWriter(log_dir=str(tmp_path / "trial-3"))  # type: ignore[assignment]
    assert compat.tensorboard_writer(cb) is cb.tb_writer
    cb.tb_writer.close()  # type: ignore[attr-defined]
    cb.tb_writer = None
    assert compat.tensorboard_logging_dir(cb, _Args()) == str(tmp_path / "trial-3")


def test_transformers_major_is_the_installed_line() -> None:
    import transformers

    assert compat.transformers_major() == int(transformers.__version__.split(".")[0])


def test_mlflow_active_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from transformers import TrainerControl, TrainerState, TrainingArguments
    from transformers.integrations import MLflowCallback

    for name, value in local_mlflow_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None, raising=False)
    assert mlflow.active_run() is None
    args = TrainingArguments(str(tmp_path / "out"), report_to="none", use_cpu=True)
    cb = MLflowCallback()
    cb.on_train_begin(args, TrainerState(), TrainerControl())
    try:
        run = mlflow.active_run()
        assert run is not None and compat.mlflow_active_run_id() == run.info.run_id
        assert Path(mlflow.get_tracking_uri().removeprefix("file://")).is_relative_to(tmp_path)
    finally:
        cb.on_train_end(args, TrainerState(), TrainerControl())
    assert mlflow.active_run() is None and compat.mlflow_active_run_id() is None


def _optimizer(lrs: list[float]) -> torch.optim.SGD:
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs])


def test_scheduler_children() -> None:
    opt = _optimizer([1.0])
    warm = lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    decay = lr_scheduler.LambdaLR(opt, lambda s: 0.25)
    sequential = lr_scheduler.SequentialLR(opt, [warm, decay], milestones=[2])
    assert compat.scheduler_children(sequential) == [warm, decay]
    assert compat.scheduler_children(warm) == []
    # they are the live children: the schedule follows their base_lrs
    decay.base_lrs[0] = 8.0
    for _ in range(3):
        opt.step()
        sequential.step()
    assert opt.param_groups[0]["lr"] == 8.0 * 0.25
    chained = lr_scheduler.ChainedScheduler([lr_scheduler.ConstantLR(opt), lr_scheduler.ExponentialLR(opt, 0.9)])
    assert [type(c) for c in compat.scheduler_children(chained) or []] == [
        lr_scheduler.ConstantLR,
        lr_scheduler.ExponentialLR,
    ]


def test_scheduler_last_lr() -> None:
    opt = _optimizer([1.0, 2.0])
    sched = lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    assert sched.get_last_lr() == [1.0, 2.0]
    compat.set_last_lr(sched, [0.5, 0.25])
    assert sched.get_last_lr() == [0.5, 0.25]  # what the Trainer's _get_learning_rate logs


def test_scheduler_initial_lr() -> None:
    opt = _optimizer([1.0])
    opt.param_groups[0]["initial_lr"] = 0.25  # left by an earlier run's reduction
    sched = lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    assert sched.base_lrs == [0.25]
    assert opt.param_groups[0]["lr"] == 0.25


def test_transformers_scheduler_classes() -> None:
    from packaging.version import Version
    from transformers import __version__
    from transformers.optimization import get_scheduler

    with warnings.catch_warnings():
        warnings.simplefilter("error", CompatWarning)  # a class missing where it should exist warns
        classes = compat.transformers_scheduler_classes()
    assert {"AdafactorSchedule", "LayerWiseDummyScheduler"} <= set(classes)
    if Version(__version__) >= Version("5.4"):  # GreedyLR and the "greedy" scheduler type came with 5.4
        assert "GreedyLR" in classes
        assert isinstance(get_scheduler("greedy", optimizer=_optimizer([1.0])), classes["GreedyLR"])
    else:
        assert "GreedyLR" not in classes
    # AdafactorSchedule is a LambdaLR: it must be refused before LambdaLR is accepted as exact
    assert issubclass(classes["AdafactorSchedule"], lr_scheduler.LambdaLR)


def test_dtensor_local() -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        whole = torch.arange(6.0).reshape(3, 2)
        sharded = distribute_tensor(whole, mesh, [Shard(0)])
        local = compat.local_tensor(sharded)
        assert type(local) is torch.Tensor
        assert torch.equal(local, whole)
        assert local.data_ptr() == sharded.to_local().data_ptr()  # no copy
        param = torch.nn.Parameter(distribute_tensor(whole.clone(), mesh, [Shard(0)]))
        with torch.enable_grad():
            local_param = compat.local_tensor(param)
        assert not local_param.requires_grad  # no autograd edge, even with grad mode on
        assert compat.local_tensor(whole) is whole and compat.local_tensor(None) is None
    finally:
        if created:
            dist.destroy_process_group()


def test_autograd_final_callback() -> None:
    from torch.autograd import Variable

    order: list[str] = []
    first, second = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    grads_when_run: list[bool] = []

    def ours() -> None:
        order.append("ours")
        grads_when_run.append(first.grad is not None and second.grad is not None)

    def other() -> None:
        order.append("other")

    output = first * 2.0 * second  # a model output, as gradviz hooks them

    def backward_reached_output(grad: torch.Tensor) -> None:
        compat.queue_after_backward(ours)

    torch.autograd.graph.register_multi_grad_hook([output], backward_reached_output, mode="any")
    loss = output.sum()
    # queued later in the same pass (as DDP's reducer does from a parameter hook)
    first.register_hook(lambda g: Variable._execution_engine.queue_callback(other))
    loss.backward()
    assert order == ["other", "ours"]
    assert grads_when_run == [True]


def test_accelerate_sync_gradients(tmp_path: Path) -> None:
    seen: list[bool] = []

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
            model.register_forward_hook(lambda *_: seen.append(compat.is_final_micro_batch()))

    torch.set_num_threads(1)
    trainer = build_tiny_trainer(tmp_path, [Probe()], max_steps=2, gradient_accumulation_steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompatWarning)
        trainer.train()
    assert seen == [False, False, True, False, False, True]


def test_accelerate_grad_scaler(probed_runs: dict[str, Any]) -> None:
    from accelerate.optimizer import AcceleratedOptimizer

    param = torch.nn.Parameter(torch.ones(2))
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    wrapped = AcceleratedOptimizer(torch.optim.SGD([param], lr=0.1), device_placement=False, scaler=scaler)
    assert wrapped.scaler is scaler
    assert compat.grad_scaler(wrapped) is scaler
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    off = AcceleratedOptimizer(torch.optim.SGD([param], lr=0.1), device_placement=False, scaler=disabled)
    assert compat.grad_scaler(off) is None
    assert compat.grad_scaler(torch.optim.SGD([param], lr=0.1)) is None  # not accelerate's: no scaler
    trainer, _ = probed_runs["first"]
    assert isinstance(trainer.optimizer, AcceleratedOptimizer)  # what the Trainer hands callbacks


def test_grad_scaler_scale() -> None:
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    scaler.scale((param * param).sum()).backward()
    assert compat.loss_scale(scaler) == 512.0
    assert param.grad is not None
    assert torch.equal(param.grad / compat.loss_scale(scaler), 2 * param.detach())


def test_foreach_ops() -> None:
    for name in ("_foreach_norm", "_foreach_mul", "_foreach_sub_"):
        assert callable(getattr(torch, name, None)), name  # the fused path, not the fallback
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(5, generator=gen), torch.randn(2, 3, generator=gen)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompatWarning)
        for p in (1.0, 2.0, float("inf")):
            got = compat.foreach_norm(tensors, p)
            assert [float(g) for g in got] == pytest.approx([float(torch.linalg.vector_norm(t, p)) for t in tensors])
        low = [t.to(torch.bfloat16) for t in tensors]
        assert all(n.dtype == torch.float32 for n in compat.foreach_norm(low, 2.0, dtype=torch.float32))
        copies = compat.foreach_copy(tensors)
        assert all(c.data_ptr() != t.data_ptr() and torch.equal(c, t) for c, t in zip(copies, tensors))
        compat.foreach_sub_(copies, tensors)
        assert all(not c.any() for c in copies)


def test_optimizer_step_hooks() -> None:
    from torch.optim.optimizer import register_optimizer_step_post_hook

    opt = _optimizer([1.0])
    assert not compat.optimizer_has_step_hooks(opt)
    handle = opt.register_step_pre_hook(lambda *a: None)
    assert compat.optimizer_has_step_hooks(opt)
    handle.remove()
    handle = register_optimizer_step_post_hook(lambda *a: None)
    try:
        assert compat.optimizer_has_step_hooks(opt)
    finally:
        handle.remove()
    # LRScheduler.step() before any optimizer.step() warns, unless the optimizer is marked stepped
    for mark, expected in ((False, 1), (True, 0)):
        opt = _optimizer([1.0])
        sched = lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        if mark:
            compat.mark_optimizer_stepped(opt)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sched.step()
        assert sum("before `optimizer.step()`" in str(w.message) for w in caught) == expected


# ---- a broken assumption: warned once, by name, with versions; never silent --------------------


def test_a_broken_assumption_warns_once_naming_it_and_the_versions() -> None:
    with pytest.warns(CompatWarning) as caught:
        compat.broken("scheduler-children", "SequentialLR._schedulers is NoneType")
        compat.broken("scheduler-children", "again")
    assert len(caught) == 1
    message = str(caught[0].message)
    versions = compat.installed_versions()
    assert "'scheduler-children'" in message and "SequentialLR._schedulers is NoneType" in message
    assert f"torch {versions['torch']}" in message and f"transformers {versions['transformers']}" in message
    assert "checked against: transformers 5.24, torch 2.13" in message


def test_a_trainer_without_a_handler_frame_warns_and_uses_its_callback_handler(tmp_path: Path) -> None:
    trainer = build_tiny_trainer(tmp_path)

    def event_outside_the_handler(self: Any) -> Any:  # a Trainer method that does not dispatch through call_event
        return compat.callback_handler()

    with pytest.warns(CompatWarning, match="handler-on-stack"):
        found = event_outside_the_handler(trainer)
    assert found is trainer.callback_handler


def test_no_handler_with_trackers_in_report_to_warns(tmp_path: Path) -> None:
    from transformers import TrainerState, TrainingArguments

    from trainer_callbacks.core.reporting import report_scalars

    state = TrainerState()
    args = TrainingArguments(str(tmp_path), report_to="none", use_cpu=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompatWarning)
        report_scalars(args, state, {"a/b": 1.0}, handler=None)  # no tracker asked for: nothing to say
    args.report_to = ["tensorboard"]
    with pytest.warns(CompatWarning, match="tensorboard"):
        report_scalars(args, state, {"a/b": 2.0}, handler=None)
    assert [e["a/b"] for e in state.log_history] == [1.0, 2.0]


def test_a_handler_missing_a_tracker_named_in_report_to_warns() -> None:
    with pytest.warns(CompatWarning, match="'mlflow'"):
        assert compat.tracker_callbacks([], ["mlflow"]) == (None, None)


def test_a_sequential_lr_whose_children_cannot_be_read_is_refused_not_exact(
    require_plugins: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_plugins("lr")
    from trainer_callbacks.lr.scaling import scheduler_support

    opt = _optimizer([1.0])
    sequential = lr_scheduler.SequentialLR(
        opt, [lr_scheduler.LambdaLR(opt, lambda s: 1.0), lr_scheduler.LambdaLR(opt, lambda s: 0.5)], milestones=[2]
    )
    assert scheduler_support(sequential).kind == "exact"
    monkeypatch.delattr(sequential, "_schedulers")
    with pytest.warns(CompatWarning, match="scheduler-children"):
        support = scheduler_support(sequential)
    assert support.kind == "refused" and "child schedulers" in support.reason


# ---- DeepSpeed ZeRO (skipped when deepspeed is not installed) ------------------------------------


@pytest.fixture(scope="module")
def zero_engines() -> Any:
    """A one-process ZeRO engine per stage (gloo, DeepSpeed's CPU accelerator), one backward done.

    Yields ``{stage: (engine, model, full_grads)}`` where ``full_grads`` are the gradients of the
    same loss computed by plain autograd on a copy of the model (the oracle).
    """
    pytest.importorskip("deepspeed")
    import importlib
    import socket

    import torch.distributed as dist

    old_accelerator = os.environ.get("DS_ACCELERATOR")
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    # gloo only: no JIT build of DeepSpeed's shared-memory op (run_all_plugins.py does the same)
    comm_torch: Any = importlib.import_module("deepspeed.comm.torch")
    comm_torch.build_shm_op = lambda: None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    old = {k: os.environ.get(k) for k in env} | {"DS_ACCELERATOR": old_accelerator}
    os.environ.update(env)
    engines = {}
    try:
        deepspeed.init_distributed(dist_backend="gloo")
        for stage in (1, 2, 3):
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
            reference = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
            reference.load_state_dict(model.state_dict())
            x = torch.randn(4, 5)
            reference(x).square().mean().backward()
            full = [p.grad.clone() for p in reference.parameters()]  # type: ignore[union-attr]
            config = {
                "train_batch_size": 4,
                "zero_optimization": {"stage": stage},
                "zero_allow_untested_optimizer": True,
                "gradient_clipping": 1e-3,  # the clip happens inside step(), after the hook
            }
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
            engine.backward(engine(x).square().mean())
            engines[stage] = (engine, model, full)
        yield engines
    finally:
        if dist.is_initialized():
            deepspeed.comm.destroy_process_group()  # DeepSpeed's own: it also drops its cached groups
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_deepspeed_zero_optimizer(zero_engines: Any) -> None:
    for stage, (engine, _, _) in zero_engines.items():
        found = compat.deepspeed_zero_optimizer(engine.optimizer)
        assert found is not None and found[0] is engine.optimizer and found[1] == stage
        assert found[1] == engine.zero_optimization_stage()  # DeepSpeed's public answer
        assert compat.deepspeed_unsupported(*found) is None
        assert compat.deepspeed_loss_scale(found[0]) == 1.0
        assert compat.deepspeed_dp_group(found[0]) is not None


def test_deepspeed_grad_partitions(zero_engines: Any) -> None:
    # stage order matters for nothing here: each engine was stepped by no one yet
    for stage, (engine, model, full) in zero_engines.items():
        seen: list[Any] = []

        def record(zero: Any = engine.optimizer, stage: int = stage, seen: list[Any] = seen) -> None:
            seen.append(compat.deepspeed_grad_partitions(zero, stage))

        remove = compat.hook_deepspeed_step(engine.optimizer, record)
        engine.step()
        remove()
        pairs = seen[0]
        assert pairs is not None
        own = {id(p) for p in model.parameters()}
        assert {id(p) for p, _ in pairs} <= own  # the model's own parameter objects
        by_param = {id(p): g for p, g in pairs}
        for p, g in zip(model.parameters(), full):
            # one rank holds every slice: each parameter's slice is its whole (flattened) gradient
            local = by_param[id(p)].reshape(-1)[: g.numel()]
            torch.testing.assert_close(local, g.reshape(-1), rtol=1e-5, atol=1e-7)
        squares = sum(float(g.float().square().sum()) for _, g in pairs)
        # DeepSpeed's own pre-clip global norm (the clip at 1e-3 did act: the norm is far above it)
        assert math.sqrt(squares) == pytest.approx(float(engine.get_global_grad_norm()), rel=1e-5)
        assert math.sqrt(squares) > 1e-2


def test_deepspeed_step_hook(zero_engines: Any) -> None:
    engine, _, _ = zero_engines[2]
    calls: list[str] = []
    original = type(engine.optimizer).step
    remove = compat.hook_deepspeed_step(engine.optimizer, lambda: calls.append("before"))
    assert "step" in vars(engine.optimizer)
    engine.backward(engine(torch.randn(4, 5)).sum())
    engine.step()  # the engine calls self.optimizer.step(), by attribute: the hook runs
    assert calls == ["before"]
    remove()
    assert "step" not in vars(engine.optimizer) and type(engine.optimizer).step is original


class RestoreProbe(TrainerCallback, ExportableState):
    """Records what compat.restoring_callback_handler answers while its saved attribute is set."""

    seen: ClassVar[list[Any]] = []

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"mark": 1}}

    @property
    def mark(self) -> int:
        return 1

    @mark.setter
    def mark(self, value: int) -> None:
        RestoreProbe.seen.append(compat.restoring_callback_handler())


def test_trainer_validate_args(tmp_path: Path) -> None:
    """The constructor's checks run on a stand-in object: a refused configuration raises what Trainer() raises."""
    from transformers import TrainingArguments

    if not hasattr(Trainer, "_validate_args"):
        pytest.skip("transformers 4.x checks the arguments inline in Trainer.__init__ (the kit needs >= 5.4)")

    class View:
        def __init__(self, args: TrainingArguments) -> None:
            self.args, self.train_dataset = args, range(4)
            self.eval_dataset: range | None = range(2)

        def __getattr__(self, name: str) -> None:
            return None

    ok = TrainingArguments(output_dir=str(tmp_path), eval_strategy="steps", eval_steps=2, report_to="none")
    compat.validate_trainer_args(View(ok))
    refused = TrainingArguments(output_dir=str(tmp_path), eval_strategy="steps", eval_steps=2, report_to="none")
    view = View(refused)
    view.eval_dataset = None  # evaluating without an eval dataset: the real Trainer refuses it at construction
    with pytest.raises(ValueError, match="eval_dataset"):
        compat.validate_trainer_args(view)
    with pytest.raises(ValueError, match="eval_dataset"):
        Trainer(model=tiny_bert(), args=refused, train_dataset=TokenTask(8))


def test_callback_state_restore(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "out"
    options: dict[str, Any] = dict(max_steps=2, save_strategy="steps", save_steps=1)
    build_tiny_trainer(out, [RestoreProbe()], **options).train()
    RestoreProbe.seen.clear()
    RestoreProbe().mark = 3  # set outside a Trainer's restore
    assert RestoreProbe.seen == [None]
    RestoreProbe.seen.clear()
    resumed = build_tiny_trainer(out, [RestoreProbe()], restore_callback_states_from_checkpoint=True, **options)
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-1"))
    assert RestoreProbe.seen and all(h is resumed.callback_handler for h in RestoreProbe.seen)


def test_deepspeed_lr_schedules() -> None:
    lr_schedules = pytest.importorskip("deepspeed.runtime.lr_schedules")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    warmup = lr_schedules.WarmupDecayLR(opt, total_num_steps=10, warmup_min_lr=0.01, warmup_max_lr=0.2)
    assert compat.deepspeed_schedule_lists(warmup) == ("min_lrs", "max_lrs", "delta_lrs")
    warmup.step()
    gamma = warmup._get_gamma()
    assert warmup.get_lr() == [warmup.min_lrs[0] + warmup.delta_lrs[0] * gamma]  # computed from the lists
    assert set(warmup.state_dict()) == {"last_batch_iteration"}  # the lists are not saved
    cosine = lr_schedules.WarmupCosineLR(opt, total_num_steps=10)
    assert compat.deepspeed_schedule_lists(cosine) == ("org_lrs",)
    cosine.step()
    assert cosine.get_lr() == [cosine.org_lrs[0] * cosine.get_lr_ratio()]
    assert compat.deepspeed_schedule_lists(lr_schedules.OneCycle(opt, 0.01, 0.1)) is None
    assert compat.deepspeed_schedule_lists(torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)) is None
