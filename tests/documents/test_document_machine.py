"""Random attaches, new versions, detaches, deletes of the records documents hang off, and collections.

After every step, on every backend: the documents are those of the model, each reads back
its latest content, every version points at a stored blob (no dangling link), every
blob's chunks are all there, each content is kept once; after ``collect(older_than=0)``
no blob is left that no version uses (no orphan), and a blob is never collected before
its grace period.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from tests.support.backends import BACKENDS, Clock, backend_url
from tests.support.servers import unique_name

import crmkit
from crmkit import Customer
from crmkit.documents import CHUNK_SIZE, Blob, BlobChunk, DocumentVersion
from crmkit.interactions import Interaction
from crmkit.query import F

START = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.timezone.utc)
_random = random.Random(16)
#: Few contents, so that documents share them: empty, tiny, and two of two chunks.
CONTENTS = (b"", b"hello", _random.randbytes(CHUNK_SIZE + 100), _random.randbytes(CHUNK_SIZE + 200))
GRACE = dt.timedelta(hours=1)


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("document-machine"))


class DocumentMachine(RuleBasedStateMachine):
    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock(START)
        self.crm = crmkit.connect(self.url, tenant=unique_name("docm"), clock=self.clock)
        #: record (aggregate, id) -> its parent's key (an interaction's customer), None for a customer
        self.records: dict[tuple[str, uuid.UUID], tuple[str, uuid.UUID] | None] = {}
        #: document id -> (what it is about, its contents by version)
        self.documents: dict[uuid.UUID, tuple[tuple[str, uuid.UUID], list[bytes]]] = {}
        #: sha256 -> when a document last took the content (the grace period counts from it)
        self.taken: dict[str, dt.datetime] = {}

    def teardown(self) -> None:
        self.crm.close()

    @initialize()
    def some_records(self) -> None:
        for name in ("Ada", "Bob"):
            customer = self.crm.customers.add(Customer(name=name, kind="person"))
            self.records[("customers", customer.id)] = None
            talk = self.crm.interactions.add(
                Interaction(customer_id=customer.id, channel="email", direction="inbound", occurred_at=START)
            )
            self.records[("interactions", talk.id)] = ("customers", customer.id)

    def _take(self, content: bytes) -> None:
        self.taken[hashlib.sha256(content).hexdigest()] = self.clock.now

    @precondition(lambda self: self.records)
    @rule(data=st.data(), content=st.sampled_from(CONTENTS))
    def attach(self, data: st.DataObject, content: bytes) -> None:
        about = data.draw(st.sampled_from(sorted(self.records)), label="about")
        doc = self.crm.documents.attach(about, name="file.bin", data=iter([content[:7], content[7:]]))
        self.documents[doc.id] = (about, [content])
        self._take(content)

    @precondition(lambda self: self.documents)
    @rule(data=st.data(), content=st.sampled_from(CONTENTS))
    def add_version(self, data: st.DataObject, content: bytes) -> None:
        id = data.draw(st.sampled_from(sorted(self.documents)), label="document")
        self.crm.documents.add_version(id, data=content)
        self.documents[id][1].append(content)
        self._take(content)

    @precondition(lambda self: self.documents)
    @rule(data=st.data())
    def detach(self, data: st.DataObject) -> None:
        id = data.draw(st.sampled_from(sorted(self.documents)), label="document")
        self.crm.documents.detach(id)
        del self.documents[id]

    @precondition(lambda self: self.records)
    @rule(data=st.data())
    def delete_record(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.records)), label="record")
        self.crm.records(key[0]).delete(key[1])
        gone = {key} | {k for k, parent in self.records.items() if parent == key}
        for k in gone:
            del self.records[k]
        self.documents = {i: d for i, d in self.documents.items() if d[0] not in gone}

    @rule(minutes=st.sampled_from((1, 30, 61)))
    def time_passes(self, minutes: int) -> None:
        self.clock.tick(60 * minutes)

    @rule(grace=st.sampled_from((dt.timedelta(0), GRACE)))
    def collect(self, grace: dt.timedelta) -> None:
        used = {hashlib.sha256(c).hexdigest() for _, contents in self.documents.values() for c in contents}
        before = {b.sha256 for b in self.crm.records(Blob).stream()}
        removed = self.crm.documents.collect(older_than=grace)
        after = {b.sha256 for b in self.crm.records(Blob).stream()}
        cutoff = self.clock.now - grace
        expected = {s for s in before - used if self.taken[s] <= cutoff}
        assert before - after == expected and removed == len(expected)

    @invariant()
    def documents_read_back_and_nothing_dangles(self) -> None:
        crm = self.crm
        stored = {d.id: d for d in crm.documents.stream()}
        assert set(stored) == set(self.documents)
        blobs = {b.id: b for b in crm.records(Blob).stream()}
        assert len({b.sha256 for b in blobs.values()}) == len(blobs)  # each content kept once
        versions = list(crm.records(DocumentVersion).stream())
        assert all(v.blob_id in blobs and v.document_id in stored for v in versions)
        for id, (about, contents) in self.documents.items():
            document = stored[id]
            assert (document.about.aggregate, document.about.id) == about
            assert [v.sha256 for v in crm.documents.versions(id)] == [hashlib.sha256(c).hexdigest() for c in contents]
            assert crm.documents.open(id).read() == contents[-1]
        chunks: dict[uuid.UUID, list[int]] = {}
        for chunk in crm.records(BlobChunk).stream(order_by=("blob_id", "number")):
            chunks.setdefault(chunk.blob_id, []).append(chunk.number)
        assert set(chunks) <= set(blobs)  # no chunk without its blob
        for blob in blobs.values():
            assert chunks.get(blob.id, []) == list(range(blob.chunks))

    @invariant()
    def collecting_everything_leaves_no_orphan(self) -> None:
        # what collect(older_than=0) would leave is exactly the blobs some version uses
        used = {v.blob_id for v in self.crm.records(DocumentVersion).stream()}
        unused = self.crm.records(Blob).count(~F("id").in_(sorted(used)) if used else None)
        expected = {hashlib.sha256(c).hexdigest() for _, contents in self.documents.values() for c in contents}
        assert len(used) == len(expected)
        assert unused == len({b.sha256 for b in self.crm.records(Blob).stream()} - expected)


def test_random_attach_detach_and_delete_sequences_leave_no_orphan_and_no_dangling_link(url: str) -> None:
    machine: Any = type("DocumentMachineHere", (DocumentMachine,), {"url": url})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=12,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
