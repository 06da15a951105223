"""TLS on the SMTP edge, end to end: STARTTLS on the SMTP and LMTP listeners,
the implicit-TLS listener (smtps), require_tls, the STARTTLS injection, bad
handshakes and their deadline, and the certificate reload on SIGHUP.

Certificates are made here (trustme). The gateway runs on the event loop
`intake serve` runs (uvloop when installed) in a thread of its own, and the
tests are its clients from outside (smtplib, swaks, raw sockets); the TLS
mechanics are run under both loops, since uvloop is optional. The reload test
runs a real `intake serve` and sends it SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import Gateway, start, stop
from gateway.connections import Cause
from storage.models import inbox_items
from tests.helpers import make_config
from tests.process import ServeProcess, free_port, write_config
from tests.tls_files import ServerCert, issue, serial_of, write

try:
    import uvloop
except ImportError:  # the [fast] extra is optional: asyncio is then what serves
    uvloop = None  # type: ignore[assignment]

LOOPS = ["uvloop", "asyncio"] if uvloop is not None else ["asyncio"]
SERVED_LOOP = LOOPS[0]  # what `intake serve` runs (gateway/cli.py)
MAIL = b"From: a@example.com\r\nTo: support@localhost\r\nSubject: over TLS\r\n\r\nHello.\r\n"
T = TypeVar("T")


class Served:
    """A gateway on its own event loop, in its own thread."""

    def __init__(self, gateway: Gateway, loop: asyncio.AbstractEventLoop) -> None:
        self.gateway = gateway
        self.loop = loop
        self.stopped = False

    def stop(self, grace: float = 1.0) -> None:
        if not self.stopped:
            self.stopped = True
            self.run(stop(self.gateway, grace=grace))

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        """(channel, meta) of every stored inbox item, in order."""
        return self.run(_items(self.gateway.engine))


async def _items(engine: AsyncEngine) -> list[tuple[str, dict[str, Any]]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(inbox_items.c.channel, inbox_items.c.meta)
                                  .order_by(inbox_items.c.id))
        return [(row.channel, row.meta) for row in rows]


@contextlib.contextmanager
def served(kind: str, db_url: str, **sections: dict[str, Any]) -> Iterator[Served]:
    loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"gateway-{kind}", daemon=True)
    thread.start()
    try:
        gateway = asyncio.run_coroutine_threadsafe(
            start(make_config(db_url, **sections)), loop).result(30)
        server = Served(gateway, loop)
        try:
            yield server
        finally:
            server.stop()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `predicate` until it is truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


@pytest.fixture
def cert(tmp_path: Path) -> ServerCert:
    return issue(tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only: for tests of the TLS mechanics, where nothing turns on the backend."""
    path = tmp_path / "intake.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def _smtp(cert: ServerCert, **extra: Any) -> dict[str, Any]:
    return {"listen": "127.0.0.1:0", "lmtp_listen": "127.0.0.1:0",
            "tls_listen": "127.0.0.1:0", "tls": cert.section(), **extra}


def _tls_of(client: smtplib.SMTP) -> dict[str, str]:
    sock = client.sock
    assert isinstance(sock, ssl.SSLSocket)
    cipher = sock.cipher()
    assert cipher is not None
    return {"version": str(sock.version()), "cipher": cipher[0]}


def _read_line(sock: socket.socket) -> bytes:
    """One reply line, read a byte at a time so nothing after it is taken."""
    line = b""
    while not line.endswith(b"\r\n") and len(line) < 1000:
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line


def _read_reply(sock: socket.socket) -> list[bytes]:
    lines = [_read_line(sock)]
    while lines[-1][3:4] == b"-" and len(lines) < 50:
        lines.append(_read_line(sock))
    return lines


def _closed(sock: socket.socket, within: float = 5.0) -> bool:
    """True if the server closes `sock` within `within` seconds (whatever it sends first)."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


# -- messages over TLS are stored with their TLS ---------------------------------------


def test_starttls__the_message_records_its_tls(db_url: str, cert: ServerCert) -> None:
    with served(SERVED_LOOP, db_url, smtp=_smtp(cert)) as server:
        port = server.gateway.smtp_port
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as plain:
            assert plain.sendmail("a@example.com", ["support@localhost"], MAIL) == {}
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            assert client.starttls(context=cert.client())[0] == 220
            client.ehlo()
            assert not client.has_extn("starttls")  # not offered twice
            assert not client.has_extn("auth")  # aiosmtpd's would be offered now: no login here
            assert client.docmd("STARTTLS")[0] == 554
            assert client.sendmail("a@example.com", ["support@localhost"], MAIL) == {}
            tls = _tls_of(client)
            helo = client.local_hostname
        (_, first), (channel, second) = server.items()
        assert first["listener"] == "smtp" and "tls" not in first
        assert channel == "smtp" and second["listener"] == "smtp"
        assert second["tls"] == tls and tls["version"] == "TLSv1.3"
        assert second["helo"] == helo
        assert server.gateway.smtp.tls_counts.sessions == 1


def test_swaks__starttls_and_implicit_tls(db_url: str, cert: ServerCert) -> None:
    if shutil.which("swaks") is None:  # .ci/run installs it
        message = "swaks is not installed (apt-get install swaks libnet-ssleay-perl)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with served(SERVED_LOOP, db_url, smtp=_smtp(cert)) as server:
        gateway = server.gateway
        for option, port in (("--tls", gateway.smtp_port), ("--tlsc", gateway.smtps_port)):
            done = subprocess.run(
                ["swaks", "--server", "127.0.0.1", "--port", str(port), option,
                 "--from", "a@example.com", "--to", "support@localhost",
                 "--helo", "client.example", "--header", f"Subject: swaks {option}",
                 "--timeout", "10"],
                capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "250 2.0.0 Accepted as" in done.stdout
        items = server.items()
        assert [(channel, meta["listener"]) for channel, meta in items] == [
            ("smtp", "smtp"), ("smtp", "smtps")]
        assert all(meta["tls"]["version"] in ("TLSv1.2", "TLSv1.3") and meta["tls"]["cipher"]
                   for _, meta in items)
        assert gateway.smtps is not None and gateway.smtps.tls_counts.sessions == 1


def test_lmtp__starttls(db_url: str, cert: ServerCert) -> None:
    with served(SERVED_LOOP, db_url, smtp=_smtp(cert)) as server:
        with smtplib.LMTP("127.0.0.1", server.gateway.lmtp_port, timeout=10) as client:
            client.ehlo()  # LHLO
            assert client.has_extn("starttls")
            assert client.starttls(context=cert.client())[0] == 220
            assert client.sendmail("a@example.com", ["support@localhost"], MAIL) == {}
            tls = _tls_of(client)
        [(channel, meta)] = server.items()
        assert channel == "lmtp" and meta["listener"] == "lmtp" and meta["tls"] == tls


def test_require_tls__nothing_before_starttls(db_url: str, cert: ServerCert) -> None:
    policy = {"smtp": {"require_tls": True}, "lmtp": {"require_tls": True}}
    with served(SERVED_LOOP, db_url, smtp=_smtp(cert, policy=policy)) as server:
        gateway = server.gateway
        must = (530, b"5.7.0 Must issue a STARTTLS command first")
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            assert client.ehlo()[0] == 250 and client.has_extn("starttls")
            assert client.noop()[0] == 250
            assert client.mail("a@example.com") == must
            assert client.rcpt("support@localhost") == must
            assert client.docmd("DATA") == must
            assert client.docmd("VRFY", "support@localhost") == must
            assert server.items() == []
            assert client.starttls(context=cert.client())[0] == 220
            # The session starts over after the handshake: no EHLO yet.
            assert client.docmd("MAIL FROM:<a@example.com>")[0] == 503
            client.ehlo()
            assert client.sendmail("a@example.com", ["support@localhost"], MAIL) == {}
        with smtplib.LMTP("127.0.0.1", gateway.lmtp_port, timeout=10) as lmtp:
            assert lmtp.ehlo()[0] == 250  # LHLO is allowed before STARTTLS
            assert lmtp.mail("a@example.com") == must
            lmtp.starttls(context=cert.client())
            assert lmtp.sendmail("a@example.com", ["support@localhost"], MAIL) == {}
        with smtplib.SMTP_SSL("127.0.0.1", gateway.smtps_port, timeout=10,
                              context=cert.client()) as smtps:  # TLS from the start
            assert smtps.sendmail("a@example.com", ["support@localhost"], MAIL) == {}
        assert [meta["listener"] for _, meta in server.items()] == ["smtp", "lmtp", "smtps"]
        assert all("tls" in meta for _, meta in server.items())


def test_starttls__behind_a_proxy_the_client_stays_the_peer(
        sqlite_url: str, cert: ServerCert) -> None:
    smtp = _smtp(cert, proxy_protocol_from=["127.0.0.1/32"])
    with served(SERVED_LOOP, sqlite_url, smtp=smtp) as server:
        sock = socket.create_connection(("127.0.0.1", server.gateway.smtp_port), timeout=5)
        with sock:
            sock.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n")
            assert _read_line(sock).startswith(b"220 ")
            sock.sendall(b"STARTTLS\r\n")
            assert _read_line(sock).startswith(b"220 ")
            with cert.client().wrap_socket(sock, server_hostname="localhost") as tls:
                for command in (b"EHLO client.example", b"MAIL FROM:<a@example.com>",
                                b"RCPT TO:<support@localhost>", b"DATA"):
                    tls.sendall(command + b"\r\n")
                    assert _read_reply(tls)[-1][:1] in (b"2", b"3")
                tls.sendall(MAIL + b".\r\n")
                assert _read_line(tls).startswith(b"250 2.0.0 Accepted")
        [(_, meta)] = server.items()
        assert meta["peer"] == ["192.0.2.7", 40000] and "tls" in meta


# -- the TLS mechanics, under both event loops -----------------------------------------


@pytest.mark.parametrize("kind", LOOPS)
def test_starttls__commands_sent_before_the_handshake_are_dropped(
        kind: str, sqlite_url: str, cert: ServerCert) -> None:
    with served(kind, sqlite_url, smtp=_smtp(cert)) as server:
        sock = socket.create_connection(("127.0.0.1", server.gateway.smtp_port), timeout=5)
        with sock:
            assert _read_line(sock).startswith(b"220 ")
            sock.sendall(b"EHLO client.example\r\n")
            assert _read_reply(sock)[-1].startswith(b"250 ")
            # One write: the MAIL rides in the clear behind STARTTLS.
            sock.sendall(b"STARTTLS\r\nMAIL FROM:<x@y>\r\n")
            assert _read_line(sock) == b"220 2.0.0 Ready to start TLS\r\n"
            with cert.client().wrap_socket(sock, server_hostname="localhost") as tls:
                tls.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    tls.recv(100)  # no answer to the injected MAIL
                tls.settimeout(5)
                tls.sendall(b"EHLO client.example\r\n")
                assert _read_reply(tls)[0].startswith(b"250-")  # not a 503 for the MAIL
                tls.sendall(b"RCPT TO:<support@localhost>\r\n")
                assert _read_line(tls).startswith(b"503 ")  # no sender: MAIL never ran
                tls.sendall(b"QUIT\r\n")
                assert _read_line(tls).startswith(b"221")
        assert server.items() == []


@pytest.mark.parametrize("kind", LOOPS)
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_bad_handshakes__closed_logged_and_their_places_freed(
        kind: str, sqlite_url: str, cert: ServerCert, caplog: pytest.LogCaptureFixture) -> None:
    tls11 = cert.client()
    tls11.minimum_version = ssl.TLSVersion.TLSv1
    tls11.maximum_version = ssl.TLSVersion.TLSv1_1
    tls11.set_ciphers("DEFAULT:@SECLEVEL=0")
    # Fewer places per client than bad clients: a place not freed shows.
    smtp = _smtp(cert, max_connections_per_client=2)
    with caplog.at_level(logging.INFO), served(kind, sqlite_url, smtp=smtp) as server:
        gateway = server.gateway
        smtps = gateway.smtps
        assert smtps is not None
        for _ in range(3):
            # Connected and gone, as a TCP health check does.
            socket.create_connection(("127.0.0.1", gateway.smtps_port), timeout=5).close()
            # Plain SMTP to the TLS port.
            with socket.create_connection(("127.0.0.1", gateway.smtps_port), timeout=5) as sock:
                sock.sendall(b"EHLO client.example\r\n")
                assert _closed(sock)
            # A client that will not go above TLS 1.1, on both ports.
            with pytest.raises(ssl.SSLError):
                smtplib.SMTP_SSL("127.0.0.1", gateway.smtps_port, timeout=5, context=tls11)
            with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=5) as client, \
                    pytest.raises(ssl.SSLError):
                client.starttls(context=tls11)
            # Garbage after STARTTLS.
            with socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=5) as sock:
                _read_line(sock)
                sock.sendall(b"STARTTLS\r\n")
                assert _read_line(sock).startswith(b"220 ")
                sock.sendall(b"MAIL FROM:<x@y>\r\n")
                assert _closed(sock)
        until(lambda: gateway.smtp.connections.open == 0 and smtps.connections.open == 0)
        assert gateway.smtp.tls_counts.failed == 6 and smtps.tls_counts.failed == 9
        assert not gateway.smtp.connections.refused and not smtps.connections.refused
        # And the listeners go on serving.
        with smtplib.SMTP_SSL("127.0.0.1", gateway.smtps_port, timeout=10,
                              context=cert.client()) as good:
            assert good.sendmail("a@example.com", ["support@localhost"], MAIL) == {}
        assert len(server.items()) == 1
    failed = [r for r in caplog.records if "TLS handshake with 127.0.0.1 failed" in r.getMessage()]
    assert len(failed) == 15 and {r.levelno for r in failed} == {logging.INFO}
    assert any("UNSUPPORTED_PROTOCOL" in r.getMessage() for r in failed)
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert noisy == []


@pytest.mark.parametrize("kind", LOOPS)
def test_handshake__not_finished_is_cut_at_the_command_deadline(
        kind: str, sqlite_url: str, cert: ServerCert) -> None:
    smtp = _smtp(cert, command_timeout_seconds=1.0)
    with served(kind, sqlite_url, smtp=smtp) as server:
        gateway = server.gateway
        smtps = gateway.smtps
        assert smtps is not None
        began = time.monotonic()
        silent = socket.create_connection(("127.0.0.1", gateway.smtps_port), timeout=5)
        trickle = socket.create_connection(("127.0.0.1", gateway.smtps_port), timeout=5)
        starttls = socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=5)
        with silent, trickle, starttls:
            until(lambda: smtps.connections.open == 2, timeout=0.5)
            _read_line(starttls)
            starttls.sendall(b"STARTTLS\r\n")
            assert _read_line(starttls).startswith(b"220 ")
            # A ClientHello begun, a byte at a time, never finished: no byte
            # moves the deadline.
            with contextlib.suppress(OSError):
                for byte in b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03":
                    trickle.sendall(bytes([byte]))
                    time.sleep(0.2)
            assert all(_closed(sock) for sock in (silent, trickle, starttls))
        assert 0.9 < time.monotonic() - began < 5
        assert smtps.connections.cut == {Cause.COMMAND: 2}
        assert gateway.smtp.connections.cut == {Cause.COMMAND: 1}
        until(lambda: gateway.smtp.connections.open == 0 and smtps.connections.open == 0)


@pytest.mark.parametrize("kind", LOOPS)
def test_data_budget__a_tls_session_waits_unread(
        kind: str, sqlite_url: str, cert: ServerCert) -> None:
    """The data budget pauses a TLS session's reading as it does a plain one's:
    past the budget, a later message is not read (nor answered) until the one
    that entered DATA first is stored."""
    line = b"x" * 76 + b"\r\n"
    first_half, second_half = line * 1000, line * 1000  # 78 KB each
    later = MAIL + line * 3000  # 234 KB, sent whole
    smtp = _smtp(cert, data_in_flight_bytes=64 * 1024)
    with served(kind, sqlite_url, smtp=smtp, intake={"max_message_bytes": 400_000}) as server:
        gateway = server.gateway
        assert gateway.smtps is not None
        port, budget = gateway.smtps_port, gateway.smtps.budget
        with smtplib.SMTP_SSL("127.0.0.1", port, timeout=10, context=cert.client()) as first:
            first.ehlo()
            first.mail("a@example.com")
            first.rcpt("support@localhost")
            first.putcmd("data")
            assert first.getreply()[0] == 354
            first.send(MAIL + first_half)  # in DATA first, over the budget, and stalled
            until(lambda: budget.held > 64 * 1024)

            answers: list[dict[str, Any]] = []

            def send_later() -> None:
                with smtplib.SMTP_SSL("127.0.0.1", port, timeout=10,
                                      context=cert.client()) as client:
                    answers.append(client.sendmail("a@example.com", ["support@localhost"],
                                                   later))

            sender = threading.Thread(target=send_later)
            sender.start()
            until(lambda: budget.holds == 1)
            time.sleep(0.3)
            assert answers == [] and server.items() == []  # held, not read to its end
            first.send(second_half + b".\r\n")
            assert first.getreply()[0] == 250
            sender.join(10)
            assert answers == [{}]
        assert len(server.items()) == 2
        until(lambda: budget.held == 0)


@pytest.mark.parametrize("kind", LOOPS)
def test_shutdown__closes_connections_in_their_handshake(
        kind: str, sqlite_url: str, cert: ServerCert) -> None:
    with served(kind, sqlite_url, smtp=_smtp(cert)) as server:
        gateway = server.gateway
        smtps = gateway.smtps
        assert smtps is not None
        implicit = socket.create_connection(("127.0.0.1", gateway.smtps_port), timeout=5)
        starttls = socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=5)
        with implicit, starttls:
            _read_line(starttls)
            starttls.sendall(b"STARTTLS\r\n")
            assert _read_line(starttls).startswith(b"220 ")
            until(lambda: smtps.connections.open == 1)
            began = time.monotonic()
            server.stop(grace=3.0)
            assert time.monotonic() - began < 2.5  # no transaction to wait for
            assert _closed(implicit) and _closed(starttls)


# -- the certificate reload on SIGHUP, in `intake serve` -------------------------------


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


def _presented(port: int, cert: ServerCert) -> int | None:
    """The serial of the certificate the smtps port presents, if `cert`'s CA signed it."""
    try:
        with smtplib.SMTP_SSL("127.0.0.1", port, timeout=5, context=cert.client()) as client:
            sock = client.sock
            assert isinstance(sock, ssl.SSLSocket)
            return serial_of(sock.getpeercert())
    except ssl.SSLCertVerificationError:
        return None


def test_reload__sighup_new_certificate_for_new_sessions_bad_files_keep_the_old(
        tmp_path: Path, sqlite_url: str, cert: ServerCert) -> None:
    tls_port = free_port()
    config = write_config(tmp_path / "intake.toml", sqlite_url)
    with config.open("a") as out:
        out.write(f'[process]\ncount = 1\n[smtp]\ntls_listen = "127.0.0.1:{tls_port}"\n'
                  f'[smtp.tls]\ncertificate = "{cert.certificate}"\nkey = "{cert.key}"\n')
    server = ServeProcess(config, tmp_path / "serve.log")
    server.start()  # the SMTP port takes connections; smtps is opened right after it
    try:
        until(lambda: _listening(tls_port))
        assert _presented(tls_port, cert) == cert.serial
        old = smtplib.SMTP_SSL("127.0.0.1", tls_port, timeout=10, context=cert.client())
        with old:
            old.ehlo()
            renewed = issue(tmp_path, name="renewed")
            write(renewed, cert.certificate, cert.key)  # over the files [smtp.tls] names
            server.signal(signal.SIGHUP)
            assert until(lambda: _presented(tls_port, renewed)) == renewed.serial
            assert _presented(tls_port, cert) is None
            # STARTTLS on the SMTP port presents the new one too.
            with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
                client.starttls(context=renewed.client())
                assert _tls_of(client)["version"] == "TLSv1.3"
            # The session opened before goes on with its certificate.
            assert old.sendmail("a@example.com", ["support@localhost"], MAIL) == {}
            old_sock = old.sock
            assert isinstance(old_sock, ssl.SSLSocket)
            assert serial_of(old_sock.getpeercert()) == cert.serial

        cert.key.write_text("-----BEGIN PRIVATE KEY-----\nhalf written\n")
        server.signal(signal.SIGHUP)
        until(lambda: "TLS certificate not reloaded" in server.log_text())
        assert _presented(tls_port, renewed) == renewed.serial
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()
    log = server.log_text()
    assert "TLS certificate reloaded" in log and "Traceback" not in log
    assert f"smtps 127.0.0.1:{tls_port}" in log  # the ready line names it
