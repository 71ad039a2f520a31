"""Text search as people type it (``matches``, ``startswith``), judged by the reference ``crmkit.query.evaluate``.

Names are drawn by Hypothesis from words written every way people write them (case,
Romanian comma and cedilla letters, German sharp s, Arabic and Persian letter variants,
punctuation, random Unicode text); queries from the words and prefixes of what was
stored, rewritten the same ways. The store must find exactly the records the reference
finds (``crmkit.search.fold`` in Python), for customers' names and for every searchable
field of every declared aggregate, negated conditions included.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from crmkit import ConflictError, F, ValidationError
from crmkit.backends.memory import sort_key
from crmkit.crm import CRM
from crmkit.entities import EntitySpec
from crmkit.query import Expr, bind, evaluate, parse_order
from crmkit.schema import AggregateSpec
from crmkit.search import fold
from crmkit.testing import strategies as cs
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._aggregate_kit import AggregateKit
from crmkit.testing.conformance._harness import ContractBase, conformance_settings, person

__all__ = ["SearchContract", "names", "searches"]

#: Words as people write them: the same name in several spellings.
_WORDS = (
    "Ștefan", "Ştefan", "Stefan", "STEFAN", "ştefania", "Popescu", "POPESCU", "popescu", "Pop",
    "Ionuț", "Ionut", "Țară", "Müller", "MULLER", "Straße", "STRASSE", "Łukasz", "O'Brien",
    "Ana-Maria", "José", "JOSE", "Ǆemal", "ﬁona", "علي", "علی", "كريمي", "کریمی", "مريم",
    "مریم", "Ελένη", "ΕΛΕΝΗ", "東京", "x", "Ab",
)  # fmt: skip
_SEPARATORS = (" ", ", ", "-", "  ", ".", "_", "\u200c", " / ")


def _recase(word: str, how: int) -> str:
    return (word, word.upper(), word.lower(), word.title())[how % 4]


@st.composite
def _spelled(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=4))
    out = parts[0]
    for part in parts[1:]:
        out += draw(st.sampled_from(_SEPARATORS)) + part
    return out


def names() -> SearchStrategy[str]:
    """Non-blank texts: words spelled several ways, and now and then any Unicode text."""
    return st.one_of(_spelled(), _spelled(), _spelled(), cs.texts(min_size=1, max_size=20, blank=False))


def searches(field: str, stored: list[str]) -> SearchStrategy[list[Expr]]:
    """Conditions on ``field``: ``matches`` of stored and other words, prefixes folded and not."""
    pool = list(_WORDS) + [w for text in stored for w in text.split()]

    @st.composite
    def build(draw: st.DrawFn) -> list[Expr]:
        words = draw(st.lists(st.sampled_from(pool), max_size=3))
        query = " ".join(_recase(w, draw(st.integers(0, 3))) for w in words)
        source = draw(st.sampled_from(stored)) if stored else draw(_spelled())
        cut = draw(st.integers(0, len(source)))
        folded = fold(source)
        fcut = draw(st.integers(0, len(folded)))
        prefix = _recase(folded[:fcut], draw(st.integers(0, 3)))
        return [
            F(field).matches(query),
            F(field).startswith(prefix, fold=True),
            F(field).startswith(source[:cut], fold=True),
            F(field).startswith(source[:cut]),
        ]

    return build()


def _check(service: Any, spec: EntitySpec, stored: list[Any], where: Expr) -> None:
    for condition in (where, ~where):
        bound = bind(condition, spec)
        want = sorted(r.id for r in stored if evaluate(bound, spec, r))
        got = sorted(r.id for r in service.scan(condition))
        assert got == want, condition
        assert service.count(condition) == len(want), condition


class SearchContract(ContractBase):
    """``matches`` and ``startswith`` on customers' names and declared searchable fields; sorting by attributes."""

    def test_customer_names_match_the_reference(self, crmkit_backend: Backend) -> None:
        @conformance_settings(max_examples=20)
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            crm = crmkit_backend.crm()
            written = data.draw(st.lists(names(), min_size=1, max_size=8), label="names")
            crm.customers.add_many([person(n) for n in written])
            stored = list(crm.customers.scan())
            for where in data.draw(searches("name", written), label="searches"):
                _check(crm.customers, crm.customers.spec, stored, where)

        check()

    def test_declared_search_fields_match_the_reference(self, crmkit_backend: Backend) -> None:
        declared = crmkit_backend.crm().schema.declared.values()
        for spec in [s for s in declared if any(fd.search for fd in s.declared.values())]:
            self._declared(crmkit_backend, spec)

    def _declared(self, crmkit_backend: Backend, spec: AggregateSpec) -> None:
        searched = [fd for fd in spec.declared.values() if fd.search]
        free: dict[str, Any] = {
            fd.name: names() if not fd.nullable else st.none() | names() for fd in searched if not fd.check
        }

        @conformance_settings(max_examples=10)
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            crm = crmkit_backend.crm()
            kit = AggregateKit(crm, spec)
            records = data.draw(cs.record_lists(spec, targets=kit.targets, max_size=6, **free), label="records")
            kit.service.add_many(records)
            stored = list(kit.service.scan())
            for fd in searched:
                values = [v for r in stored if isinstance(v := getattr(r, fd.name), str)]
                for where in data.draw(searches(fd.name, values), label=f"{fd.name} searches"):
                    _check(kit.service, spec, stored, where)

        check()

    def test_search_follows_every_write(self, crmkit_backend: Backend) -> None:
        """Stores that keep word indexes keep them in step: added, bulk-added, upserted, updated, deleted."""

        @conformance_settings(max_examples=10)
        @given(
            first=st.lists(names(), min_size=2, max_size=6),
            later=st.lists(names(), min_size=2, max_size=6),
            data=st.data(),
        )
        def check(first: list[str], later: list[str], data: st.DataObject) -> None:
            crm = crmkit_backend.crm()
            one = crm.customers.add(person(first[0], external_id="x0"))
            crm.customers.add_many([person(n, external_id=f"x{i}") for i, n in enumerate(first[1:], 1)])
            crm.customers.update(attrs.evolve(one, name=later[0]))
            crm.customers.upsert_many(
                [person(n, external_id=f"x{i}") for i, n in enumerate(later[1:], 1)]  # renamed, or new
            )
            stored = list(crm.customers.scan())
            crm.customers.delete(stored[-1].id)
            stored = list(crm.customers.scan())
            written = first + later
            for where in data.draw(searches("name", written), label="searches"):
                _check(crm.customers, crm.customers.spec, stored, where)

        check()

    def test_declared_search_follows_every_write(self, crmkit_backend: Backend) -> None:
        declared = crmkit_backend.crm().schema.declared.values()
        for spec in [s for s in declared if any(fd.search and not fd.check for fd in s.declared.values())]:
            self._declared_writes(crmkit_backend, spec)

    def _declared_writes(self, crmkit_backend: Backend, spec: AggregateSpec) -> None:
        searched = [fd for fd in spec.declared.values() if fd.search and not fd.check]
        free: dict[str, Any] = {fd.name: names() if not fd.nullable else st.none() | names() for fd in searched}

        @conformance_settings(max_examples=8)
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            crm = crmkit_backend.crm()
            kit = AggregateKit(crm, spec)
            drawn = cs.record_lists(spec, targets=kit.targets, min_size=2, max_size=6, **free)
            records = data.draw(drawn, label="records")
            kit.service.add_many(records)
            stored = list(kit.service.scan())
            renamed = {fd.name: data.draw(free[fd.name], label=f"new {fd.name}") for fd in searched}
            try:
                kit.service.update(attrs.evolve(stored[0], **renamed))
            except (ValidationError, ConflictError):  # refused (its checks, a unique key): nothing changed
                pass
            kit.service.delete(stored[-1].id)
            stored = list(kit.service.scan())
            for fd in searched:
                values = [v for r in stored if isinstance(v := getattr(r, fd.name), str)]
                values += [v for v in (renamed[fd.name],) if isinstance(v, str)]
                for where in data.draw(searches(fd.name, values), label=f"{fd.name} searches"):
                    _check(kit.service, spec, stored, where)

        check()

    def test_the_issue_examples(self, crm: CRM) -> None:
        written = ["Ștefan Popescu", "Ştefan Popescu", "POPESCU, Stefan", "Stefania Popa", "علي كريمي", "Ana Pop"]
        crm.customers.add_many([person(n) for n in written])

        def found(where: Expr) -> list[str]:
            return sorted(c.name for c in crm.customers.scan(where))

        assert found(F("name").matches("stefan popescu")) == sorted(written[:3])
        assert found(F("name").matches("Popescu")) == sorted(written[:3])
        assert found(F("name").matches("علی کریمی")) == ["علي كريمي"]
        assert found(F("name").startswith("pop", fold=True)) == ["POPESCU, Stefan"]
        assert found(F("name").startswith("ȘTEFAN P", fold=True)) == sorted(written[:2])
        assert found(F("name").startswith("Ana")) == ["Ana Pop"]
        assert found(F("name").matches("  ")) == sorted(written)  # no words: every name
        page = crm.customers.find(F("name").startswith("st", fold=True), order_by="name", limit=2)
        rest = crm.customers.find(F("name").startswith("st", fold=True), order_by="name", after=page.next)
        assert [c.name for c in (*page, *rest)] == sorted(["Ştefan Popescu", "Ștefan Popescu", "Stefania Popa"])

    def test_order_by_attributes_pages_exactly(self, crmkit_backend: Backend) -> None:
        """``order_by="attributes.<name>"``: kinds in their order, values within a kind, exact keyset pages."""
        orders = st.sampled_from(
            ["attributes.tier", "-attributes.tier", ("attributes.tier", "-name"), ("-attributes.tier", "created_at")]
        )

        @conformance_settings(max_examples=15)
        @given(
            tiers=st.lists(st.none() | cs.attribute_values(), min_size=1, max_size=10),
            order_by=orders,
            size=st.integers(1, 4),
        )
        def check(tiers: list[Any], order_by: Any, size: int) -> None:
            crm = crmkit_backend.crm()
            crm.customers.add_many(
                person(f"P{i % 3}", attributes={} if t is None else {"tier": t}) for i, t in enumerate(tiers)
            )
            spec = crm.customers.spec
            order = parse_order(order_by, spec)
            want = list(crm.customers.scan())
            for name, desc in reversed(order.keys):  # the reference: memory's stable sorts
                want.sort(key=partial(sort_key, spec, name=name), reverse=desc)
            assert [c.id for c in crm.customers.find(order_by=order_by)] == [c.id for c in want]
            paged: list[Any] = []
            after = None
            while True:
                page = crm.customers.find(order_by=order_by, limit=size, after=after)
                paged.extend(page)
                if page.next is None:
                    break
                after = str(page.next)
            assert [c.id for c in paged] == [c.id for c in want]

        check()

    def test_search_needs_a_searchable_text_field(self, crm: CRM) -> None:
        for where, field in (
            (lambda: F("owner").matches("ana"), "owner"),
            (lambda: F("owner").startswith("an", fold=True), "owner"),
            (lambda: F("tags").startswith("v"), "tags"),
            (lambda: F("attributes.tier").matches("gold"), "attributes.tier"),
            (lambda: F("name").matches(3), "name"),  # type: ignore[arg-type]
            (lambda: F("name").startswith(None), "name"),  # type: ignore[arg-type]
            (lambda: F("name").startswith("a", fold="yes"), "fold"),  # type: ignore[arg-type]
        ):
            with pytest.raises(ValidationError) as error:
                crm.customers.count(where())
            assert error.value.field == field, where
