# Server process helper for the nats-py client tests: resolves the binary under
# test (TERN_BIN, default target/release/tern), starts it with nats-server-style
# flags on a free loopback port, waits for the port, stops it (SIGTERM, then
# SIGKILL), and can restart it on the same port.

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "release" / "tern"
HOST = "127.0.0.1"


def server_binary() -> str:
    """Path of the server under test; raises with a clear message if missing."""
    env = os.environ.get("TERN_BIN")
    path = Path(env) if env else DEFAULT_BIN
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if not path.is_file() or not os.access(path, os.X_OK):
        src = "TERN_BIN" if env else "default (TERN_BIN unset)"
        raise RuntimeError(
            f"server binary not found or not executable: {path} [{src}]. "
            "Build tern (cargo build --release) or set TERN_BIN, e.g. "
            "TERN_BIN=/usr/sbin/nats-server"
        )
    return str(path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerError(RuntimeError):
    pass


class Server:
    """One server process. `extra_args` e.g. ["--user", "u", "--pass", "p"]."""

    START_TIMEOUT = 10.0
    STOP_TIMEOUT = 5.0

    def __init__(self, extra_args=(), binary=None):
        self.binary = binary or server_binary()
        self.extra_args = list(extra_args)
        self.port = None
        self.proc = None
        self._log = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def url_with(self, userinfo: str) -> str:
        return f"nats://{userinfo}@{HOST}:{self.port}"

    def args(self):
        return [self.binary, "-a", HOST, "-p", str(self.port)] + self.extra_args

    def start(self, port=None):
        """Start on `port` (or a fresh free port); retry if the bind fails."""
        fixed = port is not None
        last_err = None
        for _ in range(5):
            self.port = port if fixed else free_port()
            try:
                self._spawn_and_wait()
                return self
            except ServerError as e:
                last_err = e
                self._kill()
                time.sleep(0.2)
        raise last_err

    def _spawn_and_wait(self):
        if self._log is None:
            self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.args(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"server exited with {self.proc.returncode} before accepting "
                    f"on port {self.port}: {self.args()}\n{self.log()}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise ServerError(f"server did not accept on port {self.port} within "
                          f"{self.START_TIMEOUT}s: {self.args()}\n{self.log()}")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=self.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill()
        self.proc = None

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=self.STOP_TIMEOUT)
        self.proc = None

    def restart(self):
        """Stop and start again on the same port."""
        port = self.port
        self.stop()
        return self.start(port=port)

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        data = self._log.read().decode(errors="replace")
        self._log.seek(0, os.SEEK_END)
        return data[-4000:]

    def close(self):
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
