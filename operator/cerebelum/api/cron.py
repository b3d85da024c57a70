"""Cron schedules: parsing (at admission, through the CronWorkflow model) and the next time
a schedule fires after a given moment, in a time zone. Pure; no clock.

The syntax is CronJob's: five fields (minute, hour, day of month, month, day of week) with
``*``, lists, ranges, steps and names (``jan``, ``mon``), the macros ``@yearly``
(``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``) and ``@hourly``, and
``@every DURATION``. Two rules a user meets around a DST change, written down in the README:
a wall-clock time that does not exist that day (the hour skipped in spring) does not fire,
and one that happens twice (the hour repeated in autumn) fires once, the first time.
``@every D`` fires at the multiples of D since the Unix epoch, so every replica and every
restart agree on the scheduled times.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache

from cerebelum.api.durations import parse_duration

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
#: (name, low, high, names) per field.
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
#: How far ahead a schedule is searched (``0 0 29 2 *`` fires every 4 years, or 8).
_HORIZON_DAYS = 366 * 9
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class InvalidSchedule(ValueError):
    """The schedule cannot be parsed; the message says which part and why."""


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: the allowed values of each field, or a fixed interval."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    #: Day of month and day of week both restricted: a day matching either fires (cron's rule).
    either_day: bool
    every: datetime.timedelta | None = None


def _value(text: str, names: list[str] | None, field: str) -> int:
    if names is not None and text.lower() in names:
        return names.index(text.lower()) + (1 if field == "month" else 0)
    if not text.isdigit():
        raise InvalidSchedule(f"{field}: {text!r} is not a number")
    return int(text)


def _field(text: str, field: str, low: int, high: int, names: list[str] | None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise InvalidSchedule(f"{field}: step {step_text!r} is not a positive number")
            step = int(step_text)
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, names, field), _value(last, names, field)
        else:
            start = _value(base, names, field)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high):
            raise InvalidSchedule(f"{field}: {part!r} is outside {low}-{high}")
        if start > end:
            raise InvalidSchedule(f"{field}: range {part!r} runs backwards")
        values.update(range(start, end + 1, step))
    if field == "day of week" and 7 in values:
        values = (values - {7}) | {0}  # 7 is Sunday too
    return frozenset(values)


@lru_cache(maxsize=4096)
def parse_schedule(text: str) -> Schedule:
    """Parse a schedule; raises ``InvalidSchedule`` naming the field at fault."""
    text = text.strip()
    if text.startswith("@every"):
        amount = text[len("@every") :].strip()
        try:
            every = parse_duration(amount)
        except ValueError:
            raise InvalidSchedule(
                f"@every takes a duration such as 30s or 1h, not {amount!r}"
            ) from None
        if every < datetime.timedelta(seconds=1):
            raise InvalidSchedule("@every needs at least 1s")
        none: frozenset[int] = frozenset()
        return Schedule(none, none, none, none, none, False, every)
    if text.startswith("@"):
        if text not in MACROS:
            raise InvalidSchedule(f"unknown macro {text!r} (known: {', '.join(MACROS)}, @every D)")
        text = MACROS[text]
    parts = text.split()
    if len(parts) != 5:
        raise InvalidSchedule(
            f"{len(parts)} fields; a schedule has 5: minute hour day-of-month month day-of-week"
        )
    if any(re.search(r"[^0-9a-zA-Z*?,/-]", p) for p in parts):
        raise InvalidSchedule("only digits, names, * ? , - and / may appear in a field")
    minutes, hours, days, months, weekdays = (
        _field(p, name, lo, hi, names)
        for p, (name, lo, hi, names) in zip(parts, _FIELDS, strict=True)
    )
    either = parts[2] not in ("*", "?") and parts[4] not in ("*", "?")
    return Schedule(minutes, hours, days, months, weekdays, either_day=either)


def zone(name: str | None) -> datetime.tzinfo:
    """The time zone of a schedule (None: UTC); raises ``InvalidSchedule`` for an unknown one."""
    if not name:
        return datetime.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"unknown time zone {name!r} (an IANA name such as Europe/Madrid)"
        ) from None


def _day_matches(s: Schedule, day: datetime.date) -> bool:
    if day.month not in s.months:
        return False
    weekday = (day.weekday() + 1) % 7  # cron: 0 is Sunday
    dom, dow = day.day in s.days, weekday in s.weekdays
    return (dom or dow) if s.either_day else (dom and dow)


def next_after(
    schedule: str, moment: datetime.datetime, time_zone: str | None = None
) -> datetime.datetime | None:
    """The first time the schedule fires strictly after ``moment`` (UTC), or None if it
    never does within nine years (``0 0 31 2 *``)."""
    s = parse_schedule(schedule)
    moment = moment.astimezone(datetime.UTC)
    if s.every is not None:
        step = s.every.total_seconds()
        count = (moment - _EPOCH).total_seconds() // step + 1
        return _EPOCH + datetime.timedelta(seconds=count * step)
    tz = zone(time_zone)
    local = moment.astimezone(tz).replace(tzinfo=None)
    day = local.date()
    minutes, hours = sorted(s.minutes), sorted(s.hours)
    for _ in range(_HORIZON_DAYS):
        if _day_matches(s, day):
            for hour in hours:
                if day == local.date() and hour < local.hour:
                    continue
                for minute in minutes:
                    wall = datetime.datetime.combine(day, datetime.time(hour, minute))
                    if wall <= local:
                        continue
                    fired = _utc(wall, tz)
                    if fired is not None and fired > moment:
                        return fired
        day += datetime.timedelta(days=1)
    return None


def _utc(wall: datetime.datetime, tz: datetime.tzinfo) -> datetime.datetime | None:
    """The UTC time of a wall-clock time (its first occurrence), or None if it does not
    exist that day (skipped by a DST change)."""
    first = wall.replace(tzinfo=tz, fold=0)
    utc = first.astimezone(datetime.UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != wall:
        return None
    return utc


def latest_at_or_before(
    schedule: str,
    moment: datetime.datetime,
    after: datetime.datetime,
    time_zone: str | None = None,
) -> datetime.datetime | None:
    """The most recent time the schedule fired in (``after``, ``moment``], or None: what
    a controller that was away must start (at most that one, never the ones before)."""
    if moment <= after:
        return None
    window = datetime.timedelta(hours=1)
    while True:
        start = max(after, moment - window)
        found = None
        t = next_after(schedule, start, time_zone)
        while t is not None and t <= moment:
            found = t
            t = next_after(schedule, t, time_zone)
        if found is not None or start == after:
            return found
        window *= 8
