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


def test_the_operator_imports_neither_the_sdk_nor_cel_at_start_up() -> None:
    """Every import before the operator starts delays the workflows due during a restart
    (bench/restart.py): the SDK is imported only by those who use it, and the CEL library
    on first use (the operator warms it up on a thread after its first list)."""
    import subprocess

    probe = (
        "import sys, cerebelum.kube.main, cerebelum.kube.handlers\n"
        "print(sorted({m.split('.')[0] if m == 'cel' else m for m in sys.modules\n"
        "       if m == 'cel' or m.startswith('cerebelum.sdk')}))\n"
        "from cerebelum import step, Context\n"
        "print('cerebelum.sdk' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "[]", out[0]
    assert out[1] == "True"  # and the SDK's names still come from the package
