"""Draw docs/lr_curve.png: warmup + cosine, without and with ReduceLROnPlateau (deterministic, CPU, ~1 s).

    python packages/callbacks-lr/docs/plot_lr_curve.py

The schedule is the one the Trainer builds for ``lr_scheduler_type="cosine"``,
``warmup_steps=100``, ``max_steps=1000``, ``learning_rate=5e-5``. An evaluation runs every
50 steps; its ``eval_loss`` improves until step 300, stalls until step 600 and improves again
(a scripted curve): the callback (``patience=2, factor=0.3``) cuts the LR twice and the
schedule goes on at the reduced scale.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments, get_scheduler

from trainer_callbacks.lr import ReduceLROnPlateau

PEAK, WARMUP, STEPS, EVAL_EVERY = 5e-5, 100, 1000, 50


def eval_loss(step: int) -> float:
    """Improves until step 300, stalls (tiny wiggles) until step 600, then improves again."""
    if step <= 300:
        return 2.0 - step / 300
    if step <= 600:
        return 1.0 + 0.00001 * (step % 100)
    return 1.0 - (step - 600) / 2000


def lr_curve(with_callback: bool, output_dir: str) -> tuple[list[float], list[int]]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=WARMUP, num_training_steps=STEPS)
    args = TrainingArguments(output_dir=output_dir, eval_strategy="steps", eval_steps=EVAL_EVERY, report_to="none")
    state, control = TrainerState(), TrainerControl()
    callback = ReduceLROnPlateau(patience=2, factor=0.3)
    kwargs = {"optimizer": optimizer, "lr_scheduler": scheduler}
    if with_callback:
        callback.on_train_begin(args, state, control, **kwargs)
    lrs, cuts = [], []
    for _ in range(STEPS):
        lrs.append(optimizer.param_groups[0]["lr"])  # the LR this optimizer step uses
        optimizer.step()
        scheduler.step()
        state.global_step += 1
        if with_callback and state.global_step % EVAL_EVERY == 0:
            before = callback.reductions
            callback.on_evaluate(args, state, control, metrics={"eval_loss": eval_loss(state.global_step)}, **kwargs)
            if callback.reductions > before:
                cuts.append(state.global_step)
    return lrs, cuts


def main() -> None:
    out = Path(__file__).with_name("lr_curve.png")
    plain, _ = lr_curve(False, "/tmp/lr-plot")
    reduced, cuts = lr_curve(True, "/tmp/lr-plot")
    steps = range(1, STEPS + 1)
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    ax.plot(steps, plain, label='lr_scheduler_type="cosine", warmup_steps=100', color="0.6", linestyle="--")
    ax.plot(steps, reduced, label="+ ReduceLROnPlateau(patience=2, factor=0.3)", color="C0")
    for i, step in enumerate(cuts):
        label = "reduction (eval_loss stalled)" if i == 0 else None
        ax.axvline(step, color="C3", linewidth=0.8, alpha=0.6, label=label)
    ax.set_xlabel("global step")
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.legend(fontsize="small")
    ax.set_title("Warmup and cosine decay continue on the reduced scale", fontsize="medium")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB); reductions at steps {cuts}")


if __name__ == "__main__":
    main()
