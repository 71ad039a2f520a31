"""A small web app on crmkit: customers with type-ahead search, a customer's 360 view, the pipeline board.

Run it with ``CRMKIT_URL=sqlite:///crm.db CRMKIT_TENANT=shop uvicorn crmkit_web:app``.

How an app holds crmkit:

* **one connection per process**: ``crmkit.connect`` builds the plugin manager and opens
  the store (a connection pool on a server) once, in the app's lifespan, and closes it at
  shutdown; every request shares it;
* **a unit of work per request**: each endpoint runs its reads and writes inside
  ``crm.transaction()`` (all or nothing, events delivered after the commit), attributed
  to the user (``crm.acting_as``). A transaction belongs to the thread that opened it, so
  the endpoint opens it itself: FastAPI runs a plain ``def`` endpoint on one worker
  thread from start to end (a ``yield`` dependency may run on another);
* crmkit's errors map to HTTP: ``ValidationError`` is 422 naming the field,
  ``NotFound`` 404, ``ConflictError`` 409.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

import crmkit
from crmkit import F
from crmkit.crm import CRM

__all__ = ["app", "create_app"]

#: At most this many customers per page of the list.
PAGE = 50


def _plain(value: Any) -> Any:
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):
        return _plain(value.value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return value


def _customer(c: crmkit.Customer) -> dict[str, Any]:
    return {"id": str(c.id), "name": c.name, "kind": c.kind, "stage": str(c.stage), "tags": sorted(c.tags)}


def create_app(url: str | None = None, tenant: str | None = None, **options: Any) -> FastAPI:
    """The app, connected to ``url`` for ``tenant`` (default: ``CRMKIT_URL`` and ``CRMKIT_TENANT``)."""
    url = url or os.environ.get("CRMKIT_URL", "sqlite:///crm.db")
    tenant = tenant or os.environ.get("CRMKIT_TENANT", "default")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with crmkit.connect(url, tenant=tenant, **options) as crm:  # once per process
            app.state.crm = crm
            yield

    app = FastAPI(title="crmkit example", lifespan=lifespan)

    @contextmanager
    def unit_of_work(request: Request) -> Iterator[CRM]:
        """The request's unit of work: one transaction, attributed to the caller."""
        crm: CRM = request.app.state.crm
        with crm.acting_as(request.headers.get("x-user", "web")), crm.transaction():
            yield crm

    @app.exception_handler(crmkit.ValidationError)
    def invalid(request: Request, exc: crmkit.ValidationError) -> JSONResponse:
        return JSONResponse({"field": exc.field, "message": exc.message}, status_code=422)

    @app.exception_handler(crmkit.NotFound)
    def missing(request: Request, exc: crmkit.NotFound) -> JSONResponse:
        return JSONResponse({"message": str(exc)}, status_code=404)

    @app.exception_handler(crmkit.ConflictError)
    def conflict(request: Request, exc: crmkit.ConflictError) -> JSONResponse:
        return JSONResponse({"message": str(exc)}, status_code=409)

    @app.get("/customers")
    def customers(request: Request, q: str = "", after: str | None = None, limit: int = 20) -> dict[str, Any]:
        """Customers by name, a page at a time; ``q``: names starting with it, any case, with or without accents."""
        limit = max(1, min(limit, PAGE))
        typed = q.strip()
        # Folded prefix search, served by the folded name index: "pop" finds "Popescu",
        # "stef" finds "Ștefan".
        where = F("name").startswith(typed, fold=True) if typed else None
        with unit_of_work(request) as crm:
            page = crm.customers.find(where, order_by=("name", "id"), limit=limit, after=after)
        return {"items": [_customer(c) for c in page], "next": None if page.next is None else str(page.next)}

    @app.post("/customers", status_code=201)
    def add_customer(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """Add a customer from ``{"kind": ..., "name": ..., "tags": [...], "email": ...}``."""
        emails = [body["email"]] if body.get("email") else []
        with unit_of_work(request) as crm:
            added = crm.customers.add(
                crmkit.Customer(
                    kind=body.get("kind", "person"),
                    name=body.get("name", ""),
                    tags=body.get("tags", ()),
                    emails=[{"address": e} for e in emails],
                    external_id=body.get("external_id"),
                )
            )
        return _customer(added)

    @app.get("/customers/{customer_id}")
    def customer_360(request: Request, customer_id: uuid.UUID, events: int = 50) -> dict[str, Any]:
        """One customer: details, purchase totals (summed in the store), open deals and the latest timeline."""
        with unit_of_work(request) as crm:
            customer = crm.customers.get(customer_id)
            totals = crm.transactions.aggregate(
                F("customer_id") == customer_id, group_by="currency", count=True, sum="amount"
            )
            deals = crm.opportunities.find(F("customer_id") == customer_id, order_by="close_date", limit=PAGE)
            timeline = crm.timeline(customer_id, limit=max(1, min(events, 200)), newest_first=True)
        return {
            **_customer(customer),
            "emails": [e.address for e in customer.emails],
            "phones": [p.number for p in customer.phones],
            "owner": customer.owner,
            "purchases": [
                {"currency": r["currency"], "count": r.count, "total": str(r["sum(amount)"])} for r in totals
            ],
            "deals": [
                {"id": str(d.id), "name": d.name, "stage": d.stage, "amount": _plain(d.amount), "currency": d.currency}
                for d in deals
            ],
            "timeline": [{"at": e.at.isoformat(), "kind": e.kind, "id": str(e.record.id)} for e in timeline],
        }

    @app.get("/pipelines/{key}")
    def board(request: Request, key: str) -> dict[str, Any]:
        """The board of a pipeline: its stages in order, each with its open deals and their total per currency."""
        with unit_of_work(request) as crm:
            pipeline = crm.sales.pipeline_named(key)
            entries = crm.sales.pipeline(pipeline=key)
            names = {d.id: d.name for d in crm.opportunities.find(F("pipeline") == key, limit=1000)}
        columns = []
        for stage in pipeline.stages:
            if stage.closed:
                continue
            deals = [e for e in entries if e.stage == stage.key]
            totals: dict[str, Decimal] = {}
            for e in deals:
                if e.amount is not None and e.currency is not None:
                    totals[e.currency] = totals.get(e.currency, Decimal(0)) + e.amount
            columns.append(
                {
                    "stage": stage.key,
                    "label": stage.label or stage.key,
                    "deals": [
                        {"id": str(e.opportunity_id), "name": names.get(e.opportunity_id), "amount": _plain(e.amount)}
                        for e in deals
                    ],
                    "totals": {c: str(v) for c, v in sorted(totals.items())},
                }
            )
        return {"pipeline": key, "name": pipeline.name, "columns": columns}

    @app.post("/deals/{deal_id}/move")
    def move(request: Request, deal_id: uuid.UUID, body: dict[str, Any]) -> dict[str, Any]:
        """Move a deal to ``{"stage": ...}`` (``"reason"`` when going back), recorded in its history."""
        with unit_of_work(request) as crm:
            deal = crm.sales.move(deal_id, body.get("stage", ""), reason=body.get("reason"))
        # The history row is derived from the change when the unit of work commits: read it after.
        with unit_of_work(request) as crm:
            history = crm.sales.history(deal_id)
        return {"id": str(deal.id), "stage": deal.stage, "history": [(h.prev_stage, h.stage, h.actor) for h in history]}

    @app.get("/", response_class=HTMLResponse)
    def home() -> str:
        return _HOME

    return app


_HOME = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>crmkit</title></head><body>
<h1>Customers</h1><input id="q" placeholder="type a name" autofocus><ul id="list"></ul>
<script>
const q = document.getElementById("q"), list = document.getElementById("list");
async function search() {
  const r = await fetch("/customers?q=" + encodeURIComponent(q.value));
  const page = await r.json();
  list.innerHTML = "";
  for (const c of page.items) {
    const li = document.createElement("li");
    li.textContent = c.name + " (" + c.stage + ")";
    list.appendChild(li);
  }
}
q.addEventListener("input", search); search();
</script></body></html>
"""


def __getattr__(name: str) -> Any:
    """``crmkit_web:app`` for uvicorn: the app built from the environment, on first use."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
