"""``trainer_callbacks.core.testing``: the kit's old import name, deprecated, kept until core 0.4.

Each case runs in a fresh interpreter: the alias's behaviour on first import (the warning, the
finder it installs) cannot be seen again once ``sys.modules`` holds the modules.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path


def run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "user_test.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning:user_test", str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=tmp_path,
    )


def test_the_old_name_warns_at_the_importing_line_and_is_the_new_modules(tmp_path: Path) -> None:
    result = run(
        """
        import json, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from trainer_callbacks.core.testing.versions import KitVersionError
            import trainer_callbacks.core.testing.plugin_venv as old_venv
            import trainer_callbacks.core.testing as old
        import trainer_callbacks.testing as new
        import trainer_callbacks.testing.versions as new_versions
        import trainer_callbacks.testing.plugin_venv as new_venv
        print(json.dumps({
            "warnings": [(w.category.__name__, str(w.message), w.filename, w.lineno) for w in caught],
            "same_class": KitVersionError is new_versions.KitVersionError,
            "same_module": old_venv is new_venv,
            "names": old.__all__ == new.__all__ and old.FakeClock is new.FakeClock,
            "spec": new_versions.__spec__.name,
        }))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    assert len(found["warnings"]) == 1, found["warnings"]  # once, however many names are imported
    category, message, filename, lineno = found["warnings"][0]
    assert category == "DeprecationWarning"
    assert "import trainer_callbacks.testing" in message and "pip install trainer-callbacks-testing" in message
    assert (Path(filename).name, lineno) == ("user_test.py", 5)  # the user's import, not importlib's frames
    assert found["same_class"] and found["same_module"] and found["names"]
    assert found["spec"] == "trainer_callbacks.testing.versions"  # the real module keeps its own spec


def test_a_submodule_the_kit_does_not_have_is_not_found(tmp_path: Path) -> None:
    result = run("import trainer_callbacks.core.testing.no_such_module\n", tmp_path)
    assert result.returncode != 0
    assert "ModuleNotFoundError: No module named 'trainer_callbacks.core.testing.no_such_module'" in result.stderr


def test_without_the_kit_installed_the_error_says_what_to_install(tmp_path: Path) -> None:
    result = run(
        """
        import importlib.abc, sys

        class NoKit(importlib.abc.MetaPathFinder):  # as if trainer-callbacks-testing were not installed
            def find_spec(self, name, path=None, target=None):
                if name == "trainer_callbacks.testing" or name.startswith("trainer_callbacks.testing."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NoKit())
        import trainer_callbacks.core  # core itself needs no kit
        import trainer_callbacks.core.testing
        """,
        tmp_path,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: trainer_callbacks.core.testing moved to trainer_callbacks.testing")
    assert "pip install trainer-callbacks-testing" in last
