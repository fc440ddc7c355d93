"""One tiny training run whose gradviz log is compared across process layouts.

Usage (the tests run it):

    python run_gradviz.py single OUT.json                         # 1 process, batch 4
    torchrun --nproc_per_node=2 run_gradviz.py ddp OUT.json       # 2 processes x batch 2 (gloo)
    torchrun --nproc_per_node=2 run_gradviz.py fsdp2 OUT.json     # Trainer + FSDP2 (accelerate) on CPU
    torchrun --nproc_per_node=2 run_gradviz.py fully_shard OUT.json  # torch fully_shard directly, manual loop

Same model (dropout off), same data in sequential order, same global batch of 4 per step:
the per-group norms must agree. Rank 0 writes ``{"log_history": [...], "world_size": N}``.
``single_manual`` is the one-process twin of ``fully_shard`` (same manual loop).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import torch

STEPS = 3
GLOBAL_BATCH = 4


def token_task() -> Any:
    """32 sequences of 8 ids in [0, 100) with fair-coin labels (the test kit's generator, seed 0)."""
    from trainer_callbacks.testing import TokenTask as KitTokenTask

    return KitTokenTask(32, 0, vocab=100, labels="random")


def model() -> Any:
    """The test kit's tiny BERT (seed 0, 100 ids, 32 positions) with dropout off."""
    from trainer_callbacks.testing import tiny_bert

    return tiny_bert(
        0, vocab_size=100, max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )


def trainer_run(mode: str, out: str) -> None:
    from transformers import Trainer, TrainingArguments

    from trainer_callbacks.gradviz import GradNormLogger

    world = int(os.environ.get("WORLD_SIZE", "1"))
    extra: dict[str, Any] = {}
    if mode == "fsdp2":
        extra = dict(fsdp=True, fsdp_config={"fsdp_version": 2, "reshard_after_forward": True})
    # average_tokens_across_devices=False: with it, the Trainer multiplies BERT's (already averaged) loss by the
    # world size, so its own grad_norm under DDP is 2x the single-process one.
    args = TrainingArguments(
        output_dir=os.path.join(os.path.dirname(out), f"out-{mode}"),
        per_device_train_batch_size=GLOBAL_BATCH // world,
        max_steps=STEPS,
        logging_steps=1,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        learning_rate=1e-2,
        max_grad_norm=1e-3,
        train_sampling_strategy="sequential",
        average_tokens_across_devices=False,
        disable_tqdm=True,
        ddp_backend="gloo" if world > 1 else None,
        **extra,
    )
    cb = GradNormLogger()
    trainer = Trainer(model=model(), args=args, train_dataset=token_task(), callbacks=[cb])
    trainer.train()
    if trainer.is_world_process_zero():
        with open(out, "w") as f:
            json.dump({"log_history": trainer.state.log_history, "world_size": world, **_sharding(cb)}, f)
    _shutdown()


def _shutdown() -> None:
    """Leave the process group before exit: a gloo group still alive at interpreter exit can
    abort a rank ("terminate called without an active exception") after the work is done."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _sharding(cb: Any) -> dict[str, Any]:
    from torch.distributed.tensor import DTensor

    return {
        "dtensor_params": sum(isinstance(p, DTensor) for p in cb._params),
        "params": len(cb._params),
        "shard_groups": len(cb._shard_groups),
    }


def manual_run(mode: str, out: str) -> None:
    """Drive GradNormLogger through the Trainer's event order around a hand-written loop."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from trainer_callbacks.gradviz import GradNormLogger

    world, rank = 1, 0
    net = model()
    if mode == "fully_shard":
        import torch.distributed as dist
        from torch.distributed.fsdp import fully_shard

        dist.init_process_group("gloo")
        world, rank = dist.get_world_size(), dist.get_rank()
        for layer in net.bert.encoder.layer:
            fully_shard(layer)
        fully_shard(net)
    data = token_task()
    per_rank = GLOBAL_BATCH // world
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2)
    args = TrainingArguments(
        output_dir=os.path.join(os.path.dirname(out), f"out-{mode}"),
        use_cpu=True,
        report_to="none",
        logging_steps=1,
        max_steps=STEPS,
    )
    state, control = TrainerState(), TrainerControl()
    state.max_steps, state.logging_steps = STEPS, 1
    state.is_world_process_zero = rank == 0
    cb = GradNormLogger()
    cb.on_train_begin(args, state, control, model=net)
    for step in range(STEPS):
        start = step * GLOBAL_BATCH + rank * per_rank
        batch = {"input_ids": data.x[start : start + per_rank], "labels": data.y[start : start + per_rank]}
        cb.on_step_begin(args, state, control, model=net, optimizer=optimizer)
        loss = net(**batch).loss
        loss.backward()
        total = torch.nn.utils.clip_grad_norm_(net.parameters(), 1e-3)
        total = total.full_tensor() if hasattr(total, "full_tensor") else total
        cb.on_pre_optimizer_step(args, state, control, model=net)
        optimizer.step()
        cb.on_optimizer_step(args, state, control, model=net)
        optimizer.zero_grad()
        state.global_step += 1
        state.log_history.append({"grad_norm": float(total), "step": state.global_step})
        cb.on_step_end(args, state, control, model=net)
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"log_history": state.log_history, "world_size": world, **_sharding(cb)}, f)
    if mode == "fully_shard":
        import torch.distributed as dist

        dist.destroy_process_group()


if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    if mode in ("fully_shard", "single_manual"):
        manual_run(mode, out)
    else:
        trainer_run(mode, out)
    # Results are written and the process group is left; skip interpreter teardown, where a
    # C++ thread of torch's CPU/gloo stack still joinable at exit can abort the process
    # ("terminate called without an active exception") after the work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
