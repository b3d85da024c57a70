"""Credentials and namespace the way kubectl finds them, for the CLI and the worker."""

from __future__ import annotations

import os
from typing import Any

_POD_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class ConfigError(Exception):
    """No usable kubeconfig (or in-cluster credentials)."""


async def connect(
    kubeconfig: str | None, context: str | None, *, in_cluster: bool = False
) -> tuple[Any, str]:
    """An ApiClient and the default namespace: --kubeconfig, KUBECONFIG, ~/.kube/config and
    --context, as kubectl does. With ``in_cluster`` and neither flag given, a pod's own
    service account and namespace come first."""
    from kubernetes_asyncio import client, config

    explicit = kubeconfig is not None or context is not None
    if in_cluster and not explicit and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        with open(_POD_NAMESPACE) as handle:
            return client.ApiClient(), handle.read().strip()
    try:
        await config.load_kube_config(config_file=kubeconfig, context=context)
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError) as exc:
        raise ConfigError(f"cannot load the kubeconfig: {exc}") from None
    if context:
        active = next((c for c in contexts if c["name"] == context), active)
    namespace = ((active or {}).get("context") or {}).get("namespace") or "default"
    return client.ApiClient(), namespace
