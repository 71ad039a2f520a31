"""Business calendars against a minute-by-minute reference and against businesstimedelta."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmkit import ValidationError
from crmkit.service import BusinessCalendar

UTC = dt.timezone.utc
BUCHAREST = ZoneInfo("Europe/Bucharest")
MINUTE = dt.timedelta(minutes=1)


def ro(**hours: str) -> BusinessCalendar:
    return BusinessCalendar(
        key="ro", timezone="Europe/Bucharest", hours=hours or {"mon-fri": "09:00-17:00"}, holidays="RO"
    )


def local(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=BUCHAREST)  # type: ignore[misc]


def test_the_reference_vectors() -> None:
    pytest.importorskip("holidays")
    cal = ro()
    # a weekend and two public holidays (St Andrew, National Day) skipped
    assert cal.add(local(2026, 11, 27, 16, 30), dt.timedelta(hours=1)) == local(2026, 12, 2, 9, 30)
    assert cal.add(local(2026, 11, 30, 16, 30), dt.timedelta(hours=2)) == local(2026, 12, 2, 11)
    assert cal.diff(local(2026, 11, 27, 10), local(2026, 12, 2, 10)) == dt.timedelta(hours=8)
    # across the end of summer time (Sunday 25 October 2026)
    assert cal.add(local(2026, 10, 23, 16), dt.timedelta(hours=2)) == local(2026, 10, 26, 10)


def test_the_issue_calendar() -> None:
    pytest.importorskip("holidays")
    cal = BusinessCalendar(
        key="ro-office",
        timezone="Europe/Bucharest",
        hours={"mon-thu": "09:00-13:00,14:00-18:00", "fri": "09:00-15:00"},
        holidays="RO",
        extra_holidays=(dt.date(2026, 12, 24),),
    )
    t = dt.datetime(2026, 11, 27, 14, 30, tzinfo=UTC)  # Friday 16:30 in Bucharest: after hours
    assert not cal.is_within(t)
    assert cal.next_start(t) == local(2026, 12, 2, 9)
    assert cal.add(t, dt.timedelta(hours=1)) == local(2026, 12, 2, 10)
    # Wed 2 Dec and Thu 3 Dec (8 h each), Fri 4 Dec to 16:30 (6 h)
    assert cal.diff(t, t + dt.timedelta(days=7)) == dt.timedelta(hours=22)
    assert cal.is_within(local(2026, 12, 3, 9)) and not cal.is_within(local(2026, 12, 3, 13, 30))
    assert not cal.is_within(local(2026, 12, 24, 10))  # the extra holiday
    # exact to the microsecond, and consistent
    start = local(2026, 12, 3, 12, 59, 59, 500_000)
    end = cal.add(start, dt.timedelta(seconds=1))
    assert end == local(2026, 12, 3, 14, 0, 0, 500_000)
    assert cal.diff(start, end) == dt.timedelta(seconds=1)
    assert cal.diff(end, start) == -dt.timedelta(seconds=1)


def test_daylight_saving_in_both_directions() -> None:
    night = BusinessCalendar(key="night", timezone="Europe/Bucharest", hours={"sun": "02:00-05:00"})
    # 29 March 2026: 03:00 becomes 04:00, the window holds two hours of real time
    assert night.diff(local(2026, 3, 29), local(2026, 3, 30)) == dt.timedelta(hours=2)
    # 25 October 2026: 04:00 becomes 03:00 again, the window holds four hours
    assert night.diff(local(2026, 10, 25), local(2026, 10, 26)) == dt.timedelta(hours=4)
    start = dt.datetime(2026, 10, 24, 23, tzinfo=UTC)  # 02:00 summer time
    assert night.add(start, dt.timedelta(hours=4)) == dt.timedelta(hours=4) + start
    assert night.is_within(dt.datetime(2026, 10, 25, 1, 30, tzinfo=UTC))  # the second 03:30


def test_bad_input_names_the_field() -> None:
    cases = [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"hours": {"mon": "18:00-09:00"}}, "hours"),
        ({"hours": {"mon": "09:00-13:00,12:00-14:00"}}, "hours"),
        ({"hours": {"funday": "09:00-13:00"}}, "hours"),
        ({"hours": {"mon-fri": "09:00-17:00", "fri": "09:00-12:00"}}, "hours"),
        ({"hours": {"sat": "closed"}}, "hours"),
        ({"holidays": "romania"}, "holidays"),
        ({"extra_holidays": ("2026-12-24",)}, "extra_holidays[0]"),
    ]
    for change, field in cases:
        given_ = {"key": "k", "timezone": "UTC", "hours": {"mon-fri": "09:00-17:00"}, **change}
        with pytest.raises(ValidationError) as error:
            BusinessCalendar(**given_)  # type: ignore[arg-type]
        assert error.value.field == field, change
    cal = ro()
    with pytest.raises(ValidationError) as error:
        cal.add(dt.datetime(2026, 1, 1), dt.timedelta(hours=1))
    assert error.value.field == "start"
    with pytest.raises(ValidationError) as error:
        cal.add(dt.datetime(2026, 1, 1, tzinfo=UTC), dt.timedelta(hours=-1))
    assert error.value.field == "duration"


def test_the_stored_form_reads_back_as_the_same_calendar() -> None:
    cal = BusinessCalendar(key="k", timezone="UTC", hours={"sat-wed": "08:00-16:00", "thu": "08:00-12:00"})
    assert cal.hours == (
        "mon=08:00-16:00;tue=08:00-16:00;wed=08:00-16:00;thu=08:00-12:00;sat=08:00-16:00;sun=08:00-16:00"
    )
    again = BusinessCalendar(key="k", timezone="UTC", hours=cal.hours, id=cal.id)
    assert again == cal


# --------------------------------------------------------------------------- minute-by-minute reference

ZONES = ("Europe/Bucharest", "America/New_York", "Australia/Lord_Howe", "Asia/Tehran", "UTC", "America/Santiago")


class Reference:
    """Working time minute by minute: a minute works when its local wall time is in a window of its day."""

    def __init__(self, zone: str, week: list[list[tuple[int, int]]], holidays: set[dt.date]) -> None:
        self.zone = ZoneInfo(zone)
        self.week = week
        self.holidays = holidays

    def works(self, minute: dt.datetime) -> bool:
        wall = minute.astimezone(self.zone)
        if wall.date() in self.holidays:
            return False
        at = wall.hour * 60 + wall.minute
        return any(a <= at < b for a, b in self.week[wall.weekday()])

    def add(self, start: dt.datetime, minutes: int) -> dt.datetime:
        at = start
        while minutes:
            if self.works(at):
                minutes -= 1
            at += MINUTE
        return at

    def diff(self, start: dt.datetime, end: dt.datetime) -> int:
        count, at = 0, start
        while at < end:
            count += self.works(at)
            at += MINUTE
        return count


@st.composite
def calendars(draw: st.DrawFn) -> tuple[BusinessCalendar, Reference]:
    zone = draw(st.sampled_from(ZONES))
    week: list[list[tuple[int, int]]] = []
    for _ in range(7):
        cuts = sorted(set(draw(st.lists(st.integers(0, 1440 // 15), max_size=4))))
        cuts = [c * 15 for c in cuts[: len(cuts) // 2 * 2]]
        week.append([(cuts[i], cuts[i + 1]) for i in range(0, len(cuts), 2)])
    if not any(week):
        week[0] = [(9 * 60, 17 * 60)]
    holidays = set(draw(st.lists(st.dates(dt.date(2026, 3, 20), dt.date(2026, 4, 10)), max_size=3)))
    text = {
        name: ",".join(f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in windows)
        for name, windows in zip(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), week, strict=True)
        if windows
    }
    cal = BusinessCalendar(key="k", timezone=zone, hours=text, extra_holidays=tuple(holidays))
    return cal, Reference(zone, week, holidays)


# instants around the spring and autumn changes of both hemispheres, on whole minutes
instants = st.builds(
    lambda day, minute: dt.datetime.combine(day, dt.time(), UTC) + minute * MINUTE,
    st.sampled_from([dt.date(2026, 3, 26), dt.date(2026, 4, 2), dt.date(2026, 10, 22), dt.date(2026, 11, 1)]),
    st.integers(0, 6 * 1440),
)


@settings(max_examples=150, deadline=None)
@given(pair=calendars(), start=instants, minutes=st.integers(0, 2 * 1440), span=st.integers(0, 5 * 1440))
def test_agrees_with_the_minute_by_minute_reference(
    pair: tuple[BusinessCalendar, Reference], start: dt.datetime, minutes: int, span: int
) -> None:
    cal, ref = pair
    end = start + span * MINUTE
    assert cal.diff(start, end) == ref.diff(start, end) * MINUTE
    assert cal.is_within(start) == ref.works(start)
    total = ref.diff(start, start + 20 * 1440 * MINUTE)
    if minutes <= total:
        got = cal.add(start, minutes * MINUTE)
        assert got == ref.add(start, minutes) or (not ref.works(got) and ref.add(start, minutes) <= got)
        assert cal.diff(start, got) == minutes * MINUTE
        assert minutes == 0 or cal.diff(start, got - MINUTE) < minutes * MINUTE  # the earliest such instant
    nxt = cal.next_start(start)
    assert ref.works(nxt) and ref.diff(start, nxt) == 0


# --------------------------------------------------------------------------- businesstimedelta as oracle


def _oracle_cases(cal: BusinessCalendar, rules: object, zone: str, seed: int, n: int) -> None:
    btd = pytest.importorskip("businesstimedelta")
    rng = random.Random(seed)
    tz = ZoneInfo(zone)
    for _ in range(n):
        # instants and durations to the second, over a year (both daylight-saving changes)
        start = dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=rng.randrange(365 * 86400))
        duration = dt.timedelta(seconds=rng.randrange(1, 40 * 3600))
        theirs = (start + btd.BusinessTimeDelta(rules, timedelta=duration)).astimezone(UTC)
        mine = cal.add(start, duration)
        # at the end of a window both instants are "the same" moment of working time
        assert cal.next_start(mine) == cal.next_start(theirs), (start.astimezone(tz), duration)
        end = start + dt.timedelta(seconds=rng.randrange(30 * 86400))
        assert cal.diff(start, end) == rules.difference(start, end).timedelta  # type: ignore[attr-defined]
        assert cal.diff(start, mine) == duration and cal.is_within(cal.next_start(start))


def test_agrees_with_businesstimedelta_monday_to_friday_with_public_holidays() -> None:
    btd = pytest.importorskip("businesstimedelta")
    pytz = pytest.importorskip("pytz")
    pytest.importorskip("holidays")
    from crmkit.service.calendar import public_holidays

    cal = ro()
    tz = pytz.timezone("Europe/Bucharest")
    days = sorted(public_holidays("RO", 2026) | public_holidays("RO", 2027))
    rules = btd.Rules(
        [
            btd.WorkDayRule(start_time=dt.time(9), end_time=dt.time(17), working_days=[0, 1, 2, 3, 4], tz=tz),
            btd.HolidayRule(days, tz=tz),
        ]
    )
    _oracle_cases(cal, rules, "Europe/Bucharest", 1, 2000)


def test_agrees_with_businesstimedelta_on_split_days() -> None:
    btd = pytest.importorskip("businesstimedelta")
    pytz = pytest.importorskip("pytz")
    cal = BusinessCalendar(key="es", timezone="Europe/Madrid", hours={"mon-fri": "09:00-14:00,16:00-19:00"})
    tz = pytz.timezone("Europe/Madrid")
    rules = btd.Rules(
        [
            btd.WorkDayRule(start_time=dt.time(9), end_time=dt.time(14), working_days=[0, 1, 2, 3, 4], tz=tz),
            btd.WorkDayRule(start_time=dt.time(16), end_time=dt.time(19), working_days=[0, 1, 2, 3, 4], tz=tz),
        ]
    )
    _oracle_cases(cal, rules, "Europe/Madrid", 2, 2000)


def test_agrees_with_businesstimedelta_on_a_saturday_to_wednesday_week() -> None:
    btd = pytest.importorskip("businesstimedelta")
    pytz = pytest.importorskip("pytz")
    cal = BusinessCalendar(key="ir", timezone="Asia/Tehran", hours={"sat-wed": "08:00-16:00", "thu": "08:00-12:00"})
    tz = pytz.timezone("Asia/Tehran")
    rules = btd.Rules(
        [
            btd.WorkDayRule(start_time=dt.time(8), end_time=dt.time(16), working_days=[5, 6, 0, 1, 2], tz=tz),
            btd.WorkDayRule(start_time=dt.time(8), end_time=dt.time(12), working_days=[3], tz=tz),
        ]
    )
    _oracle_cases(cal, rules, "Asia/Tehran", 3, 2000)


@settings(max_examples=200, deadline=None)
@given(
    start=st.datetimes(dt.datetime(2025, 1, 1), dt.datetime(2028, 1, 1), timezones=st.just(UTC)),
    duration=st.timedeltas(dt.timedelta(0), dt.timedelta(days=30)),
)
def test_diff_of_add_is_the_duration(start: dt.datetime, duration: dt.timedelta) -> None:
    cal = BusinessCalendar(
        key="k", timezone="Europe/Bucharest", hours={"mon-thu": "09:00-13:00,14:00-18:00", "fri": "09:00-15:00"}
    )
    end = cal.add(start, duration)
    assert cal.diff(start, end) == duration
    assert end >= start
