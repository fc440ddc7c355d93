"""The trainer-callbacks pytest plugin (the kit's ``pytest11`` entry point: loaded once the kit is installed).

It gives third-party callback authors the conformance kit without writing a test:

* the ``fresh_plugin_registry`` fixture: the plugin registry rebuilt for the test (and after it), so a
  test can register plugins in code or set the plugin switches without leaking them;
* the ``callback_checks`` fixture: ``callback_checks(MyCallback, args={...})`` runs every
  check (:func:`trainer_callbacks.testing.check_callback`) and fails the test with
  the list of failed checks and what to fix;
* the ``--trainer-callbacks-check=package.module:Factory`` option (repeatable): adds one
  test per check for that callback factory to the session, e.g.
  ``pytest --trainer-callbacks-check=my_pkg.callbacks:MyCallback`` (ids like
  ``MyCallback()-check_state_round_trip``). Like the other routes
  (``parametrize_with_checks``, ``check_callback``) it takes:

  - constructor keywords, as Python literals: ``--trainer-callbacks-check="my_pkg.callbacks:MyCallback(patience=3)"``;
  - expected failures with their reason: ``--trainer-callbacks-xfail="check_reuse_across_train_calls=keeps a history on
    purpose"`` (repeatable; the test is marked ``xfail`` with that reason);
  - the options of the checks: ``--trainer-callbacks-check-option=KEY=VALUE`` (repeatable), where KEY is ``args``
    (``TrainingArguments`` overrides), ``metrics``, ``train_dataset_len``, ``non_deterministic_keys`` or a
    simulator option such as ``losses``, and VALUE a Python literal (``{"eval_steps": 4}``, ``["speed/*"]``) or a
    ``package.module:attribute`` reference (``metrics=my_pkg.tests:METRICS``).

  The expected failures and check options apply to every ``--trainer-callbacks-check`` of the session.

Importing this module imports neither torch, transformers nor hypothesis, so it never
slows down or breaks a pytest session; disable it with ``-p no:trainer_callbacks``.
"""

from __future__ import annotations

import ast
import functools
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trainer_callbacks", "trainer-callbacks conformance kit")
    group.addoption(
        "--trainer-callbacks-check",
        action="append",
        default=[],
        metavar="MODULE:FACTORY",
        help="run the trainer-callbacks conformance checks on this callback class or factory (repeatable); "
        "constructor keywords as literals: 'pkg.mod:Class(patience=3)'",
    )
    group.addoption(
        "--trainer-callbacks-xfail",
        action="append",
        default=[],
        metavar="CHECK=REASON",
        help="a check expected to fail for the --trainer-callbacks-check callbacks, and why (repeatable)",
    )
    group.addoption(
        "--trainer-callbacks-check-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the checks (args, metrics, train_dataset_len, non_deterministic_keys, losses...): "
        "a Python literal or a package.module:attribute reference (repeatable)",
    )


def _import(reference: str, flag: str) -> Any:
    module, _, attribute = reference.partition(":")
    if not module or not attribute:
        raise pytest.UsageError(f"{flag}={reference!r}: write it as package.module:Attribute")
    try:
        target: Any = importlib.import_module(module)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(f"{flag}={reference!r}: cannot import it ({exc})") from None
    return target


def load_factory(spec: str) -> Any:
    """``"package.module:Attribute"`` -> the attribute; ``"...:Class(key=literal, ...)"`` -> a partial of it."""
    flag = "--trainer-callbacks-check"
    reference, paren, rest = spec.partition("(")
    target = _import(reference.strip(), flag)
    if not paren:
        return target
    try:
        call = ast.parse(f"f({rest}", mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise ValueError("give keywords only")
        keywords = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg is not None}
        if len(keywords) != len(call.keywords):
            raise ValueError("no **mapping")
    except (SyntaxError, ValueError) as exc:
        raise pytest.UsageError(
            f"{flag}={spec!r}: the constructor arguments must be keywords with Python literal values, "
            f"e.g. {reference.strip()}(patience=3, monitor='eval_accuracy') ({exc})"
        ) from None
    return functools.partial(target, **keywords)


def parse_expected_failures(values: list[str], known: list[str]) -> dict[str, str]:
    """``["check_name=reason", ...]`` -> ``{check_name: reason}``; unknown check names are a usage error."""
    expected: dict[str, str] = {}
    for value in values:
        name, _, reason = value.partition("=")
        name = name.strip()
        if name not in known:
            raise pytest.UsageError(
                f"--trainer-callbacks-xfail={value!r}: no check {name!r}; the checks are {', '.join(known)}"
            )
        expected[name] = reason.strip() or "expected to fail (no reason given)"
    return expected


def parse_check_options(values: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> keywords of :func:`~trainer_callbacks.testing.checks`."""
    options: dict[str, Any] = {}
    for value in values:
        key, equals, text = value.partition("=")
        key, text = key.strip(), text.strip()
        if not equals or not key.isidentifier():
            raise pytest.UsageError(f"--trainer-callbacks-check-option={value!r}: write it as KEY=VALUE")
        try:
            options[key] = ast.literal_eval(text)
        except (SyntaxError, ValueError):
            if ":" not in text:
                raise pytest.UsageError(
                    f"--trainer-callbacks-check-option={value!r}: the value must be a Python literal "
                    "or a package.module:attribute reference"
                ) from None
            options[key] = _import(text, "--trainer-callbacks-check-option")
    return options


class CallbackCheckItem(pytest.Item):
    """One conformance check of one callback factory."""

    def __init__(self, *, check: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check

    def runtest(self) -> None:
        self.check()

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, AssertionError):
            return f"{self.name}: {excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "trainer-callbacks-check", None, self.name


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    specs = config.getoption("trainer_callbacks_check", default=[]) or []
    if not specs:
        return
    from trainer_callbacks.testing.conformance import ALL_CHECKS, as_factory, checks, describe

    expected = parse_expected_failures(config.getoption("trainer_callbacks_xfail", default=[]) or [], list(ALL_CHECKS))
    options = parse_check_options(config.getoption("trainer_callbacks_check_option", default=[]) or [])
    for spec in specs:
        factory = load_factory(spec)
        label = describe(as_factory(factory))
        try:
            named = list(checks(factory, **options))
        except TypeError as exc:
            raise pytest.UsageError(f"--trainer-callbacks-check-option: {exc}") from None
        for name, fn in named:
            item = CallbackCheckItem.from_parent(session, name=f"{label}-{name}", check=fn)
            if name in expected:
                item.add_marker(pytest.mark.xfail(reason=expected[name], strict=False))
            items.append(item)


@pytest.fixture
def callback_checks() -> Callable[..., None]:
    """``callback_checks(factory, *, args=None, metrics=None, expected_failures=None, **simulate_options)``.

    Runs :func:`trainer_callbacks.testing.check_callback`; the test fails with every
    failed check listed.
    """
    from trainer_callbacks.testing.conformance import check_callback

    return check_callback


@pytest.fixture
def fresh_plugin_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The trainer-callbacks plugin registry rebuilt from the installed entry points for the test, with the
    plugin switches (``TRAINER_CALLBACKS_PLUGINS``, ``..._BLOCK_PLUGINS``, ``..._DISABLE_AUTOLOAD``) cleared, and
    rebuilt again afterwards: a test may register plugins in code or set switches without leaking them."""
    from trainer_callbacks.core import plugins

    for var in (plugins.ENV_ALLOW, plugins.ENV_BLOCK, plugins.ENV_DISABLE_AUTOLOAD):
        monkeypatch.delenv(var, raising=False)
    plugins.reload()
    yield
    plugins.reload()
