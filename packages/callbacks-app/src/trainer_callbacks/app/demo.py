"""``trainer-callbacks demo``: the main job. Trains a small BERT classifier with every installed plugin.

On 2 CPU cores, with no network, in well under 90 seconds: a BERT-style classifier (random
init from a ``BertConfig``, or any local Hugging Face model folder with ``--model``) learns the
generated sentiment task of :mod:`trainer_callbacks.app.demo_data`, whose eval metrics improve,
plateau and then get worse as the model memorises noisy labels, or a local CSV / JSON lines file
of the user's (``--data FILE``: a ``text`` or ``sentence`` column and a ``label`` or ``labels``
column; a fifth of the rows, at least one, is held out for evaluation). Either way the data is a
``datasets.Dataset`` tokenized with ``Dataset.map(batched=True)`` (:mod:`.text_data`). Every installed plugin is
enabled through :func:`~trainer_callbacks.core.create_all` (with the ``demo_options`` its
``CallbackSpec`` declares, else its defaults) or from ``--config FILE.toml``.
The run reports to TensorBoard and MLflow (local stores in the output folder), draws the PNG
plots of ``trainer-callbacks plot`` and ends with the summary of :mod:`.summary`.

Every input (the options, the config file, the model folder, the output folder) is checked
before anything is written. A previous demo's output is moved aside (renamed, in the same
parent folder) while the new run writes, deleted only when the new run has succeeded, and
renamed back if it fails, so a failed run never costs the last good output.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from trainer_callbacks.app.demo_data import QUICK_TASK, TaskConfig
from trainer_callbacks.core import ConfigurationError

MARKER = ".trainer-callbacks-demo"
"""A file the demo leaves in its output folder: only such a folder is replaced by the next demo run."""

METRIC = "eval_loss"


@dataclass(frozen=True)
class DemoSize:
    """How big the demo run is."""

    task: TaskConfig
    max_steps: int
    eval_steps: int
    logging_steps: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 20
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    max_length: int = 48


FULL = DemoSize(task=TaskConfig(), max_steps=1000, eval_steps=25, logging_steps=25)
QUICK = DemoSize(task=QUICK_TASK, max_steps=400, eval_steps=20, logging_steps=20, learning_rate=2e-3, warmup_steps=10)


# ---- configuration ----------------------------------------------------------------------
def default_config(notes: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """One table per installed callback: the ``demo_options`` of its spec, else ``{}`` (its defaults).

    A callback with required options and no ``demo_options`` cannot run on defaults: it is left
    out, with a note. Every plugin is treated alike: core names none of them.
    """
    from trainer_callbacks.core import callback_specs

    config: dict[str, dict[str, Any]] = {}
    for name, spec in sorted(callback_specs().items()):
        if spec.demo_options is not None:
            config[name] = copy.deepcopy(dict(spec.demo_options))  # the run's copy, never the plugin's
            continue
        try:
            required = [opt.name for opt in spec.option_specs() if opt.required]
        except Exception as exc:  # a plugin whose factory cannot be imported: create_all will say why
            required = []
            if notes is not None:
                notes.append(f"note: callback {name!r} could not be inspected ({type(exc).__name__}: {exc})")
        if required:
            if notes is not None:
                notes.append(
                    f"note: callback {name!r} needs option(s) {', '.join(required)}; left out "
                    f"(give them in a --config TOML table [{name}])"
                )
            continue
        config[name] = {}
    return config


def tracking_environment(output_dir: Path, use_mlflow: bool) -> str | None:
    """Point MLflow at ``<output_dir>/mlruns`` unless the user set ``MLFLOW_TRACKING_URI``; returns the URI.

    Sets ``MLFLOW_TRACKING_URI``, ``MLFLOW_ALLOW_FILE_STORE`` and ``MLFLOW_EXPERIMENT_NAME`` for the rest
    of the process when they are unset (MLflow ends its run at exit and must still find the same store).
    """
    if not use_mlflow:
        return None
    os.environ.setdefault("MLFLOW_TRACKING_URI", (output_dir / "mlruns").resolve().as_uri())
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "trainer-callbacks-demo")
    return os.environ["MLFLOW_TRACKING_URI"]


def backup_path(path: Path) -> Path:
    """Where the previous demo output waits, beside ``path``, while a new run writes ``path``."""
    return path.with_name(f".{path.name}.previous-demo")


def check_output_dir(path: Path) -> Path:
    """The absolute output folder, after checking that the demo may write it; nothing is changed.

    It may be missing, empty, or a previous demo's folder (it holds :data:`MARKER`). Any other
    non-empty folder is refused, so the demo never deletes files it did not write and never mixes
    its checkpoints with another run's; so is a file, a folder whose parent cannot be written,
    and a folder beside which an interrupted run left the previous output.
    """
    path = path.expanduser().absolute()
    if path.is_symlink():
        raise ConfigurationError(
            f"demo --output-dir {str(path)!r} is a symbolic link; pass the folder it points to, "
            f"{str(path.resolve())!r}, or a new folder"
        )
    if Path.cwd().resolve().is_relative_to(path.resolve()):
        raise ConfigurationError(
            f"demo --output-dir {str(path)!r} is (or holds) the current folder, which a new run would replace; "
            "run the demo from another folder or pass another --output-dir"
        )
    if path.exists():
        if not path.is_dir():
            raise ConfigurationError(f"demo --output-dir {str(path)!r} is not a folder; pass a folder")
        try:
            empty = not any(path.iterdir())
        except OSError as exc:
            raise ConfigurationError(f"demo --output-dir {str(path)!r}: cannot read it ({exc.strerror})") from None
        if not empty and not (path / MARKER).is_file():
            raise ConfigurationError(
                f"demo --output-dir {str(path)!r} is not empty and was not written by the demo; "
                "pass an empty or new folder"
            )
    backup = backup_path(path)
    if backup.exists():
        raise ConfigurationError(
            f"{str(backup)!r} holds the output of an earlier demo run that was stopped before it finished; "
            f"move it back to {str(path)!r} (or delete it), then run the demo again"
        )
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigurationError(f"demo --output-dir {str(path)!r}: cannot write in {str(parent)!r}")
    return path


def _move_out_of_the_way(path: Path) -> None:
    """Remove a failed run's partial output; what cannot be removed is renamed aside, never left in the way."""
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        n = 0
        while path.with_name(f".{path.name}.failed-{n}").exists():
            n += 1
        os.replace(path, path.with_name(f".{path.name}.failed-{n}"))


@contextlib.contextmanager
def replace_on_success(path: Path) -> Iterator[Path]:
    """An empty ``path`` (marked with :data:`MARKER`) to write a new demo output into.

    ``path`` must have passed :func:`check_output_dir`. A previous output there is renamed to
    :func:`backup_path` first (one atomic rename in the same folder); when the block succeeds it is
    deleted, when the block raises (any exception, Ctrl-C included) the partial new output is
    removed and the previous one renamed back. A process killed outright leaves the previous
    output intact in :func:`backup_path`, and the next demo run says so.
    """
    backup = backup_path(path)
    if path.exists():
        os.replace(path, backup)
    try:
        path.mkdir(parents=True)
        (path / MARKER).write_text("written by `trainer-callbacks demo`; the next demo run replaces this folder\n")
        yield path
    except BaseException:
        _move_out_of_the_way(path)
        if backup.exists():
            os.replace(backup, path)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    if backup.exists():
        logging.getLogger(__name__).warning(
            "the previous demo output could not be removed completely: delete %s before the next demo run", backup
        )


def check_model_path(model_path: str) -> Path:
    """The ``--model`` folder, after checking it holds a Hugging Face model (``config.json``)."""
    path = Path(model_path).expanduser()
    if not path.exists():
        raise ConfigurationError(
            f"demo --model {model_path!r} does not exist; pass a local Hugging Face model folder "
            "(one written by save_pretrained), or leave --model out for the built-in tiny BERT"
        )
    if not (path / "config.json").is_file():
        raise ConfigurationError(
            f"demo --model {model_path!r}: no config.json there; pass a local Hugging Face model folder "
            "(one written by save_pretrained)"
        )
    return path


def available_trackers(notes: list[str]) -> list[str]:
    report_to = []
    if importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None:
        report_to.append("tensorboard")
    else:
        notes.append("note: TensorBoard is not installed (pip install tensorboard); not logging there")
    if importlib.util.find_spec("mlflow") is not None:
        report_to.append("mlflow")
    else:
        notes.append("note: MLflow is not installed (pip install mlflow-skinny); not logging there")
    return report_to


# ---- model and data -----------------------------------------------------------------------
def build_model_and_tokenizer(
    model_path: str | None,
    size: DemoSize,
    notes: list[str],
    labels: Sequence[str] | None = None,
    words: Sequence[str] | None = None,
) -> tuple[Any, Any]:
    """A random-init tiny BERT and the task's tokenizer, or ``model_path``'s model and tokenizer.

    ``labels``: the class names (default: the generated task's); ``words``: the vocabulary of the
    built-in word-level tokenizer (default: the generated task's words).
    """
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )

    from trainer_callbacks.app.demo_data import LABELS, build_tokenizer

    names = list(LABELS if labels is None else labels)
    id2label = dict(enumerate(names))
    label2id = {name: i for i, name in enumerate(names)}
    if model_path is None:
        tokenizer = build_tokenizer(size.task, model_max_length=size.max_length, words=words)
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=size.hidden_size,
            num_hidden_layers=size.layers,
            num_attention_heads=size.heads,
            intermediate_size=4 * size.hidden_size,
            max_position_embeddings=size.max_length,
            pad_token_id=0,
            id2label=id2label,
            label2id=label2id,
        )
        return BertForSequenceClassification(config), tokenizer
    path = check_model_path(model_path)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path), num_labels=len(names), ignore_mismatched_sizes=True, id2label=id2label, label2id=label2id
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"demo --model {model_path!r}: cannot load a sequence-classification model from it "
            f"({type(exc).__name__}: {exc})"
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, TypeError):
        vocab_size = getattr(model.config, "vocab_size", 0)
        tokenizer = build_tokenizer(size.task, model_max_length=size.max_length, words=words)
        if vocab_size < len(tokenizer):
            raise ConfigurationError(
                f"demo --model {model_path!r}: no tokenizer in that folder, and the model's vocab_size "
                f"({vocab_size}) is too small for the demo's own tokenizer; save one with tokenizer.save_pretrained"
            ) from None
        notes.append(f"note: no tokenizer in {model_path}; using the demo's word-level tokenizer")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def quiet_progress_bar() -> Any:
    """transformers' tqdm progress bar, with the latest losses in its postfix instead of printed dicts."""
    from transformers.trainer_callback import ProgressCallback

    class DemoProgress(ProgressCallback):
        def on_prediction_step(
            self, args: Any, state: Any, control: Any, eval_dataloader: Any = None, **kwargs: Any
        ) -> None:
            pass  # no second bar flickering at every evaluation

        def on_log(
            self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any
        ) -> None:
            if not state.is_world_process_zero or self.training_bar is None or not logs:
                return
            shown = {"loss": "loss", "eval_loss": "eval_loss", "eval_accuracy": "acc", "learning_rate": "lr"}
            postfix = dict(getattr(self, "_postfix", {}))
            for key, label in shown.items():
                if isinstance(logs.get(key), (int, float)):
                    postfix[label] = f"{logs[key]:.3g}"
            self._postfix = postfix
            self.training_bar.set_postfix(postfix, refresh=False)

    return DemoProgress()


def interval(every: int, max_steps: int) -> int:
    """The size's evaluation (and save, logging) interval, shortened so that a run of ``max_steps`` still acts
    about four times: ``--max-steps 8`` evaluates at steps 2, 4, 6 and 8.

    Without it a run shorter than the interval never evaluates under transformers 4.x, and under 5.x only
    once, at its last step (5.x's ``DefaultFlowCallback`` evaluates and saves at the end; 4.x does not),
    so the monitored metrics, the best checkpoint and every metric-driven callback would have nothing.
    """
    return min(every, max(1, max_steps // 4))


def training_arguments(output_dir: Path, size: DemoSize, max_steps: int, report_to: list[str]) -> Any:
    from transformers import TrainingArguments

    eval_steps = interval(size.eval_steps, max_steps)
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=size.batch_size,
        per_device_eval_batch_size=128,
        learning_rate=size.learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=size.warmup_steps,
        weight_decay=0.01,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        logging_strategy="steps",
        logging_steps=interval(size.logging_steps, max_steps),
        load_best_model_at_end=True,
        metric_for_best_model=METRIC,
        greater_is_better=False,
        report_to=report_to or "none",
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )


# ---- the run ------------------------------------------------------------------------------
def run(
    output_dir: str | Path = "demo-output",
    *,
    config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    model: str | None = None,
    data: str | os.PathLike[str] | None = None,
    max_steps: int | None = None,
    quick: bool = False,
    stream: TextIO | None = None,
) -> Any:
    """Train, plot and summarise; returns the :class:`~trainer_callbacks.app.summary.RunSummary`.

    ``data``: a local ``.csv`` / ``.json`` / ``.jsonl`` file to train on instead of the generated task.
    """
    stream = stream or sys.stdout
    size = QUICK if quick else FULL
    # Every input is checked before anything is written or moved.
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ConfigurationError(f"demo --max-steps {max_steps!r}: pass a positive whole number of steps")
    out = check_output_dir(Path(output_dir))
    if model is not None:
        check_model_path(model)
    notes: list[str] = []
    task = demo_task(size, data)  # the user's file is read and checked here, before anything is written
    callback_config = default_config(notes) if config is None else config

    from trainer_callbacks.core import create_all, load_config

    tables = load_config(callback_config)
    callbacks = create_all(tables)
    model_and_tokenizer = _model_and_tokenizer(model, size, notes, task)  # read before the old output moves
    with replace_on_success(out):
        return _train_and_summarize(out, size, tables, callbacks, model_and_tokenizer, task, max_steps, notes, stream)


@dataclass(frozen=True)
class DemoTask:
    """What the demo trains on: ``datasets.Dataset`` splits with ``text`` and ``label`` columns."""

    train: Any
    eval: Any
    label_names: list[str]
    source: str
    words: list[str] | None = None
    """The built-in tokenizer's vocabulary for a user's file (``None``: the generated task's)."""


def demo_task(size: DemoSize, data: str | os.PathLike[str] | None) -> DemoTask:
    """The generated task, or ``data``'s rows split 80/20 (at least one eval row; seed 0)."""
    from trainer_callbacks.app import text_data

    datasets = text_data.import_datasets()
    datasets.disable_progress_bars()  # a "Map" bar per split would bury the demo's own output
    if data is None:
        from trainer_callbacks.app.demo_data import LABELS, generate

        train_rows, eval_rows = generate(size.task)
        return DemoTask(
            text_data.rows_to_dataset(train_rows),
            text_data.rows_to_dataset(eval_rows),
            list(LABELS),
            f"the generated sentiment task ({len(train_rows)} train, {len(eval_rows)} eval rows)",
        )
    loaded = text_data.load_labelled_file(data, option="demo --data")
    rows = loaded.splits[0]
    if len(rows) < 2:
        raise ConfigurationError(
            f"demo --data {str(data)!r} has {len(rows)} row; it needs at least two (one to train, one to evaluate)"
        )
    split = rows.train_test_split(test_size=max(1, len(rows) // 5), seed=0)
    return DemoTask(
        split["train"],
        split["test"],
        loaded.label_names,
        f"{data} ({len(split['train'])} train, {len(split['test'])} eval rows; labels {', '.join(loaded.label_names)})",
        text_data.words(rows),
    )


def _model_and_tokenizer(model_path: str | None, size: DemoSize, notes: list[str], task: DemoTask) -> tuple[Any, Any]:
    import transformers

    transformers.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()  # "Writing model shards" at every save; the Trainer's bar stays
    if model_path is None and "OMP_NUM_THREADS" not in os.environ:
        # A 100k-parameter model is bound by per-op overhead: one intra-op thread is as fast as two on an
        # idle machine, and 15x faster than two when other processes compete for the cores (measured).
        import torch

        torch.set_num_threads(1)
    transformers.set_seed(0)
    return build_model_and_tokenizer(model_path, size, notes, labels=task.label_names, words=task.words)


def _train_and_summarize(
    out: Path,
    size: DemoSize,
    tables: Mapping[str, Any],
    callbacks: list[Any],
    model_and_tokenizer: tuple[Any, Any],
    task: DemoTask,
    max_steps: int | None,
    notes: list[str],
    stream: TextIO,
) -> Any:
    report_to = available_trackers(notes)
    mlflow_uri = tracking_environment(out, "mlflow" in report_to)
    print(
        "trainer-callbacks demo: callbacks "
        + (", ".join(f"{name} {opts}" if opts else name for name, opts in tables.items()) or "(none installed)")
        + f"; reporting to {', '.join(report_to) or 'nothing'}; output in {out}",
        file=stream,
    )
    print(f"trainer-callbacks demo: data {task.source}", file=stream)
    trainer = _build_trainer(out, size, model_and_tokenizer, task, max_steps or size.max_steps, report_to, callbacks)
    try:
        trainer.train()
    except BaseException:
        _end_mlflow_run()  # or MLflow ends it at exit, writing into the folder that now holds the old output
        raise
    trainer.save_model()
    trainer.save_state()

    from trainer_callbacks.app.summary import load_state, summarize

    plots = _plots(out, notes)
    tb_dir = out / "runs" if "tensorboard" in report_to else None
    state = load_state(out)
    summary = summarize(
        state,
        out,
        metric_name=METRIC,
        plots=plots,
        tensorboard_dir=tb_dir,
        mlflow_uri=mlflow_uri,
        notes=notes,
        facts=[line for line in [checkpoint_line(out, state)] if line],
    )
    text = summary.text()
    (out / "summary.txt").write_text(text + "\n")
    print("\n" + "=" * 30 + " summary " + "=" * 30 + "\n" + text, file=stream)
    return summary


def _end_mlflow_run() -> None:
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        mlflow.end_run(status="FAILED")


def _build_trainer(
    out: Path,
    size: DemoSize,
    model_and_tokenizer: tuple[Any, Any],
    task: DemoTask,
    max_steps: int,
    report_to: list[str],
    callbacks: list[Any],
) -> Any:
    from transformers import DataCollatorWithPadding, Trainer
    from transformers.trainer_callback import ProgressCallback

    from trainer_callbacks.app.demo_data import accuracy
    from trainer_callbacks.app.text_data import tokenize

    model, tokenizer = model_and_tokenizer
    trainer = Trainer(
        model=model,
        args=training_arguments(out, size, max_steps, report_to),
        train_dataset=tokenize(task.train, tokenizer, size.max_length),
        eval_dataset=tokenize(task.eval, tokenizer, size.max_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=accuracy,
        callbacks=callbacks,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(quiet_progress_bar())
    return trainer


def _ranges(steps: list[int], every: int) -> str:
    """``[25, 50, 75, 125]`` every 25 -> ``"25-75, 125"``."""
    parts: list[list[int]] = []
    for step in steps:
        if parts and step - parts[-1][-1] == every:
            parts[-1].append(step)
        else:
            parts.append([step])
    return ", ".join(f"{p[0]}-{p[-1]}" if len(p) > 1 else str(p[0]) for p in parts)


def checkpoint_line(out: Path, state: Mapping[str, Any]) -> str | None:
    """Which checkpoints the run kept and which it deleted (the demo saves every ``save_steps`` steps)."""
    every, last = int(state.get("save_steps") or 0), int(state.get("global_step", 0))
    if every <= 0:
        return None
    saved = list(range(every, last + 1, every))
    kept = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    deleted = [step for step in saved if step not in kept]
    if not saved:
        return None
    if len(kept) <= 4:
        shown = ", ".join(f"checkpoint-{s}" for s in kept) or "none"
    else:
        shown = f"{len(kept)} (steps {_ranges(kept, every)})"
    line = f"checkpoints saved every {f'{every} steps' if every > 1 else 'step'}: kept {shown}"
    return line + (f"; deleted {len(deleted)} (steps {_ranges(deleted, every)})" if deleted else "; none deleted")


def _plots(out: Path, notes: list[str]) -> list[Path]:
    if importlib.util.find_spec("matplotlib") is None:
        notes.append("note: matplotlib is not installed (pip install matplotlib); no plots")
        return []
    from trainer_callbacks.app.plotting import plot_run

    return plot_run(out, out / "plots")


def main(args: argparse.Namespace) -> int:
    """The ``demo`` subcommand (arguments from :func:`trainer_callbacks.app.commands.add_demo`)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    run(
        args.output_dir,
        config=args.config,
        model=args.model,
        data=getattr(args, "data", None),
        max_steps=args.max_steps,
        quick=args.quick,
    )
    print(f"(demo took {time.perf_counter() - started:.0f} s)")
    return 0
