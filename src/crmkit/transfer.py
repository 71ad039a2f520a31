"""Records in and out of files: CSV, JSON Lines and Parquet to and from any declared aggregate.

The ``crmkit import`` and ``crmkit export`` commands are thin shells around this module,
which an application may call itself::

    mapping = transfer.Mapping.load("customers.toml", crm.schema.spec("customers"))
    summary = transfer.import_file(crm, "customers.csv", mapping, rejects="customers.rejects.csv")

A mapping says which column fills which field and how its text is read (dates with a
format and a time zone, decimals with their separators, tags, contact points, references
by external id); without one, the columns are named after the fields. Rows are upserted by
``external_id``, a batch per transaction, so running an import again (after a fix, or after
it was killed) adds only what is missing and updates what changed. Rows that cannot be
read or stored go to the reject file with their line, the field at fault and the reason;
the other rows are imported.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import json
import sys
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

from crmkit._errors import NotFound, ValidationError
from crmkit.query import Expr, F, Where
from crmkit.schema import AggregateSpec, FieldDef, Ref, declared_fields

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = [
    "FORMATS",
    "Column",
    "ImportSummary",
    "Mapping",
    "Row",
    "export_records",
    "import_file",
    "aggregate_spec",
    "parse_where",
    "read_rows",
]

#: File formats by name; ``format_of`` picks one from a file's suffix.
FORMATS = ("csv", "jsonl", "parquet")
#: The fields every record has that an import may set.
_RECORD_FIELDS = {"id": "uuid", "external_id": "text", "created_at": "instant"}
#: Conversions a mapping may name with ``type`` (otherwise the field's kind decides).
#: Columns ``crmkit export`` writes that the store sets itself: an import without a mapping skips them.
_STORE_MANAGED = ("updated_at", "version")
_TYPES = ("text", "integer", "decimal", "boolean", "date", "datetime", "tags", "uuid", "json")
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}


def aggregate_spec(crm: CRM, name: str) -> AggregateSpec:
    """The declaration of an aggregate of the connection; ValidationError listing them when unknown."""
    spec = crm.schema.spec(name) if name in crm.schema else None
    if not isinstance(spec, AggregateSpec):
        raise ValidationError("aggregate", f"is not declared (declared: {', '.join(crm.schema)})", name)
    return spec


def _mapping_error(where: str, message: str, value: Any = None) -> ValidationError:
    return ValidationError(f"mapping {where}".rstrip(), message, value)


@attrs.frozen
class Column:
    """How one column of the file fills one field.

    ``field`` is a field of the aggregate, ``attributes.<name>`` (a custom attribute), or
    ``<many field>.<part>`` (``emails.address``: each value makes one contact point; columns
    with the same ``item`` fill one value together; ``values`` adds fixed parts such as a
    label). ``type`` overrides the conversion the field's kind implies. ``separator``
    splits a cell into several values (tags, several e-mail addresses).
    """

    source: str
    field: str
    type: str | None = None
    format: str | None = None
    timezone: str | None = None
    decimal: str = "."
    thousands: str = ""
    separator: str | None = None
    lookup: str | None = None
    item: int = 0
    values: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Mapping:
    """Which column fills which field, constant values for the rest, and the file's dialect."""

    aggregate: str
    columns: tuple[Column, ...] = ()
    defaults: dict[str, Any] = attrs.field(factory=dict)
    delimiter: str = ","
    encoding: str = "utf-8"
    #: Used for date/time columns without a time zone of their own (None: they must carry one).
    timezone: str | None = None

    @classmethod
    def load(cls, path: str | Path, spec: AggregateSpec | None = None) -> Mapping:
        """Read a TOML mapping file (see docs/cli.md); ValidationError names what is wrong."""
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValidationError("mapping", "file not found", str(path)) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValidationError("mapping", f"is not valid TOML: {exc}", str(path)) from None
        return cls.from_dict(data, spec)

    @classmethod
    def from_dict(cls, data: dict[str, Any], spec: AggregateSpec | None = None) -> Mapping:
        """A mapping from its TOML tables: ``aggregate``, ``[file]``, ``[defaults]``, ``[columns]``."""
        unknown = set(data) - {"aggregate", "file", "defaults", "columns", "timezone"}
        if unknown:
            raise _mapping_error("", f"has unknown keys {sorted(unknown)}; use aggregate, file, defaults, columns")
        aggregate = data.get("aggregate", spec.name if spec is not None else "customers")
        file = data.get("file", {})
        if not isinstance(file, dict) or set(file) - {"delimiter", "encoding"}:
            raise _mapping_error("[file]", "takes delimiter and encoding", file)
        columns = []
        raw = data.get("columns", {})
        if not isinstance(raw, dict):
            raise _mapping_error("[columns]", "must be a table of column = field", raw)
        for source, target in raw.items():
            if isinstance(target, str):
                target = {"field": target}
            if not isinstance(target, dict) or not isinstance(target.get("field"), str):
                raise _mapping_error(
                    f"column {source!r}", "must name a field: 'col' = 'field' or {field = ...}", target
                )
            known = {a.name for a in attrs.fields(Column)} - {"source"}
            if set(target) - known:
                raise _mapping_error(f"column {source!r}", f"has unknown keys {sorted(set(target) - known)}")
            try:
                columns.append(Column(source=source, **target))
            except TypeError as exc:
                raise _mapping_error(f"column {source!r}", str(exc)) from None
        defaults = data.get("defaults", {})
        if not isinstance(defaults, dict):
            raise _mapping_error("[defaults]", "must be a table of field = value", defaults)
        mapping = cls(
            aggregate=aggregate,
            columns=tuple(columns),
            defaults=defaults,
            delimiter=file.get("delimiter", ","),
            encoding=file.get("encoding", "utf-8"),
            timezone=data.get("timezone"),
        )
        if spec is not None:
            mapping.check(spec)
        return mapping

    @classmethod
    def identity(cls, spec: AggregateSpec, header: Sequence[str]) -> Mapping:
        """Columns named after the fields they fill (what ``crmkit export`` writes)."""
        kept = [h for h in header if h not in _STORE_MANAGED]
        return cls(aggregate=spec.name, columns=tuple(Column(source=h, field=h) for h in kept))

    def check(self, spec: AggregateSpec) -> None:
        """Raise ValidationError when a column names no field of the aggregate or a bad conversion."""
        if self.timezone is not None:
            _zone(self.timezone, "timezone")
        if len(self.delimiter) != 1:
            raise _mapping_error("[file] delimiter", "must be one character", self.delimiter)
        for column in self.columns:
            where = f"column {column.source!r}"
            _target(spec, column.field, where)
            if column.type is not None and column.type not in _TYPES:
                raise _mapping_error(where, f"type must be one of {', '.join(_TYPES)}", column.type)
            if column.timezone is not None:
                _zone(column.timezone, where)
            if column.lookup not in (None, "external_id"):
                raise _mapping_error(where, "lookup can only be 'external_id'", column.lookup)
            if column.lookup and _target(spec, column.field, where).kind != "ref":
                raise _mapping_error(where, "lookup needs a reference field (schema.ref)", column.field)
        for name in self.defaults:
            _target(spec, name, f"default {name!r}")
        fills = {c.field.split(".")[0] for c in self.columns} | set(self.defaults)
        if "external_id" not in fills and spec.has_external_id:
            raise _mapping_error(
                "", "maps no column to external_id: imports are idempotent by it (map the file's key column)"
            )


def _zone(name: str, where: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _mapping_error(where, "names no known time zone", name) from None


def _record_def(name: str) -> FieldDef:
    return FieldDef(kind=_RECORD_FIELDS[name], name=name, nullable=True, default=None)


def _target(spec: AggregateSpec, name: str, where: str) -> FieldDef:
    """The FieldDef a column fills (for ``many.part``: the part's), or a mapping error."""
    fields = {fd.name: fd for fd in declared_fields(spec.cls)}
    if name in _RECORD_FIELDS:
        return _record_def(name)
    head, _, part = name.partition(".")
    fd = fields.get(head)
    if fd is None:
        raise _mapping_error(where, f"names no field of {spec.name} (fields: {', '.join(fields)})", name)
    if not part:
        return fd
    if fd.kind == "attributes":
        return FieldDef(kind="attribute", name=name, nullable=True, default=None)
    if fd.kind == "many":
        parts = {p.name: p for p in declared_fields(fd.type)}
        if part not in parts:
            raise _mapping_error(where, f"{head} items have no part {part!r} (parts: {', '.join(parts)})", name)
        return parts[part]
    raise _mapping_error(where, f"{head} has no parts", name)


# --------------------------------------------------------------------------- converting cells


def _split(text: str, separator: str | None) -> list[str]:
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            raise ValueError("is not a JSON list") from None
        if not isinstance(items, list):
            raise ValueError("is not a JSON list")
        return items
    return [s.strip() for s in text.split(separator or ";") if s.strip()]


def _decimal(text: str, column: Column) -> Decimal:
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "")
    if column.thousands:
        cleaned = cleaned.replace(column.thousands, "")
    if column.decimal != ".":
        if "." in cleaned:
            raise ValueError(f"is not a number with decimal separator {column.decimal!r}")
        cleaned = cleaned.replace(column.decimal, ".")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError("is not a number") from None
    if not number.is_finite():
        raise ValueError("is not a finite number")
    return number


def _instant(text: str, column: Column, default_zone: str | None) -> dt.datetime:
    try:
        value = dt.datetime.strptime(text, column.format) if column.format else dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"is not a date and time in the format {column.format or 'ISO 8601'}") from None
    if value.tzinfo is None:
        zone = column.timezone or default_zone
        if zone is None:
            raise ValueError("has no time zone (declare timezone in the mapping)")
        value = value.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return value


def _date(text: str, column: Column) -> dt.date:
    try:
        return dt.datetime.strptime(text, column.format).date() if column.format else dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"is not a date in the format {column.format or 'YYYY-MM-DD'}") from None


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("is not true/false, yes/no or 1/0")


_KIND_TYPE = {
    "integer": "integer",
    "boolean": "boolean",
    "money": "decimal",
    "instant": "datetime",
    "date": "date",
    "uuid": "uuid",
    "ref": "uuid",
    "text_set": "tags",
    "text_list": "tags",
    "many": "json",
    "attributes": "json",
    "ref_any": "json",
}


def convert(value: Any, kind: str, column: Column, default_zone: str | None = None) -> Any:
    """A cell's value as the field wants it; ValueError (the reason) when it cannot be read.

    Text cells are read by ``column.type`` or the field's kind; values a JSON Lines or
    Parquet file already typed (numbers, lists, objects) pass through to the field's own check.
    """
    wanted = column.type or _KIND_TYPE.get(kind, "text")
    if not isinstance(value, str):
        if wanted == "decimal" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return Decimal(str(value))
        if wanted == "datetime" and isinstance(value, dt.datetime) and value.tzinfo is None:
            zone = column.timezone or default_zone
            if zone is None:
                raise ValueError("has no time zone (declare timezone in the mapping)")
            return value.replace(tzinfo=zoneinfo.ZoneInfo(zone))
        if wanted == "tags" and isinstance(value, list):
            return value
        return value
    text = value.strip()
    if wanted == "text":
        return value
    if wanted == "integer":
        try:
            return int(text.replace(column.thousands, "") if column.thousands else text)
        except ValueError:
            raise ValueError("is not a whole number") from None
    if wanted == "decimal":
        return _decimal(text, column)
    if wanted == "boolean":
        return _boolean(text)
    if wanted == "datetime":
        return _instant(text, column, default_zone)
    if wanted == "date":
        return _date(text, column)
    if wanted == "uuid":
        try:
            return uuid.UUID(text)
        except ValueError:
            raise ValueError("is not a UUID") from None
    if wanted == "tags":
        return _split(text, column.separator)
    if wanted == "json":
        if kind == "ref_any" and not text.startswith("{"):
            aggregate, _, ident = text.partition(":")
            try:
                return Ref(aggregate, uuid.UUID(ident))
            except ValueError:
                raise ValueError("is not aggregate:uuid") from None
        try:
            return json.loads(text, parse_float=Decimal)
        except ValueError:
            raise ValueError("is not valid JSON") from None
    raise AssertionError(wanted)  # pragma: no cover - checked by Mapping.check


# --------------------------------------------------------------------------- reading files


@attrs.frozen
class Row:
    """One input record: its line (CSV: the header is line 1; JSON Lines: its line; Parquet: its row from 1)."""

    line: int
    values: dict[str, Any]
    #: How far into the input this row ends, in the unit of ``read_rows``'s total.
    position: int


def format_of(path: str | Path, given: str | None = None) -> str:
    """The file format: ``given`` or the suffix's (.csv, .jsonl/.ndjson, .parquet)."""
    if given is not None:
        if given not in FORMATS:
            raise ValidationError("format", f"must be one of {', '.join(FORMATS)}", given)
        return given
    suffix = Path(path).suffix.lower()
    found = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}.get(suffix)
    if found is None:
        raise ValidationError(
            "format", "cannot be told from the file name: give --format csv, jsonl or parquet", suffix
        )
    return found


def read_rows(
    path: str | Path, fmt: str, mapping: Mapping | None = None
) -> tuple[int, list[str] | None, Iterator[Row]]:
    """The total (bytes, or rows for Parquet), the CSV header, and the rows of a file, streamed."""
    path = Path(path)
    if not path.is_file():
        raise ValidationError("file", "not found", str(path))
    encoding = mapping.encoding if mapping else "utf-8"
    if fmt == "parquet":
        return _parquet(path)
    total = path.stat().st_size
    raw = path.open("rb")
    text = io.TextIOWrapper(raw, encoding=encoding, newline="")
    if fmt == "jsonl":
        return total, None, _jsonl(raw, text)
    reader = csv.reader(text, delimiter=mapping.delimiter if mapping else ",")
    try:
        header = next(reader)
    except StopIteration:
        raw.close()
        raise ValidationError("file", "is empty (a CSV file starts with its header line)", str(path)) from None
    except UnicodeDecodeError as exc:
        raw.close()
        raise ValidationError("file", f"is not {encoding} text: {exc.reason}", str(path)) from None
    return total, header, _csv(raw, reader, header)


def _csv(raw: IO[bytes], reader: Any, header: list[str]) -> Iterator[Row]:
    with raw:
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                raise ValidationError("file", f"line {line} cannot be read: {exc}", None) from None
            if not cells:
                continue
            if len(cells) == len(header):
                values: dict[str, Any] = dict(zip(header, cells, strict=True))
            else:  # the reason, for the reject file
                values = {"": f"has {len(cells)} cells where the header has {len(header)}"}
            yield Row(line, values, raw.tell())


def _jsonl(raw: IO[bytes], text: IO[str]) -> Iterator[Row]:
    with raw:
        for number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            try:
                values = json.loads(line, parse_float=Decimal)
            except ValueError:
                values = None
            if not isinstance(values, dict):
                values = {"": "is not a JSON object"}
            yield Row(number, values, raw.tell())


def _parquet(path: Path) -> tuple[int, list[str] | None, Iterator[Row]]:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise ValidationError("format", "Parquet files need pyarrow: pip install pyarrow", "parquet") from None
    try:
        file = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid
        raise ValidationError("file", f"is not a Parquet file: {exc}", str(path)) from None

    def rows() -> Iterator[Row]:
        number = 0
        for batch in file.iter_batches(batch_size=1000):
            for values in batch.to_pylist():
                number += 1
                yield Row(number, values, number)

    return file.metadata.num_rows, list(file.schema_arrow.names), rows()


# --------------------------------------------------------------------------- importing


@attrs.frozen
class ImportSummary:
    """What an import did: rows read, added, updated, found unchanged, rejected, and its time."""

    read: int
    added: int
    updated: int
    unchanged: int
    rejected: int
    seconds: float
    dry_run: bool = False

    def __str__(self) -> str:
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        if self.dry_run:
            done = f"{self.read - self.rejected:,} would be imported"
        else:
            done = f"{self.added:,} added, {self.updated:,} updated, {self.unchanged:,} unchanged"
        return (
            f"{self.read:,} rows read: {done}, {self.rejected:,} rejected in {self.seconds:.1f} s ({rate:,.0f} rows/s)"
        )


class _Builder:
    """Turns file rows into the field mappings ``upsert_many`` takes, or into a reason to reject them."""

    def __init__(self, crm: CRM, spec: AggregateSpec, mapping: Mapping, header: Sequence[str] | None) -> None:
        self.crm = crm
        self.spec = spec
        self.mapping = mapping
        self.targets = [(c, _target(spec, c.field, f"column {c.source!r}")) for c in mapping.columns]
        if header is not None:
            missing = [c.source for c in mapping.columns if c.source not in header]
            if missing:
                raise _mapping_error("", f"names columns the file does not have: {', '.join(missing)}")
        self.required = [fd.name for fd in declared_fields(spec.cls) if fd.required]
        self.lookups: dict[tuple[str, str], uuid.UUID] = {}

    def build(self, row: Row) -> dict[str, Any]:
        """The row's field values; ValidationError (field, reason, value) for the first bad cell."""
        if "" in row.values:  # a line the reader could not make a row of
            raise ValidationError("row", str(row.values[""]), None)
        fields: dict[str, Any] = dict(self.mapping.defaults)
        items: dict[tuple[str, int], dict[str, Any]] = {}
        many: dict[str, list[Any]] = {}
        for column, fd in self.targets:
            cell = row.values.get(column.source)
            if cell is None or (isinstance(cell, str) and not cell.strip()):
                continue
            head, _, part = column.field.partition(".")
            try:
                if part and fd.kind != "attribute":  # a part of a value object: emails.address
                    values = _split(cell, column.separator) if column.separator else [cell]
                    for n, one in enumerate(values):
                        got = convert(one, fd.kind, column, self.mapping.timezone)
                        key = (head, column.item + n * 1000 if column.separator else column.item)
                        items.setdefault(key, dict(column.values))[part] = got
                    continue
                if part:  # attributes.<name>
                    fields.setdefault("attributes", {})[part] = convert(cell, "text", column, self.mapping.timezone)
                    continue
                if column.lookup:
                    fields[head] = self._lookup(fd, str(cell).strip())
                    continue
                value = convert(cell, fd.kind, column, self.mapping.timezone)
                if fd.kind == "many" and isinstance(value, list):
                    many.setdefault(head, []).extend(value)
                    continue
                fields[head] = value
            except ValueError as exc:
                if isinstance(exc, ValidationError):
                    raise
                raise ValidationError(column.field, str(exc), cell) from None
        for (head, _), item in sorted(items.items()):
            many.setdefault(head, []).append(item)
        fields.update(many)
        for name in self.required:
            if name not in fields:
                raise ValidationError(name, "is required (empty or not mapped)", None)
        if self.spec.has_external_id and fields.get("external_id") is None:
            raise ValidationError("external_id", "is required: imports are idempotent by it", None)
        return fields

    def _lookup(self, fd: FieldDef, key: str) -> uuid.UUID:
        target = str(fd.target)
        found = self.lookups.get((target, key))
        if found is None:
            try:
                found = self.crm.records(target).get_by_external_id(key).id
            except NotFound:
                raise ValidationError(fd.name, f"no {target} record has external id {key!r}", key) from None
            self.lookups[(target, key)] = found
        return found


Progress = Callable[[int, int], None]
Reject = Callable[[int, str, str, Any], None]


def import_file(
    crm: CRM,
    path: str | Path,
    mapping: Mapping | None = None,
    *,
    aggregate: str | None = None,
    fmt: str | None = None,
    rejects: str | Path | None = None,
    dry_run: bool = False,
    batch_size: int = 1000,
    on_start: Callable[[int], None] | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Upsert a file's rows into an aggregate by external id; bad rows go to ``rejects`` (a CSV file).

    ``rejects`` defaults to ``<file>.rejects.csv`` beside the input; its columns are
    ``line``, ``field``, ``reason`` and ``value``, and it is rewritten on every run.
    ``on_start(total)`` is told the input's size (bytes; rows for Parquet) and
    ``progress(position, rows)`` is called after each batch.
    """
    started = time.perf_counter()
    path = Path(path)
    fmt = format_of(path, fmt)
    name = aggregate or (mapping.aggregate if mapping else "customers")
    spec = aggregate_spec(crm, name)
    if mapping is not None:
        mapping.check(spec)
    total, header, rows = read_rows(path, fmt, mapping)
    if mapping is None:
        if header is None:  # JSON Lines: the keys of each object are field names
            mapping = Mapping(aggregate=name, columns=tuple(Column(source=f, field=f) for f in _fields_of(spec)))
            header = None
        else:
            mapping = Mapping.identity(spec, header)
        mapping.check(spec)
    builder = _Builder(crm, spec, mapping, header)
    service: Any = crm.records(name)
    reject_path = Path(rejects) if rejects is not None else path.with_name(path.name + ".rejects.csv")
    counts = {"read": 0, "added": 0, "updated": 0, "unchanged": 0, "rejected": 0}
    with reject_path.open("w", encoding="utf-8", newline="") as out:
        if on_start is not None:
            on_start(total)
        writer = csv.writer(out)
        writer.writerow(["line", "field", "reason", "value"])

        pending: list[tuple[int, str, str, str]] = []

        def reject(line: int, field: str, reason: str, value: Any) -> None:
            counts["rejected"] += 1
            pending.append((line, field, reason, "" if value is None else _cell(value)))

        def flush() -> None:  # a batch's rejects in line order, whether found reading or storing
            writer.writerows(sorted(pending))
            pending.clear()
            out.flush()

        batch: list[tuple[int, dict[str, Any]]] = []
        position = 0
        for row in rows:
            counts["read"] += 1
            position = row.position
            try:
                batch.append((row.line, builder.build(row)))
            except ValidationError as exc:
                reject(row.line, exc.field, exc.message, exc.value)
            if len(batch) >= batch_size:
                _store(service, spec, batch, counts, reject, dry_run)
                batch = []
                flush()
                if progress is not None:
                    progress(position, counts["read"])
        _store(service, spec, batch, counts, reject, dry_run)
        flush()
        if progress is not None:
            progress(total, counts["read"])
    return ImportSummary(
        counts["read"],
        counts["added"],
        counts["updated"],
        counts["unchanged"],
        counts["rejected"],
        time.perf_counter() - started,
        dry_run,
    )


def _fields_of(spec: AggregateSpec) -> list[str]:
    return [*_RECORD_FIELDS, *(fd.name for fd in declared_fields(spec.cls))]


def _store(
    service: Any,
    spec: AggregateSpec,
    batch: list[tuple[int, dict[str, Any]]],
    counts: dict[str, int],
    reject: Reject,
    dry_run: bool,
) -> None:
    if not batch:
        return
    if dry_run:
        for line, fields in batch:
            try:
                spec.cls(**fields)
            except ValidationError as exc:
                reject(line, exc.field, exc.message, exc.value)
            except TypeError as exc:
                reject(line, spec.label, str(exc), None)
        return
    result = service.upsert_many([fields for _, fields in batch], on_error="report", batch_size=len(batch))
    for index, field, reason in result.failed:
        line, fields = batch[index]
        reject(line, field, reason, fields.get(field))
    counts["added"] += result.added
    counts["updated"] += result.updated
    counts["unchanged"] += result.unchanged


# --------------------------------------------------------------------------- exporting


def _plain(value: Any) -> Any:
    """A stored value as JSON: Decimal and dates as text, sets as sorted lists, value objects as objects."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, (frozenset, set)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if attrs.has(type(value)):
        return {a.name: _plain(getattr(value, a.name)) for a in attrs.fields(type(value))}
    return str(value)


def _cell(value: Any) -> str:
    """A value as one CSV cell: text as is, tags joined by ';', structures as JSON."""
    plain = _plain(value)
    if plain is None:
        return ""
    if isinstance(plain, bool):
        return "true" if plain else "false"
    if isinstance(plain, str):
        return plain
    if isinstance(plain, list) and all(isinstance(v, str) and ";" not in v for v in plain) and plain:
        return ";".join(plain)
    return json.dumps(plain, ensure_ascii=False)


def export_records(
    crm: CRM, aggregate: str, out: IO[str], *, fmt: str = "csv", where: Where = None, limit: int | None = None
) -> int:
    """Write an aggregate's records (those matching ``where``) as CSV or JSON Lines; returns how many.

    Records are read page by page (bounded memory). The CSV columns are the record's fields,
    so ``crmkit import`` reads the file back without a mapping; attributes, value objects
    and references to any aggregate are JSON cells.
    """
    spec = aggregate_spec(crm, aggregate)
    if fmt not in ("csv", "jsonl"):
        raise ValidationError("format", "export writes csv or jsonl", fmt)
    names = ["id", "external_id", "created_at", "updated_at", "version", *(fd.name for fd in declared_fields(spec.cls))]
    names = [n for n in names if n != "external_id" or spec.has_external_id]
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(names)
    count = 0
    records: Iterator[Any] = crm.records(aggregate).scan(where)
    for record in records:
        if limit is not None and count >= limit:
            break
        if writer is not None:
            writer.writerow([_cell(getattr(record, n)) for n in names])
        else:
            out.write(json.dumps({n: _plain(getattr(record, n)) for n in names}, ensure_ascii=False) + "\n")
        count += 1
    return count


_OPERATORS = ("==", "!=", ">=", "<=", "=", ">", "<", "~")


def parse_where(spec: AggregateSpec, text: str) -> Where:
    """A filter from ``field OP value`` (``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``~`` contains).

    The value is read by the field's kind: ``stage=customer``, ``tags~vip``,
    ``created_at>=2026-01-01T00:00:00+00:00``, ``attributes.tier=gold``.
    """
    for op in _OPERATORS:
        name, found, raw = text.partition(op)
        if found and name.strip():
            break
    else:
        raise ValidationError("where", "must read field OP value with OP one of = != < <= > >= ~", text)
    name, raw = name.strip(), raw.strip()
    field = spec.field(name) if not name.startswith("attributes.") else None
    if field is None and not name.startswith("attributes."):
        raise ValidationError("where", f"names no queryable field of {spec.name}", name)
    kind = field.kind if field is not None else "text"
    value: Any
    try:
        if raw.lower() in ("null", "none"):
            value = None
        elif kind == "int":
            value = int(raw)
        elif kind == "decimal":
            value = Decimal(raw)
        elif kind == "datetime":
            value = dt.datetime.fromisoformat(raw)
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
        elif kind == "date":
            value = dt.date.fromisoformat(raw)
        elif kind == "uuid":
            value = uuid.UUID(raw)
        elif kind == "bool":
            value = _boolean(raw)
        else:
            value = raw
    except (ValueError, InvalidOperation):
        raise ValidationError("where", f"{name}: {raw!r} is not a {kind} value", text) from None
    f = F(name)
    if op == "~":
        return f.contains(value)
    if op in ("=", "=="):
        return f.is_null() if value is None else f == value
    if op == "!=":
        return ~f.is_null() if value is None else f != value
    compare: dict[str, Expr] = {">": f > value, "<": f < value, ">=": f >= value, "<=": f <= value}
    return compare[op]
