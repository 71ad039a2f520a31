#!/usr/bin/env python3
"""Set up and run crmkit on a machine that has only Python 3.10+.

    python3 dev.py demo     # create .venv if needed, then run the demo on the embedded store
    python3 dev.py test     # create .venv if needed, then ruff, mypy and the whole test suite (on every CPU)
    python3 dev.py docs     # create .venv if needed, then build the docs site (warnings are errors)

The virtualenv is rebuilt only when pyproject or requirement files change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".crmkit-setup"
#: Examples left out of the virtualenv: a rule plugin installed there would be loaded by every
#: connection (the demo's, the tests', an application's) and change their results. Its tests
#: install it for themselves (tests/support/examples.py).
NOT_INSTALLED = ("examples/vip-rules",)


def _inputs() -> list[Path]:
    files = [ROOT / "pyproject.toml", ROOT / "requirements" / "dev.txt", ROOT / "requirements" / "docs.txt"]
    files.append(Path(__file__))
    files += sorted(ROOT.glob("plugins/*/pyproject.toml"))
    files += sorted(ROOT.glob("examples/*/pyproject.toml"))
    return files


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in _inputs():
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def setup() -> None:
    """Create the virtualenv and install crmkit, its plugins and the test tools (editable)."""
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    if sys.version_info < (3, 10):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit("crmkit needs Python 3.10 or newer")
    if not PY.exists():
        print(f"creating {VENV.name}/", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [PY, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _run(*pip, "--upgrade", "pip")
    editables: list[str] = ["-e", ".[testing,models,cli,parquet]"]
    for project in sorted(ROOT.glob("plugins/*/pyproject.toml")) + sorted(ROOT.glob("examples/*/pyproject.toml")):
        folder = project.parent.relative_to(ROOT).as_posix()
        if folder not in NOT_INSTALLED:
            editables += ["-e", folder]
    _run(*pip, "-r", "requirements/dev.txt", "-r", "requirements/docs.txt", *editables)
    for folder in NOT_INSTALLED:  # an environment set up before they were left out still has them
        name = _project_name(ROOT / folder / "pyproject.toml")
        if subprocess.run([str(PY), "-m", "pip", "show", "-q", name], capture_output=True, cwd=ROOT).returncode == 0:
            _run(PY, "-m", "pip", "uninstall", "-y", "-q", name)
    STAMP.write_text(_fingerprint())


def _project_name(pyproject: Path) -> str:
    for line in pyproject.read_text(encoding="utf-8").splitlines():
        if line.startswith("name = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise SystemExit(f"{pyproject}: no project name")


def demo(args: list[str]) -> int:
    setup()
    crmkit = BIN / "crmkit"
    if (ROOT / "src" / "crmkit" / "cli.py").exists():
        return subprocess.call([str(crmkit), "demo", *args], cwd=ROOT)
    return subprocess.call([str(PY), "examples/quickstart.py", *args], cwd=ROOT)


def test(args: list[str]) -> int:
    setup()
    for cmd in (
        [PY, "-m", "ruff", "check", "."],
        [PY, "-m", "mypy"],
    ):
        print("+", " ".join(str(c) for c in cmd), flush=True)
        if subprocess.call([str(c) for c in cmd], cwd=ROOT) != 0:
            return 1
    cmd = [str(PY), "-m", "pytest", *_parallel(args), *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


#: Most pytest workers ``dev.py test`` starts: each worker starts its own PostgreSQL and MongoDB.
MAX_WORKERS = 8


def _parallel(args: list[str]) -> list[str]:
    """pytest-xdist options spreading the suite over the CPUs this process may use.

    A test module (a test class, for classes) stays on one worker (``--dist loadscope``), so
    module-scoped fixtures are made once and its tests run in their written order. Nothing is
    added when the caller chose for itself (``-n``, ``--numprocesses``, ``--dist``, ``-p no:xdist``)
    or when there is one CPU.
    """
    if any(a.startswith(("-n", "--numprocesses", "--dist")) or a.endswith("no:xdist") for a in args):
        return []
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    workers = min(cpus, MAX_WORKERS)
    return ["-n", str(workers), "--dist", "loadscope"] if workers > 1 else []


def docs(args: list[str]) -> int:
    """Build the docs site into site/ with MkDocs in strict mode: a warning fails the build."""
    setup()
    cmd = [str(PY), "-m", "mkdocs", "build", "--strict", *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("setup", "demo", "test", "docs"):
        print(__doc__)
        return 2
    command, args = sys.argv[1], sys.argv[2:]
    if command == "setup":
        setup()
        return 0
    return {"demo": demo, "test": test, "docs": docs}[command](args)


if __name__ == "__main__":
    sys.exit(main())
