"""Install plugin projects into a throwaway venv, the way a user would, for tests.

The projects are built as wheels (``pip wheel --no-build-isolation``) and installed with
``--no-deps`` into a new venv that sees the current environment (core, transformers, pytest...)
through a ``.pth`` running ``site.addsitedir``, so editable installs' own ``.pth`` files count
too. Entry points are then discovered from real installed metadata, in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path


def build_wheels(projects: Iterable[Path], wheel_dir: Path, *, timeout: float = 300) -> list[Path]:
    """Build one wheel per project folder into ``wheel_dir``; returns every wheel there."""
    for project in projects:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(wheel_dir),
                str(project),
            ],
            check=True,
            timeout=timeout,
        )
    return sorted(wheel_dir.glob("*.whl"))


def plugin_venv(venv: Path, projects: Iterable[Path], *, timeout: float = 300) -> Path:
    """A venv at ``venv`` with ``projects`` installed as wheels over the current environment.

    Run things in it with ``venv / "bin" / "python"``.
    """
    wheels = build_wheels(projects, venv.parent / f"{venv.name}-wheels", timeout=timeout)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=timeout)
    site = next((venv / "lib").glob("python3*/site-packages"))
    purelib = sysconfig.get_paths()["purelib"]
    (site / "_project_env.pth").write_text(f"import site; site.addsitedir({purelib!r})\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            *map(str, wheels),
        ],
        check=True,
        timeout=timeout,
    )
    return venv
