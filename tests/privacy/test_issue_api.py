"""The API block of the privacy, audit, access and documents issue, as written, on every store.

The block's calls run as they are written (the tenant is named ``acme`` and made unique on
the shared test servers); around them, the records they need (Ada created in an import
batch of 100 or more, Bob, Acme owned by ``user:a``) and assertions that each call did
what it says.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import uuid

import attrs
import pytest
from tests.support.backends import BACKENDS, Clock, backend_url
from tests.support.servers import unique_name

import crmkit
from crmkit import Customer, EmailAddress
from crmkit.access import OwnerPolicy
from crmkit.audit._journal import BATCHED
from crmkit.privacy import ErasureRefused

UTC = dt.timezone.utc


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    found = backend_url(request, tmp_path_factory.mktemp("issue-api"))
    return "memory://issue-api-" + uuid.uuid4().hex[:8] if found == "memory://" else found


def test_the_api_of_the_issue_works_as_written(url: str) -> None:
    acme_tenant = unique_name("acme")  # the block's tenant "acme", unique on the shared test servers
    pdf_bytes = b"%PDF-1.7\n" + os.urandom(300_000)
    clock = Clock(dt.datetime(2026, 5, 20, 9, 0, tzinfo=UTC))
    with crmkit.connect(url, tenant=acme_tenant, actor="user:admin", clock=clock) as setup:
        people = [Customer(kind="person", name=f"Imported {i}") for i in range(BATCHED - 1)]
        ada = Customer(kind="person", name="Ada Lovelace", emails=(EmailAddress("ada@example.org"),))
        assert setup.customers.add_many([*people, ada]).added == BATCHED  # her creation entry is shared
        bob = setup.customers.add(Customer(kind="person", name="Bob Babbage"))
        acme = setup.customers.add(Customer(kind="organization", name="Acme", owner="user:a"))
        setup.customers.add(Customer(kind="organization", name="Other", owner="user:b"))
        clock.tick(86_400 * 30)  # June
        acme = setup.customers.update(attrs.evolve(acme, name="Acme Ltd"))

    # ---- the issue's block, as written (but for the clock, which stands in June 2026)
    with crmkit.connect(url, tenant=acme_tenant, actor="user:42", clock=clock) as crm:
        data = crm.privacy.export(ada.id)  # JSON-serialisable: every record about the person
        json.dumps(data)  # in every aggregate, consents, history, documents
        plan = crm.privacy.erase(ada.id, dry_run=True)  # what would change, changes nothing
        report = crm.privacy.erase(ada.id)  # anonymise, everywhere
        crm.privacy.hold(bob.id, until=dt.date(2033, 12, 31), reason="tax records")  # erase refused until then

        for change in crm.audit.history(acme):  # a record, or (aggregate, id)
            change.field, change.old, change.new, change.actor, change.at, change.cause  # noqa: B018
        then = crm.audit.as_of(acme, at=dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc))  # the record then

        doc = crm.documents.attach(
            acme, name="contract.pdf", data=io.BytesIO(pdf_bytes), content_type="application/pdf"
        )
        doc.sha256, doc.size  # noqa: B018
        assert crm.documents.open(doc.id).read() == pdf_bytes
        attached = crm.documents.for_record(acme)

        # ---- what each call did
        text = json.dumps(data)
        assert "Ada Lovelace" in text and "ada@example.org" in text
        created = [e for e in data["records"]["audit_entries"] if e["action"] == "created"]
        assert [(e["record_id"], e["actor"], e["cause"]) for e in created] == [(str(ada.id), "user:admin", "import")]
        assert plan.dry_run and [c.to_json() for c in plan.changes] == [c.to_json() for c in report.changes]
        erased = crm.customers.get(ada.id)
        assert erased.name.startswith("erased-") and erased.emails == ()
        assert "Ada Lovelace" not in json.dumps(crm.privacy.export(ada.id))
        with pytest.raises(ErasureRefused, match="until 2033-12-31"):
            crm.privacy.erase(bob.id)
        history = [(c.field, c.old, c.new, c.actor, c.cause) for c in crm.audit.history(acme)]
        assert history[-1] == ("name", "Acme", "Acme Ltd", "user:admin", "api")
        assert then is not None and then.name == "Acme"
        assert (doc.sha256, doc.size) == (hashlib.sha256(pdf_bytes).hexdigest(), len(pdf_bytes))
        assert [d.id for d in attached] == [doc.id]

    # record-level access: owners see their customers and everything hanging off them
    with crmkit.connect(url, tenant=acme_tenant, actor="user:a", plugins=[OwnerPolicy()]) as crm:
        assert crm.customers.count() == 1  # only customers whose owner is "user:a" (and their teams')
        assert [d.id for d in crm.documents.for_record(acme)] == [doc.id]
        assert crm.documents.open(doc.id).read() == pdf_bytes
    with crmkit.connect(url, tenant=acme_tenant, actor="user:b", plugins=[OwnerPolicy()]) as crm:
        assert crm.customers.count() == 1 and crm.documents.for_record(acme) == []
        with pytest.raises(crmkit.NotFound):
            crm.documents.open(doc.id)
