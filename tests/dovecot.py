"""A throwaway Dovecot IMAP server, and an OAuth2 identity provider, for tests.

Debian's `dovecot-imapd` (.ci/run installs it), run in the foreground with
its own `dovecot.conf` (`dovecot -c FILE -F`); the system's configuration and
service are not used. Everything the instance writes lives under one
temporary directory: configuration, a CA and a server certificate made with
the `openssl` CLI at construction, base_dir (sockets), state_dir, the
maildirs and the log. That directory is a short one under /tmp rather than
pytest's tmp_path: unix socket paths are limited to 108 bytes, and the mail
user could not traverse /tmp/pytest-of-root (0700). `close()` removes it.

It listens on 127.0.0.1 only: `imap_port` (plain, STARTTLS offered) and
`imaps_port` (implicit TLS), both chosen once so `stop()`/`start()` (an outage)
brings back the same ports and data. Users log in with a password (a
passwd-file passdb, `add_user()`) or with an OAuth2 bearer token (XOAUTH2 or
OAUTHBEARER, an oauth2 passdb asking `TokenServer`'s tokeninfo endpoint).

As root, Dovecot's own users are used (dovecot, dovenull) and mail belongs to
the `mail` user (Dovecot refuses mail access as uid 0). As another user,
every service and the mail run as that user, unchrooted.

Outside CI a missing Dovecot skips with the reason shown; in CI it fails.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.process import free_port

DOVECOT = Path("/usr/sbin/dovecot")
DOVEADM = Path("/usr/bin/doveadm")
IN_CI = os.environ.get("CI") == "true"

# Flags as a test passes them, e.g. ("\\Seen", "$Label1").
Flags = Iterable[str]


def require_dovecot() -> None:
    """Skip (fail in CI) when Debian's dovecot-imapd is not installed."""
    missing = [str(p) for p in (DOVECOT, DOVEADM, Path("/usr/lib/dovecot/imap"))
               if not p.exists()]
    if not missing:
        return
    message = (f"{', '.join(missing)} not found: install Debian's dovecot-imapd package"
               " (.ci/run does)")
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


# --------------------------------------------------------------------------- #
# The identity provider
# --------------------------------------------------------------------------- #

@dataclass
class _Token:
    user: str
    expires_at: float  # time.time(); float("inf") for refresh tokens
    revoked: bool = False


@dataclass
class TokenServer:
    """A minimal OAuth2 identity provider on 127.0.0.1, in a thread of its own
    (so it answers whether or not the test's event loop is busy).

    `POST /token` (grant_type=refresh_token, refresh_token, client_id,
    client_secret) answers {access_token, expires_in, token_type[,
    refresh_token]}; `GET /tokeninfo?access_token=T` (what Dovecot asks) and
    `POST /introspect` (RFC 7662, form token=T) accept only access tokens this
    server issued that are neither expired nor revoked.
    """

    client_id: str = "intake-test"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    expires_in: int = 3600
    rotate_refresh_tokens: bool = False
    # Every refresh then fails with {"error": "invalid_grant"} (a revoked consent).
    reject_grants: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._calls: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle --
    def start(self) -> TokenServer:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="token-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses --
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def tokeninfo_url(self) -> str:
        """What Dovecot's `tokeninfo_url` is set to (it appends the token)."""
        return f"{self.base_url}/tokeninfo?access_token="

    @property
    def introspection_url(self) -> str:
        return f"{self.base_url}/introspect"

    # -- tokens --
    def issue_refresh_token(self, user: str) -> str:
        """A refresh token for `user` (what the consent flow would have stored)."""
        token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = _Token(user, float("inf"))
        return token

    def issue_access_token(self, user: str, expires_in: int | None = None) -> str:
        """An access token for `user`, without the token endpoint."""
        token = "at-" + secrets.token_urlsafe(24)
        lifetime = self.expires_in if expires_in is None else expires_in
        with self._lock:
            self._access[token] = _Token(user, time.time() + lifetime)
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            for table in (self._access, self._refresh):
                if token in table:
                    table[token].revoked = True

    def revoke_all(self) -> None:
        """Every access and refresh token issued so far stops working."""
        with self._lock:
            for item in [*self._access.values(), *self._refresh.values()]:
                item.revoked = True

    def expire_all(self) -> None:
        """Every access token issued so far is expired (refresh tokens still work)."""
        with self._lock:
            for item in self._access.values():
                item.expires_at = min(item.expires_at, time.time() - 1)

    def calls(self, endpoint: str) -> int:
        """Requests so far to `endpoint`: "token", "tokeninfo" or "introspect"."""
        with self._lock:
            return self._calls[endpoint]

    def valid_refresh_tokens(self) -> list[str]:
        with self._lock:
            return [t for t, item in self._refresh.items() if not item.revoked]

    # -- what the handler calls (under the lock) --
    def _grant(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        with self._lock:
            self._calls["token"] += 1
            if (form.get("client_id") != self.client_id
                    or form.get("client_secret") != self.client_secret):
                return 401, {"error": "invalid_client"}
            if form.get("grant_type") != "refresh_token":
                return 400, {"error": "unsupported_grant_type"}
            refresh = self._refresh.get(form.get("refresh_token", ""))
            if self.reject_grants or refresh is None or refresh.revoked:
                return 400, {"error": "invalid_grant",
                             "error_description": "refresh token not valid"}
            access = "at-" + secrets.token_urlsafe(24)
            self._access[access] = _Token(refresh.user, time.time() + self.expires_in)
            answer: dict[str, object] = {"access_token": access, "token_type": "Bearer",
                                         "expires_in": self.expires_in}
            if self.rotate_refresh_tokens:
                refresh.revoked = True
                rotated = "rt-" + secrets.token_urlsafe(24)
                self._refresh[rotated] = _Token(refresh.user, float("inf"))
                answer["refresh_token"] = rotated
            return 200, answer

    def _check(self, endpoint: str, token: str) -> tuple[int, dict[str, object]]:
        with self._lock:
            self._calls[endpoint] += 1
            item = self._access.get(token)
            now = time.time()
            if item is None or item.revoked or item.expires_at <= now:
                if endpoint == "introspect":
                    return 200, {"active": False}
                return 401, {"error": "invalid_token"}
            return 200, {"active": True, "email": item.user, "sub": item.user,
                         "username": item.user, "expires_in": int(item.expires_at - now)}


def _handler_for(owner: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # keep pytest's output clean

        def _form(self) -> dict[str, str]:
            try:
                length = min(max(int(self.headers.get("Content-Length") or 0), 0), 65536)
            except ValueError:
                length = 0
            body = self.rfile.read(length).decode("utf-8", "replace")
            return {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}

        def _bearer(self) -> str:
            auth = self.headers.get("Authorization", "")
            return auth[7:].strip() if auth.lower().startswith("bearer ") else ""

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/tokeninfo":
                self._answer(404, {"error": "not_found"})
                return
            query = urllib.parse.parse_qs(url.query)
            token = (query.get("access_token") or [""])[0] or self._bearer()
            self._answer(*owner._check("tokeninfo", token))

        def do_POST(self) -> None:  # noqa: N802
            path = urllib.parse.urlsplit(self.path).path
            form = self._form()
            if path == "/token":
                self._answer(*owner._grant(form))
            elif path == "/introspect":
                self._answer(*owner._check("introspect", form.get("token") or self._bearer()))
            else:
                self._answer(404, {"error": "not_found"})

    return Handler


def xoauth2(user: str, token: str) -> bytes:
    """The XOAUTH2 initial response (before base64), as imaplib's authenticate wants."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


# --------------------------------------------------------------------------- #
# The server
# --------------------------------------------------------------------------- #

def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {result.stderr}")


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost/127.0.0.1 signed by it:
    (ca.pem, cert.pem, key.pem). A real chain, so strict verifiers accept it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in
                                  ("ca.key", "ca.pem", "key.pem", "server.csr", "cert.pem"))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "7",
             "-subj", "/CN=Intake Test Dovecot CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    extensions = directory / "server.ext"
    extensions.write_text("basicConstraints=critical,CA:FALSE\n"
                          "keyUsage=critical,digitalSignature\n"
                          "extendedKeyUsage=serverAuth\n"
                          "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                          "authorityKeyIdentifier=keyid\n"
                          "subjectKeyIdentifier=hash\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "7", "-extfile", str(extensions))
    for private in (ca_key, key):
        private.chmod(0o600)
    return ca, cert, key


def _quote(text: str) -> str:
    """An IMAP quoted string (mailbox names, passwords)."""
    if any(c in text for c in "\r\n\0"):
        raise ValueError(f"cannot quote {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Dovecot:
    """One Dovecot instance. `start()` returns once both ports greet; `stop()`
    ends every process of the instance; `close()` also removes its directory.

    Helpers work on the running server as the user (IMAP over loopback, with
    the password `add_user` recorded; OAuth-only users get one on demand) or
    with `doveadm -c` on this instance's config, which also works while stopped.
    """

    INBOX = "INBOX"

    def __init__(self, token_server: TokenServer | None = None, *,
                 auth_failure_delay: float = 0.0, separator: str = "/") -> None:
        self._own_tokens = token_server is None
        self.tokens = token_server if token_server is not None else TokenServer()
        self.tokens.start()
        self.auth_failure_delay = auth_failure_delay
        self.separator = separator  # the hierarchy separator (Maildir++ on disk either way)
        self.root = Path(tempfile.mkdtemp(prefix="dvc"))
        self.root.chmod(0o755)  # Dovecot's unprivileged processes read config files here
        # Unique: `pgrep -f <instance_name>` finds every process of this instance.
        self.instance_name = self.root.name
        self.base_dir = self.root / "run"
        self.state_dir = self.root / "state"
        self.mail_dir = self.root / "mail"
        self.config = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self.users_file = self.root / "users"
        self.oauth2_config = self.root / "dovecot-oauth2.conf.ext"
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.ca_file, self.cert_file, self.key_file = make_certificates(self.root / "tls")
        self._passwords: dict[str, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._configure()

    # -- configuration --
    def _accounts(self) -> tuple[str, str, str, int, int]:
        """(internal user, its group, login user, mail uid, mail gid)."""
        if os.geteuid() == 0:
            mail = pwd.getpwnam("mail")
            for name in ("dovecot", "dovenull"):
                pwd.getpwnam(name)  # KeyError: the package's users are missing
            return "dovecot", "dovecot", "dovenull", mail.pw_uid, mail.pw_gid
        me = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(os.getegid()).gr_name
        return me.pw_name, group, me.pw_name, me.pw_uid, os.getegid()

    def _configure(self) -> None:
        internal, internal_group, login, uid, gid = self._accounts()
        for directory in (self.base_dir, self.state_dir, self.mail_dir):
            directory.mkdir(exist_ok=True)
        os.chown(self.mail_dir, uid, gid)
        self.mail_dir.chmod(0o700)
        self.users_file.touch()
        self.users_file.chmod(0o644)  # read by the auth process (the internal user)
        self.oauth2_config.write_text(
            f"tokeninfo_url = {self.tokens.tokeninfo_url}\n"
            "username_attribute = email\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "timeout_msecs = 5000\n")
        unprivileged = os.geteuid() != 0
        # As a plain user every service runs as that user, and none can chroot.
        chroot = "  chroot =\n" if unprivileged else ""
        self.config.write_text(f"""\
# Generated by tests/dovecot.py: a throwaway instance, nothing from /etc/dovecot.
instance_name = {self.instance_name}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
protocols = imap
listen = 127.0.0.1
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = {uid}
first_valid_gid = {gid}
verbose_proctitle = yes
shutdown_clients = yes

ssl = yes
ssl_cert = <{self.cert_file}
ssl_key = <{self.key_file}
ssl_min_protocol = TLSv1.2

auth_mechanisms = plain login xoauth2 oauthbearer
auth_verbose = yes
auth_failure_delay = {self.auth_failure_delay:g} secs
auth_cache_size = 0

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_file}
  mechanisms = plain login
}}
passdb {{
  driver = oauth2
  args = {self.oauth2_config}
  mechanisms = xoauth2 oauthbearer
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.mail_dir}/%u allow_all_users=yes
}}

mail_location = maildir:~/Maildir
mail_fsync = never
mailbox_idle_check_interval = 1 secs
namespace inbox {{
  inbox = yes
  separator = {self.separator}
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
  mailbox Junk {{
    special_use = \\Junk
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
{chroot}}}
service imap {{
  process_limit = 256
}}
# No growing delay after failed logins from one address (anvil's auth penalty):
# tests fail logins on purpose, from 127.0.0.1 every time.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{chroot}}}
""")

    # -- users --
    def add_user(self, user: str, password: str | None = None) -> str:
        """Add a password user (passwd-file; Dovecot rereads it when it changes);
        returns the password (a random one if none is given)."""
        if not re.fullmatch(r"[A-Za-z0-9._%+@-]+", user):
            raise ValueError(f"unsupported user name {user!r}")
        password = password if password is not None else secrets.token_urlsafe(12)
        if any(c in password for c in ":\r\n\0"):
            raise ValueError("passwd-file passwords cannot hold ':' or line breaks")
        self._passwords[user] = password
        lines = [f"{u}:{{PLAIN}}{p}::::::" for u, p in self._passwords.items()]
        temporary = self.users_file.with_suffix(".new")
        temporary.write_text("\n".join(lines) + "\n")
        temporary.chmod(0o644)
        # Dovecot rereads the file when its mtime or size changed, checking at
        # most once per wall-clock second: a later mtime, and wait for the next second.
        previous = self.users_file.stat().st_mtime
        stamp = max(time.time(), previous + 1)
        os.utime(temporary, (stamp, stamp))
        os.replace(temporary, self.users_file)
        if self.running:
            time.sleep(1.05 - time.time() % 1)
        return password

    def password(self, user: str) -> str:
        return self._passwords[user]

    # -- lifecycle --
    def start(self, timeout: float = 15.0) -> None:
        """Start the master in the foreground, in its own process group, and wait
        until both ports greet."""
        if self.proc is not None and self.proc.poll() is None:
            return
        check = subprocess.run([str(DOVECOT), "-c", str(self.config), "-n"], capture_output=True,
                               text=True, timeout=30, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"dovecot -n refused the configuration:\n{check.stderr}")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([str(DOVECOT), "-c", str(self.config), "-F"],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        pending = {self.imap_port: False, self.imaps_port: True}
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited ({self.proc.returncode}):\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"dovecot did not greet within {timeout}s:\n{self.log_text()}")
            for port, tls in list(pending.items()):
                if self._greets(port, tls):
                    del pending[port]
            if pending:
                time.sleep(0.05)

    def _greets(self, port: int, tls: bool) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                sock: socket.socket = raw
                if tls:
                    sock = self.ssl_context().wrap_socket(raw, server_hostname="localhost")
                sock.settimeout(2)
                return sock.recv(256).startswith(b"* OK")
        except (OSError, ssl.SSLError):
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the master (it ends its children and clients), then SIGKILL
        whatever of the process group is left. Data and ports stay for start()."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self._kill_group(proc)

    def kill(self) -> None:
        """A crash: SIGKILL every process of the instance at once."""
        if self.proc is not None:
            self._kill_group(self.proc)

    def _kill_group(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.05)

    def processes(self) -> list[int]:
        """Pids still alive of this instance: its process group, or a command
        line naming its directory (the master's `-c` path; the children's
        titles, "dovecot-<instance_name>/imap", carry the directory's name)."""
        found: list[int] = []
        group = self.proc.pid if self.proc is not None else None
        marker = self.instance_name.encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            if (group is not None and int(fields[2]) == group) or marker in cmdline:
                found.append(int(entry.name))
        return found

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self, keep_log: Path | None = None) -> None:
        """stop(), stop the token server if this instance made it, remove the
        directory (copying the log to `keep_log` first if given)."""
        self.stop()
        if self._own_tokens:
            self.tokens.stop()
        if keep_log is not None and self.log_path.exists():
            shutil.copyfile(self.log_path, keep_log)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    # -- clients --
    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only this instance's CA (hostname checked)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def connect(self, *, tls: str = "starttls", timeout: float = 10.0) -> imaplib.IMAP4:
        """An imaplib client, not logged in. tls: "starttls" (plain port, then
        STARTTLS), "implicit" (imaps port) or "none" (plain port)."""
        if tls == "implicit":
            return imaplib.IMAP4_SSL("localhost", self.imaps_port, ssl_context=self.ssl_context(),
                                     timeout=timeout)
        client = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=timeout)
        if tls == "starttls":
            client.starttls(self.ssl_context())
        elif tls != "none":
            raise ValueError(f"tls must be starttls, implicit or none, not {tls!r}")
        return client

    @contextlib.contextmanager
    def session(self, user: str) -> Iterator[imaplib.IMAP4]:
        """A logged-in imaplib client for `user` (plain port on loopback, which
        Dovecot counts as secure); logs out at the end."""
        client = self.connect(tls="none")
        try:
            if user in self._passwords:
                client.login(user, self._passwords[user])
            else:  # an OAuth-only user: a token straight from the provider
                token = self.tokens.issue_access_token(user)
                client.authenticate("XOAUTH2", lambda _: xoauth2(user, token))
            yield client
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()

    def doveadm(self, *args: str, timeout: float = 30.0) -> str:
        """`doveadm -c <this config> ARGS`; its stdout, or RuntimeError."""
        result = subprocess.run([str(DOVEADM), "-c", str(self.config), *args],
                                capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} exited {result.returncode}: "
                               f"{result.stdout}{result.stderr}")
        return result.stdout

    # -- mailboxes --
    def create_folder(self, user: str, folder: str) -> None:
        """Create `folder` (doveadm: works while stopped too); existing is fine."""
        try:
            self.doveadm("mailbox", "create", "-u", user, folder)
        except RuntimeError as exc:
            if "exists" not in str(exc).lower():
                raise

    def set_uidvalidity(self, user: str, folder: str, value: int) -> None:
        """Give `folder` a new UIDVALIDITY (as after a server-side rebuild)."""
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(value), folder)

    def append(self, user: str, folder: str, raw: bytes, flags: Flags = (),
               date: datetime | None = None) -> int:
        """APPEND one message; returns its UID (from APPENDUID)."""
        return self.append_many(user, folder, [(raw, flags, date)])[0]

    def append_many(self, user: str, folder: str,
                    messages: Iterable[bytes | tuple[bytes, Flags, datetime | None]],
                    batch: int = 500) -> list[int]:
        """APPEND many messages fast: MULTIAPPEND with non-synchronising literals
        (LITERAL+), `batch` messages per command, so one round trip per batch.
        Returns their UIDs in order (from APPENDUID)."""
        items = [(m, (), None) if isinstance(m, bytes) else m for m in messages]
        uids: list[int] = []
        with self.session(user) as client:
            for start in range(0, len(items), batch):
                uids += self._multiappend(client, folder, items[start:start + batch])
        return uids

    def _multiappend(self, client: imaplib.IMAP4, folder: str,
                     items: list[tuple[bytes, Flags, datetime | None]]) -> list[int]:
        tag = client._new_tag()
        parts = [tag + b" APPEND " + _quote(folder).encode()]
        for raw, flags, date in items:
            parts.append(b" (" + " ".join(flags).encode() + b")")
            if date is not None:
                when = date if date.tzinfo else date.replace(tzinfo=UTC)
                parts.append(b" " + imaplib.Time2Internaldate(when).encode())
            parts.append(b" {%d+}\r\n" % len(raw) + raw)
        parts.append(b"\r\n")
        client.send(b"".join(parts))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = client.readline()
            if not line:
                raise RuntimeError("connection closed during APPEND")
            if line.startswith(tag + b" "):
                match = re.match(rb"\S+ OK \[APPENDUID (\d+) ([0-9:,]+)\]", line)
                if match is None:
                    raise RuntimeError(f"APPEND failed: {line!r}")
                return _uid_set(match.group(2).decode())
        raise RuntimeError("APPEND did not finish in time")

    def uids(self, user: str, folder: str) -> list[int]:
        """The folder's UIDs, ascending."""
        with self._examined(user, folder) as client:
            _, data = client.uid("SEARCH", "ALL")
        return sorted(int(x) for x in b" ".join(d for d in data if d).split())

    def uidvalidity(self, user: str, folder: str) -> int:
        out = self.doveadm("mailbox", "status", "-u", user, "uidvalidity", folder)
        return int(out.split("=", 1)[1])

    def fetch_raw(self, user: str, folder: str) -> dict[int, bytes]:
        """uid -> the message's bytes as stored (without setting \\Seen)."""
        return {uid: body for uid, (_, body) in self._fetch(user, folder, "BODY.PEEK[]").items()}

    def flags(self, user: str, folder: str) -> dict[int, set[str]]:
        """uid -> its flags (\\Recent left out: it depends on who looked first)."""
        return {uid: {f for f in flags if f != "\\Recent"}
                for uid, (flags, _) in self._fetch(user, folder, "FLAGS").items()}

    def _fetch(self, user: str, folder: str,
               what: str) -> dict[int, tuple[set[str], bytes]]:
        found: dict[int, tuple[set[str], bytes]] = {}
        with self._examined(user, folder) as client:
            if not client.uid("SEARCH", "ALL")[1][0]:
                return found
            _, data = client.uid("FETCH", "1:*", f"(UID FLAGS {what})")
        for item in data:
            head, body = (item[0], item[1]) if isinstance(item, tuple) else (item, b"")
            if not isinstance(head, bytes):
                continue
            uid = re.search(rb"UID (\d+)", head)
            flags = re.search(rb"FLAGS \(([^)]*)\)", head)
            if uid is None:
                continue
            names = set(flags.group(1).decode().split()) if flags else set()
            found[int(uid.group(1))] = (names, body)
        return found

    @contextlib.contextmanager
    def _examined(self, user: str, folder: str) -> Iterator[imaplib.IMAP4]:
        with self.session(user) as client:
            status, data = client.select(_quote(folder), readonly=True)
            if status != "OK":
                raise RuntimeError(f"EXAMINE {folder}: {data!r}")
            yield client


def _uid_set(text: str) -> list[int]:
    """An IMAP uid set ("4:6,9") as a list."""
    uids: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        uids += range(int(low), int(high or low) + 1)
    return uids
