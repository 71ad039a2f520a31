"""The docs stay true: their Python examples run, and every hook is documented."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import pytest

from crmkit import hookspecs

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
DOCS = [
    p
    for p in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    if BLOCK.search(p.read_text(encoding="utf-8"))
]


def test_every_hookspec_is_documented_with_its_arguments() -> None:
    text = (ROOT / "docs" / "plugin_hooks.md").read_text(encoding="utf-8")
    specs = [name for name in dir(hookspecs) if name.startswith("crmkit_")]
    assert len(specs) >= 8
    for name in specs:
        section = re.search(rf"^## {name}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
        assert section, f"docs/plugin_hooks.md has no section for {name}"
        for arg in inspect.signature(getattr(hookspecs, name)).parameters:
            assert arg in section.group(1), f"{name}: argument {arg} is not documented"


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_python_examples_in_docs_run(path: Path, tmp_path: Path) -> None:
    blocks = BLOCK.findall(path.read_text(encoding="utf-8"))
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # examples may create files such as crm.db
    try:
        for i, code in enumerate(blocks):
            try:
                exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)
            except Exception as exc:  # pragma: no cover - the message is the point
                raise AssertionError(f"{path.name} block {i} failed: {exc!r}\n{code}") from exc
    finally:
        os.chdir(cwd)
