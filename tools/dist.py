"""``make dist``: build, check and try every distribution of the workspace as a user gets it.

1. ``python -m build --no-isolation`` per distribution (an sdist, then the wheel built from it)
   into ``--out``;
2. ``twine check --strict`` of every file built;
3. the metadata: each file's version is its pyproject ``version``; every requirement on a
   workspace distribution admits the version built, and every extra it asks for exists;
4. each plugin's wheel alone with core's wheel in a fresh venv over the current environment
   (torch, transformers..., with this checkout's own trainer-callbacks installs hidden):
   ``trainer-callbacks list --strict`` shows exactly that plugin, loaded from the wheel, and no
   pytest plugin of ours is registered; the kit's wheel (``trainer-callbacks-testing``) with core's:
   no plugin listed, its ``pytest11`` entry point and ``trainer_callbacks.testing`` import from the
   wheel, and the deprecated ``trainer_callbacks.core.testing`` gives the same modules with a
   ``DeprecationWarning``; then the suite with every wheel: exactly the four callbacks and the app.
   Wherever the app's wheel is installed, its ``demo`` and ``plot`` commands answer ``--help``.

``python tools/dist.py --out dist [--only earlystop|testing ...] [--no-venv]``; exits 1 on any problem.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from trainer_callbacks.testing.plugin_venv import wheel_venv

ROOT = Path(__file__).resolve().parents[1]
CORE = "callbacks-core"
KIT = "callbacks-testing"  # the test kit: a distribution with a pytest plugin, not a trainer-callbacks plugin
SUITE = "trainer-callbacks"
TIMEOUT = 600


def projects() -> dict[str, Path]:
    """Every distribution folder by name: ``callbacks-*`` (core and the plugins) and the suite."""
    found = {p.name: p for p in sorted((ROOT / "packages").glob("callbacks-*")) if (p / "pyproject.toml").is_file()}
    found[SUITE] = ROOT / "packages" / SUITE
    return found


def pyproject(project: Path) -> dict:
    return tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def step(label: str, started: float) -> None:
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)


def build(project: Path, out: Path) -> tuple[Path, Path]:
    """The sdist and the wheel (built from the sdist) of ``project``."""
    meta = pyproject(project)
    stem = f"{canonicalize_name(meta['name']).replace('-', '_')}-{meta['version']}"
    for old in [out / f"{stem}.tar.gz", *out.glob(f"{stem}-*.whl")]:
        old.unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "build", "--quiet", "--no-isolation", "--outdir", str(out), str(project)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    if result.returncode != 0:
        raise SystemExit(f"dist: {project.name}: python -m build failed:\n{result.stdout}{result.stderr}")
    sdist = out / f"{stem}.tar.gz"
    wheels = list(out.glob(f"{stem}-*.whl"))
    if not sdist.is_file() or len(wheels) != 1:
        raise SystemExit(f"dist: {project.name}: expected {sdist.name} and one {stem}-*.whl in {out}")
    return sdist, wheels[0]


def wheel_metadata(wheel: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(name).decode("utf-8"))
    return {key: message.get_all(key) or [] for key in ("Name", "Version", "Requires-Dist", "Provides-Extra")}


def metadata_problems(wheels: dict[str, Path], all_projects: dict[str, Path]) -> list[str]:
    """Versions from pyproject; requirements between workspace distributions that the built versions meet."""
    problems = []
    built = {}
    for folder, wheel in wheels.items():
        meta = wheel_metadata(wheel)
        expected = pyproject(all_projects[folder])["version"]
        if meta["Version"] != [expected]:
            problems.append(f"{wheel.name}: version {meta['Version']} is not the pyproject's {expected}")
        built[canonicalize_name(meta["Name"][0])] = (Version(meta["Version"][0]), set(meta["Provides-Extra"]))
    for wheel in wheels.values():
        for line in wheel_metadata(wheel)["Requires-Dist"]:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            if name not in built:
                continue
            version, extras = built[name]
            if version not in requirement.specifier:
                problems.append(f"{wheel.name}: requires {requirement}, but {name} {version} is built")
            for extra in sorted(requirement.extras - extras):
                problems.append(f"{wheel.name}: requires {name}[{extra}], an extra {name} {version} does not have")
    return problems


def listed_plugins(python: Path) -> tuple[int, dict[str, list[str]], str]:
    """Run ``trainer-callbacks list --strict`` with ``python``: (status, {plugin: its row's cells}, output)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": tempfile.gettempdir()}
    result = subprocess.run(
        [str(python), "-m", "trainer_callbacks.core.cli", "list", "--strict"],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
        env=env,
    )
    lines = result.stdout.splitlines()
    rows = {}
    if len(lines) >= 2 and lines[0].startswith("plugin"):
        rows = {line.split()[0]: line.split() for line in lines[2:] if line.strip() and not line.startswith(" ")}
        rows = {name: cells for name, cells in rows.items() if not name.endswith(":")}
    return result.returncode, rows, result.stdout + result.stderr


def list_problems(
    label: str, status: int, rows: dict[str, list[str]], output: str, expected: dict[str, str]
) -> list[str]:
    """``expected``: plugin name -> distribution; each must be loaded at the built version, nothing else listed."""
    problems = []
    if status != 0:
        problems.append(f"{label}: `trainer-callbacks list --strict` exited {status}:\n{output}")
    if set(rows) != set(expected):
        problems.append(f"{label}: `trainer-callbacks list` shows {sorted(rows)}, expected exactly {sorted(expected)}")
    for name, distribution in expected.items():
        cells = rows.get(name, [])
        if cells[1:2] != [distribution] or "loaded" not in cells:
            problems.append(f"{label}: plugin {name} is not loaded from {distribution}: {' '.join(cells)}")
    return problems


def origin_problem(python: Path, venv: Path, label: str) -> str | None:
    """Core must be imported from the venv (the wheel), not from this checkout."""
    code = "import trainer_callbacks.core as c; print(c.__file__)"
    where = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False, timeout=TIMEOUT)
    if not where.stdout.strip().startswith(str(venv)):
        return f"{label}: trainer_callbacks.core is imported from {where.stdout.strip() or where.stderr}, not the wheel"
    return None


# Run in a venv: where the pytest plugins of trainer-callbacks distributions come from, and (with the kit) that
# the kit and its deprecated old name import from the wheel as the same modules.
KIT_PROBE = """
import importlib.metadata as m, json, sys, warnings
found = {e.value: e.dist.name for e in m.entry_points(group="pytest11") if e.dist.name.startswith("trainer-callbacks")}
result = {"pytest11": found}
if "--kit" in sys.argv:
    import trainer_callbacks.testing as kit, trainer_callbacks.testing.pytest_plugin
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from trainer_callbacks.core.testing.conformance import check_callback
    result["kit_file"] = kit.__file__
    result["alias_same"] = check_callback is kit.check_callback
    result["alias_warns"] = any(w.category is DeprecationWarning for w in caught)
print(json.dumps(result))
"""


def pytest_plugin_problems(python: Path, venv: Path, label: str, with_kit: bool) -> list[str]:
    probe = subprocess.run(
        [str(python), "-c", KIT_PROBE, *(["--kit"] if with_kit else [])],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    if probe.returncode != 0:
        return [f"{label}: the pytest-plugin probe failed:\n{probe.stdout}{probe.stderr}"]
    found = json.loads(probe.stdout.splitlines()[-1])
    expected = {"trainer_callbacks.testing.pytest_plugin": "trainer-callbacks-testing"} if with_kit else {}
    problems = []
    if found["pytest11"] != expected:
        problems.append(f"{label}: pytest plugins registered {found['pytest11']}, expected {expected}")
    if with_kit:
        if not found["kit_file"].startswith(str(venv)):
            problems.append(f"{label}: trainer_callbacks.testing is imported from {found['kit_file']}, not the wheel")
        if not (found["alias_same"] and found["alias_warns"]):
            problems.append(
                f"{label}: trainer_callbacks.core.testing is not the kit with a DeprecationWarning: {found}"
            )
    return problems


def try_in_venv(label: str, wheels: list[Path], expected: dict[str, str], work: Path, with_kit: bool) -> list[str]:
    venv = wheel_venv(work / label, wheels, hide=("trainer-callbacks",), timeout=TIMEOUT)
    python = venv / "bin" / "python"
    status, rows, output = listed_plugins(python)
    shown = ", ".join(f"{name} ({' '.join(cells[1:4])})" for name, cells in sorted(rows.items()))
    print(f"  {label}: `trainer-callbacks list` shows {shown or 'nothing'}", flush=True)
    problems = list_problems(label, status, rows, output, expected)
    origin = origin_problem(python, venv, label)
    problems += pytest_plugin_problems(python, venv, label, with_kit)
    if "app" in expected:  # the app's commands, added through register_commands: `demo` and `plot` are there
        for command in ("demo", "plot"):
            helped = subprocess.run(
                [str(python), "-m", "trainer_callbacks.core.cli", command, "--help"],
                capture_output=True,
                text=True,
                check=False,
                timeout=TIMEOUT,
            )
            if helped.returncode != 0 or f"usage: trainer-callbacks {command}" not in helped.stdout:
                problems.append(
                    f"{label}: `trainer-callbacks {command} --help` failed:\n{helped.stdout}{helped.stderr}"
                )
    return problems + ([origin] if origin else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dist", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the sdists and wheels go")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="only this plugin, or the kit (testing), with core; repeatable",
    )
    parser.add_argument("--no-venv", action="store_true", help="build and check only, install nothing")
    args = parser.parse_args(argv)
    everything = projects()
    if args.only:
        unknown = [n for n in args.only if f"callbacks-{n}" not in everything or n == "core"]
        if unknown:
            parser.error(f"--only {unknown}: not a plugin or the kit in packages/ ({', '.join(everything)})")
        chosen = {CORE: everything[CORE], **{f"callbacks-{n}": everything[f"callbacks-{n}"] for n in args.only}}
    else:
        chosen = everything
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    print(f"dist: building {len(chosen)} distributions into {out}", flush=True)
    files: dict[str, tuple[Path, Path]] = {}
    for folder, project in chosen.items():
        started = time.perf_counter()
        files[folder] = build(project, out)
        step(f"{folder}: {files[folder][0].name}, {files[folder][1].name}", started)

    started = time.perf_counter()
    built = [path for pair in files.values() for path in pair]
    twine = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, built)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    problems = [] if twine.returncode == 0 else [f"twine check:\n{twine.stdout}{twine.stderr}"]
    step("twine check --strict", started)
    wheels = {folder: pair[1] for folder, pair in files.items()}
    problems += metadata_problems(wheels, everything)

    if not args.no_venv:
        with tempfile.TemporaryDirectory(prefix="dist-venvs-") as tmp:
            for folder in chosen:
                if folder in {CORE, SUITE}:
                    continue
                started = time.perf_counter()
                pair = [wheels[CORE], wheels[folder]]
                if folder == KIT:
                    problems += try_in_venv(folder, pair, {}, Path(tmp), with_kit=True)
                    step(f"{folder}: its wheel alone with core's, no plugin listed, its pytest plugin", started)
                    continue
                meta = pyproject(everything[folder])
                short = folder.removeprefix("callbacks-")
                problems += try_in_venv(folder, pair, {short: meta["name"]}, Path(tmp), with_kit=False)
                step(f"{folder}: its wheel alone with core's, `trainer-callbacks list`", started)
            if SUITE in chosen:
                started = time.perf_counter()
                expected = {
                    f.removeprefix("callbacks-"): pyproject(p)["name"]
                    for f, p in everything.items()
                    if f not in {CORE, KIT, SUITE}
                }
                problems += try_in_venv(SUITE, list(wheels.values()), expected, Path(tmp), with_kit=KIT in wheels)
                step(f"{SUITE}: every wheel, `trainer-callbacks list`", started)

    for problem in problems:
        print(f"dist: PROBLEM: {problem}", file=sys.stderr)
    verdict = "FAILED" if problems else "ok"
    print(f"dist: {verdict}: {len(built)} files in {out} ({time.perf_counter() - total:.1f} s)", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
