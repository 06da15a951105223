"""`Config`: the whole configuration file, checked, as one value.

The gateway's own sections are pydantic models (`Sections`); what the other
tables hold was made by their own readers (routing rules, service levels,
escalations, forms, webhooks) and rides along here, unvalidated by pydantic
and left out of dumps. Only the loader (`gateway.config.loader`) builds one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, SkipValidation

from gateway.config.sections import Sections, parse_listen
from gateway.config.templates import TemplateSet, built_in
from gateway.config.webhooks import Subscription
from parsers.forms import FormSpec
from routing.api import RuleSet
from routing.sla import SlaConfig
from routing.sla.escalation import Escalation

Recipe = tuple[dict[str, Any], str, dict[str, str], str]
"""`build_config`'s arguments: the parsed tables, source, environment and text."""


class Config(Sections):
    """The checked configuration. The fields past `source` were made by the
    tables' own readers: not checked again by pydantic, and left out of dumps."""

    source: str = "<embedded default>"
    # sha256 of the file's text: the rules watcher reloads when it changes.
    digest: str = Field(default="", exclude=True, repr=False)
    # [routing], [[component]], [[classifier]] and [[rule]], compiled. The rules in
    # force are the RulesHolder's: it swaps them (with sla, escalations, queue) on reload.
    rules: Annotated[RuleSet, SkipValidation] = Field(
        default_factory=RuleSet, exclude=True, repr=False)
    # [[calendar]] and [[sla]]; None without [[sla]].
    sla: Annotated[SlaConfig | None, SkipValidation] = Field(
        default=None, exclude=True, repr=False)
    escalations: Annotated[tuple[Escalation, ...], SkipValidation] = Field(
        default=(), exclude=True, repr=False)
    # [[form]] by id, and [[webhook]]: changing these needs a restart.
    forms: Annotated[dict[str, FormSpec], SkipValidation] = Field(
        default_factory=dict, exclude=True, repr=False)
    webhooks: Annotated[tuple[Subscription, ...], SkipValidation] = Field(
        default=(), exclude=True, repr=False)
    # Outbound templates, read and checked by the loader; swapped whole on reload.
    templates: Annotated[TemplateSet, SkipValidation] = Field(
        default_factory=built_in, exclude=True, repr=False)
    # What the loader made this config of (`Recipe`s: the start, then the reload
    # in force), so that another process can make the same one
    # (gateway/pipeline/build_child.py). A changed copy has none (`model_copy`).
    recipe: Annotated[tuple[Recipe, ...], SkipValidation] = Field(
        default=(), exclude=True, repr=False)

    def model_copy(self, *, update: Mapping[str, Any] | None = None,
                   deep: bool = False) -> Config:
        """A copy; one with changes no recipe made has no recipe (unless given)."""
        changes = dict(update or {})
        changes.setdefault("recipe", ())
        return super().model_copy(update=changes, deep=deep)

    @property
    def smtp_address(self) -> tuple[str, int]:
        return parse_listen(self.smtp.listen)

    @property
    def lmtp_address(self) -> tuple[str, int] | None:
        return parse_listen(self.smtp.lmtp_listen) if self.smtp.lmtp_listen else None

    @property
    def http_address(self) -> tuple[str, int]:
        return parse_listen(self.http.listen)

    @property
    def public_url(self) -> str:
        if self.http.public_url:
            return self.http.public_url.rstrip("/")
        host, port = self.http_address
        return f"http://{host}:{port}"

    @property
    def broker_url(self) -> str | None:
        return self.broker.url or (os.environ.get(self.broker.url_env)
                                   if self.broker.url_env else None)

    @property
    def relay_address(self) -> tuple[str, int] | None:
        return parse_listen(self.outbound.relay) if self.outbound.relay else None

    @property
    def message_id_domain(self) -> str:
        return self.threading.message_id_domain or self.smtp.hostname

    @property
    def default_queue(self) -> str:
        return self.queue[0].name

    def accepts(self, address: str) -> bool:
        """Whether mail to this address is ours (configured address or domain)."""
        address = address.lower()
        if address in self.intake.addresses:
            return True
        _, _, domain = address.rpartition("@")
        return bool(domain) and domain in self.intake.domains
