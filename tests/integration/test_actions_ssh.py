"""The ssh action, run by the real operator against OpenSSH's own sshd on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Cluster
from tests.harness.operator import OperatorProcess
from tests.harness.sshd import SshServer, keygen, require_sshd
from tests.harness.workflows import wait_for_phase, wait_for_step_phase, workflow


@pytest.fixture
def client_key(tmp_path: Path) -> tuple[Path, str]:
    """A private key file and its public half."""
    path = tmp_path / "client" / "id_ed25519"
    path.parent.mkdir()
    return path, keygen(path)


@pytest.fixture
def sshd(tmp_path: Path, client_key: tuple[Path, str]) -> Iterator[SshServer]:
    require_sshd()
    with SshServer(tmp_path / "sshd") as server:
        yield server


@pytest.fixture
def key_secret(cluster: Cluster, namespace: str, client_key: tuple[Path, str]) -> str:
    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", "ssh-key", f"--from-file=id={client_key[0]}"
    )
    return "ssh-key"


def ssh(server: SshServer, **fields: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "keySecretRef": {"name": "ssh-key", "key": "id"},
        **({"acceptNew": True} if "knownHosts" not in fields else {}),
        **fields,
    }


def test_key_login_runs_a_command_and_a_script_on_stdin(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    sshd: SshServer,
    client_key: tuple[Path, str],
    key_secret: str,
) -> None:
    sshd.authorize(client_key[1])
    steps = [
        {"name": "login", "ssh": ssh(sshd)},
        {"name": "command", "ssh": ssh(sshd, command="echo hello from $(whoami)")},
        {
            "name": "script",
            "ssh": ssh(
                sshd,
                env={"GREETING": 'it\'s a "quoted" value'},
                script='set -e\nread -r first <<EOF\nline one\nEOF\necho "$GREETING / $first"\necho oops >&2\n',
            ),
        },
    ]
    cluster.apply(workflow("remote", steps), namespace)
    done = wait_for_phase(cluster, namespace, "remote", ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", done["status"]["message"]
    out = {name: done["status"]["steps"][name]["output"] for name in ("login", "command", "script")}
    fingerprint = out["login"]["hostKeyFingerprint"]
    assert fingerprint.startswith("SHA256:") and out["login"]["exitStatus"] is None
    assert out["command"]["stdout"] == f"hello from {sshd.user}\n"
    assert out["script"] == {
        "exitStatus": 0,
        "stdout": 'it\'s a "quoted" value / line one\n',
        "stderr": "oops\n",
        "hostKeyFingerprint": fingerprint,
    }
    pinned = done["status"]["pins"][f"ssh:127.0.0.1:{sshd.port}"]
    assert pinned.split()[:2] == sshd.host_public_key().split()[:2]
    assert sshd.logins() == 3


def test_a_non_zero_exit_is_retried_by_retry_on_and_its_status_is_in_the_error(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    sshd: SshServer,
    client_key: tuple[Path, str],
    key_secret: str,
    tmp_path: Path,
) -> None:
    sshd.authorize(client_key[1])
    counter = tmp_path / "runs"
    flaky = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ] || exit 7"
    steps: list[dict[str, Any]] = [
        {
            "name": "flaky",
            "ssh": ssh(sshd, command=flaky),
            "retry": {"limit": 5, "retryOn": ["NonZeroExit"], "backoff": {"delay": "100ms"}},
        },
        {
            "name": "strict",
            "ssh": ssh(sshd, command="echo partial; exit 4"),
            "next": [
                {
                    "when": "phase == 'Failed' && error.details.exitStatus == 4",
                    "continue": True,
                }
            ],
        },
    ]
    cluster.apply(workflow("exits", steps), namespace)
    done = wait_for_phase(cluster, namespace, "exits", ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", done["status"]["message"]
    assert done["status"]["steps"]["flaky"]["attempts"] == 3
    strict = done["status"]["steps"]["strict"]
    assert strict["attempts"] == 1 and strict["error"]["errorClass"] == "NonZeroExit"
    assert strict["error"]["details"]["exitStatus"] == 4
    assert strict["error"]["details"]["stdout"] == "partial\n"


def test_auth_that_fails_until_the_key_arrives_goes_through_retry(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    sshd: SshServer,
    client_key: tuple[Path, str],
    key_secret: str,
) -> None:
    later = threading.Timer(3.0, sshd.authorize, args=(client_key[1],))
    steps = [
        {
            "name": "verify",
            "ssh": ssh(sshd),
            "retry": {"limit": 20, "backoff": {"delay": "500ms", "factor": 1}},
        }
    ]
    later.start()
    try:
        cluster.apply(workflow("late-key", steps), namespace)
        done = wait_for_phase(cluster, namespace, "late-key", ("Succeeded", "Failed"))
    finally:
        later.cancel()
    step = done["status"]["steps"]["verify"]
    assert done["status"]["phase"] == "Succeeded", done["status"]["message"]
    assert step["attempts"] >= 3, "refused while the key was not installed, then let in"
    history = [h for h in done["status"]["history"] if h.get("step") == "verify"]
    assert any(
        h["reason"] == "Retrying" and "AuthFailed" in (h.get("message") or "") for h in history
    )


def test_a_pinned_host_key_that_does_not_match_is_refused_once_not_retried(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    sshd: SshServer,
    client_key: tuple[Path, str],
    key_secret: str,
    tmp_path: Path,
) -> None:
    sshd.authorize(client_key[1])
    other = keygen(tmp_path / "other_host").split()
    wrong = f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}"
    steps = [
        {
            "name": "pinned",
            "ssh": ssh(sshd, knownHosts={"inline": wrong}),
            "retry": {"limit": 5, "backoff": {"delay": "100ms"}},
        }
    ]
    cluster.apply(workflow("pinned", steps), namespace)
    done = wait_for_phase(cluster, namespace, "pinned", ("Succeeded", "Failed"))
    step = done["status"]["steps"]["pinned"]
    assert done["status"]["phase"] == "Failed"
    assert step["attempts"] == 1 and step["error"]["errorClass"] == "HostKeyMismatch"
    assert not step["error"]["retryable"]
    assert sshd.logins() == 0, "the key was never offered to a host we do not trust"
    # The right line is let in.
    cluster.apply(
        workflow(
            "pinned-ok",
            [{"name": "pinned", "ssh": ssh(sshd, knownHosts={"inline": sshd.known_hosts_line()})}],
        ),
        namespace,
    )
    ok = wait_for_phase(cluster, namespace, "pinned-ok", ("Succeeded", "Failed"))
    assert ok["status"]["phase"] == "Succeeded", ok["status"]["message"]


def test_accept_new_pins_the_first_host_key_and_refuses_a_changed_one(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    sshd: SshServer,
    client_key: tuple[Path, str],
    key_secret: str,
    tmp_path: Path,
) -> None:
    sshd.authorize(client_key[1])
    steps = [
        {"name": "first", "ssh": ssh(sshd)},
        {"name": "gate", "approval": {}},
        {"name": "second", "ssh": ssh(sshd), "retry": {"limit": 3, "backoff": {"delay": "100ms"}}},
    ]
    cluster.apply(workflow("tofu", steps), namespace)
    waiting = wait_for_step_phase(cluster, namespace, "tofu", "gate", "WaitingForApproval")
    fingerprint = waiting["status"]["steps"]["first"]["output"]["hostKeyFingerprint"]
    assert list(waiting["status"]["pins"]) == [f"ssh:127.0.0.1:{sshd.port}"]
    # Another machine answers at the same address (a new host key on the same port).
    sshd.stop()
    with SshServer(tmp_path / "imposter", port=sshd.port) as imposter:
        imposter.authorize(client_key[1])
        cluster.kubectl(
            "-n", namespace, "annotate", "workflow", "tofu", "cerebelum.io/approve=gate"
        )
        done = wait_for_phase(cluster, namespace, "tofu", ("Succeeded", "Failed"))
        assert imposter.logins() == 0
    second = done["status"]["steps"]["second"]
    assert done["status"]["phase"] == "Failed"
    assert second["error"]["errorClass"] == "HostKeyMismatch" and second["attempts"] == 1
    assert "pinned by an earlier step" in second["error"]["message"]
    assert done["status"]["steps"]["first"]["output"]["hostKeyFingerprint"] == fingerprint


def test_a_key_from_a_missing_secret_gives_secret_not_found(
    cluster: Cluster, namespace: str, operator: OperatorProcess, sshd: SshServer
) -> None:
    cluster.apply(workflow("nokey", [{"name": "login", "ssh": ssh(sshd)}]), namespace)
    done = wait_for_phase(cluster, namespace, "nokey", "Failed")
    error = done["status"]["steps"]["login"]["error"]
    assert error["errorClass"] == "SecretNotFound" and "ssh-key" in error["message"]


def test_no_private_key_reaches_status_events_or_logs(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    sshd: SshServer,
    client_key: tuple[Path, str],
    key_secret: str,
) -> None:
    sshd.authorize(client_key[1])
    # The server prints the very key the operator logged in with, then fails.
    steps = [{"name": "echoes", "ssh": ssh(sshd, command=f"cat {client_key[0]}; exit 3")}]
    cluster.apply(workflow("leak", steps), namespace)
    done = wait_for_phase(cluster, namespace, "leak", "Failed")
    events = cluster.kubectl("-n", namespace, "get", "events", "-o", "json").stdout
    everything = "\n".join([json.dumps(done["status"]), events, operator.logs()])
    error = done["status"]["steps"]["echoes"]["error"]
    assert error["errorClass"] == "NonZeroExit" and "***" in error["details"]["stdout"]
    for line in client_key[0].read_text().strip().splitlines()[1:-1]:
        assert line not in everything, "a line of the private key leaked"
