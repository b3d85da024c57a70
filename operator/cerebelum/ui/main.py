"""Start the UI: ``cerebelum ui`` (local: the kubeconfig's user, 127.0.0.1) or
``cerebelum ui --in-cluster`` (the chart: each request's bearer token)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import webbrowser

_SA = "/var/run/secrets/kubernetes.io/serviceaccount"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument(
        "--in-cluster",
        action="store_true",
        help="serve many users: each request's bearer token (or the login page's) is used",
    )
    parser.add_argument(
        "--ca-file",
        default=os.environ.get("CEREBELUM_UI_CA_FILE"),
        help="the API server's CA (in-cluster default: the kube-root-ca.crt ConfigMap mount)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        help="Host header accepted (repeatable; in-cluster default: any, local: 127.0.0.1/localhost)",
    )
    parser.add_argument(
        "--insecure-cookies",
        action="store_true",
        help="send cookies over plain HTTP too (in-cluster behind a TLS-less Service)",
    )


async def serve(args: argparse.Namespace, connect: object) -> int:
    # Imported here: `cerebelum --help` and every other command need none of it.
    from aiohttp import web

    from cerebelum.ui.identity import LocalIdentity, TokenIdentity
    from cerebelum.ui.server import UiServer, UiSettings

    identity: LocalIdentity | TokenIdentity
    if args.in_cluster:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        api_url = os.environ.get("CEREBELUM_UI_API_SERVER") or f"https://{host}:{port}"
        ca = args.ca_file or f"{_SA}/ca.crt"
        identity = TokenIdentity(api_url, ca)
        namespace = args.namespace or os.environ.get("CEREBELUM_UI_NAMESPACE") or "default"
        settings = UiSettings(
            namespace=namespace,
            allowed_hosts=args.allowed_host or [],
            secure_cookies=not args.insecure_cookies,
            mode="cluster",
        )
    else:
        api, namespace = await connect(args)  # type: ignore[operator]
        identity = LocalIdentity(api)
        settings = UiSettings(namespace=namespace, secure_cookies=False, mode="local")
    server = UiServer(identity, settings)
    # Open event streams would hold a graceful stop for a minute: give them two seconds.
    runner = web.AppRunner(server.app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, args.address, args.port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else args.port
    if not args.in_cluster:
        hosts = args.allowed_host or [f"127.0.0.1:{bound}", f"localhost:{bound}"]
        settings.allowed_hosts[:] = hosts
    url = f"http://{'127.0.0.1' if args.address in ('0.0.0.0', '::') else args.address}:{bound}/"
    print(f"cerebelum ui: {url}  (namespace {settings.namespace}; Ctrl-C to stop)", flush=True)
    if not args.no_browser and not args.in_cluster:
        with contextlib.suppress(Exception):
            webbrowser.open(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0
