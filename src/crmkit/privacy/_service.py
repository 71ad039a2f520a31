"""``crm.privacy``: export everything held about a person, erase it by anonymising, retention holds.

Nothing here names an aggregate but its own. The records about a person are found by
walking ``crm.schema``: the customer, every record whose reference (``ref`` or
``ref_any``) points at it, and so on down the references that cascade (the records that
hang off it: its interactions, their notes, a deal's history); a record that only
mentions one of those (a ``set_null`` or ``restrict`` reference, or a field listed in the
class's ``__crmkit_mentions__``: field -> ``"customers"``, ``"@field"`` naming the aggregate
in another field, or ``"*"`` for any) is included with what cascades from it, and the walk
stops there. Every step is one filtered query per reference, pushed into the store.

Erasure anonymises the fields declared personal (``personal=`` on the field helpers) in
those records and keeps the rest: amounts, dates, products, stages, references.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import hashlib
import json
import sys
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from crmkit._errors import ConflictError, CRMError, NotFound, ValidationError
from crmkit.privacy._records import Erasure, Hold
from crmkit.query import Expr, F
from crmkit.schema import MISSING, AggregateSpec, FieldDef, Ref, declared_fields

if TYPE_CHECKING:
    from crmkit.crm import CRM, Records
    from crmkit.schema import EntitySpec

__all__ = ["ErasureRefused", "ErasureReport", "FieldChange", "Privacy", "to_json"]

#: How many ids one ``in`` filter carries (larger sets are queried in chunks).
_CHUNK = 500


class ErasureRefused(CRMError):
    """An erase refused because a retention hold keeps the person's data until a date."""

    def __init__(self, person_id: uuid.UUID, until: dt.date, reason: str) -> None:
        self.person_id, self.until, self.reason = person_id, until, reason
        super().__init__(
            f"customer {person_id} is under a retention hold until {until.isoformat()} ({reason}): "
            "erase refused until then"
        )


@attrs.frozen
class FieldChange:
    """One field an erase anonymises: the record, the field, its kind of personal data, what happens.

    ``action`` is ``"cleared"`` (set to None or emptied) or ``"replaced"`` (by a token
    ``erased-...`` that is not derived from the data, or, for lists of value objects, by the
    items with their personal parts anonymised), or ``"deleted"`` (field ``"*"``): the
    record hangs off the person alone and its class deletes such records on erasure
    (``__crmkit_erase_owned__(record, crm)``: documents attached to them, with their files).
    """

    aggregate: str
    id: uuid.UUID
    field: str
    personal: str
    action: str

    def to_json(self) -> dict[str, str]:
        return {
            "aggregate": self.aggregate,
            "id": str(self.id),
            "field": self.field,
            "personal": self.personal,
            "action": self.action,
        }


@attrs.frozen
class ErasureReport:
    """What an erase changed (or, with ``dry_run=True``, would change), field by field."""

    person_id: uuid.UUID
    dry_run: bool
    at: dt.datetime
    actor: str | None
    changes: tuple[FieldChange, ...]

    @property
    def records(self) -> tuple[tuple[str, uuid.UUID], ...]:
        """The records changed, as (aggregate, id), in the order of ``changes``."""
        return tuple(dict.fromkeys((c.aggregate, c.id) for c in self.changes))

    def to_json(self) -> dict[str, Any]:
        return {
            "person_id": str(self.person_id),
            "dry_run": self.dry_run,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "changes": [c.to_json() for c in self.changes],
        }


def to_json(value: Any) -> Any:
    """A JSON-ready form of a record or value: ids and amounts as text, times in ISO 8601."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (frozenset, set)):
        return sorted((to_json(v) for v in value), key=repr)
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    if isinstance(value, Ref):
        return {"aggregate": value.aggregate, "id": str(value.id)}
    if attrs.has(type(value)):
        return {a.name: to_json(getattr(value, a.name)) for a in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    raise TypeError(f"cannot export a {type(value).__name__} value")


def _chunks(ids: Sequence[uuid.UUID]) -> Iterator[list[uuid.UUID]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


@attrs.frozen
class _Pointer:
    """A way a record of ``source`` points at records of some aggregate: a query per set of ids."""

    source: str
    field: str
    cascade: bool
    where: Callable[[list[uuid.UUID]], Expr]


def _typed(field: str) -> Callable[[list[uuid.UUID]], Expr]:
    return lambda ids: F(field).in_(ids)


def _any(field: str, target: str) -> Callable[[list[uuid.UUID]], Expr]:
    return lambda ids: (F(f"{field}.aggregate") == target) & F(f"{field}.id").in_(ids)


def _named(field: str, target: str, where: Callable[[list[uuid.UUID]], Expr]) -> Callable[[list[uuid.UUID]], Expr]:
    return lambda ids: (F(field) == target) & where(ids)


def _texts(field: str) -> Callable[[list[uuid.UUID]], Expr]:
    return lambda ids: F(field).contains_any(str(i) for i in ids)


def _token(record_id: uuid.UUID, path: str) -> str:
    """The text that replaces a required personal text: stable per record and field, not derived from the data."""
    return "erased-" + hashlib.sha256(f"{record_id}/{path}".encode()).hexdigest()[:12]


class Privacy:
    """``crm.privacy``: export a person's data, erase it by anonymising, and retention holds."""

    def __init__(self, crm: CRM) -> None:
        self._crm = crm
        self._pointers: dict[str, list[_Pointer]] = {}

    # ------------------------------------------------------------------ the walk

    def pointers_to(self, target: str) -> list[_Pointer]:
        """Every field of a registered aggregate that may point at records of ``target``."""
        found = self._pointers.get(target)
        if found is not None:
            return found
        schema = self._crm.schema
        out = []
        for ref in schema.references_to(target):
            if ref.any:
                out.append(_Pointer(ref.source, ref.field, ref.on_delete == "cascade", _any(ref.field, target)))
            else:
                out.append(_Pointer(ref.source, ref.field, ref.on_delete == "cascade", _typed(ref.field)))
        for name in schema:
            spec = schema[name]
            mentions: Mapping[str, str] = getattr(spec.cls, "__crmkit_mentions__", {})
            for field, aggregate in mentions.items():
                declared = spec.declared.get(field) if isinstance(spec, AggregateSpec) else None
                kind = declared.kind if declared is not None else "uuid"
                where = _texts(field) if kind == "text_set" else _typed(field)
                if aggregate.startswith("@"):  # the aggregate is named by another field of the record
                    where = _named(aggregate[1:], target, where)
                elif aggregate not in ("*", target):
                    continue
                # a journal (``__crmkit_journal__``: the audit trail, the feed) is followed from every record found
                out.append(_Pointer(name, field, bool(getattr(spec.cls, "__crmkit_journal__", False)), where))
        self._pointers[target] = out
        return out

    def records_about(self, person_id: uuid.UUID) -> dict[str, dict[uuid.UUID, Any]]:
        """Every stored record about the person, by aggregate and id (the customer itself included)."""
        return self._walk(person_id)[0]

    def _walk(self, person_id: uuid.UUID) -> tuple[dict[str, dict[uuid.UUID, Any]], dict[str, dict[uuid.UUID, bool]]]:
        """``records_about``, and per record whether it hangs off the person (cascades from them) or mentions them."""
        if not isinstance(person_id, uuid.UUID):
            raise ValidationError("person_id", "must be a uuid.UUID", person_id)
        crm = self._crm
        customer = crm.customers.get(person_id)
        found: dict[str, dict[uuid.UUID, Any]] = {"customers": {person_id: customer}}
        owned: dict[str, dict[uuid.UUID, bool]] = {"customers": {person_id: True}}
        todo: list[tuple[str, list[uuid.UUID], bool]] = [("customers", [person_id], True)]
        while todo:
            target, ids, is_owned = todo.pop()
            for pointer in self.pointers_to(target):
                if not (is_owned or pointer.cascade):
                    continue
                child_owned = is_owned and pointer.cascade
                records: Records[Any] = crm.records(pointer.source)
                same_person = getattr(records.spec.cls, "__crmkit_same_person__", None)
                fresh: list[uuid.UUID] = []
                for chunk in _chunks(ids):
                    for record in records.scan(pointer.where(chunk)):
                        if same_person is not None:
                            todo += self._same_person(same_person(record), found, owned)
                        levels = owned.setdefault(pointer.source, {})
                        before = levels.get(record.id)
                        found.setdefault(pointer.source, {})[record.id] = record
                        if before is None or (child_owned and not before):
                            levels[record.id] = child_owned
                            fresh.append(record.id)
                if fresh:
                    todo.append((pointer.source, fresh, child_owned))
        return found, owned

    def _same_person(
        self,
        ids: Iterable[uuid.UUID],
        found: dict[str, dict[uuid.UUID, Any]],
        owned: dict[str, dict[uuid.UUID, bool]],
    ) -> list[tuple[str, list[uuid.UUID], bool]]:
        """Customers a record says are the same person (merged duplicates): walked as the person is."""
        fresh = []
        for id in ids:
            if owned["customers"].get(id):
                continue
            try:
                customer = self._crm.customers.get(id)
            except NotFound:
                continue
            found["customers"][id] = customer
            owned["customers"][id] = True
            fresh.append(id)
        return [("customers", fresh, True)] if fresh else []

    # ------------------------------------------------------------------ export

    def export(self, person_id: uuid.UUID, *, files: bool = False) -> dict[str, Any]:
        """Everything held about the person, JSON-ready: every record in every aggregate, and consents.

        ``records`` maps each aggregate to its records (all fields); ``consents`` lists the
        consents kept with the person's contact points, with where they were found. A class
        may show its records as far as they are about the person
        (``__crmkit_exported__(record, crm, ids)``: a feed chunk's events about other people
        are left out) and add records it shares with others, each shown as the person's own
        (``__crmkit_export_shared__(crm, found)``: a batch's creation entry).
        ``files=True`` adds ``files``: the contents of the files among them (documents'
        versions, base64), from the aggregates whose class has ``__crmkit_export_files__``.
        """
        if not isinstance(files, bool):
            raise ValidationError("files", "must be True or False", files)
        crm = self._crm
        found = self.records_about(person_id)
        about = frozenset(i for by_id in found.values() for i in by_id)
        records: dict[str, list[Any]] = {}
        for name in crm.schema:
            cls = crm.schema[name].cls
            # a record that holds other people's data too (a feed chunk) is shown as far as it is about them
            exported = getattr(cls, "__crmkit_exported__", None)
            mine = [
                r if exported is None else exported(r, crm, about)
                for _, r in sorted(found.get(name, {}).items(), key=lambda item: str(item[0]))
            ]
            # records shared with other people's records (a batch's creation entry), shown as theirs
            shared = getattr(cls, "__crmkit_export_shared__", None)
            if shared is not None:
                mine += shared(crm, found)
            if name in found or mine:
                records[name] = [to_json(r) for r in mine]
        consents: list[dict[str, Any]] = []
        for name, by_id in found.items():
            for record in by_id.values():
                _consents(record, f"{name}/{record.id}", consents)
        out = {
            "person_id": str(person_id),
            "exported_at": crm.now().isoformat(),
            "tenant": crm.tenant,
            "records": records,
            "consents": consents,
        }
        if files:
            contents: list[dict[str, Any]] = []
            for name in crm.schema:
                export_files = getattr(crm.schema[name].cls, "__crmkit_export_files__", None)
                if export_files is not None and name in found:
                    for _, record in sorted(found[name].items(), key=lambda item: str(item[0])):
                        contents += export_files(record, crm)
            out["files"] = contents
        return out

    # ------------------------------------------------------------------ holds

    def hold(self, person_id: uuid.UUID, *, until: dt.date, reason: str) -> Hold:
        """Keep the person's data until ``until`` (inclusive): ``erase`` is refused until then."""
        crm = self._crm
        crm.customers.get(person_id)
        held = Hold(person_id=person_id, until=until, reason=reason, placed_at=crm.now(), actor=crm.actor)
        return crm.records(Hold).add(held)

    def holds(self, person_id: uuid.UUID, *, active: bool = True) -> list[Hold]:
        """The person's retention holds, latest end first; only those not yet ended unless ``active=False``."""
        where: Expr = F("person_id") == person_id
        if active:
            where = where & (F("until") >= self._crm.now().date())
        return list(self._crm.records(Hold).find(where, order_by=("-until", "id")))

    # ------------------------------------------------------------------ erase

    def erase(self, person_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Anonymise the person's personal data in every record about them, in one transaction.

        Returns what changed, field by field. ``dry_run=True`` returns exactly what would
        change and writes nothing. Refused with ``ErasureRefused`` while a retention hold
        lasts. The erasure is recorded (``privacy_erasures``: person id, who, when, how many
        records and fields) without any of the erased data.
        """
        if not isinstance(dry_run, bool):
            raise ValidationError("dry_run", "must be True or False", dry_run)
        crm = self._crm
        with crm.transaction():
            held = self.holds(person_id)
            if held:
                raise ErasureRefused(person_id, held[0].until, held[0].reason)
            found, owned = self._walk(person_id)
            erased = frozenset(i for records in found.values() for i in records)
            changes: list[FieldChange] = []
            updates: list[tuple[EntitySpec, Any, Any]] = []
            purges: list[tuple[Callable[[Any, Any], None], Any]] = []
            for name in crm.schema:  # in the schema's order, each aggregate's records by id
                spec = crm.schema[name]
                if name not in found or not isinstance(spec, AggregateSpec):
                    continue
                # a record that hangs off the person alone (a document attached to them) may be deleted instead
                purge = getattr(spec.cls, "__crmkit_erase_owned__", None)
                for _, record in sorted(found[name].items(), key=lambda item: str(item[0])):
                    if purge is not None and owned[name].get(record.id):
                        changes.append(FieldChange(name, record.id, "*", "record", "deleted"))
                        purges.append((purge, record))
                        continue
                    new, changed = _anonymised(spec, record, crm, erased)
                    if changed:
                        changes += changed
                        updates.append((spec, record, new))
            now = crm.now()
            if not dry_run:
                for spec, current, new in updates:
                    stamped = attrs.evolve(new, updated_at=now, version=current.version + 1)
                    if not crm.store.repository(spec).replace(crm.tenant, stamped, current.version):
                        raise ConflictError(
                            f"{spec.label} {current.id} was changed concurrently during the erase (nothing erased)",
                            entity=spec.label,
                            key=current.id,
                        )
                for purge, record in purges:  # after the updates: what hangs off it may be among them
                    purge(record, crm)
                crm.records(Erasure).add(
                    Erasure(
                        person_id=person_id,
                        erased_at=now,
                        actor=crm.actor,
                        records=len(updates) + len(purges),
                        fields=len(changes),
                    )
                )
        return ErasureReport(person_id, dry_run, now, crm.actor, tuple(changes))


def _consents(value: Any, path: str, out: list[dict[str, Any]]) -> None:
    """Collect the consents (``crmkit.customers.Consent``) inside a record, with their place in it."""
    from crmkit.customers import Consent

    if isinstance(value, Consent):
        out.append({"where": path, **to_json(value)})
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            _consents(item, f"{path}[{i}]", out)
    elif attrs.has(type(value)) and not isinstance(value, Ref):
        for a in attrs.fields(type(value)):
            item = getattr(value, a.name)
            if isinstance(item, tuple) or attrs.has(type(item)):
                _consents(item, f"{path}.{a.name}", out)


def _converter(cls: type, name: str) -> Callable[[Any], Any]:
    converter = attrs.fields_dict(cls)[name].converter
    return converter if callable(converter) else (lambda value: value)


def _candidates(fd: FieldDef, value: Any, owner: uuid.UUID, path: str) -> list[Any]:
    """What may replace a personal value, best first."""
    if fd.kind == "many":
        inner = declared_fields(fd.type)
        if any(f.is_personal for f in inner):
            items = [_anonymised_item(fd.type, inner, item, owner, f"{path}[{i}]") for i, item in enumerate(value)]
            kept = tuple(item for item in items if item is not None)
            return [kept, ()] if kept else [()]
        return [(), None] if fd.nullable else [()]
    if fd.kind == "text":
        snapshot = _anonymised_snapshot(value)
        if snapshot is not None:
            return [snapshot]
    if fd.nullable:
        return [None]
    if fd.kind == "text":
        return [_token(owner, path)]
    if fd.kind == "text_list":
        return [(), (_token(owner, path),)]
    if fd.kind == "text_set":
        return [frozenset()]
    if fd.kind == "attributes":
        return [{}]
    return [] if fd.default is MISSING else [fd.default]


def _anonymised_snapshot(text: str) -> str | None:
    """Records kept as text in crmkit's record codec (a merge's before and after), each anonymised; else None.

    Un-merging an erased person's merge then restores anonymous records instead of failing.
    """
    from crmkit.identity import _codec

    if not text.startswith("{"):
        return None
    try:
        encoded = json.loads(text)
        if not _known_classes(encoded):
            return None
        decoded = _codec.decode(encoded)
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
    return _codec.dumps(_anonymised_values(decoded))


def _known_classes(encoded: Any) -> bool:
    """Whether every class a codec text names is a declared record, value object or enum already imported.

    Text in a personal field is anyone's input: decoding it must not import modules it names.
    """
    if isinstance(encoded, list):
        return all(_known_classes(v) for v in encoded)
    if not isinstance(encoded, dict):
        return True
    for tag in ("$attrs", "$enum"):
        if tag in encoded:
            module, _, qualname = str(encoded[tag]).partition(":")
            found: Any = sys.modules.get(module)
            for part in qualname.split(".") if found is not None else ():
                found = getattr(found, part, None)
            declared = getattr(found, "__crmkit_spec__", None) is not None or getattr(
                found, "__crmkit_value_object__", False
            )
            if not (found is Ref or declared or (isinstance(found, type) and issubclass(found, enum.Enum))):
                return False
    return all(_known_classes(v) for v in encoded.values())


def _anonymised_values(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)(_anonymised_values(v) for v in value)
    spec = getattr(type(value), "__crmkit_spec__", None)
    if isinstance(spec, AggregateSpec) and spec.cls is type(value):
        return _anonymised(spec, value)[0]
    return value


def _replacement(cls: type, fd: FieldDef, value: Any, owner: uuid.UUID, path: str) -> Any:
    """The anonymised value of a personal field, checked as the field checks it; raises when there is none."""
    convert = _converter(cls, fd.name)
    for candidate in _candidates(fd, value, owner, path):
        try:
            return convert(candidate)
        except ValidationError:
            continue
    raise ValidationError(
        path,
        "holds personal data but has no value that could replace it (give it default=None or a default)",
        cls.__name__,
    )


def _anonymised_item(cls: type, fields: Sequence[FieldDef], item: Any, owner: uuid.UUID, path: str) -> Any:
    """A value object with its personal parts anonymised; None when it cannot stand without them."""
    changes = {}
    for fd in fields:
        if not fd.is_personal:
            continue
        value = getattr(item, fd.name)
        try:
            new = value if value is None else _replacement(cls, fd, value, owner, f"{path}.{fd.name}")
        except ValidationError:
            return None
        if new != value:
            changes[fd.name] = new
    if not changes:
        return item
    try:
        return attrs.evolve(item, **changes)
    except ValidationError:
        return None


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (tuple, frozenset, Mapping, str)) and not value)


def _anonymised(
    spec: AggregateSpec, record: Any, crm: CRM | None = None, erased: Collection[uuid.UUID] = ()
) -> tuple[Any, list[FieldChange]]:
    """The record with its personal fields anonymised, and the changes (none when already anonymous).

    A class may anonymise its records itself with a static method
    ``__crmkit_anonymise__(record, crm, erased) -> record`` (``erased``: the ids of every
    record the erasure reaches; an audit entry whose old and new values are personal only
    when the field it records is, a feed chunk that holds other people's events too); the
    changes are then the personal fields whose values it changed.
    """
    custom = getattr(spec.cls, "__crmkit_anonymise__", None)
    if custom is not None and crm is not None:
        new = custom(record, crm, erased)
        return new, [
            FieldChange(spec.name, record.id, fd.name, str(fd.personal), "cleared" if _empty(value) else "replaced")
            for fd in spec.declared.values()
            if fd.is_personal and (value := getattr(new, fd.name)) != getattr(record, fd.name)
        ]
    changes: dict[str, Any] = {}
    report: list[FieldChange] = []
    for fd in spec.declared.values():
        if not fd.is_personal:
            continue
        value = getattr(record, fd.name)
        if _empty(value):
            continue
        new = _replacement(spec.cls, fd, value, record.id, fd.name)
        if new != value:
            changes[fd.name] = new
            action = "cleared" if _empty(new) else "replaced"
            report.append(FieldChange(spec.name, record.id, fd.name, str(fd.personal), action))
    if not changes:
        return record, []
    try:
        return attrs.evolve(record, **changes), report
    except ValidationError as exc:
        raise ValidationError(f"{spec.name}.{exc.field}", f"cannot be anonymised: {exc.message}", record.id) from None
