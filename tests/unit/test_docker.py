"""The container set-up, read as Docker and Compose would (no engine here).

The Dockerfile's ENV and the compose file's environment are rendered into the
configuration the container would load, so a link pointing at
http://0.0.0.0:8080, a missing LMTP port, volume or config mount fails here.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from domain.errors import ConfigError
from gateway.config import load_config
from gateway.config.sections import WILDCARD_HOSTS, parse_listen

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in _instructions():
        if keyword == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(rest))  # type: ignore[misc]
    return env


def _compose_service(name: str) -> dict[str, Any]:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    service: dict[str, Any] = compose["services"][name]
    return service


def _compose_gateway() -> dict[str, Any]:
    return _compose_service("gateway")


def _rendered(value: str, env: dict[str, str]) -> str:
    """Compose's ${NAME:-default} interpolation."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], value)


def _container_env(shell: dict[str, str]) -> dict[str, str]:
    service = _compose_gateway()
    env = _image_env()
    env.update({k: _rendered(str(v), shell) for k, v in service["environment"].items()})
    return env


def _mounts() -> dict[str, Path]:
    """Container path -> file on this side, for the gateway's bind mounts."""
    mounts = {}
    for volume in _compose_gateway()["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = (DOCKER / source).resolve()
    return mounts


def test_docker__compose_mounts_the_config_the_gateway_reads() -> None:
    env = _container_env({})
    mounted = _mounts()[env["INTAKE_CONFIG"]]
    assert mounted.is_file()
    config = load_config(mounted, env)
    assert config.database.url.startswith("postgresql+asyncpg://")
    assert config.http_address[0] in WILDCARD_HOSTS


def test_docker__links_never_point_at_the_wildcard_address() -> None:
    env = _container_env({})
    config = load_config(_mounts()[env["INTAKE_CONFIG"]], env)
    assert "0.0.0.0" not in config.public_url
    assert config.public_url == "http://localhost:8080"
    chosen = _container_env({"INTAKE_PUBLIC_URL": "https://desk.example.com"})
    assert load_config(_mounts()[env["INTAKE_CONFIG"]], chosen).public_url == \
        "https://desk.example.com"
    # The image alone (no public URL given) refuses to start instead.
    with pytest.raises(ConfigError, match="public_url is required"):
        load_config(None, _image_env())


def test_docker__lmtp_port_exposed_and_published() -> None:
    env = _image_env()
    lmtp_port = parse_listen(env["INTAKE_LMTP_LISTEN"])[1]
    exposed = {int(p) for k, rest in _instructions() if k == "EXPOSE" for p in rest.split()}
    for listen in ("INTAKE_SMTP_LISTEN", "INTAKE_LMTP_LISTEN", "INTAKE_HTTP_LISTEN"):
        assert parse_listen(env[listen])[1] in exposed, listen
    # Clients reach the replicas through HAProxy, which publishes every port.
    assert {int(p) for p in _compose_gateway()["expose"]} == exposed
    assert "ports" not in _compose_gateway()
    published = {int(p.split(":")[-1]) for p in _compose_service("haproxy")["ports"]}
    assert lmtp_port in published and exposed <= published


def test_docker__haproxy_in_front_of_gateway_replicas() -> None:
    assert _compose_gateway()["deploy"]["replicas"] >= 2
    haproxy = _compose_service("haproxy")
    cfg = (DOCKER / "haproxy.cfg").read_text()
    assert any(v.startswith("./haproxy.cfg:") for v in haproxy["volumes"])
    env = _image_env()
    servers = re.findall(r"^\s*server-template \w+ \d+ gateway:(\d+) (.*)$", cfg, re.M)
    ports = {int(port): options for port, options in servers}
    smtp, lmtp, http = (parse_listen(env[f"INTAKE_{name}_LISTEN"])[1]
                        for name in ("SMTP", "LMTP", "HTTP"))
    assert set(ports) == {smtp, lmtp, http}
    assert "send-proxy" in ports[smtp] and "send-proxy" in ports[lmtp]
    assert "send-proxy" not in ports[http]
    assert "option forwardfor" in cfg and "option httpchk GET /readyz" in cfg
    # The gateways trust HAProxy's fixed address, and only it.
    address = haproxy["networks"]["intake"]["ipv4_address"]
    container = _container_env({})
    config = load_config(_mounts()[container["INTAKE_CONFIG"]], container)
    assert config.smtp.proxy_protocol_from == [f"{address}/32"]
    assert config.http.trusted_proxies == [f"{address}/32"]


def test_docker__sqlite_data_in_a_volume() -> None:
    database = make_url(_image_env()["INTAKE_DATABASE_URL"]).database
    assert database is not None and Path(database).is_absolute()
    volumes = [rest for k, rest in _instructions() if k == "VOLUME"]
    assert any(Path(database).parent == Path(v.strip('[]" ')) for v in volumes), volumes


def test_docker__image_copies_every_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]
                ["include"]}
    copied = {rest.split()[0] for k, rest in _instructions() if k == "COPY"}
    assert packages <= copied, packages - copied


def test_docker__build_context_leaves_out_venv_git_and_caches() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", "artifacts", "**/__pycache__", ".pytest_cache",
            ".mypy_cache", "*.db"} <= ignored
