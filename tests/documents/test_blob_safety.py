"""Documents' bytes are never lost to a rollback or a race, and a duplicate is found before it is written.

- an erase deletes a file kept outside the store only once it has committed: rolled back,
  the document reads as before;
- a ``collect`` (or an erase) deleting a content while an attach of the same content runs
  never leaves the attach without its file, wherever the attach comes in;
- a content kept already is recognised before one chunk of it is written again.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.backends import BACKENDS, Clock, backend_url
from tests.support.servers import unique_name

import crmkit
from crmkit import Customer
from crmkit.documents import CHUNK_SIZE, Blob, BlobChunk, FileBlobStore
from crmkit.documents._service import Documents

UTC = dt.timezone.utc
START = dt.datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    found = backend_url(request, tmp_path_factory.mktemp("blob-safety"))
    # two connections below must share one store: a named memory store is shared in the process
    return f"memory://{unique_name('blobs')}" if found == "memory://" else found


#: the stores whose transactions let a second writer in while one is open (on memory and SQLite a
#: transaction holds the write lock, so a collect simply waits for an attach to end)
CONCURRENT = tuple(b for b in BACKENDS if b not in ("memory", "sqlite"))


@pytest.fixture(scope="module", params=CONCURRENT)
def concurrent_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("blob-safety"))


def files(root: Path) -> list[Path]:
    """The contents a directory store keeps (its staged and set-aside files start with a dot)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


class Boom(Exception):
    pass


def test_a_rolled_back_erase_keeps_the_file_and_a_committed_one_deletes_it(url: str, tmp_path: Path) -> None:
    content = os.urandom(CHUNK_SIZE + 3)
    with crmkit.connect(url, tenant=unique_name("erase"), plugins=[FileBlobStore(tmp_path)]) as crm:
        ada = crm.customers.add(Customer(name="Ada Lovelace", kind="person"))
        doc = crm.documents.attach(ada, name="passport.pdf", data=content)
        with pytest.raises(Boom), crm.transaction():
            crm.privacy.erase(ada.id)
            assert crm.documents.count() == 0  # erased inside the transaction...
            raise Boom  # ...which then rolls back
        assert crm.documents.get(doc.id) == doc
        assert crm.documents.open(doc.id).read() == content
        assert [p.name for p in files(tmp_path)] == [doc.sha256]
        crm.privacy.erase(ada.id)
        assert crm.documents.count() == 0 and crm.records(Blob).count() == 0
        assert list(tmp_path.rglob("*.*")) == [] and files(tmp_path) == []  # gone at once, nothing set aside


class RacingStore(FileBlobStore):
    """A directory store that lets an attach run, on another thread, at a chosen point of a deletion."""

    def __init__(self, root: Path, moment: str, attach: Callable[[], None]) -> None:
        super().__init__(root)
        self.moment, self.attach, self.raced = moment, attach, 0

    def race(self) -> None:
        if self.raced:
            return
        self.raced += 1
        failures: list[BaseException] = []

        def run() -> None:
            try:
                self.attach()
            except BaseException as exc:  # handed to the test's thread
                failures.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(60)
        assert not thread.is_alive() and failures == []

    def delete(self, tenant: str, sha256: str, *, unless: Callable[[], bool] | None = None) -> bool:
        if unless is None:  # a deletion that asks nothing (as crmkit's did before it asked)
            self.race()
            return super().delete(tenant, sha256)
        if self.moment == "before the deletion":
            self.race()
            return super().delete(tenant, sha256, unless=unless)
        check = unless

        def raced_check() -> bool:
            if self.moment == "while the content is out of reach":
                self.race()
                return check()
            wanted = check()  # "after the last check"
            self.race()
            return wanted

        return super().delete(tenant, sha256, unless=raced_check)


@pytest.mark.parametrize("moment", ["before the deletion", "while the content is out of reach", "after the last check"])
@pytest.mark.parametrize("deleter", ["collect", "erase"])
def test_an_attach_racing_the_deletion_of_its_content_keeps_its_file(
    url: str, tmp_path: Path, moment: str, deleter: str
) -> None:
    content = os.urandom(2 * CHUNK_SIZE)
    tenant, clock = unique_name("race"), Clock(START)
    attached: list[Any] = []
    with crmkit.connect(url, tenant=tenant, plugins=[FileBlobStore(tmp_path)], clock=clock) as other:
        acme = other.customers.add(Customer(name="Acme", kind="organization"))
        ada = other.customers.add(Customer(name="Ada", kind="person"))
        first = other.documents.attach(ada if deleter == "erase" else acme, name="a.bin", data=content)
        if deleter == "collect":
            other.documents.detach(first)
        clock.tick(7200)

        def attach_again() -> None:  # on another thread, through another connection
            attached.append(other.documents.attach(acme, name="b.bin", data=io.BytesIO(content)))

        store = RacingStore(tmp_path, moment, attach_again)
        with crmkit.connect(url, tenant=tenant, plugins=[store], clock=clock) as crm:
            if deleter == "collect":
                assert crm.documents.collect(older_than=HOUR) == 1
            else:
                crm.privacy.erase(ada.id)
            assert store.raced == 1, "the deletion of the content did not reach the blob store"
            assert crm.records(Blob).count() == 1
        (again,) = attached
        assert other.documents.open(again.id).read() == content
        assert [p.name for p in files(tmp_path)] == [again.sha256]
        assert [p.name for p in tmp_path.rglob(".*")] == []  # no staged or set-aside file left
        other.documents.detach(again)
        clock.tick(7200)
        assert other.documents.collect(older_than=HOUR) == 1
        assert files(tmp_path) == []


def test_an_attach_in_the_middle_of_its_transaction_keeps_its_file_through_a_collect(
    concurrent_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = concurrent_url
    content = os.urandom(CHUNK_SIZE + 1)
    tenant, clock = unique_name("paused"), Clock(START)
    paused, go = threading.Event(), threading.Event()
    attacher: list[int] = []
    looked_up = Documents._blob_by_sha

    def pausing(self: Documents, sha256: str) -> Blob | None:
        if threading.get_ident() in attacher and not go.is_set():
            paused.set()  # the content is written; the attach's transaction has not yet looked for its blob
            assert go.wait(60)
        return looked_up(self, sha256)

    monkeypatch.setattr(Documents, "_blob_by_sha", pausing)
    with (
        crmkit.connect(url, tenant=tenant, plugins=[FileBlobStore(tmp_path)], clock=clock) as attaching,
        crmkit.connect(url, tenant=tenant, plugins=[FileBlobStore(tmp_path)], clock=clock) as collecting,
    ):
        acme = attaching.customers.add(Customer(name="Acme", kind="organization"))
        attaching.documents.detach(attaching.documents.attach(acme, name="a.bin", data=content))
        clock.tick(7200)
        outcome: list[Any] = []

        def attach_again() -> None:
            attacher.append(threading.get_ident())
            try:
                outcome.append(attaching.documents.attach(acme, name="b.bin", data=content))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=attach_again)
        thread.start()
        try:
            assert paused.wait(60)
            assert collecting.documents.collect(older_than=HOUR) == 1  # the detached document's blob
        finally:
            go.set()
            thread.join(60)
        (again,) = outcome
        assert not isinstance(again, BaseException), again
        assert attaching.documents.open(again.id).read() == content
        assert [p.name for p in files(tmp_path)] == [again.sha256]


@pytest.fixture
def chunk_writes(monkeypatch: pytest.MonkeyPatch) -> Callable[[crmkit.CRM], list[int]]:
    """Counts the chunk records a connection's store is asked to insert."""

    def spy(crm: crmkit.CRM) -> list[int]:
        written: list[int] = []
        repo = crm.store.repository(crm.schema.spec(BlobChunk))
        insert = repo.insert

        def counting(tenant: str, records: Any, *args: Any, **kwargs: Any) -> Any:
            records = list(records)
            written.append(len(records))
            return insert(tenant, records, *args, **kwargs)

        monkeypatch.setattr(repo, "insert", counting)
        return written

    return spy


def test_a_content_kept_already_is_not_written_again(url: str, chunk_writes: Callable[[crmkit.CRM], list[int]]) -> None:
    content = os.urandom(3 * CHUNK_SIZE + 10)

    def source() -> Iterator[bytes]:
        for start in range(0, len(content), 100_000):
            yield content[start : start + 100_000]

    with crmkit.connect(url, tenant=unique_name("dup")) as crm:
        acme = crm.customers.add(Customer(name="Acme", kind="organization"))
        written = chunk_writes(crm)
        first = crm.documents.attach(acme, name="a.bin", data=source())
        assert sum(written) == 4
        written.clear()
        again = crm.documents.attach(acme, name="b.bin", data=source())
        assert written == []  # recognised by its hash before a chunk of it went to the store
        newer = crm.documents.add_version(again, data=io.BytesIO(content))
        assert written == [] and (first.sha256, newer.sha256) == (again.sha256, again.sha256)
        assert (crm.records(Blob).count(), crm.records(BlobChunk).count()) == (1, 4)
        assert crm.documents.open(again.id).read() == content


def test_a_file_kept_already_is_left_as_it_is(url: str, tmp_path: Path) -> None:
    content = os.urandom(CHUNK_SIZE + 10)
    with crmkit.connect(url, tenant=unique_name("dupfile"), plugins=[FileBlobStore(tmp_path)]) as crm:
        acme = crm.customers.add(Customer(name="Acme", kind="organization"))
        first = crm.documents.attach(acme, name="a.bin", data=content)
        (kept,) = files(tmp_path)
        before = kept.stat()
        crm.documents.attach(acme, name="b.bin", data=content)
        after = kept.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not written again
        assert files(tmp_path) == [kept] and [p.name for p in tmp_path.rglob(".*")] == []
        assert crm.documents.open(first.id).read() == content
