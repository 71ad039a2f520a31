"""Documents: files attached to any stored record, kept once by content, versioned, streamed.

``crm.documents.attach(record, name=..., data=...)`` reads the file chunk by chunk and
keeps its content once per tenant (by SHA-256), as chunk records in the store itself or in
a blob store a plugin provides (``FileBlobStore`` ships); ``crm.documents.open(id)`` reads
it back as a stream; ``add_version`` keeps every earlier version; ``detach`` and
``collect(older_than=...)`` remove documents and, after a grace period, the blobs no
version uses. docs/documents.md shows it at work.
"""

from crmkit.documents._blobstores import BlobStore, FileBlobStore, StagedBlob, SweepingBlobStore
from crmkit.documents._model import CHUNK_SIZE, IN_STORE, Blob, BlobChunk, Document, DocumentVersion
from crmkit.documents._service import DocumentReader, Documents

__all__ = [
    "AGGREGATES",
    "CHUNK_SIZE",
    "IN_STORE",
    "Blob",
    "BlobChunk",
    "BlobStore",
    "Document",
    "DocumentReader",
    "DocumentVersion",
    "Documents",
    "FileBlobStore",
    "StagedBlob",
    "SweepingBlobStore",
]

#: The aggregates of documents, in the order their references need (``crmkit_aggregates``).
AGGREGATES = (Document, Blob, DocumentVersion, BlobChunk)

Document.__crmkit_records__ = Documents  # type: ignore[attr-defined]  # crm.documents is a Documents
