"""The operator's command line, as the image and the chart build it from settings."""

from __future__ import annotations

import sys

from cerebelum.kube.command import operator_argv


def test_defaults_watch_every_namespace_standalone() -> None:
    assert operator_argv() == [
        sys.executable,
        "-m",
        "kopf",
        "run",
        "-m",
        "cerebelum.kube.handlers",
        "--all-namespaces",
        "--standalone",
    ]


def test_namespaces_liveness_logging_and_webhooks() -> None:
    argv = operator_argv(
        ["a", "b"], liveness_port=8080, log_format="json", log_level="debug", webhooks=True
    )
    assert argv[argv.index("cerebelum.kube.handlers") + 1 :] == [
        "-m",
        "cerebelum.kube.webhooks",
        "--namespace=a",
        "--namespace=b",
        "--standalone",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--log-format=json",
        "--debug",
    ]
    assert "--quiet" in operator_argv(log_level="warning")
    assert not {"--quiet", "--debug"} & set(operator_argv(log_level="info"))
