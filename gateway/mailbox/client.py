"""An IMAP session for the fetcher, on aioimaplib.

aioimaplib is the asyncio IMAP4rev1 client on PyPI that is kept up (IDLE, MOVE,
UIDPLUS, XOAUTH2, literal handling and command pipelining are its own). Three
things it lacks are added here, small: STARTTLS (the transport is upgraded in
place with `loop.start_tls`), OAUTHBEARER beside its XOAUTH2, and the answer a
client owes to a SASL failure challenge (without it a refused token would hang
until the timeout). Everything a server says is untrusted: numbers are parsed
strictly and a line that does not fit is an `ImapError`, never a crash.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import aioimaplib
from aioimaplib.aioimaplib import (
    CRLF,
    Command,
    FetchCommand,
    IMAP4ClientProtocol,
    literal_data_re,
    quoted,
)

from gateway.config.sections import MailboxSection

# A response line (not a message: those are literals) longer than this is an attack.
MAX_LINE_BYTES = 8 * 1024 * 1024
# Any one literal, whatever the command (a FETCH of messages has its own, lower limit).
MAX_LITERAL_BYTES = 256 * 1024 * 1024
# A FETCH of many bytes may take longer than one command's timeout, not forever.
MIN_BYTES_PER_SECOND = 64 * 1024


class ImapError(Exception):
    """The server refused, said something we cannot read, or went away."""


class AuthFailed(ImapError):
    """The login or token was refused (wrong password, expired token)."""


@dataclass(frozen=True, slots=True)
class Selected:
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True, slots=True)
class Sized:
    uid: int
    size: int
    internal_date: str | None  # RFC 3339


@dataclass(frozen=True, slots=True)
class Body:
    uid: int
    raw: bytes


_NUMBER = re.compile(rb"\b(UIDVALIDITY|UIDNEXT) (\d{1,20})\]")
_EXISTS = re.compile(rb"^(\d{1,20}) EXISTS$")
_FETCH = re.compile(rb"^\d{1,20} FETCH \(")
_UID = re.compile(rb"\bUID (\d{1,20})\b")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d{1,20})\b")
_INTERNAL = re.compile(rb'\bINTERNALDATE "([ !#-~]{1,64})"')
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def encode_folder(name: str) -> str:
    """A folder name as IMAP spells it (modified UTF-7, RFC 3501 5.1.3), quoted."""
    out, pending = [], []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return quoted("".join(out))


def uid_set(uids: Sequence[int]) -> str:
    """Sorted UIDs as an IMAP sequence set with ranges: 1:3,7,9:10."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    start = prev = ordered[0] if ordered else 0
    for uid in ordered[1:]:
        if uid != prev + 1:
            parts.append(f"{start}:{prev}" if start != prev else str(start))
            start = uid
        prev = uid
    if ordered:
        parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


def _int(text: bytes) -> int:
    value = int(text)
    if not 0 <= value < 2**63:
        raise ImapError(f"a number out of range: {value}")
    return value


class _Protocol(IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol, answering a SASL challenge after a refused token,
    and reading what arrives in a loop over offsets: aioimaplib's own reader
    recurses once per line and copies the rest of the data at each line and
    each literal (a server's burst of short lines past Python's recursion
    limit was a crash; a chunk of many small messages, quadratic copying)."""

    challenge: bytes = b""
    # Between our STARTTLS and the server's answer: whatever follows the answer
    # in the same read came in clear (the STARTTLS command-injection class).
    upgrading = False
    injected = False

    def data_received(self, d: bytes) -> None:
        if self.upgrading and self.pending_sync_command is None:
            self.injected = True  # after the STARTTLS answer, before our handshake
            return
        data = self.incomplete_line + d if self.incomplete_line else d
        current = self.current_command
        pos, end = 0, len(data)
        view = memoryview(data)
        while True:
            if current is not None and current.wait_literal_data() and pos < end:
                wanted = current._expected_size - len(current._resp_literal_data)
                taken = min(wanted, end - pos)
                current.append_literal_data(view[pos:pos + taken])
                pos += taken
            if pos >= end:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                keep = current is not None and current.wait_data()
                self.current_command, self.incomplete_line = (current if keep else None), b""
                return
            if current is not None and current.wait_literal_data():
                continue  # more of the literal is to come
            stop = data.find(CRLF, pos)
            if stop < 0:  # a line cut by the read: kept for the next one, bounded
                if end - pos > MAX_LINE_BYTES:
                    raise ImapError(f"the server sent a line of over {MAX_LINE_BYTES} bytes")
                self.current_command, self.incomplete_line = current, data[pos:]
                return
            line = data[pos:stop]
            pos = stop + 2
            command = self._handle_line(line, current)
            if self.upgrading and self.pending_sync_command is None and pos < end:
                self.injected = True
                return
            literal = literal_data_re.match(line)
            if literal:
                size = int(literal.group("size"))
                if command is None:
                    command = Command("NIL", "unused")
                if size > MAX_LITERAL_BYTES and not getattr(command, "limit", None):
                    # (a FETCH of messages checks its own, lower limit)
                    error = ImapError(f"the server announced {size} bytes at once")
                    command._exception = error
                    command.close(b"", "NO")  # its waiter learns at once
                    raise error  # parsing stops here, and the connection is dropped
                command.begin_literal_data(size)
                current = command
            elif command is not None and command.wait_data():
                current = command
            else:
                current = None

    def _continuation(self, line: bytes) -> None:
        command = self.pending_sync_command
        if command is not None and command.name == "AUTHENTICATE":
            # RFC 7628 3.2.3 (OAUTHBEARER) and XOAUTH2: the server says why in a
            # challenge and waits for our (dummy) answer before its NO.
            self.challenge = line[:2000]
            self.transport.write(b"AQ==\r\n" if b"OAUTHBEARER" in str(command).encode()
                                 else b"\r\n")
            return
        super()._continuation(line)


class _Fetch(FetchCommand):  # type: ignore[misc]
    """aioimaplib's FETCH, told whether a reply is complete in constant time: its
    own check joins every line since the last `n FETCH (` at each line, which is
    quadratic in the lines of one reply (most of a 200-message fetch's CPU).
    The same count of parentheses outside literals, kept as lines come."""

    _open = 0
    # The largest message asked for: a server sending a bigger one is cut off,
    # not read into memory whole.
    limit: int | None = None

    def begin_literal_data(self, expected_size: int, literal_data: bytes = b"") -> bytes:
        if self.limit is not None and expected_size > self.limit:
            self._exception = ImapError(f"the server sent {expected_size} bytes where at most "
                                        f"{self.limit} were asked for")
            self.close(b"", "NO")
            raise self._exception  # parsing stops here, and the connection is dropped
        return bytes(super().begin_literal_data(expected_size, literal_data))

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        super().append_to_resp(line, result)
        if isinstance(line, bytes):  # literals arrive as bytearray: not counted
            if self.FETCH_MESSAGE_DATA_RE.match(line):
                self._open = 0
            self._open += line.count(b"(") - line.count(b")")

    def wait_data(self) -> bool:
        return self._open != 0


class _Client(aioimaplib.IMAP4_SSL):  # type: ignore[misc]
    """IMAP4 or IMAP4_SSL (ssl_context None: plain) with our protocol."""

    def create_client(self, host: str, port: int, loop: asyncio.AbstractEventLoop,
                      conn_lost_cb: Callable[[Exception | None], None] | None = None,
                      ssl_context: ssl.SSLContext | None = None) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = _Protocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(local_loop.create_connection(
            lambda: self.protocol, host, port, ssl=ssl_context))


def tls_context(section: MailboxSection) -> ssl.SSLContext:
    """Certificates verified against the system's CAs, or `ca_file` for a private server."""
    context = ssl.create_default_context(cafile=section.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Session:
    """One logged-in connection; every call bounded by the mailbox's timeout."""

    def __init__(self, client: _Client, section: MailboxSection) -> None:
        self._client = client
        self._section = section
        self._timeout = section.timeout_seconds
        self._selected: tuple[str, Selected] | None = None

    @property
    def capabilities(self) -> set[str]:
        return {str(c).upper() for c in self._client.protocol.capabilities}

    @classmethod
    async def open(cls, section: MailboxSection, *, password: str | None = None,
                   token: str | None = None) -> Session:
        """Connect (TLS as configured, certificate verified) and log in with the
        password or the OAuth access token."""
        host, port = section.address
        context = tls_context(section) if section.tls != "none" else None
        client = _Client(host=host, port=port, timeout=section.timeout_seconds,
                         ssl_context=context if section.tls == "implicit" else None)
        session = cls(client, section)
        try:
            await client.wait_hello_from_server()
            if section.tls == "starttls":
                assert context is not None
                await session._starttls(context, host)
            await session._login(password=password, token=token)
        except BaseException as exc:
            await session.close()
            # What the library raises on a greeting or capability it cannot
            # read is the server's fault, reported and retried like any other.
            if isinstance(exc, aioimaplib.AioImapException | ValueError | IndexError):
                raise ImapError(f"the server's answers cannot be read: {exc}"[:300]) from None
            raise
        return session

    async def _starttls(self, context: ssl.SSLContext, host: str) -> None:
        if "STARTTLS" not in self.capabilities:
            raise ImapError("the server does not offer STARTTLS")
        protocol = self._client.protocol
        protocol.upgrading = True  # anything after the OK, in clear, is an attack
        await self._ok(protocol.execute(Command("STARTTLS", protocol.new_tag(),
                                                loop=protocol.loop)), "STARTTLS")
        protocol.upgrading = False
        if protocol.incomplete_line or protocol.injected:
            raise ImapError("the server sent more after its STARTTLS answer, in clear")
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._timeout):
            protocol.transport = await loop.start_tls(protocol.transport, protocol, context,
                                                      server_hostname=host)
            await protocol.capability()  # RFC 3501 6.2.1: forget what was said in clear

    async def _login(self, *, password: str | None, token: str | None) -> None:
        protocol = self._client.protocol
        section = self._section
        if token is None:
            if password is None:
                raise AuthFailed("no password")
            call = protocol.login(section.user, password)
        else:
            mechanism = section.oauth2.mechanism if section.oauth2 else "xoauth2"
            if mechanism == "xoauth2":
                call = protocol.xoauth2(section.user, token)
            else:
                host, port = section.address
                initial = base64.b64encode(
                    f"n,a={section.user},\x01host={host}\x01port={port}\x01"
                    f"auth=Bearer {token}\x01\x01".encode()).decode()
                call = protocol.execute(Command("AUTHENTICATE", protocol.new_tag(),
                                                "OAUTHBEARER", initial, loop=protocol.loop),
                                        scrub=token)
        try:
            async with asyncio.timeout(self._timeout):
                response = await call
        except TimeoutError:
            raise ImapError("no answer to the login in time") from None
        if response.result != "OK":
            why = _text(response.lines[-1] if response.lines else b"")
            challenge = getattr(protocol, "challenge", b"")
            if challenge:
                why += f" ({_challenge(challenge)})"
            raise AuthFailed(f"login refused: {why}")
        protocol.state = aioimaplib.AUTH
        try:
            async with asyncio.timeout(self._timeout):
                await protocol.capability()  # capabilities may grow once logged in
        except TimeoutError:
            raise ImapError("no answer to CAPABILITY in time") from None

    async def _ok(self, call: Any, what: str, seconds: float | None = None) -> Any:
        seconds = self._timeout if seconds is None else seconds
        try:
            async with asyncio.timeout(seconds):
                response = await call
        except TimeoutError:
            raise ImapError(f"no answer to {what} within {seconds:g} s") from None
        except aioimaplib.AioImapException as exc:
            raise ImapError(f"{what}: {exc}") from None
        if response.result != "OK":
            last = response.lines[-1] if response.lines else b""
            raise ImapError(f"{what} refused: {_text(last)}")
        return response

    async def folders(self) -> list[str]:
        """Folder names as the server lists them (modified UTF-7, unquoted)."""
        response = await self._ok(self._client.list('""', '"*"'), "LIST")
        names = []
        for line in response.lines[:-1]:  # "(\\HasNoChildren) "/" INBOX", name last
            if isinstance(line, bytes | bytearray) and line.startswith(b"("):
                tail = bytes(line).rsplit(b" ", 1)[-1] if not line.endswith(b'"') else (
                    bytes(line)[:-1].rsplit(b'"', 1)[-1])
                names.append(_text(tail).strip('"'))
        return names

    async def select(self, folder: str, *, again: bool = False) -> Selected:
        """SELECT a folder; one already selected on this connection is kept
        (its UIDVALIDITY cannot change under a selection) unless `again`."""
        if not again and self._selected is not None and self._selected[0] == folder:
            return self._selected[1]
        self._selected = None
        response = await self._ok(self._client.select(encode_folder(folder)),
                                  f"SELECT {folder!r}")
        numbers: dict[bytes, int] = {}
        exists = 0
        for line in response.lines:
            if not isinstance(line, bytes | bytearray):
                continue
            for name, value in _NUMBER.findall(bytes(line)):
                numbers[name] = _int(value)
            if match := _EXISTS.match(bytes(line)):
                exists = _int(match.group(1))
        if b"UIDVALIDITY" not in numbers:
            raise ImapError(f"SELECT {folder!r}: the server gave no UIDVALIDITY")
        selected = Selected(numbers[b"UIDVALIDITY"], numbers.get(b"UIDNEXT"), exists)
        self._selected = (folder, selected)
        return selected

    async def uids_from(self, first: int, since: date | None = None) -> list[int]:
        """UIDs at or above `first` (and arrived on or after `since`), ascending."""
        criteria = [f"UID {first}:*"]
        if since is not None:
            criteria.append(f"SINCE {since.day}-{_MONTHS[since.month - 1]}-{since.year}")
        response = await self._ok(self._client.uid_search(*criteria, charset=None),
                                  "UID SEARCH")
        found: set[int] = set()
        # aioimaplib gives the SEARCH line without its name; other untagged
        # lines that came meanwhile ("4 EXISTS") have words in them.
        for line in response.lines[:-1]:
            words = bytes(line).split() if isinstance(line, bytes | bytearray) else []
            if all(word.isdigit() for word in words):
                found.update(_int(word) for word in words)
        # `first:*` always names the last message, even below `first` (RFC 3501 6.4.8).
        return sorted(uid for uid in found if uid >= first)

    async def sizes(self, uids: Sequence[int], *, dates: bool = True) -> list[Sized]:
        """Each message's size, and with `dates` its INTERNALDATE (only an
        archive import keeps it: the server's work and ours otherwise)."""
        if not uids:
            return []
        items = "(UID RFC822.SIZE INTERNALDATE)" if dates else "(UID RFC822.SIZE)"
        response = await self._ok(self._fetch(uids, items), "UID FETCH sizes")
        found = []
        for line in response.lines:
            if isinstance(line, bytes | bytearray) and _FETCH.match(line):
                uid, size = _UID.search(line), _SIZE.search(line)
                if uid is None or size is None:
                    continue  # news of another client's change (FLAGS): not ours
                internal = _INTERNAL.search(line)
                found.append(Sized(_int(uid.group(1)), _int(size.group(1)),
                                   _internal_date(internal.group(1)) if internal else None))
        wanted = set(uids)
        return sorted((s for s in found if s.uid in wanted), key=lambda s: s.uid)

    async def bodies(self, uids: Sequence[int], *, header_limit: int | None = None,
                     largest: int | None = None, expected: int = 0) -> list[Body]:
        """The raw bytes of these messages, exactly as stored on the server
        (BODY.PEEK: fetching does not mark them seen); with `header_limit`,
        only the first so many bytes of each one's header section. A message
        over `largest` bytes (or `header_limit`) is an ImapError. `expected`:
        the bytes asked for, which may take longer than one command's timeout
        (at least MIN_BYTES_PER_SECOND)."""
        if not uids:
            return []
        part = "BODY.PEEK[]" if header_limit is None else f"BODY.PEEK[HEADER]<0.{header_limit}>"
        response = await self._ok(self._fetch(uids, f"(UID {part})", header_limit or largest),
                                  "UID FETCH", self._timeout + expected / MIN_BYTES_PER_SECOND)
        found: list[Body] = []
        lines = response.lines
        for index, line in enumerate(lines):
            if not (isinstance(line, bytes) and _FETCH.match(line) and line.endswith(b"}")):
                continue
            literal = lines[index + 1] if index + 1 < len(lines) else None
            if not isinstance(literal, bytearray | bytes):
                raise ImapError("UID FETCH: a reply without its message")
            closing = lines[index + 2] if index + 2 < len(lines) else b""
            uid = _UID.search(line) or (_UID.search(closing) if isinstance(
                closing, bytes) else None)
            if uid is None:
                raise ImapError("UID FETCH: a message without its UID")
            found.append(Body(_int(uid.group(1)), bytes(literal)))
        wanted = set(uids)
        return sorted((b for b in found if b.uid in wanted), key=lambda b: b.uid)

    def _fetch(self, uids: Sequence[int], parts: str, limit: int | None = None) -> Any:
        protocol = self._client.protocol
        command = _Fetch(protocol.new_tag(), uid_set(uids), parts, prefix="UID",
                         loop=protocol.loop)
        command.limit = limit
        return protocol.execute(command)

    async def move(self, uids: Sequence[int], folder: str) -> None:
        target = encode_folder(folder)
        if "MOVE" in self.capabilities:
            await self._ok(self._client.uid("move", uid_set(uids), target), "UID MOVE")
            return
        await self._ok(self._client.uid("copy", uid_set(uids), target), "UID COPY")
        await self.delete(uids)

    async def mark_seen(self, uids: Sequence[int]) -> None:
        await self._ok(self._client.uid("store", uid_set(uids), "+FLAGS.SILENT", r"(\Seen)"),
                       "UID STORE")

    async def delete(self, uids: Sequence[int]) -> None:
        await self._ok(self._client.uid("store", uid_set(uids), "+FLAGS.SILENT",
                                        r"(\Deleted)"), "UID STORE")
        if "UIDPLUS" in self.capabilities:
            await self._ok(self._client.uid("expunge", uid_set(uids)), "UID EXPUNGE")
        else:  # expunges others' \Deleted mail too: the only way without UIDPLUS
            await self._ok(self._client.expunge(), "EXPUNGE")

    async def create(self, folder: str) -> None:
        """Create a folder; one that exists already is fine."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.create(encode_folder(folder))
        except TimeoutError:
            raise ImapError("no answer to CREATE in time") from None

    async def idle(self, seconds: float) -> bool:
        """Wait in IDLE up to `seconds` for news of the selected folder; True
        when the server told of something (new mail, expunges, flags)."""
        client = self._client
        try:
            async with asyncio.timeout(self._timeout):
                waiting = await client.idle_start(timeout=seconds)
        except (TimeoutError, aioimaplib.AioImapException) as exc:
            raise ImapError(f"IDLE: {exc or 'no answer'}") from None
        news = False
        try:
            push = await client.wait_server_push(timeout=seconds + 1)
            news = isinstance(push, list) and any(
                isinstance(line, bytes) and (line.endswith((b"EXISTS", b"RECENT")))
                for line in push)
        except TimeoutError:
            pass
        finally:
            client.idle_done()
            try:
                async with asyncio.timeout(self._timeout):
                    await waiting
            except TimeoutError:
                raise ImapError("no answer to DONE (IDLE) in time") from None
        return news

    async def noop(self) -> None:
        await self._ok(self._client.noop(), "NOOP")

    async def close(self) -> None:
        """Log out politely if possible; the connection is closed either way."""
        protocol = self._client.protocol
        try:
            if protocol.state in (aioimaplib.AUTH, aioimaplib.SELECTED, aioimaplib.NONAUTH):
                async with asyncio.timeout(2):
                    await self._client.logout()
        except Exception:  # noqa: BLE001, S110 - it is going away either way
            pass
        finally:
            if protocol.transport is not None:
                protocol.transport.close()


def _internal_date(value: bytes) -> str | None:
    """IMAP's INTERNALDATE ("05-Dec-2026 03:24:06 +0000", the day maybe
    space-padded) as RFC 3339 text; None when it is not one."""
    try:
        moment = datetime.strptime(value.decode("ascii").strip(), "%d-%b-%Y %H:%M:%S %z")
    except (UnicodeDecodeError, ValueError):
        return None
    return moment.isoformat()


def _text(line: bytes | bytearray) -> str:
    return re.sub(r"[\x00-\x1f\x7f]+", " ", bytes(line)[:300].decode("utf-8", "replace"))


def _challenge(line: bytes) -> str:
    """What a SASL failure challenge says (base64 JSON: status, scope), readable."""
    payload = line[1:].strip()
    try:
        return _text(base64.b64decode(payload, validate=True))
    except ValueError:
        return _text(payload)
