"""Install plugin projects into a throwaway venv, the way a user would, for tests.

The projects are built as wheels (``pip wheel --no-build-isolation``) and installed with
``--no-deps`` into a new venv that sees the current environment (core, transformers, pytest...)
through a ``.pth`` running ``site.addsitedir``, so editable installs' own ``.pth`` files count
too. Entry points are then discovered from real installed metadata, in a fresh interpreter.
:func:`wheel_venv` does the same with wheels already built, and can hide distributions of the
current environment (``hide=("trainer-callbacks",)``: the editable installs of a development
checkout), so that the venv holds exactly the wheels given over the rest (torch, transformers...).
"""

from __future__ import annotations

import os
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
    return wheel_venv(venv, wheels, timeout=timeout)


def _normalized(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


def _is_hidden(distribution: str, hide: tuple[str, ...]) -> bool:
    name = _normalized(distribution)
    return any(name == h or name.startswith(h + "-") for h in hide)


def _visible_site(purelib: Path, folder: Path, hide: tuple[str, ...]) -> Path:
    """``folder`` with a link to every entry of ``purelib`` except the hidden distributions and their files.

    The files of a hidden distribution are the top-level entries its ``RECORD`` names (an editable
    install's ``.pth``, or its packages: a namespace folder it shares with a visible distribution is
    hidden with it).
    """
    skip: set[str] = set()
    for info in purelib.glob("*.dist-info"):
        if not _is_hidden(info.name.split("-", 1)[0], hide):
            continue
        skip.add(info.name)
        record = info / "RECORD"
        if record.is_file():
            for line in record.read_text(encoding="utf-8").splitlines():
                top = line.split(",", 1)[0].split("/", 1)[0]
                if top and top not in {"..", "."}:
                    skip.add(top)
    folder.mkdir(parents=True)
    for entry in purelib.iterdir():
        if entry.name not in skip and entry.name != "__pycache__":
            os.symlink(entry, folder / entry.name)
    return folder


def wheel_venv(venv: Path, wheels: Iterable[Path], *, hide: Iterable[str] = (), timeout: float = 300) -> Path:
    """A venv at ``venv`` with ``wheels`` installed (``--no-deps``) over the current environment.

    ``hide``: distribution names (or name prefixes: ``"trainer-callbacks"`` hides
    ``trainer-callbacks-core`` too) of the current environment the venv must not see.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=timeout)
    site = next((venv / "lib").glob("python3*/site-packages"))
    purelib = sysconfig.get_paths()["purelib"]
    hidden = tuple(_normalized(name) for name in hide)
    if hidden:
        purelib = str(_visible_site(Path(purelib), venv / "visible-site-packages", hidden))
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
