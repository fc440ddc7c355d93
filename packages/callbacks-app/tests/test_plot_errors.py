"""``trainer-callbacks plot`` on what it cannot draw: one line on stderr, exit 2, no traceback, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer_callbacks.core.cli import main

GOOD_HISTORY = [{"loss": 1.0, "learning_rate": 1e-3, "step": 1}, {"loss": 0.5, "learning_rate": 1e-3, "step": 2}]

BAD_STATES: list[tuple[str, bytes, str]] = [
    ("corrupt", b'{"log_history": [{"loss": 1.0, "st', r"is not valid JSON \(.*line 1 column"),
    ("empty", b"", r"is empty; a trainer_state.json holds the run's log_history"),
    ("blank", b"  \n", r"is empty"),
    ("not UTF-8", b'{"log_history": []}\xff\xfe', r"is not UTF-8 text \(byte 19\)"),
    ("list-shaped", b"[1, 2]", r"holds an array, not the object a trainer_state.json holds"),
    ("a string", b'"log_history"', r"holds a string, not the object"),
    ("log_history not a list", b'{"log_history": {"loss": 1}}', r"log_history is an object; expected a list"),
    ("an entry not an object", b'{"log_history": [3]}', r"log_history\[0\] is a number 3; expected an object"),
    (
        "a text loss",
        json.dumps({"log_history": [*GOOD_HISTORY, {"loss": "abc", "step": 3}]}).encode(),
        r"log_history\[2\] \(step 3\) has loss='abc' \(a string\); expected a number",
    ),
    (
        "a null learning rate",
        json.dumps({"log_history": [{"learning_rate": None, "step": 1}]}).encode(),
        r"has learning_rate=None \(null\); expected a number",
    ),
    (
        "a list eval_loss",
        json.dumps({"log_history": [{"eval_loss": [0.1, 0.2], "step": 1}]}).encode(),
        r"has eval_loss=\[0.1, 0.2\] \(an array\)",
    ),
    (
        "a text step",
        json.dumps({"log_history": [{"loss": 1.0, "step": "ten"}]}).encode(),
        r"has step='ten' \(a string\); expected a whole number",
    ),
    ("no log_history", b'{"global_step": 0}', r"nothing to plot: .* has no log_history entries"),
    ("an empty log_history", b'{"log_history": []}', r"nothing to plot"),
    ("a null log_history", b'{"log_history": null}', r"nothing to plot"),
]


def _plot(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["plot", *argv])
    err = capsys.readouterr().err
    return code, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("trainer-callbacks: error: ") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(("content", "expected"), [(c, e) for _, c, e in BAD_STATES], ids=[i for i, _, _ in BAD_STATES])
def test_a_bad_trainer_state_is_one_clear_line(
    content: bytes, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    (tmp_path / "trainer_state.json").write_bytes(content)
    code, err = _plot([str(tmp_path)], capsys)
    assert code == 2
    line = _one_error_line(err)
    assert re.search(expected, line), line
    assert str(tmp_path / "trainer_state.json") in line
    assert not (tmp_path / "plots").exists()  # nothing drawn, no blank curves.png


def test_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _plot([str(tmp_path / "no-such-run")], capsys)
    assert code == 2
    assert "no-such-run' does not exist; pass a run's output_dir" in _one_error_line(err)


def test_out_naming_an_existing_file_is_refused_and_the_file_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": GOOD_HISTORY}))
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    code, err = _plot([str(tmp_path), "--out", str(target)], capsys)
    assert code == 2
    assert "plot --out" in _one_error_line(err) and "is a file; pass a folder" in err
    assert target.read_text() == "mine"


def test_out_under_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": GOOD_HISTORY}))
    (tmp_path / "notes.txt").write_text("mine")
    code, err = _plot([str(tmp_path), "--out", str(tmp_path / "notes.txt" / "plots")], capsys)
    assert code == 2
    assert "cannot create the folder" in _one_error_line(err)


def test_through_the_installed_command_there_is_no_traceback(tmp_path: Path) -> None:
    """The real entry (a subprocess): exit status and stderr as a user sees them."""
    (tmp_path / "trainer_state.json").write_text('{"log_history": [')
    result = subprocess.run(
        [sys.executable, "-m", "trainer_callbacks.core.cli", "plot", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "is not valid JSON" in result.stderr
    assert result.stdout == ""
