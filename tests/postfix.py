"""A throwaway Postfix instance in front of the gateway, for end-to-end tests.

Debian's `postfix` package (.ci/run installs it). Everything the instance
writes lives under one temporary directory: its own config directory
(`postfix -c DIR`), queue and data directories, and a log file. It listens
on one loopback port and delivers our domains to the gateway's LMTP
listener through the tables `intake postfix-maps` writes. Outside CI a
missing Postfix skips with the reason shown; in CI it fails.

What it takes here, as root: `mail_owner` (postfix) and `setgid_group`
(postdrop) come with the package; the queue directory must exist, owned by
root and reachable by postfix (`postfix start` makes its subdirectories);
the data directory must belong to postfix (master.lock); `maillog_file`
must fall under `maillog_file_prefixes`. Services run unchrooted (a chroot
would need copies of /etc files in the queue directory). With no syslog,
the `postfix` command's own fatal errors reach only a terminal or the
maillog file, so a failed start is reported with the log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

POSTFIX = Path("/usr/sbin/postfix")
POSTQUEUE = Path("/usr/sbin/postqueue")
IN_CI = os.environ.get("CI") == "true"

# Only the services this instance needs; unchrooted ("n" in the 5th column).
MASTER_CF = """\
{port} inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
lmtp      unix - - n - - lmtp
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def require_postfix() -> None:
    """Skip (fail in CI) when Debian's postfix package is not installed."""
    if not (POSTFIX.exists() and POSTQUEUE.exists()):
        message = f"{POSTFIX} not found: install Debian's postfix package (.ci/run does)"
    elif os.geteuid() != 0:
        message = "Postfix's master process must be started as root"
    else:
        return
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class Postfix:
    """One Postfix instance: `start()` with the main.cf lines `intake postfix-maps`
    printed, `queue()` and `flush()` as an operator would, `stop()` at the end."""

    def __init__(self, smtp_port: int) -> None:
        self.smtp_port = smtp_port
        # Short: Postfix's unix sockets live under the queue directory (108-byte paths).
        self.root = Path(tempfile.mkdtemp(prefix="pfx"))
        self.config_dir = self.root / "etc"
        self.log = self.root / "maillog"

    def start(self, maps_main_cf: str) -> None:
        self.root.chmod(0o755)  # mkdtemp's 0700 would keep the postfix user out
        for directory in (self.config_dir, self.root / "queue", self.root / "data"):
            directory.mkdir()
        shutil.chown(self.root / "data", "postfix")
        main_cf = f"""\
compatibility_level = 3.6
queue_directory = {self.root / "queue"}
data_directory = {self.root / "data"}
maillog_file = {self.log}
maillog_file_prefixes = {self.root}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.intake.test
mydestination =
# Customers are not on our networks: loopback clients get no relaying rights.
mynetworks = 192.0.2.1/32
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_peername_lookup = no
lmtp_host_lookup = native
smtp_host_lookup = native
# Retry soon: the deferral test flushes the queue instead of waiting.
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
alias_maps =
alias_database =
local_recipient_maps =
biff = no
{maps_main_cf}"""
        (self.config_dir / "main.cf").write_text(main_cf)
        (self.config_dir / "master.cf").write_text(
            MASTER_CF.format(port=f"127.0.0.1:{self.smtp_port}"))
        # Postfix opens its dynamic-maps registry from the config directory.
        for name in ("dynamicmaps.cf", "postfix-files"):
            if Path("/etc/postfix", name).exists():
                shutil.copy(Path("/etc/postfix", name), self.config_dir / name)
        for directory in ("dynamicmaps.cf.d", "postfix-files.d"):
            if Path("/etc/postfix", directory).is_dir():
                shutil.copytree(Path("/etc/postfix", directory), self.config_dir / directory)
        self._run(str(POSTFIX), "-c", str(self.config_dir), "start")
        self._wait_listening()

    def _wait_listening(self, timeout: float = 20.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"postfix did not listen on {self.smtp_port}: {self.log_text()}")

    def queue(self) -> str:
        """`postqueue -p`: what Postfix still holds, with each deferral's reason."""
        return self._run(str(POSTQUEUE), "-c", str(self.config_dir), "-p").stdout

    def flush(self) -> None:
        """`postqueue -f`: try every deferred message now."""
        self._run(str(POSTQUEUE), "-c", str(self.config_dir), "-f")

    def stop(self) -> None:
        subprocess.run([str(POSTFIX), "-c", str(self.config_dir), "stop"],
                       capture_output=True, text=True, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {result.stdout}{result.stderr}"
                               f"\n{self.log_text()}")
        return result
