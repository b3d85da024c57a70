"""A local SSH server on 127.0.0.1 that speaks the real protocol (paramiko's server side).

It lets in ``root`` with the one public key it was given, like a fresh droplet with the
user's key installed, and counts successful logins. Sessions are closed right after the
login: the reference document's check only connects.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Self

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def write_client_key(home: Path) -> paramiko.PKey:
    """Create ``~/.ssh/id_ed25519`` under ``home``, where paramiko looks for keys by default."""
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    path = ssh_dir / "id_ed25519"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


class _Interface(paramiko.ServerInterface):
    def __init__(self, authorized: paramiko.PKey, on_login: threading.Event) -> None:
        self.authorized = authorized
        self.on_login = on_login

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username == "root" and key == self.authorized:
            self.on_login.set()
            return paramiko.common.AUTH_SUCCESSFUL
        return paramiko.common.AUTH_FAILED


class FakeSshServer:
    def __init__(self, authorized: paramiko.PKey) -> None:
        self.authorized = authorized
        self.host_key = paramiko.ECDSAKey.generate()
        self.logins = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.listen(16)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        transport.add_server_key(self.host_key)
        logged_in = threading.Event()
        try:
            transport.start_server(server=_Interface(self.authorized, logged_in))
            if logged_in.wait(10):
                with self._lock:
                    self.logins += 1
                transport.accept(2)  # the client may open a channel; it is not served
        except (paramiko.SSHException, EOFError, OSError):
            pass
        finally:
            transport.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
