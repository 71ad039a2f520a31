"""A 100 MB file never sits whole in memory: attach reads it a chunk at a time, ``open`` reads it back so.

The file comes from a generator (it exists nowhere whole) and is checked by its hash
while it is read back; tracemalloc measures the peak of Python's allocations meanwhile.
``CRMKIT_DOCUMENT_MB`` sets the size (100 by default).
"""

from __future__ import annotations

import hashlib
import os
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.servers import unique_name

import crmkit
from crmkit import Customer
from crmkit.documents import CHUNK_SIZE, FileBlobStore

MB = 2**20
SIZE = int(os.environ.get("CRMKIT_DOCUMENT_MB", "100")) * MB
#: The most a 100 MB attach or read may hold at once: a handful of chunks, not the file.
PEAK = 16 * MB


def pseudo_random(size: int) -> Iterator[bytes]:
    """``size`` bytes in pieces of 64 KiB, none of them repeating (so no blob is shared by accident)."""
    block = random.Random(7).randbytes(64 * 1024)
    for n in range(0, size, len(block)):
        yield hashlib.sha256(n.to_bytes(8, "big")).digest() + block[: min(len(block), size - n) - 32]


def expected_hash(size: int) -> str:
    digest = hashlib.sha256()
    for piece in pseudo_random(size):
        digest.update(piece)
    return digest.hexdigest()


@pytest.mark.parametrize("where", ["sqlite", "file"])
def test_a_100_mb_file_is_attached_and_read_back_a_chunk_at_a_time(tmp_path: Path, where: str) -> None:
    plugins = [FileBlobStore(tmp_path / "blobs")] if where == "file" else []
    url = f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    with crmkit.connect(url, tenant=unique_name("big"), plugins=plugins) as crm:
        acme = crm.customers.add(Customer(name="Acme", kind="organization"))
        tracemalloc.start()
        try:
            doc = crm.documents.attach(acme, name="big.bin", data=pseudo_random(SIZE))
            attach_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            digest, size = hashlib.sha256(), 0
            with crm.documents.open(doc.id) as reader:
                while piece := reader.read(CHUNK_SIZE):
                    digest.update(piece)
                    size += len(piece)
            read_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert (doc.size, size) == (SIZE, SIZE)
    assert doc.sha256 == digest.hexdigest()
    assert doc.sha256 == expected_hash(SIZE)
    assert attach_peak < PEAK, f"attach held {attach_peak / MB:.1f} MB at its peak"
    assert read_peak < PEAK, f"reading held {read_peak / MB:.1f} MB at its peak"
    print(f"\n{where}: {SIZE // MB} MB, peak {attach_peak / MB:.1f} MB attaching, {read_peak / MB:.1f} MB reading")
