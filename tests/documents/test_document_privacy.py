"""Privacy reaches documents on every backend: exported with their files, deleted or anonymised on erasure."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from collections.abc import Iterator
from decimal import Decimal

import pytest
from tests.support.backends import BACKENDS, backend_url
from tests.support.servers import unique_name

import crmkit
from crmkit import Customer
from crmkit.documents import Blob, BlobChunk, DocumentVersion
from crmkit.interactions import Interaction
from crmkit.testing.probe import Probe, ProbePlugin

NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("document-privacy"))


@pytest.fixture
def crm(url: str) -> Iterator[crmkit.CRM]:
    with crmkit.connect(url, tenant=unique_name("dp"), plugins=[ProbePlugin()], clock=lambda: NOW) as crm:
        yield crm


def test_export_lists_documents_and_their_files_and_erase_deletes_or_anonymises(crm: crmkit.CRM) -> None:
    marker = f"zqd{secrets.token_hex(6)}"
    ada = crm.customers.add(Customer(name="Ada", kind="person"))
    bob = crm.customers.add(Customer(name="Bob", kind="person"))
    talk = crm.interactions.add(Interaction(customer_id=ada.id, channel="email", direction="inbound", occurred_at=NOW))
    # Bob's record that only mentions Ada (a set_null reference): its document is not hers alone
    probe = crm.records(Probe).add(
        Probe(
            owner_id=bob.id,
            code="p",
            number=1,
            amount=Decimal(1),
            currency="EUR",
            happened_at=NOW,
            sponsor_id=ada.id,
        )
    )
    own = crm.documents.attach(ada, name=f"{marker}-passport.jpg", data=f"scan {marker}".encode())
    crm.documents.add_version(own, data=f"rescan {marker}".encode())
    on_talk = crm.documents.attach(talk, name=f"{marker}-notes.txt", data=b"shared content")
    mentioned = crm.documents.attach(probe, name=f"{marker}-report.pdf", data=b"report")
    bobs = crm.documents.attach(bob, name="bob.txt", data=b"shared content")

    data = crm.privacy.export(ada.id)
    assert {d["id"] for d in data["records"]["documents"]} == {str(own.id), str(on_talk.id), str(mentioned.id)}
    assert len(data["records"]["document_versions"]) == 4 and "files" not in data
    with_files = crm.privacy.export(ada.id, files=True)
    json.dumps(with_files)
    contents = {(f["document_id"], f["version"]): base64.b64decode(f["base64"]) for f in with_files["files"]}
    assert contents[(str(own.id), 1)] == f"scan {marker}".encode()
    assert contents[(str(own.id), 2)] == f"rescan {marker}".encode()
    assert contents[(str(mentioned.id), 1)] == b"report" and len(contents) == 4

    plan = crm.privacy.erase(ada.id, dry_run=True)
    deleted = {(c.aggregate, c.id) for c in plan.changes if c.action == "deleted"}
    assert deleted == {("documents", own.id), ("documents", on_talk.id)}
    assert crm.documents.count() == 4  # a dry run writes nothing
    report = crm.privacy.erase(ada.id)
    assert [c.to_json() for c in report.changes] == [c.to_json() for c in plan.changes]

    left = {d.id: d for d in crm.documents.stream()}
    assert set(left) == {mentioned.id, bobs.id}
    assert left[mentioned.id].name.startswith("erased-") and left[bobs.id].name == "bob.txt"
    assert crm.documents.open(mentioned.id).read() == b"report"
    assert crm.documents.open(bobs.id).read() == b"shared content"  # the content Bob's file shares stays
    assert {b.sha256 for b in crm.records(Blob).stream()} == {left[mentioned.id].sha256, bobs.sha256}
    assert crm.records(DocumentVersion).count() == 2 and crm.records(BlobChunk).count() == 2
    assert marker not in json.dumps(crm.privacy.export(ada.id, files=True))
    for change in crm.audit.history(own):  # the trail keeps that the document was, not its name
        assert marker not in repr(change)
    feed = crm.events.read(limit=1000)
    assert any(e.record_id == own.id for e in feed) and all(marker not in repr(e) for e in feed)
