"""The configuration reference (docs/settings.md) against the code: every setting the app reads
is documented, every documented one is read, each is set in Azure or says why not, and the page
is what `python -m scripts.settings_reference --write` makes of it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from scripts import settings_reference as ref_mod
from scripts.settings_reference import WRITE_COMMAND, Entry, Reference, binding_reads, build, problems, render

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference() -> Reference:
    return build()


def test_every_setting_read_is_documented_and_set_or_explained(reference: Reference) -> None:
    found = problems(reference)
    assert found == [], "the configuration reference is incomplete:\n" + "\n".join(f"- {p}" for p in found)


def test_the_page_is_generated_from_the_catalog_and_the_code(reference: Reference) -> None:
    page = ROOT / "docs" / "settings.md"
    assert page.exists(), f"docs/settings.md is missing: run `{WRITE_COMMAND}`"
    assert page.read_text() == render(reference), f"docs/settings.md is stale: run `{WRITE_COMMAND}`"


def test_the_settings_loader_and_the_bindings_are_both_scanned(reference: Reference) -> None:
    # One name of each kind, so a scanner that silently finds nothing cannot pass the tests above.
    assert "`Settings`" in reference.reads["AzureWebJobsStorage"]
    assert "`Settings`" in reference.reads["SMTP_PORT"]
    assert any("send_outcome_mail" in where for where in reference.reads["MAIL_NOTIFIER_SCHEDULE"])
    assert reference.infra["AzureWebJobsStorage__accountName"] == "storageAccountName"


def test_the_scanner_sees_every_way_the_loader_reads(tmp_path: Path) -> None:
    module = tmp_path / "config.py"
    module.write_text(
        "import os\n"
        "def from_env(env):\n"
        "    values = dict(env)\n"
        "    a = values.get('GET_READ')\n"
        "    b = values['SUBSCRIPT_READ']\n"
        "    c = 'IN_READ' in values\n"
        "    d = _port(values, 'HELPER_READ', 25)\n"
        "    e = os.environ.get('ENVIRON_READ')\n"
        "    f = f\"{values['FSTRING_READ']}\"\n"
        "    raise SettingsError('NOT_A_READ', 'message')\n"
    )

    assert ref_mod.settings_reads(module) == {
        "GET_READ", "SUBSCRIPT_READ", "IN_READ", "HELPER_READ", "ENVIRON_READ", "FSTRING_READ",
    }  # fmt: skip


def test_bindings_give_their_percent_settings_and_connections() -> None:
    functions: list[tuple[str, list[dict[str, Any]]]] = [
        ("on_blob", [{"type": "blobTrigger", "path": "%CONTAINER%/{name}", "connection": "DATA"}]),
        ("on_timer", [{"type": "timerTrigger", "schedule": "%SCHEDULE%"}]),
        ("on_queue", [{"type": "queueTrigger", "queueName": "q", "connection": ""}]),
    ]

    reads, connections = binding_reads(functions)

    assert set(reads) == {"CONTAINER", "SCHEDULE", "DATA"}
    assert connections == {"DATA"}  # "" and AzureWebJobsStorage are the host's own storage


def test_a_new_setting_fails_until_documented_and_set(reference: Reference) -> None:
    reads = {**reference.reads, "NEW_SETTING": ["`Settings`"]}
    found = problems(dataclasses.replace(reference, reads=reads))
    assert any("NEW_SETTING" in p and "docs/settings.toml" in p and WRITE_COMMAND in p for p in found), found

    entries = {
        **reference.entries,
        "NEW_SETTING": Entry(name="NEW_SETTING", group="jobs", does="New.", default="x"),
    }
    found = problems(dataclasses.replace(reference, reads=reads, entries=entries))
    assert any("NEW_SETTING is not set by infra" in p for p in found), found

    entries["NEW_SETTING"] = dataclasses.replace(
        entries["NEW_SETTING"], azure="not set: the default suits Azure."
    )
    assert problems(dataclasses.replace(reference, reads=reads, entries=entries)) == []


def test_a_documented_setting_nothing_reads_is_reported(reference: Reference) -> None:
    entries = {**reference.entries, "GONE": Entry(name="GONE", group="jobs", does="Old.", azure="n/a")}
    found = problems(dataclasses.replace(reference, entries=entries))
    assert any("[settings.GONE] documents a setting nothing reads" in p for p in found), found


def test_a_setting_set_locally_but_undocumented_is_reported(reference: Reference) -> None:
    example = {**reference.example, "STRAY": "1"}
    found = problems(dataclasses.replace(reference, example=example))
    assert any("STRAY is set in local.settings.example.json" in p for p in found), found


def test_a_secret_is_never_a_literal_in_infra(reference: Reference) -> None:
    infra = {**reference.infra, "FHIR_FRONTDOOR_KEYS": "'0123456789abcdef0123'"}
    found = problems(dataclasses.replace(reference, infra=infra))
    assert any("FHIR_FRONTDOOR_KEYS is a secret" in p for p in found), found


def test_defaults_come_from_settings_itself(reference: Reference) -> None:
    from shared.config import DEFAULT_JOB_STALL_MINUTES

    shown = ref_mod.defaults(reference)
    assert shown["JOB_STALL_MINUTES"] == f"`{DEFAULT_JOB_STALL_MINUTES}`"
    assert shown["AzureWebJobsStorage"] == "required"


def test_a_misspelt_catalog_key_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        Entry.parse("X", {"group": "jobs", "does": "x", "defualt": "1"})
