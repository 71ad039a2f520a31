"""Driver errors come out as crmkit errors: duplicates as ConflictError, outages as BackendError."""

from __future__ import annotations

import traceback
import uuid

import attrs
import pymongo.errors
import pytest
from tests.support.servers import _free_port

import crmkit
from crmkit import Customer
from crmkit.entities import CUSTOMERS


def _full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def test_duplicate_ids_and_external_ids_are_conflicts(crm):
    a = crm.customers.add(Customer(kind="person", name="A", external_id="ext-1"))
    with pytest.raises(crmkit.ConflictError, match="already exists") as info:
        crm.customers.add(attrs.evolve(a, version=0))
    assert info.value.key == a.id
    with pytest.raises(crmkit.ConflictError, match="ext-1") as info:
        crm.customers.add(Customer(kind="person", name="B", external_id="ext-1"))
    assert info.value.key == "ext-1"
    b = crm.customers.add(Customer(kind="person", name="B", external_id="ext-2"))
    with pytest.raises(crmkit.ConflictError, match="ext-1"):
        crm.customers.update(attrs.evolve(b, external_id="ext-1"))
    assert crm.customers.get(b.id).external_id == "ext-2"


def test_repository_insert_writes_nothing_on_a_conflict(crm):
    repo = crm.store.repository(CUSTOMERS)
    taken = crm.customers.add(Customer(kind="person", name="Taken", external_id="t"))
    fresh = [attrs.evolve(Customer(kind="person", name=f"N{i}"), version=1) for i in range(3)]
    with pytest.raises(crmkit.ConflictError), crm.store.transaction():
        repo.insert(crm.tenant, [*fresh, attrs.evolve(taken, name="again")])
    assert crm.customers.count() == 1


def test_the_same_ids_live_apart_in_two_tenants(crm, mongo_db_url):
    a = crm.customers.add(Customer(kind="person", name="A", external_id="shared"))
    with crmkit.connect(mongo_db_url, tenant=crm.tenant + "-b") as other:
        twin = other.customers.add(attrs.evolve(a, version=0, name="Twin"))
        assert other.customers.get(a.id).name == "Twin" and twin.id == a.id
        assert other.customers.get_by_external_id("shared").name == "Twin"
        other.customers.delete(a.id)
    assert crm.customers.get(a.id).name == "A"


def test_an_unreachable_server_is_a_backend_error_naming_the_host_not_the_password():
    port = _free_port()  # nothing listens there
    secret = "pw-" + uuid.uuid4().hex  # made at run time, so no source line in a traceback holds it
    url = f"mongodb://ada:{secret}@127.0.0.1:{port}/crm"
    with pytest.raises(crmkit.BackendError) as info:
        crmkit.connect(url, serverSelectionTimeoutMS=300)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "unreachable" in message
    assert secret not in _full_text(info.value)
    assert not isinstance(info.value, pymongo.errors.PyMongoError)


def test_a_server_that_goes_away_gives_backend_errors(start_standalone):
    port, proc = start_standalone()
    crm = crmkit.connect(
        f"mongodb://127.0.0.1:{port}/gone", transactions=False, serverSelectionTimeoutMS=300, connectTimeoutMS=300
    )
    crm.customers.add(Customer(kind="person", name="A"))
    proc.kill()
    proc.wait(10)
    with pytest.raises(crmkit.BackendError, match=f"127.0.0.1:{port}"):
        crm.customers.count()
    with pytest.raises(crmkit.BackendError, match=f"127.0.0.1:{port}"):
        crm.customers.add(Customer(kind="person", name="B"))
    with pytest.raises(crmkit.BackendError):
        crm.purchase_summaries()
    crm.close()


def test_a_failed_login_is_a_backend_error_without_the_password(mongo_db_url):
    # The test server has no such user: the login fails, and the password must not show anywhere.
    scheme, _, rest = mongo_db_url.partition("://")
    secret = "pw-" + uuid.uuid4().hex
    with pytest.raises(crmkit.BackendError, match="authentication failed") as info:
        crmkit.connect(f"{scheme}://ada:{secret}@{rest}", tenant="t", serverSelectionTimeoutMS=2000)
    assert secret not in _full_text(info.value)
    assert rest.partition("/")[0].split(",")[0] in str(info.value)
