"""Container images for the local node, built without a registry or a Docker engine.

The operator image is built from the repository's ``Dockerfile`` as it is, with buildah
(daemonless, from Debian's packages). Its base (``python:3.11-slim``) cannot be pulled here,
so a stand-in is made from Debian's packages with debootstrap and tagged with that name;
the pod sandbox's pause image is built from ``hack/tools/pause``. Every image is cached as an
archive keyed by the content it was built from, and imported into the node's containerd.

``python -m cerebelum.devcluster images`` builds them all (the first time: a few minutes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cerebelum.devcluster.binaries import _build_lock, cache_dir, tools_dir

#: Debian suite and packages of the stand-in for python:3.11-slim (bookworm ships 3.11).
BASE_SUITE = "bookworm"
BASE_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates", "passwd")
#: Names the images are tagged with (the chart's image and the worker image of the tests).
BASE_IMAGE = "docker.io/library/python:3.11-slim"
PAUSE_IMAGE = "localhost/cerebelum/pause:1"
#: A tiny image for Job steps: Debian's static busybox (sh, wget, sleep...) and nothing else.
UTIL_IMAGE = "localhost/cerebelum/util:1"
UTIL_PACKAGE = "busybox-static"
OPERATOR_REPOSITORY = "ghcr.io/cerebelum-io/cerebelum-operator"
WORKER_REPOSITORY = "localhost/cerebelum/example-steps"
#: Bumped when how an image is made changes, so cached archives are rebuilt.
_RECIPE = "1"


class ImageError(RuntimeError):
    """An image could not be built; the message carries the tool's output."""


@dataclass(frozen=True)
class Images:
    """References of the images a node e2e run uses, all imported into the node."""

    operator: str
    worker: str
    base: str = BASE_IMAGE
    pause: str = PAUSE_IMAGE
    util: str = UTIL_IMAGE


def repo_root() -> Path:
    return tools_dir().parents[1]


def archive_dir() -> Path:
    path = cache_dir() / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


#: buildah's settings, instead of the host's: builds use the host network only, so the
#: network backend is CNI (whose plugins the node installs anyway), never one that a
#: package's recommends may or may not have brought (netavark).
_CONTAINERS_CONF = """[network]
network_backend = "cni"
cni_plugin_dirs = ["/usr/lib/cni"]
"""


def _buildah(*args: str, cwd: Path | None = None, timeout: float = 1800) -> str:
    storage = cache_dir() / "buildah"
    conf = storage / "containers.conf"
    if not conf.exists() or conf.read_text() != _CONTAINERS_CONF:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(_CONTAINERS_CONF)
    argv = [
        shutil.which("buildah") or "buildah",
        "--root",
        str(storage / "storage"),
        "--runroot",
        str(storage / "run"),
        "--storage-driver",
        "overlay",
        *args,
    ]
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)
    if result.returncode != 0:
        raise ImageError(
            f"buildah {args[0]} failed (exit {result.returncode}):\n"
            + "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        )
    return result.stdout.strip()


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256(_RECIPE.encode())
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:16]


def _tree_bytes(root: Path, *relative: str) -> Iterable[bytes]:
    """Paths and contents of the files under ``relative`` (no caches), in a stable order."""
    for rel in relative:
        base = root / rel
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            yield str(path.relative_to(root)).encode()
            yield path.read_bytes()


def _save(reference: str, archive: Path) -> None:
    partial = archive.with_name(f".{archive.name}.partial")
    partial.unlink(missing_ok=True)
    _buildah("push", reference, f"docker-archive:{partial}:{reference}")
    partial.replace(archive)
    kind = archive.name.split("-", 1)[0]
    for older in archive.parent.glob(f"{kind}-*.tar"):
        if older != archive:  # an earlier build of the same image: never used again
            older.unlink(missing_ok=True)


def _cached(
    archive: Path, reference: str, what: str, build: Callable[[], None], out: TextIO
) -> Path:
    """``archive`` if an earlier run saved it; else ``build()`` tags ``reference``, saved there.

    Every image goes through here, so each is built at most once per content key and a
    slow first build always says what it is doing.
    """
    if archive.exists():
        return archive
    print(f"building {what} (first run only; this takes a few minutes)...", file=out, flush=True)
    started = time.monotonic()
    build()
    _save(reference, archive)
    print(f"built {what} in {time.monotonic() - started:.0f}s", file=out, flush=True)
    return archive


def _commit_from_scratch(reference: str, source: Path, target: str, *config: str) -> None:
    """An image of ``source`` copied to ``target`` in an empty root, with ``config`` flags."""
    container = _buildah("from", "scratch")
    try:
        _buildah("copy", container, str(source), target)
        _buildah("config", *config, container)
        _buildah("commit", "--rm", container, reference)
    except ImageError:
        _buildah("rm", container)
        raise


def ensure_pause(out: TextIO = sys.stderr) -> Path:
    source = tools_dir() / "pause"

    def build() -> None:
        go = shutil.which("go")
        if go is None:
            raise ImageError("building the pause image needs Go")
        with tempfile.TemporaryDirectory() as tmp:
            binary = Path(tmp) / "pause"
            subprocess.run(
                [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), "."],
                cwd=source,
                env={**os.environ, "CGO_ENABLED": "0"},
                check=True,
                capture_output=True,
            )
            _commit_from_scratch(
                PAUSE_IMAGE, binary, "/pause", "--entrypoint", '["/pause"]', "--user", "65535:65535"
            )

    archive = archive_dir() / f"pause-{_digest(_tree_bytes(source, '.'))}.tar"
    return _cached(archive, PAUSE_IMAGE, "the pause image", build, out)


def ensure_util(out: TextIO = sys.stderr) -> Path:
    """A tiny utility image for Job steps, from Debian's busybox-static package."""
    version = subprocess.run(
        ["apt-cache", "policy", UTIL_PACKAGE], capture_output=True, text=True, check=False
    ).stdout
    candidate = next(
        (line.split()[1] for line in version.splitlines() if "Candidate:" in line), "unknown"
    )

    def build() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            download = ["apt-get", "download", UTIL_PACKAGE]
            fetched = subprocess.run(download, cwd=work, capture_output=True, text=True)
            if fetched.returncode != 0:  # package lists missing or stale: refresh them once
                subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
                fetched = subprocess.run(download, cwd=work, capture_output=True, text=True)
            debs = list(work.glob("*.deb"))
            if fetched.returncode != 0 or not debs:
                raise ImageError(
                    f"apt-get download {UTIL_PACKAGE} failed: {fetched.stderr[-1000:]}"
                )
            rootfs = work / "rootfs"
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(rootfs)], check=True)
            for applet in ("sh", "echo", "cat", "sleep", "wget", "test", "false", "true"):
                (rootfs / "bin" / applet).symlink_to("busybox")
            _commit_from_scratch(
                UTIL_IMAGE, rootfs / "bin", "/bin", "--env", "PATH=/bin", "--cmd", "sh"
            )

    archive = archive_dir() / f"util-{_digest([UTIL_PACKAGE.encode(), candidate.encode()])}.tar"
    return _cached(archive, UTIL_IMAGE, "the utility image (busybox)", build, out)


def ensure_base(out: TextIO = sys.stderr) -> Path:
    """The stand-in for python:3.11-slim: Debian's Python with pip usable as in the original."""
    ca_bundle = Path("/etc/ssl/certs/ca-certificates.crt")

    def build() -> None:
        if shutil.which("debootstrap") is None:
            raise ImageError(
                "making the stand-in base image needs debootstrap: run hack/node-deps.sh"
            )
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            rootfs = Path(tmp) / "rootfs"
            _debootstrap(rootfs)
            # As in python:3.11-slim: `python` and `pip` on PATH, pip may install system-wide.
            for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
                marker.unlink()
            (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
            (rootfs / "usr/local/bin/pip").symlink_to("/usr/bin/pip3")
            if ca_bundle.exists():  # this machine reaches PyPI through its own CA
                shutil.copyfile(ca_bundle, rootfs / "etc/ssl/certs/ca-certificates.crt")
            shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
            shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
            _commit_rootfs(rootfs)

    key = _digest(
        [BASE_SUITE.encode(), BASE_MIRROR.encode(), " ".join(BASE_PACKAGES).encode()]
        + ([ca_bundle.read_bytes()] if ca_bundle.exists() else [])
    )
    what = f"the stand-in for {BASE_IMAGE} (debootstrap {BASE_SUITE})"
    return _cached(archive_dir() / f"base-{key}.tar", BASE_IMAGE, what, build, out)


def _debootstrap(rootfs: Path) -> None:
    result = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            BASE_SUITE,
            str(rootfs),
            BASE_MIRROR,
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise ImageError(f"debootstrap failed (exit {result.returncode}):\n{tail}")


def _commit_rootfs(rootfs: Path) -> None:
    """``rootfs`` as the image tagged BASE_IMAGE, configured as python:3.11-slim is."""
    container = _buildah("from", "scratch")
    try:
        mount = Path(_buildah("mount", container))
        subprocess.run(["cp", "-a", f"{rootfs}/.", str(mount)], check=True)
        _buildah("umount", container)
        _buildah(
            "config",
            "--env",
            "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env",
            "LANG=C.UTF-8",
            "--cmd",
            "python3",
            container,
        )
        _buildah("commit", "--rm", container, BASE_IMAGE)
    except ImageError:
        _buildah("rm", container)
        raise


def _operator_key() -> str:
    root = repo_root()
    return _digest(
        _tree_bytes(
            root,
            "Dockerfile",
            ".dockerignore",
            "pyproject.toml",
            "README.md",
            "hack/constraints.txt",
            "operator",
        )
    )


def ensure_operator(base: Path, out: TextIO = sys.stderr) -> tuple[str, Path]:
    """The operator image, built from the Dockerfile as it is on ``base``: reference, archive."""
    key = _operator_key()
    reference = f"{OPERATOR_REPOSITORY}:e2e-{key}"

    def build() -> None:
        _load(base)
        _buildah(
            "bud",
            "--pull=never",
            "--network=host",
            "--isolation=chroot",
            "--layers=false",
            "-f",
            "Dockerfile",
            "-t",
            reference,
            ".",
            cwd=repo_root(),
        )

    what = f"the operator image {reference} from the Dockerfile"
    return reference, _cached(
        archive_dir() / f"operator-e2e-{key}.tar", reference, what, build, out
    )


def ensure_worker(
    operator: str, operator_archive: Path, out: TextIO = sys.stderr
) -> tuple[str, Path]:
    """The ``operator`` image plus ``examples/python`` on PYTHONPATH: reference, archive.

    Keyed by the operator reference it was given, so both always come from the same tree
    even if the sources change while the images build.
    """
    key = _digest([operator.encode(), *_tree_bytes(repo_root(), "examples/python")])
    reference = f"{WORKER_REPOSITORY}:{key}"

    def build() -> None:
        _load(operator_archive)
        with tempfile.TemporaryDirectory() as tmp:
            context = Path(tmp)
            shutil.copytree(repo_root() / "examples/python", context / "steps")
            (context / "Containerfile").write_text(
                f"FROM {operator}\n"
                "COPY steps /opt/steps\n"
                "ENV PYTHONPATH=/opt/steps\n"
                'CMD ["worker"]\n'
            )
            _buildah("bud", "--pull=never", "--isolation=chroot", "-t", reference, ".", cwd=context)

    what = "the example steps' worker image"
    return reference, _cached(archive_dir() / f"worker-{key}.tar", reference, what, build, out)


def _load(archive: Path) -> None:
    """Make a cached archive's image known to buildah (its storage may have been wiped)."""
    _buildah("pull", "--quiet", f"docker-archive:{archive}")


def ensure_images(out: TextIO = sys.stderr) -> tuple[Images, list[Path]]:
    """Build (or find cached) every image a node run uses; their references and archives."""
    with _build_lock():
        pause, util, base = ensure_pause(out), ensure_util(out), ensure_base(out)
        operator, operator_archive = ensure_operator(base, out)
        worker, worker_archive = ensure_worker(operator, operator_archive, out)
    images = Images(operator=operator, worker=worker)
    return images, [pause, util, base, operator_archive, worker_archive]


def import_images(socket: Path, archives: Iterable[Path]) -> None:
    """Import image archives into the containerd at ``socket`` (its k8s.io namespace)."""
    for archive in archives:
        result = subprocess.run(
            ["ctr", "--address", str(socket), "-n", "k8s.io", "images", "import", str(archive)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise ImageError(f"importing {archive.name} failed: {result.stderr.strip()[-2000:]}")
