"""Business calendars: working windows per weekday in a time zone, public and extra holidays.

``BusinessCalendar`` answers the four questions service-level clocks ask, exact to the
microsecond and right across daylight-saving changes:

* ``add(t, d)``: the earliest instant by which ``d`` of working time has passed since ``t``;
* ``diff(a, b)``: the working time between two instants (negative when ``b`` is earlier);
* ``is_within(t)``: whether ``t`` falls in working time;
* ``next_start(t)``: ``t`` itself when it is working time, else the start of the next window.

Working time is the set of instants whose local wall-clock time (in ``timezone``) lies in one
of the windows of its weekday, on a day that is not a holiday. On the night clocks go
forward the skipped wall times hold no instant; on the night they go back the repeated wall
times are working time both times they occur. ``diff(a, add(a, d)) == d`` for every
``d >= 0``.

Public holidays by country code (``holidays="RO"``, ``"ES-MD"`` for a subdivision) come from
the ``holidays`` package (``pip install crmkit[holidays]``); ``extra_holidays`` adds dates of
the organisation's own, and is also the way to supply public holidays without the package.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crmkit import schema
from crmkit._errors import ValidationError

__all__ = ["WEEKDAYS", "BusinessCalendar", "Holiday"]

#: Weekday names as ``hours`` keys use them, Monday first (``datetime.weekday()`` order).
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_UTC = dt.timezone.utc
_DAY = dt.timedelta(days=1)
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)(?::([0-5]\d))?$")
_COUNTRY = re.compile(r"^[A-Z]{2,3}(?:-[A-Z0-9]{1,5})?$")
#: How far ``add`` and ``next_start`` look ahead before giving up (a calendar closed for ten years).
_HORIZON_DAYS = 3660
_LOCK = threading.RLock()

Window = tuple[int, int]  # seconds since local midnight, [start, end)


# --------------------------------------------------------------------------- parsing


def _seconds(text: str, field: str) -> int:
    found = _TIME.match(text.strip())
    if found is None:
        raise ValidationError(field, "times are written HH:MM or HH:MM:SS (24:00 ends a day)", text)
    hours, minutes, seconds = int(found[1]), int(found[2]), int(found[3] or 0)
    total = hours * 3600 + minutes * 60 + seconds
    if total > 86400:
        raise ValidationError(field, "times end at 24:00 at the latest", text)
    return total


def _days(spec: str) -> list[int]:
    """``"mon-thu"``, ``"sat-wed"`` (wrapping), ``"mon,wed"`` or ``"fri"`` as weekday numbers."""
    out: list[int] = []
    for part in spec.lower().split(","):
        part = part.strip()
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValidationError("hours", f"names days as {', '.join(WEEKDAYS)} or ranges such as mon-fri", spec)
        a = WEEKDAYS.index(first)
        b = WEEKDAYS.index(last) if last else a
        out.extend((a + i) % 7 for i in range((b - a) % 7 + 1))
    return out


def _windows(text: str, day: str) -> tuple[Window, ...]:
    text = text.strip()
    if text.lower() in ("", "closed"):
        return ()
    windows: list[Window] = []
    for part in text.split(","):
        start, sep, end = part.partition("-")
        if not sep:
            raise ValidationError("hours", f"{day}: a window is written 09:00-13:00", part)
        window = (_seconds(start, "hours"), _seconds(end, "hours"))
        if window[0] >= window[1]:
            raise ValidationError("hours", f"{day}: a window must end after it starts", part)
        if windows and window[0] < windows[-1][1]:
            raise ValidationError("hours", f"{day}: windows must be in order and must not overlap", text)
        windows.append(window)
    return tuple(windows)


def _clock(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


def parse_hours(value: Any) -> tuple[tuple[Window, ...], ...]:
    """The windows of each weekday (Monday first) from a mapping or the stored text form."""
    if isinstance(value, str):
        items: Iterable[tuple[Any, Any]] = (
            tuple(p.split("=", 1)) if "=" in p else (p, "")  # type: ignore[misc]
            for p in (part.strip() for part in value.split(";"))
            if p
        )
    elif isinstance(value, Mapping):
        items = value.items()
    else:
        raise ValidationError(
            "hours", "must map days (mon-fri, sat...) to windows such as 09:00-13:00,14:00-18:00", value
        )
    week: list[tuple[Window, ...] | None] = [None] * 7
    for key, windows in items:
        if not isinstance(key, str) or not isinstance(windows, str):
            raise ValidationError("hours", "maps day names to text such as 09:00-13:00,14:00-18:00", (key, windows))
        parsed = _windows(windows, key)
        for day in _days(key):
            if week[day] is not None:
                raise ValidationError("hours", f"{WEEKDAYS[day]} is given twice", key)
            week[day] = parsed
    out = tuple(w or () for w in week)
    if not any(out):
        raise ValidationError("hours", "a calendar needs at least one working window in the week", value)
    return out


def _hours_text(value: Any) -> str:
    """The stored form of opening hours: ``mon=09:00-13:00,14:00-18:00;fri=09:00-15:00``."""
    week = parse_hours(value)
    return ";".join(
        f"{WEEKDAYS[day]}=" + ",".join(f"{_clock(a)}-{_clock(b)}" for a, b in windows)
        for day, windows in enumerate(week)
        if windows
    )


def _zone_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("timezone", "must be an IANA time zone name such as Europe/Bucharest", value)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("timezone", "is not a known IANA time zone name", value) from None
    return value


def _country(value: Any) -> Any:
    if isinstance(value, str) and not _COUNTRY.match(value):
        raise ValidationError("holidays", "is a country code such as RO, or RO-B with a subdivision", value)
    return value


@schema.value_object
class Holiday:
    """A day off of a calendar's own (``extra_holidays``)."""

    on: dt.date = schema.date(personal=False)
    name: str | None = schema.text(default=None, personal=False)


def _holiday_values(value: Any) -> Any:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return value  # the kind's check names the field
    out = []
    for item in value:
        if isinstance(item, dt.date) and not isinstance(item, dt.datetime):
            item = Holiday(on=item)
        out.append(item)
    return tuple(sorted(out, key=lambda h: h.on if isinstance(h, Holiday) else dt.date.min))


@schema.aggregate("calendars", label="business calendar", unique=[("key",)])
class BusinessCalendar(schema.Record):
    """Working hours per weekday in a time zone, minus public and extra holidays."""

    key: str = schema.text(sortable=True, personal=False)
    timezone: str = schema.text(convert=_zone_name, personal=False)
    hours: str = schema.text(convert=_hours_text, personal=False)
    holidays: str | None = schema.text(default=None, convert=_country, personal=False)
    extra_holidays: tuple[Holiday, ...] = schema.many(Holiday, default=(), convert=_holiday_values, personal=False)

    #: Valid values the test kit draws for the fields whose random values no calendar has.
    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "timezone": ("Europe/Bucharest", "Asia/Tehran", "UTC", "America/New_York"),
        "hours": (
            _hours_text({"mon-fri": "09:00-17:00"}),
            _hours_text({"mon-thu": "09:00-13:00,14:00-18:00", "fri": "09:00-15:00"}),
            _hours_text({"sat-wed": "08:00-16:00", "thu": "08:00-12:00"}),
        ),
        "holidays": (None, "RO", "ES", "IR"),
        "extra_holidays": ((), (Holiday(on=dt.date(2026, 12, 24)),), (Holiday(on=dt.date(2027, 1, 2), name="bridge"),)),
    }

    def add(self, start: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        """The earliest instant by which ``duration`` of working time has passed since ``start`` (UTC)."""
        return _engine(self).add(_instant(start, "start"), _duration(duration))

    def diff(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """The working time between two instants; negative when ``end`` is before ``start``."""
        return _engine(self).diff(_instant(start, "start"), _instant(end, "end"))

    def is_within(self, at: dt.datetime) -> bool:
        """Whether ``at`` is working time."""
        return _engine(self).is_within(_instant(at, "at"))

    def next_start(self, at: dt.datetime) -> dt.datetime:
        """``at`` when it is working time, else the start of the next working window (UTC)."""
        return _engine(self).next_start(_instant(at, "at"))

    def windows(self, start: dt.datetime, end: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """The working intervals ``[a, b)`` that overlap ``[start, end)``, clipped to it, in order."""
        return _engine(self).clipped(_instant(start, "start"), _instant(end, "end"))


def _instant(value: Any, field: str) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "must be a timezone-aware datetime", value)
    return value.astimezone(_UTC)


def _duration(value: Any) -> dt.timedelta:
    if not isinstance(value, dt.timedelta):
        raise ValidationError("duration", "must be a datetime.timedelta", value)
    if value < dt.timedelta(0):
        raise ValidationError("duration", "must not be negative", value)
    return value


# --------------------------------------------------------------------------- holidays


_PUBLIC: dict[tuple[str, int], frozenset[dt.date]] = {}


def public_holidays(code: str, year: int) -> frozenset[dt.date]:
    """The public holidays of a country (``RO``) or subdivision (``ES-MD``) in a year."""
    found = _PUBLIC.get((code, year))
    if found is None:
        try:
            import holidays as data
        except ImportError:
            raise ValidationError(
                "holidays",
                "public holidays by country need the holidays package (pip install crmkit[holidays]); "
                "or list the days in extra_holidays",
                code,
            ) from None
        country, _, subdivision = code.partition("-")
        try:
            days = data.country_holidays(country, subdiv=subdivision or None, years=year)
        except NotImplementedError:
            raise ValidationError(
                "holidays", "is not a country (or subdivision) the holidays package knows", code
            ) from None
        found = _PUBLIC[(code, year)] = frozenset(days)
    return found


# --------------------------------------------------------------------------- the engine


class _Engine:
    """The working intervals of one calendar, day by day (cached: clocks ask the same days often)."""

    def __init__(self, zone: str, hours: str, holidays: str | None, extra: frozenset[dt.date]) -> None:
        self.zone = ZoneInfo(zone)
        self.week = parse_hours(hours)
        self.country = holidays
        self.extra = extra
        self._days: dict[dt.date, tuple[tuple[dt.datetime, dt.datetime], ...]] = {}
        self._cumulative: dict[dt.date, dt.timedelta] = {}
        self._anchor: dt.date | None = None
        self._low: dt.date | None = None
        self._high: dt.date | None = None

    def _offset(self, naive_utc: dt.datetime) -> dt.timedelta:
        offset = naive_utc.replace(tzinfo=_UTC).astimezone(self.zone).utcoffset()
        assert offset is not None
        return offset

    def day(self, day: dt.date) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
        """The working intervals (UTC) of a local date, in order."""
        found = self._days.get(day)
        if found is not None:
            return found
        windows = self.week[day.weekday()]
        if not windows or day in self.extra or (self.country and day in public_holidays(self.country, day.year)):
            self._days[day] = ()
            return ()
        midnight = dt.datetime(day.year, day.month, day.day)
        low, high = midnight - dt.timedelta(hours=30), midnight + dt.timedelta(hours=54)
        before, after = self._offset(low), self._offset(high)
        switch: dt.datetime | None = None
        if before != after:  # a change of offset near this day: find its instant (to the second)
            while high - low > dt.timedelta(seconds=1):
                middle = low + (high - low) / 2
                middle = middle.replace(microsecond=0)
                if middle <= low:
                    break
                if self._offset(middle) == before:
                    low = middle
                else:
                    high = middle
            switch = high
        pieces: list[tuple[dt.datetime, dt.datetime]] = []
        for a, b in windows:
            start, end = midnight + dt.timedelta(seconds=a), midnight + dt.timedelta(seconds=b)
            if switch is None:
                pieces.append((start - before, end - before))
                continue
            # instants before the switch read the wall clock with the old offset, later ones with the new
            first = (start - before, min(end - before, switch))
            second = (max(start - after, switch), end - after)
            pieces.extend(p for p in (first, second) if p[0] < p[1])
        pieces.sort()
        merged: list[list[dt.datetime]] = []
        for low_end, high_end in pieces:
            if merged and low_end <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], high_end)
            else:
                merged.append([low_end, high_end])
        out = tuple((p.replace(tzinfo=_UTC), q.replace(tzinfo=_UTC)) for p, q in merged)
        if len(self._days) > 200_000:
            self._days.clear()
        self._days[day] = out
        return out

    def _local_date(self, at: dt.datetime) -> dt.date:
        return at.astimezone(self.zone).date()

    def intervals(self, start: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """Working intervals ending after ``start``, in order, for up to ``_HORIZON_DAYS`` days."""
        day = self._local_date(start) - _DAY
        for _ in range(_HORIZON_DAYS):
            for a, b in self.day(day):
                if b > start:
                    yield a, b
            day += _DAY

    def add(self, start: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        if not duration:
            return start
        left = duration
        for a, b in self.intervals(start):
            a = max(a, start)
            if left <= b - a:
                return a + left
            left -= b - a
        raise ValidationError(
            "duration", f"the calendar has no such working time within {_HORIZON_DAYS} days", duration
        )

    def clipped(self, start: dt.datetime, end: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        if end <= start:
            return
        day, last = self._local_date(start) - _DAY, self._local_date(end) + _DAY
        while day <= last:
            for a, b in self.day(day):
                a, b = max(a, start), min(b, end)
                if a < b:
                    yield a, b
            day += _DAY

    def diff(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        if end < start:
            return -self.diff(end, start)
        if end - start < 3 * _DAY:
            total = dt.timedelta(0)
            for a, b in self.clipped(start, end):
                total += b - a
            return total
        return self.position(end) - self.position(start)

    def _before(self, day: dt.date) -> dt.timedelta:
        """Working time of the days from the first one asked about up to ``day`` (negative before it)."""
        if self._anchor is None:
            with _LOCK:
                if self._anchor is None:
                    self._cumulative[day] = dt.timedelta(0)
                    self._low = self._high = day
                    self._anchor = day
        assert self._low is not None and self._high is not None
        if self._low <= day <= self._high:
            return self._cumulative[day]
        with _LOCK:
            return self._extend(day)

    def _extend(self, day: dt.date) -> dt.timedelta:
        assert self._low is not None and self._high is not None
        while day > self._high:
            length = sum((b - a for a, b in self.day(self._high)), dt.timedelta(0))
            self._cumulative[self._high + _DAY] = self._cumulative[self._high] + length
            self._high += _DAY
        while day < self._low:
            self._low -= _DAY
            length = sum((b - a for a, b in self.day(self._low)), dt.timedelta(0))
            self._cumulative[self._low] = self._cumulative[self._low + _DAY] - length
        return self._cumulative[day]

    def position(self, at: dt.datetime) -> dt.timedelta:
        """Working time before ``at``, counted from a fixed day: ``diff(a, b) == position(b) - position(a)``."""
        day = self._local_date(at) - _DAY
        total = self._before(day)
        for d in (day, day + _DAY, day + 2 * _DAY):
            for a, b in self.day(d):
                if a < at:
                    total += min(b, at) - a
        return total

    def is_within(self, at: dt.datetime) -> bool:
        day = self._local_date(at)
        return any(a <= at < b for d in (day - _DAY, day, day + _DAY) for a, b in self.day(d))

    def next_start(self, at: dt.datetime) -> dt.datetime:
        for a, _ in self.intervals(at):
            return max(a, at)
        raise ValidationError("at", f"the calendar has no working time within {_HORIZON_DAYS} days", at)


_ENGINES: dict[tuple[Any, ...], _Engine] = {}


def engine(calendar: BusinessCalendar) -> _Engine:
    """The cached working-time engine of a calendar (no input checks: for hot loops over stored data)."""
    return _engine(calendar)


def _engine(calendar: BusinessCalendar) -> _Engine:
    extra = frozenset(h.on for h in calendar.extra_holidays)
    key = (calendar.timezone, calendar.hours, calendar.holidays, extra)
    found = _ENGINES.get(key)
    if found is None:
        with _LOCK:
            if len(_ENGINES) > 1000:
                _ENGINES.clear()
            found = _ENGINES.setdefault(key, _Engine(calendar.timezone, calendar.hours, calendar.holidays, extra))
    return found
