"""Configuration: one TOML file, checked whole at start-up, with environment overrides.

With no file at all the gateway runs on the embedded default: a SQLite file in
the working directory, SMTP on 127.0.0.1:2525, HTTP on 127.0.0.1:8080, one
`general` queue, `support@localhost` as the accepted address and one support
form.

- `loader`: the file read and parsed once, each table given to its reader,
  every problem reported together (`load_config`, `config_from_text`).
- `sections`: the gateway's own tables, as pydantic models.
- `webhooks`: the `[[webhook]]` reader and its `Subscription`s.
- `model`: `Config`, the result: the sections plus what the other readers made
  (routing rules, service levels, escalations, forms, webhooks).
"""

from __future__ import annotations

from gateway.config.loader import (
    DEFAULT_FORM,
    InvalidConfigError,
    build_config,
    config_from_text,
    load_config,
)
from gateway.config.model import Config
from gateway.config.sections import DEFAULT_DATABASE_URL

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_FORM",
    "Config",
    "InvalidConfigError",
    "build_config",
    "config_from_text",
    "load_config",
]
