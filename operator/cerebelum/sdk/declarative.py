"""Declarative steps: actions the operator runs itself, so a workflow made only of these
needs no worker. Fields are checked against the same pydantic models as the CRD, here and
now, so a typo fails at import time. Values may use ``${{ expr }}`` (CEL), e.g.
``"${{ steps.create.output.droplet.id }}"``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ValidationError

from cerebelum.api.base import describe_errors
from cerebelum.api.spec import (
    DigitalOceanAction,
    HttpAction,
    JobAction,
    NoopAction,
    SshAction,
    TcpAction,
)
from cerebelum.sdk.steps import DefinitionError, Sleep, StepDef, _check_name, approval, callback


def _seconds(value: float | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return f"{value:g}s"


def _declare(name: str, kind: str, model: type[BaseModel], fields: dict[str, Any]) -> StepDef:
    given = {k: v for k, v in fields.items() if v is not None}
    try:
        action = model.model_validate(given).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    except ValidationError as exc:
        problems = describe_errors(exc)
        raise DefinitionError(f"step {name}: {kind}: {problems}") from None
    return StepDef(name=_check_name(name), kind=kind, action=action)


def http_step(
    name: str,
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: Any = None,
    expect_status: list[int] | None = None,
    timeout: float | None = None,
) -> StepDef:
    """An HTTP request; output {status, headers, body}."""
    fields = {
        "url": url,
        "method": method,
        "headers": headers,
        "body": body,
        "expectStatus": expect_status,
    }
    return replace(_declare(name, "http", HttpAction, fields), timeout=timeout)


def tcp_step(name: str, host: str, port: int | str, *, timeout: float | str = 5) -> StepDef:
    """A TCP reachability check (e.g. SSH answers); output {reachable, latencyMs}."""
    fields = {"host": host, "port": port, "connectTimeout": _seconds(timeout)}
    return _declare(name, "tcp", TcpAction, fields)


def ssh_step(
    name: str,
    host: str,
    *,
    key_secret: tuple[str, str],
    user: str = "root",
    port: int | str = 22,
    command: str | None = None,
    script: str | None = None,
    env: dict[str, str] | None = None,
    known_hosts: str | None = None,
    known_hosts_secret: tuple[str, str] | None = None,
    accept_new: bool = False,
    expect_exit: list[int] | None = None,
    connect_timeout: float | None = None,
    timeout: float | None = None,
) -> StepDef:
    """An SSH login with the private key in Secret ``key_secret`` = (name, key), then
    ``command`` or ``script`` (neither: only log in). Trust host keys from ``known_hosts``
    (inline lines or ``known_hosts_secret``) or, with ``accept_new=True``, the first key seen;
    output {exitStatus, stdout, stderr, hostKeyFingerprint}."""
    policy: dict[str, Any] | None = None
    if known_hosts is not None:
        policy = {"inline": known_hosts}
    elif known_hosts_secret is not None:
        policy = {"secretKeyRef": {"name": known_hosts_secret[0], "key": known_hosts_secret[1]}}
    fields = {
        "host": host,
        "port": port,
        "user": user,
        "keySecretRef": {"name": key_secret[0], "key": key_secret[1]},
        "knownHosts": policy,
        "acceptNew": accept_new or None,
        "command": command,
        "script": script,
        "env": env,
        "expectExit": expect_exit,
        "connectTimeout": _seconds(connect_timeout),
    }
    return replace(_declare(name, "ssh", SshAction, fields), timeout=timeout)


def digitalocean_step(
    name: str,
    call: str,
    *,
    token_secret: tuple[str, str] = ("digitalocean", "token"),
    params: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    endpoint: str | None = None,
) -> StepDef:
    """A DigitalOcean API call through pydo, e.g. call="droplets.create". The token is read
    from the Secret key ``token_secret`` = (secret name, key) in the workflow's namespace."""
    fields = {
        "tokenSecretRef": {"name": token_secret[0], "key": token_secret[1]},
        "call": call,
        "params": params,
        "body": body,
        "endpoint": endpoint,
    }
    return _declare(name, "digitalocean", DigitalOceanAction, fields)


def job_step(
    name: str,
    image: str,
    *,
    command: list[str] | None = None,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    active_deadline_seconds: int | None = None,
) -> StepDef:
    """A container run as a Kubernetes Job; output from its termination message (JSON)."""
    fields = {
        "image": image,
        "command": command,
        "args": args,
        "env": env,
        "activeDeadlineSeconds": active_deadline_seconds,
    }
    return _declare(name, "job", JobAction, fields)


def output_step(name: str, value: dict[str, Any]) -> StepDef:
    """A step whose output is ``value`` (expressions allowed): for shaping data."""
    return _declare(name, "noop", NoopAction, {"with": value})


def sleep_step(name: str, *, seconds: float | None = None, until: str | None = None) -> StepDef:
    """A step that only waits (Cerebelum's ``sleeping`` state)."""
    if (seconds is None) == (until is None):
        raise DefinitionError(f"step {name}: sleep_step needs exactly one of seconds= or until=")
    return StepDef(name=_check_name(name), kind=None, sleep=Sleep(seconds=seconds, until=until))


def callback_step(
    name: str,
    *,
    timeout: float | None = None,
    heartbeat_timeout: float | None = None,
    schema: dict[str, Any] | None = None,
) -> StepDef:
    """A step that only waits for a callback (``kubectl annotate`` or an HTTP POST with a
    token handed out elsewhere); the payload is its output."""
    wait = StepDef(name=_check_name(name), kind=None)
    result: StepDef = callback(timeout, heartbeat_timeout=heartbeat_timeout, schema=schema)(wait)
    return result


def approval_step(name: str, *, timeout_minutes: float | None = None, **options: Any) -> StepDef:
    """A step that only waits for a human decision; the approval data is its output."""
    gate = StepDef(name=_check_name(name), kind=None)
    result: StepDef = approval("manual", timeout_minutes, **options)(gate)
    return result
