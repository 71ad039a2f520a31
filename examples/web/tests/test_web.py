"""The example web app, driven through FastAPI's test client on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import sys
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

import crmkit
from crmkit.sales import Opportunity, Pipeline, PipelineStage

_SRC = Path(__file__).resolve().parents[1] / "src"  # a checkout where the example is not installed
if str(_SRC) not in sys.path:
    sys.path.append(str(_SRC))

from crmkit_web import create_app  # noqa: E402

UTC = dt.timezone.utc


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def tenant() -> str:
    return "web-" + uuid.uuid4().hex[:10]


@pytest.fixture
def client(url: str, tenant: str) -> Iterator[TestClient]:
    with TestClient(create_app(url, tenant)) as client:  # the lifespan connects once
        yield client


def test_type_ahead_pages_and_validation(client: TestClient) -> None:
    for name in ("Ana Popescu", "Popescu SRL", "Pop Art", "Radu", "popcorn ltd"):
        assert client.post("/customers", json={"name": name, "kind": "person"}).status_code == 201
    found = client.get("/customers", params={"q": "pop"}).json()
    assert [c["name"] for c in found["items"]] == ["Pop Art", "Popescu SRL", "popcorn ltd"]
    assert [c["name"] for c in client.get("/customers", params={"q": "Popescu"}).json()["items"]] == ["Popescu SRL"]
    assert [c["name"] for c in client.get("/customers", params={"q": "POPC"}).json()["items"]] == ["popcorn ltd"]
    first = client.get("/customers", params={"limit": 2}).json()
    second = client.get("/customers", params={"limit": 2, "after": first["next"]}).json()
    assert [c["name"] for c in first["items"] + second["items"]] == ["Ana Popescu", "Pop Art", "Popescu SRL", "Radu"]
    assert client.post("/customers", json={"name": "Ștefan Pop", "kind": "person"}).status_code == 201
    assert [c["name"] for c in client.get("/customers", params={"q": "stef"}).json()["items"]] == ["Ștefan Pop"]
    bad = client.post("/customers", json={"name": "  ", "kind": "person"})
    assert bad.status_code == 422 and bad.json()["field"] == "name"
    bad = client.post("/customers", json={"name": "X", "email": "not-an-address"})
    assert bad.status_code == 422 and "e-mail" in bad.json()["message"]
    assert client.get(f"/customers/{uuid.uuid4()}").status_code == 404


def test_customer_360_and_pipeline_board(client: TestClient, url: str, tenant: str) -> None:
    ada = client.post("/customers", json={"name": "Ada", "email": "ada@example.org", "tags": ["vip"]}).json()
    with crmkit.connect(url, tenant=tenant) as crm:
        ada_id = uuid.UUID(ada["id"])
        for day, amount in ((1, "10.00"), (5, "32.50")):
            crm.transactions.add(
                crmkit.Transaction(
                    customer_id=ada_id,
                    occurred_at=dt.datetime(2026, 3, day, tzinfo=UTC),
                    amount=Decimal(amount),
                    currency="EUR",
                )
            )
        crm.interactions.add(
            crmkit.Interaction(
                customer_id=ada_id,
                channel="email",
                direction="inbound",
                occurred_at=dt.datetime(2026, 3, 3, tzinfo=UTC),
            )
        )
        crm.pipelines.add(
            Pipeline(
                key="new",
                name="New business",
                stages=(
                    PipelineStage("qualify", probability=Decimal("0.10")),
                    PipelineStage("proposal", probability=Decimal("0.50")),
                    PipelineStage("won", probability=Decimal("1"), forecast="closed", closed=True, won=True),
                ),
            )
        )
        deal = crm.opportunities.add(
            Opportunity(
                name="Ada, 5 seats",
                pipeline="new",
                stage="qualify",
                customer_id=ada_id,
                amount=Decimal("500.00"),
                currency="EUR",
            )
        )
        crm.opportunities.add(
            Opportunity(name="Other", pipeline="new", stage="qualify", amount=Decimal("20.00"), currency="EUR")
        )
    view = client.get(f"/customers/{ada['id']}").json()
    assert view["emails"] == ["ada@example.org"] and view["tags"] == ["vip"]
    assert view["purchases"] == [{"currency": "EUR", "count": 2, "total": "42.50"}]
    assert [d["name"] for d in view["deals"]] == ["Ada, 5 seats"]
    kinds = [e["kind"] for e in view["timeline"]]
    assert kinds[:3] == ["transaction", "interaction", "transaction"]  # newest first

    board = client.get("/pipelines/new").json()
    assert [c["stage"] for c in board["columns"]] == ["qualify", "proposal"]  # closed stages are not columns
    assert board["columns"][0]["totals"] == {"EUR": "520.00"}
    moved = client.post(f"/deals/{deal.id}/move", json={"stage": "proposal"}, headers={"x-user": "user:7"})
    assert moved.status_code == 200 and moved.json()["history"][-1] == ["qualify", "proposal", "user:7"]
    board = client.get("/pipelines/new").json()
    assert [d["name"] for d in board["columns"][1]["deals"]] == ["Ada, 5 seats"]
    back = client.post(f"/deals/{deal.id}/move", json={"stage": "qualify"})  # going back needs a reason
    assert back.status_code == 422
    assert client.get("/pipelines/nope").status_code == 404
    assert "<input" in client.get("/").text


def test_one_connection_per_process_and_a_failed_request_writes_nothing(
    url: str, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[object] = []
    real = crmkit.connect

    def counting(*args: object, **kwargs: object) -> object:
        opened.append(threading.get_ident())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(crmkit, "connect", counting)
    app = create_app(url, tenant)
    with TestClient(app) as client:
        for n in range(5):
            client.post("/customers", json={"name": f"C{n}"})
        # The same external id twice: the second add fails, its transaction is rolled back.
        assert client.post("/customers", json={"name": "A", "external_id": "x-1"}).status_code == 201
        assert client.post("/customers", json={"name": "B", "external_id": "x-1"}).status_code == 409
        assert len(client.get("/customers").json()["items"]) == 6
    assert len(opened) == 1
