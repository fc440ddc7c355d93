"""``trainer-callbacks demo``: every claim of its summary, checked against what the run left behind.

One ``--quick`` run (all installed plugins, TensorBoard and MLflow) in a subprocess; each test
reads one part of the summary and checks it against an independent source: ``trainer_state.json``
(the Trainer's own ``eval_loss``/``learning_rate`` entries), the checkpoint folders on disk, the
TensorBoard event files (``EventAccumulator``) and the MLflow store (``MlflowClient``). Where a
plugin's decision can be recomputed from the Trainer's own numbers, it is: the LR reductions
against ``torch.optim.lr_scheduler.ReduceLROnPlateau`` fed the same ``eval_loss`` sequence, the
kept checkpoints against the keep-last-2 + keep-best-1 rule, the early stop against the patience.
"""

from __future__ import annotations

import io
import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


class DemoRun:
    def __init__(self, out: Path, stdout: str):
        self.out = out
        self.stdout = stdout
        block = stdout.split("=" * 30 + " summary " + "=" * 30, 1)[1]
        self.summary = block.split("\n(demo took", 1)[0].strip()
        self.state: dict[str, Any] = json.loads((out / "trainer_state.json").read_text())
        self.history: list[dict[str, Any]] = self.state["log_history"]
        self.lines = self.summary.splitlines()

    def line(self, pattern: str) -> re.Match[str]:
        for line in self.lines:
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no summary line matches {pattern!r}:\n{self.summary}")

    def all_lines(self, pattern: str) -> list[re.Match[str]]:
        return [m for m in (re.search(pattern, line) for line in self.lines) if m]

    def evals(self) -> list[dict[str, Any]]:
        return [e for e in self.history if "eval_loss" in e]

    def plugin_scalar_keys(self) -> set[str]:
        """``<namespace>/<name>`` keys with numeric values (text entries such as a stop reason are not scalars)."""
        return {k for e in self.history for k, v in e.items() if "/" in k and isinstance(v, (int, float))}

    def scalars(self, key: str) -> list[tuple[int, float]]:
        return [(int(e["step"]), float(e[key])) for e in self.history if key in e]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, run_cli: Any) -> DemoRun:
    work = tmp_path_factory.mktemp("demo")
    out = work / "demo-output"
    result = run_cli(["demo", "--quick", "--output-dir", str(out)], cwd=work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert not (work / "mlflow.db").exists(), "MLflow wrote a store outside the output folder"
    return DemoRun(out, result.stdout)


def test_how_far_and_why_training_stopped(demo: DemoRun, require_plugins: Any) -> None:
    ran = demo.line(r"Trained (\d+) of (\d+) steps")
    assert int(ran[1]) == demo.state["global_step"]
    assert int(ran[2]) == demo.state["max_steps"]
    steps_trained = max(e["step"] for e in demo.history if "loss" in e)
    assert steps_trained == demo.state["global_step"]
    require_plugins("earlystop")
    stop = demo.line(r"stopped early at step (\d+) by (\S+)\.")
    assert int(stop[1]) == demo.state["global_step"] < demo.state["max_steps"]
    assert stop[2] == "early_stopping"
    assert demo.scalars("early_stopping/stopped")[-1] == (demo.state["global_step"], 1.0)


def test_early_stopping_claims_match_the_eval_history(demo: DemoRun, require_plugins: Any) -> None:
    require_plugins("earlystop")
    patience = 6  # the demo's earlystop options: eval_loss (min) and eval_accuracy (max), combine "all"
    line = demo.line(r"stopped at step (\d+)")
    assert int(line[1]) == demo.state["global_step"]
    evals = demo.evals()
    for name, pick in (("eval_loss", min), ("eval_accuracy", max)):
        claim = demo.line(rf"best {name} ([\d.e+-]+) at step (\d+)")
        best = pick(e[name] for e in evals)
        first_best_step = next(e["step"] for e in evals if e[name] == best)
        assert float(claim[1]) == pytest.approx(best, rel=1e-3)
        assert int(claim[2]) == first_best_step
        # stalled: at least `patience` evaluations since the best (ties do not count as improvement)
        assert sum(e["step"] > first_best_step for e in evals) >= patience
    # and not stopped later than needed: one evaluation earlier, one of the metrics had not stalled yet
    before = [e for e in evals if e["step"] < demo.state["global_step"]]
    waits = []
    for name, better in (("eval_loss", float.__lt__), ("eval_accuracy", float.__gt__)):
        best, wait = None, 0
        for e in before:
            if best is None or better(float(e[name]), best):
                best, wait = float(e[name]), 0
            else:
                wait += 1
        waits.append(wait)
    assert min(waits) < patience


def test_lr_reductions_match_torch_reduce_lr_on_plateau_and_the_logged_lr(demo: DemoRun, require_plugins: Any) -> None:
    require_plugins("lr")
    import torch

    claims = demo.all_lines(r"LR reduced x([\d.]+) at step (\d+).*?: ([\d.e+-]+) -> ([\d.e+-]+)")
    assert claims, demo.summary
    # Reference: torch's ReduceLROnPlateau with the demo's options, fed the Trainer's eval_loss sequence.
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2e-3)  # the --quick peak learning rate
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2)
    expected = []
    for e in demo.evals():
        before = optimizer.param_groups[0]["lr"]
        scheduler.step(e["eval_loss"])
        if optimizer.param_groups[0]["lr"] < before:
            expected.append((e["step"], before, optimizer.param_groups[0]["lr"]))
    got = [(int(m[2]), float(m[3]), float(m[4])) for m in claims]
    assert [s for s, _, _ in got] == [s for s, _, _ in expected]
    for (_, old, new), (_, ref_old, ref_new) in zip(got, expected):
        assert (old, new) == (pytest.approx(ref_old, rel=1e-2), pytest.approx(ref_new, rel=1e-2))
    # The Trainer's own learning_rate log shows each new LR at the next logged step (constant schedule).
    logged = demo.scalars("learning_rate")
    for step, _, new in got:
        after = [lr for s, lr in logged if s > step]
        if after:
            assert after[0] == pytest.approx(new, rel=1e-6)
    assert demo.scalars("lr_plateau/reductions")[-1][1] == len(got)


def _size(text: str) -> float:
    number, unit = text.split()
    return float(number) * UNITS[unit]


def test_checkpoint_claims_match_the_folder(demo: DemoRun, require_plugins: Any) -> None:
    require_plugins("checkpoint")
    on_disk = sorted((p.name for p in demo.out.glob("checkpoint-*") if p.is_dir()), key=lambda n: int(n.split("-")[1]))
    claimed = demo.line(r"on disk now: (.+)$")[1].split(", ")
    assert claimed == on_disk
    save_steps = demo.state["save_steps"]
    saved = list(range(save_steps, demo.state["global_step"] + 1, save_steps))
    # keep_last=2 and keep_best=1 (best by eval_loss, the Trainer's metric_for_best_model)
    evals = {e["step"]: e["eval_loss"] for e in demo.evals()}
    best_step = min(saved, key=lambda s: (evals[s], s))
    assert on_disk == [f"checkpoint-{s}" for s in sorted({*saved[-2:], best_step})]
    assert Path(demo.state["best_model_checkpoint"]).name in on_disk
    counts = demo.line(r"(\d+) checkpoint\(s\) deleted, ([\d.]+ [KMG]?i?B) freed")
    assert int(counts[1]) == len(saved) - len(on_disk)
    assert sum(v for _, v in demo.scalars("checkpoint/deleted")) == len(saved) - len(on_disk)
    # the demo's own line names them: kept ..., deleted N (steps a-b, c)
    line = demo.line(r"checkpoints saved every (\d+) steps: kept (.+?); deleted (\d+) \(steps (.+)\)")
    assert int(line[1]) == save_steps and line[2].split(", ") == on_disk and int(line[3]) == len(saved) - len(on_disk)
    named: list[int] = []
    for part in line[4].split(", "):
        first, _, last = part.partition("-")
        named.extend(range(int(first), int(last or first) + 1, save_steps))
    assert named == [s for s in saved if f"checkpoint-{s}" not in on_disk]
    one = sum(f.stat().st_size for f in (demo.out / on_disk[0]).rglob("*") if f.is_file())
    assert _size(counts[2]) == pytest.approx(int(counts[1]) * one, rel=0.05)


def test_gradient_norm_claims_match_the_logged_norms(demo: DemoRun, require_plugins: Any) -> None:
    require_plugins("gradviz")
    groups: dict[str, list[float]] = {}
    for e in demo.history:
        for key, value in e.items():
            if key.startswith("grad_norm/"):
                groups.setdefault(key.split("/", 1)[1], []).append(float(value))
    assert len(groups) >= 3
    medians = {g: statistics.median(v) for g, v in groups.items()}
    largest = demo.line(r"largest .*?: ([\w.\-]+) \(([\d.e+-]+)\)")
    smallest = demo.line(r"smallest .*?: ([\w.\-]+) \(([\d.e+-]+)\)")
    assert largest[1] == max(medians, key=medians.__getitem__)
    assert smallest[1] == min(medians, key=medians.__getitem__)
    assert float(largest[2]) == pytest.approx(medians[largest[1]], rel=5e-3)
    assert float(smallest[2]) == pytest.approx(medians[smallest[1]], rel=5e-3)


def test_tensorboard_holds_the_trainer_and_plugin_scalars(demo: DemoRun) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    command = demo.line(r"tensorboard --logdir (\S+)")
    logdir = Path(command[1])
    assert logdir == demo.out / "runs"
    run_dirs = {p.parent for p in logdir.rglob("events.out.tfevents.*")}
    assert len(run_dirs) == 1
    acc = EventAccumulator(str(run_dirs.pop()), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    eval_steps = [e["step"] for e in demo.evals()]
    assert [ev.step for ev in acc.Scalars("eval/loss")] == eval_steps
    plugin_keys = demo.plugin_scalar_keys()
    assert plugin_keys, "no plugin scalars in log_history"
    assert plugin_keys <= tags, sorted(plugin_keys - tags)
    for key in plugin_keys:
        assert [(ev.step, pytest.approx(ev.value, rel=1e-5)) for ev in acc.Scalars(key)] == demo.scalars(key)


def test_mlflow_store_holds_the_trainer_and_plugin_metrics(demo: DemoRun) -> None:
    from mlflow.tracking import MlflowClient

    from trainer_callbacks.core.reporting import mlflow_key

    command = demo.line(r"mlflow ui --backend-store-uri (\S+)")
    uri = command[1]
    assert uri == (demo.out / "mlruns").as_uri()
    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("trainer-callbacks-demo")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run_id = runs[0].info.run_id
    assert [m.step for m in client.get_metric_history(run_id, "eval_loss")] == [e["step"] for e in demo.evals()]
    plugin_keys = demo.plugin_scalar_keys()
    for key in sorted(plugin_keys):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, mlflow_key(key)))
        assert history == sorted((s, pytest.approx(v, rel=1e-6)) for s, v in demo.scalars(key)), key


def test_outputs_and_plots_exist(demo: DemoRun) -> None:
    plots = demo.line(r"plots:\s+(.+)$")[1].split(", ")
    assert any(Path(p).name == "curves.png" for p in plots)
    for path in map(Path, plots):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (demo.out / "summary.txt").read_text().strip() == demo.summary
    assert (demo.out / "model.safetensors").is_file() and (demo.out / "tokenizer.json").is_file()
    assert len(demo.lines) <= 25, "the summary must stay readable in ten seconds"


def test_demo_trains_with_no_plugin_installed(tmp_path: Path, run_cli: Any, clean_env: Any) -> None:
    out = tmp_path / "out"
    env = clean_env(TRAINER_CALLBACKS_DISABLE_AUTOLOAD="1", TRAINER_CALLBACKS_PLUGINS="app")  # the app alone
    result = run_cli(["demo", "--quick", "--max-steps", "6", "--output-dir", str(out)], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "callbacks (none installed)" in result.stdout
    assert "Trained 6 of 6 steps" in result.stdout and "ran to max_steps" in result.stdout
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    listed = [line for line in result.stdout.splitlines() if line.startswith("- ")]
    # core's own line about the checkpoints (6 steps: saved at each one), and no plugin's line
    assert listed == ["- checkpoints saved every step: kept 6 (steps 1-6); none deleted"]


def test_demo_with_config_file_and_local_model(tmp_path: Path, run_cli: Any, require_plugins: Any) -> None:
    """``--config`` replaces the default selection; ``--model`` loads a local folder with its tokenizer."""
    require_plugins("earlystop")
    from transformers import BertConfig, BertForSequenceClassification

    from trainer_callbacks.app.demo_data import build_tokenizer, vocabulary

    model_dir = tmp_path / "tiny-bert"
    config = BertConfig(
        vocab_size=len(vocabulary()),
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=64,
    )
    BertForSequenceClassification(config).save_pretrained(model_dir)
    build_tokenizer().save_pretrained(model_dir)
    (tmp_path / "callbacks.toml").write_text('[earlystop]\nmonitor = "eval_loss"\npatience = 1\n')
    out = tmp_path / "out"
    result = run_cli(
        [
            "demo",
            "--quick",
            "--max-steps",
            "60",
            "--config",
            "callbacks.toml",
            "--model",
            str(model_dir),
            "--output-dir",
            str(out),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "callbacks earlystop {'monitor': 'eval_loss', 'patience': 1}" in result.stdout
    saved = json.loads((out / "config.json").read_text())
    assert saved["hidden_size"] == 24
    state = json.loads((out / "trainer_state.json").read_text())
    assert not any("lr_plateau/scale" in e or "checkpoint/kept" in e for e in state["log_history"])
    losses = [e["eval_loss"] for e in state["log_history"] if "eval_loss" in e]
    # patience 1: stop at the first evaluation that does not improve on the best so far
    first_stall = next((i for i in range(1, len(losses)) if losses[i] >= min(losses[:i])), None)
    if first_stall is not None:
        assert len(losses) == first_stall + 1


def previous_output(out: Path) -> Path:
    """A previous demo's output folder (it carries the demo's marker), with a file to recognise it by."""
    from trainer_callbacks.app.demo import MARKER

    out.mkdir(parents=True)
    (out / MARKER).write_text("previous demo\n")
    (out / "trainer_state.json").write_text('{"previous": true}')
    (out / "checkpoint-5").mkdir()
    return out


def assert_previous_output_intact(out: Path) -> None:
    from trainer_callbacks.app.demo import MARKER

    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "trainer_state.json", "checkpoint-5"])
    assert (out / "trainer_state.json").read_text() == '{"previous": true}'
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []  # nothing left beside


def test_a_bad_config_is_a_clear_error_and_keeps_the_previous_output(
    tmp_path: Path, run_cli: Any, require_plugins: Any
) -> None:
    require_plugins("earlystop")
    out = previous_output(tmp_path / "out")
    (tmp_path / "bad.toml").write_text("[earlystop]\npatiense = 2\n")
    result = run_cli(["demo", "--quick", "--config", "bad.toml", "--output-dir", str(out)], cwd=tmp_path)
    assert result.returncode == 2
    assert "has no option 'patiense'" in result.stderr and "Did you mean 'patience'?" in result.stderr
    assert_previous_output_intact(out)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("no-such-model", "demo --model 'no-such-model' does not exist"),
        ("empty-folder", "demo --model 'empty-folder': no config.json there"),
        ("broken-model", "demo --model 'broken-model': cannot load a sequence-classification model"),
    ],
)
def test_a_bad_model_is_a_clear_error_and_keeps_the_previous_output(
    tmp_path: Path, model: str, expected: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing or empty folder is refused before anything is written; a model that fails only when
    loaded is loaded before the previous output is moved. Either way the previous output is untouched."""
    from trainer_callbacks.core.cli import main

    out = previous_output(tmp_path / "out")
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "broken-model").mkdir()
    (tmp_path / "broken-model" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick", "--model", model, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trainer-callbacks: error: ") and expected in err and "Traceback" not in err
    assert_previous_output_intact(out)


def fails_mid_run() -> Any:
    from transformers import TrainerCallback

    class Failing(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step >= 3:
                raise RuntimeError("failed mid-run at step 3")

    return Failing()


@pytest.fixture
def demo_in_process(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``demo.run`` in this process, with a code-registered plugin ``failing``, no autoload and no trackers."""
    import types

    from trainer_callbacks.app import demo as demo_module
    from trainer_callbacks.core import CallbackSpec, hookimpl, plugins

    for var in (plugins.ENV_ALLOW, plugins.ENV_BLOCK):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    monkeypatch.setattr(demo_module, "available_trackers", lambda notes: [])
    plugins.reload()
    module = types.ModuleType("failing_plugin")

    @hookimpl
    def register_callbacks(register):  # type: ignore[no-untyped-def]
        register(CallbackSpec(name="failing", summary="raises at step 3", factory=fails_mid_run))

    module.register_callbacks = register_callbacks  # type: ignore[attr-defined]
    plugins.register_plugin(module, name="failing")
    yield demo_module
    plugins.reload()


def test_a_failure_mid_run_keeps_the_previous_output(tmp_path: Path, demo_in_process: Any) -> None:
    out = previous_output(tmp_path / "out")
    with pytest.raises(RuntimeError, match="failed mid-run at step 3"):
        demo_in_process.run(out, config={"failing": {}}, quick=True, max_steps=6, stream=io.StringIO())
    assert_previous_output_intact(out)


def test_a_failure_mid_run_with_no_previous_output_leaves_nothing(tmp_path: Path, demo_in_process: Any) -> None:
    out = tmp_path / "new"
    with pytest.raises(RuntimeError, match="failed mid-run"):
        demo_in_process.run(out, config={"failing": {}}, quick=True, max_steps=6, stream=io.StringIO())
    assert list(tmp_path.iterdir()) == []


def test_a_successful_run_replaces_the_previous_output(tmp_path: Path, demo_in_process: Any) -> None:
    from trainer_callbacks.app.demo import MARKER

    out = previous_output(tmp_path / "out")
    demo_in_process.run(out, config={}, quick=True, max_steps=2, stream=io.StringIO())
    assert not (out / "checkpoint-5").exists()
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    assert (out / MARKER).is_file() and (out / "summary.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the previous output is gone, nothing beside


def test_the_output_folder_is_checked_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer_callbacks.app.demo import backup_path, check_output_dir
    from trainer_callbacks.core.errors import ConfigurationError

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigurationError, match="not empty and was not written by the demo"):
        check_output_dir(foreign)
    assert (foreign / "precious.txt").read_text() == "keep me"
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(ConfigurationError, match="is not a folder"):
        check_output_dir(tmp_path / "a-file")
    out = previous_output(tmp_path / "out")
    assert check_output_dir(out) == out
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    (tmp_path / "link").symlink_to(out)
    with pytest.raises(ConfigurationError, match="is a symbolic link; pass the folder it points to"):
        check_output_dir(tmp_path / "link")
    (out / "checkpoint-5" / "sub").mkdir()
    monkeypatch.chdir(out / "checkpoint-5" / "sub")
    with pytest.raises(ConfigurationError, match="is \\(or holds\\) the current folder"):
        check_output_dir(Path("../.."))
    monkeypatch.chdir(tmp_path)
    (out / "checkpoint-5" / "sub").rmdir()
    backup_path(out).mkdir()  # what a run killed outright leaves: the previous output, renamed aside
    with pytest.raises(ConfigurationError, match="stopped before it finished; move it back"):
        check_output_dir(out)


def test_replace_on_success_restores_the_previous_output_on_any_exception(tmp_path: Path) -> None:
    from trainer_callbacks.app.demo import MARKER, replace_on_success

    out = previous_output(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt), replace_on_success(out) as new:
        assert sorted(p.name for p in new.iterdir()) == [MARKER]  # a fresh folder while the run writes
        (new / "checkpoint-1").mkdir()
        raise KeyboardInterrupt
    assert_previous_output_intact(out)


def write_reviews(path: Path, count: int = 60) -> Path:
    """A three-class JSON lines file whose label is the one sentiment word in the text."""
    words = {"positive": "splendid", "negative": "dreary", "neutral": "average"}
    names = sorted(words)
    lines = [
        json.dumps({"sentence": f"the show was {words[names[i % 3]]} again", "labels": names[i % 3]})
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_demo_trains_on_a_users_jsonl_file(tmp_path: Path, run_cli: Any, clean_env: Any) -> None:
    data = write_reviews(tmp_path / "reviews.jsonl")
    out = tmp_path / "out"
    env = clean_env(
        TRAINER_CALLBACKS_DISABLE_AUTOLOAD="1",
        TRAINER_CALLBACKS_PLUGINS="app",
        HF_DATASETS_OFFLINE="1",
        HF_DATASETS_CACHE=str(tmp_path / "cache"),
    )
    result = run_cli(
        ["demo", "--quick", "--max-steps", "8", "--data", str(data), "--output-dir", str(out)], cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # 60 rows: a fifth held out for evaluation; the classes in sorted order
    assert "(48 train, 12 eval rows; labels negative, neutral, positive)" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    assert {"splendid", "dreary", "average", "show"} <= set(vocab)  # the built-in tokenizer learnt the file's words
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    # shorter than the size's 20-step interval: evaluated four times anyway, on transformers 4.x and 5.x alike
    assert [e["step"] for e in state["log_history"] if "eval_accuracy" in e] == [2, 4, 6, 8]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '{"review": "good", "stars": 5}\n',
            "no text column 'text' or 'sentence'; the file's columns are 'review', 'stars'",
        ),
        ("", "is empty"),
        ('{"text": "good", "label": 0.5}\n{"text": "bad", "label": 1}\n', "row 1 has the label 0.5 (float)"),
    ],
)
def test_a_bad_data_file_is_a_clear_error_and_keeps_the_previous_output(
    tmp_path: Path,
    content: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trainer_callbacks.core.cli import main

    out = previous_output(tmp_path / "out")
    (tmp_path / "data.jsonl").write_text(content)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    assert main(["demo", "--quick", "--data", "data.jsonl", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trainer-callbacks: error: demo --data 'data.jsonl'") and expected in err, err
    assert "Traceback" not in err
    assert_previous_output_intact(out)


def test_a_short_demo_still_evaluates_saves_and_logs_a_few_times() -> None:
    """The intervals shrink for a short ``--max-steps`` (so every metric-driven callback has evaluations to act on)
    and stay the size's own for a full-length run."""
    from trainer_callbacks.app.demo import FULL, QUICK, interval, training_arguments

    for steps in (1, 2, 3, 7, 8, 50, 79, 80, 81, 400, 1000):
        every = interval(QUICK.eval_steps, steps)
        assert 1 <= every <= QUICK.eval_steps
        acts = steps // every
        assert acts >= min(steps, 4), (steps, every)  # at least four evaluations (or one per step)
    assert interval(FULL.eval_steps, FULL.max_steps) == FULL.eval_steps
    assert interval(QUICK.eval_steps, QUICK.max_steps) == QUICK.eval_steps
    args = training_arguments(Path("unused"), QUICK, 8, [])
    assert (args.eval_steps, args.save_steps, args.logging_steps) == (2, 2, 2)
