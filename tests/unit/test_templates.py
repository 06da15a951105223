"""Outbound templates are checked with the configuration: compiled, their names
checked and rendered against sample values (StrictUndefined), at start-up,
`intake check-config` and reload; the folder and every template name that
rules give must exist; a bad reload keeps the templates in force."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import InvalidConfigError, load_config
from gateway.config.templates import read_templates
from gateway.delivery.outbound import identity, written_to
from gateway.rules_in_force import RulesHolder
from tests.helpers import make_config

GOOD = "Hello {{ name }}, we have {{ reference }} ({{ tag }}): {{ status_url }}\n"


def config_file(tmp_path: Path, folder: Path | str, extra: str = "") -> Path:
    file = tmp_path / "intake.toml"
    file.write_text(f'[outbound]\ntemplates = "{folder}"\n'
                    '[[queue]]\nname = "general"\n[[queue]]\nname = "billing"\n' + extra)
    return file


def templates(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


def problems(file: Path) -> list[str]:
    with pytest.raises(InvalidConfigError) as caught:
        load_config(file, env={})
    return list(caught.value.problems)


def test_templates__an_unknown_name_is_a_config_error(tmp_path: Path) -> None:
    file = config_file(tmp_path, templates(tmp_path, acknowledgement="Hello {{ nam }}\n"))
    assert problems(file) == [
        f"{file}: key outbound.templates: acknowledgement.txt: unknown name(s) nam; a "
        "template is given name, queue, received_at, reference, signature, status_url, "
        "subject, tag"]


def test_templates__an_unknown_name_in_a_branch_not_taken_is_found(tmp_path: Path) -> None:
    # Rendering alone would not see it: the sample never takes this branch.
    folder = templates(tmp_path, billing="{% if reference == 'x' %}{{ refrence }}{% endif %}")
    found = problems(config_file(tmp_path, folder))
    assert len(found) == 1 and "billing.txt: unknown name(s) refrence" in found[0]


def test_templates__a_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    folder = templates(tmp_path, acknowledgement="Hello\n{% if name %}\n{{ name }}\n")
    found = problems(config_file(tmp_path, folder))
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'intake.toml'}: key outbound.templates: "
                               "acknowledgement.txt line ")
    assert "endif" in found[0]


def test_templates__a_template_that_does_not_render_is_an_error(tmp_path: Path) -> None:
    # Known names, valid syntax, but it fails on the sample with the optional
    # values empty (a customer who gave no name).
    folder = templates(tmp_path, acknowledgement="Dear {{ name[0] | upper }}{{ name[1] }}\n")
    found = problems(config_file(tmp_path, folder))
    assert len(found) == 1 and "acknowledgement.txt: does not render" in found[0]


def test_templates__a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    file = config_file(tmp_path, tmp_path / "nowhere")
    assert problems(file) == [f"{file}: key outbound.templates: folder "
                              f"'{tmp_path / 'nowhere'}' does not exist or is not a folder"]


def test_templates__an_unknown_rule_template_is_a_config_error(tmp_path: Path) -> None:
    folder = templates(tmp_path, vip=GOOD)
    file = config_file(tmp_path, folder, (
        '[[rule]]\nname = "vips"\nwhen = { subject.contains = "vip" }\n'
        'then = { template = "vip" }\n'
        '[[rule]]\nname = "typo"\nwhen = { subject.contains = "x" }\n'
        'then = { template = "vipp" }\n'))
    assert problems(file) == [
        f"{file}: key rule[typo].then.template: unknown template 'vipp' (no vipp.txt in "
        "outbound.templates or the built-in ones)"]


def test_templates__good_ones_load_and_render(tmp_path: Path) -> None:
    folder = templates(tmp_path, billing=GOOD + "{% if signature %}{{ signature }}{% endif %}")
    config = load_config(config_file(tmp_path, folder, '[routing]\ntemplate = "billing"\n'),
                         env={})
    assert {"billing", "acknowledgement"} <= config.templates.names
    text = config.templates.render("billing", queue="billing", name="Ann", reference="R-1",
                                   tag="[#R-1]", status_url="u", subject="s", signature="")
    assert text == "Hello Ann, we have R-1 ([#R-1]): u\n"


def test_templates__the_built_in_ones_pass_their_own_check() -> None:
    built_in, found = read_templates(None)
    assert found == []
    assert "acknowledgement" in built_in.names


def test_templates__check_config_refuses_a_broken_template(tmp_path: Path) -> None:
    file = config_file(tmp_path, templates(tmp_path, acknowledgement="{{ nam }}\n"))
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config",
                             "--config", str(file)], capture_output=True, text=True,
                            timeout=60, check=False, cwd=tmp_path)
    assert result.returncode != 0
    assert "key outbound.templates: acknowledgement.txt: unknown name(s) nam" in result.stderr


def test_templates__a_bad_reload_keeps_the_templates_in_force(tmp_path: Path) -> None:
    folder = templates(tmp_path, acknowledgement="First {{ reference }}\n")
    file = config_file(tmp_path, folder)
    holder = RulesHolder.load(load_config(file, env={}))
    values = {"name": "", "reference": "R", "tag": "", "status_url": "", "subject": "",
              "signature": ""}

    (folder / "acknowledgement.txt").write_text("Broken {{ nam }}\n")
    result = holder.reload()
    assert not result.ok and any("unknown name(s) nam" in e for e in result.errors)
    # Read at load time, not from disk at each use: the broken file is not used.
    assert holder.config.templates.render(None, queue="general", **values) == "First R\n"

    (folder / "acknowledgement.txt").write_text("Second {{ reference }}\n")
    assert holder.reload().ok
    assert holder.config.templates.render(None, queue="general", **values) == "Second R\n"


def test_identity__queue_then_address_written_to_then_outbound() -> None:
    config = make_config("sqlite+aiosqlite://", outbound={"from_address": "desk@example.com",
                                                          "signature": "Desk"},
                         queue=[{"name": "general"},
                                {"name": "billing", "from_address": "acc@example.com",
                                 "from_name": "Accounts", "signature": ""}])
    assert identity(config, "billing", ["billing@localhost"]).address == "acc@example.com"
    assert identity(config, "billing").name == "Accounts"
    assert identity(config, "billing").signature == ""  # the queue's own, even empty
    # Envelope recipients first; an address that is not ours is passed over.
    chosen = identity(config, "general", ["other@example.org", "BILLING@localhost",
                                          "support@localhost"])
    assert (chosen.address, chosen.name, chosen.signature) == (
        "billing@localhost", "Support", "Desk")
    assert identity(config, "general", ["other@example.org"]).address == "desk@example.com"


def test_identity__a_stored_request_says_where_it_was_written_to() -> None:
    request = {
        "timeline": [{"kind": "received",
                      "data": {"envelope": {"rcpt_tos": ["billing@localhost"]}}}],
        "messages": [{"direction": "in", "to": [{"address": "support@localhost"}], "cc": []},
                     {"direction": "out", "to": [{"address": "alice@example.com"}]}],
    }
    assert written_to(request) == ["billing@localhost", "support@localhost"]


def test_config__queue_from_address_must_be_one_address(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[[queue]]\nname = "general"\nfrom_address = "a@x, b@y"\n')
    found = problems(file)
    assert len(found) == 1 and "key queue[0].from_address" in found[0]
