"""The README's quick-start example runs and prints what it promises."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def test_quickstart_tours_the_core_api(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "customers: 3 (Ada may be e-mailed: True)" in out
    assert "Acme employs: ['Ada Lovelace']" in out
    assert "purchases of 100 or more: 2400 EUR, 150.00 EUR, 120.00 EUR" in out
    assert "newsletter readers: ['Ada Lovelace']" in out
    assert "interaction  Pricing question" in out and "transaction  120.00" in out
    assert "Ada Lovelace  lead -> loyal (bought on 5 different days)" in out
    assert "Grace Hopper  lead -> prospect" in out
    assert "Ada: 4 repeat purchases" in out
    assert "average order value 482.57 EUR" in out
