"""The standard figures are written as real PNG images from the CDNOW sample."""

from __future__ import annotations

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
