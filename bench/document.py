"""Merging a partial run (``python -m bench --only NAME``) into the existing docs/benchmarks.md.

A run of one benchmark used to overwrite the whole document with that one section, losing the
others' figures (measured on other days, sometimes on a quieter machine). The document is made
of parts each keyed by its benchmark: its rows of the goals table (first cell), its bullet in
"Missed goals" (``- **name**:``) and its section (marked ``<!-- bench: name -->`` under the
heading). Merging keeps every part of the benchmarks not re-run as it was, replaces those of the
re-run ones, and records the partial run's command under "Machine and command".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

GOALS = "## Goals"
MISSED = "Missed goals, and why:"
MARKER = re.compile(r"^<!-- bench: (\w+) -->$", re.M)
ROW = r"\| (\w+) \|"
BULLET = r"- \*\*(\w+)\*\*:"


@dataclass
class Document:
    head: list[str] = field(default_factory=list)  # title, preamble and "## Machine and command"
    rows: list[str] = field(default_factory=list)  # goals table rows, each "| name | ..."
    missed: list[str] = field(default_factory=list)  # "- **name**: ..." lines
    sections: list[tuple[str | None, str]] = field(default_factory=list)  # (benchmark or None, text)


def _name(line: str, pattern: str) -> str | None:
    found = re.match(pattern, line)
    return found[1] if found else None


def parse(text: str) -> Document:
    doc = Document()
    before, _, rest = text.partition("\n" + GOALS + "\n")
    doc.head = before.rstrip("\n").split("\n")
    if not rest:
        return doc
    parts = re.split(r"\n(?=## )", rest)
    for line in parts[0].split("\n"):
        if line.startswith("| ") and not line.startswith("| benchmark |"):
            doc.rows.append(line)
        elif line.startswith("- **"):
            doc.missed.append(line)
    for section in parts[1:]:
        marked = MARKER.search(section)
        doc.sections.append((marked[1] if marked else None, section.rstrip("\n")))
    return doc


def render(doc: Document) -> str:
    lines = [*doc.head, "", GOALS, "", "| benchmark | goal | measured | met |", "|---|---|---|---|", *doc.rows]
    if doc.missed:
        lines += ["", MISSED, "", *doc.missed]
    for _, section in doc.sections:
        lines += ["", section]
    return "\n".join(lines) + "\n"


def merge(old_text: str, new_text: str, names: list[str], order: tuple[str, ...], command: str) -> str:
    """``old_text`` with the parts of ``names`` taken from ``new_text`` (a run of those benchmarks only)."""
    old, new = parse(old_text), parse(new_text)
    if not old.rows and not old.sections:
        return new_text  # nothing to keep
    rank = {name: i for i, name in enumerate(order)}

    def keyed(old_lines: list[str], new_lines: list[str], pattern: str) -> list[str]:
        kept = [line for line in old_lines if _name(line, pattern) not in names]
        merged = kept + [line for line in new_lines if _name(line, pattern) in names]
        return sorted(merged, key=lambda line: rank.get(_name(line, pattern) or "", len(order)))

    doc = Document(
        head=list(old.head), rows=keyed(old.rows, new.rows, ROW), missed=keyed(old.missed, new.missed, BULLET)
    )
    replaced = {name: text for name, text in new.sections if name in names}
    for name, text in old.sections:
        if name in replaced:
            doc.sections.append((name, replaced.pop(name)))
        else:
            doc.sections.append((name, text))
    doc.sections += list(replaced.items())  # benchmarks new to the document
    doc.sections.sort(key=lambda item: rank.get(item[0] or "", len(order)))
    doc.head.append(f"- partial run: `{command}` (re-ran {', '.join(names)}; their sections state their own load)")
    return render(doc)
