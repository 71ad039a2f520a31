"""``crm.documents``: attach files to any record, read them back as streams, versions, collection.

Bytes go through in chunks of ``CHUNK_SIZE``: an attach reads its source a chunk at a
time and writes each one before reading the next, and ``open`` returns a file object that
reads one chunk (a few at most) at a time, so no file sits whole in memory.

Blobs and their chunks are written through the aggregates' repositories, inside the
transaction of the attach: they raise no events, so the audit trail and the event feed
record documents and versions (metadata) but never copy file contents.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import attrs

from crmkit._errors import ConflictError, NotFound, PluginError, ValidationError
from crmkit._ids import new_id
from crmkit._validation import utc
from crmkit.documents._blobstores import BlobStore
from crmkit.documents._model import CHUNK_SIZE, IN_STORE, Blob, BlobChunk, Document, DocumentVersion
from crmkit.query import And, Compare, F, parse_order
from crmkit.schema import Ref
from crmkit.schema._fields import _ref_any
from crmkit.services.records import Records

if TYPE_CHECKING:
    from crmkit.crm import CRM
    from crmkit.store import Repository

__all__ = ["DocumentReader", "Documents", "exported_files", "purge_document"]

#: Chunks ``open`` reads per query (about 1 MB).
_READ_AHEAD = 4
#: Ids per ``in`` filter.
_BATCH = 500

#: What ``attach`` reads from: bytes, a binary file object, or an iterable of bytes (a generator).
Source = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


def _pieces(data: Any) -> Iterator[bytes]:
    """The bytes of a source, in pieces of exactly ``CHUNK_SIZE`` (the last one shorter), read lazily."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        for start in range(0, len(view), CHUNK_SIZE):
            yield bytes(view[start : start + CHUNK_SIZE])
        return
    read = getattr(data, "read", None)
    if callable(read):
        while True:
            piece = read(CHUNK_SIZE)
            if not isinstance(piece, (bytes, bytearray)):
                raise ValidationError("data", "must be opened in binary mode (read() gave text)", type(piece).__name__)
            if not piece:
                return
            # a raw stream may give less than asked: fill the chunk before handing it on
            buffer = bytearray(piece)
            while len(buffer) < CHUNK_SIZE:
                more = read(CHUNK_SIZE - len(buffer))
                if not more:
                    break
                buffer += more
            yield bytes(buffer)
            if len(buffer) < CHUNK_SIZE:
                return
    if isinstance(data, str) or not isinstance(data, Iterable):
        raise ValidationError("data", "must be bytes, a binary file object or an iterable of bytes", data)
    pending = bytearray()
    for piece in data:
        if not isinstance(piece, (bytes, bytearray, memoryview)):
            raise ValidationError("data", "must yield bytes", type(piece).__name__)
        pending += piece
        while len(pending) >= CHUNK_SIZE:
            yield bytes(pending[:CHUNK_SIZE])
            del pending[:CHUNK_SIZE]
    if pending:
        yield bytes(pending)


class DocumentReader(io.RawIOBase):
    """A read-only binary stream over one version's content, fetching its chunks as they are read."""

    def __init__(self, size: int, chunks: Callable[[], Iterator[bytes]]) -> None:
        super().__init__()
        self.size = size
        self._chunks = chunks()
        self._buffer = b""
        self._offset = 0

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        while self._offset >= len(self._buffer):
            nxt = next(self._chunks, None)
            if nxt is None:
                return False
            self._buffer, self._offset = nxt, 0
        return True

    def readinto(self, target: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        view = memoryview(target).cast("B")
        if not view or not self._fill():
            return 0
        n = min(len(view), len(self._buffer) - self._offset)
        view[:n] = self._buffer[self._offset : self._offset + n]
        self._offset += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if size is None or size < 0:
            return self.readall()
        out = bytearray()
        while len(out) < size and self._fill():
            take = min(size - len(out), len(self._buffer) - self._offset)
            out += self._buffer[self._offset : self._offset + take]
            self._offset += take
        return bytes(out)

    def readall(self) -> bytes:
        out = bytearray()
        while self._fill():
            out += self._buffer[self._offset :]
            self._offset = len(self._buffer)
        return bytes(out)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if callable(close):
            close()
        super().close()


class Documents(Records[Document]):
    """``crm.documents``: the records of documents, and attach, versions, open, detach and collect."""

    # ------------------------------------------------------------------ helpers

    def _repo_of(self, cls: type) -> Repository[Any]:
        crm = self._crm
        return crm.store.repository(crm.schema.spec(cls))

    def _blob_store(self, location: str | None = None) -> BlobStore | None:
        store = cast("BlobStore | None", self._crm._host.blob_store())
        if location is not None and location != IN_STORE and (store is None or store.name != location):
            raise PluginError(
                f"this content is kept in the blob store {location!r}: connect with the plugin that provides it"
            )
        return store

    def _document(self, document: Document | uuid.UUID) -> Document:
        if isinstance(document, Document):
            return self.get(document.id)
        if not isinstance(document, uuid.UUID):
            raise ValidationError("document", "must be a Document or its id", document)
        return self.get(document)

    def _blob_by_sha(self, sha256: str) -> Blob | None:
        crm = self._crm
        spec = crm.schema.spec(Blob)
        found = self._repo_of(Blob).find(crm.tenant, Compare("sha256", "==", sha256), parse_order(None, spec), 1)
        return found[0] if found else None

    def _stored_blob(self, data: Any, now: dt.datetime) -> Blob:
        """Keep the content of ``data`` once: a blob with its chunks, or the blob that already holds it (touched).

        The content is hashed while it goes to a place of its own (a temporary file that
        holds one chunk in memory at most, or the plugin's blob store), so a content kept
        already is found before anything of it is written to the store.
        """
        crm = self._crm
        outside = self._blob_store()
        if outside is not None:
            staged = outside.stage(crm.tenant, _pieces(data))
            # after the transaction: its staged copy goes, and after a commit the content is kept for sure
            crm._after_transaction(staged.finish)
            blob = self._claimed_blob(staged.sha256, staged.size, 0, outside.name, now)
            staged.keep()
            return blob
        digest, size = hashlib.sha256(), 0
        with tempfile.SpooledTemporaryFile(max_size=CHUNK_SIZE) as spool:
            for piece in _pieces(data):
                digest.update(piece)
                size += len(piece)
                spool.write(piece)
            sha256 = digest.hexdigest()
            existing = self._blob_by_sha(sha256)
            if existing is not None:  # kept already: not a chunk of it is written
                return self._touched(existing, now)
            spool.seek(0)
            blob_id, chunks, count = new_id(), self._repo_of(BlobChunk), 0
            while piece := spool.read(CHUNK_SIZE):
                chunk = BlobChunk(blob_id=blob_id, number=count, data=piece, created_at=now, updated_at=now, version=1)
                chunks.insert(crm.tenant, [chunk])
                count += 1
        return self._new_blob(blob_id, sha256, size, count, IN_STORE, now)

    def _claimed_blob(self, sha256: str, size: int, count: int, location: str, now: dt.datetime) -> Blob:
        existing = self._blob_by_sha(sha256)
        if existing is not None:
            return self._touched(existing, now)
        return self._new_blob(new_id(), sha256, size, count, location, now)

    def _touched(self, existing: Blob, now: dt.datetime) -> Blob:
        """The blob an attach takes, touched: a concurrent collect of it then fails on its version."""
        touched = attrs.evolve(existing, touched_at=now, updated_at=now, version=existing.version + 1)
        if not self._repo_of(Blob).replace(self._crm.tenant, touched, existing.version):
            raise ConflictError(
                f"blob {existing.sha256} changed concurrently (retry the attach)", entity="document blob"
            )
        return touched

    def _new_blob(
        self, blob_id: uuid.UUID, sha256: str, size: int, count: int, location: str, now: dt.datetime
    ) -> Blob:
        blob = Blob(
            id=blob_id,
            sha256=sha256,
            size=size,
            chunks=count,
            location=location,
            touched_at=now,
            created_at=now,
            updated_at=now,
            version=1,
        )
        self._repo_of(Blob).insert(self._crm.tenant, [blob])
        return blob

    # ------------------------------------------------------------------ attach

    def attach(
        self,
        about: Any,
        *,
        name: str,
        data: Source,
        content_type: str = "application/octet-stream",
    ) -> Document:
        """Attach a file to a stored record (any aggregate): its content read from ``data`` chunk by chunk.

        ``data`` is bytes, a binary file object or an iterable of bytes. The content is kept
        once per tenant, by its SHA-256: the same file attached twice is one blob. Returns
        the document, version 1, with ``sha256`` and ``size``; nothing is written if the
        record is not stored or a field is refused (``ValidationError`` names it).
        """
        crm = self._crm
        ref: Ref = _ref_any("about", about)
        now = crm.now()
        draft = Document(
            about=ref,
            name=name,
            content_type=content_type,
            sha256="0" * 64,
            size=0,
            attached_at=now,
            attached_by=crm.actor,
        )
        crm._require_references(self.spec, [draft], None)  # before reading a byte of the file
        with crm.transaction(), crm._unless_caused("api"):
            blob = self._stored_blob(data, now)
            document = self.add(attrs.evolve(draft, sha256=blob.sha256, size=blob.size))
            self._add_version(document, blob, 1, now)
        return document

    def add_version(
        self,
        document: Document | uuid.UUID,
        *,
        data: Source,
        name: str | None = None,
        content_type: str | None = None,
    ) -> Document:
        """Add a new version of a document (older versions are kept); its name and type may change with it."""
        crm = self._crm
        now = crm.now()
        with crm.transaction(), crm._unless_caused("api"):
            current = self._document(document)
            changes: dict[str, Any] = {"attached_at": now, "attached_by": crm.actor, "latest": current.latest + 1}
            if name is not None:
                changes["name"] = name
            if content_type is not None:
                changes["content_type"] = content_type
            draft = attrs.evolve(current, **changes)  # refuses a bad name before the file is read
            blob = self._stored_blob(data, now)
            updated = self.update(attrs.evolve(draft, sha256=blob.sha256, size=blob.size))
            self._add_version(updated, blob, updated.latest, now)
        return updated

    def _add_version(self, document: Document, blob: Blob, number: int, now: dt.datetime) -> None:
        version = DocumentVersion(
            document_id=document.id,
            number=number,
            blob_id=blob.id,
            sha256=blob.sha256,
            size=blob.size,
            content_type=document.content_type,
            added_at=now,
            added_by=self._crm.actor,
        )
        self._crm.records(DocumentVersion).add(version)

    # ------------------------------------------------------------------ reads

    def for_record(self, record: Any) -> list[Document]:
        """The documents attached to a record (a record, a ``schema.Ref`` or an (aggregate, id) pair), oldest first."""
        ref = _ref_any("record", record)
        where = (F("about.aggregate") == ref.aggregate) & (F("about.id") == ref.id)
        return list(self.stream(where, order_by=("attached_at", "id")))

    def versions(self, document: Document | uuid.UUID) -> list[DocumentVersion]:
        """Every version of a document, the first one first."""
        id = document.id if isinstance(document, Document) else document
        return list(self._crm.records(DocumentVersion).stream(F("document_id") == id, order_by="number"))

    def version(self, document: Document | uuid.UUID, number: int | None = None) -> DocumentVersion:
        """One version of a document (the latest when ``number`` is None); NotFound if it has none such."""
        current = self._document(document)
        wanted = current.latest if number is None else number
        found = self._crm.records(DocumentVersion).find(
            (F("document_id") == current.id) & (F("number") == wanted), limit=1
        )
        if not found:
            raise NotFound("document version", f"{current.id}#{wanted}")
        return found[0]

    def open(self, document: Document | uuid.UUID, *, version: int | None = None) -> BinaryIO:
        """A binary file object reading a version's content (the latest by default) chunk by chunk."""
        chosen = self.version(document, version)
        blob = self._crm.records(Blob).get(chosen.blob_id)
        return self._open_blob(blob)

    def _open_blob(self, blob: Blob) -> BinaryIO:
        crm = self._crm
        if blob.location != IN_STORE:
            store = self._blob_store(blob.location)
            assert store is not None
            return store.open(crm.tenant, blob.sha256)
        repo = self._repo_of(BlobChunk)
        spec = crm.schema.spec(BlobChunk)
        order = parse_order(("number",), spec)
        tenant, blob_id, count = crm.tenant, blob.id, blob.chunks

        def chunks() -> Iterator[bytes]:
            for first in range(0, count, _READ_AHEAD):
                where = And(
                    (
                        Compare("blob_id", "==", blob_id),
                        Compare("number", ">=", first),
                        Compare("number", "<", first + _READ_AHEAD),
                    )
                )
                found = repo.find(tenant, where, order, _READ_AHEAD)
                expected = min(_READ_AHEAD, count - first)
                if [c.number for c in found] != list(range(first, first + expected)):
                    raise NotFound("document blob chunk", f"{blob_id}#{first}")
                for chunk in found:
                    yield chunk.data

        return cast(BinaryIO, DocumentReader(blob.size, chunks))

    # ------------------------------------------------------------------ removal

    def detach(self, document: Document | uuid.UUID) -> None:
        """Delete a document and every version of it; its blobs go at the next ``collect`` past their grace period."""
        current = self._document(document)
        with self._crm._unless_caused("api"):
            self.delete(current.id)

    def collect(self, *, older_than: dt.timedelta) -> int:
        """Delete the blobs no version uses that no document took for ``older_than``; returns how many.

        The grace period protects an attach running meanwhile: a blob that an attach takes
        is touched in the attach's transaction, so collecting it then fails instead of
        leaving a version without content. A plugin's blob store also loses contents no
        blob names (left by an attach that was rolled back) once they are that old, and one
        that can (``SweepingBlobStore.sweep``) clears the copies left by attaches and
        deletions whose process died, first putting back, from them, any content a blob
        names that is missing.
        """
        if not isinstance(older_than, dt.timedelta) or older_than < dt.timedelta(0):
            raise ValidationError("older_than", "must be a timedelta of zero or more", older_than)
        crm = self._crm
        cutoff = utc(crm.now() - older_than, "older_than")
        blobs = crm.records(Blob)
        candidates = [b.id for b in blobs.stream(F("touched_at") <= cutoff, order_by=("touched_at", "id"))]
        removed = 0
        for start in range(0, len(candidates), _BATCH):
            ids = candidates[start : start + _BATCH]
            for blob_id in sorted(set(ids) - self._used(ids)):
                try:
                    if self._collect_one(blob_id, cutoff):
                        removed += 1
                except ConflictError:  # an attach took it meanwhile: it stays
                    continue
        store = self._blob_store()
        if store is not None:
            sweep = getattr(store, "sweep", None)
            if callable(sweep):  # copies left by attaches and deletions that died: what a blob names goes back
                sweep(crm.tenant, older_than=older_than, wanted=lambda sha256: self._blob_by_sha(sha256) is not None)
            # contents no blob names (an attach rolled back), deleted as below
            for sha256, written in list(store.contents(crm.tenant)):
                if written <= cutoff and self._blob_by_sha(sha256) is None:
                    store.delete(crm.tenant, sha256, unless=self._named(sha256))
        return removed

    def _used(self, blob_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        versions = self._crm.records(DocumentVersion)
        rows = versions.aggregate(group_by="blob_id", count=True, where=F("blob_id").in_(blob_ids))
        return {row["blob_id"] for row in rows}

    def _collect_one(self, blob_id: uuid.UUID, cutoff: dt.datetime) -> bool:
        crm = self._crm
        with crm.transaction():
            blob = self._repo_of(Blob).get(crm.tenant, blob_id)
            if blob is None or blob.touched_at > cutoff or self._used([blob_id]):
                return False
            self._delete_blob(blob)
        return True

    def _delete_blob(self, blob: Blob) -> None:
        """Delete a blob and its chunks (inside a transaction); bytes kept outside go once it has committed."""
        crm = self._crm
        self._repo_of(BlobChunk).delete_where(crm.tenant, Compare("blob_id", "==", blob.id))
        if not self._repo_of(Blob).delete(crm.tenant, blob.id, blob.version):
            raise ConflictError(f"blob {blob.sha256} was taken by an attach meanwhile", entity="document blob")
        if blob.location != IN_STORE:
            store = self._blob_store(blob.location)
            assert store is not None
            tenant, sha256, named = crm.tenant, blob.sha256, self._named(blob.sha256)

            def forget(committed: bool) -> None:  # never before the commit: a rollback keeps the blob
                if committed:
                    store.delete(tenant, sha256, unless=named)

            crm._after_transaction(forget)

    def _named(self, sha256: str) -> Callable[[], bool]:
        """Whether a committed blob names the content (asked by a blob store's deletion, outside any transaction)."""
        return lambda: self._blob_by_sha(sha256) is not None


def _documents(crm: Any) -> Documents:
    return cast(Documents, crm.records(Document))


def purge_document(crm: CRM, document: Document) -> None:
    """Erase a document (``crm.privacy.erase``): it, its versions, and the blobs no other document uses.

    Written through the repositories, so no event (nor the feed) copies the document's
    metadata again; other records hanging off it (a note about it) follow their
    references' ``on_delete`` as on any delete.
    """
    service = _documents(crm)
    versions = service.versions(document.id)
    service._repo_of(DocumentVersion).delete_where(crm.tenant, Compare("document_id", "==", document.id))
    crm._on_delete(service.spec, document.id)
    repo = service._repo_of(Document)
    current = repo.get(crm.tenant, document.id)
    if current is not None and not repo.delete(crm.tenant, current.id, current.version):
        raise ConflictError(f"document {document.id} was changed concurrently during the erase", entity="document")
    blob_ids = sorted({v.blob_id for v in versions})
    still_used = service._used(blob_ids) if blob_ids else set()
    for blob_id in blob_ids:
        blob = service._repo_of(Blob).get(crm.tenant, blob_id)
        if blob is None or blob_id in still_used:
            continue
        # erasure does not wait for a grace period: a file kept outside goes as soon as the erase commits
        service._delete_blob(blob)


def exported_files(crm: CRM, document: Document) -> list[dict[str, Any]]:
    """Every version of a document with its content in base64 (``crm.privacy.export(..., files=True)``)."""
    service = _documents(crm)
    out = []
    for version in service.versions(document.id):
        blob = crm.records(Blob).get(version.blob_id)
        with service._open_blob(blob) as stream:
            content = stream.read()
        out.append(
            {
                "document_id": str(document.id),
                "name": document.name,
                "version": version.number,
                "content_type": version.content_type,
                "sha256": version.sha256,
                "size": version.size,
                "base64": base64.b64encode(content).decode("ascii"),
            }
        )
    return out
