"""Documents on every backend: attach, stream back, one blob per content, versions, detach and collect."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.backends import BACKENDS, Clock, backend_url
from tests.support.servers import unique_name

import crmkit
from crmkit import ConflictError, Customer, NotFound, ValidationError
from crmkit.documents import CHUNK_SIZE, Blob, BlobChunk, DocumentVersion, FileBlobStore
from crmkit.interactions import Interaction

UTC = dt.timezone.utc
START = dt.datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("documents"))


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def crm(url: str, clock: Clock) -> Iterator[crmkit.CRM]:
    with crmkit.connect(url, tenant=unique_name("docs"), actor="user:42", clock=clock) as crm:
        yield crm


def counts(crm: crmkit.CRM) -> tuple[int, int, int, int]:
    return (
        crm.documents.count(),
        crm.records(DocumentVersion).count(),
        crm.records(Blob).count(),
        crm.records(BlobChunk).count(),
    )


def test_the_api_of_the_issue_works_as_written(url: str) -> None:
    pdf_bytes = b"%PDF-1.7\n" + os.urandom(3 * CHUNK_SIZE + 17)
    with crmkit.connect(url, tenant=unique_name("acme"), actor="user:42") as crm:
        acme = crm.customers.add(Customer(name="Acme", kind="organization"))
        doc = crm.documents.attach(
            acme, name="contract.pdf", data=io.BytesIO(pdf_bytes), content_type="application/pdf"
        )
        assert (doc.sha256, doc.size) == (hashlib.sha256(pdf_bytes).hexdigest(), len(pdf_bytes))
        assert crm.documents.open(doc.id).read() == pdf_bytes
        assert crm.documents.for_record(acme) == [doc]
        assert (doc.name, doc.content_type, doc.attached_by, doc.latest) == (
            "contract.pdf",
            "application/pdf",
            "user:42",
            1,
        )
        assert crm.records(BlobChunk).count() == 4  # three full chunks and the rest


def test_a_file_attached_twice_is_one_blob_and_reads_in_pieces(crm: crmkit.CRM) -> None:
    acme = crm.customers.add(Customer(name="Acme", kind="organization"))
    talk = crm.interactions.add(
        Interaction(customer_id=acme.id, channel="email", direction="inbound", occurred_at=START)
    )
    content = os.urandom(2 * CHUNK_SIZE)
    first = crm.documents.attach(acme, name="a.bin", data=content)
    second = crm.documents.attach(talk, name="b.bin", data=iter([content[:10], content[10:]]))
    assert counts(crm) == (2, 2, 1, 2)
    assert first.sha256 == second.sha256
    assert crm.documents.for_record(talk) == [second]
    assert crm.documents.for_record(("interactions", talk.id)) == [second]
    with crm.documents.open(second.id) as stream:
        parts = [stream.read(1000), stream.read(CHUNK_SIZE), stream.read()]
    assert b"".join(parts) == content and len(parts[0]) == 1000 and len(parts[1]) == CHUNK_SIZE
    assert crm.documents.open(first.id).read() == content
    empty = crm.documents.attach(acme, name="empty.txt", data=b"")
    assert (empty.size, crm.documents.open(empty.id).read()) == (0, b"")


def test_versions_are_kept_when_new_ones_are_added(crm: crmkit.CRM, clock: Clock) -> None:
    acme = crm.customers.add(Customer(name="Acme", kind="organization"))
    doc = crm.documents.attach(acme, name="offer.txt", data=b"first", content_type="text/plain")
    clock.tick()
    with crm.acting_as("user:7"):
        newer = crm.documents.add_version(doc, data=b"second", name="offer-v2.txt")
    assert (newer.latest, newer.name, newer.size, newer.attached_by) == (2, "offer-v2.txt", 6, "user:7")
    assert crm.documents.open(doc.id).read() == b"second"
    assert crm.documents.open(doc.id, version=1).read() == b"first"
    versions = crm.documents.versions(doc)
    assert [(v.number, v.size, v.added_by) for v in versions] == [(1, 5, "user:42"), (2, 6, "user:7")]
    with pytest.raises(NotFound):
        crm.documents.open(doc.id, version=3)
    assert counts(crm) == (1, 2, 2, 2)


def test_bad_input_is_refused_before_anything_is_written(crm: crmkit.CRM) -> None:
    acme = crm.customers.add(Customer(name="Acme", kind="organization"))
    read: list[int] = []

    def source() -> Iterator[bytes]:
        read.append(1)
        yield b"x"

    with pytest.raises(ValidationError) as caught:
        crm.documents.attach(acme, name="", data=source())
    assert caught.value.field == "name"
    gone = Customer(name="Gone", kind="person")
    with pytest.raises(ValidationError) as caught:
        crm.documents.attach(("customers", gone.id), name="x.txt", data=source())
    assert caught.value.field == "about"
    with pytest.raises(ValidationError) as caught:
        crm.documents.attach(object(), name="x.txt", data=source())
    assert caught.value.field == "about"
    with pytest.raises(ValidationError) as caught:
        crm.documents.attach(acme, name="x.txt", data=io.StringIO("text"))  # type: ignore[arg-type]
    assert caught.value.field == "data"
    with pytest.raises(ValidationError):
        crm.documents.attach(acme, name="x.txt", data=iter(["text"]))  # type: ignore[arg-type]
    assert read == [] and counts(crm) == (0, 0, 0, 0)


def test_a_source_that_fails_midway_leaves_nothing(crm: crmkit.CRM) -> None:
    acme = crm.customers.add(Customer(name="Acme", kind="organization"))

    def broken() -> Iterator[bytes]:
        yield os.urandom(CHUNK_SIZE * 2)
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        crm.documents.attach(acme, name="x.bin", data=broken())
    assert counts(crm) == (0, 0, 0, 0)


def test_detached_blobs_are_collected_only_after_the_grace_period(crm: crmkit.CRM, clock: Clock) -> None:
    acme = crm.customers.add(Customer(name="Acme", kind="organization"))
    kept = crm.documents.attach(acme, name="kept.txt", data=b"shared")
    gone = crm.documents.attach(acme, name="gone.txt", data=b"only mine" * 50_000)
    crm.documents.attach(acme, name="copy.txt", data=b"shared")
    crm.documents.detach(gone)
    assert crm.documents.for_record(acme) != [] and counts(crm)[2] == 2
    clock.tick(1800)
    assert crm.documents.collect(older_than=dt.timedelta(hours=1)) == 0
    assert counts(crm)[2:] == (2, 3)
    clock.tick(3600)
    assert crm.documents.collect(older_than=dt.timedelta(hours=1)) == 1
    assert counts(crm) == (2, 2, 1, 1)
    assert crm.documents.open(kept.id).read() == b"shared"
    with pytest.raises(ValidationError):
        crm.documents.collect(older_than=-dt.timedelta(seconds=1))


def test_a_blob_in_use_is_not_collected_and_cannot_be_deleted(crm: crmkit.CRM, clock: Clock) -> None:
    acme = crm.customers.add(Customer(name="Acme", kind="organization"))
    doc = crm.documents.attach(acme, name="a.txt", data=b"abc")
    clock.tick(86_400)
    assert crm.documents.collect(older_than=dt.timedelta(0)) == 0
    blob = crm.records(Blob).get(crm.documents.version(doc).blob_id)
    with pytest.raises(ConflictError):
        crm.records(Blob).delete(blob.id)
    assert crm.documents.open(doc.id).read() == b"abc"


def test_deleting_the_record_deletes_its_documents(crm: crmkit.CRM) -> None:
    acme = crm.customers.add(Customer(name="Acme", kind="organization"))
    other = crm.customers.add(Customer(name="Other", kind="organization"))
    crm.documents.attach(acme, name="a.txt", data=b"abc")
    crm.documents.add_version(crm.documents.for_record(acme)[0], data=b"abcd")
    crm.documents.attach(other, name="b.txt", data=b"abc")
    crm.customers.delete(acme.id)
    assert counts(crm)[:2] == (1, 1)
    assert crm.documents.collect(older_than=dt.timedelta(0)) == 1  # "abcd"; "abc" is still used
    assert crm.documents.open(crm.documents.for_record(other)[0].id).read() == b"abc"


def test_a_file_blob_store_keeps_the_bytes_in_a_directory(url: str, tmp_path: Path, clock: Clock) -> None:
    store = FileBlobStore(tmp_path.as_uri())
    content = os.urandom(CHUNK_SIZE + 5)
    with crmkit.connect(url, tenant=unique_name("files"), plugins=[store], clock=clock) as crm:
        acme = crm.customers.add(Customer(name="Acme", kind="organization"))
        doc = crm.documents.attach(acme, name="a.bin", data=io.BytesIO(content))
        copy = crm.documents.attach(acme, name="b.bin", data=content)
        assert doc.sha256 == copy.sha256 and crm.records(BlobChunk).count() == 0
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert [p.name for p in files] == [doc.sha256] and files[0].read_bytes() == content
        assert crm.documents.open(doc.id).read() == content

        def broken() -> Iterator[bytes]:
            yield b"partial"
            raise OSError("cut")

        with pytest.raises(OSError):
            crm.documents.attach(acme, name="c.bin", data=broken())
        assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [doc.sha256]  # no partial, no temp file
        crm.documents.detach(doc)
        crm.documents.detach(copy)
        clock.tick(7200)
        assert crm.documents.collect(older_than=dt.timedelta(hours=1)) == 1
        assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    with crmkit.connect(url, tenant=unique_name("files"), clock=clock) as crm:  # without the plugin
        acme = crm.customers.add(Customer(name="Acme", kind="organization"))
        assert crm.documents.open(crm.documents.attach(acme, name="x", data=b"in store").id).read() == b"in store"


def test_file_blob_store_refuses_other_urls() -> None:
    with pytest.raises(ValidationError):
        FileBlobStore("s3://bucket/x")
    assert FileBlobStore("/srv/blobs").root == Path("/srv/blobs")
    assert FileBlobStore("file:///srv/my%20blobs").root == Path("/srv/my blobs")


def test_documents_about_a_customer_are_in_its_timeline(crm: crmkit.CRM, clock: Clock) -> None:
    acme = crm.customers.add(Customer(name="Acme", kind="organization"))
    crm.interactions.add(Interaction(customer_id=acme.id, channel="email", direction="inbound", occurred_at=START))
    clock.tick()
    doc = crm.documents.attach(acme, name="a.txt", data=b"abc")
    entries = crm.timeline(acme.id)
    assert [(e.kind, e.at) for e in entries] == [("interaction", START), ("document", clock.now)]
    assert entries[-1].record == doc
    assert [e.kind for e in crm.timeline(acme.id, newest_first=True, limit=1)] == ["document"]
