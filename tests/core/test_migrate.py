"""``crm.migrate()`` and ``crmkit migrate URL``: a store brought to every installed aggregate."""

from __future__ import annotations

import io
from pathlib import Path

import sqlalchemy as sa

import crmkit
from crmkit.cli import main


def test_migrate_on_memory_has_nothing_to_do() -> None:
    with crmkit.connect("memory://") as crm:
        assert crm.migrate() == "nothing to migrate"


def test_crmkit_migrate_creates_every_table_of_a_new_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    out = io.StringIO()
    assert main(["migrate", url], out=out) == 0
    report = out.getvalue()
    assert "revision" in report and "subscriptions" in report  # the installed example plugin's aggregate
    engine = sa.create_engine(url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"customers", "transactions", "subscriptions"} <= tables
    again = io.StringIO()
    assert main(["migrate", url], out=again) == 0  # idempotent
    assert again.getvalue() == report


def test_crmkit_migrate_names_a_bad_url() -> None:
    assert main(["migrate", "nosuchscheme://x"], out=io.StringIO()) == 1
