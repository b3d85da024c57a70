"""The pinned versions of the control-plane tools.

They must agree with the Go modules under ``hack/tools/`` (a unit test checks it): the
modules say what is built, these constants name the cache and check binaries found on PATH.
"""

from __future__ import annotations

from dataclasses import dataclass

KUBERNETES_VERSION = "v1.36.3"
#: The etcd version that Kubernetes v1.36.3 names in its own go.mod.
ETCD_VERSION = "v3.6.8"
HELM_VERSION = "v3.21.4"
#: Argo Workflows' controller, built only for bench/vs_argo.py (never by make test).
ARGO_VERSION = "v3.6.5"


@dataclass(frozen=True)
class Tool:
    """One binary the control plane or the tests need, and how to build it."""

    name: str
    version: str
    #: Folder under ``hack/tools/`` holding the pinning go.mod.
    module_dir: str
    #: Go package of the binary's main.
    package: str
    #: Environment variable that points at an explicit binary.
    env_var: str
    #: Arguments that make the binary print its version (checked for PATH binaries).
    version_args: tuple[str, ...]
    #: Linker flags that stamp the version the way the upstream release build does.
    ldflags: tuple[str, ...] = ()


def _kube_ldflags(version: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return tuple(flags)


def _helm_ldflags(version: str) -> tuple[str, ...]:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return (
        f"-X helm.sh/helm/v3/internal/version.version={version}",
        f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor={major}",
        f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={minor}",
        f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor={major}",
        f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={minor}",
    )


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            name="etcd",
            version=ETCD_VERSION,
            module_dir="etcd",
            package="go.etcd.io/etcd/server/v3",
            env_var="CEREBELUM_ETCD",
            version_args=("--version",),
        ),
        Tool(
            name="kube-apiserver",
            version=KUBERNETES_VERSION,
            module_dir="kubernetes",
            package="k8s.io/kubernetes/cmd/kube-apiserver",
            env_var="CEREBELUM_KUBE_APISERVER",
            version_args=("--version",),
            ldflags=_kube_ldflags(KUBERNETES_VERSION),
        ),
        Tool(
            name="kubectl",
            version=KUBERNETES_VERSION,
            module_dir="kubernetes",
            package="k8s.io/kubernetes/cmd/kubectl",
            env_var="CEREBELUM_KUBECTL",
            version_args=("version", "--client"),
            ldflags=_kube_ldflags(KUBERNETES_VERSION),
        ),
        Tool(
            name="kubelet",
            version=KUBERNETES_VERSION,
            module_dir="kubernetes",
            package="k8s.io/kubernetes/cmd/kubelet",
            env_var="CEREBELUM_KUBELET",
            version_args=("--version",),
            ldflags=_kube_ldflags(KUBERNETES_VERSION),
        ),
        Tool(
            name="kube-controller-manager",
            version=KUBERNETES_VERSION,
            module_dir="kubernetes",
            package="k8s.io/kubernetes/cmd/kube-controller-manager",
            env_var="CEREBELUM_KUBE_CONTROLLER_MANAGER",
            version_args=("--version",),
            ldflags=_kube_ldflags(KUBERNETES_VERSION),
        ),
        Tool(
            name="kube-scheduler",
            version=KUBERNETES_VERSION,
            module_dir="kubernetes",
            package="k8s.io/kubernetes/cmd/kube-scheduler",
            env_var="CEREBELUM_KUBE_SCHEDULER",
            version_args=("--version",),
            ldflags=_kube_ldflags(KUBERNETES_VERSION),
        ),
        Tool(
            name="kube-proxy",
            version=KUBERNETES_VERSION,
            module_dir="kubernetes",
            package="k8s.io/kubernetes/cmd/kube-proxy",
            env_var="CEREBELUM_KUBE_PROXY",
            version_args=("--version",),
            ldflags=_kube_ldflags(KUBERNETES_VERSION),
        ),
        Tool(
            name="helm",
            version=HELM_VERSION,
            module_dir="helm",
            package="helm.sh/helm/v3/cmd/helm",
            env_var="CEREBELUM_HELM",
            version_args=("version", "--short"),
            ldflags=_helm_ldflags(HELM_VERSION),
        ),
        Tool(
            name="workflow-controller",
            version=ARGO_VERSION,
            module_dir="argo",
            package="github.com/argoproj/argo-workflows/v3/cmd/workflow-controller",
            env_var="CEREBELUM_ARGO_CONTROLLER",
            version_args=("version",),
            ldflags=(f"-X github.com/argoproj/argo-workflows/v3.version={ARGO_VERSION}",),
        ),
    )
}
