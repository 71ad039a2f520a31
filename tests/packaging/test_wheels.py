"""The distributions build with ``python -m build``, and crmkit works installed from its wheels alone.

The wheels (and sdists) of crmkit, each plugin and each example are built into a temporary
folder; crmkit and crmkit-sqlalchemy are installed from them into a fresh virtualenv that
has no checkout on its path (its dependencies come from the package index); the
conformance suite then runs from the installed package against ``memory://`` and SQLite,
and the ``crmkit`` console script imports a file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = {
    "crmkit": ROOT,
    "crmkit_sqlalchemy": ROOT / "plugins" / "crmkit-sqlalchemy",
    "crmkit_mongo": ROOT / "plugins" / "crmkit-mongo",
    "crmkit_example_subscriptions": ROOT / "examples" / "subscriptions",
    "crmkit_example_vip_rules": ROOT / "examples" / "vip-rules",
    "crmkit_example_web": ROOT / "examples" / "web",
}

pytest.importorskip("build")
pytest.importorskip("hatchling")


def _run(cmd: list[str | Path], *, cwd: Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every distribution's sdist and wheel (the wheel built from the sdist, as ``python -m build`` does)."""
    out = tmp_path_factory.mktemp("dist")
    for project in PROJECTS.values():
        # --no-isolation: the build backend (hatchling) comes from this environment, so no download.
        _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, project], cwd=out)
    return out


def test_every_distribution_builds_a_wheel_and_an_sdist(dist: Path) -> None:
    for name in PROJECTS:
        assert len(list(dist.glob(f"{name}-*-py3-none-any.whl"))) == 1, name
        assert len(list(dist.glob(f"{name}-*.tar.gz"))) == 1, name
    wheel = zipfile.ZipFile(next(dist.glob("crmkit-*.whl")))
    names = set(wheel.namelist())
    assert "crmkit/py.typed" in names and "crmkit/cli.py" in names and "crmkit/testing/conformance/__init__.py" in names
    assert any(n.startswith("crmkit/data/cdnow/") and n.endswith(".csv") for n in names)  # the bundled sample
    assert not any(n.startswith(("tests/", "crmkit_sqlalchemy/")) for n in names)
    entry_points = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "crmkit = crmkit.cli:main" in entry_points
    with tarfile.open(next(dist.glob("crmkit-*.tar.gz"))) as sdist:
        members = sdist.getnames()
    assert any(m.endswith("/src/crmkit/__init__.py") for m in members)
    assert not any("/plugins/" in m for m in members)  # each plugin is its own distribution
    plugin = zipfile.ZipFile(next(dist.glob("crmkit_sqlalchemy-*.whl")))
    names = set(plugin.namelist())  # the Alembic migrations travel with the backend
    assert {"crmkit_sqlalchemy/migrations/env.py", "crmkit_sqlalchemy/migrations/script.py.mako"} <= names
    assert any(n.startswith("crmkit_sqlalchemy/migrations/versions/0001") for n in names)


def test_installed_from_the_wheels_the_conformance_suite_passes(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    crmkit_wheel = next(dist.glob("crmkit-*.whl"))
    sql_wheel = next(dist.glob("crmkit_sqlalchemy-*.whl"))
    # This environment's pip installs into the new one; the wheels are given by path, so a
    # same-named project on the index can never be taken instead of them.
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", f"{crmkit_wheel}[testing,cli]", sql_wheel],
        cwd=tmp_path,
        timeout=600,
    )
    work = tmp_path / "elsewhere"  # not the checkout: nothing of it is importable from here
    work.mkdir()
    where = _run(
        [python, "-c", "import crmkit, crmkit_sqlalchemy; print(crmkit.__file__, crmkit_sqlalchemy.__file__)"], cwd=work
    )
    assert str(ROOT) not in where and where.count(str(venv)) == 2, where
    # Every contract, with a tenth of its examples, on both stores at once: a check that the
    # installed package works, kept short; the full suite runs from the checkout.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["CRMKIT_CONFORMANCE_SCALE"] = "0.1"
    runs = {
        url: subprocess.Popen(
            [
                python,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--pyargs",
                "crmkit.testing.conformance",
                f"--crmkit-url={url}",
            ],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for url in ("memory://", f"sqlite:///{(work / 'crm.db').as_posix()}")
    }
    for url, process in runs.items():
        out, _ = process.communicate(timeout=900)
        assert process.returncode == 0, f"{url}:\n{out[-3000:]}"
        assert " passed" in out and " failed" not in out, out[-2000:]
    data = work / "people.csv"
    data.write_text("external_id,kind,name\nW1,person,Wanda\n", encoding="utf-8")
    script = venv / ("Scripts/crmkit.exe" if os.name == "nt" else "bin/crmkit")
    out = _run(
        [script, "import", data, "--url", f"sqlite:///{(work / 'cli.db').as_posix()}", "--tenant", "t"], cwd=work
    )
    assert out.startswith("1 rows read: 1 added")
