"""``python -m bench --only NAME`` keeps the other benchmarks' figures in docs/benchmarks.md (bench/document.py)."""

from __future__ import annotations

from bench.document import merge, parse, render

ORDER = ("alpha", "beta", "gamma")


def document(rows: dict[str, str], missed: dict[str, str], sections: dict[str, str], machine: str) -> str:
    """A benchmarks document written out by hand in the layout ``python -m bench`` renders."""
    lines = ["# Benchmarks", "", "## Machine and command", "", f"- machine: {machine}", "", "## Goals", ""]
    lines += ["| benchmark | goal | measured | met |", "|---|---|---|---|"]
    lines += [f"| {name} | goal of {name} | {value} | yes |" for name, value in rows.items()]
    if missed:
        lines += ["", "Missed goals, and why:", ""] + [f"- **{n}**: {why}" for n, why in missed.items()]
    for name, body in sections.items():
        lines += ["", f"## About {name}", f"<!-- bench: {name} -->", "", body]
    return "\n".join(lines) + "\n"


def test_a_partial_run_replaces_only_the_parts_of_the_benchmarks_it_ran() -> None:
    old = document(
        {"alpha": "1 ms", "beta": "2 ms", "gamma": "3 ms"},
        {"beta": "too slow then"},
        {"alpha": "old alpha table", "beta": "old beta table", "gamma": "old gamma table"},
        machine="quiet",
    )
    new = document({"beta": "1.5 ms"}, {}, {"beta": "new beta table"}, machine="busy")
    merged = merge(old, new, ["beta"], ORDER, "python -m bench --only beta")
    assert merged == document(
        {"alpha": "1 ms", "beta": "1.5 ms", "gamma": "3 ms"},
        {},
        {"alpha": "old alpha table", "beta": "new beta table", "gamma": "old gamma table"},
        machine="quiet\n- partial run: `python -m bench --only beta` "
        "(re-ran beta; their sections state their own load)",
    )


def test_a_benchmark_new_to_the_document_goes_in_its_place() -> None:
    old = document({"alpha": "1 ms", "gamma": "3 ms"}, {}, {"alpha": "a", "gamma": "g"}, machine="m")
    new = document({"beta": "2 ms"}, {"beta": "missed"}, {"beta": "b"}, machine="m2")
    doc = parse(merge(old, new, ["beta"], ORDER, "cmd"))
    assert [row.split(" | ")[0] for row in doc.rows] == ["| alpha", "| beta", "| gamma"]
    assert doc.missed == ["- **beta**: missed"]
    assert [name for name, _ in doc.sections] == ["alpha", "beta", "gamma"]


def test_without_a_previous_document_the_run_is_the_document() -> None:
    new = document({"beta": "2 ms"}, {}, {"beta": "b"}, machine="m")
    assert merge("", new, ["beta"], ORDER, "cmd") == new
    assert render(parse(new)) == new  # parsing loses nothing
