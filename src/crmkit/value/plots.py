"""The standard customer-value figures, written to PNG files (extra ``plots``: matplotlib).

* ``probability_alive_matrix``: P(alive) of a fitted BG/NBD-type model over a grid of
  frequency and recency, for customers observed for the longest recency (Fader, Hardie
  and Lee 2005 show the same view as "iso-probability" contours).
* ``calibration_vs_holdout``: mean repeat purchases in the holdout period, actual against
  the model's conditional expectation, grouped by calibration frequency (the standard
  check of a fitted model).
* ``cohort_retention_curves``: one retention curve per acquisition cohort, each in its
  own colour however many cohorts there are; a last period that the observation end cuts
  short is drawn apart (dotted, hollow marker), since it is not a drop in retention.
* ``period_transactions``: customers by number of repeat purchases, actual against the
  model's expectation (``crmkit.value.models.diagnostics.period_transactions``).
* ``probability_alive_history``: one customer's P(alive) over its life, with its purchases.
* ``cumulative_purchases``: the base's cumulative repeat purchases over time, actual
  against expected, with the end of the calibration period marked.

Each function saves the figure, closes it and returns the path. matplotlib is loaded
lazily with the non-interactive Agg backend, so no display is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crmkit._errors import ValidationError

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable

    from crmkit.transactions import Transaction
    from crmkit.value.cohorts import CohortTable
    from crmkit.value.summary import Summary

__all__ = [
    "calibration_vs_holdout",
    "cohort_retention_curves",
    "cumulative_purchases",
    "period_transactions",
    "probability_alive_history",
    "probability_alive_matrix",
]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError("crmkit.value.plots needs matplotlib: pip install 'crmkit[plots]'") from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _integer_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ValidationError("path", "figures are written as .png files", str(path))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return out


def probability_alive_matrix(
    model: Any, path: str | Path, *, max_frequency: int | None = None, max_recency: float | None = None
) -> Path:
    """Heat map of ``model.probability_alive(frequency, recency, T)`` with T = max_recency."""
    plt = _pyplot()
    import numpy as np

    frequency_top = max_frequency if max_frequency is not None else 30
    recency_top = max_recency if max_recency is not None else 40.0
    if frequency_top < 1 or recency_top <= 0:
        raise ValidationError("max_frequency", "the grid needs a positive frequency and recency range", frequency_top)
    frequencies = np.arange(frequency_top + 1)
    recencies = np.linspace(0.0, float(recency_top), 60)
    f, r = np.meshgrid(frequencies, recencies)
    r = np.where(f == 0, 0.0, r)  # without repeat purchases recency is 0 by definition
    alive = np.asarray(model.probability_alive(f.ravel(), r.ravel(), np.full(f.size, float(recency_top))))
    grid = alive.reshape(f.shape)
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    image = ax.imshow(
        grid,
        origin="lower",
        aspect="auto",
        extent=(-0.5, frequency_top + 0.5, 0.0, float(recency_top)),
        vmin=0.0,
        vmax=1.0,
        cmap="viridis",
    )
    fig.colorbar(image, ax=ax, label="probability alive")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_xlabel("frequency (repeat purchases)")
    ax.set_ylabel("recency (time of last purchase)")
    ax.set_title(f"Probability alive, customers observed for T = {recency_top:g}")
    return _save(fig, path)


def calibration_vs_holdout(model: Any, summary: Summary, path: str | Path, *, max_frequency: int = 7) -> Path:
    """Mean holdout purchases, actual vs predicted, by calibration frequency (the last group is "max and more")."""
    plt = _pyplot()
    import numpy as np

    duration = summary.duration_holdout
    if duration is None:
        raise ValidationError("summary", "needs a calibration/holdout split (calibration_end)", summary.calibration_end)
    frequency = np.asarray(summary.frequency, dtype=float)
    predicted = np.asarray(
        model.conditional_expected_purchases(duration, frequency, np.asarray(summary.recency), np.asarray(summary.T))
    )
    actual = np.asarray(summary.frequency_holdout, dtype=float)
    groups = np.minimum(frequency, max_frequency).astype(int)
    xs = np.arange(max_frequency + 1)
    mean_actual = [actual[groups == g].mean() if (groups == g).any() else np.nan for g in xs]
    mean_predicted = [predicted[groups == g].mean() if (groups == g).any() else np.nan for g in xs]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(xs, mean_actual, marker="o", label="actual")
    ax.plot(xs, mean_predicted, marker="s", linestyle="--", label="model")
    ax.set_xticks(xs, [str(x) for x in xs[:-1]] + [f"{max_frequency}+"])
    ax.set_xlabel("repeat purchases in the calibration period")
    ax.set_ylabel(f"mean purchases in the holdout ({duration:g} {summary.unit}s)")
    ax.set_title("Calibration vs holdout")
    ax.legend()
    return _save(fig, path)


def _cohort_colours(n: int) -> list[Any]:
    """``n`` distinct colours, oldest cohort darkest (a sequential map never repeats)."""
    import numpy as np

    plt = _pyplot()
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    return [plt.get_cmap("viridis")(v) for v in np.linspace(0.0, 0.92, n)]


def cohort_retention_curves(table: CohortTable, path: str | Path, *, cohorts: Sequence[Any] | None = None) -> Path:
    """Retention rate by periods since acquisition, one line per cohort, each in its own colour.

    When the observation end falls inside the table's last period (or is unknown), that
    period's points are joined by a dotted line and drawn hollow: the period is not over.
    """
    plt = _pyplot()
    chosen = list(table.cohorts if cohorts is None else cohorts)
    if not chosen:
        raise ValidationError("table", "has no cohorts to plot", len(table))
    cut_short = table.last_period_complete is not True
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    for cohort, colour in zip(chosen, _cohort_colours(len(chosen)), strict=True):
        curve = list(table.retention(cohort))
        whole = curve[:-1] if cut_short and len(curve) > 1 else curve
        label = f"{cohort:%Y-%m-%d} ({table.sizes()[cohort]:,})"
        ax.plot(range(len(whole)), whole, marker=".", color=colour, label=label)
        if len(whole) < len(curve):
            k = len(curve) - 1
            ax.plot([k - 1, k], curve[-2:], linestyle=":", color=colour)
            ax.plot([k], curve[-1:], marker="o", markerfacecolor="none", linestyle="", color=colour)
    if cut_short:
        ax.plot([], [], linestyle=":", marker="o", markerfacecolor="none", color="grey", label="period not over")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_xlabel(f"{table.unit}s since acquisition")
    ax.set_ylabel("share of the cohort active")
    ax.set_ylim(0, 1.05)
    ax.set_title("Cohort retention")
    ax.legend(fontsize="small", ncol=max(1, (len(chosen) + 11) // 12), loc="upper right")
    return _save(fig, path)


def period_transactions(model: Any, summary: Summary, path: str | Path, *, max_frequency: int = 7) -> Path:
    """Customers by number of repeat purchases in the summary's period: actual bars beside the model's."""
    plt = _pyplot()
    import numpy as np

    from crmkit.value.models.diagnostics import period_transactions as counts

    data = counts(model, summary.frequency, summary.recency, summary.T, max_frequency=max_frequency)
    xs = np.arange(len(data.labels))
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.bar(xs - 0.2, data.actual, width=0.4, label="actual", color="C0")
    ax.bar(xs + 0.2, data.expected, width=0.4, label="model", color="C1")
    ax.set_xticks(xs, list(data.labels))
    ax.set_xlabel("repeat purchases")
    ax.set_ylabel("customers")
    ax.set_title(f"Frequency of repeat purchases ({len(summary):,} customers)")
    ax.legend()
    return _save(fig, path)


def probability_alive_history(
    model: Any,
    purchases: Iterable[Transaction] | Iterable[dt.datetime],
    path: str | Path,
    *,
    unit: str,
    observation_end: dt.date | dt.datetime,
) -> Path:
    """One customer's P(alive) from its first purchase to the observation end; purchases as vertical lines."""
    plt = _pyplot()
    from crmkit.value.models.diagnostics import probability_alive_history as history

    data = history(model, purchases, unit=unit, observation_end=observation_end)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(data.ages, data.probability, color="C0", label="P(alive)")
    for i, age in enumerate(data.purchases):
        ax.axvline(age, color="C3", linestyle="--", linewidth=0.8, label="repeat purchase" if i == 0 else None)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(f"{unit}s since the first purchase")
    ax.set_ylabel("probability alive")
    ax.set_title("Probability alive over the customer's history")
    ax.legend(loc="lower left")
    return _save(fig, path)


def cumulative_purchases(
    model: Any,
    transactions: Iterable[Transaction],
    path: str | Path,
    *,
    unit: str,
    observation_end: dt.date | dt.datetime,
    calibration_end: dt.date | dt.datetime | None = None,
) -> Path:
    """Cumulative repeat purchases of the base over time, actual and expected by the model."""
    plt = _pyplot()
    from crmkit.value.models.diagnostics import cumulative_purchases as cumulative

    data = cumulative(model, transactions, unit=unit, observation_end=observation_end, calibration_end=calibration_end)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(data.times, data.actual, color="C0", label="actual")
    ax.plot(data.times, data.expected, color="C1", linestyle="--", label="model")
    if data.calibration_end is not None:
        ax.axvline(data.calibration_end, color="grey", linestyle=":", label="end of calibration")
    ax.set_xlabel(f"{unit}s since {data.start.isoformat()}")
    ax.set_ylabel("cumulative repeat purchases")
    ax.set_title("Tracking cumulative repeat purchases")
    ax.legend(loc="upper left")
    return _save(fig, path)
