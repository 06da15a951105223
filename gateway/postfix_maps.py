"""Postfix lookup tables that put Postfix in front of the gateway's LMTP listener.

Postfix relays our domains (`relay_domains`) to the LMTP listener
(`transport_maps`) and accepts only the recipients we accept
(`relay_recipient_maps`): mail for an unknown address is refused at RCPT by
Postfix itself, so it never accepts and then bounces it (backscatter). The
tables are `texthash:` files: Postfix reads them as they are (no `postmap`);
`postfix reload` picks up a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config import Config
from gateway.config.sections import WILDCARD_HOSTS

RELAY_DOMAINS, TRANSPORT, RELAY_RECIPIENTS = "relay_domains", "transport", "relay_recipients"
# Where the printed recipe puts them.
DEFAULT_DIRECTORY = Path("/etc/postfix/intake")


@dataclass(frozen=True)
class PostfixMaps:
    relay_domains: str
    transport: str
    relay_recipients: str

    def files(self) -> dict[str, str]:
        return {RELAY_DOMAINS: self.relay_domains, TRANSPORT: self.transport,
                RELAY_RECIPIENTS: self.relay_recipients}

    def write(self, directory: Path) -> Path:
        """Write the three tables into `directory` (made if missing); its absolute path."""
        directory = directory.absolute()
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in self.files().items():
            (directory / name).write_text(text)
        return directory

    def main_cf(self, directory: Path) -> str:
        """The main.cf settings that use the tables written to `directory`."""
        return "".join(f"{setting} = texthash:{directory / name}\n" for setting, name in (
            ("relay_domains", RELAY_DOMAINS), ("transport_maps", TRANSPORT),
            ("relay_recipient_maps", RELAY_RECIPIENTS)))


def lmtp_nexthop(config: Config, override: str | None = None) -> str:
    """`host:port` Postfix delivers to: the override, else `smtp.lmtp_listen`
    (a wildcard listener is reached on the loopback address)."""
    if override:
        return override
    address = config.lmtp_address
    if address is None:
        raise ValueError("no LMTP listener: set smtp.lmtp_listen (or give --lmtp HOST:PORT)")
    host, port = address
    # A wildcard listener: Postfix must connect to one real address.
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def postfix_maps(config: Config, nexthop: str) -> PostfixMaps:
    """The three tables for the configured addresses and domains."""
    addresses = sorted(set(config.intake.addresses))
    whole = sorted(set(config.intake.domains))
    domains = sorted({a.rpartition("@")[2] for a in addresses} | set(whole))
    lines = {
        RELAY_DOMAINS: [f"{d} OK" for d in domains],
        TRANSPORT: [f"{d} lmtp:inet:{nexthop}" for d in domains],
        # "@domain" accepts every local part of a domain we take whole.
        RELAY_RECIPIENTS: [f"{a} OK" for a in addresses if a.rpartition("@")[2] not in whole]
        + [f"@{d} OK" for d in whole],
    }
    header = "# Made by `intake postfix-maps`; made again when the addresses change.\n"
    text = {name: header + "".join(line + "\n" for line in rows) for name, rows in lines.items()}
    return PostfixMaps(text[RELAY_DOMAINS], text[TRANSPORT], text[RELAY_RECIPIENTS])
