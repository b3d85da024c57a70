"""The ``ssh`` action: log in with a key and, optionally, run a command or a script.

Built on asyncssh (asyncio-native: an SSH session never blocks the operator's loop). The
private key (and its passphrase) come from Secrets in the workflow's namespace; their values
are scrubbed from the output, the error and the logs like every Secret an action reads.

Host keys are checked before the key is offered:

- ``knownHosts`` (inline, or from a Secret) pins them, in OpenSSH's known_hosts format
  (``[host]:port`` for a port other than 22, as ``ssh-keyscan -p`` writes it);
- ``acceptNew`` trusts the first key the host shows and pins it in ``status.pins`` for the
  rest of the workflow: every later ssh step of the workflow to the same host and port must
  see the same key (trust on first use, as OpenSSH's ``StrictHostKeyChecking=accept-new``).

Without ``command`` or ``script`` the step only connects and authenticates (the reference
document's "verify SSH access"). ``env`` is set by the remote shell (``export``), not by the
protocol's environment requests, which servers refuse by default.

Error classes: ConnectionRefused, Unreachable and Timeout (retryable); AuthFailed
(retryable: cloud-init often opens sshd before it installs the key); HostKeyMismatch (never
retryable: a different machine answers, or someone in between); NonZeroExit (an exit status
``expectExit`` does not list; ``error.details`` holds exitStatus, stdout and stderr, so
``retryOn: [NonZeroExit]`` and ``next[].when`` can use them); Transport (retryable);
InvalidAction (a key that cannot be read, a bad port); SecretNotFound.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from cerebelum.actions.base import ActionContext, ActionKind, CheckedOutput, source
from cerebelum.actions.errors import ActionError
from cerebelum.api.durations import parse_duration

#: stdout and stderr are cut at this many bytes each, as http bodies are.
OUTPUT_LIMIT = 16 * 1024
DEFAULT_CONNECT_TIMEOUT = 10.0
PIN_PREFIX = "ssh:"


def pin_key(host: str, port: int) -> str:
    """Where ``status.pins`` keeps the host key accepted for ``host:port``."""
    return f"{PIN_PREFIX}{host}:{port}"


def _cut(text: str) -> tuple[str, bool]:
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= OUTPUT_LIMIT:
        return text, False
    return raw[:OUTPUT_LIMIT].decode("utf-8", errors="ignore"), True


def _port(params: Mapping[str, Any]) -> int:
    port = params.get("port", 22)
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port.strip())
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ActionError(
            "InvalidAction", f"ssh port {port!r} is not a port number", retryable=False
        )
    return port


def check(raw: dict[str, Any], params: dict[str, Any]) -> str | None:
    """The port, after interpolation, must be a port number; the host a non-empty name."""
    try:
        _port(params)
    except ActionError:
        return f"ssh.port: {params.get('port')!r}{source(raw.get('port'))} is not a port number"
    host = params.get("host")
    if not isinstance(host, str) or not host.strip():
        return f"ssh.host: {host!r}{source(raw.get('host'))} is not a host name"
    return None


def _remote(params: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The remote command and what goes to its stdin (None, None: only log in)."""
    env = params.get("env") or {}
    exports = "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in env.items())
    if params.get("script") is not None:
        return "sh -s", exports + str(params["script"])
    if params.get("command") is not None:
        return exports.replace("\n", "; ") + str(params["command"]), None
    return None, None


async def _known_hosts(
    params: Mapping[str, Any], context: ActionContext, host: str, port: int
) -> tuple[Any, str | None]:
    """What asyncssh checks the host key against, and the key pinned by an earlier step."""
    import asyncssh

    policy = params.get("knownHosts")
    if policy:
        text = policy.get("inline")
        ref = policy.get("secretKeyRef")
        if ref:
            text = await context.secrets.read(ref["name"], ref["key"])
        try:
            return asyncssh.import_known_hosts(str(text or "")), None
        except (ValueError, asyncssh.KeyImportError) as exc:
            raise ActionError(
                "InvalidAction", f"ssh.knownHosts cannot be read: {exc}", retryable=False
            ) from None
    pinned = (context.pins or {}).get(pin_key(host, port))
    if pinned:
        return ([asyncssh.import_public_key(pinned)], [], []), pinned
    return None, None  # acceptNew, first use: any key, pinned from now on


async def ssh(params: dict[str, Any], context: ActionContext) -> Any:
    import asyncssh

    host = str(params["host"]).strip()
    port = _port(params)
    user = str(params.get("user") or "root")
    where = f"ssh {user}@{host}:{port}"
    ref = params["keySecretRef"]
    key_text = await context.secrets.read(ref["name"], ref["key"])
    passphrase = None
    if params.get("passphraseSecretRef"):
        pref = params["passphraseSecretRef"]
        passphrase = await context.secrets.read(pref["name"], pref["key"])
    try:
        key = asyncssh.import_private_key(key_text, passphrase)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
        raise ActionError(
            "InvalidAction",
            f"{where}: the private key in secret {ref['name']!r} (key {ref['key']!r}) cannot "
            f"be read ({type(exc).__name__})",
            retryable=False,
        ) from None
    known_hosts, pinned = await _known_hosts(params, context, host, port)
    command, stdin = _remote(params)
    expect = list(params.get("expectExit") or [0])
    timeout = (
        parse_duration(str(params["connectTimeout"])).total_seconds()
        if params.get("connectTimeout")
        else DEFAULT_CONNECT_TIMEOUT
    )
    try:
        async with asyncssh.connect(
            host,
            port,
            username=user,
            client_keys=[key],
            known_hosts=known_hosts,
            config=None,
            agent_path=None,
            password=None,
            preferred_auth="publickey",
            connect_timeout=timeout,
        ) as conn:
            server_key = conn.get_server_host_key()
            fingerprint = server_key.get_fingerprint() if server_key else None
            public = server_key.export_public_key().decode().strip() if server_key else None
            pins = (
                {pin_key(host, port): public}
                if public and not params.get("knownHosts") and not pinned
                else None
            )
            if command is None:
                return CheckedOutput(
                    {
                        "exitStatus": None,
                        "stdout": "",
                        "stderr": "",
                        "hostKeyFingerprint": fingerprint,
                    },
                    pins=pins,
                )
            result = await conn.run(command, input=stdin, check=False)
    except asyncssh.HostKeyNotVerifiable as exc:
        why = (
            "does not match the key pinned by an earlier step" if pinned else "is not in knownHosts"
        )
        raise ActionError(
            "HostKeyMismatch", f"{where}: the host key {why} ({exc.reason})", retryable=False
        ) from None
    except asyncssh.PermissionDenied:
        raise ActionError("AuthFailed", f"{where}: the key was refused", retryable=True) from None
    except ConnectionRefusedError:
        raise ActionError(
            "ConnectionRefused", f"{where}: connection refused", retryable=True
        ) from None
    except TimeoutError:
        raise ActionError(
            "Timeout", f"{where}: no SSH handshake within {timeout:g}s", retryable=True
        ) from None
    except asyncssh.Error as exc:
        raise ActionError(
            "Transport", f"{where}: {type(exc).__name__}: {exc.reason}", retryable=True
        ) from None
    except OSError as exc:
        raise ActionError(
            "Unreachable", f"{where}: {exc.strerror or type(exc).__name__}", retryable=True
        ) from None
    stdout, cut_out = _cut(str(result.stdout or ""))
    stderr, cut_err = _cut(str(result.stderr or ""))
    output: dict[str, Any] = {
        "exitStatus": result.exit_status,
        "stdout": stdout,
        "stderr": stderr,
        "hostKeyFingerprint": fingerprint,
    }
    if cut_out or cut_err:
        output["truncated"] = True
    if result.exit_status not in expect:
        status = (
            f"exit status {result.exit_status}"
            if result.exit_status is not None
            else f"killed by signal {result.exit_signal[0] if result.exit_signal else '?'}"
        )
        raise ActionError(
            "NonZeroExit",
            f"{where}: {status} (expected {expect}): {stderr[-200:]}",
            retryable=False,
            details=output,
            pins=pins,
        )
    return CheckedOutput(output, pins=pins)


KIND = ActionKind("ssh", ssh, check=check)
