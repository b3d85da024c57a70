"""Find or build the pinned control-plane binaries.

Order of preference, per tool: an explicit environment variable (trusted as given); a binary
on PATH whose version matches the pin; the versioned cache; otherwise a ``go build`` from the
pinned module under ``hack/tools/``, which takes minutes the first time and is then cached.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cerebelum.devcluster.pins import TOOLS, Tool


class BinaryError(RuntimeError):
    """A binary could not be found or built; the message says what to do."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the four binaries, all at their pinned versions."""

    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    helm: Path


def cache_dir() -> Path:
    """Root of the binary cache: ``$CEREBELUM_CACHE_DIR`` or ``~/.cache/cerebelum``."""
    explicit = os.environ.get("CEREBELUM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "cerebelum"


def tools_dir() -> Path:
    """The folder of pinning Go modules (``hack/tools`` in a source checkout)."""
    explicit = os.environ.get("CEREBELUM_TOOLS_DIR")
    if explicit:
        return Path(explicit)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "hack" / "tools"
        if candidate.is_dir():
            return candidate
    raise BinaryError(
        "cannot find hack/tools/ (the pinned Go modules): run from a source checkout "
        "or set CEREBELUM_TOOLS_DIR"
    )


def cached_path(tool: Tool) -> Path:
    return cache_dir() / "bin" / f"{tool.name}-{tool.version}" / tool.name


def _reports_version(binary: Path, tool: Tool) -> bool:
    try:
        result = subprocess.run(
            [str(binary), *tool.version_args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return tool.version.lstrip("v") in (result.stdout + result.stderr)


def find_existing(tool: Tool) -> Path | None:
    """The binary for ``tool`` without building: env var, PATH (pinned version only), cache."""
    explicit = os.environ.get(tool.env_var)
    if explicit:
        path = Path(explicit)
        if not os.access(path, os.X_OK):
            raise BinaryError(f"{tool.env_var}={explicit} is not an executable file")
        return path
    on_path = shutil.which(tool.name)
    if on_path and _reports_version(Path(on_path), tool):
        return Path(on_path)
    cached = cached_path(tool)
    if os.access(cached, os.X_OK):
        return cached
    return None


@contextmanager
def _build_lock() -> Iterator[None]:
    """Serialise builds between processes (two test runs must not build at once)."""
    lock_path = cache_dir() / "build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _report_progress(
    proc: subprocess.Popen[str], tool: Tool, out: TextIO, every: float = 15.0
) -> list[str]:
    """Echo a progress line every ``every`` seconds while ``go build -v`` runs."""
    lines: list[str] = []
    started = time.monotonic()
    last = started

    def reader() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    while proc.poll() is None:
        time.sleep(0.5)
        now = time.monotonic()
        if now - last >= every:
            last = now
            print(
                f"  building {tool.name} {tool.version}: {len(lines)} packages compiled, "
                f"{now - started:.0f}s elapsed",
                file=out,
                flush=True,
            )
    thread.join()
    return lines


def build(tool: Tool, out: TextIO = sys.stderr) -> Path:
    """Build ``tool`` from its pinned Go module into the cache and return its path."""
    go = shutil.which("go")
    if go is None:
        raise BinaryError(
            f"{tool.name} {tool.version} is not cached and `go` is not installed to build it; "
            f"install Go or point {tool.env_var} at a binary"
        )
    module = tools_dir() / tool.module_dir
    target = cached_path(tool)
    with _build_lock():
        if os.access(target, os.X_OK):  # another process built it while we waited
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{tool.name}.partial")
        print(
            f"building {tool.name} {tool.version} from Go modules (first run only; "
            f"this takes several minutes)...",
            file=out,
            flush=True,
        )
        started = time.monotonic()
        cmd = [go, "build", "-v", "-trimpath", "-ldflags", " ".join(tool.ldflags)]
        cmd += ["-o", str(partial), tool.package]
        proc = subprocess.Popen(cmd, cwd=module, stderr=subprocess.PIPE, text=True)
        lines = _report_progress(proc, tool, out)
        if proc.returncode != 0:
            tail = "\n".join(lines[-30:])
            raise BinaryError(
                f"building {tool.name} failed (go build exit {proc.returncode}):\n{tail}"
            )
        partial.replace(target)
        print(
            f"built {tool.name} {tool.version} in {time.monotonic() - started:.0f}s -> {target}",
            file=out,
            flush=True,
        )
        return target


def ensure(name: str, out: TextIO = sys.stderr) -> Path:
    """The pinned binary called ``name``, building it if nothing else provides it."""
    tool = TOOLS[name]
    return find_existing(tool) or build(tool, out)


def ensure_binaries(out: TextIO = sys.stderr) -> Binaries:
    return Binaries(
        etcd=ensure("etcd", out),
        kube_apiserver=ensure("kube-apiserver", out),
        kubectl=ensure("kubectl", out),
        helm=ensure("helm", out),
    )


@dataclass(frozen=True)
class NodeBinaries:
    """The binaries of a node and the controllers a node needs, at the pinned version."""

    kubelet: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kube_proxy: Path


def ensure_node_binaries(out: TextIO = sys.stderr) -> NodeBinaries:
    return NodeBinaries(
        kubelet=ensure("kubelet", out),
        kube_controller_manager=ensure("kube-controller-manager", out),
        kube_scheduler=ensure("kube-scheduler", out),
        kube_proxy=ensure("kube-proxy", out),
    )
