"""Reading a form post: streamed, bounded, and refused as soon as a limit is passed.

A post is streamed through a push parser (the `multipart` package), 64 KiB at
a time: each file goes into a spool (memory up to 256 KiB, then a temporary
file) while its sha256 and size are counted, and a file past its limit, of a
type the form does not take, or one too many is refused as soon as that is
known. A urlencoded post is held whole, bounded by what its fields can hold.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import unquote_to_bytes

from aiohttp import web
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from gateway.http.problems import Problem
from parsers.api_request import FieldProblem
from parsers.forms import TOKEN_FIELD, FormSpec, UploadedFile, too_long

# Files stay in memory up to this size, then spill to a temporary file.
SPOOL_IN_MEMORY = 256 * 1024
READ_BYTES = 64 * 1024
# Text parts are read up to this many bytes per allowed character (UTF-8).
BYTES_PER_CHAR = 4
UNKNOWN_FIELD_BYTES = 4096


class Refused(Problem):
    """A post that is not taken: its problem, and the reason it is counted under."""

    def __init__(self, status: int, reason: str, detail: str,
                 problems: list[FieldProblem] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, detail, errors=problems or [], headers=headers,
                         extra={"reason": reason})
        self.reason = reason  # the counter's name: invalid, honeypot, token, too_large, ...
        self.problems = list(problems or [])


def size_text(count: int) -> str:
    return f"{count / 1024 / 1024:.0f} MB" if count >= 1024 * 1024 else f"{count} bytes"


@dataclass
class Spooled:
    field: str
    filename: str
    content_type: str
    spool: IO[bytes]
    size: int = 0
    sha256: str = ""

    def uploaded(self) -> UploadedFile:
        return UploadedFile(field=self.field, filename=self.filename,
                            content_type=self.content_type, size=self.size, sha256=self.sha256)


@dataclass
class Post:
    values: dict[str, list[str]] = field(default_factory=dict)
    files: list[Spooled] = field(default_factory=list)

    def close(self) -> None:
        for spooled in self.files:
            spooled.spool.close()


def _too_large(limit: int) -> Refused:
    return Refused(413, "too_large", f"the form data must be at most {limit} bytes in all")


def _text_limit(spec: FormSpec, name: str) -> int:
    found = spec.field_named(name)
    if found is not None:
        return found.max_length * BYTES_PER_CHAR + 16
    return UNKNOWN_FIELD_BYTES


def _kept(spec: FormSpec, name: str) -> bool:
    """A field of the form, or one of the two hidden ones the checks read."""
    return spec.field_named(name) is not None or name in (TOKEN_FIELD, spec.honeypot)


def _decode(spec: FormSpec, name: str, raw: bytes, post: Post) -> None:
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(f"/{name}", "this field is not valid UTF-8 text") from None
    post.values.setdefault(name, []).append(value)


class _Segment:
    """Where one part's bytes go: a bounded buffer for text, a spool for a file."""

    def __init__(self, spec: FormSpec, post: Post, part: MultipartSegment) -> None:
        self.spec, self.post = spec, post
        self.name = part.name or ""
        self.filename = part.filename
        self.pointer = f"/{self.name}"
        self.text = bytearray()
        self.file: Spooled | None = None
        self.digest = hashlib.sha256()
        if self.filename is None:
            self.limit = _text_limit(spec, self.name)
            return
        found = spec.field_named(self.name)
        if found is None or found.kind != "file":
            raise _invalid(self.pointer, "this is not a file field of this form")
        kind = (part.content_type or "application/octet-stream").lower()
        if self.filename and not spec.allows_type(kind):
            # Refused before a byte of it is read.
            raise _invalid(self.pointer, f"{self.filename}: files of type {kind} are not "
                           f"accepted (accepted: {', '.join(spec.file_types)})")
        if self.filename and len(post.files) >= spec.max_files:
            raise _invalid(self.pointer, f"at most {spec.max_files} files may be sent")
        self.file = Spooled(self.name, self.filename, kind,
                             tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY))
        post.files.append(self.file)

    def add(self, chunk: bytes) -> None:
        if self.file is None:
            self.text += chunk
            if len(self.text) > self.limit:
                raise _over_length(self.spec, self.name)
            return
        self.file.size += len(chunk)
        if self.file.size > self.spec.max_file_bytes:
            name = self.filename or "the file"
            raise Refused(413, "too_large", f"{name} is larger than "
                          f"{self.spec.max_file_bytes} bytes", [FieldProblem(
                              self.pointer, f"{name} is larger than the limit of "
                                            f"{size_text(self.spec.max_file_bytes)}")])
        self.digest.update(chunk)
        self.file.spool.write(chunk)

    def end(self) -> None:
        if self.file is not None:
            if not self.filename and not self.file.size:
                # A file input left empty: browsers send a nameless, empty part.
                self.post.files.remove(self.file)
                self.file.spool.close()
            elif not self.filename:
                raise _invalid(self.pointer, "a file was sent without a file name")
            else:
                self.file.sha256 = self.digest.hexdigest()
        elif _kept(self.spec, self.name):
            _decode(self.spec, self.name, bytes(self.text), self.post)
        # Any other field is read (within its limit) and dropped.


def _invalid(pointer: str, detail: str) -> Refused:
    return Refused(422, "invalid", "the form has invalid fields", [FieldProblem(pointer, detail)])


def _over_length(spec: FormSpec, name: str) -> Refused:
    found = spec.field_named(name)
    return _invalid(f"/{name}", too_long(found.max_length) if found
                    else "this field is too long")


async def _read_multipart(request: web.Request, spec: FormSpec, post: Post) -> None:
    """Stream the body through the multipart parser (the `multipart` package: a
    push parser that holds no more than the chunk it is given)."""
    boundary = parse_options_header(request.headers.get("Content-Type", ""))[1].get("boundary")
    if not boundary:
        raise Refused(400, "broken", "multipart/form-data needs a boundary parameter")
    segment: _Segment | None = None
    read = 0
    try:
        parser = PushMultipartParser(
            boundary, content_length=request.content_length or -1,
            max_segment_count=len(spec.fields) + spec.max_files + 8)
        with parser:
            async for chunk in request.content.iter_chunked(READ_BYTES):
                read += len(chunk)
                if read > spec.max_body_bytes:
                    raise _too_large(spec.max_body_bytes)
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        if event.disposition != "form-data" or not event.name:
                            raise Refused(400, "broken", "each part of the body needs a "
                                          "Content-Disposition: form-data with a name")
                        segment = _Segment(spec, post, event)
                    elif event is None:
                        assert segment is not None
                        segment.end()
                        segment = None
                    elif segment is not None:
                        segment.add(event)
    except MultipartError as exc:
        raise Refused(400, "broken", f"the multipart body cannot be read: {exc}"[:300]) from None


def _text_budget(spec: FormSpec) -> int:
    """The most a post without files can need: every text field at its limit."""
    fields = [f.name for f in spec.fields if f.kind != "file"]
    return sum(_text_limit(spec, n) * 3 for n in fields) + 2 * UNKNOWN_FIELD_BYTES


async def _read_urlencoded(request: web.Request, spec: FormSpec, post: Post) -> None:
    # Held whole to split it, so bounded by what the fields can hold
    # (percent-encoding triples a byte at most), not by the upload limit.
    limit = min(spec.max_body_bytes, _text_budget(spec))
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    raw = bytearray()
    while chunk := await request.content.read(READ_BYTES):
        raw += chunk
        if len(raw) > limit:
            raise _too_large(limit)
    for pair in bytes(raw).split(b"&"):
        if not pair:
            continue
        key, _, value = pair.partition(b"=")
        try:
            name = unquote_to_bytes(key.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "broken", "a field name is not valid UTF-8") from None
        if not _kept(spec, name):
            continue
        text = unquote_to_bytes(value.replace(b"+", b" "))
        if len(text) > _text_limit(spec, name):
            raise _over_length(spec, name)
        _decode(spec, name, text, post)


async def read_post(request: web.Request, spec: FormSpec) -> Post:
    if request.content_length is not None and request.content_length > spec.max_body_bytes:
        raise _too_large(spec.max_body_bytes)
    post = Post()
    try:
        if request.content_type == "multipart/form-data":
            await _read_multipart(request, spec, post)
        elif request.content_type == "application/x-www-form-urlencoded":
            await _read_urlencoded(request, spec, post)
        else:
            raise Refused(415, "unsupported", "send the form as multipart/form-data or "
                          "application/x-www-form-urlencoded")
    except BaseException:
        post.close()
        raise
    return post
