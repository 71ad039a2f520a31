"""The standard figures are written as real PNG images from the CDNOW sample."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import pytest

from crmkit import ValidationError
from crmkit.value import cohort_retention, customer_summary, plots
from crmkit.value.datasets import CDNOW_CALIBRATION_END, CDNOW_OBSERVATION_END, cdnow_transactions
from crmkit.value.models import BetaGeo

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG, f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def cdnow() -> tuple[BetaGeo, object]:
    summary = customer_summary(
        cdnow_transactions(), unit="week", observation_end=CDNOW_OBSERVATION_END, calibration_end=CDNOW_CALIBRATION_END
    )
    return BetaGeo().fit(summary.frequency, summary.recency, summary.T), summary


def test_probability_alive_matrix(cdnow: tuple[BetaGeo, object], tmp_path: Path) -> None:
    model, _ = cdnow
    out = plots.probability_alive_matrix(model, tmp_path / "p_alive.png", max_frequency=20, max_recency=39)
    width, height = png_size(out)
    assert width > 300 and height > 300


def test_calibration_vs_holdout(cdnow: tuple[BetaGeo, object], tmp_path: Path) -> None:
    model, summary = cdnow
    out = plots.calibration_vs_holdout(model, summary, tmp_path / "figures" / "holdout.png")  # type: ignore[arg-type]
    assert png_size(out)[0] > 300


def test_cohort_retention_curves(tmp_path: Path) -> None:
    table = cohort_retention(cdnow_transactions(), unit="month", observation_end=CDNOW_OBSERVATION_END)
    out = plots.cohort_retention_curves(table, tmp_path / "cohorts.png")
    assert png_size(out)[1] > 200


def test_figures_need_a_png_path_and_a_holdout(cdnow: tuple[BetaGeo, object], tmp_path: Path) -> None:
    model, _ = cdnow
    with pytest.raises(ValidationError, match="path"):
        plots.probability_alive_matrix(model, tmp_path / "p_alive.svg")
    no_holdout = customer_summary(cdnow_transactions(), unit="week", observation_end=CDNOW_CALIBRATION_END)
    with pytest.raises(ValidationError, match="summary"):
        plots.calibration_vs_holdout(model, no_holdout, tmp_path / "x.png")


# ---------------------------------------------------------------------- the lifetimes-style diagnostics
C0, C1 = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)  # matplotlib's first two colours: actual, model


def has_colour(path: Path, rgb: tuple[int, int, int], *, at_least: int = 50) -> bool:
    """Whether the PNG has at least ``at_least`` pixels of that colour (the series was drawn)."""
    import matplotlib.image
    import numpy as np

    pixels = (matplotlib.image.imread(path)[..., :3] * 255).round().astype(int)
    return int(np.all(np.abs(pixels - np.array(rgb)) <= 2, axis=-1).sum()) >= at_least


def test_period_transactions_draws_actual_and_model_bars(cdnow: tuple[BetaGeo, object], tmp_path: Path) -> None:
    model, summary = cdnow
    out = plots.period_transactions(model, summary, tmp_path / "period.png")  # type: ignore[arg-type]
    assert png_size(out)[0] > 300
    assert has_colour(out, C0, at_least=2000) and has_colour(out, C1, at_least=2000)


def test_probability_alive_history_of_one_customer(cdnow: tuple[BetaGeo, object], tmp_path: Path) -> None:
    from crmkit.value.datasets import cdnow_customer_id

    model, _ = cdnow
    mine = [t for t in cdnow_transactions() if t.customer_id == cdnow_customer_id(1)]
    out = plots.probability_alive_history(model, mine, tmp_path / "alive.png", unit="week",
                                          observation_end=CDNOW_CALIBRATION_END)
    assert png_size(out)[0] > 300 and has_colour(out, C0)


def test_cumulative_purchases_tracks_actual_and_model(cdnow: tuple[BetaGeo, object], tmp_path: Path) -> None:
    model, _ = cdnow
    out = plots.cumulative_purchases(model, cdnow_transactions(), tmp_path / "cumulative.png", unit="week",
                                     observation_end=CDNOW_OBSERVATION_END, calibration_end=CDNOW_CALIBRATION_END)
    assert png_size(out)[0] > 300
    assert has_colour(out, C0, at_least=100) and has_colour(out, C1, at_least=30)


def figure_of(monkeypatch: pytest.MonkeyPatch, draw: object) -> object:
    """Run a plot function and keep the figure it saves."""
    kept: list[object] = []
    save = plots._save

    def keep(fig: object, path: object) -> object:
        kept.append(fig)
        return save(fig, path)  # type: ignore[arg-type]

    monkeypatch.setattr(plots, "_save", keep)
    draw()  # type: ignore[operator]
    return kept[0]


def test_cohort_curves_have_a_colour_each_beyond_ten(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    table = cohort_retention(cdnow_transactions(), unit="week", observation_end=dt.date(1997, 6, 29))  # a Sunday
    assert len(table.cohorts) > 10 and table.last_period_complete is True
    fig = figure_of(monkeypatch, lambda: plots.cohort_retention_curves(table, tmp_path / "weeks.png"))
    lines = [ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")]  # type: ignore[attr-defined]
    colours = {tuple(ln.get_color()) for ln in lines}
    assert len(lines) == len(table.cohorts) and len(colours) == len(lines)  # no colour repeats


def test_cohort_curves_do_not_draw_an_unfinished_period_as_a_drop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mid_month = dt.date(1997, 6, 15)
    table = cohort_retention(cdnow_transactions(), unit="month", observation_end=mid_month)
    assert table.last_period_complete is False
    fig = figure_of(monkeypatch, lambda: plots.cohort_retention_curves(table, tmp_path / "months.png"))
    solid = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "-"]  # type: ignore[attr-defined]
    dotted = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == ":"]  # type: ignore[attr-defined]
    for line, cohort in zip(solid, table.cohorts, strict=True):
        whole = table.retention(cohort)[:-1]  # June 1997 is half over: not part of the solid curve
        assert list(line.get_ydata()) == list(whole)
    assert len(dotted) >= len(table.cohorts)
    complete = cohort_retention(cdnow_transactions(), unit="month", observation_end=dt.date(1997, 6, 30))
    assert complete.last_period_complete is True
