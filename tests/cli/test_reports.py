"""``crmkit report value|pipeline``: an HTML page and its PNG figures, from numbers computed in the store."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import pytest

import crmkit
from crmkit.cli import main

pytest.importorskip("matplotlib")
pytest.importorskip("scipy")

PNG = b"\x89PNG\r\n\x1a\n"


def test_value_report_on_the_cdnow_sample(tmp_path: Path) -> None:
    from crmkit.value.datasets import cdnow_customers, cdnow_transactions

    url = f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    with crmkit.connect(url, tenant="shop") as crm:
        crm.customers.add_many(cdnow_customers())
        crm.transactions.add_many(cdnow_transactions())
    out = io.StringIO()
    assert main(["report", "value", "--url", url, "--tenant", "shop", "--out", str(tmp_path / "value")], out=out) == 0
    page = (tmp_path / "value" / "index.html").read_text(encoding="utf-8")
    assert "as of 1998-06-30" in page  # the last purchase's day, found in the store
    for figure in ("segments.png", "clv.png", "alive.png", "cohorts.png"):
        assert f'src="{figure}"' in page
        assert (tmp_path / "value" / figure).read_bytes().startswith(PNG)
    assert "<td>champions</td>" in page and "1997-01-01" in page  # a segment, the first cohort
    # The same store as of an earlier day: fewer customers in the cohorts.
    assert (
        main(
            [
                "report",
                "value",
                "--url",
                url,
                "--tenant",
                "shop",
                "--out",
                str(tmp_path / "early"),
                "--as-of",
                "1997-02-28",
            ],
            out=io.StringIO(),
        )
        == 0
    )
    early = (tmp_path / "early" / "index.html").read_text(encoding="utf-8")
    assert "as of 1997-02-28" in early and "1997-03-01" not in early
    assert "The CLV models cannot be fitted" in early and 'src="cohorts.png"' in early


def test_pipeline_report(tmp_path: Path) -> None:
    from crmkit.sales import Opportunity, Pipeline, PipelineStage

    url = f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    with crmkit.connect(url, tenant="sales") as crm:
        crm.pipelines.add(
            Pipeline(
                key="new",
                name="New business",
                stages=(
                    PipelineStage("qualify", probability=Decimal("0.10"), forecast="pipeline"),
                    PipelineStage("proposal", probability=Decimal("0.50"), forecast="best_case"),
                    PipelineStage("won", probability=Decimal("1"), forecast="closed", closed=True, won=True),
                ),
            )
        )
        for n, (stage, amount) in enumerate(
            [("qualify", "100.00"), ("qualify", "50.00"), ("proposal", "1000.00"), ("won", "7.00")]
        ):
            crm.opportunities.add(
                Opportunity(
                    name=f"Deal {n}",
                    pipeline="new",
                    stage=stage,
                    amount=Decimal(amount),
                    currency="EUR",
                    close_date=dt.date(2027, 1, 15),
                )
            )
    out = io.StringIO()
    assert main(["report", "pipeline", "--url", url, "--tenant", "sales", "--out", str(tmp_path / "p")], out=out) == 0
    page = (tmp_path / "p" / "index.html").read_text(encoding="utf-8")
    assert "<td>new</td><td>qualify</td><td>EUR</td><td>2</td><td>150.00</td>" in page
    assert "<td>proposal</td><td>EUR</td><td>1</td><td>1,000.00</td>" in page
    assert "<td>won</td>" not in page  # closed stages are not on the board
    assert "Forecast in EUR" in page
    assert (tmp_path / "p" / "stages.png").read_bytes().startswith(PNG)


def test_a_report_on_an_empty_tenant_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    assert main(["report", "value", "--url", url, "--tenant", "none", "--out", str(tmp_path / "r")]) == 1
    assert capsys.readouterr().err.strip() == (
        "crmkit report: error: report: the tenant has no transactions to report on (got 'none')"
    )
