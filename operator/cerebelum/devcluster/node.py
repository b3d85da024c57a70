"""A real node beside the local control plane: containerd, kubelet, kube-proxy and controllers.

Opt-in (``LocalCluster`` / ``python -m cerebelum.devcluster run --node``): pods run in real
containers (containerd + runc from Debian's packages), Services work (kube-proxy, iptables),
Deployments, Jobs, ServiceAccounts and garbage collection are real (kube-controller-manager),
and ``kubectl logs``/``exec`` reach the kubelet. Needs root on Linux.

The node's address is not loopback (on a bridge with no ports), because pods reach the API server
through the ``kubernetes`` Service, which kube-proxy rewrites to that address; a loopback
address inside a pod is the pod itself. Pods get addresses from a bridge CNI network.

Everything is stopped by PID and removed on stop: pods are deleted through the API first so
the kubelet tears their sandboxes and networks down, then kube-proxy removes its rules, the
interfaces are deleted, mounts under the work dir are unmounted and the sysctls the kubelet
and kube-proxy set are put back. ``leftovers()`` says what, if anything, remains.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import yaml

from cerebelum.devcluster.binaries import Binaries, NodeBinaries, cache_dir
from cerebelum.devcluster.controlplane import (
    WORKDIR_PREFIX,
    LocalControlPlane,
    _free_port,
    _pid_alive,
    mounts_under,
    unmount_under,
)
from cerebelum.devcluster.images import PAUSE_IMAGE, ensure_pause, import_images

NODE_NAME = "cerebelum-node"
NODE_IP = "10.213.0.1"
POD_CIDR = "10.213.128.0/24"
#: Host packages the node needs (Debian names); ``hack/node-deps.sh`` installs them.
PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "conntrack")
CNI_BIN_DIR = Path("/usr/lib/cni")
#: Sysctls the kubelet or kube-proxy may change; put back on stop.
_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/netfilter/nf_conntrack_max",
)


class NodeUnavailable(RuntimeError):
    """This machine cannot run a node; the message says why in one line."""


def unavailable_reason() -> str | None:
    """Why a node cannot run here, or None when it can."""
    if platform.system() != "Linux":
        return f"a node needs Linux (this is {platform.system()})"
    if os.geteuid() != 0:
        return "a node needs root (containers, network interfaces, iptables)"
    missing = [
        name
        for name in ("containerd", "runc", "iptables", "ip", "ctr", "conntrack")
        if shutil.which(name) is None
    ]
    if not (CNI_BIN_DIR / "bridge").exists():
        missing.append(f"CNI plugins in {CNI_BIN_DIR}")
    if missing:
        return f"missing {', '.join(missing)}: run `sudo bash hack/node-deps.sh`"
    return None


def _run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def _read_sysctls() -> dict[str, str]:
    values = {}
    for key in _SYSCTLS:
        try:
            values[key] = (Path("/proc/sys") / key).read_text().strip()
        except OSError:
            continue
    return values


def _restore_sysctls(values: dict[str, str]) -> None:
    for key, value in values.items():
        path = Path("/proc/sys") / key
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError:
            continue


def remove_iptables_rules() -> None:
    """Remove every rule and chain of a local node: ``KUBE-*`` (kube-proxy, the kubelet) and
    the CNI bridge's masquerade rules for ``cerebelum-*`` networks, in IPv4 and IPv6."""
    for save, tool in (("iptables-save", "iptables"), ("ip6tables-save", "ip6tables")):
        if shutil.which(save) is None:
            continue
        dump = _run(save, check=False).stdout
        table = ""
        ours: dict[str, set[str]] = {}
        for line in dump.splitlines():
            if line.startswith("*"):
                table = line[1:]
                continue
            if line.startswith(":"):
                chain = line[1:].split()[0]
                if chain.startswith("KUBE-"):
                    ours.setdefault(table, set()).add(chain)
                continue
            if not line.startswith("-A "):
                continue
            args = shlex.split(line)
            target = args[args.index("-j") + 1] if "-j" in args else ""
            cni = any('name: "cerebelum-' in a for a in args)
            if cni and target.startswith("CNI-"):
                ours.setdefault(table, set()).add(target)
            if (cni or target.startswith("KUBE-")) and not args[1].startswith("KUBE-"):
                _run(tool, "-t", table, "-D", *args[1:], check=False)
        for table, chains in ours.items():
            for chain in chains:
                _run(tool, "-t", table, "-F", chain, check=False)
            for chain in chains:
                _run(tool, "-t", table, "-X", chain, check=False)


#: Paths outside the work dir that the kubelet and containerd write to whatever they are
#: told (hard-coded upstream), and the entries of ours in them.
_HOST_DIRS = (
    Path("/var/lib/kubelet/device-plugins"),
    Path("/var/lib/kubelet"),
    Path("/var/lib/cni/results"),
    Path("/var/lib/cni"),
    Path("/run/containerd/s"),
    Path("/run/containerd/runc/k8s.io"),
    Path("/run/containerd/runc"),
    Path("/run/containerd"),
)


def _host_files_of_ours() -> list[Path]:
    found = []
    for directory in _HOST_DIRS:
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            ours = entry.name == "kubelet.sock" or entry.name.startswith(
                ("cerebelum-", "cni-loopback-")
            )
            if ours or (directory.name == "s" and _dead_socket(entry)):
                found.append(entry)
    return found


def _dead_socket(path: Path) -> bool:
    """A shim's socket file no process listens on (its shim was killed)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return False


def remove_host_files() -> None:
    """Remove what a node wrote outside its work dir, then those dirs if that left them empty."""
    for path in _host_files_of_ours():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    for directory in _HOST_DIRS:  # deepest first
        with contextlib.suppress(OSError):
            directory.rmdir()  # only if empty


_CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The cgroup parent containerd's CRI gives containers when the kubelet names none.
_CGROUP_PARENT = "k8s.io"


def _container_cgroups(ids: Iterable[str] | None = None) -> list[Path]:
    """Container cgroups (all, or of ``ids``) in every hierarchy, then their parents."""
    found: list[Path] = []
    for hierarchy in _CGROUP_ROOT.iterdir() if _CGROUP_ROOT.is_dir() else []:
        parent = hierarchy / _CGROUP_PARENT
        if not parent.is_dir():
            continue
        children = [c for c in parent.iterdir() if c.is_dir()]
        found += [c for c in children if ids is None or c.name in ids]
    return found


def remove_container_cgroups(ids: Iterable[str] | None = None) -> None:
    """Remove empty container cgroups, and the ``k8s.io`` parents once empty (runc leaves them)."""
    for cgroup in _container_cgroups(ids):
        with contextlib.suppress(OSError):
            cgroup.rmdir()
    for hierarchy in _CGROUP_ROOT.iterdir() if _CGROUP_ROOT.is_dir() else []:
        with contextlib.suppress(OSError):
            (hierarchy / _CGROUP_PARENT).rmdir()


def _processes() -> Iterable[tuple[int, str]]:
    """Every process's PID and command line (arguments joined by spaces)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # it exited meanwhile
            continue
        yield int(entry.name), raw.replace(b"\0", b" ").decode(errors="replace")


def _is_shim_of(cmdline: str, workdir: Path) -> bool:
    """A containerd shim of the containerd run under ``workdir`` (its socket path is there)."""
    return "containerd-shim" in cmdline and str(workdir) in cmdline


def reap_stale_nodes(temp_root: Path) -> None:
    """Stop what a killed node run left running: containerd's shims and the containers.

    Only containers that run's containerd started are touched: their IDs are the task
    directories in its state dir, and each one's processes are those of its cgroup.
    """
    for workdir in temp_root.glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int(workdir.name[len(WORKDIR_PREFIX) :].split("-")[0])
        except ValueError:
            continue
        tasks = workdir / "containerd" / "state" / "io.containerd.runtime.v2.task" / "k8s.io"
        if _pid_alive(owner) or not tasks.is_dir():
            continue
        ids = {task.name for task in tasks.iterdir()}
        for pid, cmdline in _processes():
            with contextlib.suppress(OSError):
                groups = Path(f"/proc/{pid}/cgroup").read_text()
                in_ours = any(f"/{_CGROUP_PARENT}/{i}" in groups for i in ids)
                if in_ours or _is_shim_of(cmdline, workdir):
                    os.kill(pid, 9)
        time.sleep(0.5)
        unmount_under(workdir)
        remove_container_cgroups(ids)
        _remove_unused_cni_netns()


def _remove_unused_cni_netns() -> None:
    """Pod network namespaces no process is in any more (their pod's node was killed)."""
    netns_dir = Path("/run/netns")
    if not netns_dir.is_dir():
        return
    in_use = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                in_use.add((proc / "ns" / "net").stat().st_ino)
    for netns in netns_dir.glob("cni-*"):
        with contextlib.suppress(OSError):
            if netns.stat().st_ino not in in_use:
                _run("ip", "netns", "delete", netns.name, check=False)


@dataclass
class LocalCluster:
    """A control plane with one node; use as a context manager. Needs root on Linux."""

    binaries: Binaries
    node_binaries: NodeBinaries
    temp_root: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    startup_timeout: float = 120.0
    #: Image archives imported into the node's containerd (the pause image always is).
    archives: tuple[Path, ...] = ()

    plane: LocalControlPlane = field(init=False)
    #: The interface holding the node IP (a bridge with no ports: no dummy driver needed).
    node_link: str = field(default="", init=False)
    bridge: str = field(default="", init=False)
    network: str = field(default="", init=False)
    containerd_socket: Path = field(default=Path(), init=False)
    startup_seconds: float = field(default=0.0, init=False)
    _lock: IO[str] | None = field(default=None, init=False)
    _sysctls: dict[str, str] = field(default_factory=dict, init=False)
    _netns_before: set[str] = field(default_factory=set, init=False)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- start ---------------------------------------------------------------------------

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise NodeUnavailable(reason)
        started = time.monotonic()
        self._take_lock()
        reap_stale_nodes(self.temp_root)
        self._sysctls = _read_sysctls()
        self._netns_before = set(os.listdir("/run/netns")) if Path("/run/netns").is_dir() else set()
        self._remove_stale_interfaces()
        remove_iptables_rules()  # of a node run that was killed
        remove_host_files()
        suffix = str(os.getpid() % 100000)
        self.node_link, self.bridge = f"cblnode{suffix}", f"cblbr{suffix}"
        self.network = f"cerebelum-{suffix}"
        self.plane = LocalControlPlane(
            self.binaries,
            temp_root=self.temp_root,
            node_ip=NODE_IP,
            startup_timeout=self.startup_timeout,
        )
        try:
            # A bridge with no ports holds the address: the kernel may lack the dummy driver.
            _run("ip", "link", "add", self.node_link, "type", "bridge")
            _run("ip", "addr", "add", f"{NODE_IP}/32", "dev", self.node_link)
            _run("ip", "link", "set", self.node_link, "up")
            self.plane.start()
            assert self.plane.workdir is not None
            self._start_node(self.plane.workdir)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _take_lock(self) -> None:
        """One node per machine at a time: its addresses and interfaces are fixed."""
        path = cache_dir() / "node.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = path.open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("waiting for another local node on this machine to stop...", file=sys.stderr)
            fcntl.flock(self._lock, fcntl.LOCK_EX)

    @staticmethod
    def _remove_stale_interfaces() -> None:
        """Interfaces a killed node run left: one node runs at a time (the lock), so any is."""
        links = _run("ip", "-o", "link", "show", check=False).stdout
        for line in links.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            for prefix in ("cblnode", "cblbr"):
                if name.startswith(prefix) and name[len(prefix) :].isdigit():
                    _run("ip", "link", "delete", name, check=False)

    def _start_node(self, workdir: Path) -> None:
        plane = self.plane
        ca = plane.ca
        self.containerd_socket = self._start_containerd(workdir)

        kcm = ca.issue("kcm", "system:kube-controller-manager")
        plane.spawn(
            "kube-controller-manager",
            [
                str(self.node_binaries.kube_controller_manager),
                f"--kubeconfig={plane.write_kubeconfig('kcm', kcm)}",
                f"--authentication-kubeconfig={plane.write_kubeconfig('kcm-authn', kcm)}",
                f"--authorization-kubeconfig={plane.write_kubeconfig('kcm-authz', kcm)}",
                f"--service-account-private-key-file={plane.signing_key.key}",
                f"--root-ca-file={ca.cert_path}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={_free_port()}",
                f"--cert-dir={workdir / 'kcm-certs'}",
                "--controllers=*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle-controller",
                "--concurrent-gc-syncs=5",
                "--node-monitor-grace-period=40s",
            ],
        )
        scheduler = ca.issue("scheduler", "system:kube-scheduler")
        scheduler_kubeconfig = plane.write_kubeconfig("scheduler", scheduler)
        plane.spawn(
            "kube-scheduler",
            [
                str(self.node_binaries.kube_scheduler),
                f"--kubeconfig={scheduler_kubeconfig}",
                f"--authentication-kubeconfig={scheduler_kubeconfig}",
                f"--authorization-kubeconfig={scheduler_kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={_free_port()}",
                f"--cert-dir={workdir / 'scheduler-certs'}",
            ],
        )
        self._start_kubelet(workdir)
        self._start_kube_proxy(workdir)
        self.plane.wait_for(self._node_ready, f"node {NODE_NAME} Ready")
        self.plane.wait_for(self._default_service_account, "the default ServiceAccount")

    def _start_containerd(self, workdir: Path) -> Path:
        root = workdir / "containerd"
        sock = root / "containerd.sock"
        net_d = workdir / "cni" / "net.d"
        net_d.mkdir(parents=True)
        conflist = {
            "cniVersion": "0.4.0",
            "name": self.network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(workdir / "cni" / "ipam"),
                    },
                },
            ],
        }
        (net_d / "10-cerebelum.conflist").write_text(json.dumps(conflist, indent=2))
        config = f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{sock}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{root / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{net_d}"
"""
        root.mkdir()
        (root / "config.toml").write_text(config)
        self.plane.spawn(
            "containerd",
            [shutil.which("containerd") or "containerd", "--config", str(root / "config.toml")],
        )
        self.plane.wait_for(lambda: self._ctr_ok(sock), "containerd")
        archives = [ensure_pause(), *self.archives]
        import_images(sock, dict.fromkeys(archives))
        return sock

    @staticmethod
    def _ctr_ok(sock: Path) -> bool:
        if not sock.exists():
            return False
        return _run("ctr", "--address", str(sock), "version", check=False).returncode == 0

    def _start_kubelet(self, workdir: Path) -> None:
        ca = self.plane.ca
        client = ca.issue(
            "kubelet-client", f"system:node:{NODE_NAME}", organizations=("system:nodes",)
        )
        serving = ca.issue(
            "kubelet-serving",
            f"system:node:{NODE_NAME}",
            server_ips=(NODE_IP,),
            server_dns=(NODE_NAME,),
        )
        kubelet_dir = workdir / "kubelet"
        kubelet_dir.mkdir()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": _free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": _free_port(),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(ca.cert_path)},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(serving.cert),
            "tlsPrivateKeyFile": str(serving.key),
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "resolvConf": "/etc/resolv.conf",
            "podCIDR": POD_CIDR,
            "maxPods": 60,
            "serializeImagePulls": False,
            "registerNode": True,
            "syncFrequency": "10s",
            "fileCheckFrequency": "60s",
            "nodeStatusUpdateFrequency": "5s",
            "localStorageCapacityIsolation": False,
        }
        (kubelet_dir / "config.yaml").write_text(yaml.safe_dump(config))
        self.plane.spawn(
            "kubelet",
            [
                str(self.node_binaries.kubelet),
                f"--config={kubelet_dir / 'config.yaml'}",
                f"--kubeconfig={self.plane.write_kubeconfig('kubelet', client)}",
                f"--root-dir={kubelet_dir / 'root'}",
                f"--cert-dir={kubelet_dir / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self, workdir: Path) -> None:
        proxy = self.plane.ca.issue("kube-proxy", "system:kube-proxy")
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {
                "kubeconfig": str(self.plane.write_kubeconfig("kube-proxy", proxy))
            },
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": f"127.0.0.1:{_free_port()}",
            "metricsBindAddress": f"127.0.0.1:{_free_port()}",
            "nodePortAddresses": [f"{NODE_IP}/32"],
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        path = workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        self.plane.spawn("kube-proxy", [str(self.node_binaries.kube_proxy), f"--config={path}"])

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(
            str(self.binaries.kubectl),
            "--kubeconfig",
            str(self.plane.kubeconfig),
            *args,
            check=check,
        )

    def _node_ready(self) -> bool:
        got = self.kubectl(
            "get",
            "node",
            NODE_NAME,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        return got.stdout.strip() == "True"

    def _default_service_account(self) -> bool:
        return self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0

    # -- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Tear down in the order that leaves nothing behind; never raises."""
        plane = getattr(self, "plane", None)
        if plane is not None and plane.workdir is not None:
            workdir = plane.workdir
            for name in ("kube-controller-manager", "kube-scheduler"):
                plane.stop_child(name)  # nothing recreates pods from here on
            if plane.server:
                self._delete_all_pods()
            for name in ("kubelet", "kube-proxy"):
                plane.stop_child(name)
            if self.node_binaries.kube_proxy.exists():
                _run(str(self.node_binaries.kube_proxy), "--cleanup", check=False)
            remove_iptables_rules()
            if self.containerd_socket != Path():
                self._remove_containers()
                plane.stop_child("containerd")
                self._kill_shims(workdir)
            unmount_under(workdir)
            plane.stop()
        for link in (self.bridge, self.node_link):
            if link:
                _run("ip", "link", "delete", link, check=False)
        self._remove_new_netns()
        remove_host_files()
        remove_container_cgroups()
        _restore_sysctls(self._sysctls)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _delete_all_pods(self) -> None:
        """Pods deleted through the API so the kubelet stops their sandboxes (CNI DEL)."""
        self.kubectl(
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--grace-period=0",
            "--force",
            "--wait=false",
            check=False,
        )
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            if not self._sandboxes():
                return
            time.sleep(0.5)

    def _sandboxes(self) -> list[str]:
        got = _run(
            "ctr",
            "--address",
            str(self.containerd_socket),
            "-n",
            "k8s.io",
            "tasks",
            "ls",
            "-q",
            check=False,
        )
        return got.stdout.split()

    def _remove_containers(self) -> None:
        ctr = ("ctr", "--address", str(self.containerd_socket), "-n", "k8s.io")
        for task in self._sandboxes():
            _run(*ctr, "tasks", "kill", "-s", "SIGKILL", task, check=False)
        time.sleep(0.5)
        for task in self._sandboxes():
            _run(*ctr, "tasks", "delete", "-f", task, check=False)
        for container in _run(*ctr, "containers", "ls", "-q", check=False).stdout.split():
            _run(*ctr, "containers", "delete", container, check=False)

    def _kill_shims(self, workdir: Path) -> None:
        """containerd's shims outlive it by design: stop ours, found by our socket path."""
        for pid, cmdline in _processes():
            if _is_shim_of(cmdline, workdir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)

    def _new_pod_netns(self) -> list[str]:
        """Pod network namespaces (``cni-*``) that appeared since this node started."""
        netns_dir = Path("/run/netns")
        if not netns_dir.is_dir():
            return []
        names = {n for n in os.listdir(netns_dir) if n.startswith("cni-")}
        return sorted(names - self._netns_before)

    def _remove_new_netns(self) -> None:
        for name in self._new_pod_netns():
            _run("ip", "netns", "delete", name, check=False)

    def leftovers(self) -> list[str]:
        """What a stopped node left behind (should be empty)."""
        found = self.plane.leftovers() if hasattr(self, "plane") else []
        links = _run("ip", "-o", "link", "show", check=False).stdout
        for link in (self.bridge, self.node_link):
            if link and (f" {link}:" in links or f" {link}@" in links):
                found.append(f"interface {link}")
        for save in ("iptables-save", "ip6tables-save"):
            rules = _run(save, check=False).stdout if shutil.which(save) else ""
            for marker in (f'"{self.network}"', ":KUBE-"):
                if self.network and marker in rules:
                    found.append(f"{save}: rules or chains with {marker}")
        found += [f"network namespace {n}" for n in self._new_pod_netns()]
        if hasattr(self, "plane") and self.plane.workdir is not None:
            workdir = str(self.plane.workdir)
            found += [f"mount {m}" for m in mounts_under(self.plane.workdir)]
            # e.g. containerd's shims, which are not our children
            found += [f"process {pid}" for pid, cmdline in _processes() if workdir in cmdline]
        found += [f"file {p}" for p in _host_files_of_ours()]
        found += [f"cgroup {c}" for c in _container_cgroups()]
        return found
