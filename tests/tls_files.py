"""TLS material made in the test (trustme): a CA, a server certificate for
localhost and 127.0.0.1 written as the PEM files `[smtp.tls]` names, and
client contexts that trust the CA."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509


@dataclass
class ServerCert:
    """A server certificate, its CA, and where its files are."""

    ca: trustme.CA
    leaf: trustme.LeafCert
    certificate: Path
    key: Path

    def section(self) -> dict[str, str]:
        """The `[smtp.tls]` table naming these files."""
        return {"certificate": str(self.certificate), "key": str(self.key)}

    def client(self) -> ssl.SSLContext:
        """A client context that trusts this certificate's CA only (and checks the name)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    @property
    def serial(self) -> int:
        return int(self.leaf_x509.serial_number)

    @property
    def leaf_x509(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.leaf.cert_chain_pems[0].bytes())


def serial_of(peer_cert: dict[str, Any] | None) -> int | None:
    """The serial number in `SSLSocket.getpeercert()`'s answer (hex, zero-padded)."""
    value = (peer_cert or {}).get("serialNumber")
    return int(value, 16) if isinstance(value, str) else None


def issue(directory: Path, *, name: str = "server") -> ServerCert:
    """A new CA and a server certificate from it, written to `directory`."""
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert = ServerCert(ca, leaf, directory / f"{name}.crt", directory / f"{name}.key")
    write(cert, cert.certificate, cert.key)
    return cert


def write(cert: ServerCert, certificate: Path, key: Path) -> None:
    """`cert`'s chain and key written over the files at these paths."""
    certificate.write_bytes(b"".join(pem.bytes() for pem in cert.leaf.cert_chain_pems))
    key.write_bytes(cert.leaf.private_key_pem.bytes())
    key.chmod(0o600)
