#!/usr/bin/env python
"""Text classification with the Trainer and trainer-callbacks plugins, in the style of transformers' run_glue.py.

Every ``TrainingArguments`` flag works as usual; the installed callbacks add their own flags,
``--<callback>_<option>``, and ``--callbacks`` picks them like ``--report_to`` picks trackers::

    python examples/run_classification.py --output_dir out --do_train --do_eval \\
        --eval_strategy steps --eval_steps 25 --save_steps 25 --max_steps 400 \\
        --load_best_model_at_end --metric_for_best_model eval_loss \\
        --callbacks earlystop,lr,checkpoint,gradviz \\
        --earlystop_monitor eval_loss=min,eval_accuracy=max --earlystop_patience 4 \\
        --lr_factor 0.5 --lr_patience 2 --checkpoint_keep_last 2

Data: the generated sentiment task of ``trainer-callbacks demo`` by default, or your own local
``--train_file`` / ``--validation_file`` (CSV with a header, JSON lines, or a JSON list of
objects), read as run_glue.py reads them, with ``datasets.load_dataset("csv" | "json",
data_files=...)`` (no Hub access: ``HF_DATASETS_OFFLINE=1`` works), with a text column (``text`` or
``sentence``, or ``--text_column``) and a label column (``label`` or ``labels``, or
``--label_column``) of classes (whole numbers or strings). Either way the rows are a
``datasets.Dataset`` tokenized with ``Dataset.map(batched=True)``. Model: a small BERT initialised at random, or
any local Hugging Face model folder with ``--model_name_or_path``. Arguments may also come from
one JSON file: ``python examples/run_classification.py args.json``.

Needs the app's data helpers (``pip install trainer-callbacks-app``, part of ``pip install trainer-callbacks``)
and the callbacks you name.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import transformers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from trainer_callbacks.app.demo_data import LABELS, TaskConfig, accuracy, build_tokenizer, generate
from trainer_callbacks.app.text_data import encode_labels, read_file, rows_to_dataset, tokenize, words
from trainer_callbacks.core.errors import ConfigurationError
from trainer_callbacks.core.hf_args import callback_dataclasses, create_callbacks

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    """Which model to fine-tune, or the size of the one to initialise at random."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A local Hugging Face model folder. Default: a small BERT initialised at random."},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "A local tokenizer folder, if not the model's (default: the model's)."}
    )
    hidden_size: int = field(default=64, metadata={"help": "Random-init BERT: hidden size."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Random-init BERT: layers."})
    num_attention_heads: int = field(default=4, metadata={"help": "Random-init BERT: attention heads."})


@dataclass
class DataTrainingArguments:
    """What data to train and evaluate on."""

    train_file: str | None = field(default=None, metadata={"help": "CSV / JSON lines / JSON file of training rows."})
    validation_file: str | None = field(default=None, metadata={"help": "Same format, for evaluation."})
    text_column: str | None = field(
        default=None, metadata={"help": "The column holding the text (default: 'text' or 'sentence')."}
    )
    label_column: str | None = field(
        default=None, metadata={"help": "The column holding the label (default: 'label' or 'labels')."}
    )
    max_seq_length: int = field(default=64, metadata={"help": "Longer texts are truncated."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N evaluation rows."})
    generated_train_size: int = field(default=1000, metadata={"help": "Generated task: training rows."})
    generated_eval_size: int = field(default=400, metadata={"help": "Generated task: evaluation rows."})
    generated_label_noise: float = field(default=0.1, metadata={"help": "Generated task: share of flipped labels."})

    def __post_init__(self) -> None:
        if (self.train_file is None) != (self.validation_file is None):
            raise ValueError("pass both --train_file and --validation_file, or neither (then the task is generated)")
        for path in (self.train_file, self.validation_file):
            if path is not None and Path(path).suffix not in (".csv", ".json", ".jsonl"):
                raise ValueError(f"{path}: use a .csv, .json or .jsonl file")


def load_data(data_args: DataTrainingArguments, seed: int) -> tuple[Any, Any, list[str]]:
    """Train and eval ``datasets.Dataset`` (columns ``text`` and ``label``, labels as ids) and the label names."""
    if data_args.train_file is None or data_args.validation_file is None:
        task = TaskConfig(
            train_size=data_args.generated_train_size,
            eval_size=data_args.generated_eval_size,
            label_noise=data_args.generated_label_noise,
            seed=seed,
        )
        train_rows, eval_rows = generate(task)
        train, evaluation, names = rows_to_dataset(train_rows), rows_to_dataset(eval_rows), list(LABELS)
    else:
        # load_dataset("csv" | "json", data_files=...) per file, its columns and labels checked
        columns = {"text_column": data_args.text_column, "label_column": data_args.label_column}
        raw_train = read_file(data_args.train_file, option="--train_file", **columns)
        raw_eval = read_file(data_args.validation_file, option="--validation_file", **columns)
        encoded = encode_labels([raw_train, raw_eval], f"--train_file {data_args.train_file!r}")
        (train, evaluation), names = encoded.splits, encoded.label_names
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if data_args.max_eval_samples is not None:
        evaluation = evaluation.select(range(min(data_args.max_eval_samples, len(evaluation))))
    return train, evaluation, names


def load_model_and_tokenizer(
    model_args: ModelArguments, data_args: DataTrainingArguments, vocabulary: list[str], labels: list[str]
) -> tuple[Any, Any]:
    id2label = dict(enumerate(labels))
    label2id = {name: i for i, name in enumerate(labels)}
    if model_args.model_name_or_path is None:
        tokenizer = build_tokenizer(model_max_length=data_args.max_seq_length, words=vocabulary)
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=model_args.hidden_size,
            num_hidden_layers=model_args.num_hidden_layers,
            num_attention_heads=model_args.num_attention_heads,
            intermediate_size=4 * model_args.hidden_size,
            max_position_embeddings=max(data_args.max_seq_length, 8),
            pad_token_id=tokenizer.pad_token_id,
            id2label=id2label,
            label2id=label2id,
        )
        return BertForSequenceClassification(config), tokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_args.model_name_or_path,
        num_labels=len(labels),
        id2label=id2label,
        label2id=label2id,
        ignore_mismatched_sizes=True,
    )
    return model, tokenizer


def main(argv: list[str] | None = None) -> dict[str, float]:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except ConfigurationError as exc:  # bad data or callback options: the message says what to fix
        sys.exit(f"run_classification.py: error: {exc}")


def run(argv: list[str]) -> dict[str, float]:
    parser = HfArgumentParser(
        (ModelArguments, DataTrainingArguments, TrainingArguments, *callback_dataclasses())  # type: ignore[arg-type]
    )
    if len(argv) == 1 and argv[0].endswith(".json"):
        parsed = parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    else:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    model_args, data_args, training_args, *callback_args = parsed

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.warning(
        "Process rank: %s, device: %s, n_gpu: %s, distributed training: %s",
        training_args.local_process_index,
        training_args.device,
        training_args.n_gpu,
        training_args.parallel_mode.value == "distributed",
    )

    last_checkpoint = None
    if os.path.isdir(training_args.output_dir) and training_args.do_train:
        last_checkpoint = get_last_checkpoint(training_args.output_dir)
        if last_checkpoint is not None and training_args.resume_from_checkpoint is None:
            logger.info("Checkpoint detected, resuming training at %s.", last_checkpoint)

    set_seed(training_args.seed)
    train_data, eval_data, labels = load_data(data_args, training_args.seed)
    vocabulary = sorted(set(words(train_data)) | set(words(eval_data)))
    model, tokenizer = load_model_and_tokenizer(model_args, data_args, vocabulary, labels)

    callbacks = create_callbacks(*callback_args)
    logger.info("trainer-callbacks: %s", ", ".join(type(cb).__name__ for cb in callbacks) or "none")

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=tokenize(train_data, tokenizer, data_args.max_seq_length) if training_args.do_train else None,
        eval_dataset=tokenize(eval_data, tokenizer, data_args.max_seq_length) if training_args.do_eval else None,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
        callbacks=callbacks,
    )

    metrics: dict[str, float] = {}
    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint or last_checkpoint
        result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        train_metrics = dict(result.metrics, train_samples=len(train_data))
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        metrics.update(train_metrics)
    if training_args.do_eval:
        eval_metrics = dict(trainer.evaluate(), eval_samples=len(eval_data))
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    return metrics


if __name__ == "__main__":
    main()
