"""One small training run with every first-party plugin, for the distributed tests.

Usage (the tests run it, each process writes ``OUT_DIR/rank<R>.json``):

    python run_all_plugins.py single OUT_DIR                           # 1 process, batch 16
    torchrun --nproc_per_node=2 run_all_plugins.py zero2 OUT_DIR       # DeepSpeed ZeRO-1/2/3 (DS_ACCELERATOR=cpu)
    torchrun --nproc_per_node=2 run_all_plugins.py zero3-gpu-bf16 OUT  # on GPUs (nccl): -fp32, -bf16, -fp16
    torchrun --nproc_per_node=2 run_all_plugins.py ddp OUT_DIR         # 2 processes x batch 8 (gloo)
    torchrun --nnodes=2 --node_rank=R --nproc_per_node=1 ... nodes OUT_DIR   # 2 "nodes", save_on_each_node

Same model (dropout off), same data in sequential order, same global batch of 16 per step, so
DDP's averaged gradients equal the single process's. Every process records the LR of its
optimizer after each step, where training stopped, its ``log_history``, and every call that
renamed or removed a checkpoint folder (``shutil.rmtree``, ``os.rename``, ``os.replace``,
``os.remove``/``os.unlink`` under it), so the tests can tell which process pruned.
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


def _watch_deletions(output_dir: str) -> None:
    """Record rmtree/rename/replace/remove calls that touch ``output_dir`` (any thread)."""
    root = os.path.realpath(output_dir)

    def wrap(module: Any, name: str) -> None:
        original = getattr(module, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            paths = [os.path.realpath(os.fspath(a)) for a in args[:2] if isinstance(a, (str, os.PathLike))]
            if any(p.startswith(root) and "checkpoint-" in p for p in paths):
                with _lock:
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
        config["fp16"] = {"enabled": "auto", "loss_scale": 0, "initial_scale_power": 12}
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


def main(mode: str, out_dir: str) -> None:
    from transformers import (
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from trainer_callbacks.core import create_all
    from trainer_callbacks.core.demo_data import EncodedDataset, TaskConfig, accuracy, build_tokenizer, generate
    from trainer_callbacks.core.testing import tiny_bert

    gpu = "-gpu" in mode
    if mode.startswith("zero") and not gpu:
        gloo_only_deepspeed()
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
        logging_steps=EVERY,
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
        seed=0,
    )

    class Recorder(TrainerCallback):
        def __init__(self) -> None:
            self.lrs: list[tuple[int, list[float]]] = []

        def on_step_end(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
            self.lrs.append((state.global_step, [float(g["lr"]) for g in optimizer.param_groups]))

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
    trainer.train()
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
        "log_history": trainer.state.log_history,
        "deletion_calls": list(_calls),
        "pruner_progress": pruner.state()["attributes"]["progress"],
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    # Leave the process group before exit: a gloo group still alive at interpreter exit can
    # abort a rank ("terminate called without an active exception") after the work is done.
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    # Results are written and the process group is left; skip interpreter teardown, where a
    # C++ thread of torch's CPU/gloo stack still joinable at exit can abort the process
    # ("terminate called without an active exception") after the work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
