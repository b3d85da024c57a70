"""A real, local Kubernetes control plane for tests and the demo.

etcd and kube-apiserver run as child processes on loopback, with TLS, client-certificate
authentication, RBAC and service-account token signing, so what passes here passes against a
real cluster. The binaries are pinned and built from Go modules once, then cached.
"""

from cerebelum.devcluster.binaries import Binaries, ensure_binaries
from cerebelum.devcluster.controlplane import LocalControlPlane

__all__ = ["Binaries", "LocalControlPlane", "ensure_binaries"]
