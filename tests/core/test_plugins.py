"""The plugin host: entry points, built-in plugins, misspelt hooks, listing, vocabularies."""

from __future__ import annotations

import datetime as dt
import types
import uuid
from pathlib import Path

import pytest
from tests.support.examples import example_installed

import crmkit
from crmkit import ChannelType, Customer, Interaction, Relationship, RelationshipType

UTC = dt.timezone.utc


def test_plugins_lists_builtins_with_their_schemes_and_installed_ones(tmp_path: Path) -> None:
    with example_installed(tmp_path):
        found = {p.name: p for p in crmkit.plugins()}
    assert found["crmkit.backends.memory"].schemes == ("memory",)
    assert found["crmkit.backends.memory"].builtin
    assert found["crmkit.rules.defaults"].builtin
    example = found["vip_rules"]  # the example rule plugin, installed through its entry point
    assert not example.builtin and example.distribution == "crmkit-example-vip-rules"


def test_unknown_scheme_names_what_is_served() -> None:
    with pytest.raises(crmkit.PluginError, match=r"scheme 'cassandra'.*memory"):
        crmkit.connect("cassandra://localhost/crm")


def test_url_and_tenant_are_validated() -> None:
    with pytest.raises(crmkit.ValidationError, match="url"):
        crmkit.connect("no-scheme-here")
    with pytest.raises(crmkit.ValidationError, match="tenant"):
        crmkit.connect("memory://", tenant="")
    with pytest.raises(crmkit.ValidationError, match="tenant"):
        crmkit.connect("memory://", tenant="a tenant with spaces")


def test_misspelt_hook_is_caught_by_check_pending() -> None:
    plugin = types.SimpleNamespace()

    @crmkit.hookimpl
    def crmkit_propse_stage(facts: object) -> None:  # sic: a typo
        return None

    plugin.crmkit_propse_stage = crmkit_propse_stage
    with pytest.raises(crmkit.PluginError, match="crmkit_propse_stage"):
        crmkit.connect("memory://", plugins=[plugin])


def test_plugins_add_channels_and_relationship_types() -> None:
    class Vocabulary:
        @crmkit.hookimpl
        def crmkit_channels(self) -> list[ChannelType]:
            return [ChannelType("telegram", "Telegram messages")]

        @crmkit.hookimpl
        def crmkit_relationship_types(self) -> list[RelationshipType]:
            return [RelationshipType("mentor_of", "mentee_of")]

    with crmkit.connect("memory://", plugins=[Vocabulary()]) as crm:
        a = crm.customers.add(Customer(kind="person", name="A"))
        b = crm.customers.add(Customer(kind="person", name="B"))
        crm.interactions.add(
            Interaction(customer_id=a.id, channel="telegram", direction="outbound", occurred_at=dt.datetime.now(UTC))
        )
        crm.relationships.add(Relationship(source_id=a.id, target_id=b.id, kind="mentor_of"))
        assert [r.customer_id for r in crm.relationships.neighbours(b.id, kind="mentee_of", direction="out")] == [a.id]
    with crmkit.connect("memory://") as crm:  # without the plugin the channel is unknown
        a = crm.customers.add(Customer(kind="person", name="A"))
        with pytest.raises(crmkit.ValidationError, match=r"channel.*registered"):
            crm.interactions.add(
                Interaction(
                    customer_id=a.id, channel="telegram", direction="outbound", occurred_at=dt.datetime.now(UTC)
                )
            )


def test_conflicting_vocabulary_is_a_plugin_error() -> None:
    class Clash:
        @crmkit.hookimpl
        def crmkit_relationship_types(self) -> list[RelationshipType]:
            return [RelationshipType("works_for", "pays")]

    with pytest.raises(crmkit.PluginError, match="works_for"):
        crmkit.connect("memory://", plugins=[Clash()])


def test_inverse_relationship_names_are_refused_on_write_with_a_hint() -> None:
    with crmkit.connect("memory://") as crm:
        a = crm.customers.add(Customer(kind="organization", name="Acme"))
        b = crm.customers.add(Customer(kind="person", name="Ada"))
        with pytest.raises(crmkit.ValidationError, match="inverse of 'works_for'"):
            crm.relationships.add(Relationship(source_id=a.id, target_id=b.id, kind="employs"))


def test_blocking_the_default_rules() -> None:
    with crmkit.connect("memory://", block=["crmkit.rules.defaults", "vip_rules"]) as crm:
        c = crm.customers.add(Customer(kind="person", name="A"))
        decision = crm.lifecycle.evaluate(c.id)
        assert decision.proposed is None and not decision.applied


def test_memory_urls_private_and_named() -> None:
    name = f"shared-{uuid.uuid4().hex}"
    with crmkit.connect(f"memory://{name}") as one, crmkit.connect(f"memory://{name}") as two:
        c = one.customers.add(Customer(kind="person", name="Shared"))
        assert two.customers.get(c.id) == c
    with crmkit.connect("memory://") as one, crmkit.connect("memory://") as two:
        c = one.customers.add(Customer(kind="person", name="Private"))
        with pytest.raises(crmkit.NotFound):
            two.customers.get(c.id)
    with pytest.raises(crmkit.PluginError, match="options"):
        crmkit.connect("memory://", pool_size=3)


def test_traverse_without_a_kind_walks_every_type_in_the_given_direction() -> None:
    with crmkit.connect("memory://") as crm:
        ada, acme, grace = (crm.customers.add(Customer(kind="person", name=n)) for n in ("Ada", "Acme", "Grace"))
        crm.relationships.add(Relationship(ada.id, acme.id, "works_for"))
        crm.relationships.add(Relationship(grace.id, ada.id, "referred_by"))
        crm.relationships.add(Relationship(ada.id, grace.id, "partner_of"))
        assert {r.customer_id for r in crm.relationships.traverse(ada.id)} == {acme.id, grace.id}
        assert {(r.customer_id, r.depth) for r in crm.relationships.traverse(grace.id, depth=2)} == {
            (ada.id, 1),
            (acme.id, 2),
        }
        assert [r.customer_id for r in crm.relationships.traverse(acme.id, direction="in")] == [ada.id]
        assert {r.customer_id for r in crm.relationships.neighbours(ada.id)} == {acme.id, grace.id}
