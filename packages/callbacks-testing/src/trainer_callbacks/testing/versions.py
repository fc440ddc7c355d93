"""The transformers releases the test kit's simulator and conformance checks work with.

The callbacks themselves support transformers 4.57 and every 5.x (see the root README's
tested matrix). The simulator (and the conformance checks, which run callbacks through it)
copy the ``Trainer`` loop of transformers 5.x and call names that appeared during 5.x,
read from the published wheels:

* ``transformers.trainer_utils.rotate_checkpoints`` / ``sort_checkpoints`` (5.2; 4.x has the
  ``Trainer._rotate_checkpoints`` method instead) and ``compare_trainer_and_checkpoint_args`` (5.2);
* ``transformers.optimization.GreedyLR`` and the ``"greedy"`` scheduler type (5.4);
* the 5.x loop: ``state.epoch`` left ``None`` at train begin, ``grad_norm`` logged without clipping.

So importing :mod:`.simulator` (or :mod:`.conformance`) under a transformers outside
:data:`KIT_TRANSFORMERS` raises :class:`KitVersionError`, naming the range. Within the range
the simulator still warns when the release is not one it was checked against
(``simulator.TRANSFORMERS_VERSIONS``). The real-Trainer helpers (:mod:`.tiny_bert_trainer`,
:mod:`.real_trainer`) follow the installed Trainer on both lines.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

from importlib import metadata

KIT_TRANSFORMERS = ">=5.4"
"""The transformers releases the simulator and the conformance checks can run on (a PEP 440 specifier)."""


FIVE_X_NAMES = ("rotate_checkpoints", "sort_checkpoints", "compare_trainer_and_checkpoint_args", "GreedyLR")
"""Names of transformers 5.x the kit and its own tests import (absent from transformers 4.x)."""


class KitVersionError(ImportError):
    """The installed transformers is outside :data:`KIT_TRANSFORMERS`: the simulator cannot mirror its Trainer."""


def installed_transformers() -> str | None:
    """The installed transformers version, ``None`` when it is not installed."""
    try:
        return metadata.version("transformers")
    except metadata.PackageNotFoundError:
        return None


def kit_unsupported_reason(version: str | None = None) -> str | None:
    """Why the simulator cannot run under ``version`` (default: the installed one); ``None`` when it can."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    version = version if version is not None else installed_transformers()
    if version is None or Version(version) in SpecifierSet(KIT_TRANSFORMERS):
        return None
    return (
        f"the trainer-callbacks test kit (simulator, conformance checks) needs transformers{KIT_TRANSFORMERS}, "
        f"but transformers {version} is installed: it mirrors the Trainer of transformers 5.x. The callbacks "
        f"themselves support transformers 4.57; test them on it with a real Trainer "
        f"(trainer_callbacks.testing.build_tiny_trainer), or install transformers{KIT_TRANSFORMERS}"
    )


def require_kit_transformers() -> None:
    """Raise :class:`KitVersionError` when the installed transformers is outside :data:`KIT_TRANSFORMERS`."""
    reason = kit_unsupported_reason()
    if reason is not None:
        raise KitVersionError(reason)


def kit_skip_reason(error_text: str) -> str | None:
    """The reason to skip a test whose error is ``error_text``, when it failed only for the kit's range.

    That is: the installed transformers is outside :data:`KIT_TRANSFORMERS` and the error is a
    :class:`KitVersionError` or an import of one of :data:`FIVE_X_NAMES`. ``None`` otherwise (a real failure).
    """
    reason = kit_unsupported_reason()
    if reason is None:
        return None
    if "KitVersionError" in error_text or any(
        f"cannot import name '{name}' from 'transformers" in error_text for name in FIVE_X_NAMES
    ):
        return reason
    return None
