"""Attach and read back a large file: crmkit's chunked documents next to a plain file copy.

    python benchmarks/bench_documents.py                  # 100 MB, SQLite and a FileBlobStore
    python benchmarks/bench_documents.py --mb 200 --url postgresql://...

The peer is what an application does without crmkit: copy the stream into a file with
``shutil.copyfileobj`` while hashing it, and read it back hashing it again. crmkit does
the same work plus a row (or a document) per 255 KiB chunk in one transaction. For each,
the time and the peak of Python's allocations (tracemalloc) are printed; the ratio is
crmkit's time over the peer's.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import crmkit  # noqa: E402
from crmkit import Customer  # noqa: E402
from crmkit.documents import CHUNK_SIZE, FileBlobStore  # noqa: E402

MB = 2**20


class Source:
    """A binary stream of ``size`` bytes made on the fly (the file exists nowhere whole)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = random.Random(1).randbytes(MB)
        self.n = 0

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        out = bytearray()
        while len(out) < n:
            take = min(n - len(out), len(self.block))
            out += self.n.to_bytes(8, "big") + self.block[: take - 8] if take > 8 else self.block[:take]
            self.n += 1
        self.left -= n
        return bytes(out)


def measured(work: Callable[[], Any]) -> tuple[float, float, Any]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = work()
        return time.perf_counter() - started, tracemalloc.get_traced_memory()[1] / MB, result
    finally:
        tracemalloc.stop()


def peer(size: int, folder: Path) -> tuple[tuple[float, float], tuple[float, float]]:
    target = folder / "peer.bin"

    class Hashing:
        def __init__(self, inner: Source) -> None:
            self.inner, self.digest = inner, hashlib.sha256()

        def read(self, n: int = -1) -> bytes:
            piece = self.inner.read(n)
            self.digest.update(piece)
            return piece

    def write() -> str:
        source = Hashing(Source(size))
        with target.open("wb") as out:
            shutil.copyfileobj(source, out, CHUNK_SIZE)
        return source.digest.hexdigest()

    def read() -> str:
        digest = hashlib.sha256()
        with target.open("rb") as stream:
            while piece := stream.read(CHUNK_SIZE):
                digest.update(piece)
        return digest.hexdigest()

    w = measured(write)
    r = measured(read)
    assert w[2] == r[2]
    return (w[0], w[1]), (r[0], r[1])


def crmkit_run(url: str, size: int, plugins: list[object]) -> tuple[tuple[float, float], tuple[float, float]]:
    with crmkit.connect(url, tenant="bench", plugins=plugins) as crm:
        crm.migrate()
        acme = crm.customers.add(Customer(name="Acme", kind="organization"))
        w = measured(lambda: crm.documents.attach(acme, name="big.bin", data=Source(size)))
        doc = w[2]

        def read() -> str:
            digest = hashlib.sha256()
            with crm.documents.open(doc.id) as stream:
                while piece := stream.read(CHUNK_SIZE):
                    digest.update(piece)
            return digest.hexdigest()

        r = measured(read)
        assert r[2] == doc.sha256
    return (w[0], w[1]), (r[0], r[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--url", default=None, help="a store URL (default: a fresh SQLite file)")
    args = parser.parse_args(argv)
    size = args.mb * MB
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = args.url or f"sqlite:///{(folder / 'crm.db').as_posix()}"
        (pw, pr) = peer(size, folder)
        rows: list[tuple[str, tuple[float, float], tuple[float, float]]] = [
            ("chunks in the store", *crmkit_run(url, size, [])),
            ("FileBlobStore", *crmkit_run(url, size, [FileBlobStore(folder / "blobs")])),
        ]
        print(f"{args.mb} MB; peer (file copy + sha256): write {pw[0]:.2f} s (peak {pw[1]:.1f} MB), "
              f"read {pr[0]:.2f} s (peak {pr[1]:.1f} MB)")
        print("| crmkit | attach | peak | ratio | read | peak | ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, (wt, wm), (rt, rm) in rows:
            attach = f"{wt:.2f} s | {wm:.1f} MB | {wt / pw[0]:.1f}"
            print(f"| {name} | {attach} | {rt:.2f} s | {rm:.1f} MB | {rt / pr[0]:.1f} |")


if __name__ == "__main__":
    main()
