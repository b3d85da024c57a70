"""Where kube-apiserver spends its CPU: a Go CPU profile taken while a benchmark runs, read
with ``go tool pprof`` and folded into the parts of a write that matter to us.

A benchmark starts its control plane with ``PROFILING_ARGS`` (the dev cluster turns Go's
profiler off), calls ``start`` just before the load and ``finish`` after it, and prints
``breakdown``: for each part, the share of the API server's sampled CPU spent under it
(cumulative, so parts overlap: the CEL rules are inside the validation, which is inside the
request). Needs Go (``go tool pprof``); without it, the breakdown says so.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from cerebelum.devcluster import LocalControlPlane, ensure_binaries

#: Turns the API server's profiler back on (the later flag wins).
PROFILING_ARGS = ("--profiling=true",)

#: (label, pattern of a Go function name): the parts of the API server's work we look at.
PARTS: tuple[tuple[str, str], ...] = (
    ("status writes (PUT .../status)", r"serveStatus\.UpdateResource\.func2\.4$"),
    ("object writes (PUT)", r"serveResource\.UpdateResource\.func2\.4$"),
    ("creates of our kinds (POST)", r"serveResource\.CreateResource\.func1\.\d$"),
    ("every create (POST), Events included", r"handlers\.createHandler\.func1$"),
    ("lists (LIST)", r"handlers\.ListResource\.func1$"),
    ("deletecollection", r"handlers\.DeleteCollection\.func1$"),
    ("  validation of a status write", r"customresource\.statusStrategy\.ValidateUpdate$"),
    ("    OpenAPI schema of status", r"customResourceValidator\.ValidateStatusUpdate$"),
    ("    CEL rules (x-kubernetes-validations)", r"schema/cel\.\(\*Validator\)\.Validate$"),
    ("  validation of a create", r"customresource\.customResourceStrategy\.Validate$"),
    ("  managedFields (field manager)", r"managedfields/internal\.\(\*FieldManager\)\.Update$"),
    ("schema-coercing decode (pruning)", r"apiserver\.schemaCoercingDecoder\.Decode$"),
    ("JSON decode, all", r"^sigs\.k8s\.io/json\.UnmarshalCaseSensitivePreserveInts"),
    ("JSON encode, all", r"unstructured\.unstructuredJSONScheme\.doEncode$"),
    ("watch: decode etcd events", r"etcd3\.\(\*watchChan\)\.prepareObjs$"),
    ("watch: fan-out to watchers", r"cacher\.\(\*cacheWatcher\)\.process$"),
    ("garbage collector", r"runtime\.gcBgMarkWorker$"),
)


def pprof_available() -> bool:
    return shutil.which("go") is not None


async def start(plane: LocalControlPlane, seconds: int) -> asyncio.Task[Path | None]:
    """Begin a ``seconds``-long CPU profile of the API server; the task returns its file."""

    def fetch() -> Path | None:
        out = Path(tempfile.mkdtemp(prefix="cerebelum-pprof-")) / "apiserver.pprof"
        with out.open("wb") as sink:
            done = subprocess.run(
                [
                    str(ensure_binaries().kubectl),
                    "--kubeconfig",
                    str(plane.kubeconfig),
                    "get",
                    "--raw",
                    f"/debug/pprof/profile?seconds={seconds}",
                    f"--request-timeout={seconds + 60}s",
                ],
                stdout=sink,
                stderr=subprocess.PIPE,
                check=False,
            )
        return out if done.returncode == 0 and out.stat().st_size else None

    return asyncio.create_task(asyncio.to_thread(fetch))


_ROW = re.compile(
    r"^\s*(?P<flat>[\d.]+\w*)\s+(?P<flatp>[\d.]+)%\s+[\d.]+%\s+(?P<cum>[\d.]+\w*)\s+"
    r"(?P<cump>[\d.]+)%\s+(?P<name>.+?)\s*$"
)


def cumulative_shares(profile: Path) -> dict[str, float]:
    """Function name -> share (0..1) of the sampled CPU spent in it or below it."""
    binary = ensure_binaries().kube_apiserver
    done = subprocess.run(
        ["go", "tool", "pprof", "-top", "-cum", "-nodecount=100000", str(binary), str(profile)],
        capture_output=True,
        text=True,
        check=False,
    )
    shares: dict[str, float] = {}
    for line in done.stdout.splitlines():
        row = _ROW.match(line)
        if row:
            shares[row.group("name")] = float(row.group("cump")) / 100
    return shares


def breakdown(profile: Path | None) -> list[tuple[str, float]]:
    """(part, share of the API server's CPU) for each of ``PARTS`` seen in the profile."""
    if profile is None or not pprof_available():
        return []
    shares = cumulative_shares(profile)
    out = []
    for label, pattern in PARTS:
        regex = re.compile(pattern)
        share = max((v for name, v in shares.items() if regex.search(name)), default=0.0)
        if share:
            out.append((label, share))
    return out


def render(parts: list[tuple[str, float]], cpu_ms_per_op: float) -> str:
    """The breakdown as lines of "share, and CPU-ms per operation" under one heading."""
    if not parts:
        return "    (no profile: Go's pprof is needed)"
    return "\n".join(
        f"    {label:44} {share * 100:5.1f} %  {share * cpu_ms_per_op:5.2f} ms"
        for label, share in parts
    )
