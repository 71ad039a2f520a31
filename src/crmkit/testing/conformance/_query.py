"""``find`` and ``count``: every operator, two-valued logic, mixed attribute types, order, keyset pages."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from crmkit import Customer, EmailAddress, Stage, ValidationError
from crmkit.crm import CRM
from crmkit.entities import CUSTOMERS, TRANSACTIONS
from crmkit.query import Cursor, Expr, F, bind, evaluate, parse_order
from crmkit.testing._backends import Backend
from crmkit.testing.conformance import _queries as q
from crmkit.testing.conformance._harness import (
    Clock,
    ContractBase,
    at,
    conformance_settings,
    contact,
    edge,
    organization,
    person,
    purchase,
)
from crmkit.testing.conformance._model import matches, sort_records

__all__ = ["OrderingContract", "PaginationContract", "QueryContract"]


def _catalogue(crm: CRM) -> dict[str, Customer]:
    """Eight customers whose fields collide in every way the query language cares about."""
    rows: dict[str, Customer] = {
        "A": person(
            "Ada",
            owner="ana",
            tags={"vip"},
            stage=Stage.LEAD,
            external_id="e-1",
            attributes={"score": 10, "tier": "gold", "note": "likes tea"},
        ),
        "B": person("ada", tags={"vip2"}, stage=Stage.CUSTOMER, attributes={"score": 10.0, "tier": "Gold"}),
        "C": person(
            "Ștefan",
            owner="Ben",
            tags={"vip", "b2b"},
            stage=Stage.LOYAL,
            attributes={"score": Decimal("2.5"), "flag": True},
        ),
        "D": organization("Şerban", stage=Stage.CHURNED, attributes={"score": "10", "flag": False}),
        "E": person(
            "زهرا",
            owner="ana",
            tags={"مشتری"},
            stage=Stage.REPEAT,
            external_id="e-2",
            attributes={"score": True, "seen": at(2024, 1, 1, offset=3.5)},
        ),
        "F": organization("😀 Emoji", owner="", tags={"😀"}, stage=Stage.LEAD),
        "G": person(
            "Zoë", owner="ana", tags={"VIP"}, stage=Stage.AT_RISK, attributes={"score": -3, "seen": dt.date(2024, 1, 1)}
        ),
        "H": organization("b", owner="Ben", stage=Stage.WON_BACK, attributes={"score": 2**63 - 1, "note": "tea"}),
    }
    return {key: crm.customers.add(c) for key, c in rows.items()}


def _which(crm: CRM, rows: dict[str, Customer], where: Any) -> str:
    by_id = {c.id: key for key, c in rows.items()}
    found = "".join(sorted(by_id[c.id] for c in crm.customers.find(where)))
    assert crm.customers.count(where) == len(found), f"count disagrees with find for {where!r}"
    return found


# Each condition with the customers it must find, straight from the semantics in crmkit.query.
_EXPECTED: list[tuple[str, Expr | dict[str, Any], str]] = [
    ("text equality", F("kind") == "person", "ABCEG"),
    ("text inequality", F("kind") != "person", "DFH"),
    ("enum value", F("stage") == Stage.CHURNED, "D"),
    ("stage as text", F("stage") == "lead", "AF"),
    ("equality is case sensitive", F("name") == "ada", "B"),
    ("nullable equality", F("owner") == "ana", "AEG"),
    ("!= is true for missing values", F("owner") != "ana", "BCDFH"),
    ("NOT is plain negation", ~(F("owner") == "ana"), "BCDFH"),
    ("== None finds missing values", F("owner") == None, "BD"),  # noqa: E711
    ("!= None finds present values", F("owner") != None, "ACEFGH"),  # noqa: E711
    ("empty text is not missing", F("owner") == "", "F"),
    ("is_null", F("external_id").is_null(), "BCDFGH"),
    ("binary order <", F("name") < "b", "ABG"),
    ("binary order >=", F("name") >= "Ş", "CDEF"),
    ("binary order >", F("name") > "Z", "BCDEFGH"),
    ("substring", F("name").contains("da"), "AB"),
    ("substring is case sensitive", F("name").contains("Da"), ""),
    ("substring of an emoji", F("name").contains("😀"), "F"),
    # Stored text never holds NUL (the domain refuses it); a condition may, and is simply never met.
    ("substring with NUL", F("name").contains("a\x00"), ""),
    ("substring that is NUL", F("owner").contains("\x00"), ""),
    ("negated substring with NUL", ~F("name").contains("Ada\x00"), "ABCDEFGH"),
    ("set membership with NUL", F("tags").contains("vip\x00"), ""),
    ("equality with NUL", F("name") == "Ada\x00", ""),
    ("inequality with NUL", F("owner") != "ana\x00", "ABCDEFGH"),
    ("in_ with NUL", F("name").in_(["Ada\x00", "b"]), "H"),
    ("order with NUL", F("name") < "Ada\x00", "A"),
    ("set membership", F("tags").contains("vip"), "AC"),
    ("set membership is exact", F("tags").contains("VIP"), "G"),
    ("negated membership", ~F("tags").contains("vip"), "BDEFGH"),
    ("in_", F("stage").in_(["loyal", "repeat"]), "CE"),
    ("in_ on text", F("name").in_(["Ada", "nobody"]), "A"),
    ("empty in_ matches nothing", F("kind").in_([]), ""),
    ("negated empty in_ matches everything", ~F("kind").in_([]), "ABCDEFGH"),
    ("numbers equal across int and float", F("attributes.score") == 10, "AB"),
    ("Decimal query on numbers", F("attributes.score") == Decimal("10.0"), "AB"),
    ("booleans are not numbers", F("attributes.score") == True, "E"),  # noqa: E712
    ("text is not a number", F("attributes.score") == "10", "D"),
    ("ordering only within numbers", F("attributes.score") > 2, "ABCH"),
    ("negative numbers", F("attributes.score") < 0, "G"),
    ("Decimal bound", F("attributes.score") <= Decimal("2.5"), "CG"),
    ("!= with missing attributes", F("attributes.score") != 10, "CDEFGH"),
    ("missing attribute", F("attributes.score") == None, "F"),  # noqa: E711
    ("present attribute", F("attributes.score") != None, "ABCDEGH"),  # noqa: E711
    ("NOT of an ordering", ~(F("attributes.score") > 2), "DEFG"),
    ("attribute text", F("attributes.tier") == "gold", "A"),
    ("attribute in_", F("attributes.tier").in_(["gold", "Gold"]), "AB"),
    ("in_ across kinds", F("attributes.score").in_([10, "10", True]), "ABDE"),
    ("False is not 0", F("attributes.flag") == 0, ""),
    ("boolean attribute", F("attributes.flag") == False, "D"),  # noqa: E712
    ("datetime attribute, any offset", F("attributes.seen") == at(2023, 12, 31, 20, 30), "E"),
    ("datetime ordering", F("attributes.seen") >= at(2023, 1, 1), "E"),
    ("dates are not datetimes", F("attributes.seen") == dt.date(2024, 1, 1), "G"),
    ("date ordering", F("attributes.seen") < dt.date(2025, 1, 1), "G"),
    ("attribute substring", F("attributes.note").contains("tea"), "AH"),
    ("contains on a non-text attribute", F("attributes.score").contains("1"), "D"),
    ("attribute nobody has", F("attributes.nobody") == None, "ABCDEFGH"),  # noqa: E711
    ("attribute nobody has, !=", F("attributes.nobody") != None, ""),  # noqa: E711
    ("and", (F("kind") == "person") & (F("owner") == "ana"), "AEG"),
    ("or", (F("kind") == "organization") | F("tags").contains("vip"), "ACDFH"),
    ("not of an or", ~((F("kind") == "person") | (F("owner") == None)), "FH"),  # noqa: E711
    ("mapping", {"kind": "organization", "owner": "Ben"}, "H"),
    ("empty mapping", {}, "ABCDEFGH"),
    ("version", F("version") == 1, "ABCDEFGH"),
    ("version ordering", F("version") > 1, ""),
]


class QueryContract(ContractBase):
    """Conditions on model fields and custom attributes find exactly what the semantics say."""

    @pytest.mark.parametrize(("label", "where", "expected"), _EXPECTED, ids=[e[0] for e in _EXPECTED])
    def test_condition(self, crm: CRM, label: str, where: Any, expected: str) -> None:
        rows = _catalogue(crm)
        assert _which(crm, rows, where) == expected

    def test_conditions_on_ids(self, crm: CRM) -> None:
        rows = _catalogue(crm)
        assert _which(crm, rows, F("id").in_([rows["A"].id, rows["C"].id, uuid.uuid4()])) == "AC"
        assert _which(crm, rows, F("id") == rows["H"].id) == "H"
        assert _which(crm, rows, F("id") != rows["H"].id) == "ABCDEFG"
        assert _which(crm, rows, F("external_id").in_(["e-2"])) == "E"

    def test_conditions_on_timestamps(self, crmkit_backend: Backend) -> None:
        clock = Clock(at(2025, 1, 1, 12))
        crm = crmkit_backend.crm(clock=clock)
        first = crm.customers.add(person("first"))
        clock.advance(microseconds=1)
        second = crm.customers.add(person("second"))
        clock.advance(days=1)
        crm.customers.update(attrs.evolve(first, name="first, edited"))
        noon_tehran = at(2025, 1, 1, 15, 30, offset=3.5)  # the instant of the first add
        assert [c.id for c in crm.customers.find(F("created_at") > noon_tehran)] == [second.id]
        assert [c.id for c in crm.customers.find(F("created_at") <= noon_tehran)] == [first.id]
        assert [c.id for c in crm.customers.find(F("updated_at") > at(2025, 1, 2))] == [first.id]
        assert crm.customers.count(F("version") == 2) == 1

    def test_conditions_on_transactions(self, crm: CRM) -> None:
        ada, bob = crm.customers.add(person("Ada")), crm.customers.add(person("Bob"))
        rows = {
            "1": purchase(ada, "10", at(2024, 1, 1, 14, offset=3.5)),  # 10:30 UTC
            "2": purchase(ada, "9.5", at(2024, 1, 1, 8, offset=-5), "RON"),  # 13:00 UTC
            "3": purchase(bob, "100", at(2024, 1, 2), "IRR", kind="refund"),
            "4": purchase(bob, "0.000001", at(2023, 12, 31, 23, 59, 59, 999999)),
            "5": purchase(ada, "10.00", at(2024, 1, 1, 12)),  # 12:00 UTC
        }
        stored = {k: crm.transactions.add(t) for k, t in rows.items()}
        by_id = {t.id: k for k, t in stored.items()}

        def which(where: Any) -> str:
            return "".join(sorted(by_id[t.id] for t in crm.transactions.find(where)))

        assert which(F("amount") > Decimal("9.6")) == "135"
        assert which(F("amount") == 10) == "15"
        assert which(F("amount") == Decimal("10.000")) == "15"
        assert which(F("amount").in_([Decimal("9.5"), 100])) == "23"
        assert which(F("amount") < Decimal("0.00001")) == "4"
        assert which(F("occurred_at") > at(2024, 1, 1, 12)) == "23"
        assert which(F("occurred_at") >= at(2024, 1, 1, 15, 30, offset=3.5)) == "235"
        assert which(F("occurred_at") < at(2024, 1, 1)) == "4"
        assert which(F("currency") == "EUR") == "145"
        assert which(F("kind") == "refund") == "3"
        assert which(F("customer_id") == bob.id) == "34"
        assert which((F("customer_id") == ada.id) & (F("amount") >= 10)) == "15"

    def test_conditions_on_relationships_and_interactions(self, crm: CRM) -> None:
        ada, acme = crm.customers.add(person()), crm.customers.add(organization())
        crm.relationships.add(edge(ada, "works_for", acme, since=dt.date(2020, 1, 1), until=dt.date(2022, 12, 31)))
        current = crm.relationships.add(edge(ada, "partner_of", acme, since=dt.date(2023, 1, 1)))
        assert [r.id for r in crm.relationships.find(F("until") == None)] == [current.id]  # noqa: E711
        assert [r.id for r in crm.relationships.find(F("since") > dt.date(2022, 1, 1))] == [current.id]
        assert crm.relationships.count(F("until") >= dt.date(2022, 12, 31)) == 1
        assert crm.relationships.count(F("kind").in_(["works_for", "partner_of"])) == 2
        mail = crm.interactions.add(contact(ada, at(2024, 1, 1), subject="Offer ș", participants={"ana", "ben"}))
        crm.interactions.add(contact(ada, at(2024, 1, 2), channel="phone", direction="outbound"))
        assert [i.id for i in crm.interactions.find(F("channel") == "email")] == [mail.id]
        assert [i.id for i in crm.interactions.find(F("participants").contains("ana"))] == [mail.id]
        assert [i.id for i in crm.interactions.find(F("subject").contains("ș"))] == [mail.id]
        assert crm.interactions.count(F("summary") == None) == 2  # noqa: E711
        assert crm.interactions.count(F("direction") != "inbound") == 1

    @pytest.mark.parametrize(
        "where",
        [
            F("nope") == 1,
            F("attributes.bad-key") == 1,
            F("attributes.") == 1,
            F("tags") == "vip",
            F("tags").in_(["vip"]),
            F("name").contains(5),
            F("version").contains("1"),
            F("version") == "1",
            F("name") == 1,
            F("created_at") == dt.datetime(2024, 1, 1),
            F("created_at") == dt.date(2024, 1, 1),
            F("name") < None,
            F("name").in_([None]),
            F("attributes.x") == [1],
            F("attributes.x") == float("nan"),
            F("id") == "9cf8775e-35ba-4934-a842-b9c446dbca32",  # fixed: parallel workers must collect the same ids
            # a lone surrogate is not Unicode text: no store holds it, some cannot even send it
            F("name") == "\ud800",
            F("name") != "a\udfff",
            F("name") < "\udbff",
            F("owner") == "\udc00",
            F("external_id") == "e-\ud800",
            F("name").contains("\udfff"),
            F("name").in_(["Ada", "\ud800"]),
            F("tags").contains("vip\ud800"),
            F("attributes.tier") == "\ud800",
            F("attributes.tier").contains("\udfff"),
            F("attributes.tier").in_(["gold", "\ud800"]),
            F("name").is_empty(),  # not a list field
            F("attributes.emails").is_empty(),
            F("nothing").is_empty(),
            {"name": "\ud800"},
            "kind",
            7,
        ],
        ids=repr,
    )
    def test_bad_conditions_are_validation_errors(self, crm: CRM, where: Any) -> None:
        crm.customers.add(person())
        with pytest.raises(ValidationError):
            crm.customers.find(where)
        with pytest.raises(ValidationError):
            crm.customers.count(where)

    def test_random_conditions_agree_with_the_semantics(self, crmkit_backend: Backend) -> None:
        crm = crmkit_backend.crm()
        stored = _random_population(crm)
        ids = [c.id for c in stored]

        @conformance_settings(max_examples=150)
        @given(where=q.customer_wheres(ids))
        @example(where=~(F("owner") == "ana") & (F("attributes.a") != 10))
        def check(where: Expr) -> None:
            expected = {c.id for c in stored if matches(where, c)}
            reference = {c.id for c in stored if evaluate(bind(where, CUSTOMERS), CUSTOMERS, c)}
            assert reference == expected, f"crmkit.query.evaluate disagrees with the documented semantics: {where!r}"
            assert {c.id for c in crm.customers.find(where)} == expected, repr(where)
            assert crm.customers.count(where) == len(expected), repr(where)

        check()

    def test_random_conditions_on_transactions_agree_with_the_semantics(self, crmkit_backend: Backend) -> None:
        crm = crmkit_backend.crm()
        owners = [crm.customers.add(person(f"p{i}")) for i in range(3)]
        stored = []
        for i in range(24):
            sale = purchase(
                owners[i % 3],
                q.AMOUNTS[i % len(q.AMOUNTS)],
                q.MOMENTS[i % len(q.MOMENTS)],
                q.CURRENCIES[i % len(q.CURRENCIES)],
                kind="refund" if i % 5 == 0 else "purchase",
                attributes={} if i % 4 == 0 else {"a": q.ATTRIBUTE_VALUES[i % len(q.ATTRIBUTE_VALUES)]},
            )
            stored.append(crm.transactions.add(sale))

        @conformance_settings(max_examples=100)
        @given(where=q.transaction_wheres([c.id for c in owners]))
        def check(where: Expr) -> None:
            expected = {t.id for t in stored if matches(where, t)}
            reference = {t.id for t in stored if evaluate(bind(where, TRANSACTIONS), TRANSACTIONS, t)}
            assert reference == expected, f"crmkit.query.evaluate disagrees with the documented semantics: {where!r}"
            assert {t.id for t in crm.transactions.find(where)} == expected, repr(where)

        check()


def _random_population(crm: CRM) -> list[Customer]:
    """Customers cycling through the pools, so every value meets every other."""
    out = []
    for i in range(30):
        attributes = {}
        if i % 3:
            attributes["a"] = q.ATTRIBUTE_VALUES[i % len(q.ATTRIBUTE_VALUES)]
        if i % 4:
            attributes["b"] = q.ATTRIBUTE_VALUES[(i * 7) % len(q.ATTRIBUTE_VALUES)]
        customer = Customer(
            kind="person" if i % 2 else "organization",
            name=q.NAMES[i % len(q.NAMES)],
            owner=q.OWNERS[i % len(q.OWNERS)],
            tags=frozenset(q.TAGS[: i % 4]),
            stage=list(Stage)[i % len(Stage)],
            external_id=None if i % 5 else f"e-{i}",
            attributes=attributes,
            emails=(EmailAddress(f"c{i}@example.com"),) if i % 3 == 1 else (),
        )
        out.append(crm.customers.add(customer))
    return out


# Text that sorts differently under locale collations, case folding, UTF-16 or padded comparison.
_SORT_NAMES = (
    "a",
    "B",
    "é",
    "Z",
    "ä",
    "😀",
    "\uff5e",
    "ß",
    "Ş",
    "Ș",
    "İ",
    "i",
    "زهرا",
    "a ",
    "a\t",
    "Ab",
    "ab",
    "\uffe0",
)


class OrderingContract(ContractBase):
    """order_by sorts by code point, numbers by value, instants by time; ties fall back to id."""

    def test_text_sorts_by_code_point(self, crm: CRM) -> None:
        stored = [crm.customers.add(person(n)) for n in _SORT_NAMES]
        assert [c.name for c in crm.customers.find(order_by="name")] == sorted(_SORT_NAMES)
        assert [c.name for c in crm.customers.find(order_by="-name")] == sorted(_SORT_NAMES, reverse=True)
        assert len(stored) == len(_SORT_NAMES)

    def test_ties_are_broken_by_id_ascending_in_both_directions(self, crm: CRM) -> None:
        stored = [crm.customers.add(person(n)) for n in ("x", "y", "x", "y", "x")]
        for order in ("name", "-name"):
            expected = sort_records(stored, parse_order(order, CUSTOMERS).keys)
            assert [c.id for c in crm.customers.find(order_by=order)] == [c.id for c in expected]

    def test_several_keys_in_mixed_directions(self, crm: CRM) -> None:
        stored = []
        for i, name in enumerate(("b", "a", "c", "a", "b")):
            kind: Any = "person" if i % 2 else "organization"
            stored.append(crm.customers.add(Customer(kind=kind, name=name, stage=list(Stage)[i])))
        for order in (("kind", "-name"), ("-kind", "name"), ("stage",), ("-stage", "-name"), ("name", "-id")):
            expected = sort_records(stored, parse_order(order, CUSTOMERS).keys)
            assert [c.id for c in crm.customers.find(order_by=order)] == [c.id for c in expected], order

    def test_stage_sorts_by_its_text(self, crm: CRM) -> None:
        for stage in Stage:
            crm.customers.add(person(stage.value, stage=stage))
        assert [c.stage.value for c in crm.customers.find(order_by="stage")] == sorted(s.value for s in Stage)

    def test_money_sorts_by_value_and_instants_by_time(self, crm: CRM) -> None:
        ada = crm.customers.add(person())
        amounts = ["100", "9.5", "10", "0.000001", "10.00", "1000000", "99.99"]
        moments = [
            at(2024, 1, 1, 14, offset=3.5),
            at(2024, 1, 1, 8, offset=-5),
            at(2024, 1, 1, 12),
            at(2024, 1, 1, 10, 30, 0, 1),
            at(2023, 12, 31, 23),
            at(2024, 1, 1, 10, 30, offset=0),
            at(2024, 1, 2, 0, offset=14),
        ]
        stored = [
            crm.transactions.add(purchase(ada, a, m, c))
            for a, m, c in zip(amounts, moments, ("EUR", "RON", "EUR", "USD", "RON", "EUR", "USD"), strict=True)
        ]
        for order in (
            "amount",
            "-amount",
            "occurred_at",
            "-occurred_at",
            ("currency", "-amount"),
            ("-currency", "occurred_at"),
            ("kind", "amount"),
        ):
            expected = sort_records(stored, parse_order(order, TRANSACTIONS).keys)
            assert [t.id for t in crm.transactions.find(order_by=order)] == [t.id for t in expected], order
        assert [t.amount for t in crm.transactions.find(order_by="amount", limit=3)] == [
            Decimal("0.000001"),
            Decimal("9.5"),
            Decimal("10"),
        ]
        default = sort_records(stored, parse_order(None, TRANSACTIONS).keys)
        assert [t.id for t in crm.transactions.find()] == [t.id for t in default]

    def test_order_with_a_condition_and_a_limit(self, crm: CRM) -> None:
        for n in _SORT_NAMES:
            crm.customers.add(person(n, owner="x" if n < "b" else None))
        expected = sorted(n for n in _SORT_NAMES if n < "b")[::-1][:3]
        assert [c.name for c in crm.customers.find(F("owner") == "x", order_by="-name", limit=3)] == expected

    @pytest.mark.parametrize(
        "order_by",
        [
            "owner",
            "tags",
            "attributes.",
            "attributes.no such",
            ("attributes.x", "-attributes.x"),  # sortable since issue 17, but not twice
            "nope",
            "",
            "-",
            ("name", "name"),
            ("name", "-name"),
            [5],
        ],
        ids=repr,
    )
    def test_bad_orders_are_validation_errors(self, crm: CRM, order_by: Any) -> None:
        crm.customers.add(person())
        with pytest.raises(ValidationError):
            crm.customers.find(order_by=order_by)


class PaginationContract(ContractBase):
    """Keyset pages: walk them all and get every record exactly once, in order."""

    @staticmethod
    def _walk(service: Any, limit: int, **kwargs: Any) -> list[Any]:
        out: list[Any] = []
        after = None
        for _ in range(1000):
            page = service.find(limit=limit, after=after, **kwargs)
            assert len(page) <= limit
            out.extend(page)
            if page.next is None:
                return out
            assert len(page) == limit
            after = str(page.next) if len(out) % 2 else page.next
        raise AssertionError("pagination never ended")

    def test_walking_every_page_gives_every_record_once(self, crm: CRM) -> None:
        names = [*_SORT_NAMES, "x", "x", "x", "x", "x"]
        stored = [crm.customers.add(person(n, attributes={"i": i})) for i, n in enumerate(names)]
        for order in ("name", "-name", ("kind", "-name"), "id", "-id", "-created_at", ("stage", "name")):
            expected = [c.id for c in sort_records(stored, parse_order(order, CUSTOMERS).keys)]
            for limit in (1, 2, 3, 7, len(names), len(names) + 1):
                got = [c.id for c in self._walk(crm.customers, limit, order_by=order)]
                assert got == expected, (order, limit)

    def test_pages_of_a_condition(self, crm: CRM) -> None:
        ada = crm.customers.add(person())
        sales = [crm.transactions.add(purchase(ada, a, m)) for a in ("10", "10.00", "9.5", "100") for m in q.MOMENTS]
        where = F("amount") >= 10
        for order in ("-amount", ("amount", "-occurred_at"), "occurred_at"):
            expected = [
                t.id for t in sort_records([s for s in sales if s.amount >= 10], parse_order(order, TRANSACTIONS).keys)
            ]
            got = [t.id for t in self._walk(crm.transactions, 4, where=where, order_by=order)]
            assert got == expected, order

    def test_a_page_ending_exactly_at_the_end_has_no_next(self, crm: CRM) -> None:
        for n in "abcd":
            crm.customers.add(person(n))
        first = crm.customers.find(order_by="name", limit=2)
        second = crm.customers.find(order_by="name", limit=2, after=first.next)
        assert [c.name for c in second] == ["c", "d"] and second.next is None
        assert crm.customers.find(order_by="name", limit=4).next is None

    def test_records_added_behind_the_cursor_are_not_repeated(self, crm: CRM) -> None:
        for n in ("b", "d", "f", "h"):
            crm.customers.add(person(n))
        first = crm.customers.find(order_by="name", limit=2)
        crm.customers.add(person("a"))
        crm.customers.add(person("e"))
        rest = [c.name for c in self._walk_from(crm, first.next)]
        assert [c.name for c in first] + rest == ["b", "d", "e", "f", "h"]

    @staticmethod
    def _walk_from(crm: CRM, after: Any) -> list[Customer]:
        out: list[Customer] = []
        while after is not None:
            page = crm.customers.find(order_by="name", limit=2, after=after)
            out.extend(page)
            after = page.next
        return out

    def test_a_cursor_only_fits_its_own_order(self, crm: CRM) -> None:
        for n in "abc":
            crm.customers.add(person(n))
        cursor = crm.customers.find(order_by="name", limit=1).next
        assert cursor is not None
        for other in ("-name", "kind", None, ("name", "kind")):
            with pytest.raises(ValidationError):
                crm.customers.find(order_by=other, limit=1, after=cursor)
        with pytest.raises(ValidationError):
            crm.transactions.find(limit=1, after=cursor)
        garbage_cursors: list[Any] = ["", "not a cursor", "e30", str(Cursor("name,id", ("a",))), 17]
        for garbage in garbage_cursors:
            with pytest.raises(ValidationError):
                crm.customers.find(order_by="name", limit=1, after=garbage)

    @pytest.mark.parametrize("limit", [0, -1, True, 2.0, "2", 2**31], ids=repr)
    def test_bad_limits_are_validation_errors(self, crm: CRM, limit: Any) -> None:
        with pytest.raises(ValidationError):
            crm.customers.find(limit=limit)

    def test_the_largest_limit_works_on_every_kind_of_query(self, crm: CRM) -> None:
        """find() looks one record ahead, so a store is asked for ``limit + 1``: 2**31 at the largest."""
        largest = 2**31 - 1
        ada, bob = crm.customers.add(person("Ada", owner="ana")), crm.customers.add(person("Bob"))
        sale = crm.transactions.add(purchase(ada, "1", at(2024, 1, 1)))
        queries: list[tuple[Any, Any, list[Any]]] = [
            (None, None, sorted([ada.id, bob.id])),
            (F("name") == "Bob", None, [bob.id]),
            ({"kind": "person", "owner": "ana"}, "-name", [ada.id]),
            (F("name") > "A", "name", [ada.id, bob.id]),
            (F("name").contains("o"), "-created_at", [bob.id]),
        ]
        for where, order_by, expected in queries:
            page = crm.customers.find(where, order_by=order_by, limit=largest)
            assert [c.id for c in page] == expected and page.next is None, (where, order_by)
        for order_by in (None, "-occurred_at"):
            sales = crm.transactions.find(F("customer_id") == ada.id, order_by=order_by, limit=largest)
            assert [t.id for t in sales] == [sale.id] and sales.next is None
        assert [e.record.id for e in crm.timeline(ada.id, limit=largest, newest_first=True)] == [sale.id]

    def test_stream_reads_everything_in_batches(self, crm: CRM) -> None:
        stored = [crm.customers.add(person(n)) for n in _SORT_NAMES]
        expected = [c.id for c in sort_records(stored, parse_order("-name", CUSTOMERS).keys)]
        assert [c.id for c in crm.customers.stream(order_by="-name", batch_size=4)] == expected
        assert [c.id for c in crm.customers.stream(F("name") < "b", batch_size=1)] == sorted(
            c.id for c in stored if c.name < "b"
        )

    def test_random_pages_agree_with_the_model(self, crmkit_backend: Backend) -> None:
        crm = crmkit_backend.crm()
        stored = _random_population(crm)

        @conformance_settings(max_examples=40)
        @given(where=q.customer_wheres([c.id for c in stored]), order=q.customer_orders(), limit=st.integers(1, 8))
        def check(where: Expr, order: tuple[str, ...], limit: int) -> None:
            expected = sort_records([c for c in stored if matches(where, c)], parse_order(order, CUSTOMERS).keys)
            got = self._walk(crm.customers, limit, where=where, order_by=order)
            assert [c.id for c in got] == [c.id for c in expected], (where, order, limit)

        check()
