"""Running `intake serve` as a real process for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, db_url: str, **extra: str) -> Path:
    lines = [
        "[intake]", 'addresses = ["support@localhost"]',
        "[database]", f'url = "{db_url}"',
        "[pipeline]", "workers = 2", "poll_seconds = 0.2",
        "lease_seconds = 5",
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class ServeProcess:
    def __init__(self, config: Path, log: Path, *, args: tuple[str, ...] = ()) -> None:
        self.smtp_port = free_port()
        self.http_port = free_port()
        self._config = config
        self._log_path = log
        self._args = args  # after `serve`, e.g. ("--processes", "2")
        self._log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ, INTAKE_CONFIG=str(self._config),
                   INTAKE_SMTP_LISTEN=f"127.0.0.1:{self.smtp_port}",
                   INTAKE_HTTP_LISTEN=f"127.0.0.1:{self.http_port}")
        self._log = self._log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", *self._args],
                                     env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"intake serve exited: {self._log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"intake serve did not start: {self._log_path.read_text()}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.wait()

    def log_text(self) -> str:
        return self._log_path.read_text(errors="replace")
