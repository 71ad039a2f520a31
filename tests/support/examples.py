"""Install an example plugin for one test only: its entry point, seen by ``crmkit.connect``, then gone.

``dev.py setup`` does not install ``examples/vip-rules`` into the development virtualenv:
a rule plugin found through the ``crmkit`` entry-point group is loaded by every
connection, and the example's rules (VIPs loyal at once, a ``whatsapp`` channel) would
change what every other test, the demo and any application in that environment see. The
tests about it install it here instead, by putting a minimal distribution (its metadata
and entry point) and its sources on ``sys.path`` for the duration of the test.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The example rule plugin: (distribution, version, entry point name, module, source folder).
VIP_RULES = ("crmkit-example-vip-rules", "0.1.0", "vip_rules", "crmkit_vip_rules", ROOT / "examples/vip-rules/src")


@contextmanager
def example_installed(folder: Path, example: tuple[str, str, str, str, Path] = VIP_RULES) -> Iterator[None]:
    """Make ``example``'s entry point visible (a no-op when its distribution is installed already)."""
    distribution, version, entry, module, source = example
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        yield
        return
    info = folder / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[crmkit]\n{entry} = {module}\n")
    added = [str(folder), str(source)]
    sys.path[:0] = added
    try:
        yield
    finally:
        for path in added:
            sys.path.remove(path)
        sys.modules.pop(module, None)
