"""Search on what is not a text field of its own: customers' e-mail addresses, searchable custom attributes.

``F("emails").startswith("ana.pop", fold=True)`` and ``F("emails").matches("example ro")``
on customers, and ``F("attributes.<name>").startswith(...)`` / ``matches(...)`` on an
aggregate whose attribute ``<name>`` a tenant made searchable (``crm.search.index_attribute``),
search the texts of one aggregate, ``search_terms``: one record per text (an address, an
attribute's text value) of each record, with the record it belongs to and the field it
comes from. Its ``term`` is declared ``schema.text(search=True)``, so every backend keeps
it folded and indexed like any searchable field (a folded column with a B-tree and a word
index in SQL, a folded field and a words array, both indexed, in MongoDB), and a search
on a derived field is bound to a sub-query on it:
``F("id").in_(Select("search_terms", "record.id", <aggregate and field> & <the search on term>))``.

A term holds when one text of the field does: ``startswith`` when one address starts
with the prefix, ``matches`` when every word of the query is a word of one address, all
folded by ``crmkit.search.fold``. The terms are written by the records service in the
transaction that writes the records (added, updated, replaced in bulk) and go with them
(a ``ref_any`` that cascades); ``crm.search.reindex()`` writes them for records stored
before (an attribute made searchable later, data from an older version).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from crmkit import schema
from crmkit._errors import ValidationError
from crmkit._validation import check_identifier
from crmkit.query import ALL, And, Compare, In, parse_order
from crmkit.search import fold
from crmkit.store import scan

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["SOURCES", "Search", "SearchTerm", "SearchableAttribute", "terms_of"]

#: The derived searchable fields of crmkit's aggregates: (aggregate, field) to the texts of a record.
SOURCES: dict[tuple[str, str], Callable[[Any], Iterable[str]]] = {
    ("customers", "emails"): lambda customer: [e.address for e in customer.emails],
}

#: Records per write of their terms.
_BATCH = 500


@schema.aggregate("search_terms", label="search term", indexes=[("record",), ("term", "field", "record")])
class SearchTerm(schema.Record):
    """One text of a record's derived searchable field (an e-mail address, an attribute's text), folded.

    ``term`` holds the folded text (``crmkit.search.fold``): a prefix search is a range on it,
    which the index on (term, field, record) answers without reading the rows; ``search=True``
    gives it the word index ``matches`` looks words up in.
    """

    record: schema.Ref = schema.ref_any(on_delete="cascade", personal=False)
    field: str = schema.text(sortable=True, personal=False)
    term: str = schema.text(sortable=True, search=True, personal="contact")


@schema.aggregate("search_attributes", label="searchable attribute", unique=[("target", "name")])
class SearchableAttribute(schema.Record):
    """A custom attribute of an aggregate (``target``) that a tenant searches: its text values are kept as terms."""

    target: str = schema.text(sortable=True, personal=False)
    name: str = schema.text(sortable=True, personal=False)


def _attributes(crm: CRM, aggregate: str) -> tuple[str, ...]:
    """The searchable attributes of an aggregate in this tenant (read once per connection, then kept)."""
    cache: dict[str, tuple[str, ...]] | None = getattr(crm, "_search_attributes", None)
    if cache is None:
        spec = crm.schema.declared.get("search_attributes")
        cache = {}
        if spec is not None:
            for row in crm.store.repository(spec).find(crm.tenant, ALL, parse_order(None, spec), None):
                cache[row.target] = (*cache.get(row.target, ()), row.name)
        crm._search_attributes = cache  # type: ignore[attr-defined]
    return cache.get(aggregate, ())


def _kept(crm: CRM | None, aggregate: str, field: str) -> bool:
    """Whether the connection keeps the terms of a derived field (``connect(search_emails=False)``: not e-mails)."""
    return not (aggregate == "customers" and field == "emails" and not getattr(crm, "search_emails", True))


def searchable(crm: CRM | None, aggregate: str, field: str) -> bool:
    """Whether ``field`` of ``aggregate`` is searched through search terms."""
    if (aggregate, field) in SOURCES:
        return _kept(crm, aggregate, field)
    return (
        crm is not None
        and field.startswith("attributes.")
        and field[len("attributes.") :] in _attributes(crm, aggregate)
    )


def terms_of(crm: CRM, aggregate: str, record: Any) -> list[tuple[str, str]]:
    """The (field, folded text) pairs of a record's derived searchable fields, distinct (texts without words: none)."""
    found: dict[tuple[str, str], None] = {}
    for (name, field), texts in SOURCES.items():
        if name == aggregate and _kept(crm, name, field):
            for text in texts(record):
                folded = fold(text) if isinstance(text, str) else ""
                if folded:
                    found[(field, folded)] = None
    attributes = getattr(record, "attributes", None)
    if attributes:
        for key in _attributes(crm, aggregate):
            value = attributes.get(key)
            folded = fold(value) if isinstance(value, str) else ""
            if folded:
                found[(f"attributes.{key}", folded)] = None
    return list(found)


def _wanted(crm: CRM, aggregate: str) -> bool:
    return crm.schema.declared.get("search_terms") is not None and (
        any(name == aggregate and _kept(crm, name, field) for name, field in SOURCES)
        or bool(_attributes(crm, aggregate))
    )


def write_terms(crm: CRM, aggregate: str, records: Sequence[Any]) -> None:
    """Store the search terms of newly stored records (inside the caller's transaction)."""
    if not records or not _wanted(crm, aggregate):
        return
    spec = crm.schema["search_terms"]
    rows = [
        _stamped(SearchTerm(record=schema.Ref(aggregate, r.id), field=field, term=text), r, crm)
        for r in records
        for field, text in terms_of(crm, aggregate, r)
    ]
    if rows:
        crm.store.repository(spec).insert(crm.tenant, rows)


def rewrite_terms(crm: CRM, aggregate: str, pairs: Sequence[tuple[Any, Any]]) -> None:
    """Replace the search terms of updated records whose searched texts changed (inside the transaction)."""
    if not pairs or not _wanted(crm, aggregate):
        return
    changed = [new for old, new in pairs if terms_of(crm, aggregate, old) != terms_of(crm, aggregate, new)]
    if not changed:
        return
    spec = crm.schema["search_terms"]
    repo = crm.store.repository(spec)
    for start in range(0, len(changed), _BATCH):
        batch = changed[start : start + _BATCH]
        repo.delete_where(
            crm.tenant,
            And((Compare("record.aggregate", "==", aggregate), In("record.id", tuple(r.id for r in batch)))),
        )
    write_terms(crm, aggregate, changed)


def _stamped(row: Any, record: Any, crm: CRM) -> Any:
    """The stored form of a new row, stamped with the time of the record it derives from (no clock read)."""
    from crmkit.services.records import _stamped as stamped

    at = None if record is None else getattr(record, "updated_at", None) or getattr(record, "created_at", None)
    return stamped(row, at or crm.now())


class Search:
    """``crm.search``: which custom attributes a tenant searches, and rebuilding the search terms."""

    def __init__(self, crm: CRM) -> None:
        self._crm = crm

    def index_attribute(self, aggregate: str, name: str) -> None:
        """Make attribute ``name`` of ``aggregate`` searchable in this tenant (``F("attributes.<name>").matches``).

        Its text values are kept as search terms from now on; the records already stored get
        theirs here, in one transaction. Doing it twice changes nothing.
        """
        crm = self._crm
        if not isinstance(aggregate, str) or aggregate not in crm.schema:
            raise ValidationError("aggregate", "is not an aggregate of this connection", aggregate)
        if not crm.schema[aggregate].has_attributes:
            raise ValidationError("aggregate", f"{aggregate} have no custom attributes", aggregate)
        check_identifier("name", name)
        if name in _attributes(crm, aggregate):
            return
        spec = crm.schema["search_attributes"]
        with crm.transaction():
            crm.store.repository(spec).insert(
                crm.tenant, [_stamped(SearchableAttribute(target=aggregate, name=name), None, crm)]
            )
            crm._search_attributes = None  # type: ignore[attr-defined]
            self.reindex(aggregate)

    def attributes(self, aggregate: str) -> tuple[str, ...]:
        """The searchable attributes of ``aggregate`` in this tenant."""
        self._crm._search_attributes = None  # type: ignore[attr-defined]
        return _attributes(self._crm, aggregate)

    def reindex(self, aggregate: str | None = None) -> int:
        """Write the search terms of every stored record (of ``aggregate``, or of every aggregate that has
        some) afresh; return how many were written. For records stored before their fields were searched."""
        crm = self._crm
        names = {n for n, f in SOURCES if _kept(crm, n, f)} | {
            a.target
            for a in crm.store.repository(crm.schema["search_attributes"]).find(
                crm.tenant, ALL, parse_order(None, crm.schema["search_attributes"]), None
            )
        }
        if aggregate is not None:
            names &= {aggregate}
        crm._search_attributes = None  # type: ignore[attr-defined]
        spec = crm.schema["search_terms"]
        repo = crm.store.repository(spec)
        written = 0
        with crm.transaction():
            for name in sorted(names):
                repo.delete_where(crm.tenant, Compare("record.aggregate", "==", name))
                target = crm.schema[name]
                order = parse_order(None, target)
                batch: list[Any] = []
                for record in scan(crm.store.repository(target), crm.tenant, ALL, order):
                    batch.append(record)
                    if len(batch) >= _BATCH:
                        written += sum(len(terms_of(crm, name, r)) for r in batch)
                        write_terms(crm, name, batch)
                        batch = []
                written += sum(len(terms_of(crm, name, r)) for r in batch)
                write_terms(crm, name, batch)
        return written


def check_searched(crm: CRM, condition: Any) -> None:
    """ValidationError naming the attribute when a bound condition searches one the tenant does not index."""
    from crmkit.query import And as AndExpr
    from crmkit.query import InSelect, Not, Or

    if isinstance(condition, InSelect):
        select = condition.select
        if select.entity == "search_terms" and isinstance(select.where, AndExpr):
            pinned = {c.field: c.value for c in select.where.items if isinstance(c, Compare) and c.op == "=="}
            aggregate, field = pinned.get("record.aggregate"), pinned.get("field")
            if isinstance(aggregate, str) and isinstance(field, str) and not searchable(crm, aggregate, field):
                if (aggregate, field) in SOURCES:
                    raise ValidationError(
                        field,
                        "is not searched by this connection (connect(..., search_emails=True) makes it so)",
                        field,
                    )
                raise ValidationError(
                    field,
                    f"is not searched in this tenant (crm.search.index_attribute({aggregate!r}, "
                    f"{field[len('attributes.') :]!r}) makes it so)",
                    field,
                )
        check_searched(crm, select.where)
    elif isinstance(condition, (AndExpr, Or)):
        for item in condition.items:
            check_searched(crm, item)
    elif isinstance(condition, Not):
        check_searched(crm, condition.item)
