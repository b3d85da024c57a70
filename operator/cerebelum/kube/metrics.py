"""Prometheus metrics of the operator, served when ``CEREBELUM_METRICS_PORT`` is set.

Counters and histograms are updated where things happen (attempts, errors, API requests,
steps finishing). Gauges about the present (workflows by phase, approvals waiting, timers)
are computed at scrape time from the runtime's cache, so they are never stale and cost
nothing between scrapes.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cerebelum.api.durations import parse_time
from cerebelum.api.spec import WorkflowSpec
from cerebelum.api.status import step_phase_info
from cerebelum.kube.cache import Summary

REGISTRY = CollectorRegistry(auto_describe=True)

ACTION_ATTEMPTS = Counter(
    "cerebelum_action_attempts",
    "Action attempts started, by action kind.",
    ["kind"],
    registry=REGISTRY,
)
POLL_ATTEMPTS = Counter(
    "cerebelum_poll_attempts",
    "Attempts of polling steps, by action kind.",
    ["kind"],
    registry=REGISTRY,
)
ACTION_ERRORS = Counter(
    "cerebelum_action_errors",
    "Failed action attempts, by action kind and error class.",
    ["kind", "error_class"],
    registry=REGISTRY,
)
STEP_DURATION = Histogram(
    "cerebelum_step_duration_seconds",
    "Time from a step's start to its end, by kind and final phase.",
    ["kind", "phase"],
    registry=REGISTRY,
    buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 24 * 3600, float("inf")),
)
CALLBACKS = Counter(
    "cerebelum_callbacks",
    "Callback deliveries at the HTTP endpoint, by result (accepted, not_found, invalid).",
    ["result"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "cerebelum_notifications",
    "Notices sent to spec.notify targets, by result (sent, failed).",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_SLOTS = Gauge(
    "cerebelum_reconcile_concurrency",
    "Reconciliations allowed at once, adapted to the API server's answers.",
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "cerebelum_queue_depth",
    "Workflows waiting for a reconciliation.",
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "cerebelum_api_requests",
    "Requests the operator made to the Kubernetes API (besides Kopf's watch).",
    ["verb", "resource", "code"],
    registry=REGISTRY,
)


def observe_finished_steps(spec: WorkflowSpec, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Step durations for the histogram: steps whose visit ended between two statuses."""
    before = old.get("steps")
    if not isinstance(before, dict):
        before = {}
    after = new.get("steps") or {}
    for step in spec.all_steps():
        s = after.get(step.name) or {}
        info = step_phase_info(s.get("phase"))
        if info is None or not info.final or not (s.get("startedAt") and s.get("finishedAt")):
            continue
        previous = before.get(step.name)
        previous = previous if isinstance(previous, dict) else {}
        if previous.get("phase") == s["phase"] and previous.get("visits") == s.get("visits"):
            continue  # finished already
        kind = step.action_kind() or ("approval" if step.approval else "sleep")
        seconds = (parse_time(s["finishedAt"]) - parse_time(s["startedAt"])).total_seconds()
        STEP_DURATION.labels(kind, s["phase"]).observe(max(seconds, 0.0))


class _StateCollector(Collector):
    """Workflows by phase, steps waiting for approval, and deadlines in the timer heap."""

    def __init__(self, summaries: Callable[[], list[Summary]], timers: Callable[[], int]) -> None:
        self._summaries = summaries
        self._timers = timers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        phases: Tally[str] = Tally()
        approvals = 0
        for summary in self._summaries():
            phases[summary.phase] += 1
            approvals += summary.approvals_waiting
        by_phase = GaugeMetricFamily(
            "cerebelum_workflows", "Workflows known to the operator, by phase.", labels=["phase"]
        )
        for phase, count in sorted(phases.items()):
            by_phase.add_metric([phase], count)
        yield by_phase
        yield GaugeMetricFamily(
            "cerebelum_approvals_waiting", "Steps waiting for an approval.", value=approvals
        )
        yield GaugeMetricFamily(
            "cerebelum_wakeups_scheduled",
            "Workflows with a deadline in the timer heap.",
            value=self._timers(),
        )


def serve(port: int, summaries: Callable[[], list[Summary]], timers: Callable[[], int]) -> None:
    """Start the /metrics endpoint (a daemon thread of prometheus_client) on ``port``."""
    REGISTRY.register(_StateCollector(summaries, timers))
    start_http_server(port, registry=REGISTRY)
