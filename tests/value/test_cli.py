"""The ``crmkit`` console script and its ``demo`` subcommand."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from crmkit.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_demo(*args: str) -> str:
    out = io.StringIO()
    assert main(["demo", *args], out=out) == 0
    return out.getvalue()


def test_demo_report_and_idempotent_reload(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first = run_demo()
    store_line = next(line for line in first.splitlines() if line.startswith("store: "))
    assert "tenant 'demo'" in store_line
    assert "loaded 2,357 customers and 6,919 purchases" in first
    assert "summary computed in the store as of 1998-06-30: 2,357 customers, 1,139 with repeat purchases" in first
    assert "BG/NBD fitted on weeks 1-39" in first
    assert "r=0.243  alpha=4.414  a=0.793  b=2.426  LL=-9582.4" in first  # the published estimates
    assert "top 10 customers by 12-month CLV (assumed: 30% margin" in first
    top = first.split("top 10 customers by 12-month CLV")[1].splitlines()[2:12]
    assert len(top) == 10 and all(line.strip().startswith("CDNOW ") for line in top)
    assert "RFM segments as of 1998-06-30" in first and "champions" in first
    assert "high-value customers at risk:" in first and "P(alive) below 0.3" in first
    assert "cohort payback (assumed: acquisition cost $25.00 per customer, gross margin 30%)" in first
    assert "1997-01:  781 customers, cohort paid back in month" in first
    assert "whale curve: the top 20 % of customers earn" in first
    if "sqlite" in store_line:  # crmkit-sqlalchemy installed: a fresh file, removed afterwards
        assert "removed afterwards" in store_line
        assert not any(tmp_path.glob("crmkit-demo-*"))
        url = f"sqlite:///{(tmp_path / 'kept.db').as_posix()}"
        kept = run_demo("--url", url)
        again = run_demo("--url", url)
        assert "already stored: 2,357 customers and 6,919 purchases (skipped)" in again
        assert "loaded" not in again

        def report(text: str) -> str:
            return text.split("BG/NBD fitted")[1].split("done in")[0]

        assert report(again) == report(kept) == report(first)
    else:
        assert store_line.startswith("store: memory://")


def test_demo_on_a_given_url_and_tenant() -> None:
    out = run_demo("--url", "memory://", "--tenant", "shop-42")
    assert out.splitlines()[1] == "store: memory:// (given with --url), tenant 'shop-42'"


def test_errors_and_usage() -> None:
    assert main([], out=io.StringIO()) == 2
    with pytest.raises(SystemExit):
        main(["no-such-command"])
    assert main(["demo", "--url", "nosuch://here"], out=io.StringIO()) == 1


def test_the_demo_without_numpy_skips_the_models_only() -> None:
    code = (
        "import sys; sys.modules['numpy'] = None; sys.modules['scipy'] = None\n"
        "from crmkit.cli import main\n"
        "sys.exit(main(['demo', '--url', 'memory://']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "note: skipping BG/NBD, Gamma-Gamma and CLV (they need numpy and scipy" in done.stdout
    assert "BG/NBD fitted" not in done.stdout
    assert "RFM segment cant_lose or at_risk" in done.stdout
    assert "cohort payback" in done.stdout


def test_the_console_script_runs_the_demo() -> None:
    script = Path(sys.executable).with_name("crmkit.exe" if os.name == "nt" else "crmkit")
    assert script.exists(), "the crmkit console script is not installed in this environment"
    done = subprocess.run([str(script), "demo", "--url", "memory://"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "store: memory://" in done.stdout and "cohort payback" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("done in ")
