"""Run etcd and kube-apiserver as child processes on loopback.

The API server is configured the way a real cluster is where it matters to us: TLS serving,
client certificates, RBAC authorization and service-account token signing (TokenRequest),
with the ServiceAccount admission plugin off because no controller-manager creates the
``default`` service accounts (the same choice envtest makes).

Children are stopped by PID, never by name. They also die with the process that started them
(``PR_SET_PDEATHSIG``), and a later start removes what a killed run left behind.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml

from cerebelum.devcluster.binaries import Binaries
from cerebelum.devcluster.pki import CertificateAuthority, KeyPair, write_signing_key

WORKDIR_PREFIX = "cerebelum-devcluster-"
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane did not come up; the message carries the relevant log tail."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: get SIGKILL when the parent thread dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def remove_stale_workdirs(root: Path) -> list[Path]:
    """Remove work dirs of runs whose owning process is gone (e.g. killed with SIGKILL).

    Processes recorded in such a dir are killed by PID, but only if their command line
    still names that dir, so a recycled PID is never hit.
    """
    removed = []
    for workdir in root.glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int(workdir.name[len(WORKDIR_PREFIX) :].split("-")[0])
        except ValueError:
            continue
        if _pid_alive(owner):
            continue
        pids_file = workdir / "pids"
        if pids_file.exists():
            for line in pids_file.read_text().split():
                pid = int(line)
                if _pid_alive(pid) and str(workdir) in _cmdline(pid):
                    os.kill(pid, signal.SIGKILL)
        unmount_under(workdir)  # a node's kubelet and containerd mount here
        shutil.rmtree(workdir, ignore_errors=True)
        removed.append(workdir)
    return removed


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    found = []
    try:
        with open("/proc/self/mountinfo") as info:
            for line in info:
                point = line.split()[4].replace("\\040", " ")
                if point == str(root) or point.startswith(f"{root}/"):
                    found.append(point)
    except OSError:
        return []
    return sorted(found, key=len, reverse=True)


def unmount_under(root: Path) -> None:
    """Lazily unmount everything at or below ``root`` so the directory can be removed."""
    for point in mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    argv: list[str]

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL after 10 s: a child that ignores SIGTERM still ends."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class LocalControlPlane:
    """etcd + kube-apiserver on free loopback ports; use as a context manager."""

    binaries: Binaries
    temp_root: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    startup_timeout: float = 90.0
    extra_apiserver_args: tuple[str, ...] = ()
    #: Set by the node mode: serve on this (non-loopback) address so pods can reach the API
    #: server through the ``kubernetes`` Service, and run the API server as a cluster with
    #: nodes does (Node authorizer, ServiceAccount and NodeRestriction admission).
    node_ip: str | None = None

    workdir: Path | None = field(default=None, init=False)
    server: str = field(default="", init=False)
    kubeconfig: Path = field(default=Path(), init=False)
    startup_seconds: float = field(default=0.0, init=False)
    _children: list[_Child] = field(default_factory=list, init=False)
    _ca: CertificateAuthority | None = field(default=None, init=False)
    _admin: KeyPair | None = field(default=None, init=False)
    _signing: KeyPair | None = field(default=None, init=False)

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> LocalControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        remove_stale_workdirs(self.temp_root)
        self.workdir = Path(
            tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=self.temp_root)
        )
        try:
            self._start_in(self.workdir)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _start_in(self, workdir: Path) -> None:
        pki_dir = workdir / "pki"
        pki_dir.mkdir()
        self._ca = ca = CertificateAuthority(pki_dir)
        address = self.node_ip or "127.0.0.1"
        serving = ca.issue(
            "apiserver",
            "kube-apiserver",
            server_ips=tuple(dict.fromkeys(("127.0.0.1", "10.0.0.1", address))),
            server_dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        )
        admin = ca.issue("admin", "cerebelum-admin", organizations=("system:masters",))
        self._admin = admin
        signing = write_signing_key(pki_dir)
        self._signing = signing

        etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self.spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=cerebelum",
                f"--data-dir={workdir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=cerebelum={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self.wait_for(lambda: self._http_ok(f"{etcd_url}/health"), "etcd")

        self.server = f"https://{address}:{api_port}"
        self.spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={address}",
                f"--advertise-address={address}",
                f"--secure-port={api_port}",
                f"--cert-dir={workdir / 'apiserver-certs'}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert_path}",
                *self._mode_args(ca, pki_dir),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={signing.cert}",
                f"--service-account-signing-key-file={signing.key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--profiling=false",
                f"--audit-policy-file={self._write_audit_policy(workdir)}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                *self.extra_apiserver_args,
            ],
        )
        self.kubeconfig = self._write_kubeconfig("admin", client=admin)
        context = self._ssl_context(admin)
        self.wait_for(lambda: self._http_ok(f"{self.server}/readyz", context), "kube-apiserver")

    def _mode_args(self, ca: CertificateAuthority, pki_dir: Path) -> list[str]:
        """Flags that differ between the node-less control plane and one with a node."""
        if self.node_ip is None:
            return ["--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount"]
        kubelet_client = ca.issue(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            organizations=("system:masters",),
        )
        return [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            f"--kubelet-certificate-authority={ca.cert_path}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    @property
    def ca(self) -> CertificateAuthority:
        assert self._ca is not None, "the control plane is not started"
        return self._ca

    @property
    def signing_key(self) -> KeyPair:
        """The service-account token signing key pair (the controller-manager signs with it)."""
        assert self._signing is not None, "the control plane is not started"
        return self._signing

    def stop_child(self, name: str) -> None:
        """Stop one child by PID: SIGTERM, then SIGKILL after 10 s."""
        for child in self._children:
            if child.name == name:
                child.stop()

    def write_kubeconfig(self, name: str, client: KeyPair) -> Path:
        """A kubeconfig for ``client`` (e.g. a component's certificate)."""
        return self._write_kubeconfig(name, client=client)

    @property
    def audit_log(self) -> Path:
        """Every request the API server served, as JSON lines (who, verb, resource)."""
        assert self.workdir is not None
        return self.workdir / "audit.log"

    @staticmethod
    def _write_audit_policy(workdir: Path) -> Path:
        path = workdir / "audit-policy.yaml"
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [{"level": "Metadata"}],
        }
        path.write_text(yaml.safe_dump(policy))
        return path

    def spawn(self, name: str, argv: list[str]) -> None:
        """Run a child of this control plane (a node adds its own; all stopped by PID)."""
        assert self.workdir is not None
        log = self.workdir / f"{name}.log"
        in_main_thread = threading.current_thread() is threading.main_thread()
        with log.open("ab") as log_file:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop them in order
                preexec_fn=_die_with_parent if in_main_thread else None,
            )
        self._children.append(_Child(name, proc, log, argv))
        with (self.workdir / "pids").open("a") as pids:
            pids.write(f"{proc.pid}\n")

    # -- outages, for fault tests --------------------------------------------------------

    def kill_apiserver(self) -> None:
        """SIGKILL kube-apiserver (by PID), as a crash or a node loss would; etcd stays."""
        child = next(c for c in self._children if c.name == "kube-apiserver")
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait(timeout=10)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again with the same flags, port and certificates."""
        child = next(c for c in self._children if c.name == "kube-apiserver")
        assert child.proc.poll() is not None, "kube-apiserver is still running"
        self._children.remove(child)
        self.spawn(child.name, child.argv)
        assert self._admin is not None
        admin = self._admin
        self.wait_for(
            lambda: self._http_ok(f"{self.server}/readyz", self._ssl_context(admin)),
            "kube-apiserver (restarted)",
        )

    def wait_for(self, check: Callable[[], bool], what: str) -> None:
        """Wait until ``check()``, failing early with log tails if a child exits."""
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            for child in self._children:
                if child.proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{child.name} exited with code {child.proc.returncode} while waiting "
                        f"for {what}; last log lines:\n{child.tail()}"
                    )
            if check():
                return
            time.sleep(0.1)
        logs = "\n".join(f"--- {c.name}:\n{c.tail()}" for c in self._children)
        raise ControlPlaneError(f"{what} not ready after {self.startup_timeout:.0f}s\n{logs}")

    @staticmethod
    def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _ssl_context(self, client: KeyPair) -> ssl.SSLContext:
        assert self._ca is not None
        context = ssl.create_default_context(cafile=str(self._ca.cert_path))
        context.load_cert_chain(str(client.cert), str(client.key))
        return context

    def stop(self) -> None:
        """Stop the API server, then etcd (SIGTERM, then SIGKILL), and remove the work dir."""
        for child in reversed(self._children):
            child.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- inspection --------------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        return [c.proc.pid for c in self._children]

    def pid(self, name: str) -> int:
        """The PID of one child ("etcd", "kube-apiserver"), for benchmarks that profile it."""
        return next(c.proc.pid for c in self._children if c.name == name)

    def leftovers(self) -> list[str]:
        """What a stopped control plane left behind (should be empty)."""
        found = [
            f"process {c.name} (pid {c.proc.pid})" for c in self._children if _pid_alive(c.proc.pid)
        ]
        if self.workdir is not None and self.workdir.exists():
            found.append(f"directory {self.workdir}")
        return found

    # -- credentials -------------------------------------------------------------------

    def kubeconfig_for_user(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig that authenticates as ``user`` in ``groups`` by client certificate."""
        assert self._ca is not None
        stem = "user-" + "".join(ch if ch.isalnum() else "-" for ch in user)
        pair = self._ca.issue(stem, user, organizations=groups)
        return self._write_kubeconfig(stem, client=pair)

    def kubeconfig_for_token(self, name: str, token: str) -> Path:
        """A kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount's)."""
        return self._write_kubeconfig(f"token-{name}", token=token)

    def _write_kubeconfig(
        self, name: str, *, client: KeyPair | None = None, token: str | None = None
    ) -> Path:
        assert self.workdir is not None and self._ca is not None
        user: dict[str, str] = {}
        if client is not None:
            user = {"client-certificate": str(client.cert), "client-key": str(client.key)}
        if token is not None:
            user = {"token": token}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "cerebelum-dev",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self._ca.cert_path),
                    },
                }
            ],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": "cerebelum-dev", "user": name}}],
            "current-context": name,
        }
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path
