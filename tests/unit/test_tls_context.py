"""The server TLS context from [smtp.tls] (gateway/tls.py): what it allows,
what files it refuses and how it says so, and its reload keeping the old
certificate when the new files are bad."""

from __future__ import annotations

import logging
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization

from domain.errors import ConfigError
from gateway.app import build
from gateway.cli import main
from gateway.config.sections import TlsSection
from gateway.processes import reserve_ports
from gateway.tls import ServerTls, server_context
from tests.helpers import make_config
from tests.tls_files import ServerCert, issue, serial_of, write


def _section(cert: ServerCert) -> TlsSection:
    return TlsSection(**cert.section())


def _load(section: TlsSection) -> ssl.SSLContext:
    # In a thread with a deadline: OpenSSL's own passphrase prompt would block.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(server_context, section).result(timeout=10)[0]


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    """A real handshake between the two contexts, in memory; the client's end."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_end = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    server_end = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):  # TLS 1.3 takes two round trips; bounded all the same
        for name, end, out, peer_in in (("client", client_end, c_out, s_in),
                                        ("server", server_end, s_out, c_in)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            return client_end
    raise AssertionError("the handshake did not finish")


def test_context__tls12_at_least_no_renegotiation_no_compression(tmp_path: Path) -> None:
    cert = issue(tmp_path)
    context, fingerprint = server_context(_section(cert))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.verify_mode == ssl.CERT_NONE  # no client certificates asked for
    expected = cert.leaf_x509.fingerprint(hashes.SHA256()).hex().upper()
    assert fingerprint.replace(":", "") == expected
    client_end = _handshake(context, cert.client())
    assert client_end.version() == "TLSv1.3"
    assert serial_of(client_end.getpeercert()) == cert.serial


def tls11_client(cert: ServerCert) -> ssl.SSLContext:
    """A client that offers TLS 1.0 and 1.1 only (OpenSSL allows them at level 0)."""
    client = cert.client()
    client.minimum_version = ssl.TLSVersion.TLSv1
    client.maximum_version = ssl.TLSVersion.TLSv1_1
    client.set_ciphers("DEFAULT:@SECLEVEL=0")
    return client


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_context__refuses_a_client_capped_at_tls11(tmp_path: Path) -> None:
    cert = issue(tmp_path)
    with pytest.raises(ssl.SSLError, match="UNSUPPORTED_PROTOCOL"):
        _handshake(_load(_section(cert)), tls11_client(cert))
    # The client can do TLS 1.1 here: a server that allows it gets it.
    permissive = _load(_section(cert))
    permissive.minimum_version = ssl.TLSVersion.TLSv1
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    assert _handshake(permissive, tls11_client(cert)).version() == "TLSv1.1"


@pytest.mark.parametrize("damage, words", [
    ("missing certificate", "smtp.tls.certificate: cannot read"),
    ("missing key", "smtp.tls.key: cannot read"),
    ("certificate not PEM", "holds no PEM certificate"),
    ("key not PEM", "holds no PEM private key"),
    ("another certificate's key", "the key does not belong to the certificate"),
    ("encrypted key", "is encrypted"),
])
def test_context__bad_files_are_a_config_error_naming_them(
        tmp_path: Path, damage: str, words: str) -> None:
    cert = issue(tmp_path)
    other = issue(tmp_path, name="other")
    if damage == "missing certificate":
        cert.certificate.unlink()
    elif damage == "missing key":
        cert.key.unlink()
    elif damage == "certificate not PEM":
        cert.certificate.write_bytes(cert.leaf_x509.public_bytes(serialization.Encoding.DER))
    elif damage == "key not PEM":
        cert.key.write_text("not a key\n")
    elif damage == "another certificate's key":
        cert.key.write_bytes(other.key.read_bytes())
    else:
        key = serialization.load_pem_private_key(cert.leaf.private_key_pem.bytes(), None)
        cert.key.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase")))
    with pytest.raises(ConfigError) as caught:
        _load(_section(cert))
    assert words in str(caught.value)
    named = cert.key if "key" in damage else cert.certificate
    assert str(named) in str(caught.value)


def test_reload__new_files_swapped_in_bad_ones_keep_the_old(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = issue(tmp_path)
    tls = ServerTls.load(_section(first))
    old_context, old_print = tls.context, tls.fingerprint

    second = issue(tmp_path, name="second")
    write(second, first.certificate, first.key)
    assert tls.reload() is True
    assert tls.context is not old_context and tls.fingerprint != old_print
    assert serial_of(_handshake(tls.context, second.client()).getpeercert()) == second.serial

    renewed = tls.context
    first.key.write_text("-----BEGIN PRIVATE KEY-----\ntruncated\n")
    with caplog.at_level(logging.ERROR, logger="intake.tls"):
        assert tls.reload() is False
    assert tls.context is renewed and tls.failed_reloads == 1
    # Only the error: earlier tests may have set the intake loggers to INFO.
    [record] = [r for r in caplog.records
                if r.name == "intake.tls" and r.levelno >= logging.ERROR]
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert "not reloaded" in record.getMessage() and str(first.key) in record.getMessage()


def test_build__a_bad_certificate_stops_start_up(tmp_path: Path) -> None:
    cert = issue(tmp_path)
    cert.key.unlink()
    config = make_config(f"sqlite+aiosqlite:///{tmp_path}/never.db",
                         smtp={"tls": cert.section()})
    with pytest.raises(ConfigError, match="smtp.tls.key"):
        build(config)


def test_serve__a_bad_certificate_exits_with_a_config_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = issue(tmp_path)
    cert.certificate.write_text("garbage\n")
    config = tmp_path / "intake.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/intake.db"\n'
                      f'[smtp]\nlisten = "127.0.0.1:0"\n[http]\nlisten = "127.0.0.1:0"\n'
                      f'[smtp.tls]\ncertificate = "{cert.certificate}"\nkey = "{cert.key}"\n')
    assert main(["--config", str(config), "serve"]) == 2
    err = capsys.readouterr().err
    assert f"intake: configuration error: smtp.tls.certificate: {cert.certificate}" in err


def test_processes__workers_are_given_one_tls_port(tmp_path: Path) -> None:
    cert = issue(tmp_path)
    config = make_config(f"sqlite+aiosqlite:///{tmp_path}/never.db",
                         smtp={"tls_listen": "127.0.0.1:0", "tls": cert.section()})
    addresses, held = reserve_ports(config)
    try:
        port = int(addresses["INTAKE_TLS_LISTEN"].rpartition(":")[2])
        assert port != 0 and port in {s.getsockname()[1] for s in held}
    finally:
        for sock in held:
            sock.close()
