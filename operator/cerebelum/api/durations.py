"""Durations written the Kubernetes way (``90s``, ``1h30m``, ``250ms``) and RFC 3339 times.

The same pattern validates manifests in the CRD and parses them here, so a duration the
API server accepts is always one the engine understands. Durations are capped at a year:
``3000000d`` would overflow the date arithmetic of every deadline built on it.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
#: The longest duration accepted anywhere (sleep, timeouts, activeDeadline, intervals).
MAX_DURATION = datetime.timedelta(days=366)


def parse_duration(text: str) -> datetime.timedelta:
    """``"1h30m"`` -> 90 minutes. Raises ValueError naming the bad text."""
    if not isinstance(text, str) or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit, e.g. 30s, 5m, 1h30m")
    seconds = sum(float(value) * _UNITS[unit] for value, unit in _PART.findall(text))
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {text!r} is longer than the limit of {MAX_DURATION.days}d")
    return datetime.timedelta(seconds=seconds)


def _checked(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        max_length=32,
        json_schema_extra={"example": "1h30m"},
    ),
    AfterValidator(_checked),
]


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with millisecond precision: sub-second deadlines survive a round trip."""
    utc = moment.astimezone(datetime.UTC)
    # Not strftime: its %Y does not pad years before 1000 to four digits on every platform.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def to_millis(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` as status stores it: UTC, cut to the millisecond. A time the engine keeps
    in memory then equals the one it reads back after a write."""
    utc = moment.astimezone(datetime.UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def parse_time(text: str | datetime.datetime) -> datetime.datetime:
    """Parse RFC 3339 (``Z`` or an offset); the result is always timezone-aware UTC.
    A timezone-aware ``datetime`` is taken as it is. Raises ValueError for anything else,
    including a non-string and a time without a timezone."""
    if isinstance(text, datetime.datetime):
        if text.tzinfo is None:
            raise ValueError(f"timestamp {text!r} has no timezone")
        return text.astimezone(datetime.UTC)
    if not isinstance(text, str):
        raise ValueError(f"timestamp {text!r} is not a string")
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(
            f"timestamp {text!r} has no timezone; use RFC 3339, e.g. 2026-01-02T15:04:05Z"
        )
    return moment.astimezone(datetime.UTC)


def _utc_time(value: Any) -> datetime.datetime:
    return parse_time(value)


#: A moment in status: a timezone-aware ``datetime`` in the models (parsed once, when the
#: status is read), RFC 3339 with milliseconds on the wire (formatted once, when written).
#: The schema stays a plain string: status is validated by the operator when it reads it,
#: and a hand-written garbage time is repaired there, not refused by the API server.
Time = Annotated[
    datetime.datetime,
    BeforeValidator(_utc_time),
    PlainSerializer(format_time, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string"}),
]
