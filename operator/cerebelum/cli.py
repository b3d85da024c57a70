"""The ``cerebelum`` command (also ``kubectl cerebelum``, as a kubectl plugin).

    cerebelum render MODULE:WORKFLOW [--inputs JSON] [--input K=V] [--template]   print the manifest
    cerebelum apply MODULE:WORKFLOW [...] [--watch]   render and create it
    cerebelum worker [--queue Q] MODULE...    run the Python steps of a queue
    cerebelum submit --from template/NAME [-p K=V]... [--inputs FILE] [--watch]
    cerebelum templates                       WorkflowTemplates with their inputs
    cerebelum cron trigger NAME [--watch]     start one run of a CronWorkflow now
    cerebelum ui [--port P] [--no-browser]    the web UI on 127.0.0.1, as your kubeconfig's user
    cerebelum list [-A]                       workflows with phase, current step and progress
    cerebelum status NAME                     every step, with deadlines and time remaining
    cerebelum watch NAME                      live progress until the end; exit 0 only on success
    cerebelum approve NAME STEP [--reason R] [--data JSON]
    cerebelum reject NAME STEP --reason R
    cerebelum signal NAME STEP [--data JSON] [--fail | --heartbeat]   call a step back
    cerebelum cancel NAME
    cerebelum history NAME                    the transition history (audit trail)
    cerebelum operator                        run the operator (the image's entrypoint)

It reads the kubeconfig the way kubectl does (--kubeconfig, KUBECONFIG, ~/.kube/config;
--context; -n/--namespace, else the context's namespace). ``cerebelum operator`` reads its
settings from the environment, which the Helm chart sets:

    CEREBELUM_WATCH_NAMESPACES   comma-separated namespaces; empty: all namespaces
    CEREBELUM_LIVENESS_PORT      serve /healthz on this port (unset: no endpoint)
    CEREBELUM_LOG_FORMAT         plain, full or json
    CEREBELUM_LOG_LEVEL          debug, info (default) or warning
    CEREBELUM_LEADER_ELECTION    true: several replicas, only the Lease holder works
    CEREBELUM_LEASE_NAMESPACE    where the Lease lives (the operator's namespace)
    CEREBELUM_POD_NAME           this replica's name in the Lease
    CEREBELUM_WAKE_HINT          true: keep the soonest deadlines in a ConfigMap, so that a
                                 restart wakes the due workflows before its list is through
    CEREBELUM_WAKE_HINT_NAMESPACE / _NAME / _SECONDS  that ConfigMap (the Lease's namespace,
                                 cerebelum-operator-wakeups) and how often it is rewritten (5)
    CEREBELUM_METRICS_PORT       serve Prometheus metrics (/metrics) on this port
    CEREBELUM_WEBHOOK_PORT       serve the approver webhooks (HTTPS) on this port
    CEREBELUM_WEBHOOK_CERT/_KEY  the webhook's serving certificate and key (PEM files)
    CEREBELUM_UNCLAIMED_WARNING_SECONDS  warn when no worker claims a python step (default 30)
    CEREBELUM_WORKERS            reconciliations at once to start with (default 8)
    CEREBELUM_MAX_WORKERS        the most the operator adapts that to (default 64)
    CEREBELUM_RETRY_BASE_SECONDS / _MAX_SECONDS  backoff of a failing reconciliation (0.5, 60)
    CEREBELUM_FAILURES_BEFORE_WARNING  failures in a row before a Warning Event (default 3)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cerebelum import __version__, console
from cerebelum.api import API_VERSION, KIND
from cerebelum.kube.command import operator_argv
from cerebelum.sdk.client import UserError, Workflows

EXIT_FAILED = 1
EXIT_USAGE = 2


def run_operator() -> int:
    namespaces = [
        ns.strip()
        for ns in os.environ.get("CEREBELUM_WATCH_NAMESPACES", "").split(",")
        if ns.strip()
    ]
    port = os.environ.get("CEREBELUM_LIVENESS_PORT")
    argv = operator_argv(
        namespaces,
        liveness_port=int(port) if port else None,
        log_format=os.environ.get("CEREBELUM_LOG_FORMAT") or None,
        log_level=os.environ.get("CEREBELUM_LOG_LEVEL") or None,
        webhooks=bool(os.environ.get("CEREBELUM_WEBHOOK_PORT")),
    )
    os.execv(argv[0], argv)  # replace this process: signals reach Kopf directly
    return 0  # pragma: no cover


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def _connect(args: argparse.Namespace) -> tuple[Any, str]:
    from cerebelum.kubeconfig import ConfigError, connect

    try:
        api, namespace = await connect(args.kubeconfig, args.context)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    return api, args.namespace or namespace


async def _run(args: argparse.Namespace) -> int:
    api, namespace = await _connect(args)
    async with api:
        workflows = Workflows(api, namespace)
        command = args.command
        if command == "list":
            items = await workflows.list(args.all_namespaces)
            if not items:
                print(
                    "No workflows found."
                    if args.all_namespaces
                    else f"No workflows found in {namespace}."
                )
                return 0
            print(console.workflow_table(items, _now(), namespaces=args.all_namespaces))
        elif command == "status":
            print(console.status_report(await workflows.get(args.name), _now()))
        elif command == "history":
            print(console.history_table(await workflows.get(args.name)))
        elif command in ("approve", "reject"):
            obj = await workflows.get(args.name)
            steps = {s["name"] for s in console.spec_steps(obj)}
            if args.step not in steps:
                raise UserError(
                    f"workflow {args.name} has no step {args.step!r} (steps: {', '.join(sorted(steps))})"
                )
            annotations = {f"cerebelum.io/{command}": args.step}
            if args.reason:
                annotations["cerebelum.io/reason"] = args.reason
            if getattr(args, "data", None):
                try:
                    json.loads(args.data)
                except ValueError as exc:
                    raise UserError(f"--data is not JSON: {exc}") from None
                annotations["cerebelum.io/approval-data"] = args.data
            await workflows.annotate(args.name, annotations)
            print(f"workflow {namespace}/{args.name}: {command} of step {args.step} submitted")
        elif command == "signal":
            obj = await workflows.get(args.name)
            waits = {s["name"] for s in console.spec_steps(obj) if s.get("callback") is not None}
            if args.step not in waits:
                raise UserError(
                    f"workflow {args.name} has no step {args.step!r} with a callback wait "
                    f"(steps with one: {', '.join(sorted(waits)) or 'none'})"
                )
            annotations = {"cerebelum.io/callback": args.step}
            if args.data:
                try:
                    json.loads(args.data)
                except ValueError as exc:
                    raise UserError(f"--data is not JSON: {exc}") from None
                annotations["cerebelum.io/callback-data"] = args.data
            outcome = "failed" if args.fail else "heartbeat" if args.heartbeat else None
            if outcome:
                annotations["cerebelum.io/callback-outcome"] = outcome
            await workflows.annotate(args.name, annotations)
            print(f"workflow {namespace}/{args.name}: callback of step {args.step} submitted")
        elif command == "cancel":
            await workflows.get(args.name)
            await workflows.annotate(args.name, {"cerebelum.io/cancel": "true"})
            print(f"workflow {namespace}/{args.name}: cancel requested")
        elif command == "watch":
            return await _watch(workflows, args.name, args.timeout)
        elif command == "templates":
            items = await workflows.templates()
            if not items:
                print(f"No workflow templates found in {namespace}.")
                return 0
            print(console.template_table(items, _now()))
        elif command == "submit":
            return await _submit(args, workflows)
        elif command == "cron":
            return await _cron_trigger(args, workflows)
        elif command == "apply":
            manifest = _render(args, namespace)
            if args.generate_name:
                meta = manifest["metadata"]
                meta["generateName"] = f"{meta.pop('name')[:57]}-"
            created = await workflows.create(manifest)
            print(f"workflow {namespace}/{created['metadata']['name']} created")
            if args.watch:
                return await _watch(workflows, created["metadata"]["name"], args.timeout)
    return 0


async def _submit(args: argparse.Namespace, workflows: Workflows) -> int:
    """Create a Workflow from a template; the inputs are checked here first, with the same
    rules (and messages) as the webhook and the operator."""
    from cerebelum.api.workflowtemplate import InvalidInputs, resolve

    kind, _, name = args.source.partition("/")
    if kind not in ("template", "workflowtemplate", "wftmpl") or not name:
        raise UserError(f"--from {args.source!r}: expected template/NAME")
    template = await workflows.template(name)
    inputs = _submit_inputs(args)
    spec: dict[str, Any] = {"templateRef": {"name": name}}
    if inputs:
        spec["inputs"] = inputs
    try:
        resolve(template, spec)
    except InvalidInputs as exc:
        raise UserError(f"inputs of WorkflowTemplate {name}: {exc}") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    meta: dict[str, Any] = {"name": args.name} if args.name else {"generateName": f"{name[:57]}-"}
    manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}
    created = await workflows.create(manifest)
    print(
        f"workflow {workflows.namespace}/{created['metadata']['name']} created from template {name}"
    )
    if args.watch:
        return await _watch(workflows, created["metadata"]["name"], args.timeout)
    return 0


async def _cron_trigger(args: argparse.Namespace, workflows: Workflows) -> int:
    """Start one run of a CronWorkflow now, as its schedule would (labelled and owned by
    it, so it counts for concurrencyPolicy and the history limits)."""
    from cerebelum.api.cronworkflow import run_manifest

    cron = await workflows.cron(args.name)
    now = _now()
    name = f"{args.name[:45]}-manual-{int(now.timestamp())}"
    created = await workflows.create(run_manifest(cron, name, now))
    print(
        f"workflow {workflows.namespace}/{created['metadata']['name']} started from cronworkflow {args.name}"
    )
    if args.watch:
        return await _watch(workflows, created["metadata"]["name"], args.timeout)
    return 0


def _submit_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """--inputs (a YAML/JSON file, or JSON text), then each -p KEY=VALUE over it."""
    import yaml

    inputs: dict[str, Any] = {}
    if args.inputs:
        path = Path(args.inputs)
        try:
            given = yaml.safe_load(path.read_text() if path.is_file() else args.inputs)
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"--inputs {args.inputs}: {exc}") from None
        if not isinstance(given, dict):
            raise UserError(f"--inputs {args.inputs}: expected a mapping of input names to values")
        inputs.update(given)
    inputs.update(_key_values(args.param, "-p"))
    return inputs


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if args.inputs:
        try:
            given = json.loads(args.inputs)
        except ValueError as exc:
            raise UserError(f"--inputs is not JSON: {exc}") from None
        if not isinstance(given, dict):
            raise UserError("--inputs must be a JSON object")
        inputs.update(given)
    inputs.update(_key_values(args.input, "--input"))
    return inputs


def _key_values(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` arguments; VALUE parsed as JSON when it is JSON, else kept as text."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _render(args: argparse.Namespace, namespace: str | None) -> dict[str, Any]:
    from cerebelum.sdk.loader import load_object
    from cerebelum.sdk.steps import DefinitionError
    from cerebelum.sdk.workflow import WorkflowDef

    try:
        definition = load_object(args.target)
    except DefinitionError as exc:
        raise UserError(str(exc)) from None
    except (ImportError, FileNotFoundError, ValueError) as exc:
        raise UserError(f"cannot load {args.target}: {exc}") from None
    if not isinstance(definition, WorkflowDef):
        raise UserError(f"{args.target} is not a @workflow")
    try:
        if getattr(args, "template", False):
            return definition.render_template(name=args.name, namespace=namespace)
        return definition.render(_inputs(args), name=args.name, namespace=namespace)
    except DefinitionError as exc:
        raise UserError(str(exc)) from None


def _print_manifest(manifest: dict[str, Any], output: str) -> None:
    if output == "json":
        print(json.dumps(manifest, indent=2))
        return
    import yaml

    print(yaml.safe_dump(manifest, sort_keys=False, width=100), end="")


async def _watch(workflows: Workflows, name: str, timeout: float) -> int:
    """Print a progress line at every change; the exit code says how it ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = ""

    def show(obj: dict[str, Any]) -> int | None:
        """Print the progress if it changed; the exit code once the workflow has ended."""
        nonlocal last
        line = console.progress_line(obj)
        if line != last:
            print(line, flush=True)
            last = line
        phase = (obj.get("status") or {}).get("phase")
        if phase not in console.FINISHED:
            return None
        message = (obj.get("status") or {}).get("message")
        if phase != "Succeeded" and message:
            print(message, file=sys.stderr)
        return 0 if phase == "Succeeded" else EXIT_FAILED

    obj = await workflows.get(name)
    while True:
        code = show(obj)
        if code is not None:
            return code
        remaining = deadline - loop.time()
        if remaining <= 0:
            phase = (obj.get("status") or {}).get("phase")
            print(f"still {phase} after {console.human(timeout)}", file=sys.stderr)
            return EXIT_FAILED
        # One watch from the version shown: every change arrives, nothing is polled.
        async for changed in workflows.watch(
            name, obj["metadata"]["resourceVersion"], min(remaining, 300)
        ):
            obj = changed
            code = show(obj)
            if code is not None:
                return code
        obj = await workflows.get(name)  # the watch timed out or was closed: look again


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cerebelum", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"cerebelum {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--kubeconfig", help="kubeconfig file (default: KUBECONFIG, then ~/.kube/config)"
    )
    common.add_argument("--context", help="kubeconfig context")
    common.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("operator", help="run the operator (settings from the environment)")
    from cerebelum.worker.main import add_arguments

    add_arguments(sub.add_parser("worker", help="run the Python steps of a queue"))
    rendering = argparse.ArgumentParser(add_help=False)
    rendering.add_argument("target", help="MODULE:WORKFLOW, e.g. deploy.py:deploy_workflow")
    rendering.add_argument("--inputs", help="workflow inputs as a JSON object")
    rendering.add_argument(
        "--input",
        action="append",
        help="one input as KEY=VALUE (VALUE parsed as JSON if it can be)",
    )
    rendering.add_argument("--name", help="the Workflow's name (default: the function's)")
    render = sub.add_parser("render", parents=[rendering], help="print the Workflow manifest")
    render.add_argument("-n", "--namespace", help="put this namespace in the manifest")
    render.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    render.add_argument(
        "--template",
        action="store_true",
        help="print a WorkflowTemplate (its default inputs become the inputs schema)",
    )
    apply = sub.add_parser(
        "apply", parents=[common, rendering], help="render a workflow and create it"
    )
    apply.add_argument(
        "--generate-name", action="store_true", help="add a random suffix to the name"
    )
    apply.add_argument("--watch", action="store_true", help="then follow it, like `watch`")
    apply.add_argument("--timeout", type=float, default=3600.0, help="for --watch (seconds)")
    listing = sub.add_parser("list", aliases=["get"], parents=[common], help="list workflows")
    listing.add_argument("-A", "--all-namespaces", action="store_true")
    for name, text in (
        ("status", "show every step, deadlines and time remaining"),
        ("watch", "follow progress until the end (exit 0 only on success)"),
        ("cancel", "cancel a workflow"),
        ("history", "show the transition history"),
    ):
        command = sub.add_parser(
            name, parents=[common], help=text, aliases=["logs"] if name == "history" else []
        )
        command.add_argument("name")
        if name == "watch":
            command.add_argument(
                "--timeout", type=float, default=3600.0, help="seconds (default 3600)"
            )
    for name, text in (("approve", "approve a step waiting for approval"), ("reject", "reject it")):
        command = sub.add_parser(name, parents=[common], help=text)
        command.add_argument("name")
        command.add_argument("step")
        command.add_argument("--reason", required=name == "reject")
        if name == "approve":
            command.add_argument(
                "--data", help="JSON payload (the output of an approval-only step)"
            )
    sub.add_parser("templates", parents=[common], help="list WorkflowTemplates and their inputs")
    from cerebelum.ui.main import add_arguments as ui_arguments

    ui_arguments(
        sub.add_parser("ui", parents=[common], help="the web UI, as you (your kubeconfig)")
    )
    cron = sub.add_parser("cron", help="CronWorkflows: cron trigger NAME")
    cron_sub = cron.add_subparsers(dest="cron_command", required=True)
    trigger = cron_sub.add_parser("trigger", parents=[common], help="start one run now")
    trigger.add_argument("name")
    trigger.add_argument("--watch", action="store_true", help="then follow it, like `watch`")
    trigger.add_argument("--timeout", type=float, default=3600.0, help="for --watch (seconds)")
    submit = sub.add_parser(
        "submit", parents=[common], help="create a Workflow from a template: --from template/NAME"
    )
    submit.add_argument("--from", dest="source", required=True, help="template/NAME")
    submit.add_argument(
        "-p",
        "--param",
        action="append",
        help="one input as KEY=VALUE (VALUE parsed as JSON if it can be)",
    )
    submit.add_argument("--inputs", help="inputs: a YAML or JSON file, or JSON text")
    submit.add_argument("--name", help="the Workflow's name (default: NAME- and a suffix)")
    submit.add_argument("--watch", action="store_true", help="then follow it, like `watch`")
    submit.add_argument("--timeout", type=float, default=3600.0, help="for --watch (seconds)")
    command = sub.add_parser(
        "signal", parents=[common], help="call back a step waiting for a callback"
    )
    command.add_argument("name")
    command.add_argument("step")
    command.add_argument("--data", help="JSON payload (the step's output)")
    kind = command.add_mutually_exclusive_group()
    kind.add_argument("--fail", action="store_true", help="report a failure (--data message)")
    kind.add_argument("--heartbeat", action="store_true", help="only say it is still running")
    return parser


_ALIASES = {"get": "list", "logs": "history"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.command = _ALIASES.get(args.command, args.command)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "operator":
        return run_operator()
    if args.command == "ui":
        from cerebelum.ui.main import serve

        try:
            return asyncio.run(serve(args, _connect))
        except KeyboardInterrupt:
            return 0
    try:
        if args.command == "render":
            _print_manifest(_render(args, args.namespace), args.output)
            return 0
        if args.command == "worker":
            return _run_worker(args)
        return asyncio.run(_run(args))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _run_worker(args: argparse.Namespace) -> int:
    import logging

    from cerebelum.kubeconfig import ConfigError
    from cerebelum.sdk.steps import DefinitionError
    from cerebelum.worker.main import serve

    logging.basicConfig(
        level=os.environ.get("CEREBELUM_LOG_LEVEL", "INFO").upper(),
        format="[%(asctime)s] %(name)-16s [%(levelname)-7s] %(message)s",
    )
    # Client libraries of step code (pydo's azure-core) log every request at INFO.
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        return asyncio.run(serve(args))
    except DefinitionError as exc:
        raise UserError(str(exc)) from None
    except (ImportError, FileNotFoundError) as exc:
        raise UserError(f"cannot load the step modules: {exc}") from None
    except ConfigError as exc:
        raise UserError(str(exc)) from None


if __name__ == "__main__":
    raise SystemExit(main())
