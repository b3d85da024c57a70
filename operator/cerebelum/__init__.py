"""Cerebelum Operator: durable workflows on Kubernetes.

``from cerebelum import step, workflow, Context, sleep, poll, approval`` is the Python SDK
(see ``cerebelum.sdk``). The package is laid out as a functional core (``api``, ``engine``)
inside an imperative shell (``kube``, ``actions``, ``worker``); see the README's design notes.
"""

__version__ = "0.1.0"

from cerebelum.sdk import (
    Context,
    DefinitionError,
    approval,
    approval_step,
    back_to,
    cel,
    digitalocean_step,
    http_step,
    job_step,
    output_step,
    poll,
    retry,
    skip_to,
    sleep,
    sleep_step,
    step,
    tcp_step,
    workflow,
)

__all__ = [
    "Context",
    "DefinitionError",
    "__version__",
    "approval",
    "approval_step",
    "back_to",
    "cel",
    "digitalocean_step",
    "http_step",
    "job_step",
    "output_step",
    "poll",
    "retry",
    "skip_to",
    "sleep",
    "sleep_step",
    "step",
    "tcp_step",
    "workflow",
]
