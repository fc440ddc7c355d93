"""One short training run per client Trainer, with every first-party callback attached.

Each client (TRL's SFTTrainer with a LoRA adapter, TRL's DPOTrainer, sentence-transformers'
SentenceTransformerTrainer with an evaluator, a PEFT model under the plain ``Trainer``) trains
a tiny model for at most 20 optimizer steps on CPU, evaluating and saving every
``eval_steps``. The callbacks come from ``trainer_callbacks.core.create_all``, configured so
that the outcome does not hang on the random weights: early stopping and the LR plateau need
an improvement of 10 in ``eval_loss`` (every loss here is below 10 and never negative), so
the first evaluation sets the best and every later one is a stall.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyparts import (
    causal_lm_dataset,
    preference_dataset,
    similarity_dataset,
    text_dataset,
    tiny_llama,
    tiny_sentence_transformer,
)
from transformers import TrainerCallback

THRESHOLD = 10.0  # no eval_loss here can improve by this much: every evaluation after the first stalls


@dataclass(frozen=True)
class Scenario:
    """What one client's run is configured with; the tests read the expectations' parameters from here."""

    eval_steps: int
    stop_patience: int
    lr_patience: int
    checkpoint_monitor: Mapping[str, str]
    # One regex per expected gradviz group (each must match exactly one group name, and every group one regex).
    groups: tuple[str, ...]
    gradient_accumulation_steps: int = 1
    max_steps: int = 20
    warmup_steps: int = 2
    learning_rate: float = 1e-2
    factor: float = 0.5
    monitor: str = "eval_loss"
    extra_args: Mapping[str, Any] = field(default_factory=dict)  # more TrainingArguments

    def callback_config(self) -> dict[str, dict[str, Any]]:
        return {
            "earlystop": {"monitor": {self.monitor: "min"}, "patience": self.stop_patience, "threshold": THRESHOLD},
            "lr": {
                "monitor": self.monitor,
                "mode": "min",
                "patience": self.lr_patience,
                "factor": self.factor,
                "threshold": THRESHOLD,
                "threshold_mode": "abs",
            },
            "gradviz": {},
            "checkpoint": {"keep_last": 1, "keep_best": 1, "monitor": dict(self.checkpoint_monitor)},
        }

    def training_arguments(self, output_dir: Path) -> dict[str, Any]:
        return {
            "output_dir": str(output_dir),
            "max_steps": self.max_steps,
            "per_device_train_batch_size": 4 // self.gradient_accumulation_steps,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "per_device_eval_batch_size": 8,
            "learning_rate": self.learning_rate,
            "lr_scheduler_type": "linear",
            "warmup_steps": self.warmup_steps,
            "logging_steps": 1,
            "eval_strategy": "steps",
            "eval_steps": self.eval_steps,
            "save_strategy": "steps",
            "save_steps": self.eval_steps,
            "save_total_limit": None,
            "report_to": [],
            "use_cpu": True,
            "seed": 0,
            "disable_tqdm": True,
            "dataloader_num_workers": 0,
            **self.extra_args,
        }


_BLOCK = r"(^|\.){}\.{}$"
LLAMA_BLOCKS = (_BLOCK.format("layers", 0), _BLOCK.format("layers", 1))

SCENARIOS = {
    # LoRA on q_proj/v_proj: only the two decoder blocks have trainable parameters. The pruner ranks by
    # eval_loss while the Trainer tracks its best model by TRL's token accuracy and loads it at the end.
    "trl-sft-lora": Scenario(
        eval_steps=2,
        stop_patience=3,
        lr_patience=0,
        checkpoint_monitor={"eval_loss": "min"},
        groups=LLAMA_BLOCKS,
        extra_args={"load_best_model_at_end": True, "metric_for_best_model": "eval_mean_token_accuracy"},
    ),
    # Full fine-tuning with accumulation; the checkpoints are ranked by TRL's reward margin.
    "trl-dpo": Scenario(
        eval_steps=2,
        stop_patience=3,
        lr_patience=1,
        gradient_accumulation_steps=2,
        checkpoint_monitor={"eval_rewards/margins": "max"},
        groups=(r"(^|\.)embed_tokens$", *LLAMA_BLOCKS, r"(^|\.)norm$", r"(^|\.)lm_head$"),
    ),
    # DistilBERT encoder + mean pooling + Dense head; checkpoints ranked by the evaluator's metric.
    "sentence-transformers": Scenario(
        eval_steps=2,
        stop_patience=2,
        lr_patience=0,
        checkpoint_monitor={"eval_dev_spearman_cosine": "max"},
        groups=(r"(^|\.)embeddings$", _BLOCK.format("layer", 0), _BLOCK.format("layer", 1), r"(^|\.)(2|linear)$"),
    ),
    # LoRA on the blocks, embeddings and head fully trained (modules_to_save).
    "peft-trainer": Scenario(
        eval_steps=3,
        stop_patience=2,
        lr_patience=0,
        checkpoint_monitor={"eval_loss": "min"},
        groups=(r"(^|\.)embed_tokens$", *LLAMA_BLOCKS, r"(^|\.)lm_head$"),
    ),
}


class SaveRecorder(TrainerCallback):  # type: ignore[misc]
    """Records the global step of every checkpoint the Trainer saves (``on_save`` follows the write)."""

    def __init__(self) -> None:
        self.saved_steps: list[int] = []

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.saved_steps.append(state.global_step)


@dataclass
class Run:
    client: str
    scenario: Scenario
    trainer: Any
    output_dir: Path
    saved_steps: list[int] = field(default_factory=list)

    @property
    def log_history(self) -> list[dict[str, Any]]:
        return list(self.trainer.state.log_history)


def _lora(**extra: Any) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", **extra
    )


def _trl_sft(scenario: Scenario, tokenizer: Any, output_dir: Path, callbacks: list[Any]) -> Any:
    from trl import SFTConfig, SFTTrainer

    return SFTTrainer(
        model=tiny_llama(tokenizer),
        args=SFTConfig(**scenario.training_arguments(output_dir), max_length=32),
        train_dataset=text_dataset(64, seed=1),
        eval_dataset=text_dataset(16, seed=2),
        processing_class=tokenizer,
        peft_config=_lora(),
        callbacks=callbacks,
    )


def _trl_dpo(scenario: Scenario, tokenizer: Any, output_dir: Path, callbacks: list[Any]) -> Any:
    from trl import DPOConfig, DPOTrainer

    model = tiny_llama(tokenizer)
    return DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),  # TRL would otherwise reload the reference model by name (from the hub)
        args=DPOConfig(**scenario.training_arguments(output_dir), max_length=32),
        train_dataset=preference_dataset(32, seed=1),
        eval_dataset=preference_dataset(8, seed=2),
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def _sentence_transformers(scenario: Scenario, tokenizer: Any, output_dir: Path, callbacks: list[Any]) -> Any:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    model = tiny_sentence_transformer(tokenizer, output_dir.parent / f"{output_dir.name}-base")
    dev = similarity_dataset(16, seed=2)
    return SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(**scenario.training_arguments(output_dir)),
        train_dataset=similarity_dataset(32, seed=1),
        eval_dataset=dev,
        loss=CosineSimilarityLoss(model),
        evaluator=EmbeddingSimilarityEvaluator(dev["sentence1"], dev["sentence2"], dev["score"], name="dev"),
        callbacks=callbacks,
    )


def _peft_trainer(scenario: Scenario, tokenizer: Any, output_dir: Path, callbacks: list[Any]) -> Any:
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments

    model = get_peft_model(tiny_llama(tokenizer), _lora(modules_to_save=["embed_tokens", "lm_head"]))
    return Trainer(
        model=model,
        args=TrainingArguments(**scenario.training_arguments(output_dir)),
        train_dataset=causal_lm_dataset(tokenizer, 64, seed=1),
        eval_dataset=causal_lm_dataset(tokenizer, 16, seed=2),
        callbacks=callbacks,
    )


BUILDERS = {
    "trl-sft-lora": _trl_sft,
    "trl-dpo": _trl_dpo,
    "sentence-transformers": _sentence_transformers,
    "peft-trainer": _peft_trainer,
}


def run_client(client: str, tokenizer: Any, output_dir: Path) -> Run:
    """Build ``client``'s Trainer with every first-party callback (``create_all``), train it, return the run."""
    from trainer_callbacks.core import create_all

    scenario = SCENARIOS[client]
    recorder = SaveRecorder()
    callbacks = [*create_all(scenario.callback_config()), recorder]
    trainer = BUILDERS[client](scenario, tokenizer, output_dir, callbacks)
    trainer.train()
    return Run(client, scenario, trainer, output_dir, recorder.saved_steps)
