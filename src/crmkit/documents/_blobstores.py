"""Where a document's bytes may live outside the store: the ``BlobStore`` protocol and a directory store.

A plugin provides a blob store through the ``crmkit_blob_store`` hook; ``FileBlobStore``
is one, and is its own plugin::

    crmkit.connect(url, plugins=[FileBlobStore("file:///var/lib/crm/blobs")])

Blob stores key contents by tenant and SHA-256, so the same file is kept once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from crmkit._errors import NotFound, ValidationError
from crmkit.hookspecs import hookimpl

__all__ = ["BlobStore", "FileBlobStore"]


@runtime_checkable
class BlobStore(Protocol):
    """Keeps contents by tenant and SHA-256, outside the store (``crmkit_blob_store``)."""

    #: The name kept in ``Blob.location`` (``"file"``): a blob is read back from the store of that name.
    name: str

    def put(self, tenant: str, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Keep the bytes of ``chunks`` (read one at a time); return their SHA-256 (hex) and size.

        Atomic: a reader never sees part of a content, and a failed write leaves nothing
        under the key. Putting a content already kept keeps one copy.
        """
        ...

    def open(self, tenant: str, sha256: str) -> BinaryIO:
        """A binary file object reading the content (``NotFound`` if it is not kept)."""
        ...

    def delete(self, tenant: str, sha256: str) -> None:
        """Forget a content (nothing happens if it is not kept)."""
        ...

    def contents(self, tenant: str) -> Iterator[tuple[str, dt.datetime]]:
        """Every content kept for the tenant: its SHA-256 and when it was written (for ``collect``)."""
        ...


class FileBlobStore:
    """A blob store in a directory: ``<root>/<tenant>/<sha256[:2]>/<sha256>``, written atomically.

    ``root`` is a path or a ``file://`` URL. Each content is written to a temporary file in
    the same directory, flushed to disk, then renamed into place, so a crash never leaves a
    partial file under a content's name. Register the object as a plugin to use it.
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

    def put(self, tenant: str, chunks: Iterable[bytes]) -> tuple[str, int]:
        folder = self._folder(tenant)
        folder.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            target = self._path(tenant, sha256)
            target.parent.mkdir(exist_ok=True)
            os.replace(temporary, target)  # atomic: the content appears whole, or not at all
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return sha256, size

    def open(self, tenant: str, sha256: str) -> BinaryIO:
        try:
            return self._path(tenant, sha256).open("rb")
        except FileNotFoundError:
            raise NotFound("document blob", f"{sha256} in {self!r}") from None

    def delete(self, tenant: str, sha256: str) -> None:
        self._path(tenant, sha256).unlink(missing_ok=True)

    def contents(self, tenant: str) -> Iterator[tuple[str, dt.datetime]]:
        folder = self._folder(tenant)
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("??/*")):
            if path.is_file() and len(path.name) == 64:
                written = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
                yield path.name, written
