"""The SMTP edge's server TLS: the context made from `[smtp.tls]`, and its reload.

One context serves STARTTLS on the SMTP and LMTP listeners and the implicit-TLS
listener (`tls_listen`). It is Python's server context (forward-secret AEAD
ciphers first, the server's order, no compression) with TLS 1.2 at least and no
renegotiation: a TLS 1.2 client could otherwise make us redo a handshake's
costly half as often as it likes on one connection.

The files are checked at start: one that cannot be read, holds no PEM
certificate or key, a key that does not match the certificate or needs a
passphrase is a `ConfigError` naming the file, so the gateway does not start
half secured. SIGHUP (`ServerTls.reload`) reads the same paths into a fresh
context and swaps it in only once it has loaded whole: a renewal caught half
written, or a broken key, logs an error and the old certificate stays in use.
Each session takes the context in force when it is accepted, so sessions
already open keep theirs and new ones present the new certificate. Paths
changed in the configuration file take effect at the next start.
"""

from __future__ import annotations

import hashlib
import logging
import re
import ssl
from pathlib import Path

from domain.errors import ConfigError
from gateway.config.sections import TlsSection

log = logging.getLogger("intake.tls")

_PEM_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----", re.DOTALL)
_PEM_KEY = re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")


class _Encrypted(Exception):
    """The key asked for a passphrase (which a gateway started unattended has not)."""


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal: start-up, or a
    # SIGHUP, would hang on an encrypted key instead of saying so.
    raise _Encrypted


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ConfigError(f"smtp.tls.{what}: cannot read {path}: "
                          f"{exc.strerror or exc}") from None


def fingerprint(certificate_pem: str) -> str:
    """SHA-256 of the first certificate in a PEM text, as `AB:CD:...` (what
    `openssl x509 -fingerprint -sha256` prints): which certificate is in use."""
    found = _PEM_CERTIFICATE.search(certificate_pem)
    if found is None:
        raise ValueError("no PEM certificate")
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(found.group(0))).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def server_context(section: TlsSection) -> tuple[ssl.SSLContext, str]:
    """A server context with `section`'s certificate chain and key, and the
    certificate's fingerprint; `ConfigError` if the files will not do."""
    certificate, key = section.certificate, section.key
    pem = _read(certificate, "certificate")
    if _PEM_CERTIFICATE.search(pem) is None:
        raise ConfigError(f"smtp.tls.certificate: {certificate} holds no PEM certificate")
    if _PEM_KEY.search(_read(key, "key")) is None:
        raise ConfigError(f"smtp.tls.key: {key} holds no PEM private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
                        | ssl.OP_CIPHER_SERVER_PREFERENCE)
    try:
        context.load_cert_chain(certificate, key, password=_no_passphrase)
    except _Encrypted:
        raise ConfigError(f"smtp.tls.key: {key} is encrypted; the key must be stored "
                          f"without a passphrase (readable by this user only)") from None
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            reason = "the key does not belong to the certificate"
        raise ConfigError(f"smtp.tls: certificate {certificate} and key {key} cannot be "
                          f"used: {reason}") from None
    except OSError as exc:  # replaced between our read and OpenSSL's
        raise ConfigError(f"smtp.tls: cannot read {certificate} or {key}: "
                          f"{exc.strerror or exc}") from None
    return context, fingerprint(pem)


class ServerTls:
    """The context in force; `reload` swaps in a new one only if it loads."""

    def __init__(self, section: TlsSection, context: ssl.SSLContext, fingerprint: str) -> None:
        self.section = section
        self.context = context
        self.fingerprint = fingerprint
        self.reloads = 0  # good reloads, and failed ones: for tests and health
        self.failed_reloads = 0

    @classmethod
    def load(cls, section: TlsSection) -> ServerTls:
        """The context for start-up: a `ConfigError` stops the gateway."""
        context, print_ = server_context(section)
        log.info("TLS certificate %s (sha256 %s)", section.certificate, print_)
        return cls(section, context, print_)

    def reload(self) -> bool:
        """Read the files again (SIGHUP); False, logged, if the old ones stay."""
        try:
            context, print_ = server_context(self.section)
        except ConfigError as exc:
            self.failed_reloads += 1
            log.error("TLS certificate not reloaded, the one in use stays (sha256 %s): %s",
                      self.fingerprint, exc)
            return False
        self.context, self.fingerprint = context, print_
        self.reloads += 1
        log.info("TLS certificate reloaded: %s (sha256 %s)", self.section.certificate, print_)
        return True


def described(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, str] | None:
    """What is recorded of a session's TLS (None: not over TLS)."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return {"version": ssl_object.version() or "", "cipher": cipher[0] if cipher else ""}
