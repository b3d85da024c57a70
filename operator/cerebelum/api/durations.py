"""Durations written the Kubernetes way (``90s``, ``1h30m``, ``250ms``) and RFC 3339 times.

The same pattern validates manifests in the CRD and parses them here, so a duration the
API server accepts is always one the engine understands. Durations are capped at a year:
``3000000d`` would overflow the date arithmetic of every deadline built on it.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated

from pydantic import AfterValidator, Field

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
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime.datetime:
    """Parse RFC 3339 (``Z`` or an offset); the result is always timezone-aware UTC.
    Raises ValueError for anything else, including a non-string."""
    if not isinstance(text, str):
        raise ValueError(f"timestamp {text!r} is not a string")
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(
            f"timestamp {text!r} has no timezone; use RFC 3339, e.g. 2026-01-02T15:04:05Z"
        )
    return moment.astimezone(datetime.UTC)
