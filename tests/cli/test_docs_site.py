"""The docs site's configuration stays complete: every page is in the navigation, every API page resolves."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


def test_every_docs_page_is_in_the_navigation() -> None:
    listed = set(re.findall(r":\s+(\S+\.md)\s*$", CONFIG, re.M))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages - listed == set(), "pages missing from mkdocs.yml's nav"
    assert listed - pages == set(), "mkdocs.yml names pages that do not exist"


def test_every_api_reference_names_an_importable_object() -> None:
    targets = re.findall(r"^::: (\S+)$", "\n".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md")), re.M)
    assert len(targets) >= 10
    for target in targets:
        module, _, name = target.rpartition(".")
        try:
            importlib.import_module(target)
        except ImportError:
            assert hasattr(importlib.import_module(module), name), target
