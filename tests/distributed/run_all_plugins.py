"""One small training run with every first-party plugin, for the distributed tests.

Usage (the tests run it, each process writes ``OUT_DIR/rank<R>.json``):

    python run_all_plugins.py single OUT_DIR                           # 1 process, batch 16
    torchrun --nproc_per_node=2 run_all_plugins.py zero2 OUT_DIR       # DeepSpeed ZeRO-1/2/3 (DS_ACCELERATOR=cpu)
    torchrun --nproc_per_node=2 run_all_plugins.py zero1,zero2 OUT     # one after the other: OUT/zero1, OUT/zero2
    torchrun --nproc_per_node=2 run_all_plugins.py zero2-bf16 OUT_DIR  # on CPU: -bf16, -fp16 (see allow_fp16_on_cpu)
    torchrun --nproc_per_node=2 run_all_plugins.py zero3-gpu-bf16 OUT  # on GPUs (nccl): -fp32, -bf16, -fp16
    torchrun --nproc_per_node=2 run_all_plugins.py zero3 OUT --stop-after 20   # then, in the same OUT:
    torchrun --nproc_per_node=2 run_all_plugins.py zero3 OUT --resume   # from get_last_checkpoint(OUT/run)
    torchrun --nproc_per_node=2 run_all_plugins.py ddp OUT_DIR         # 2 processes x batch 8 (gloo)
    torchrun --nnodes=2 --node_rank=R --nproc_per_node=1 ... nodes OUT_DIR   # 2 "nodes", save_on_each_node

Same model (dropout off), same data in sequential order, same global batch of 16 per step, so
DDP's averaged gradients equal the single process's. fp16 modes start DeepSpeed's dynamic loss
scale at 2**20 and halve it at every overflow (``hysteresis`` 1), and log (so gradviz measures)
every step: the first steps overflow whatever the data (the scaled loss itself, about 0.69 * 2**17
and above, exceeds fp16's 65504), and each process records which steps DeepSpeed applied. Every
process records the LR of its optimizer after each step, where training stopped, its
``log_history``, and every call that renamed or removed a checkpoint folder (``shutil.rmtree``,
``os.rename``, ``os.replace``, ``os.remove``/``os.unlink`` under it), so the tests can tell which
process pruned.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

GLOBAL_BATCH = 16
MAX_STEPS = 60
EVERY = 4

CALLBACKS: dict[str, dict[str, Any]] = {
    "earlystop": {"monitor": "eval_loss", "patience": 3},
    "lr": {"monitor": "eval_loss", "factor": 0.5, "patience": 0},
    "gradviz": {},
    "checkpoint": {"keep_last": 1, "keep_best": 1},
}

_calls: list[list[str]] = []
_lock = threading.Lock()
_watched: list[str] = []
"""The output directory of the run in progress (one at a time; the wrappers are installed once)."""


def _watch_deletions(output_dir: str) -> None:
    """Record rmtree/rename/replace/remove calls that touch ``output_dir`` (any thread) from now on."""
    with _lock:
        _calls.clear()
        first = not _watched
        _watched[:] = [os.path.realpath(output_dir)]
    if not first:
        return

    def wrap(module: Any, name: str) -> None:
        original = getattr(module, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            paths = [os.path.realpath(os.fspath(a)) for a in args[:2] if isinstance(a, (str, os.PathLike))]
            with _lock:
                if any(p.startswith(_watched[0]) and "checkpoint-" in p for p in paths):
                    _calls.append([name, *paths])
            return original(*args, **kwargs)

        setattr(module, name, recorded)

    wrap(shutil, "rmtree")
    for name in ("rename", "replace", "remove", "unlink"):
        wrap(os, name)


def deepspeed_config(mode: str) -> dict[str, Any] | None:
    """The DeepSpeed config of the ``zero1``/``zero2``/``zero3`` modes (fp32, the Trainer's optimizer and scheduler)."""
    if not mode.startswith("zero"):
        return None
    config: dict[str, Any] = {
        "zero_optimization": {"stage": int(mode[4])},
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
    }
    if mode.endswith("-fp16"):
        # dynamic loss scaling from 2**20, halved at every overflow: the first steps overflow (see the docstring)
        config["fp16"] = {"enabled": "auto", "loss_scale": 0, "initial_scale_power": 20, "hysteresis": 1}
    if mode.endswith("-bf16"):
        config["bf16"] = {"enabled": "auto"}
    return config


def gloo_only_deepspeed() -> None:
    """Keep DeepSpeed's CPU accelerator on plain gloo: no JIT build of its shared-memory all-reduce op.

    On the CPU accelerator DeepSpeed compiles ``deepspeed_shm_comm`` with ninja the first time a
    process group starts (5 minutes on 2 cores here); the runs need no op, so the builder returns
    nothing and DeepSpeed falls back to torch.distributed's gloo collectives.
    """
    import importlib

    # by name: ``import deepspeed.comm.torch as m`` binds the ``torch`` that deepspeed.comm re-exports
    comm_torch: Any = importlib.import_module("deepspeed.comm.torch")
    comm_torch.build_shm_op = lambda: None


def allow_fp16_on_cpu() -> None:
    """Let DeepSpeed's CPU accelerator run fp16 where its capability check says no.

    deepspeed 0.19.8's ``CPU_Accelerator.is_fp16_supported()`` is true only when oneDNN has fp16
    kernels for this CPU (``torch.ops.mkldnn._is_mkldnn_fp16_supported()``: AVX512-FP16/AMX-FP16),
    and ``DeepSpeedEngine._do_sanity_check`` raises "Type fp16 is not supported on your device."
    otherwise. torch's own CPU kernels compute in fp16 without oneDNN (slower), and DeepSpeed's fp16
    path (fp16 weights, fp32 master partitions, dynamic loss scaling, overflow skipping) is the same
    Python code on every accelerator, so the CPU runs of the ``-fp16`` modes answer yes. Only the
    test runs do this; the GPU matrix (deepspeed_gpu_matrix.sh) runs fp16 without it.
    """
    from deepspeed.accelerator import get_accelerator

    accelerator: Any = get_accelerator()
    accelerator.is_fp16_supported = lambda: True


def main(mode: str, out_dir: str, stop_after: int | None = None, resume: bool = False) -> None:
    """One run; ``stop_after``: stop after that step (its save done); ``resume``: continue from the last checkpoint."""
    from transformers import (
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.trainer_utils import get_last_checkpoint

    from trainer_callbacks.app.demo_data import EncodedDataset, TaskConfig, accuracy, build_tokenizer, generate
    from trainer_callbacks.core import create_all
    from trainer_callbacks.testing import tiny_bert

    gpu = "-gpu" in mode
    if mode.startswith("zero") and not gpu:
        gloo_only_deepspeed()
        if mode.endswith("-fp16"):
            allow_fp16_on_cpu()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    output_dir = os.path.join(out_dir, "run")
    _watch_deletions(output_dir)

    task = TaskConfig(train_size=256, eval_size=64, seed=1)
    tokenizer = build_tokenizer(task, model_max_length=48)
    train_rows, eval_rows = generate(task)
    model = tiny_bert(
        seed=0,
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        max_position_embeddings=48,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=GLOBAL_BATCH // world,
        per_device_eval_batch_size=16,
        max_steps=MAX_STEPS,
        learning_rate=5e-3,
        lr_scheduler_type="constant",
        eval_strategy="steps",
        eval_steps=EVERY,
        save_strategy="steps",
        save_steps=EVERY,
        logging_steps=1 if mode.endswith("-fp16") else EVERY,
        metric_for_best_model="eval_loss",
        train_sampling_strategy="sequential",
        average_tokens_across_devices=False,  # BERT's loss is already a mean (see gradviz's distributed test)
        save_on_each_node=mode == "nodes",
        deepspeed=deepspeed_config(mode),
        use_cpu=not gpu,
        fp16=mode.endswith("-fp16"),
        bf16=mode.endswith("-bf16"),
        report_to="none",
        disable_tqdm=True,
        ddp_backend=("nccl" if gpu else "gloo") if world > 1 else None,
        ddp_find_unused_parameters=False,
        ddp_timeout=300,  # a rank stuck in a collective fails (well before the test's guard) instead of hanging
        restore_callback_states_from_checkpoint=resume,
        seed=0,
    )

    class Recorder(TrainerCallback):
        """LRs after each step; under DeepSpeed whether the engine applied each step (False: skipped for
        overflow); at train begin the engine's step count, and at the first step the plugins' progress."""

        def __init__(self) -> None:
            self.lrs: list[tuple[int, list[float]]] = []
            self.applied: list[tuple[int, bool]] = []
            self.begin: dict[str, Any] = {}
            self.progress_at_first_step: dict[str, Any] | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            engine = getattr(trainer, "deepspeed", None)
            self.begin = {
                "global_step": state.global_step,
                "engine_global_steps": getattr(engine, "global_steps", None),
            }

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # this runs before the plugins' own on_step_begin (the Trainer put the restored ones after it)
            if self.progress_at_first_step is None:
                self.progress_at_first_step = {
                    type(cb).__name__: cb.state()["attributes"]["progress"]
                    for cb in trainer.callback_handler.callbacks
                    if type(cb).__module__.startswith("trainer_callbacks.")
                }

        def on_step_end(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
            self.lrs.append((state.global_step, [float(g["lr"]) for g in optimizer.param_groups]))
            engine = getattr(trainer, "deepspeed", None)
            if engine is not None:
                self.applied.append((state.global_step, bool(engine.was_step_applied())))
            if stop_after is not None and state.global_step == stop_after:
                control.should_training_stop = True  # this step is still evaluated and saved (a multiple of EVERY)

    recorder = Recorder()
    callbacks = create_all(CALLBACKS)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=EncodedDataset(train_rows, tokenizer, 48),
        eval_dataset=EncodedDataset(eval_rows, tokenizer, 48),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
        callbacks=[*callbacks, recorder],
    )
    resumed_from = get_last_checkpoint(output_dir) if resume else None
    if resume and resumed_from is None:
        raise SystemExit(f"--resume: no checkpoint in {output_dir}")
    trainer.train(resume_from_checkpoint=resumed_from)
    pruner = next(cb for cb in callbacks if type(cb).__name__ == "CheckpointPruner")
    if hasattr(pruner, "wait"):
        pruner.wait()
    trainer.accelerator.wait_for_everyone()
    result = {
        "mode": mode,
        "rank": rank,
        "world_size": world,
        "should_save": bool(args.should_save),
        "global_step": trainer.state.global_step,
        "lrs": recorder.lrs,
        "applied": recorder.applied,
        "at_train_begin": recorder.begin,
        "progress_at_first_step": recorder.progress_at_first_step,
        "resumed_from": resumed_from,
        "log_history": trainer.state.log_history,
        "deletion_calls": list(_calls),
        "pruner_progress": pruner.state()["attributes"]["progress"],
    }
    Path(out_dir, f"rank{rank}{'-resumed' if resume else ''}.json").write_text(json.dumps(result))


def leave_process_group() -> None:
    """Leave the process group before exit: a gloo group still alive at interpreter exit can
    abort a rank ("terminate called without an active exception") after the work is done."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_modes(modes: list[str], out_dir: str, stop_after: int | None = None, resume: bool = False) -> None:
    """Each mode in turn in these processes, in ``out_dir`` (one mode) or ``out_dir/<mode>`` (several).

    Several modes in one launch share the imports of torch, transformers and DeepSpeed (about
    10 s of CPU a process here, five times a run's training); each run has its own Trainer,
    callbacks and DeepSpeed engine, and the process group stays up between them.
    """
    for mode in modes:
        out = out_dir if len(modes) == 1 else os.path.join(out_dir, mode)
        os.makedirs(out, exist_ok=True)
        main(mode, out, stop_after, resume)
    leave_process_group()


def parse(argv: list[str]) -> dict[str, Any]:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modes", type=lambda text: text.split(","), help="a mode, or several separated by commas")
    parser.add_argument("out_dir")
    parser.add_argument("--stop-after", type=int, default=None, help="stop after this step (after its save)")
    parser.add_argument(
        "--resume", action="store_true", help="resume from OUT_DIR/run's last checkpoint; writes rank<R>-resumed.json"
    )
    return vars(parser.parse_args(argv))


if __name__ == "__main__":
    run_modes(**parse(sys.argv[1:]))
    # Results are written and the process group is left; skip interpreter teardown, where a
    # C++ thread of torch's CPU/gloo stack still joinable at exit can abort the process
    # ("terminate called without an active exception") after the work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
