"""Text-classification data as ``datasets.Dataset``: the demo's generated task or a user's local file.

A file is read with ``datasets.load_dataset("csv" | "json", data_files=...)``, as transformers'
``run_glue.py`` reads ``--train_file``: a ``.csv`` with a header row, or ``.json`` / ``.jsonl``
(JSON lines, or one JSON list of objects). Local files only: nothing is fetched from the Hub, so
``HF_DATASETS_OFFLINE=1`` changes nothing. The text column is the first of :data:`TEXT_COLUMNS`
the file has (or the one named), the label column the first of :data:`LABEL_COLUMNS`. A label is a
class: a whole number or a string (``pos``/``neg``); labels become ids ``0..n-1`` in sorted order.

Every problem (no such file, an empty file, a missing column, a label that is not a class, a
single class) is a :class:`~trainer_callbacks.core.ConfigurationError` naming the file.
``datasets`` is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer_callbacks.core import ConfigurationError

_KIND_CHANGE = re.compile(r"Column\(/([^)]*)\) changed from (\w+) to (\w+)")
"""pyarrow's message for a JSON column whose values change kind (``Column(/label) changed from string to number``)."""

TEXT_COLUMNS = ("text", "sentence")
"""Column names taken as the text, first match wins (when no name is given)."""
LABEL_COLUMNS = ("label", "labels")
"""Column names taken as the label, first match wins (when no name is given)."""
BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json"}
INSTALL = "pip install 'trainer-callbacks-core[demo]' (or: pip install datasets)"


def import_datasets() -> Any:
    """The ``datasets`` module, or a :class:`ConfigurationError` saying how to install it."""
    try:
        import datasets
    except ImportError:
        raise ConfigurationError(f"this needs the datasets library: {INSTALL}") from None
    return datasets


@dataclass(frozen=True)
class LabelledTexts:
    """Datasets with a ``text`` and a ``label`` (class id) column, and the class names (``label_names[id]``)."""

    splits: list[Any]
    label_names: list[str]


def rows_to_dataset(rows: Sequence[tuple[str, int]]) -> Any:
    """``(text, label)`` pairs (the generated task) as a ``datasets.Dataset`` with ``text`` and ``label``."""
    datasets = import_datasets()
    return datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [int(y) for _, y in rows]})


def _pick(columns: Sequence[str], named: str | None, accepted: Sequence[str], what: str, where: str) -> str:
    if named is not None:
        if named in columns:
            return named
        wanted = repr(named)
    else:
        found = next((c for c in accepted if c in columns), None)
        if found is not None:
            return found
        wanted = " or ".join(repr(c) for c in accepted)
    raise ConfigurationError(
        f"{where}: no {what} column {wanted}; the file's columns are {', '.join(repr(c) for c in columns) or 'none'}. "
        f"Rename the {what} column to {wanted}"
        + ("" if named is not None else f" (the accepted names are {', '.join(accepted)})")
    )


def read_file(
    path: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    option: str = "--data",
    cache_dir: str | None = None,
) -> Any:
    """The file as a ``datasets.Dataset`` with exactly the columns ``text`` and ``label`` (raw labels).

    ``option`` names the flag in messages (``demo --data``, ``--train_file``).
    """
    file = Path(path).expanduser()
    where = f"{option} {str(path)!r}"
    builder = BUILDERS.get(file.suffix.lower())
    if builder is None:
        raise ConfigurationError(f"{where}: use a .csv (with a header row), .json or .jsonl file")
    if not file.is_file():
        raise ConfigurationError(f"{where}: no such file")
    try:
        empty = not file.read_bytes().strip()
    except OSError as exc:
        raise ConfigurationError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if empty:
        raise ConfigurationError(
            f"{where} is empty; it needs a {text_column or 'text'} and a "
            f"{label_column or 'label'} column and at least two rows"
        )
    datasets = import_datasets()
    try:
        loaded = datasets.load_dataset(builder, data_files=str(file.absolute()), split="train", cache_dir=cache_dir)
    except ValueError as exc:
        if "corresponds to no data" in str(exc):
            raise ConfigurationError(f"{where} has no rows (a header only?); add rows of text and label") from None
        raise ConfigurationError(f"{where}: cannot read it as {builder.upper()} ({exc})") from None
    except Exception as exc:  # the builders wrap parse errors in DatasetGenerationError
        cause = exc.__cause__ or exc
        kinds = _KIND_CHANGE.search(str(cause))
        if kinds:  # pyarrow's JSON reader (datasets 3.x) refuses a column whose values change kind
            column, before, after = kinds.groups()
            raise ConfigurationError(
                f"{where}: column {column!r} mixes kinds of value ({before}, then {after}); a label is a whole "
                "number or a string, the same kind in every row"
            ) from None
        raise ConfigurationError(
            f"{where}: cannot read it as {builder.upper()} ({type(cause).__name__}: {cause})"
        ) from None
    if len(loaded) == 0:
        raise ConfigurationError(f"{where} has no rows; add rows of text and label")
    columns = list(loaded.column_names)
    text = _pick(columns, text_column, TEXT_COLUMNS, "text", where)
    label = _pick(columns, label_column, LABEL_COLUMNS, "label", where)
    for i, value in enumerate(loaded[text]):
        if not isinstance(value, str):
            raise ConfigurationError(
                f"{where}: row {i + 1} has {text}={value!r} ({type(value).__name__}); every text must be a string"
            )
    loaded = loaded.select_columns([text, label])
    if text != "text":
        loaded = loaded.rename_column(text, "text")
    if label != "label":
        loaded = loaded.rename_column(label, "label")
    _check_labels(loaded["label"], f"{where}: column {label!r}")
    return loaded


def _check_labels(values: Iterable[Any], where: str) -> None:
    kinds = set()
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
            shown = "empty" if value is None or value == "" else f"{value!r} ({type(value).__name__})"
            raise ConfigurationError(
                f"{where}: row {i + 1} has the label {shown}; a label is a class, given as a whole number "
                "or a string such as 'positive'"
            )
        kinds.add(int if isinstance(value, int) else str)
    if len(kinds) > 1:
        raise ConfigurationError(f"{where} mixes whole numbers and strings as labels; give every class the same way")


def encode_labels(splits: Sequence[Any], where: str) -> LabelledTexts:
    """Map the raw labels of all ``splits`` to ids ``0..n-1`` (sorted classes); at least two classes."""
    values = {value for split in splits for value in split["label"]}
    if len({type(value) for value in values}) > 1:
        raise ConfigurationError(
            f"{where}: the files mix whole numbers and strings as labels; give every class the same way"
        )
    classes = sorted(values)
    if len(classes) < 2:
        raise ConfigurationError(
            f"{where}: every row has the label {classes[0]!r}; a classifier needs at least two classes"
            if classes
            else f"{where}: no labels"
        )
    ids = {value: i for i, value in enumerate(classes)}
    datasets = import_datasets()
    encoded = []
    for split in splits:
        labels = [ids[value] for value in split["label"]]
        encoded.append(
            split.remove_columns("label").add_column("label", labels).cast_column("label", datasets.Value("int64"))
        )
    return LabelledTexts(encoded, [str(c) for c in classes])


def load_labelled_file(path: str | os.PathLike[str], *, option: str = "demo --data", **columns: Any) -> LabelledTexts:
    """One file: its rows with label ids, and the class names."""
    return encode_labels([read_file(path, option=option, **columns)], f"{option} {str(path)!r}")


def words(dataset: Any) -> list[str]:
    """Every whitespace-separated word of the ``text`` column, in first-seen order (a tokenizer's vocabulary)."""
    return list(dict.fromkeys(word for text in dataset["text"] for word in text.split()))


def tokenize(dataset: Any, tokenizer: Any, max_length: int) -> Any:
    """``input_ids``, ``attention_mask``... and ``labels``, through ``Dataset.map(batched=True)``."""

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        encoded = dict(tokenizer(batch["text"], truncation=True, max_length=max_length))
        encoded["labels"] = batch["label"]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=None)
