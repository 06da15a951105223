"""Caps that bound the time and memory of one parse, whatever the input.

Python's own header and MIME code is quadratic on some inputs (long parameter
lists, huge address lists, deep nesting); every cap below turns such input
into a recorded defect instead of a stalled worker.
"""

from __future__ import annotations

MAX_HEADER_BLOCK_BYTES = 1024 * 1024
"""Header section of one entity; the rest is treated as body."""

MAX_HEADER_FIELDS = 2000
"""Header fields kept per entity (Received chains rarely pass 100)."""

MAX_FIELD_BYTES = 64 * 1024
"""One header field's value; RFC 5322 section 2.1.1 asks for 998 per line."""

MAX_ADDRESSES = 1000
"""Addresses kept from one address-list field."""

MAX_PARAMETERS = 64
"""Parameters kept from one Content-Type or Content-Disposition."""

MAX_MIME_DEPTH = 16
"""Nesting of multipart and message/rfc822 entities."""

MAX_PARTS = 1000
"""MIME entities walked in one message, nested ones included."""

MAX_BOUNDARY_SCAN_BYTES = 64 * 1024 * 1024
"""Bytes searched for boundaries over all nesting levels (nested bodies are searched again)."""

MAX_REFERENCES = 500
"""Message-IDs kept from References."""

MAX_HTML_TO_TEXT_CHARS = 256 * 1024
"""HTML rendered to text (inscriptis does about 2.5 MB/s); a longer document is cut first."""

MAX_QUOTE_SCAN_CHARS = 256 * 1024
"""Text examined for quotes; past it the text is kept as is."""

MAX_QUOTE_SCAN_LINES = 4000
"""Lines examined for quotes (each may be tried against several header patterns)."""

MAX_DETECT_BYTES = 64 * 1024
"""Sample given to charset detection, the slow last resort."""

MAX_UUENCODE_BLOCKS = 64
"""uuencoded files extracted from one text part."""

MAX_TNEF_ATTACHMENTS = 256
"""Attachments unpacked from one winmail.dat."""

MAX_TNEF_OBJECTS = 4096
"""Attributes in one winmail.dat; more and it is kept packed (tnefparse is quadratic in them)."""

MAX_DEFECTS = 200
"""Defects recorded on one result; the rest are counted in one line."""
