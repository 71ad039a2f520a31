"""Opening stores by URL: schemes, the database from the path, passwords never shown."""

from __future__ import annotations

import subprocess
import sys

import pytest
from crmkit_mongo import MongoStore, parse_url
from crmkit_mongo._url import DEFAULT_DATABASE

import crmkit


def test_database_comes_from_the_path_with_a_default():
    assert parse_url("mongodb://h1:27017,h2/sales?replicaSet=rs0").database == "sales"
    assert parse_url("mongodb://h1/").database == DEFAULT_DATABASE
    assert parse_url("mongodb://h1").database == DEFAULT_DATABASE
    assert parse_url("mongodb://h1?replicaSet=x").database == DEFAULT_DATABASE
    assert parse_url("mongodb+srv://cluster0.example.net/crm").database == "crm"


def test_hosts_and_scheme_are_read_without_contacting_a_server():
    parsed = parse_url("mongodb+srv://ada:s3cret@cluster0.example.net/crm?retryWrites=true")
    assert parsed is not None
    assert parsed.scheme == "mongodb+srv"
    assert parsed.hosts == "cluster0.example.net"
    assert parsed.password == "s3cret"
    assert parse_url("mongodb://a:1,b:2/x").hosts == "a:1,b:2"


def test_other_schemes_are_not_ours():
    assert parse_url("memory://") is None
    assert parse_url("postgresql://h/db") is None
    assert parse_url("mongodbx://h/db") is None


def test_redacted_url_hides_the_password_even_percent_encoded():
    parsed = parse_url("mongodb://ada:p%40ss%2Fword@db.example:27017/crm")
    assert parsed is not None
    assert parsed.password == "p@ss/word"
    assert parsed.redacted == "mongodb://ada:***@db.example:27017/crm"
    assert "p%40ss" not in parsed.scrub("auth failed for p%40ss%2Fword and p@ss/word")
    assert "p@ss/word" not in parsed.scrub("auth failed for p@ss/word")


@pytest.mark.parametrize("bad", ["mongodb:///crm", "mongodb://h/a.b", "mongodb://h/a$b", "mongodb://h/" + "x" * 64])
def test_bad_urls_are_validation_errors(bad):
    with pytest.raises(crmkit.ValidationError, match="url"):
        parse_url(bad)


def test_connect_finds_the_plugin_through_its_entry_point(mongo_db_url):
    assert {"mongodb", "mongodb+srv"} <= {s for p in crmkit.plugins() for s in p.schemes}
    with crmkit.connect(mongo_db_url, tenant="acme") as crm:
        assert isinstance(crm.store, MongoStore)
        assert crm.store.db.name == parse_url(mongo_db_url).database
        caps = crm.store.capabilities
        assert caps.transactions and caps.persistent
        assert crm.customers.count() == 0


def test_unknown_client_options_are_plugin_errors(mongo_db_url):
    with pytest.raises(crmkit.PluginError, match="mongodb"):
        crmkit.connect(mongo_db_url, no_such_option_xyz=1)
    with pytest.raises(crmkit.PluginError, match="transactions"):
        crmkit.connect(mongo_db_url, transactions="yes")


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys; {code}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_core_never_imports_the_plugin_and_memory_urls_never_load_the_driver():
    assert not {"crmkit_mongo", "pymongo", "bson"} & _loaded_after("import crmkit")
    after_connect = _loaded_after("import crmkit; crmkit.connect('memory://').close()")
    assert "crmkit_mongo" in after_connect  # the entry point was loaded...
    assert not {"pymongo", "bson"} & after_connect  # ...but the driver only comes with a MongoDB URL
