"""The public API exactly as the core issue writes it, plus the import-time promises."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from decimal import Decimal

import attrs
import pytest

import crmkit
from crmkit import Channel, Customer, Interaction, Relationship, Transaction


def test_issue_example_works_exactly_as_written() -> None:
    with crmkit.connect("memory://", tenant="acme-corp") as crm:
        acme = crm.customers.add(Customer(kind="organization", name="Acme Ltd"))
        ada = crm.customers.add(Customer(kind="person", name="Ada Lovelace"))
        crm.relationships.add(Relationship(source_id=ada.id, target_id=acme.id, kind="works_for"))
        crm.interactions.add(
            Interaction(
                customer_id=ada.id,
                channel=Channel.EMAIL,
                direction="inbound",
                occurred_at=dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.timezone.utc),
                subject="Pricing",
            )
        )
        t = crm.transactions.add(
            Transaction(
                customer_id=ada.id,
                occurred_at=dt.datetime(2026, 1, 9, tzinfo=dt.timezone.utc),
                amount=Decimal("120.00"),
                currency="EUR",
            )
        )
        assert crm.customers.get(ada.id) == ada and crm.transactions.get(t.id) == t
        newer = crm.customers.update(attrs.evolve(ada, name="Ada King"))
        assert newer.version == ada.version + 1 and newer.name == "Ada King"
        assert crm.customers.get(ada.id) == newer
        with pytest.raises(crmkit.ConflictError, match="version"):
            crm.customers.update(attrs.evolve(ada, name="stale"))
        assert crm.customers.get(ada.id).name == "Ada King"
        with pytest.raises(crmkit.NotFound):
            crm.customers.get(uuid.uuid4())
        crm.customers.delete(acme.id)
        assert crm.customers.count() == 1
        assert crm.relationships.count() == 0  # the edge to Acme went with it
        with pytest.raises(RuntimeError), crm.transaction():
            crm.customers.add(Customer(kind="person", name="Charles Babbage"))
            raise RuntimeError("boom")
        assert crm.customers.count() == 1


def test_errors_form_one_hierarchy() -> None:
    assert issubclass(crmkit.ValidationError, crmkit.CRMError) and issubclass(crmkit.ValidationError, ValueError)
    assert issubclass(crmkit.NotFound, crmkit.CRMError) and issubclass(crmkit.NotFound, LookupError)
    for cls in (crmkit.ConflictError, crmkit.BackendError, crmkit.PluginError, crmkit.TransitionVetoed):
        assert issubclass(cls, crmkit.CRMError)


def test_import_crmkit_pulls_in_no_driver_numpy_or_test_tool() -> None:
    code = (
        "import sys, crmkit, crmkit.query, crmkit.store, crmkit.summaries\n"
        "heavy = ['numpy', 'scipy', 'sqlalchemy', 'pymongo', 'psycopg', 'sqlite3', 'hypothesis', 'pytest', 'pandas']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_connect_builds_no_plugin_manager_at_import() -> None:
    code = "import sys, crmkit\nprint('pluggy' in sys.modules, 'crmkit_vip_rules' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # pluggy is imported (hook markers) but no entry point is loaded until connect()
    assert out.stdout.split()[1] == "False"


def test_package_is_typed() -> None:
    import importlib.resources

    assert importlib.resources.files("crmkit").joinpath("py.typed").is_file()


def test_ids_are_time_ordered_uuid7() -> None:
    ids = [Customer(kind="person", name="x").id for _ in range(2000)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_are_ordinary_uuids() -> None:
    """The fast construction gives UUIDs indistinguishable from ``uuid.UUID(int=...)``."""
    import uuid

    from crmkit._ids import new_id

    made = new_id()
    same = uuid.UUID(int=made.int)
    assert made == same and hash(made) == hash(same) and str(made) == str(same) and made.bytes == same.bytes
    assert made.variant == uuid.RFC_4122 and made.is_safe == same.is_safe
    assert {made: 1}[same] == 1


def test_a_forked_child_draws_fresh_random_bits() -> None:
    """Random bits are drawn from os.urandom in blocks; a child must not replay its parent's block."""
    import os

    from crmkit._ids import new_id

    new_id()  # the parent now holds a partly used block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, new_id().bytes)
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    parent = new_id().bytes
    assert len(child) == 16
    assert child[8:] != parent[8:]  # the 62 random bits (and variant) differ
