"""``python -m cerebelum.devcluster``: build the pinned binaries, or run a local control plane.

python -m cerebelum.devcluster ensure            # find or build etcd, kube-apiserver, kubectl, helm
python -m cerebelum.devcluster which kubectl     # path of one pinned binary
python -m cerebelum.devcluster run               # start; print KUBECONFIG; stop on Ctrl-C
python -m cerebelum.devcluster run -- CMD ARGS   # start, run CMD with KUBECONFIG set, stop
python -m cerebelum.devcluster run --node        # the same with a real node (root, Linux)
python -m cerebelum.devcluster images            # build the node's images (operator, worker)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from cerebelum.devcluster.binaries import (
    BinaryError,
    ensure,
    ensure_binaries,
    ensure_node_binaries,
)
from cerebelum.devcluster.controlplane import ControlPlaneError, LocalControlPlane
from cerebelum.devcluster.images import ImageError, ensure_images
from cerebelum.devcluster.node import LocalCluster, NodeUnavailable
from cerebelum.devcluster.pins import TOOLS


def _interrupt_on_signals() -> None:
    """Turn SIGTERM and SIGINT into KeyboardInterrupt so ``finally`` blocks stop the children."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    # Started as a background job (`cmd &` in a script, a CI runner), SIGINT arrives ignored
    # and Python keeps it so; Ctrl-C and SIGINT must still stop the children cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _run(args: argparse.Namespace) -> int:
    binaries = ensure_binaries()
    _interrupt_on_signals()
    cluster: LocalControlPlane | LocalCluster
    if args.node:
        images, archives = ensure_images()
        cluster = LocalCluster(binaries, ensure_node_binaries(), archives=tuple(archives))
        print(f"images: {images.operator}, {images.worker}", file=sys.stderr)
    else:
        cluster = LocalControlPlane(binaries)
    with cluster as running:
        cp = running.plane if isinstance(running, LocalCluster) else running
        kubeconfig = cp.kubeconfig
        if args.kubeconfig_out:
            out = Path(args.kubeconfig_out)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cp.kubeconfig, out)
            kubeconfig = out
        print(f"control plane up in {cp.startup_seconds:.1f}s at {cp.server}", file=sys.stderr)
        print(f"pids: {' '.join(map(str, cp.pids))}; workdir: {cp.workdir}", file=sys.stderr)
        print(f"export KUBECONFIG={kubeconfig}", flush=True)
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PATH": os.pathsep.join(
                [
                    str(binaries.kubectl.parent),
                    str(binaries.helm.parent),
                    os.environ.get("PATH", ""),
                ]
            ),
        }
        try:
            if args.command:
                command = args.command[1:] if args.command[0] == "--" else args.command
                return subprocess.call(command, env=env)
            print("press Ctrl-C to stop", file=sys.stderr, flush=True)
            signal.pause()
        except KeyboardInterrupt:
            print("stopping the control plane", file=sys.stderr)
            return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cerebelum.devcluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("ensure", help="find or build all pinned binaries and print their paths")
    which = sub.add_parser("which", help="print the path of one pinned binary")
    which.add_argument("name", choices=sorted(TOOLS))
    run = sub.add_parser("run", help="run a local control plane")
    run.add_argument("--kubeconfig-out", help="also copy the admin kubeconfig here")
    run.add_argument(
        "--node", action="store_true", help="also run a node (containerd, kubelet...): root only"
    )
    run.add_argument("command", nargs=argparse.REMAINDER, help="command to run, after --")
    sub.add_parser("images", help="build the node's images (cached by content)")
    args = parser.parse_args(argv)
    try:
        if args.action == "ensure":
            found = vars(ensure_binaries())
            if platform.system() == "Linux":  # the node's binaries are Linux-only
                found.update(vars(ensure_node_binaries()))
            for name, path in found.items():
                print(f"{name.replace('_', '-')}: {path}")
            return 0
        if args.action == "images":
            images, _ = ensure_images()
            print(f"operator: {images.operator}\nworker: {images.worker}")
            return 0
        if args.action == "which":
            print(ensure(args.name))
            return 0
        return _run(args)
    except (BinaryError, ControlPlaneError, ImageError, NodeUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
