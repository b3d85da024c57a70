"""Operator settings, read once from the environment (the Helm chart sets them).

Typed and nested, in Kopf's style: one small frozen dataclass per concern, each reading
its own variables. Action kinds declare their own settings (``actions.ActionSettings``), so
a default such as the DigitalOcean endpoint is written once, in its action's module.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from cerebelum.actions import ActionSettings
from cerebelum.api.annotations import (  # re-exported: the names the shell uses
    ANNOTATION_PREFIX as ANNOTATION_PREFIX,
)
from cerebelum.api.annotations import (
    APPROVAL_DATA as APPROVAL_DATA,
)
from cerebelum.api.annotations import (
    APPROVE as APPROVE,
)
from cerebelum.api.annotations import (
    CALLBACK as CALLBACK,
)
from cerebelum.api.annotations import (
    CALLBACK_DATA as CALLBACK_DATA,
)
from cerebelum.api.annotations import (
    CALLBACK_OUTCOME as CALLBACK_OUTCOME,
)
from cerebelum.api.annotations import (
    CALLBACK_RECEIVED_PREFIX as CALLBACK_RECEIVED_PREFIX,
)
from cerebelum.api.annotations import (
    CANCEL as CANCEL,
)
from cerebelum.api.annotations import (
    CHOICE as CHOICE,
)
from cerebelum.api.annotations import (
    CREATED_BY as CREATED_BY,
)
from cerebelum.api.annotations import (
    DECIDED_BY as DECIDED_BY,
)
from cerebelum.api.annotations import (
    REASON as REASON,
)
from cerebelum.api.annotations import (
    REJECT as REJECT,
)
from cerebelum.api.durations import parse_duration


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    return value.lower() in ("1", "true", "yes")


def _duration(env: Mapping[str, str], name: str) -> datetime.timedelta | None:
    value = env.get(name)
    return parse_duration(value) if value else None


def _port(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    return int(value) if value else None


@dataclass(frozen=True)
class ReconcileSettings:
    """How reconciliations run."""

    #: Reconciliations running at once to start with (across workflows; one at a time per
    #: workflow); the operator adapts it to the API server, between 2 and max_workers.
    workers: int = 8
    max_workers: int = 64
    #: Engine passes per reconciliation when local actions chain (bounds one write's work).
    max_passes: int = 200
    #: Run local actions (noop, fail) inside the reconciliation. Off, they take the same
    #: path as actions with I/O: recorded in status first, then run as a task.
    inline_local_actions: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ReconcileSettings:
        return cls(
            workers=int(env.get("CEREBELUM_WORKERS", cls.workers)),
            max_workers=int(env.get("CEREBELUM_MAX_WORKERS", cls.max_workers)),
            max_passes=int(env.get("CEREBELUM_MAX_PASSES", cls.max_passes)),
            inline_local_actions=_flag(env, "CEREBELUM_INLINE_LOCAL_ACTIONS", True),
        )


@dataclass(frozen=True)
class BackoffSettings:
    """A failed reconciliation is retried after base × 2^(n-1) seconds (jittered), capped."""

    retry_base_seconds: float = 0.5
    retry_max_seconds: float = 60.0
    #: After this many failures in a row: a Warning Event and a Reconciling=False condition.
    failures_before_warning: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BackoffSettings:
        return cls(
            retry_base_seconds=float(
                env.get("CEREBELUM_RETRY_BASE_SECONDS", cls.retry_base_seconds)
            ),
            retry_max_seconds=float(env.get("CEREBELUM_RETRY_MAX_SECONDS", cls.retry_max_seconds)),
            failures_before_warning=int(
                env.get("CEREBELUM_FAILURES_BEFORE_WARNING", cls.failures_before_warning)
            ),
        )


@dataclass(frozen=True)
class LeaderSettings:
    """Several replicas: only the holder of a Lease (in ``namespace``) reconciles."""

    enabled: bool = False
    namespace: str = "default"
    name: str = "cerebelum-operator"
    #: This replica's name in the Lease (the pod name in a cluster).
    identity: str = ""
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LeaderSettings:
        return cls(
            enabled=_flag(env, "CEREBELUM_LEADER_ELECTION", False),
            namespace=env.get("CEREBELUM_LEASE_NAMESPACE", cls.namespace),
            name=env.get("CEREBELUM_LEASE_NAME", cls.name),
            identity=env.get("CEREBELUM_POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
            lease_seconds=float(env.get("CEREBELUM_LEASE_SECONDS", cls.lease_seconds)),
            renew_seconds=float(env.get("CEREBELUM_LEASE_RENEW_SECONDS", cls.renew_seconds)),
        )


@dataclass(frozen=True)
class WakeHintSettings:
    """The wake-up hint (``kube.wakehint``): the soonest deadlines, kept in a ConfigMap so a
    restarted operator wakes the ones already due before its initial list is through."""

    enabled: bool = False
    namespace: str = "default"
    name: str = "cerebelum-operator-wakeups"
    #: Rewritten at most this often (seconds), and only when it changed.
    interval: float = 5.0
    #: Deadlines up to this far ahead (seconds) are kept, the soonest ``limit`` of them.
    horizon: float = 120.0
    limit: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WakeHintSettings:
        return cls(
            enabled=_flag(env, "CEREBELUM_WAKE_HINT", False),
            namespace=env.get("CEREBELUM_WAKE_HINT_NAMESPACE")
            or env.get("CEREBELUM_LEASE_NAMESPACE")
            or cls.namespace,
            name=env.get("CEREBELUM_WAKE_HINT_NAME", cls.name),
            interval=float(env.get("CEREBELUM_WAKE_HINT_SECONDS", cls.interval)),
        )


@dataclass(frozen=True)
class WebhookSettings:
    """The admission webhooks (HTTPS); ``port`` None: no webhook."""

    port: int | None = None
    addr: str = "0.0.0.0"
    #: Serving certificate and key (PEM files).
    cert: str | None = None
    key: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookSettings:
        return cls(
            port=_port(env, "CEREBELUM_WEBHOOK_PORT"),
            addr=env.get("CEREBELUM_WEBHOOK_ADDR", cls.addr),
            cert=env.get("CEREBELUM_WEBHOOK_CERT") or None,
            key=env.get("CEREBELUM_WEBHOOK_KEY") or None,
        )


@dataclass(frozen=True)
class CallbackSettings:
    """Callback waits. ``key`` signs tokens (without one, only ``kubectl annotate`` delivers
    callbacks); ``port`` serves the HTTPS endpoint; ``url`` is that endpoint as the outside
    world reaches it (``${{ callback.url }}``)."""

    #: Not in repr: the key never reaches a log line.
    key: bytes | None = field(default=None, repr=False)
    url: str | None = None
    port: int | None = None
    addr: str = "0.0.0.0"
    cert: str | None = None
    cert_key: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CallbackSettings:
        key: bytes | None = None
        key_file = env.get("CEREBELUM_CALLBACK_KEY_FILE")
        if key_file:
            with open(key_file, "rb") as f:
                key = f.read().strip()
        elif env.get("CEREBELUM_CALLBACK_KEY"):
            key = env["CEREBELUM_CALLBACK_KEY"].encode()
        return cls(
            key=key,
            url=env.get("CEREBELUM_CALLBACK_URL") or None,
            port=_port(env, "CEREBELUM_CALLBACK_PORT"),
            addr=env.get("CEREBELUM_CALLBACK_ADDR", cls.addr),
            cert=env.get("CEREBELUM_CALLBACK_CERT") or None,
            cert_key=env.get("CEREBELUM_CALLBACK_CERT_KEY") or None,
        )


@dataclass(frozen=True)
class OperatorSettings:
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    backoff: BackoffSettings = field(default_factory=BackoffSettings)
    leader: LeaderSettings = field(default_factory=LeaderSettings)
    wake_hint: WakeHintSettings = field(default_factory=WakeHintSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    actions: ActionSettings = field(default_factory=ActionSettings.defaults)
    #: Delete finished workflows this long after they finished, unless their spec says
    #: otherwise (None: kept).
    ttl_after_finished: datetime.timedelta | None = None
    #: Serve Prometheus metrics on this port; None: no metrics endpoint.
    metrics_port: int | None = None
    #: Reporting component name on Events.
    component: str = "cerebelum-operator"
    #: The web UI as users reach it (https://cerebelum.example.com/): notices link to the
    #: step's page there. None: no link.
    ui_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if env is None else env
        return cls(
            reconcile=ReconcileSettings.from_env(env),
            backoff=BackoffSettings.from_env(env),
            leader=LeaderSettings.from_env(env),
            wake_hint=WakeHintSettings.from_env(env),
            webhook=WebhookSettings.from_env(env),
            callbacks=CallbackSettings.from_env(env),
            actions=ActionSettings.from_env(env),
            metrics_port=_port(env, "CEREBELUM_METRICS_PORT"),
            ttl_after_finished=_duration(env, "CEREBELUM_TTL_AFTER_FINISHED"),
            ui_url=(env.get("CEREBELUM_UI_URL") or "").strip() or None,
        )
