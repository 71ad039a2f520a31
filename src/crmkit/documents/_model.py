"""The aggregates of documents, each declared once: documents, their versions, blobs and blob chunks.

A document is a file attached to a record of any aggregate (``about``). Each attach or
new version adds a ``DocumentVersion`` that points at a ``Blob``: the content, kept once
per tenant by its SHA-256 however many versions share it. A blob's bytes are either in
the store itself, as ``BlobChunk`` records of at most ``CHUNK_SIZE`` bytes (rows of a
table in SQL, GridFS-style chunk documents in MongoDB, all derived from these
declarations), or in a blob store a plugin provides (``crmkit_blob_store``), named by
``location``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from crmkit import schema

__all__ = ["CHUNK_SIZE", "IN_STORE", "Blob", "BlobChunk", "Document", "DocumentVersion"]

#: The bytes of one stored chunk (GridFS's size): a file never sits whole in memory, and
#: every store holds a chunk in one row or document.
CHUNK_SIZE = 255 * 1024
#: ``Blob.location`` of bytes kept as chunks in the store itself.
IN_STORE = "store"


def _purge(record: Document, crm: Any) -> None:
    from crmkit.documents._service import purge_document

    purge_document(crm, record)


def _export(record: Document, crm: Any) -> list[dict[str, Any]]:
    from crmkit.documents._service import exported_files

    return exported_files(crm, record)


@schema.aggregate(
    "documents",
    label="document",
    time_field="attached_at",
    indexes=[("about", "attached_at")],
)
class Document(schema.Record):
    """A file attached to a record: its name, type, and the content of its latest version.

    ``sha256`` and ``size`` are those of version ``latest``; every version stays
    (``crm.documents.versions``).
    """

    #: Erasing the person a document is attached to (directly or through what hangs off
    #: them) deletes it and its blobs no other document uses (``crm.privacy.erase``).
    __crmkit_erase_owned__: ClassVar[Any] = staticmethod(_purge)
    #: ``crm.privacy.export(..., files=True)`` adds the bytes of every version.
    __crmkit_export_files__: ClassVar[Any] = staticmethod(_export)

    about: schema.Ref = schema.ref_any(on_delete="cascade", personal=False)
    name: str = schema.text(sortable=True, personal="free_text", search=True)
    content_type: str = schema.text(default="application/octet-stream", personal=False)
    #: The number of the latest version (1 for a document never replaced).
    latest: int = schema.integer(default=1, personal=False)
    sha256: str = schema.text(personal=False)
    size: int = schema.integer(sortable=True, personal=False)
    attached_at: dt.datetime = schema.instant(sortable=True, personal=False)
    #: Who attached the latest version (the connection's actor).
    attached_by: str | None = schema.text(default=None, personal=False)


@schema.aggregate(
    "document_versions",
    label="document version",
    time_field="added_at",
    unique=[("document_id", "number")],
    indexes=[("blob_id",)],
)
class DocumentVersion(schema.Record):
    """One version of a document, kept when later ones are added (append-only through ``crm.documents``)."""

    document_id: uuid.UUID = schema.ref("documents", on_delete="cascade", personal=False)
    number: int = schema.integer(sortable=True, personal=False)
    #: The content; a blob is never deleted while a version refers to it.
    blob_id: uuid.UUID = schema.ref("document_blobs", on_delete="restrict", personal=False)
    sha256: str = schema.text(personal=False)
    size: int = schema.integer(personal=False)
    content_type: str = schema.text(default="application/octet-stream", personal=False)
    added_at: dt.datetime = schema.instant(sortable=True, personal=False)
    added_by: str | None = schema.text(default=None, personal=False)


@schema.aggregate(
    "document_blobs",
    label="document blob",
    time_field="touched_at",
    unique=[("sha256",)],
)
class Blob(schema.Record):
    """A content kept once per tenant, named by its SHA-256; collected once no version uses it."""

    #: Written by ``crm.documents`` alone (its chunks through the repositories, raising no
    #: events): the audit trail and the event feed never copy file contents.
    __crmkit_audit__: ClassVar[bool] = False
    #: Random records (the generic contract) are kept in the store: no plugin names another place.
    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {"location": (IN_STORE,)}

    sha256: str = schema.text(sortable=True, personal=False)
    size: int = schema.integer(sortable=True, personal=False)
    #: How many chunks hold it in the store (0 for a blob kept elsewhere).
    chunks: int = schema.integer(default=0, personal=False)
    #: Where the bytes are: ``"store"`` (chunks), or the name of a plugin's blob store (``"file"``).
    location: str = schema.text(default=IN_STORE, personal=False)
    #: When a document last took it: ``collect`` keeps a blob unused for less than its grace period.
    touched_at: dt.datetime = schema.instant(sortable=True, personal=False)


@schema.aggregate(
    "document_blob_chunks",
    label="document blob chunk",
    unique=[("blob_id", "number")],
    default_order=("blob_id", "number"),
)
class BlobChunk(schema.Record):
    """Bytes ``number * CHUNK_SIZE`` onwards of a blob kept in the store (GridFS's ``fs.chunks``)."""

    __crmkit_audit__: ClassVar[bool] = False

    blob_id: uuid.UUID = schema.ref("document_blobs", on_delete="cascade", personal=False)
    number: int = schema.integer(sortable=True, personal=False)
    #: A file's bytes; erasing the person a document is about deletes the blobs only they used.
    data: bytes = schema.binary(personal=False)
