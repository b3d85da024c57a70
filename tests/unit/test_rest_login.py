"""How the operator's own API client finds its credentials (kube/rest.py ``login``): the
kubeconfig's current context as kubectl reads it, plugins run where a user needs one, and a
clear error where there is nothing to log in with."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import kopf
import pytest
import yaml

from cerebelum.kube import rest

pytestmark = pytest.mark.skipif(
    Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists(),
    reason="inside a pod the service account comes first",
)


def _kubeconfig(tmp_path: Path, user: dict[str, object], cluster: dict[str, object]) -> Path:
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": "https://127.0.0.1:6443", **cluster}}
                ],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


async def test_relative_paths_are_relative_to_the_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _kubeconfig(
        tmp_path,
        {"client-certificate": "pki/me.crt", "client-key": "pki/me.key"},
        {"certificate-authority": "pki/ca.crt"},
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.chdir("/")
    info = await rest.login()
    assert info.server == "https://127.0.0.1:6443"
    assert info.ca_path == str(tmp_path / "pki" / "ca.crt")
    assert info.certificate_path == str(tmp_path / "pki" / "me.crt")
    assert info.private_key_path == str(tmp_path / "pki" / "me.key")


async def test_a_user_with_an_exec_plugin_gets_the_plugins_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = tmp_path / "credential-plugin"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": "from-the-plugin"},
    }
    plugin.write_text(f"#!{sys.executable}\nprint({json.dumps(json.dumps(credential))})\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config = _kubeconfig(
        tmp_path,
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": str(plugin),
                "interactiveMode": "Never",
            }
        },
        {"insecure-skip-tls-verify": True},
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    info = await rest.login()
    assert info.server == "https://127.0.0.1:6443"
    assert info.token == "from-the-plugin"


async def test_no_kubeconfig_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(kopf.LoginError, match="cannot read the kubeconfig"):
        await rest.login()


def test_paths_of_resources() -> None:
    assert (
        rest.path_of("", "v1", "configmaps", "ns", "a b")
        == "/api/v1/namespaces/ns/configmaps/a%20b"
    )
    assert (
        rest.path_of("cerebelum.io", "v1alpha1", "workflows", "ns", "w", "status")
        == "/apis/cerebelum.io/v1alpha1/namespaces/ns/workflows/w/status"
    )
    assert rest.path_of("cerebelum.io", "v1alpha1", "workflows", None) == (
        "/apis/cerebelum.io/v1alpha1/workflows"
    )
