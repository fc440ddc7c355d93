"""The trainer-callbacks pytest plugin (entry point ``pytest11``: loaded automatically once core is installed).

It gives third-party callback authors the conformance kit without writing a test:

* the ``callback_checks`` fixture: ``callback_checks(MyCallback, args={...})`` runs every
  check (:func:`trainer_callbacks.core.testing.check_callback`) and fails the test with
  the list of failed checks and what to fix;
* the ``--trainer-callbacks-check=package.module:Factory`` option (repeatable): adds one
  test per check for that callback factory to the session, e.g.
  ``pytest --trainer-callbacks-check=my_pkg.callbacks:MyCallback`` (ids like
  ``MyCallback()-check_state_round_trip``).

Importing this module imports neither torch, transformers nor hypothesis, so it never
slows down or breaks a pytest session; disable it with ``-p no:trainer_callbacks``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trainer_callbacks", "trainer-callbacks conformance kit")
    group.addoption(
        "--trainer-callbacks-check",
        action="append",
        default=[],
        metavar="MODULE:FACTORY",
        help="run the trainer-callbacks conformance checks on this callback class or factory (repeatable)",
    )


def load_factory(spec: str) -> Any:
    """``"package.module:Attribute"`` -> the attribute."""
    module, _, attribute = spec.partition(":")
    if not module or not attribute:
        raise pytest.UsageError(f"--trainer-callbacks-check={spec!r}: write it as package.module:Factory")
    try:
        target: Any = importlib.import_module(module)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(f"--trainer-callbacks-check={spec!r}: cannot import it ({exc})") from None
    return target


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
    from trainer_callbacks.core.testing.conformance import as_factory, checks, describe

    for spec in specs:
        factory = load_factory(spec)
        label = describe(as_factory(factory))
        for name, fn in checks(factory):
            items.append(CallbackCheckItem.from_parent(session, name=f"{label}-{name}", check=fn))


@pytest.fixture
def callback_checks() -> Callable[..., None]:
    """``callback_checks(factory, *, args=None, metrics=None, expected_failures=None, **simulate_options)``.

    Runs :func:`trainer_callbacks.core.testing.check_callback`; the test fails with every
    failed check listed.
    """
    from trainer_callbacks.core.testing.conformance import check_callback

    return check_callback
