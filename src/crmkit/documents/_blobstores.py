"""Where a document's bytes may live outside the store: the ``BlobStore`` protocol and a directory store.

A plugin provides a blob store through the ``crmkit_blob_store`` hook; ``FileBlobStore``
is one, and is its own plugin::

    crmkit.connect(url, plugins=[FileBlobStore("file:///var/lib/crm/blobs")])

Blob stores key contents by tenant and SHA-256, so the same file is kept once. A store
outside the database cannot join its transactions, so ``crm.documents`` works with it in
two steps on each side:

- an attach *stages* the content (hashed while it is written to a place of its own),
  *keeps* it under its SHA-256 unless that is kept already (nothing more is written), and
  once its transaction has ended *finishes*: after a commit it makes sure the content is
  still kept (a deletion may have raced it), then drops the staged copy;
- a deletion runs only after the transaction that deleted the blob's record has
  committed, and takes the content out of reach before it asks, once more, whether a
  record names it: an attach that committed meanwhile is seen and the content is put
  back; one that commits later finds it gone and keeps its staged copy.

A process that dies in the middle of either leaves its staged or set-aside copy behind:
a blob store may offer ``sweep`` (``FileBlobStore`` does), which ``crm.documents.collect``
calls to put back, from those copies, the contents a committed blob names and has lost,
and to remove the copies once they are older than the grace period.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from crmkit._errors import NotFound, ValidationError
from crmkit._ids import new_id
from crmkit.hookspecs import hookimpl

__all__ = ["BlobStore", "FileBlobStore", "StagedBlob", "SweepingBlobStore"]


@runtime_checkable
class StagedBlob(Protocol):
    """A content an attach has written to a blob store but not yet kept under its SHA-256 (``BlobStore.stage``)."""

    sha256: str
    size: int

    def keep(self) -> None:
        """Make the content readable under its SHA-256, unless it is kept already (then nothing is written)."""
        ...

    def finish(self, committed: bool) -> None:
        """Once the attach's transaction has ended: after a commit, keep the content again if a deletion
        took it meanwhile; in any case forget the staged copy."""
        ...


@runtime_checkable
class BlobStore(Protocol):
    """Keeps contents by tenant and SHA-256, outside the store (``crmkit_blob_store``)."""

    #: The name kept in ``Blob.location`` (``"file"``): a blob is read back from the store of that name.
    name: str

    def stage(self, tenant: str, chunks: Iterable[bytes]) -> StagedBlob:
        """Write the bytes of ``chunks`` (read one at a time) to a place of their own, hashing them.

        Nothing is readable under the SHA-256 before ``keep``; a failed write leaves nothing.
        """
        ...

    def open(self, tenant: str, sha256: str) -> BinaryIO:
        """A binary file object reading the content (``NotFound`` if it is not kept)."""
        ...

    def delete(self, tenant: str, sha256: str, *, unless: Callable[[], bool] | None = None) -> bool:
        """Forget a content, unless ``unless()`` (asked once the content is out of reach) says it is wanted.

        Returns whether it was forgotten (False if it was not kept, or is wanted after all).
        """
        ...

    def contents(self, tenant: str) -> Iterator[tuple[str, dt.datetime]]:
        """Every content kept for the tenant: its SHA-256 and when it was written (for ``collect``)."""
        ...


@runtime_checkable
class SweepingBlobStore(BlobStore, Protocol):
    """A blob store that can clear what crashed attaches and deletions left (``crm.documents.collect`` calls it)."""

    def sweep(self, tenant: str, *, older_than: dt.timedelta, wanted: Callable[[str], bool]) -> int:
        """Put back the contents ``wanted(sha256)`` says a committed blob names and that are missing, from
        the staged or set-aside copies older than ``older_than``, then remove those copies; returns how many.

        Copies younger than ``older_than`` belong to an attach or a deletion that may still run: left alone.
        """
        ...


class _StagedFile:
    """A content written to a temporary file of a ``FileBlobStore``, linked under its name by ``keep``."""

    def __init__(self, target: Path, temporary: Path, sha256: str, size: int) -> None:
        self.sha256, self.size = sha256, size
        self._target, self._temporary = target, temporary

    def keep(self) -> None:
        self._target.parent.mkdir(exist_ok=True)
        try:  # a second name for the staged file: atomic, and the staged copy stays until finish
            os.link(self._temporary, self._target)
        except FileExistsError:  # kept already: the same bytes, nothing to write
            pass
        except FileNotFoundError:
            # the staged copy is gone: a sweep took it, having put the content in place if it was wanted
            if not self._target.exists():
                raise

    def finish(self, committed: bool) -> None:
        try:
            if committed:
                self.keep()
        finally:
            self._temporary.unlink(missing_ok=True)


class FileBlobStore:
    """A blob store in a directory: ``<root>/<tenant>/<sha256[:2]>/<sha256>``, written atomically.

    ``root`` is a path or a ``file://`` URL. Each content is written to a temporary file in
    the tenant's directory, flushed to disk, then linked into place, so a crash never leaves
    a partial file under a content's name; a content kept already is not written again. A
    deletion renames the file aside before it asks whether the content is wanted, and puts
    it back if so. The staged and set-aside copies a dead process leaves are cleared by
    ``sweep`` (``crm.documents.collect`` calls it). Register the object as a plugin to use it.
    """

    name = "file"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        text = os.fspath(root)
        if text.startswith("file://"):
            parsed = urllib.parse.urlparse(text)
            text = urllib.parse.unquote(parsed.path)
        elif "://" in text:
            raise ValidationError("root", "must be a directory or a file:// URL", root)
        self.root = Path(text)

    def __repr__(self) -> str:
        return f"FileBlobStore({self.root.as_uri() if self.root.is_absolute() else str(self.root)!r})"

    @hookimpl
    def crmkit_blob_store(self) -> BlobStore:
        return self

    def _folder(self, tenant: str) -> Path:
        return self.root / urllib.parse.quote(tenant, safe="")

    def _path(self, tenant: str, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValidationError("sha256", "must be 64 lower-case hex digits", sha256)
        return self._folder(tenant) / sha256[:2] / sha256

    def stage(self, tenant: str, chunks: Iterable[bytes]) -> StagedBlob:
        folder = self._folder(tenant)
        folder.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        handle, name = tempfile.mkstemp(dir=folder, prefix=f".incoming-{new_id().hex}-")
        temporary = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            return _StagedFile(self._path(tenant, sha256), temporary, sha256, size)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def open(self, tenant: str, sha256: str) -> BinaryIO:
        try:
            return self._path(tenant, sha256).open("rb")
        except FileNotFoundError:
            raise NotFound("document blob", f"{sha256} in {self!r}") from None

    def delete(self, tenant: str, sha256: str, *, unless: Callable[[], bool] | None = None) -> bool:
        target = self._path(tenant, sha256)
        # the name says when it was set aside (a UUIDv7): a sweep leaves it alone for the grace period
        aside = target.with_name(f".deleting-{sha256}-{new_id().hex}")
        try:  # out of reach first: an attach that looks now finds no file and keeps its own copy
            os.rename(target, aside)
        except FileNotFoundError:
            return False
        try:
            wanted = unless is not None and unless()
        except BaseException:
            os.replace(aside, target)
            raise
        if wanted:  # an attach took the content meanwhile: back (the same bytes if it was kept again)
            try:
                os.replace(aside, target)
            except FileNotFoundError:  # a sweep put it back already
                pass
            return False
        aside.unlink(missing_ok=True)
        return True

    def sweep(self, tenant: str, *, older_than: dt.timedelta, wanted: Callable[[str], bool]) -> int:
        """Clear the copies that attaches and deletions which died left behind; returns how many went.

        ``.incoming-*`` (an attach's staged copy: it died before its transaction ended, or
        between its commit and putting the content in place) is hashed, and linked into place
        when ``wanted(sha256)`` says a committed blob names the content and the file is
        missing; ``.deleting-*`` (a deletion's set-aside file: it died before it learnt whether
        the content is wanted) is put back in that case. Either is then removed. Only copies
        untouched for ``older_than`` (by the wall clock: their names' time, their inode's
        change time and their modification time, whichever is latest) are looked at: a younger
        one may belong to an attach or a deletion still running, which takes care of it.
        """
        folder = self._folder(tenant)
        if not folder.is_dir():
            return 0
        limit = time.time() - older_than.total_seconds()
        swept = 0
        for path in sorted([*folder.glob(".incoming-*"), *folder.glob("??/.deleting-*")]):
            try:
                if _last_touched(path) > limit:
                    continue
                aside = path.name.startswith(".deleting-")  # named by its content; a staged copy is not
                sha256 = path.name[len(".deleting-") :][:64] if aside else _hashed(path)
                target = self._path(tenant, sha256)
                if not target.exists() and wanted(sha256):
                    target.parent.mkdir(exist_ok=True)
                    try:
                        os.link(path, target)
                    except FileExistsError:  # put back meanwhile (by an attach): the same bytes
                        pass
                path.unlink()
            except (FileNotFoundError, ValidationError):  # taken meanwhile, or not a name this store gives
                continue
            swept += 1
        return swept

    def contents(self, tenant: str) -> Iterator[tuple[str, dt.datetime]]:
        folder = self._folder(tenant)
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("??/*")):
            if path.is_file() and len(path.name) == 64:
                written = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
                yield path.name, written


def _hashed(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while piece := source.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def _named_time(name: str) -> float:
    """The time a UUIDv7 in a staged or set-aside file's name says (0: none there)."""
    for part in name.split("-")[1:]:
        if len(part) == 32:
            try:
                found = uuid.UUID(hex=part)
            except ValueError:
                continue
            if found.version == 7:
                return (found.int >> 80) / 1000
    return 0.0


def _last_touched(path: Path) -> float:
    """When a staged or set-aside file was last written, renamed or named (the latest of the three)."""
    info = path.stat()
    return max(info.st_mtime, info.st_ctime, _named_time(path.name))
