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
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import StepPhase

Key = tuple[str, str]

#: Metadata the operator never reads, and the largest part of a cached object.
_UNREAD_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def slim(body: dict[str, Any]) -> dict[str, Any]:
    """The object as cached: without managedFields and kubectl's copy of the manifest,
    which the engine never reads (and status writes do not send)."""
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return body
    meta = {k: v for k, v in meta.items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and any(a in annotations for a in _UNREAD_ANNOTATIONS):
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in _UNREAD_ANNOTATIONS}
    return {**body, "metadata": meta}  # a copy: the watch's own object is left as it was


@dataclass(frozen=True)
class Summary:
    resource_version: str | None
    phase: str
    approvals_waiting: int


def summarise(body: dict[str, Any]) -> Summary:
    status = body.get("status") or {}
    steps = status.get("steps") or {}
    waiting = sum(
        1
        for s in steps.values()
        if isinstance(s, dict) and s.get("phase") == StepPhase.WAITING_FOR_APPROVAL
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


class SpecCache:
    """Parsed specs: per workflow, parsed again only when its generation changes; and by
    content, the most recently used kept, so ten thousand workflows from one template hold
    one parsed spec, not ten thousand (4 KB each for three steps)."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._by_text: OrderedDict[str, WorkflowSpec] = OrderedDict()
        self._by_key: dict[Key, tuple[tuple[Any, Any], WorkflowSpec]] = {}

    def parse(self, raw: dict[str, Any]) -> WorkflowSpec:
        text = json.dumps(raw, sort_keys=True, separators=(",", ":"))
        spec = self._by_text.get(text)
        if spec is not None:
            self._by_text.move_to_end(text)
            return spec
        spec = WorkflowSpec.model_validate(raw)
        self._by_text[text] = spec
        if len(self._by_text) > self.size:
            self._by_text.popitem(last=False)
        return spec

    def of(self, key: Key, body: dict[str, Any]) -> WorkflowSpec:
        """The workflow's parsed spec (raises ValidationError for an invalid one)."""
        meta = body["metadata"]
        stamp = (meta.get("uid"), meta.get("generation"))
        cached = self._by_key.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        spec = self.parse(body.get("spec") or {})
        self._by_key[key] = (stamp, spec)
        return spec

    def forget(self, key: Key) -> None:
        self._by_key.pop(key, None)
