"""A DNS server for tests: authoritative for whatever the test puts in it,
on 127.0.0.1 and an ephemeral port (UDP, and TCP on the same port for
answers too large for UDP). Packets are dnslib's; the server is an asyncio
loop in a thread of its own, so a test's event loop (and its lag) is not the
server's.

Per name it can answer SERVFAIL or not answer at all, and every answer can be
delayed (`delay`). It counts the questions it was asked (`queries`).
Names not in it are NXDOMAIN; a name with other types only is NODATA; both
with an SOA whose minimum is `negative_ttl`.

`DnsServerProcess`: the same server in a process of its own, for tests that
measure their own event loop with no server thread competing for the GIL.

`DkimKey` (`dkim_key()`): an RSA key made in the test, published as a DKIM key
record, signing (dkimpy's `sign`) and ARC-sealing (`arc_sign`) messages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import select
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, SOA, TXT, A, DNSLabel, DNSRecord

TIMEOUT = "timeout"
SERVFAIL = "servfail"
SLOW = "slow"  # answered, `slow_delay` seconds late
_MAX_CNAME_HOPS = 20
_PLAIN_UDP = 512


def _name(name: str) -> str:
    return name.lower().rstrip(".")


def _chunks(text: str | bytes) -> list[bytes]:
    """A TXT record's text as character-strings of at most 255 bytes."""
    data = text.encode() if isinstance(text, str) else text
    return [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]


class DnsServer:
    def __init__(self, negative_ttl: int = 60) -> None:
        self.negative_ttl = negative_ttl
        self.delay = 0.0
        self.slow_delay = 0.25
        self.queries: list[tuple[str, str]] = []
        self._records: dict[tuple[str, str], list[tuple[object, int]]] = {}
        self._behaviour: dict[str, str] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dns-server",
                                        daemon=True)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # -- the zone --------------------------------------------------------------

    def add(self, name: str, rdtype: str, rdata: object, ttl: int = 300) -> None:
        with self._lock:
            self._records.setdefault((_name(name), rdtype), []).append((rdata, ttl))

    def txt(self, name: str, *texts: str | bytes, ttl: int = 300) -> None:
        """One TXT record per text (split into 255-byte strings)."""
        for text in texts:
            self.add(name, "TXT", TXT(_chunks(text)), ttl)

    def a(self, name: str, *addresses: str, ttl: int = 300) -> None:
        for address in addresses:
            self.add(name, "A", A(address), ttl)

    def aaaa(self, name: str, *addresses: str, ttl: int = 300) -> None:
        for address in addresses:
            self.add(name, "AAAA", AAAA(address), ttl)

    def mx(self, name: str, *exchanges: tuple[int, str], ttl: int = 300) -> None:
        for preference, exchange in exchanges:
            self.add(name, "MX", MX(exchange, preference), ttl)

    def ptr(self, name: str, target: str, ttl: int = 300) -> None:
        self.add(name, "PTR", PTR(target), ttl)

    def cname(self, name: str, target: str, ttl: int = 300) -> None:
        self.add(name, "CNAME", CNAME(target), ttl)

    def remove(self, name: str) -> None:
        with self._lock:
            for key in [k for k in self._records if k[0] == _name(name)]:
                del self._records[key]

    def behave(self, name: str, how: str | None) -> None:
        """TIMEOUT: never answer questions about `name`; SERVFAIL; SLOW: answer
        `slow_delay` seconds late; None: normal."""
        with self._lock:
            if how is None:
                self._behaviour.pop(_name(name), None)
            else:
                self._behaviour[_name(name)] = how

    def count(self, name: str | None = None, rdtype: str | None = None) -> int:
        with self._lock:
            return sum(1 for n, t in self.queries
                       if (name is None or n == _name(name)) and (rdtype is None or t == rdtype))

    def reset_counts(self) -> None:
        with self._lock:
            self.queries.clear()

    # -- running ---------------------------------------------------------------

    @property
    def address(self) -> str:
        """host:port, as [sender_auth] nameservers takes it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)

    def stop(self) -> None:
        async def close() -> None:
            if self._udp is not None:
                self._udp.close()
            if self._tcp is not None:
                self._tcp.close()
            for writer in list(self._clients):  # connections a client left open
                writer.close()
            for task in list(self._tasks):
                task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        server = self
        for _attempt in range(20):  # the TCP port of the same number may be taken
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(server), local_addr=("127.0.0.1", 0), family=socket.AF_INET)
            port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", port)
            except OSError:
                udp.close()
                continue
            self._udp, self.port = udp, port
            return
        raise RuntimeError("no UDP and TCP port pair free on 127.0.0.1")

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = await self._respond(await reader.readexactly(size), tcp=True)
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _respond(self, packet: bytes, *, tcp: bool) -> bytes | None:
        try:
            request = DNSRecord.parse(packet)
        except Exception:
            return None
        name = _name(str(request.q.qname))
        rdtype = QTYPE[request.q.qtype]
        with self._lock:
            self.queries.append((name, rdtype))
            how = self._behaviour.get(name)
        if self.delay or how == SLOW:
            await asyncio.sleep(self.delay + (self.slow_delay if how == SLOW else 0.0))
        if how == TIMEOUT:
            return None
        reply = request.reply()
        if how == SERVFAIL:
            reply.header.rcode = RCODE.SERVFAIL
            return bytes(reply.pack())
        self._answer(reply, name, rdtype)
        data = bytes(reply.pack())
        limit = _PLAIN_UDP
        for extra in request.ar:
            if extra.rtype == QTYPE.OPT:
                limit = max(limit, extra.rclass)
        if not tcp and len(data) > limit:
            truncated = request.reply()
            truncated.header.tc = 1
            return bytes(truncated.pack())
        return data

    def _answer(self, reply: DNSRecord, name: str, rdtype: str) -> None:
        with self._lock:
            records = dict(self._records)
        current, seen = name, 0
        while seen < _MAX_CNAME_HOPS:
            found = records.get((current, rdtype), [])
            if found:
                for rdata, ttl in found:
                    reply.add_answer(RR(current, QTYPE.reverse[rdtype], rdata=rdata, ttl=ttl))
                return
            alias = records.get((current, "CNAME"))
            if not alias or rdtype == "CNAME":
                break
            target, ttl = alias[0]
            reply.add_answer(RR(current, QTYPE.CNAME, rdata=target, ttl=ttl))
            current = _name(str(target.label))  # type: ignore[attr-defined]
            seen += 1
        else:
            return  # a loop: the chain as far as it went, as a real server might
        if not any(key[0] == current for key in records):
            reply.header.rcode = RCODE.NXDOMAIN
        zone = ".".join(current.split(".")[-2:])
        reply.add_auth(RR(zone, QTYPE.SOA, ttl=self.negative_ttl, rdata=SOA(
            DNSLabel(f"ns.{zone}"), DNSLabel(f"hostmaster.{zone}"),
            (1, 3600, 600, 86400, self.negative_ttl))))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # Each question in a task of its own, so a delayed one holds up no other.
        task = asyncio.get_running_loop().create_task(self._reply(data, addr))
        self._server._tasks.add(task)
        task.add_done_callback(self._server._tasks.discard)

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self._server._respond(data, tcp=False)
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)



# -- in a process of its own ---------------------------------------------------

# (name, type, value): TXT text, an address, or "preference exchange" for MX.
Zone = list[tuple[str, str, str]]


def _load(server: DnsServer, zone: Zone) -> None:
    for name, rdtype, value in zone:
        if rdtype == "TXT":
            server.txt(name, value)
        elif rdtype == "MX":
            preference, exchange = value.split()
            server.mx(name, (int(preference), exchange))
        else:
            {"A": server.a, "AAAA": server.aaaa}[rdtype](name, value)


class DnsServerProcess:
    """`python -m tests.dns_server` holding `zone`, answering `delay` late.
    Use as a context manager; `queries` is the count it reported on exit."""

    def __init__(self, zone: Zone, delay: float = 0.0) -> None:
        self._spec = json.dumps({"zone": zone, "delay": delay})
        self._process: subprocess.Popen[str] | None = None
        self.address = ""
        self.queries = -1

    def __enter__(self) -> DnsServerProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.dns_server"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(self._spec + "\n")
        self._process.stdin.flush()
        self.address = f"127.0.0.1:{int(_line(self._process.stdout, 30))}"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None and self._process.stdin is not None
        assert self._process.stdout is not None
        try:
            self._process.stdin.close()  # the server's signal to stop and report
            self.queries = int(_line(self._process.stdout, 10))
            self._process.wait(timeout=10)
        finally:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait(timeout=10)


def _line(stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError("the DNS server process said nothing")
    return stream.readline().strip()


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    server = DnsServer()
    server.delay = spec["delay"]
    _load(server, spec["zone"])
    server.start()
    print(server.port, flush=True)
    sys.stdin.read()  # until the parent closes it
    print(server.count(), flush=True)
    server.stop()


# -- DKIM keys for tests: made here, published in a DnsServer ------------------


@dataclass(frozen=True)
class DkimKey:
    """An RSA key pair: the private key as dkimpy signs with it, the public one
    as a DKIM key record's p= (RFC 6376 3.6.1)."""

    private_pem: bytes
    public_b64: str

    def record(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.public_b64}"

    def publish(self, server: DnsServer, selector: str, domain: str) -> None:
        server.txt(f"{selector}._domainkey.{domain}", self.record())

    def sign(self, message: bytes, selector: str, domain: str,
             canonicalize: tuple[bytes, bytes] = (b"relaxed", b"simple"),
             length: bool = False) -> bytes:
        """`message` with a DKIM-Signature of `domain` on top."""
        header = dkim.sign(message, selector.encode(), domain.encode(), self.private_pem,
                           include_headers=[b"from", b"to", b"subject", b"message-id"],
                           canonicalize=canonicalize, length=length)
        return bytes(header) + message

    def seal(self, message: bytes, selector: str, domain: str, authserv_id: str) -> bytes:
        """`message` with the next ARC set of `domain` on top; `message` must
        carry an Authentication-Results header of `authserv_id`."""
        headers = dkim.arc_sign(message, selector.encode(), domain.encode(),
                                self.private_pem, authserv_id.encode())
        return b"".join(headers) + message


@functools.cache
def dkim_key(bits: int = 2048) -> DkimKey:
    """A key made once per test run and size (2048 bits takes a while)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return DkimKey(private, base64.b64encode(public).decode("ascii"))


if __name__ == "__main__":
    main()
