"""``examples/run_classification.py``: the run_glue-style script, run for a few steps in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_classification.py"
pytestmark = pytest.mark.slow


def run_script(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # a hang guard, not a speed check: up to 95 s measured beside busy processes on 2 cores
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=480
    )


COMMON = ["--use_cpu", "--report_to", "none", "--disable_tqdm", "true", "--per_device_train_batch_size", "16"]


def test_generated_task_with_plugin_flags(tmp_path: Path, clean_env: Any, require_plugins: Any) -> None:
    require_plugins("earlystop", "lr", "checkpoint")
    out = tmp_path / "out"
    args = [
        "--output_dir",
        str(out),
        "--do_train",
        "--do_eval",
        "--max_steps",
        "24",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "4",
        "--save_steps",
        "4",
        "--logging_steps",
        "4",
        "--load_best_model_at_end",
        "--metric_for_best_model",
        "eval_loss",
        "--generated_train_size",
        "96",
        "--generated_eval_size",
        "48",
        "--callbacks",
        "earlystop,lr,checkpoint",
        "--earlystop_monitor",
        "eval_loss=min,eval_accuracy=max",
        "--earlystop_patience",
        "3",
        "--lr_factor",
        "0.5",
        "--lr_patience",
        "0",
        "--checkpoint_keep_last",
        "1",
        *COMMON,
    ]
    result = run_script(args, tmp_path, clean_env())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    state = json.loads((out / "trainer_state.json").read_text())
    saved = state["stateful_callbacks"]
    # the flags reached the callbacks (their saved constructor options)
    assert saved["ReduceLROnPlateau"]["args"]["factor"] == 0.5
    assert saved["ReduceLROnPlateau"]["args"]["patience"] == 0
    assert saved["EarlyStopping"]["args"]["patience"] == 3
    assert [m["name"] for m in saved["EarlyStopping"]["args"]["monitor"]] == ["eval_loss", "eval_accuracy"]
    assert saved["CheckpointPruner"]["args"]["keep_last"] == 1
    assert "GradNormLogger" not in saved  # not selected
    keys = {k for e in state["log_history"] for k in e}
    assert {"lr_plateau/scale", "early_stopping/wait/eval_loss", "checkpoint/kept"} <= keys
    # lr patience 0: every evaluation that does not improve eval_loss halves the LR (torch semantics)
    losses = [e["eval_loss"] for e in state["log_history"] if "eval_loss" in e]
    stalls = sum(losses[i] >= min(losses[:i]) * (1 - 1e-4) for i in range(1, len(losses)))
    assert state["stateful_callbacks"]["ReduceLROnPlateau"]["attributes"]["progress"]["reductions"] == stalls
    kept = {p.name for p in out.glob("checkpoint-*")}
    assert f"checkpoint-{state['global_step']}" in kept and len(kept) <= 2
    results = json.loads((out / "all_results.json").read_text())
    assert 0.0 <= results["eval_accuracy"] <= 1.0


def test_csv_files_from_a_json_arguments_file(tmp_path: Path, clean_env: Any, require_plugins: Any) -> None:
    require_plugins("earlystop")
    rows = [("a fine great film", "pos"), ("a dull bad film", "neg")] * 12
    for name in ("train.csv", "validation.csv"):
        lines = ["text,label", *(f"{text},{label}" for text, label in rows)]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    arguments = {
        "output_dir": str(out),
        "do_train": True,
        "do_eval": True,
        "max_steps": 6,
        "eval_strategy": "steps",
        "eval_steps": 3,
        "save_strategy": "no",
        "train_file": "train.csv",
        "validation_file": "validation.csv",
        "use_cpu": True,
        "report_to": "none",
        "disable_tqdm": True,
        "callbacks": "earlystop",
        "earlystop_patience": "5",
    }
    (tmp_path / "args.json").write_text(json.dumps(arguments))
    result = run_script(["args.json"], tmp_path, clean_env())
    assert result.returncode == 0, result.stderr[-4000:]
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["stateful_callbacks"]["EarlyStopping"]["args"]["patience"] == 5
    assert (out / "eval_results.json").is_file()


def test_an_option_for_an_unselected_callback_fails_before_training(
    tmp_path: Path, clean_env: Any, require_plugins: Any
) -> None:
    require_plugins("earlystop", "lr")
    result = run_script(
        [
            "--output_dir",
            str(tmp_path / "out"),
            "--do_train",
            "--callbacks",
            "lr",
            "--earlystop_patience",
            "2",
            *COMMON,
        ],
        tmp_path,
        clean_env(),
    )
    assert result.returncode != 0
    assert "--earlystop_patience given, but --callbacks lr leaves out earlystop" in result.stderr
    assert not (tmp_path / "out" / "trainer_state.json").exists()


def test_json_lines_files_offline_and_a_missing_column_is_a_clear_error(tmp_path: Path, clean_env: Any) -> None:
    """``--train_file``/``--validation_file`` go through ``load_dataset("json", data_files=...)`` with the Hub off."""
    rows = [{"sentence": "a fine great film", "labels": 1}, {"sentence": "a dull bad film", "labels": 0}] * 8
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    env = clean_env(HF_DATASETS_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "out"
    common = ["--output_dir", str(out), "--do_train", "--do_eval", "--max_steps", "2", "--save_strategy", "no", *COMMON]
    files = ["--train_file", "train.jsonl", "--validation_file", "validation.jsonl"]
    result = run_script([*common, *files], tmp_path, env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "0", "1": "1"}
    assert json.loads((out / "eval_results.json").read_text())["eval_samples"] == 4
    (tmp_path / "validation.jsonl").write_text(json.dumps({"review": "good", "labels": 1}) + "\n")
    common[1] = str(tmp_path / "out2")
    result = run_script([*common, *files], tmp_path, env)
    assert result.returncode != 0
    assert (
        "run_classification.py: error: --validation_file 'validation.jsonl': no text column 'text' or 'sentence'; "
        "the file's columns are 'review', 'labels'" in result.stderr
    ), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
