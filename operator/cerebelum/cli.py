"""The ``cerebelum`` command (also ``kubectl cerebelum``, as a kubectl plugin).

    cerebelum list [-A]                       workflows with phase, current step and progress
    cerebelum status NAME                     every step, with deadlines and time remaining
    cerebelum watch NAME                      live progress until the end; exit 0 only on success
    cerebelum approve NAME STEP [--reason R] [--data JSON]
    cerebelum reject NAME STEP --reason R
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
    CEREBELUM_METRICS_PORT       serve Prometheus metrics (/metrics) on this port
    CEREBELUM_WEBHOOK_PORT       serve the approver webhooks (HTTPS) on this port
    CEREBELUM_WEBHOOK_CERT/_KEY  the webhook's serving certificate and key (PEM files)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from cerebelum import __version__, console
from cerebelum.kube.command import operator_argv

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


class UserError(Exception):
    """Something the user can fix; printed without a traceback."""


class Workflows:
    """The few API calls the CLI makes, with the user's own credentials."""

    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes_asyncio import client

        self._custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    async def get(self, name: str) -> dict[str, Any]:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            result: dict[str, Any] = await self._custom.get_namespaced_custom_object(
                "cerebelum.io", "v1alpha1", self.namespace, "workflows", name
            )
        except ApiException as exc:
            raise UserError(_api_message(exc, f"workflow {self.namespace}/{name}")) from None
        return result

    async def list(self, all_namespaces: bool) -> list[dict[str, Any]]:
        if all_namespaces:
            result = await self._custom.list_cluster_custom_object(
                "cerebelum.io", "v1alpha1", "workflows"
            )
        else:
            result = await self._custom.list_namespaced_custom_object(
                "cerebelum.io", "v1alpha1", self.namespace, "workflows"
            )
        return list(result["items"])

    async def annotate(self, name: str, annotations: dict[str, str]) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            await self._custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                "cerebelum.io",
                "v1alpha1",
                self.namespace,
                "workflows",
                name,
                {"metadata": {"annotations": annotations}},
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            raise UserError(_api_message(exc, f"workflow {self.namespace}/{name}")) from None

    async def watch(self, name: str, timeout: float) -> Any:
        from kubernetes_asyncio import watch

        stream = watch.Watch()
        async for event in stream.stream(
            self._custom.list_namespaced_custom_object,
            "cerebelum.io",
            "v1alpha1",
            self.namespace,
            "workflows",
            field_selector=f"metadata.name={name}",
            timeout_seconds=int(timeout),
        ):
            yield event["object"]


def _api_message(exc: Any, what: str) -> str:
    try:
        message = json.loads(exc.body).get("message") or ""
    except (ValueError, TypeError, AttributeError):
        message = ""
    if exc.status == 404:
        return f"{what} not found"
    return message or f"{what}: HTTP {exc.status}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def _connect(args: argparse.Namespace) -> tuple[Any, str]:
    from kubernetes_asyncio import client, config

    try:
        await config.load_kube_config(config_file=args.kubeconfig, context=args.context)
        contexts, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
    except (config.ConfigException, OSError) as exc:
        raise UserError(f"cannot load the kubeconfig: {exc}") from None
    if args.context:
        active = next((c for c in contexts if c["name"] == args.context), active)
    context: dict[str, Any] = (active or {}).get("context") or {}
    namespace = args.namespace or context.get("namespace") or "default"
    return client.ApiClient(), namespace


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
            steps = {s["name"] for s in obj["spec"]["steps"]}
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
        elif command == "cancel":
            await workflows.get(args.name)
            await workflows.annotate(args.name, {"cerebelum.io/cancel": "true"})
            print(f"workflow {namespace}/{args.name}: cancel requested")
        elif command == "watch":
            return await _watch(workflows, args.name, args.timeout)
    return 0


async def _watch(workflows: Workflows, name: str, timeout: float) -> int:
    """Print a progress line at every change; the exit code says how it ended."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = ""
    obj = await workflows.get(name)
    while True:
        line = console.progress_line(obj)
        if line != last:
            print(line, flush=True)
            last = line
        phase = (obj.get("status") or {}).get("phase")
        if phase in console.FINISHED:
            message = (obj.get("status") or {}).get("message")
            if phase != "Succeeded" and message:
                print(message, file=sys.stderr)
            return 0 if phase == "Succeeded" else EXIT_FAILED
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            print(f"still {phase} after {console.human(timeout)}", file=sys.stderr)
            return EXIT_FAILED
        async for changed in workflows.watch(name, min(remaining, 300)):
            obj = changed
            break
        else:
            obj = await workflows.get(name)


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
    try:
        return asyncio.run(_run(args))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
