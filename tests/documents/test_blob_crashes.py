"""What a process that dies in the middle of an attach or a deletion leaves in a ``file://`` blob store.

A dying attach leaves its staged copy (``.incoming-*``), a dying deletion its set-aside file
(``.deleting-*``). ``crm.documents.collect`` sweeps them once they are older than its grace
period: it puts back, from them, the contents a committed blob names and has lost, and
removes the rest; a younger one (an attach or a deletion that may still run) is left alone.
The crashes are real where they need no store (a forked child that exits in the middle),
and on every store where a commit is involved: the attach's transaction commits, then its
process "dies" before it puts the content back (its ``finish`` never runs).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.backends import BACKENDS, Clock, backend_url
from tests.support.servers import unique_name

import crmkit
from crmkit import Customer
from crmkit._errors import NotFound
from crmkit.documents import CHUNK_SIZE, FileBlobStore, SweepingBlobStore
from crmkit.documents._blobstores import _StagedFile

UTC = dt.timezone.utc
START = dt.datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)
NOW = dt.timedelta(0)  # no grace period: every copy left is old enough


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("blob-crashes"))


def contents(root: Path) -> list[str]:
    """The names of the contents kept (staged and set-aside copies start with a dot)."""
    return sorted(p.name for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def leftovers(root: Path) -> list[str]:
    return sorted(p.name.split("-")[0] for p in root.rglob(".*") if p.is_file())


def in_a_child_that_dies(work: Callable[[], None]) -> None:
    """Run ``work`` in a forked process that ends with ``os._exit`` in the middle of it (no cleanup runs)."""
    child = multiprocessing.get_context("fork").Process(target=work)
    child.start()
    child.join(60)
    assert child.exitcode == 7, child.exitcode


def test_the_directory_store_can_sweep() -> None:
    assert isinstance(FileBlobStore("/"), SweepingBlobStore)


def test_copies_left_by_dead_attaches_and_deletions_are_swept_and_no_live_content_is_lost(
    url: str, tmp_path: Path
) -> None:
    tenant, clock = unique_name("swept"), Clock(START)
    kept, wanted, lost = os.urandom(CHUNK_SIZE + 5), os.urandom(100), os.urandom(200)
    store = FileBlobStore(tmp_path)
    with crmkit.connect(url, tenant=tenant, plugins=[store], clock=clock) as crm:
        acme = crm.customers.add(Customer(name="Acme", kind="organization"))
        doc = crm.documents.attach(acme, name="a.bin", data=kept)
        named = crm.documents.attach(acme, name="b.bin", data=wanted)

        def staging() -> None:  # an attach whose process dies once its copy is staged
            store.stage(tenant, [lost])
            os._exit(7)

        def deleting() -> None:  # a deletion that dies between setting the file aside and asking
            store.delete(tenant, named.sha256, unless=lambda: os._exit(7))

        in_a_child_that_dies(staging)
        in_a_child_that_dies(deleting)
        assert leftovers(tmp_path) == [".deleting", ".incoming"]
        assert contents(tmp_path) == [doc.sha256]  # b.bin's content is out of reach
        with pytest.raises(NotFound):
            crm.documents.open(named.id)

        # too young: an attach or a deletion may still be running with them
        assert crm.documents.collect(older_than=HOUR) == 0
        assert leftovers(tmp_path) == [".deleting", ".incoming"]

        assert crm.documents.collect(older_than=NOW) == 0  # no blob goes: both are used
        assert leftovers(tmp_path) == []
        assert contents(tmp_path) == sorted([doc.sha256, named.sha256])  # put back: a blob names it
        assert crm.documents.open(doc.id).read() == kept
        assert crm.documents.open(named.id).read() == wanted


def test_a_copy_whose_content_no_blob_names_is_removed_without_being_put_in_place(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    staged = store.stage("t", [b"never committed"])
    asked: list[str] = []

    def wanted(sha256: str) -> bool:
        asked.append(sha256)
        return False

    assert store.sweep("t", older_than=HOUR, wanted=wanted) == 0 and asked == []  # too young
    assert store.sweep("t", older_than=NOW, wanted=wanted) == 1 and asked == [staged.sha256]
    assert list(tmp_path.rglob("*.*")) == [] and contents(tmp_path) == []
    staged.finish(False)  # the attach ending after all finds nothing to clear
    assert store.sweep("unknown tenant", older_than=NOW, wanted=wanted) == 0


def test_an_attach_that_dies_after_its_commit_while_a_deletion_took_its_content_loses_nothing(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window between an attach's commit and its putting the content back (``finish``).

    A collect deleted the blob of a detached document with the same content and, asking
    before the attach committed, found it unwanted and removed the file; the attach
    committed, then died before its ``finish`` could link the content back from its staged
    copy. The copy is still there: the next collect puts the content in place from it.
    """
    content = os.urandom(2 * CHUNK_SIZE)
    tenant, clock = unique_name("window"), Clock(START)
    store = FileBlobStore(tmp_path)
    with crmkit.connect(url, tenant=tenant, plugins=[store], clock=clock) as crm:
        acme = crm.customers.add(Customer(name="Acme", kind="organization"))
        first = crm.documents.attach(acme, name="a.bin", data=content)

        def dies_after_the_commit(staged: _StagedFile, committed: bool) -> None:
            assert committed
            # the deletion of the first blob's content, which asked before this attach committed
            assert store.delete(tenant, staged.sha256, unless=lambda: False)
            # ...and the process dies here: the content is not linked back, the staged copy stays

        with monkeypatch.context() as patched:
            patched.setattr(_StagedFile, "finish", dies_after_the_commit)
            again = crm.documents.attach(acme, name="b.bin", data=content)
        assert again.sha256 == first.sha256
        assert contents(tmp_path) == [] and leftovers(tmp_path) == [".incoming"]
        with pytest.raises(NotFound):
            crm.documents.open(again.id)

        assert crm.documents.collect(older_than=NOW) == 0
        assert crm.documents.open(again.id).read() == content == crm.documents.open(first.id).read()
        assert contents(tmp_path) == [again.sha256] and leftovers(tmp_path) == []

        crm.documents.detach(first)
        crm.documents.detach(again)
        clock.tick(7200)
        assert crm.documents.collect(older_than=HOUR) == 1
        assert contents(tmp_path) == [] and leftovers(tmp_path) == []
