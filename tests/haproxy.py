"""A throwaway HAProxy in front of gateways, for end-to-end tests.

Debian's `haproxy` package (.ci/run installs it), run in the foreground
(`haproxy -f CFG -db`) with a configuration of the same shape as
docker/haproxy.cfg, on loopback ports: SMTP in TCP mode with the PROXY
protocol to every gateway (v2 to the first, v1 to the others, so both are
used), HTTP with `option forwardfor` and `/readyz` health checks, and a stats
page whose CSV says which servers are up. Outside CI a missing haproxy skips
with the reason shown; in CI it fails.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.process import free_port

IN_CI = os.environ.get("CI") == "true"


def require_haproxy() -> str:
    """The haproxy binary; skip (fail in CI) when Debian's package is missing."""
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy"
                                        if Path("/usr/sbin/haproxy").exists() else None)
    if found is not None:
        return found
    message = "haproxy not found: install Debian's haproxy package (.ci/run does)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def config_text(*, smtp_port: int, http_port: int, stats_port: int,
                gateways: list[tuple[int, int]]) -> str:
    """haproxy.cfg for `gateways`, each (its SMTP port, its HTTP port)."""
    smtp_servers = "\n".join(
        f"    server gw{n} 127.0.0.1:{smtp} {'send-proxy-v2' if n == 1 else 'send-proxy'}"
        " check check-send-proxy inter 200ms fall 1 rise 2"
        for n, (smtp, _) in enumerate(gateways, 1))
    http_servers = "\n".join(
        f"    server gw{n} 127.0.0.1:{http} check inter 200ms fall 1 rise 2"
        for n, (_, http) in enumerate(gateways, 1))
    return f"""\
global
    maxconn 2000

defaults
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # A connection refused by a dead gateway goes to another one.
    retries 2
    option redispatch

frontend smtp_in
    mode tcp
    bind 127.0.0.1:{smtp_port}
    default_backend smtp_gateways

backend smtp_gateways
    mode tcp
    balance roundrobin
    option smtpchk EHLO haproxy.test
{smtp_servers}

frontend http_in
    mode http
    bind 127.0.0.1:{http_port}
    option forwardfor
    default_backend http_gateways

backend http_gateways
    mode http
    balance roundrobin
    option httpchk GET /readyz
{http_servers}

listen stats
    mode http
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


class HAProxy:
    """One haproxy process in the foreground; `stop()` ends it."""

    def __init__(self, directory: Path, gateways: list[tuple[int, int]]) -> None:
        self.smtp_port = free_port()
        self.http_port = free_port()
        self.stats_port = free_port()
        self.config = directory / "haproxy.cfg"
        self.config.write_text(config_text(smtp_port=self.smtp_port, http_port=self.http_port,
                                           stats_port=self.stats_port, gateways=gateways))
        self.log_path = directory / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, binary: str) -> None:
        check = subprocess.run([binary, "-c", "-f", str(self.config)], capture_output=True,
                               timeout=30, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([binary, "-f", str(self.config), "-db"],
                                         stdout=log, stderr=subprocess.STDOUT)

    def states(self) -> dict[tuple[str, str], str]:
        """(backend, server) -> its status as HAProxy sees it (UP, DOWN, ...)."""
        url = f"http://127.0.0.1:{self.stats_port}/stats;csv"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode().lstrip("# ")
        return {(row["pxname"], row["svname"]): row["status"].split()[0]
                for row in csv.DictReader(io.StringIO(text))
                if row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_until(self, wanted: dict[tuple[str, str], str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        states: dict[tuple[str, str], str] = {}
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log_text()
            try:
                states = self.states()
            except OSError:
                states = {}
            if all(states.get(key) == status for key, status in wanted.items()):
                return
            time.sleep(0.1)
        raise AssertionError(f"HAProxy servers not {wanted} within {timeout}s: {states}\n"
                             f"{self.log_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
