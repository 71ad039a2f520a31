"""The HTML reports of ``crmkit report``: one page and its PNG figures (matplotlib, numpy, scipy).

Every figure's numbers are computed in the store (summaries, RFM, cohorts, group-by
aggregates); only the model fitting and the drawing happen here.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from crmkit._errors import ValidationError
from crmkit.crm import CRM

__all__ = ["pipeline_report", "service_report", "value_report"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;margin:1rem 0}td,th{padding:.25rem .75rem;border-bottom:1px solid #ddd;"
    "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
)


def _e(value: Any) -> str:
    if isinstance(value, (Decimal, float)):
        value = f"{value:,.2f}"
    return html.escape(str(value))


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    top = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{top}</tr>{body}</table>"


def _page(folder: Path, title: str, parts: Sequence[str]) -> Path:
    page = folder / "index.html"
    text = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>{''.join(parts)}</body></html>\n"
    )
    page.write_text(text, encoding="utf-8")
    return page


def _figure(name: str, caption: str) -> str:
    return f'<figure><img src="{name}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _bars(path: Path, labels: Sequence[str], values: Sequence[float], *, title: str, ylabel: str) -> None:
    from crmkit.value.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    ax.bar(range(len(values)), values, color="#3b6ea8")
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _save(fig, path)


def value_report(crm: CRM, folder: Path, as_of: dt.date) -> Path:
    """Segments, the CLV distribution, cohort retention and the P(alive) matrix as of a day."""
    from crmkit.value import plots
    from crmkit.value.models import BetaGeo, GammaGamma, customer_lifetime_value

    now = dt.datetime.combine(as_of, dt.time(23, 59, 59), dt.timezone.utc)
    parts = [f"<p>Tenant {_e(crm.tenant)}, as of {as_of}, computed from {_e(crm.store.url)}.</p>"]

    rfm = crm.value.rfm(as_of=now)
    sizes = [(name, n) for name, n in rfm.sizes().items() if n]
    _bars(
        folder / "segments.png",
        [s for s, _ in sizes],
        [n for _, n in sizes],
        title="Customers per RFM segment",
        ylabel="customers",
    )
    parts += [
        "<h2>RFM segments</h2>",
        _figure("segments.png", "customers per RFM segment"),
        _table(("segment", "customers"), sizes),
    ]

    summary = crm.value.summary(unit="week", observation_end=as_of)
    repeaters = summary.repeaters()
    try:
        if len(repeaters) < 2:
            raise ValidationError("summary", "has fewer than two repeat buyers", len(repeaters))
        bg = BetaGeo().fit(summary.frequency, summary.recency, summary.T)
        gg = GammaGamma().fit(repeaters.frequency, repeaters.monetary_value)
    except ValidationError as exc:  # too little history: the page says so and shows the rest
        parts.append(f"<h2>Customer lifetime value</h2><p>The CLV models cannot be fitted: {_e(exc)}.</p>")
    else:
        clv = customer_lifetime_value(
            bg,
            gg,
            summary.frequency,
            summary.recency,
            summary.T,
            summary.monetary_value,
            horizon=12,
            time_unit="week",
            period="month",
            discount_rate=0.01,
            margin=1.0,
        )
        values = [float(v) for v in getattr(clv, "tolist", lambda: [clv])()]
        from crmkit.value.plots import _pyplot, _save

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(7.2, 4.2))
        ax.hist(values, bins=40, color="#3b6ea8")
        ax.set_yscale("log")
        ax.set_xlabel("12-month CLV (revenue, 1 % monthly discount)")
        ax.set_ylabel("customers (log scale)")
        ax.set_title("CLV distribution (BG/NBD with Gamma-Gamma)")
        _save(fig, folder / "clv.png")
        ordered = sorted(values)
        quantiles = [(f"{q:.0%}", ordered[min(int(q * len(ordered)), len(ordered) - 1)]) for q in (0.5, 0.9, 0.99)]
        parts += [
            "<h2>Customer lifetime value</h2>",
            _figure("clv.png", "12-month CLV distribution"),
            _table(("quantile", "CLV"), quantiles),
            _table(("BG/NBD parameter", "value"), list(bg.params.items())),
        ]
        plots.probability_alive_matrix(bg, folder / "alive.png", max_recency=float(max(summary.T)))
        parts += ["<h2>Probability alive</h2>", _figure("alive.png", "P(alive) by frequency and recency")]

    cohorts = crm.value.cohorts(unit="month", observation_end=as_of)
    if len(cohorts.cohorts):
        chosen = list(cohorts.cohorts)[-12:]
        plots.cohort_retention_curves(cohorts, folder / "cohorts.png", cohorts=chosen)
        parts += [
            "<h2>Cohort retention</h2>",
            _figure("cohorts.png", "monthly cohort retention"),
            _table(("cohort", "customers"), [(c, cohorts.sizes()[c]) for c in chosen]),
        ]
    return _page(folder, "Customer value", parts)


def pipeline_report(crm: CRM, folder: Path) -> Path:
    """Open deals per pipeline stage (counted and summed in the store) and the forecast per currency."""
    from crmkit.sales import Opportunity, Pipeline

    deals = crm.records(Opportunity)
    closed = {(p.key, s.key) for p in crm.records(Pipeline).scan() for s in p.stages if s.closed}
    board = deals.aggregate(group_by=("pipeline", "stage", "currency"), count=True, sum="amount")
    rows = [
        (r["pipeline"], r["stage"], r["currency"] or "", r.count or 0, r["sum(amount)"] or Decimal(0))
        for r in board
        if (r["pipeline"], r["stage"]) not in closed
    ]
    parts = [f"<p>Tenant {_e(crm.tenant)}, open deals in {_e(crm.store.url)}.</p>"]
    if rows:
        _bars(
            folder / "stages.png",
            [f"{p}/{s}" for p, s, *_ in rows],
            [n for *_, n, _ in rows],
            title="Open deals per stage",
            ylabel="deals",
        )
        parts += [
            "<h2>Pipeline</h2>",
            _figure("stages.png", "open deals per stage"),
            _table(("pipeline", "stage", "currency", "deals", "amount"), rows),
        ]
    else:
        parts.append("<p>No open deals.</p>")
    currencies = sorted({c for *_, c, _, _ in rows if c})
    for currency in currencies:
        forecast = crm.sales.forecast(by="month", currency=currency)
        parts += [
            f"<h2>Forecast in {_e(currency)}</h2>",
            _table(
                ("month", "category", "deals", "amount", "weighted"),
                [
                    (f.period or "no close date", f.category.value if f.category else "", f.count, f.amount, f.weighted)
                    for f in forecast
                ],
            ),
        ]
    return _page(folder, "Sales pipeline", parts)


def _stacked(
    path: Path, labels: Sequence[str], parts: Sequence[tuple[str, Sequence[float], str]], *, title: str, ylabel: str
) -> None:
    """Bars of several parts stacked on one another (``parts``: name, values per label, colour)."""
    from crmkit.value.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    bottom = [0.0] * len(labels)
    for name, values, colour in parts:
        ax.bar(range(len(labels)), values, bottom=bottom, color=colour, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def _label(value: Any) -> str:
    return "none" if value is None else str(value)


def _hours(seconds: Any) -> str:
    return "" if seconds is None else f"{Decimal(seconds) / 3600:,.1f}"


def service_report(crm: CRM, folder: Path, now: dt.datetime) -> Path:
    """Cases by status, priority and queue, SLA clocks breached and met, and times to each clock's end.

    Every number is a group-by in the store: cases counted by a field, the SLA clocks
    counted by state (``crm.service.sla_summary``, at ``now``), clocks met and breached per
    month of completion (``sla_attainment``) and the business time to each clock's
    completion (``response_times``); no case is read.
    """
    from crmkit.service import Case

    cases = crm.records(Case)
    parts = [f"<p>Tenant {_e(crm.tenant)}, as of {now:%Y-%m-%d %H:%M} UTC, computed from {_e(crm.store.url)}.</p>"]
    total = cases.count()
    if not total:
        parts.append("<p>No cases.</p>")
        return _page(folder, "Service desk", parts)
    parts.append(f"<p>{total:,} cases.</p>")
    for field, title in (("status", "status"), ("priority", "priority"), ("queue", "queue")):
        counted = [(_label(r[field]), r.count or 0) for r in cases.aggregate(group_by=field, count=True)]
        _bars(
            folder / f"{field}.png",
            [k for k, _ in counted],
            [n for _, n in counted],
            title=f"Cases by {title}",
            ylabel="cases",
        )
        parts += [
            f"<h2>Cases by {title}</h2>",
            _figure(f"{field}.png", f"cases by {title}"),
            _table((title, "cases"), counted),
        ]
    open_cases = crm.service.open_cases(("queue", "priority"), age=None)
    parts += [
        "<h3>Open cases by queue and priority</h3>",
        _table(
            ("queue", "priority", "open cases"),
            [(_label(r["queue"]), _label(r["priority"]), r.count) for r in open_cases],
        ),
    ]

    summary = crm.service.sla_summary(now=now, group_by=("policy", "clock"))
    parts.append("<h2>SLA clocks</h2>")
    if summary:
        labels = [f"{s.key[0]}/{s.key[1]}" for s in summary]
        _stacked(
            folder / "sla.png",
            labels,
            [
                ("within target", [s.clocks - s.breached for s in summary], "#3b6ea8"),
                ("breached", [s.breached for s in summary], "#c0392b"),
            ],
            title="SLA clocks: within target and breached",
            ylabel="clocks",
        )
        parts += [
            _figure("sla.png", "SLA clocks within target and breached, per policy and clock"),
            _table(
                ("policy", "clock", "clocks", "within target", "breached", "completed", "paused", "running"),
                [
                    (*s.key, s.clocks, s.clocks - s.breached, s.breached, s.completed, s.paused, s.running)
                    for s in summary
                ],
            ),
        ]
        attained = crm.service.sla_attainment(period="month")
        if attained:
            parts += [
                "<h3>Completed clocks met and breached, by month of completion</h3>",
                _table(
                    ("policy", "clock", "month", "met", "breached", "met share"),
                    [(a.policy, a.clock, a.period, a.met, a.breached, f"{a.rate:.0%}") for a in attained],
                ),
            ]
    else:
        parts.append("<p>No SLA clocks (no policy applies to these cases).</p>")

    times = [r for r in crm.service.response_times(("clock", "policy")) if r.count]
    if times:
        _bars(
            folder / "times.png",
            [f"{r['policy']}/{r['clock']}" for r in times],
            [float(Decimal(r["mean(running_seconds)"]) / 3600) for r in times],
            title="Mean business hours to each clock's completion",
            ylabel="business hours",
        )
        parts += [
            "<h2>Response and resolution times</h2>",
            _figure("times.png", "mean business hours to each clock's completion"),
            _table(
                ("policy", "clock", "completed", "mean hours", "fastest hours", "slowest hours"),
                [
                    (
                        r["policy"],
                        r["clock"],
                        r.count,
                        _hours(r["mean(running_seconds)"]),
                        _hours(r["min(running_seconds)"]),
                        _hours(r["max(running_seconds)"]),
                    )
                    for r in times
                ],
            ),
        ]
    return _page(folder, "Service desk", parts)
