"""OpenSSH's own ``sshd``, as a test server: a real SSH server, not a fake of one.

Each server has its own ``sshd_config``, host key, ``authorized_keys`` and PID file under a
temporary directory, listens on 127.0.0.1 (or the address given) on a free port, runs as
the test user (so it lets in only that user, with the keys the test authorizes), and is
stopped by its PID. The system's sshd, if there is one, is never touched. Debian's ``openssh-server`` provides the
binary; ``hack/node-deps.sh`` installs it (``make test`` runs it as root on Debian).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
#: sshd running as root needs its privilege separation directory (an empty one).
_PRIVSEP = Path("/run/sshd")


def sshd_missing() -> str | None:
    """Why no sshd can run here, or None."""
    if not Path(SSHD).exists():
        return "no sshd (Debian's openssh-server; `sudo bash hack/node-deps.sh` installs it)"
    if shutil.which("ssh-keygen") is None:
        return "no ssh-keygen (Debian's openssh-client)"
    return None


def require_sshd() -> None:
    """Skip the calling test where no sshd can run; in CI (``CEREBELUM_REQUIRE_NODE``), where
    ``make test`` installs it, fail it instead: a skip there would hide a broken set-up."""
    missing = sshd_missing()
    if missing is None:
        return
    if os.environ.get("CEREBELUM_REQUIRE_NODE"):
        pytest.fail(missing)
    pytest.skip(missing)


def keygen(path: Path, comment: str = "cerebelum-test") -> str:
    """A new ed25519 key pair at ``path`` (OpenSSH format, no passphrase); the public key."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class SshServer:
    """``with SshServer(tmp) as sshd: ...``: ``sshd.port``, ``sshd.user``, ``authorize()``."""

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        host_key: Path | None = None,
    ) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or _free_port(host)
        self.user = getpass.getuser()
        self.host_key = host_key or self.dir / "host_ed25519"
        self.authorized_keys = self.dir / "authorized_keys"
        self.log = self.dir / "sshd.log"
        #: The private key of ``new_client_key``, if one was made.
        self.client_key: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    # -- keys --------------------------------------------------------------------------

    def host_public_key(self) -> str:
        return self.host_key.with_suffix(".pub").read_text().strip()

    def known_hosts_line(self) -> str:
        """This server's line for a known_hosts file (``[127.0.0.1]:PORT TYPE KEY``)."""
        kind, key = self.host_public_key().split()[:2]
        return f"[{self.host}]:{self.port} {kind} {key}"

    def new_client_key(self, path: Path) -> Path:
        """A user key pair at ``path``, its public half authorized: the private key's path."""
        self.authorize(keygen(path))
        self.client_key = path
        return path

    def authorize(self, public_key: str) -> None:
        """Let this public key in (at once: sshd reads the file on each login)."""
        with self.authorized_keys.open("a") as f:
            f.write(public_key.strip() + "\n")
        self.authorized_keys.chmod(0o600)

    # -- the process -------------------------------------------------------------------

    def start(self) -> Self:
        if not self.host_key.exists():
            keygen(self.host_key, "cerebelum-test-host")
        self.authorized_keys.touch(mode=0o600)
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.host}",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    f"AllowUsers {self.user}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",  # the temporary directory's modes are the test's own
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            _PRIVSEP.mkdir(mode=0o755, exist_ok=True)
        subprocess.run([SSHD, "-t", "-f", str(config)], check=True, capture_output=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited at once: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on port {self.port}: {self.logs()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM to the listener (by PID), which ends its sessions too; SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def logins(self) -> int:
        """Successful public key logins so far (from the server's own log)."""
        return self.logs().count("Accepted publickey")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
