from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import ConfigError
from gateway.config import DEFAULT_DATABASE_URL, build_config, load_config


def test_config__embedded_default() -> None:
    config = load_config(None, env={})
    assert config.database.url == DEFAULT_DATABASE_URL
    assert config.smtp_address == ("127.0.0.1", 2525)
    assert config.http_address == ("127.0.0.1", 8080)
    assert [q.name for q in config.queue] == ["general"]
    assert config.accepts("support@localhost") and config.accepts("SUPPORT@LOCALHOST")
    assert not config.accepts("other@localhost")
    assert config.lmtp_address is None


def test_config__environment_overrides(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[smtp]\nlisten = "0.0.0.0:25"\n[database]\nurl = "sqlite+aiosqlite:///a.db"\n')
    env = {"INTAKE_CONFIG": str(file), "INTAKE_SMTP_LISTEN": "127.0.0.1:2626",
           "INTAKE_HTTP_LISTEN": "[::1]:9000",
           "INTAKE_DATABASE_URL": "postgresql+asyncpg://u@db/intake",
           "INTAKE_LMTP_LISTEN": "127.0.0.1:24"}
    config = load_config(None, env=env)
    assert config.source == str(file)
    assert config.smtp_address == ("127.0.0.1", 2626)
    assert config.http_address == ("::1", 9000)
    assert config.lmtp_address == ("127.0.0.1", 24)
    assert config.database.url == "postgresql+asyncpg://u@db/intake"


def test_config__domains_accept_any_local_part() -> None:
    config = build_config({"intake": {"addresses": [], "domains": ["@Help.Example"]}}, "t", {})
    assert config.accepts("anyone@help.example")
    assert not config.accepts("anyone@sub.help.example")


@pytest.mark.parametrize(("data", "key"), [
    ({"intake": {"max_recipients": 0}}, "intake.max_recipients"),
    ({"http": {"listen": "8080"}}, "http.listen"),
    ({"smtp": {"listen": "host:99999"}}, "smtp.listen"),
    ({"database": {"url": "mysql://x"}}, "database.url"),
    ({"queue": []}, "queue"),
    ({"queue": [{"name": "has space"}]}, "queue[0].name"),
    ({"pipeline": {"workers": -1}}, "pipeline.workers"),
    ({"nonsense": {}}, "nonsense"),
])
def test_config__errors_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(data, "/etc/intake.toml", {})
    assert str(info.value).startswith(f"/etc/intake.toml: key {key}")


def test_config__later_sections_pass_through() -> None:
    config = build_config({"rule": [{"name": "x"}], "component": []}, "t", {})
    assert config.default_queue == "general"


def test_config__public_url() -> None:
    assert build_config({}, "t", {}).public_url == "http://127.0.0.1:8080"
    config = build_config({"http": {"public_url": "https://desk.example/"}}, "t", {})
    assert config.public_url == "https://desk.example"
