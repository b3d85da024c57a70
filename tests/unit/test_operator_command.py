"""The operator's command line, as the image and the chart build it from settings, is one
the operator's entry point reads back the same way."""

from __future__ import annotations

import sys

import pytest

from cerebelum.kube.command import MAIN_MODULE, operator_argv
from cerebelum.kube.main import parse


def test_defaults_watch_every_namespace() -> None:
    argv = operator_argv()
    assert argv[:3] == [sys.executable, "-m", MAIN_MODULE]
    launch = parse(argv[3:])
    assert launch.namespaces == ()
    assert not (launch.webhooks or launch.debug or launch.quiet or launch.liveness)


def test_namespaces_liveness_logging_and_webhooks_survive_the_round_trip() -> None:
    argv = operator_argv(
        ["a", "b"], liveness_port=8080, log_format="json", log_level="debug", webhooks=True
    )
    launch = parse(argv[3:])
    assert launch.namespaces == ("a", "b")
    assert launch.liveness == "http://0.0.0.0:8080/healthz"
    assert launch.log_format == "json" and launch.debug and launch.webhooks
    assert parse(operator_argv(log_level="warning")[3:]).quiet
    info = parse(operator_argv(log_level="info")[3:])
    assert not (info.quiet or info.debug)


@pytest.mark.parametrize(
    "argv",
    [
        [],  # neither namespaces nor --all-namespaces
        ["--namespace=a", "--all-namespaces"],
        ["--namespace=team-*"],  # a pattern: Kopf would take it, our watch would not
        ["--all-namespaces", "--debug", "--quiet"],
    ],
)
def test_a_bad_command_line_is_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    assert "usage: python -m cerebelum.kube.main" in capsys.readouterr().err
