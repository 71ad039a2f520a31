"""schema.condition(): a query expression kept in a record as its canonical text, read back unchanged."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmkit
from crmkit import F, ValidationError, schema
from crmkit.query import Expr


@schema.aggregate("crmkit_saved_queries")
class SavedQuery(schema.Record):
    name: str = schema.text(personal=False)
    where: str | Expr | None = schema.condition(default=None, personal=False)


class Plugin:
    @crmkit.hookimpl
    def crmkit_aggregates(self) -> list[type]:
        return [SavedQuery]


_values = st.one_of(
    st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s),
    st.integers(-(2**40), 2**40),
    st.booleans(),
    st.uuids(),
    st.dates(),
    st.datetimes(timezones=st.just(dt.timezone.utc)),
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-1000, max_value=1000),
)
_leaves = st.one_of(
    st.builds(lambda f, v: F(f) == v, st.sampled_from(["name", "attributes.tier"]), _values),
    st.builds(lambda v: F("tags").contains(v), st.text(min_size=1, max_size=5)),
    st.builds(lambda vs: F("kind").in_(vs), st.lists(st.sampled_from(["person", "organization"]), min_size=1)),
    st.builds(lambda f: F(f).is_empty(), st.sampled_from(["emails", "phones", "tags"])),
)
conditions: st.SearchStrategy[Expr] = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(lambda a, b: a & b, inner, inner),
        st.builds(lambda a, b: a | b, inner, inner),
        st.builds(lambda a: ~a, inner),
    ),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None)
@given(where=conditions)
def test_a_condition_reads_back_as_the_expression_it_was_given(where: Expr) -> None:
    stored = SavedQuery(name="q", where=where)
    assert isinstance(stored.where, str)
    assert schema.parse_condition(stored.where) == where
    assert SavedQuery(name="q", where=stored.where).where == stored.where  # the stored text is a fixed point


def test_a_condition_is_stored_as_text_and_bad_input_names_the_field(tmp_path: pytest.TempPathFactory) -> None:
    where = (F("tags").contains("vip") & (F("attributes.country") == "RO")) | (F("id") == uuid.UUID(int=7))
    with crmkit.connect(f"sqlite:///{tmp_path}/crm.db", plugins=[Plugin()]) as crm:
        saved = crm.records(SavedQuery).add(SavedQuery(name="vip", where=where))
        again = crm.records(SavedQuery).get(saved.id)
        assert again.where is not None and schema.parse_condition(again.where) == where
        assert crm.schema.declared["crmkit_saved_queries"].declared["where"].kind == "text"
    for bad in (42, object(), '{"nope": 1}', "not json", F("x") == 1j):
        with pytest.raises(ValidationError) as caught:
            SavedQuery(name="q", where=bad)
        assert caught.value.field == "where"
