"""The ``crmkit`` console script: ``demo`` and ``migrate`` here; import, export, stats and report in ``_cli_commands``.

Each subcommand is a function taking the parsed arguments and an output stream and
returning the exit status; ``main`` builds the parser, runs one, and turns crmkit errors
into a one-line message and status 1 instead of a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import crmkit
from crmkit._errors import CRMError, PluginError

__all__ = ["main"]

Command = Callable[[argparse.Namespace, TextIO], int]

#: Assumptions the demo states when it prints figures that depend on them.
DEMO_MARGIN = Decimal("0.30")
DEMO_ACQUISITION_COST = Decimal("25.00")
DEMO_AT_RISK_BELOW = 0.3
DEMO_HORIZON_WEEKS = 52
DEMO_MONTHLY_DISCOUNT = 0.01


def _money(value: Decimal | float) -> str:
    return f"${value:,.2f}"


def _default_url(folder: Path) -> tuple[str, str]:
    return f"sqlite:///{(folder / 'crm.db').as_posix()}", "embedded SQLite file, removed afterwards"


def _open(url: str | None, tenant: str, out: TextIO, folder: Path) -> crmkit.CRM:
    if url is not None:
        crm = crmkit.connect(url, tenant=tenant)
        print(f"store: {crm.store.url} (given with --url), tenant {tenant!r}", file=out)
        return crm
    sqlite, what = _default_url(folder)
    try:
        crm = crmkit.connect(sqlite, tenant=tenant)
    except PluginError:
        crm = crmkit.connect("memory://", tenant=tenant)
        print(f"store: memory:// (install crmkit-sqlalchemy for an SQLite file), tenant {tenant!r}", file=out)
        return crm
    print(f"store: {crm.store.url} ({what}), tenant {tenant!r}", file=out)
    return crm


def _load(crm: crmkit.CRM, out: TextIO) -> None:
    from crmkit.value.datasets import cdnow_customers, cdnow_transactions

    people = crm.customers.add_many(cdnow_customers())
    sales = crm.transactions.add_many(cdnow_transactions())
    if people.added or sales.added:
        print(f"loaded {people.added:,} customers and {sales.added:,} purchases from the CDNOW sample", file=out)
    if people.skipped or sales.skipped:
        print(f"already stored: {people.skipped:,} customers and {sales.skipped:,} purchases (skipped)", file=out)


def _installed(crm: crmkit.CRM, out: TextIO) -> None:
    """Name the installed plugins (other than backends) every connection loads: they may change results."""
    extra = [p for p in crm._host.describe() if not p.builtin and not p.schemes]
    if extra:
        names = ", ".join(f"{p.name} ({p.distribution or 'no distribution'})" for p in extra)
        print(f"installed plugins active in every connection: {names}", file=out)


def _names(crm: crmkit.CRM, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    return {cid: crm.customers.get(cid).name for cid in ids}


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from crmkit.value import probability_alive
    from crmkit.value.datasets import CDNOW_CALIBRATION_END, CDNOW_OBSERVATION_END

    started = time.perf_counter()
    print("crmkit demo: customer value on the CDNOW sample (2,357 customers, Jan 1997 - Jun 1998)", file=out)
    # A fresh store each run: a file left from an earlier run (or crmkit version) never leaks in.
    with (
        tempfile.TemporaryDirectory(prefix="crmkit-demo-") as folder,
        _open(args.url, args.tenant, out, Path(folder)) as crm,
    ):
        _installed(crm, out)
        _load(crm, out)
        end = CDNOW_OBSERVATION_END
        now = dt.datetime.combine(end, dt.time(23, 59), dt.timezone.utc)
        full = crm.value.summary(unit="week", observation_end=end)
        split = crm.value.summary(unit="week", calibration_end=CDNOW_CALIBRATION_END, observation_end=end)
        repeaters = full.repeaters()
        print(
            f"\nsummary computed in the store as of {end}: {len(full):,} customers, "
            f"{len(repeaters):,} with repeat purchases (unit: week)",
            file=out,
        )
        revenue = {v.customer_id: v.revenue for v in crm.value.historic(until=now)}
        model = _models(crm, full, split, out)
        rfm = crm.value.rfm(as_of=now)
        print(f"\nRFM segments as of {end} (quintiles):", file=out)
        sizes = [(name, n) for name, n in rfm.sizes().items() if n]
        for i in range(0, len(sizes), 4):
            print("  " + "  ".join(f"{name:<20}{n:>5}" for name, n in sizes[i : i + 4]), file=out)
        cut = sorted(revenue.values(), reverse=True)[max(len(revenue) // 5 - 1, 0)]
        if model is not None:
            alive = probability_alive(model, full)
            risky = [c for c, p in alive.items() if p < DEMO_AT_RISK_BELOW and revenue[c] >= cut]
            why = f"P(alive) below {DEMO_AT_RISK_BELOW:g}"
        else:
            alive = {}
            slipping = ("cant_lose", "at_risk")
            risky = [r.customer_id for r in rfm if r.segment in slipping and revenue[r.customer_id] >= cut]
            why = "RFM segment cant_lose or at_risk"
        risky.sort(key=lambda c: (-revenue[c], c))
        print(
            f"\nhigh-value customers at risk: {len(risky):,} of the top 20 % by revenue have {why}",
            file=out,
        )
        names = _names(crm, risky[:5])
        for c in risky[:5]:
            extra = f"  P(alive) {alive[c]:.2f}" if c in alive else f"  RFM {rfm.get(c).code}"
            print(f"  {names[c]:<12} revenue {_money(revenue[c]):>10}{extra}", file=out)
        _payback(crm, end, out)
    print(f"\ndone in {time.perf_counter() - started:.1f} s", file=out)
    return 0


def _floats(values: Any) -> list[float]:
    """Model output (a numpy array or a float) as a list of floats, without importing numpy here."""
    return [float(v) for v in (values.tolist() if hasattr(values, "tolist") else [values])]


def _models(crm: crmkit.CRM, full: Any, split: Any, out: TextIO) -> Any:
    """Fit BG/NBD and Gamma-Gamma, print parameters, a holdout check and the top CLV; None without numpy/scipy."""
    try:
        from crmkit.value.models import BetaGeo, GammaGamma, customer_lifetime_value
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        why = "they need numpy and scipy: pip install 'crmkit[models]'" if missing in ("numpy", "scipy") else str(exc)
        print(f"\nnote: skipping BG/NBD, Gamma-Gamma and CLV ({why})", file=out)
        return None
    check = BetaGeo().fit(split.frequency, split.recency, split.T)
    expected = check.conditional_expected_purchases(split.duration_holdout, split.frequency, split.recency, split.T)
    params = "  ".join(f"{k}={v:.3f}" for k, v in check.params.items())
    print("\nBG/NBD fitted on weeks 1-39 (to 1997-09-30), as in Fader, Hardie and Lee (2005):", file=out)
    print(f"  {params}  LL={check.log_likelihood:.1f}", file=out)
    actual = sum(split.frequency_holdout)
    print(f"  weeks 40-78: predicted {sum(_floats(expected)):,.0f} repeat purchases, actual {actual:,}", file=out)
    bg = BetaGeo().fit(full.frequency, full.recency, full.T)
    repeaters = full.repeaters()
    gg = GammaGamma().fit(repeaters.frequency, repeaters.monetary_value)
    print("refitted on all 78 weeks to score customers now:", file=out)
    print("  BG/NBD       " + "  ".join(f"{k}={v:.3f}" for k, v in bg.params.items()), file=out)
    print("  Gamma-Gamma  " + "  ".join(f"{k}={v:.3f}" for k, v in gg.params.items()), file=out)
    columns = (full.frequency, full.recency, full.T)
    clv = _floats(
        customer_lifetime_value(
            bg,
            gg,
            *columns,
            full.monetary_value,
            horizon=12,
            time_unit="week",
            period="month",
            discount_rate=DEMO_MONTHLY_DISCOUNT,
            margin=float(DEMO_MARGIN),
        )
    )
    buys = _floats(bg.conditional_expected_purchases(DEMO_HORIZON_WEEKS, *columns))
    alive = _floats(bg.probability_alive(*columns))
    rows = sorted(zip(full, clv, buys, alive, strict=True), key=lambda r: (-r[1], r[0].customer_id))[:10]
    names = _names(crm, [r[0].customer_id for r in rows])
    print(
        f"\ntop 10 customers by 12-month CLV (assumed: {DEMO_MARGIN:.0%} margin, "
        f"{DEMO_MONTHLY_DISCOUNT:.0%} discount a month):",
        file=out,
    )
    head = f"{'customer':<12}{'x':>4}{'t_x':>7}{'T':>7}{'mean $':>9}{'P(alive)':>10}{'E[buys]':>9}{'CLV':>11}"
    print(f"  {head}", file=out)
    for row, value, n, p in rows:
        print(
            f"  {names[row.customer_id]:<12}{row.frequency:>4}{row.recency:>7.1f}{row.T:>7.1f}"
            f"{float(row.monetary_value):>9.2f}{p:>10.2f}{n:>9.2f}{_money(value):>11}",
            file=out,
        )
    return bg


def _payback(crm: crmkit.CRM, end: dt.date, out: TextIO) -> None:
    result = crm.value.profitability(
        unit="month", margin=DEMO_MARGIN, acquisition_cost=DEMO_ACQUISITION_COST, observation_end=end
    )
    print(
        f"\ncohort payback (assumed: acquisition cost {_money(DEMO_ACQUISITION_COST)} per customer, "
        f"gross margin {DEMO_MARGIN:.0%}):",
        file=out,
    )
    for cohort in result.cohorts:
        month = "not yet" if cohort.payback_period is None else f"in month {cohort.payback_period}"
        share = cohort.paid_back / cohort.customers
        print(
            f"  {cohort.cohort:%Y-%m}: {cohort.customers:>4} customers, cohort paid back {month:<11} "
            f"({share:.0%} of its customers individually)",
            file=out,
        )
    curve = result.whale_curve(top=3)
    top = curve.deciles[1].cumulative_share
    print(
        f"whale curve: the top 20 % of customers earn {top:.0%} of the profit; "
        f"{len(curve.unprofitable):,} customers have not covered their acquisition cost",
        file=out,
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``crmkit`` command, one subparser per subcommand."""
    parser = argparse.ArgumentParser(prog="crmkit", description="crmkit: a CRM domain library.")
    parser.add_argument("--version", action="version", version=f"crmkit {crmkit.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="load the CDNOW sample and print a customer-value report",
        description="Load the bundled CDNOW sample into a store (idempotent) and report customer value.",
    )
    demo.add_argument("--url", help="store URL (default: an SQLite file in the temp directory, else memory://)")
    demo.add_argument("--tenant", default="demo", help="tenant to load the sample into (default: demo)")
    demo.set_defaults(run=_demo)
    migrate = commands.add_parser(
        "migrate",
        help="bring a store to the schema of crmkit and every installed plugin",
        description=(
            "Run crmkit's migrations and every installed plugin's on the store at URL, and create "
            "the tables, collections and indexes of every declared aggregate that are missing."
        ),
    )
    migrate.add_argument("url", help="store URL, e.g. sqlite:///crm.db or postgresql+psycopg://...")
    migrate.set_defaults(run=_migrate)
    from crmkit import _cli_commands

    _cli_commands.add_commands(commands)
    return parser


def _migrate(args: argparse.Namespace, out: TextIO) -> int:
    with crmkit.connect(args.url) as crm:  # SQL stores create or upgrade on connect; migrate says so
        state = crm.migrate()
        names = ", ".join(crm.schema)
    print(f"{crm.store.url}: {state}", file=out)
    print(f"aggregates: {names}", file=out)
    return 0


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the ``crmkit`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command | None = getattr(args, "run", None)
    if run is None:
        parser.print_help(out or sys.stdout)
        return 2
    try:
        return run(args, out or sys.stdout)
    except CRMError as exc:
        print(f"crmkit {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file that cannot be read or written: its name and why, in one line
        if isinstance(exc, BrokenPipeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        what = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        print(f"crmkit {args.command}: error: {what}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"crmkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
