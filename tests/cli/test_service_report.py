"""``crmkit report service``: cases, SLA clocks and times to completion, counted in the store, on every server store."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from pathlib import Path

import pytest
from tests.support.backends import backend_url

import crmkit
from crmkit import F
from crmkit.cli import main
from crmkit.service import Case, SLAPolicy

pytest.importorskip("matplotlib")
pytest.importorskip("scipy")

PNG = b"\x89PNG\r\n\x1a\n"
T0 = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(params=("sqlite", "postgresql", "mongodb"))  # memory:// is gone once the command's connection ends
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


def _desk(url: str, tenant: str) -> None:
    """Three cases under a round-the-clock policy: one on time, one answered late, one not answered."""
    with crmkit.connect(url, tenant=tenant) as crm:
        ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
        crm.sla_policies.add(
            SLAPolicy(
                name="standard",
                applies_to=F("priority") != "none",
                targets={"first_response": dt.timedelta(hours=1), "resolution": dt.timedelta(hours=8)},
            )
        )
        on_time, late, _ = (
            crm.cases.add(Case(customer_id=ada.id, subject=s, priority=p, queue=q, opened_at=T0))
            for s, p, q in (
                ("Invoice", "urgent", "billing"),
                ("Refund", "normal", "billing"),
                ("Login", "normal", None),
            )
        )
        crm.service.respond(on_time.id, at=T0 + dt.timedelta(minutes=30), by="agent:1")
        crm.service.resolve(on_time.id, at=T0 + dt.timedelta(hours=2), resolution="fixed")
        crm.service.respond(late.id, at=T0 + dt.timedelta(hours=3), by="agent:2")


def test_service_report(url: str, tmp_path: Path) -> None:
    tenant = "desk-" + uuid.uuid4().hex[:10]
    _desk(url, tenant)
    folder = tmp_path / "service"
    out = io.StringIO()
    argv = ["report", "service", "--url", url, "--tenant", tenant, "--out", str(folder), "--as-of", "2026-12-03"]
    assert main(argv, out=out) == 0
    assert out.getvalue().startswith("wrote ")
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert "as of 2026-12-03 23:59 UTC" in page and "<p>3 cases.</p>" in page
    assert "<td>open</td><td>2</td>" in page and "<td>resolved</td><td>1</td>" in page
    assert "<td>urgent</td><td>1</td>" in page and "<td>normal</td><td>2</td>" in page
    assert "<td>billing</td><td>2</td>" in page and "<td>none</td><td>1</td>" in page
    assert "<td>billing</td><td>normal</td><td>1</td>" in page  # open cases by queue and priority
    # Both clocks of the three cases: one within target; the late answer and the silent case breached.
    for clock, completed in (("first_response", 2), ("resolution", 1)):
        assert f"<td>standard</td><td>{clock}</td><td>3</td><td>1</td><td>2</td><td>{completed}</td>" in page, clock
    # Completed clocks: first response after 0.5 and 3 hours, resolution after 2.
    assert "<td>standard</td><td>first_response</td><td>2</td><td>1.8</td><td>0.5</td><td>3.0</td>" in page
    assert "<td>standard</td><td>resolution</td><td>1</td><td>2.0</td><td>2.0</td><td>2.0</td>" in page
    for figure in ("status.png", "priority.png", "queue.png", "sla.png", "times.png"):
        assert f'src="{figure}"' in page
        assert (folder / figure).read_bytes().startswith(PNG)


def test_a_service_report_without_cases_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    assert (
        main(["report", "service", "--url", url, "--tenant", "none", "--out", str(tmp_path / "r")], out=io.StringIO())
        == 0
    )
    assert "<p>No cases.</p>" in (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
