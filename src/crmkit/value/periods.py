"""Time units and calendar periods shared by the value calculations.

Every value function takes its time unit explicitly: a summary in days and one in weeks
differ by a factor of seven, and a silent default would make that mistake invisible.
Periods are calendar periods of the UTC date: weeks start on Monday, quarters in January,
April, July and October.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, get_args

from crmkit._errors import ValidationError

__all__ = [
    "PERIOD_UNITS",
    "SUMMARY_UNITS",
    "PeriodUnit",
    "SummaryUnit",
    "boundary",
    "check_unit",
    "day_of",
    "end_of_day",
    "period_index",
    "period_of",
    "period_start",
]

#: Units of the repeat-purchase summary (the time scale the models are fitted on).
SummaryUnit = Literal["day", "week", "month"]
#: Units of cohorts and payback periods.
PeriodUnit = Literal["day", "week", "month", "quarter", "year"]

SUMMARY_UNITS: tuple[str, ...] = get_args(SummaryUnit)
PERIOD_UNITS: tuple[str, ...] = get_args(PeriodUnit)

_ONE_MICROSECOND = dt.timedelta(microseconds=1)


def check_unit(unit: object, allowed: tuple[str, ...], field: str = "unit") -> str:
    """The unit if it is one of ``allowed``; ValidationError naming ``field`` otherwise."""
    if not isinstance(unit, str) or unit not in allowed:
        raise ValidationError(field, f"must be one of {', '.join(allowed)} (there is no default unit)", unit)
    return unit


def day_of(moment: dt.datetime) -> dt.date:
    """The UTC calendar day of an aware datetime."""
    return moment.astimezone(dt.timezone.utc).date()


def end_of_day(day: dt.date) -> dt.datetime:
    """The last representable instant of a UTC day (inclusive bounds in store queries)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc) - _ONE_MICROSECOND


def boundary(value: object, field: str) -> tuple[dt.date, dt.datetime]:
    """A period end given as a date (the whole UTC day counts) or an aware datetime: (day, last instant)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(field, "must be timezone-aware (naive datetimes are ambiguous)", value)
        until = value.astimezone(dt.timezone.utc)
        return until.date(), until
    if isinstance(value, dt.date):
        return value, end_of_day(value)
    raise ValidationError(field, "must be a date or a timezone-aware datetime", value)


def period_index(day: dt.date, unit: str) -> int:
    """A number for the calendar period holding ``day``; consecutive periods have consecutive numbers."""
    if unit == "day":
        return day.toordinal()
    if unit == "week":
        return (day.toordinal() - 1) // 7  # ordinal 1 (0001-01-01) is a Monday
    if unit == "month":
        return day.year * 12 + day.month - 1
    if unit == "quarter":
        return day.year * 4 + (day.month - 1) // 3
    if unit == "year":
        return day.year
    raise ValidationError("unit", f"must be one of {', '.join(PERIOD_UNITS)}", unit)


def period_start(index: int, unit: str) -> dt.date:
    """The first day of the period numbered ``index`` (the inverse of ``period_index``)."""
    if unit == "day":
        return dt.date.fromordinal(index)
    if unit == "week":
        return dt.date.fromordinal(index * 7 + 1)
    if unit == "month":
        return dt.date(index // 12, index % 12 + 1, 1)
    if unit == "quarter":
        return dt.date(index // 4, (index % 4) * 3 + 1, 1)
    if unit == "year":
        return dt.date(index, 1, 1)
    raise ValidationError("unit", f"must be one of {', '.join(PERIOD_UNITS)}", unit)


def period_of(moment: dt.datetime | dt.date, unit: str) -> dt.date:
    """The first day of the calendar period holding a datetime (its UTC day) or a date."""
    day = day_of(moment) if isinstance(moment, dt.datetime) else moment
    return period_start(period_index(day, unit), unit)
