"""A handle on the cluster under test, with helpers that run the real kubectl and helm.

It wraps either the local control plane or an existing cluster named by
``CEREBELUM_TEST_KUBECONFIG``, so every integration test runs unchanged on both.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cerebelum.devcluster import LocalControlPlane
from cerebelum.kube.rest import RestClient

T = TypeVar("T")


class CommandError(AssertionError):
    """A kubectl/helm command failed; carries its output for the test report."""

    def __init__(self, argv: list[str], result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )


@dataclass
class Cluster:
    kubeconfig: Path
    kubectl_bin: Path
    helm_bin: Path
    workdir: Path
    control_plane: LocalControlPlane | None = None

    @property
    def is_local(self) -> bool:
        return self.control_plane is not None

    # -- commands ----------------------------------------------------------------------

    def _run(
        self,
        binary: Path,
        args: tuple[str, ...],
        *,
        stdin: str | None,
        check: bool,
        kubeconfig: Path | None,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(binary), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise CommandError(argv, result)
        return result

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        return self._run(
            self.kubectl_bin, args, stdin=stdin, check=check, kubeconfig=kubeconfig, timeout=timeout
        )

    def kubectl_watch(self, *args: str) -> subprocess.Popen[str]:
        """Start ``kubectl ARGS --watch``; its stdout yields one line per change."""
        argv = [str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig), *args, "--watch"]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def kubectl_json(self, *args: str, kubeconfig: Path | None = None) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json", kubeconfig=kubeconfig).stdout)

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> None:
        # JSON, not PyYAML: kubectl's YAML 1.1 parser reads keys like `n` or `y` as booleans.
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        ns_args = ("-n", namespace) if namespace else ()
        self.kubectl("apply", *ns_args, "-f", "-", stdin=text)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self._run(
            self.helm_bin, args, stdin=None, check=check, kubeconfig=None, timeout=timeout
        )

    # -- credentials -------------------------------------------------------------------

    def kubeconfig_with_token(self, name: str, token: str) -> Path:
        """A kubeconfig for the same server that authenticates with ``token`` only."""
        admin = json.loads(self.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
        cluster = admin["clusters"][0]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name}}],
            "current-context": name,
        }
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


def free_port() -> int:
    """A loopback port nothing listens on right now (for a server a test is about to start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eventually(check: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.1) -> T:
    """Call ``check`` until it returns a truthy value or stops raising; re-raise at the end."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            error: BaseException | None = AssertionError(f"{check} stayed falsy for {timeout}s")
        except (AssertionError, CommandError) as exc:
            error = exc
        if time.monotonic() >= deadline:
            assert error is not None
            raise error
        time.sleep(interval)


@contextlib.asynccontextmanager
async def rest_client(kubeconfig: Path) -> AsyncIterator[RestClient]:
    """The operator's own API client (kube.rest), logged in with ``kubeconfig`` as the
    operator would be with KUBECONFIG naming it."""
    saved = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    try:
        rest = await RestClient.connect()
    finally:
        if saved is None:
            del os.environ["KUBECONFIG"]
        else:
            os.environ["KUBECONFIG"] = saved
    try:
        yield rest
    finally:
        await rest.close()
