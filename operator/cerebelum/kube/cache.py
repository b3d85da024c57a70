"""The operator's copy of every workflow, kept as compact JSON rather than Python dicts.

A workflow as parsed JSON is about 12 KB of Python objects (dicts, strings, their headers);
as compact UTF-8 JSON it is a third of that. At ten thousand workflows the difference is
most of the operator's memory. A reconciliation reads one workflow, so parsing it back then
costs a few tens of microseconds, next to the milliseconds of its API write. What is read
often without a reconciliation (the resourceVersion, to recognise the echo of our own
writes; the phase and waiting approvals, for metrics) is kept beside it, parsed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]


@dataclass(frozen=True)
class Summary:
    resource_version: str | None
    phase: str
    approvals_waiting: int


def summarise(body: dict[str, Any]) -> Summary:
    status = body.get("status") or {}
    steps = status.get("steps") or {}
    waiting = sum(
        1 for s in steps.values() if isinstance(s, dict) and s.get("phase") == "WaitingForApproval"
    )
    return Summary(
        resource_version=(body.get("metadata") or {}).get("resourceVersion"),
        phase=str(status.get("phase") or "Pending"),
        approvals_waiting=waiting,
    )


class BodyCache:
    """Workflows by (namespace, name): ``get`` returns a fresh dict each time, so nothing a
    caller does to it changes the cache."""

    def __init__(self) -> None:
        self._json: dict[Key, bytes] = {}
        self._summaries: dict[Key, Summary] = {}

    def __setitem__(self, key: Key, body: dict[str, Any]) -> None:
        self._json[key] = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        self._summaries[key] = summarise(body)

    def get(self, key: Key) -> dict[str, Any] | None:
        raw = self._json.get(key)
        if raw is None:
            return None
        body: dict[str, Any] = json.loads(raw)
        return body

    def pop(self, key: Key) -> None:
        self._json.pop(key, None)
        self._summaries.pop(key, None)

    def version(self, key: Key) -> str | None:
        summary = self._summaries.get(key)
        return summary.resource_version if summary else None

    def summaries(self) -> list[Summary]:
        return list(self._summaries.values())

    def __contains__(self, key: object) -> bool:
        return key in self._json

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._json))

    def __len__(self) -> int:
        return len(self._json)

    def size_bytes(self) -> int:
        """The JSON held, for the memory benchmark."""
        return sum(len(v) for v in self._json.values())
