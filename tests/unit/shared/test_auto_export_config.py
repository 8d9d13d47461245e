"""AUTO_EXPORT_CONFIG: parsing and validation (every error names its field path), the rules'
decision for an item, and how Settings.from_env reports a bad configuration."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.auto_export_config import AppConfig, Decision, parse_auto_export_config
from shared.config import Settings, SettingsError
from shared.contracts import BlobDestinationSpec
from shared.destinations.http_put import PutDestinationSpec
from shared.errors import ValidationError

pytestmark = pytest.mark.unit

STORAGE = "UseDevelopmentStorage=true"
BLOB = {"kind": "blob", "container": "exported", "path_prefix": "ct"}
PUT = {
    "kind": "http_put",
    "base_url": "https://partner.example/dav",
    "url_template": "{base}/{study}/{session}/{path}",
    "create_parents": True,
    "auth": "basic",
    "secret_name": "partner-put",
}


def config_text(**apps: dict[str, Any]) -> str:
    return json.dumps({"apps": apps})


def app(**changes: Any) -> dict[str, Any]:
    return {"destination": BLOB, **changes}


def refused(text: str) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_auto_export_config(text)
    return caught.value


def app_config(**changes: Any) -> AppConfig:
    parsed = parse_auto_export_config(config_text(recon=app(**changes))).app("recon")
    assert parsed is not None
    return parsed


# --- parsing -------------------------------------------------------------------------------------


def test_no_setting_means_no_app_is_exported() -> None:
    config = parse_auto_export_config(None)
    assert config.apps == {} and config.app("recon") is None


def test_a_full_configuration_is_read() -> None:
    text = config_text(
        **{
            "ct-recon": {
                "enabled": True,
                "timing": "session_end",
                "destination": PUT,
                "rules": [
                    {"name": "no-scratch", "action": "exclude", "names": ["scratch/*", "*.tmp"]},
                    {"name": "dicom", "action": "include", "content_types": ["application/dicom"]},
                ],
                "default": "exclude",
                "options": {
                    "concurrency": 8,
                    "retry": {"first_retry_interval_ms": 5000, "max_attempts": 7},
                    "idle_timeout_minutes": 90,
                },
            },
            "report": {"enabled": False, "destination": BLOB},
        }
    )
    config = parse_auto_export_config(text)
    recon = config.app("ct-recon")
    assert recon is not None
    assert recon.enabled and recon.timing == "session_end" and recon.default == "exclude"
    assert isinstance(recon.destination, PutDestinationSpec)
    assert recon.destination.secret_name == "partner-put" and recon.destination.create_parents
    assert [r.name for r in recon.rules] == ["no-scratch", "dicom"]
    assert recon.rules[0].names == ("scratch/*", "*.tmp") and recon.rules[1].content_types == (
        "application/dicom",
    )
    assert recon.options.concurrency == 8 and recon.options.idle_timeout_minutes == 90
    assert (recon.options.retry.first_retry_interval_ms, recon.options.retry.max_attempts) == (5000, 7)
    report = config.app("report")
    assert report is not None and not report.enabled
    assert config.app("unknown") is None


def test_an_app_gets_the_defaults() -> None:
    recon = app_config()
    assert recon.enabled and recon.timing == "as_available" and recon.default == "include"
    assert recon.rules == ()
    assert recon.options.concurrency == 4 and recon.options.idle_timeout_minutes == 24 * 60


@pytest.mark.parametrize("text", ["{", "apps: {}", "", '{"apps": {}} trailing'])
def test_text_that_is_not_json_is_refused(text: str) -> None:
    error = refused(text)
    assert error.field == "" and error.detail.startswith("is not valid JSON")


def test_json_that_is_not_an_object_is_refused() -> None:
    assert refused("[]").detail == "must be a JSON object"


@pytest.mark.parametrize(
    ("recon", "field"),
    [
        ({}, "apps.recon.destination"),
        (app(unknown=1), "apps.recon.unknown"),
        (app(enabled="yes"), "apps.recon.enabled"),
        (app(timing="later"), "apps.recon.timing"),
        (app(default="maybe"), "apps.recon.default"),
        (app(rules={"name": "x"}), "apps.recon.rules"),
        (
            app(
                rules=[
                    {"name": "a", "action": "include", "names": ["x"]},
                    {"name": "b", "action": "keep", "names": ["x"]},
                ]
            ),
            "apps.recon.rules[1].action",
        ),
        (app(rules=[{"action": "include", "names": ["x"]}]), "apps.recon.rules[0].name"),
        (app(rules=[{"name": "a", "action": "include", "names": [""]}]), "apps.recon.rules[0].names[0]"),
        (
            app(rules=[{"name": "a", "action": "include", "content_types": ["image/png", "dicom"]}]),
            "apps.recon.rules[0].content_types[1]",
        ),
        (
            app(rules=[{"name": "a", "action": "include", "names": ["x"], "when": "always"}]),
            "apps.recon.rules[0].when",
        ),
        (app(options={"concurrency": 0}), "apps.recon.options.concurrency"),
        (app(options={"concurrency": 33}), "apps.recon.options.concurrency"),
        (app(options={"idle_timeout_minutes": 0}), "apps.recon.options.idle_timeout_minutes"),
        (app(options={"retry": {"max_attempts": 0}}), "apps.recon.options.retry.max_attempts"),
        (
            app(options={"retry": {"first_retry_interval_ms": 1}}),
            "apps.recon.options.retry.first_retry_interval_ms",
        ),
        (app(destination={"kind": "blob", "container": "Bad_Name"}), "apps.recon.destination.container"),
        (app(destination={**PUT, "base_url": "ftp://partner.example"}), "apps.recon.destination.base_url"),
        (app(destination={**PUT, "secret_name": None}), "apps.recon.destination.secret_name"),
    ],
)
def test_every_validation_error_names_the_field_path(recon: dict[str, Any], field: str) -> None:
    assert refused(config_text(recon=recon)).field == field


def test_apps_must_be_an_object() -> None:
    assert refused(json.dumps({"apps": []})).field == "apps"
    assert refused(json.dumps({"apps": {}, "extra": 1})).field == "extra"


def test_a_rule_name_used_twice_is_refused_at_the_second() -> None:
    rules = [
        {"name": "dicom", "action": "include", "content_types": ["application/dicom"]},
        {"name": "other", "action": "exclude", "names": ["*.tmp"]},
        {"name": "dicom", "action": "exclude", "names": ["x"]},
    ]
    error = refused(config_text(recon=app(rules=rules)))
    assert error.field == "apps.recon.rules[2].name"
    assert "'dicom'" in error.detail and "rules[0]" in error.detail


def test_a_rule_must_say_what_it_matches() -> None:
    error = refused(config_text(recon=app(rules=[{"name": "all", "action": "include"}])))
    assert error.field == "apps.recon.rules[0].names"
    assert "names or content_types" in error.detail
    empty = refused(
        config_text(recon=app(rules=[{"name": "all", "action": "include", "names": [], "content_types": []}]))
    )
    assert empty.field == "apps.recon.rules[0].names"


@pytest.mark.parametrize("name", ["bad name", "-recon", ".hidden", "a/b", "x" * 64])
def test_bad_app_names_are_refused_naming_the_app(name: str) -> None:
    error = refused(config_text(**{name: app()}))
    assert error.field == f"apps.{name}" and "app names" in error.detail


def test_an_empty_app_name_is_refused() -> None:
    error = refused(config_text(**{"": app()}))
    assert error.field == "apps" and "app names" in error.detail


@pytest.mark.parametrize("name", ["recon", "ct-recon", "CT.recon_2", "x" * 63, "9"])
def test_good_app_names_are_accepted(name: str) -> None:
    assert parse_auto_export_config(config_text(**{name: app()})).app(name) is not None


def test_a_blob_destination_is_read_in_record_shape_with_a_secret_name() -> None:
    destination = app_config(destination={**BLOB, "secret_name": "partner-sas"}).destination
    assert isinstance(destination, BlobDestinationSpec)
    assert (destination.container, destination.path_prefix, destination.secret_name) == (
        "exported",
        "ct",
        "partner-sas",
    )
    assert app_config().destination.secret_name is None


def test_a_put_destination_is_read_in_record_shape_with_a_secret_name() -> None:
    destination = app_config(destination=PUT).destination
    assert isinstance(destination, PutDestinationSpec)
    assert (destination.auth, destination.secret_name) == ("basic", "partner-put")
    assert destination.placeholders() == ("study", "session", "path")


@pytest.mark.parametrize(
    "destination",
    [
        {**BLOB, "secret": "sv=2024&sig=abc"},
        {**BLOB, "secret_name": "partner-sas", "secret": "sv=2024&sig=abc"},
        {**PUT, "secret": "hunter2"},
    ],
)
def test_a_secret_value_in_a_destination_is_refused(destination: dict[str, Any]) -> None:
    error = refused(config_text(recon=app(destination=destination)))
    assert error.field == "apps.recon.destination.secret" and error.detail == "unknown field"
    assert "hunter2" not in str(error) and "sig=abc" not in str(error)


def test_a_put_destination_with_auth_needs_a_secret_name() -> None:
    put = {k: v for k, v in PUT.items() if k != "secret_name"}
    error = refused(config_text(recon=app(destination={**put, "secret": "hunter2"})))
    assert error.field == "apps.recon.destination.secret_name"
    assert "hunter2" not in str(error)


# --- AppConfig.decide ----------------------------------------------------------------------------

RULES = [
    {"name": "no-scratch", "action": "exclude", "names": ["scratch/*", "*.tmp"]},
    {"name": "dicom", "action": "include", "content_types": ["application/dicom"]},
    {"name": "images", "action": "include", "content_types": ["image/*"]},
    {"name": "reports", "action": "include", "names": ["reports/*"], "content_types": ["application/pdf"]},
]


@pytest.fixture
def ruled() -> AppConfig:
    return app_config(rules=RULES, default="exclude")


def test_the_first_matching_rule_decides(ruled: AppConfig) -> None:
    # A DICOM file in scratch/ matches both no-scratch and dicom: the first wins.
    assert ruled.decide("scratch/a.dcm", "application/dicom") == Decision(False, "no-scratch")
    assert ruled.decide("series-1/a.dcm", "application/dicom") == Decision(True, "dicom")


def test_the_rule_order_is_what_decides() -> None:
    flipped = app_config(rules=[RULES[1], RULES[0]], default="exclude")
    assert flipped.decide("scratch/a.dcm", "application/dicom") == Decision(True, "dicom")


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("scratch/a.dcm", True),
        ("scratch/deep/er/a.dcm", True),  # a glob's * crosses folders
        ("a.tmp", True),
        ("series-1/part.tmp", True),
        ("scratchpad/a.dcm", False),
        ("series-1/scratch/a.dcm", False),  # scratch/* is anchored at the session's folder
        ("a.tmp.dcm", False),
        ("A.TMP", False),  # names are matched case-sensitively
    ],
)
def test_name_globs_match_paths_with_folders(ruled: AppConfig, path: str, excluded: bool) -> None:
    decision = ruled.decide(path, "application/dicom")
    assert decision == (Decision(False, "no-scratch") if excluded else Decision(True, "dicom"))


@pytest.mark.parametrize(
    ("content_type", "rule"),
    [
        ("application/dicom", "dicom"),
        ("Application/DICOM", "dicom"),
        ("application/dicom; charset=x", "dicom"),
        ("application/dicom;transfer-syntax=1.2.840", "dicom"),
        ("image/png", "images"),
        ("image/jpeg; q=1", "images"),
        ("IMAGE/TIFF", "images"),
        ("application/dicom+json", "default"),
        ("application/dicomx", "default"),
        ("imagex/png", "default"),
        ("text/plain", "default"),
        ("", "default"),
    ],
)
def test_content_types_match_exactly_or_by_type_wildcard(
    ruled: AppConfig, content_type: str, rule: str
) -> None:
    decision = ruled.decide("series-1/a", content_type)
    assert decision.rule == rule and decision.export == (rule != "default")


def test_a_rule_with_names_and_content_types_needs_both(ruled: AppConfig) -> None:
    assert ruled.decide("reports/summary.pdf", "application/pdf") == Decision(True, "reports")
    assert ruled.decide("reports/summary.txt", "text/plain") == Decision(False, "default")
    assert ruled.decide("other/summary.pdf", "application/pdf") == Decision(False, "default")


def test_without_a_matching_rule_the_default_decides() -> None:
    assert app_config().decide("anything", "text/plain") == Decision(True, "default")
    assert app_config(default="exclude").decide("anything", "text/plain") == Decision(False, "default")
    only_dicom = app_config(rules=[RULES[1]], default="include")
    assert only_dicom.decide("notes.txt", "text/plain") == Decision(True, "default")


# --- Settings.from_env ---------------------------------------------------------------------------


def settings_error(**env: str) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"AzureWebJobsStorage": STORAGE, **env})
    return caught.value


def test_settings_read_the_auto_export_configuration() -> None:
    settings = Settings.from_env(
        {"AzureWebJobsStorage": STORAGE, "AUTO_EXPORT_CONFIG": config_text(recon=app())}
    )
    recon = settings.auto_export.app("recon")
    assert recon is not None and isinstance(recon.destination, BlobDestinationSpec)


def test_settings_without_the_configuration_export_nothing() -> None:
    for env in ({}, {"AUTO_EXPORT_CONFIG": ""}, {"AUTO_EXPORT_CONFIG": "   "}):
        settings = Settings.from_env({"AzureWebJobsStorage": STORAGE, **env})
        assert settings.auto_export.apps == {}


def test_an_invalid_configuration_names_the_setting_and_the_field() -> None:
    rules = [
        {"name": "a", "action": "include", "names": ["x"]},
        {"name": "b", "action": "keep", "names": ["x"]},
    ]
    error = settings_error(AUTO_EXPORT_CONFIG=config_text(recon=app(rules=rules)))
    assert error.setting == "AUTO_EXPORT_CONFIG"
    assert str(error).startswith("setting AUTO_EXPORT_CONFIG: apps.recon.rules[1].action: ")


def test_configuration_that_is_not_json_names_the_setting() -> None:
    error = settings_error(AUTO_EXPORT_CONFIG="{not json")
    assert error.setting == "AUTO_EXPORT_CONFIG"
    assert str(error).startswith("setting AUTO_EXPORT_CONFIG: is not valid JSON")


def test_a_secret_value_in_the_configuration_is_not_echoed() -> None:
    error = settings_error(
        AUTO_EXPORT_CONFIG=config_text(recon=app(destination={**BLOB, "secret": "sig=topsecret"}))
    )
    assert str(error) == "setting AUTO_EXPORT_CONFIG: apps.recon.destination.secret: unknown field"
    assert "topsecret" not in str(error)


def test_the_generated_data_container_has_a_default() -> None:
    assert Settings.from_env({"AzureWebJobsStorage": STORAGE}).generated_data_container == "generated-data"
    blank = Settings.from_env({"AzureWebJobsStorage": STORAGE, "GENERATED_DATA_CONTAINER": " "})
    assert blank.generated_data_container == "generated-data"


def test_the_generated_data_container_can_be_set() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": STORAGE, "GENERATED_DATA_CONTAINER": "scanner-out"})
    assert settings.generated_data_container == "scanner-out"


@pytest.mark.parametrize("name", ["Generated", "ab", "gen_data", "-gen", "gen--data", "x" * 64])
def test_a_bad_generated_data_container_names_the_setting(name: str) -> None:
    error = settings_error(GENERATED_DATA_CONTAINER=name)
    assert error.setting == "GENERATED_DATA_CONTAINER"
    assert str(error).startswith("setting GENERATED_DATA_CONTAINER: ")
