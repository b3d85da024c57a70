"""Operator settings, read once from the environment (the Helm chart sets them)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

ANNOTATION_PREFIX = "cerebelum.io/"
APPROVE = ANNOTATION_PREFIX + "approve"
REJECT = ANNOTATION_PREFIX + "reject"
REASON = ANNOTATION_PREFIX + "reason"
APPROVAL_DATA = ANNOTATION_PREFIX + "approval-data"
CANCEL = ANNOTATION_PREFIX + "cancel"
DECIDED_BY = ANNOTATION_PREFIX + "decided-by"


@dataclass(frozen=True)
class OperatorSettings:
    #: Reconciliations running at once to start with (across workflows; one at a time per
    #: workflow); the operator adapts it to the API server, between 2 and max_workers.
    workers: int = 8
    max_workers: int = 64
    #: Engine passes per reconciliation when local actions chain (bounds one write's work).
    max_passes: int = 200
    #: Run local actions (noop, fail) inside the reconciliation. Off, they take the same
    #: path as actions with I/O: recorded in status first, then run as a task.
    inline_local_actions: bool = True
    #: Default endpoint of digitalocean actions (tests point it at a local fake).
    digitalocean_endpoint: str = "https://api.digitalocean.com"
    #: Several replicas: only the holder of a Lease (in lease_namespace) reconciles.
    leader_election: bool = False
    lease_namespace: str = "default"
    lease_name: str = "cerebelum-operator"
    #: This replica's name in the Lease (the pod name in a cluster).
    identity: str = ""
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    #: Serve Prometheus metrics on this port; None: no metrics endpoint.
    metrics_port: int | None = None
    #: Serve the approver webhook (HTTPS) on this port; None: no webhook.
    webhook_port: int | None = None
    webhook_addr: str = "0.0.0.0"
    #: Serving certificate and key of the webhook (PEM files).
    webhook_cert: str | None = None
    webhook_key: str | None = None
    #: Warn (an Event) when no worker has claimed a python step's StepRun this long.
    unclaimed_warning_seconds: float = 30.0
    #: Reporting component name on Events.
    component: str = "cerebelum-operator"
    #: A failed reconciliation is retried after base × 2^(n-1) seconds (jittered), capped.
    retry_base_seconds: float = 0.5
    retry_max_seconds: float = 60.0
    #: After this many failures in a row: a Warning Event and a Reconciling=False condition.
    failures_before_warning: int = 3

    @classmethod
    def from_env(cls) -> OperatorSettings:
        return cls(
            workers=int(os.environ.get("CEREBELUM_WORKERS", cls.workers)),
            max_workers=int(os.environ.get("CEREBELUM_MAX_WORKERS", cls.max_workers)),
            max_passes=int(os.environ.get("CEREBELUM_MAX_PASSES", cls.max_passes)),
            digitalocean_endpoint=os.environ.get(
                "CEREBELUM_DIGITALOCEAN_ENDPOINT", cls.digitalocean_endpoint
            ),
            leader_election=os.environ.get("CEREBELUM_LEADER_ELECTION", "false").lower()
            in ("1", "true", "yes"),
            lease_namespace=os.environ.get("CEREBELUM_LEASE_NAMESPACE", cls.lease_namespace),
            lease_name=os.environ.get("CEREBELUM_LEASE_NAME", cls.lease_name),
            identity=os.environ.get("CEREBELUM_POD_NAME")
            or f"{socket.gethostname()}-{os.getpid()}",
            lease_seconds=float(os.environ.get("CEREBELUM_LEASE_SECONDS", cls.lease_seconds)),
            renew_seconds=float(os.environ.get("CEREBELUM_LEASE_RENEW_SECONDS", cls.renew_seconds)),
            metrics_port=int(os.environ["CEREBELUM_METRICS_PORT"])
            if os.environ.get("CEREBELUM_METRICS_PORT")
            else None,
            webhook_port=int(os.environ["CEREBELUM_WEBHOOK_PORT"])
            if os.environ.get("CEREBELUM_WEBHOOK_PORT")
            else None,
            webhook_addr=os.environ.get("CEREBELUM_WEBHOOK_ADDR", cls.webhook_addr),
            webhook_cert=os.environ.get("CEREBELUM_WEBHOOK_CERT") or None,
            webhook_key=os.environ.get("CEREBELUM_WEBHOOK_KEY") or None,
            unclaimed_warning_seconds=float(
                os.environ.get("CEREBELUM_UNCLAIMED_WARNING_SECONDS", cls.unclaimed_warning_seconds)
            ),
            inline_local_actions=os.environ.get("CEREBELUM_INLINE_LOCAL_ACTIONS", "true").lower()
            not in ("0", "false", "no"),
            retry_base_seconds=float(
                os.environ.get("CEREBELUM_RETRY_BASE_SECONDS", cls.retry_base_seconds)
            ),
            retry_max_seconds=float(
                os.environ.get("CEREBELUM_RETRY_MAX_SECONDS", cls.retry_max_seconds)
            ),
            failures_before_warning=int(
                os.environ.get("CEREBELUM_FAILURES_BEFORE_WARNING", cls.failures_before_warning)
            ),
        )
