"""Options are read from the factory's signature and its Google-style docstring."""

from __future__ import annotations

import pytest

from trainer_callbacks.core.spec import CallbackSpec, options_from_callable, parse_arg_docs


class Sample:
    """A sample callback.

    Args:
        monitor (`str`): the metric to watch,
            continued on a second line.
        patience (int): evaluations to wait.
        flag: no type given.

    Returns nothing worth documenting.
    """

    def __init__(self, monitor: str, patience: int = 3, flag: bool = False, **extra: object) -> None:
        pass


def test_options_come_from_signature_and_docstring() -> None:
    options = {opt.name: opt for opt in options_from_callable(Sample)}
    assert list(options) == ["monitor", "patience", "flag"]  # **extra is not an option
    assert options["monitor"].required and options["monitor"].type == "str"
    assert options["monitor"].doc == "the metric to watch, continued on a second line."
    assert not options["patience"].required and options["patience"].default == 3
    assert options["patience"].type == "int"
    assert options["flag"].doc == "no type given."


def test_parse_arg_docs_stops_at_the_next_section() -> None:
    docs = parse_arg_docs("Intro.\n\nArgs:\n    a: first.\n\nReturns:\n    b: not an arg.\n")
    assert docs == {"a": "first."}


def test_spec_rejects_names_that_cannot_be_toml_tables_or_flags() -> None:
    with pytest.raises(ValueError, match="lower case"):
        CallbackSpec(name="Early-Stop", summary="", factory="x:y")
    with pytest.raises(ValueError, match=r"package\.module:Attribute"):
        CallbackSpec(name="ok", summary="", factory="no_colon")


def test_factory_is_imported_lazily_from_its_import_string() -> None:
    spec = CallbackSpec(name="od", summary="", factory="collections:OrderedDict")
    import collections

    assert spec.load_factory() is collections.OrderedDict


def test_references_round_trip_only_for_importable_objects() -> None:
    import json

    from trainer_callbacks.core.references import import_reference, reference_of

    assert reference_of(json.dumps) == "json:dumps"
    assert import_reference("json:dumps") is json.dumps
    assert import_reference("os.path:join") is __import__("os").path.join
    assert reference_of(lambda x: x) is None  # a lambda cannot be imported back

    def local() -> None: ...

    assert reference_of(local) is None
    with pytest.raises(ValueError, match=r"package\.module:attribute"):
        import_reference("json.dumps")
    with pytest.raises(AttributeError):
        import_reference("json:no_such_function")
