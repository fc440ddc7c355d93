"""``trainer_callbacks.app.text_data``: a user's local CSV / JSON lines file as a ``datasets.Dataset``.

Every problem a user's file can have is a ConfigurationError naming the file and what to change;
the files are written here, so the expected rows, columns and classes are known independently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer_callbacks.core.errors import ConfigurationError

datasets = pytest.importorskip("datasets")
text_data = pytest.importorskip("trainer_callbacks.app.text_data")


@pytest.fixture(autouse=True)
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Hub, and the builders' cache inside the test's folder."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_csv_with_string_labels_becomes_ids_in_sorted_class_order(tmp_path: Path) -> None:
    file = write_csv(tmp_path / "reviews.csv", "sentence,label,extra", ["a fine film,pos,1", "a dull film,neg,2"] * 3)
    loaded = text_data.load_labelled_file(file)
    assert loaded.label_names == ["neg", "pos"]
    (rows,) = loaded.splits
    assert rows.column_names == ["text", "label"]  # 'sentence' accepted as the text, 'extra' dropped
    assert rows["text"][:2] == ["a fine film", "a dull film"]
    assert rows["label"] == [1, 0] * 3


def test_jsonl_and_a_json_list_with_whole_number_labels(tmp_path: Path) -> None:
    records = [{"text": "x y", "labels": 2}, {"text": "y z", "labels": 0}, {"text": "z", "labels": 2}]
    for file in (write_jsonl(tmp_path / "a.jsonl", records), tmp_path / "b.json"):
        if file.suffix == ".json":
            file.write_text(json.dumps(records))
        loaded = text_data.load_labelled_file(file)
        assert loaded.label_names == ["0", "2"]
        assert loaded.splits[0]["label"] == [1, 0, 1]


def test_named_columns_win_over_the_accepted_names(tmp_path: Path) -> None:
    file = write_csv(tmp_path / "t.csv", "text,review,stars,label", ["ignored,good,5,x", "ignored,bad,1,y"])
    rows = text_data.read_file(file, text_column="review", label_column="stars")
    assert rows["text"] == ["good", "bad"] and rows["label"] == [5, 1]


def test_a_missing_column_names_the_file_the_column_and_the_columns_present(tmp_path: Path) -> None:
    file = write_csv(tmp_path / "reviews.csv", "review,stars", ["good,5", "bad,1"])
    with pytest.raises(ConfigurationError) as info:
        text_data.load_labelled_file(file)
    message = str(info.value)
    assert "reviews.csv" in message and "no text column 'text' or 'sentence'" in message
    assert "the file's columns are 'review', 'stars'" in message
    file = write_csv(tmp_path / "r2.csv", "text,stars", ["good,5", "bad,1"])
    with pytest.raises(
        ConfigurationError, match=r"no label column 'label' or 'labels'; the file's columns are 'text', 'stars'"
    ):
        text_data.load_labelled_file(file)
    with pytest.raises(ConfigurationError, match=r"no label column 'grade'; the file's columns are 'text', 'stars'"):
        text_data.read_file(file, label_column="grade")


@pytest.mark.parametrize(
    ("content", "expected"),
    [("", "is empty"), ("  \n", "is empty"), ("text,label\n", "has no rows")],
)
def test_an_empty_file_is_a_clear_error(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "e.csv").write_text(content)
    with pytest.raises(ConfigurationError, match=f"e.csv'? {expected}"):
        text_data.load_labelled_file(tmp_path / "e.csv")


@pytest.mark.parametrize(
    ("label", "shown"),
    [(0.5, "0.5 (float)"), ([1], "[1] (list)"), (True, "True (bool)"), (None, "empty"), ("", "empty")],
)
def test_a_label_that_is_not_a_class_names_the_row(tmp_path: Path, label: object, shown: str) -> None:
    file = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": label}])
    with pytest.raises(ConfigurationError) as info:
        text_data.load_labelled_file(file)
    message = str(info.value)
    assert "d.jsonl" in message and "column 'label'" in message
    # datasets 4+ reads the column and the check names the row; datasets 3.x's JSON reader refuses the column
    assert any(f in message for f in (f"row 2 has the label {shown}", "mixes whole numbers and strings", "mixes kinds"))


def test_an_empty_csv_cell_and_mixed_label_kinds_are_refused(tmp_path: Path) -> None:
    file = write_csv(tmp_path / "gap.csv", "text,label", ["a,pos", "b,"])
    with pytest.raises(ConfigurationError, match="row 2 has the label empty"):
        text_data.load_labelled_file(file)
    file = write_jsonl(tmp_path / "mixed.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": "pos"}])
    with pytest.raises(ConfigurationError, match=r"mixes (whole numbers and strings|kinds of value)"):
        text_data.load_labelled_file(file)
    train = text_data.read_file(
        write_jsonl(tmp_path / "tr.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 0}])
    )
    evaluation = text_data.read_file(write_jsonl(tmp_path / "ev.jsonl", [{"text": "a", "label": "pos"}]))
    with pytest.raises(ConfigurationError, match="the files mix whole numbers and strings"):
        text_data.encode_labels([train, evaluation], "--train_file 'tr.jsonl'")


def test_one_class_only_wrong_suffix_and_missing_file(tmp_path: Path) -> None:
    file = write_csv(tmp_path / "one.csv", "text,label", ["a,pos", "b,pos"])
    with pytest.raises(ConfigurationError, match="every row has the label 'pos'; a classifier needs at least two"):
        text_data.load_labelled_file(file)
    (tmp_path / "data.txt").write_text("text,label\na,1\n")
    with pytest.raises(ConfigurationError, match=r"data.txt'?: use a .csv"):
        text_data.load_labelled_file(tmp_path / "data.txt")
    with pytest.raises(ConfigurationError, match=r"nope.csv'?: no such file"):
        text_data.load_labelled_file(tmp_path / "nope.csv")


def test_tokenize_maps_in_batches_and_keeps_the_label_ids(tmp_path: Path) -> None:
    from trainer_callbacks.app.demo_data import build_tokenizer

    rows = text_data.rows_to_dataset([("good film", 1), ("bad bad film", 0), ("film", 1)])
    tokenizer = build_tokenizer(model_max_length=8, words=text_data.words(rows))
    assert text_data.words(rows) == ["good", "film", "bad"]
    calls: list[int] = []
    original = tokenizer.__call__

    def counting(texts: list[str], **kwargs: object) -> object:
        calls.append(len(texts))
        return original(texts, **kwargs)

    encoded = text_data.tokenize(rows, counting, max_length=3)  # type: ignore[arg-type]
    assert calls == [3]  # one batch for all three rows: map(batched=True)
    # the text column is gone (transformers 4.57's fast tokenizer also returns token_type_ids)
    assert set(encoded.column_names) - {"token_type_ids"} == {"input_ids", "attention_mask", "labels"}
    assert encoded["labels"] == [1, 0, 1]
    vocab = tokenizer.get_vocab()
    # [CLS] text [SEP], cut at max_length=3
    assert encoded["input_ids"][0] == [vocab["[CLS]"], vocab["good"], vocab["[SEP]"]]
    assert encoded["input_ids"][2] == [vocab["[CLS]"], vocab["film"], vocab["[SEP]"]]
