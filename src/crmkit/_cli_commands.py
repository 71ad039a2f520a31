"""The everyday subcommands of ``crmkit``: import, export, stats and report.

Each is a function taking the parsed arguments and the output stream and returning the
exit status, as in ``crmkit.cli``; errors are CRMErrors (ValidationError names what is
wrong), which ``crmkit.cli.main`` prints as one line. Progress bars need ``rich``
(``pip install 'crmkit[cli]'``); without it the commands run the same, quietly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import crmkit
from crmkit import transfer
from crmkit._errors import ValidationError
from crmkit.query import ALL, Expr

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Add import, export, stats and report to the ``crmkit`` parser's subcommands."""
    imp = commands.add_parser(
        "import",
        help="import a CSV, JSON Lines or Parquet file into an aggregate (idempotent by external id)",
        description=(
            "Upsert the rows of FILE into an aggregate by external id: run it again after a fix or "
            "an interruption and only what is missing or changed is written. Rows that cannot be "
            "read or stored go to the reject file with their line, field and reason."
        ),
    )
    imp.add_argument("file", help="the input: .csv, .jsonl/.ndjson or .parquet (Parquet needs pyarrow)")
    _store_arguments(imp)
    imp.add_argument("--aggregate", help="aggregate to import into (default: the mapping's, else customers)")
    imp.add_argument("--mapping", help="TOML file: column -> field and how to read each column")
    imp.add_argument("--rejects", help="CSV file for bad rows (default: FILE.rejects.csv beside the input)")
    imp.add_argument("--format", choices=transfer.FORMATS, help="file format (default: from the suffix)")
    imp.add_argument("--batch-size", type=int, default=1000, help="rows per transaction (default: 1000)")
    imp.add_argument("--dry-run", action="store_true", help="read and check every row, write nothing to the store")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp.set_defaults(run=_import)

    exp = commands.add_parser(
        "export",
        help="write an aggregate's records as CSV or JSON Lines",
        description="Write the records of AGGREGATE (matching every --where) to --out or standard output.",
    )
    exp.add_argument("aggregate", help="e.g. customers, transactions, opportunities")
    _store_arguments(exp)
    exp.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="FILTER",
        help="field OP value, OP one of = != < <= > >= ~ (contains); repeat to narrow further",
    )
    exp.add_argument("--format", choices=("csv", "jsonl"), help="default: from --out's suffix, else csv")
    exp.add_argument("--out", help="output file (default: standard output)")
    exp.add_argument("--limit", type=int, help="at most this many records")
    exp.set_defaults(run=_export)

    stats = commands.add_parser(
        "stats",
        help="count the records of every aggregate, per tenant",
        description="Count the records of every declared aggregate for each --tenant, counted in the store.",
    )
    stats.add_argument("--url", required=True, help="store URL")
    stats.add_argument("--tenant", action="append", help="tenant to count (repeat for several; default: default)")
    stats.set_defaults(run=_stats)

    report = commands.add_parser(
        "report",
        help="write an HTML report with figures: value, pipeline or service",
        description="Write DIR/index.html and its PNG figures (needs matplotlib: pip install 'crmkit[plots]').",
    )
    report.add_argument("kind", choices=("value", "pipeline", "service"), help="which report")
    _store_arguments(report)
    report.add_argument("--out", required=True, help="directory for index.html and the figures")
    report.add_argument(
        "--as-of",
        help="date the report is as of (value: default the last transaction's day; service: the end of that day, "
        "default now)",
    )
    report.set_defaults(run=_report)


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="store URL, e.g. sqlite:///crm.db")
    parser.add_argument("--tenant", required=True, help="tenant the records belong to")


# --------------------------------------------------------------------------- import


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[tuple[Callable[[int], None], Callable[[int, int], None]]]:
    """``(start(total), advance(position, rows))`` drawing a rich progress bar on stderr when wanted."""
    try:
        if not enabled:
            raise ImportError
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
    except ImportError:
        yield (lambda total: None), (lambda position, rows: None)
        return
    started = time.perf_counter()
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:,} rows  {task.fields[rate]:,.0f} rows/s  ETA"),
        TimeRemainingColumn(),
        console=_stderr_console(),
        transient=False,
    )
    task = bar.add_task(label, total=None, rows=0, rate=0.0)
    shown = []

    def start(total: int) -> None:  # drawn once the input is open and the mapping checked
        bar.update(task, total=total)
        bar.start()
        shown.append(True)

    def advance(position: int, rows: int) -> None:
        rate = rows / max(time.perf_counter() - started, 1e-9)
        bar.update(task, completed=position, rows=rows, rate=rate)

    try:
        yield start, advance
    finally:
        if shown:
            bar.stop()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(file=sys.stderr)


def _import(args: argparse.Namespace, out: TextIO) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise ValidationError("file", "not found", str(path))
    if args.batch_size < 1:
        raise ValidationError("batch-size", "must be at least 1", args.batch_size)
    with crmkit.connect(args.url, tenant=args.tenant) as crm:
        mapping = None
        if args.mapping:
            name = args.aggregate
            spec_name = name or _mapping_aggregate(args.mapping)
            mapping = transfer.Mapping.load(args.mapping, transfer.aggregate_spec(crm, spec_name))
        rejects = Path(args.rejects) if args.rejects else path.with_name(path.name + ".rejects.csv")
        what = " (dry run: nothing is written)" if args.dry_run else ""
        print(f"importing {path.name} into {crm.store.url}, tenant {args.tenant!r}{what}", file=sys.stderr)
        with _progress(not args.no_progress, path.name) as (start, advance):
            summary = transfer.import_file(
                crm,
                path,
                mapping,
                aggregate=args.aggregate,
                fmt=args.format,
                rejects=rejects,
                dry_run=args.dry_run,
                batch_size=args.batch_size,
                on_start=start,
                progress=advance,
            )
    print(summary, file=out)
    if summary.rejected:
        print(f"rejected rows: {rejects}", file=out)
    return 0


def _mapping_aggregate(path: str) -> str:
    """The aggregate a mapping file names (customers when it names none)."""
    mapping = transfer.Mapping.load(path)
    return mapping.aggregate


# --------------------------------------------------------------------------- export


def _export(args: argparse.Namespace, out: TextIO) -> int:
    fmt = args.format or ("jsonl" if args.out and Path(args.out).suffix in (".jsonl", ".ndjson") else "csv")
    with crmkit.connect(args.url, tenant=args.tenant) as crm:
        spec = transfer.aggregate_spec(crm, args.aggregate)
        where: Expr = ALL
        for text in args.where:
            condition = transfer.parse_where(spec, text)
            assert isinstance(condition, Expr)
            where = condition if where is ALL else where & condition
        if args.out:
            with open(args.out, "w", encoding="utf-8", newline="") as file:
                n = transfer.export_records(crm, args.aggregate, file, fmt=fmt, where=where, limit=args.limit)
            print(f"exported {n:,} {args.aggregate} to {args.out}", file=sys.stderr)
        else:
            transfer.export_records(crm, args.aggregate, out, fmt=fmt, where=where, limit=args.limit)
    return 0


# --------------------------------------------------------------------------- stats


def _stats(args: argparse.Namespace, out: TextIO) -> int:
    tenants = args.tenant or ["default"]
    counts: dict[str, list[int]] = {}
    url = args.url
    for tenant in tenants:
        with crmkit.connect(args.url, tenant=tenant) as crm:
            url = crm.store.url
            for name in crm.schema:
                counts.setdefault(name, []).append(crm.records(name).count())
    width = max(len(n) for n in counts) + 2
    print(f"records in {url}, counted in the store", file=out)
    print(f"{'aggregate':<{width}}" + "".join(f"{t:>14}" for t in tenants), file=out)
    for name, row in counts.items():
        print(f"{name:<{width}}" + "".join(f"{n:>14,}" for n in row), file=out)
    return 0


# --------------------------------------------------------------------------- reports


def _report(args: argparse.Namespace, out: TextIO) -> int:
    try:
        import matplotlib  # noqa: F401 - only to fail early, naming the extra to install
        import numpy  # noqa: F401
        import scipy  # noqa: F401
    except ImportError:
        raise ValidationError(
            "report", "needs matplotlib, numpy and scipy: pip install 'crmkit[plots]'", args.kind
        ) from None
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    with crmkit.connect(args.url, tenant=args.tenant) as crm:
        from crmkit import _cli_report

        if args.kind == "value":
            as_of = _as_of(crm, args.as_of)
            page = _cli_report.value_report(crm, folder, as_of)
        elif args.kind == "service":
            now = crm.now() if not args.as_of else _end_of(_as_of(crm, args.as_of))
            page = _cli_report.service_report(crm, folder, now)
        else:
            page = _cli_report.pipeline_report(crm, folder)
    print(f"wrote {page}", file=out)
    return 0


def _as_of(crm: crmkit.CRM, given: str | None) -> dt.date:
    if given:
        try:
            return dt.date.fromisoformat(given)
        except ValueError:
            raise ValidationError("as-of", "must be a date YYYY-MM-DD", given) from None
    last = crm.transactions.aggregate(max="occurred_at")
    rows = list(last)
    value = rows[0]["max(occurred_at)"] if rows else None
    if value is None:
        raise ValidationError("report", "the tenant has no transactions to report on", crm.tenant)
    return value.date() if isinstance(value, dt.datetime) else value


def _end_of(day: dt.date) -> dt.datetime:
    """The last microsecond of a day, in UTC."""
    return dt.datetime.combine(day, dt.time.max, dt.timezone.utc)


def escape(value: Any) -> str:
    """A value as HTML text (Decimal amounts with two places)."""
    if isinstance(value, Decimal):
        value = f"{value:,.2f}"
    return html.escape(str(value))
