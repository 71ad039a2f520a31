"""Reference data sets shipped with crmkit, loaded as numpy arrays (no pandas needed).

The CDNOW files and ``donations.csv`` are third-party research data by Fader and Hardie;
see ``crmkit/data/cdnow/README.md`` for their origin and terms.
"""

from __future__ import annotations

import csv
import io
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "load_cdnow_summary",
    "load_cdnow_summary_with_monetary_value",
    "load_cdnow_transactions",
    "load_donations",
]

_PACKAGE = "crmkit.data.cdnow"


def _text(name: str) -> str:
    return resources.files(_PACKAGE).joinpath(name).read_text(encoding="ascii")


def _columns(name: str) -> dict[str, list[str]]:
    reader = csv.reader(io.StringIO(_text(name)))
    header = next(reader)
    cols: dict[str, list[str]] = {h: [] for h in header}
    for row in reader:
        if not row:
            continue
        for h, v in zip(header, row, strict=True):
            cols[h].append(v)
    return cols


def _floats(values: list[str]) -> npt.NDArray[np.float64]:
    return np.array([float(v) for v in values], dtype=np.float64)


def load_cdnow_summary() -> dict[str, npt.NDArray[Any]]:
    """The CDNOW 1/10 sample (2,357 customers) summarised over the 39-week calibration period.

    Keys: ``customer_id``, ``frequency`` (repeat purchase days), ``recency`` and ``T`` (weeks).
    """
    cols = _columns("cdnow_customers_summary.csv")
    return {
        "customer_id": np.array([int(v) for v in cols["ID"]], dtype=np.int64),
        "frequency": _floats(cols["frequency"]),
        "recency": _floats(cols["recency"]),
        "T": _floats(cols["T"]),
    }


def load_cdnow_summary_with_monetary_value() -> dict[str, npt.NDArray[Any]]:
    """As ``load_cdnow_summary`` plus ``monetary_value``: the mean value of the repeat
    transactions (0 for customers without repeat purchases)."""
    cols = _columns("cdnow_customers_summary_with_transactions.csv")
    return {
        "customer_id": np.array([int(v) for v in cols["ID"]], dtype=np.int64),
        "frequency": _floats(cols["x"]),
        "recency": _floats(cols["t_x"]),
        "T": _floats(cols["T"]),
        "monetary_value": _floats(cols["zbar"]),
    }


def load_cdnow_transactions() -> dict[str, npt.NDArray[Any]]:
    """The raw CDNOW sample: one row per transaction (6,919 rows, 1997-01-01 to 1998-06-30).

    Keys: ``customer_id`` (master id), ``sample_id`` (1..2357), ``date`` (``datetime64[D]``),
    ``quantity`` (CDs bought) and ``value`` (dollars).
    """
    master, sample, dates, qty, value = [], [], [], [], []
    for line in _text("CDNOW_sample.txt").splitlines():
        parts = line.split()
        if not parts:
            continue
        master.append(int(parts[0]))
        sample.append(int(parts[1]))
        d = parts[2]
        dates.append(f"{d[:4]}-{d[4:6]}-{d[6:8]}")
        qty.append(int(parts[3]))
        value.append(float(parts[4]))
    return {
        "customer_id": np.array(master, dtype=np.int64),
        "sample_id": np.array(sample, dtype=np.int64),
        "date": np.array(dates, dtype="datetime64[D]"),
        "quantity": np.array(qty, dtype=np.int64),
        "value": np.array(value, dtype=np.float64),
    }


def load_donations() -> dict[str, npt.NDArray[Any]]:
    """Annual repeat-donation data for the BG/BB model (Fader, Hardie and Shang 2010):
    22 (frequency, recency) patterns over 6 periods with ``weights`` = donors per pattern
    (11,104 donors). Keys: ``frequency``, ``recency``, ``n_periods``, ``weights``."""
    cols = _columns("donations.csv")
    return {
        "frequency": _floats(cols["frequency"]),
        "recency": _floats(cols["recency"]),
        "n_periods": _floats(cols["periods"]),
        "weights": _floats(cols["weights"]),
    }
