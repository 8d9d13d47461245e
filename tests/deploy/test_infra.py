"""Offline checks of infra/ (the Bicep compiler cannot be installed here): parameters, modules
and outputs agree; no secret in the parameters; every setting and trigger the app needs in Azure
is provisioned (identity-based connections, roles, the containers and queues its triggers watch,
the Event Grid route of the blob trigger); the bindings are valid with the settings Azure gets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from scripts import check_bindings, infra_text
from scripts.infra_text import Bicep

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = Bicep.load(INFRA / "main.bicep")
Functions = list[tuple[str, list[dict[str, Any]]]]

# Role definition ids (built-in roles).
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
# azd sets these for every environment; hooks may read them besides main.bicep's outputs.
AZD_VARIABLES = {"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_SUBSCRIPTION_ID", "AZURE_PRINCIPAL_ID"}
SECRET_PARAM = re.compile(r"password$|token$|accountKey$|sas(Token)?$|clientSecret$", re.I)
SECRET_VALUES = re.compile(
    r"AccountKey=|SharedAccessSignature=|[?&]sig=|-----BEGIN|eyJ[A-Za-z0-9_-]{10,}\.", re.I
)


def module_files() -> dict[str, Bicep]:
    return {symbol: Bicep.load(INFRA / m.path) for symbol, m in MAIN.modules().items()}


def azure_settings() -> dict[str, str]:
    return infra_text.app_setting_values(INFRA)


def resolved(text: str) -> str:
    value, missing = check_bindings.resolve(text, azure_settings())
    assert not missing, f"{text}: {missing} not set by infra"
    return value


def list_param(symbol: str, name: str) -> list[str]:
    """The names a module gets in an array parameter: literals, or main.bicep parameters at their defaults."""
    expr = MAIN.modules()[symbol].params[name]
    params = MAIN.params()
    given = infra_text.parameters_file(INFRA)
    out = []
    for item in infra_text.array_items(infra_text.block_after(expr, 0)):
        literal = infra_text.string_literal(item)
        out.append(
            literal if literal is not None else infra_text.parameter_default(params[item], given.get(item))
        )
    return out


def main_var(name: str) -> str | None:
    match = re.search(rf"^var\s+{name}\s*=\s*(.+?)\s*$", MAIN.text, re.M)
    return infra_text.string_literal(match.group(1)) if match else None


# -- parameters and outputs -------------------------------------------------------------------


def test_the_parameters_file_gives_only_parameters_main_bicep_declares() -> None:
    params = MAIN.params()
    given = infra_text.parameters_file(INFRA)
    assert sorted(set(given) - set(params)) == []
    required = [name for name, p in params.items() if p.default is None]
    assert sorted(set(required) - set(given)) == [], (
        "azd would prompt for these: give them in main.parameters.json"
    )


def test_a_default_in_the_parameters_file_is_the_bicep_default() -> None:
    """`${VAR=default}` replaces the Bicep default, so the two must say the same."""
    params = MAIN.params()
    for name, value in infra_text.parameters_file(INFRA).items():
        match = re.fullmatch(r"\$\{(\w+)(?:=(.*))?\}", str(value))
        assert match, f"{name}: a parameter's value comes from the azd environment (${{VAR}}), not a literal"
        bicep_default = infra_text.string_literal(params[name].default or "''")
        if match.group(2) is not None or params[name].default is not None:
            assert (match.group(2) or "") == (bicep_default or ""), f"{name}: defaults differ"


def test_no_secret_in_the_parameters_files_or_templates() -> None:
    """Parameter values come from the azd environment (`${VAR}`), never literals in the file; no
    file under infra/ holds a key, SAS, private key or token; a parameter that would carry a
    secret is @secure() (none does: secrets live in Key Vault and settings name them)."""
    for name, value in infra_text.parameters_file(INFRA).items():
        assert re.fullmatch(r"\$\{\w+(=[^}]*)?\}", str(value)), f"main.parameters.json: {name} is a literal"
    for path in sorted(INFRA.rglob("*")):
        if path.is_file():
            assert not SECRET_VALUES.search(path.read_text()), (
                f"{path.relative_to(ROOT)} holds something like a secret"
            )
    for bicep in [MAIN, *module_files().values()]:
        for param in bicep.params().values():
            if SECRET_PARAM.search(param.name):
                assert param.secure, f"{bicep.path.name}: param {param.name} must be @secure()"


def test_modules_get_exactly_the_parameters_they_declare() -> None:
    for symbol, module in MAIN.modules().items():
        declared = Bicep.load(INFRA / module.path).params()
        assert sorted(set(module.params) - set(declared)) == [], f"module {symbol} passes unknown params"
        required = {name for name, p in declared.items() if p.default is None}
        assert sorted(required - set(module.params)) == [], f"module {symbol} misses required params"


def test_every_output_referenced_exists() -> None:
    modules = module_files()
    for symbol, output in MAIN.output_references():
        assert symbol in modules, f"{symbol}.outputs.{output}: no module {symbol}"
        assert output in modules[symbol].outputs(), (
            f"{symbol}.outputs.{output}: {modules[symbol].path.name} has no such output"
        )


def test_the_postdeploy_hook_reads_only_outputs_of_main_bicep() -> None:
    hook = (INFRA / "hooks" / "postdeploy.sh").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", hook))
    assert used, "the hook reads no azd value"
    assert sorted(used - set(MAIN.outputs()) - AZD_VARIABLES) == []
    azure_yaml = (ROOT / "azure.yaml").read_text()
    assert "./infra/hooks/postdeploy.sh" in azure_yaml and "postdeploy:" in azure_yaml


# -- what the app needs in Azure --------------------------------------------------------------


def test_host_storage_is_identity_based_with_the_user_assigned_identity() -> None:
    settings = infra_text.app_settings(INFRA)
    assert "AzureWebJobsStorage" not in settings, "no connection string: the account has shared keys disabled"
    assert settings["AzureWebJobsStorage__credential"] == "'managedidentity'"
    assert settings["AzureWebJobsStorage__clientId"] == settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert "allowSharedKeyAccess: false" in (INFRA / "app" / "storage.bicep").read_text()


def test_flex_consumption_settings_it_rejects_are_not_set() -> None:
    settings = infra_text.app_settings(INFRA)
    for name in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"):
        assert name not in settings, f"Flex Consumption rejects {name}"


def test_the_app_identity_has_blob_queue_table_and_secret_roles() -> None:
    storage = (INFRA / "app" / "storage.bicep").read_text()
    roles = re.search(r"var appRoles = \[(.*?)\]", storage, re.S)
    assert roles, "storage.bicep: appRoles"
    names = {name.strip() for name in roles.group(1).split(",")}
    for name, role in (
        ("storageBlobDataOwner", BLOB_DATA_OWNER),
        ("storageQueueDataContributor", QUEUE_DATA_CONTRIBUTOR),
        ("storageTableDataContributor", TABLE_DATA_CONTRIBUTOR),
    ):
        assert name in names and f"var {name} = '{role}'" in storage
    assert re.search(r"principalId: appPrincipalId", storage)
    assert KEY_VAULT_SECRETS_OFFICER in (INFRA / "app" / "keyvault.bicep").read_text()
    assert "keyVaultReferenceIdentity: identityId" in (INFRA / "app" / "function.bicep").read_text()


def test_every_binding_connection_is_set_in_azure(functions: Functions) -> None:
    settings = azure_settings()
    for name, bindings in functions:
        for binding in bindings:
            if "connection" not in binding:
                continue
            connection = binding["connection"] or "AzureWebJobsStorage"
            assert not check_bindings._connection(binding["type"], connection, settings), (
                f"{name}: connection {connection!r} is not set in Azure: add to the appSettings in infra/main.bicep "
                f"{connection}__blobServiceUri: storage.outputs.blobEndpoint, {connection}__queueServiceUri: "
                f"storage.outputs.queueEndpoint, {connection}__credential: 'managedidentity', "
                f"{connection}__clientId: identity.outputs.clientId (and connection = true in docs/settings.toml)"
            )


def test_blob_triggers_get_their_events_from_event_grid(functions: Functions) -> None:
    """Flex Consumption refuses the polling blob trigger; Event Grid also has no polling delay."""
    containers = list_param("storage", "containerNames")
    blob_triggers = [(n, b) for n, bs in functions for b in bs if b["type"] == "blobTrigger"]
    for name, binding in blob_triggers:
        assert binding.get("source") == "EventGrid", (
            f"{name}: add source=func.BlobSource.EVENT_GRID to its @blob_trigger (Flex Consumption)"
        )
        container = resolved(binding["path"]).split("/", 1)[0]
        assert container in containers, f"{name}: container {container!r} is not created by infra"
    assert sorted(n for n, _ in blob_triggers) == sorted(
        filter(None, [main_var("generatedDataFunctionName")])
    ), (
        "infra/main.bicep: var generatedDataFunctionName must name the blob-triggered function "
        "(the postdeploy hook subscribes it to Event Grid)"
    )
    assert "Microsoft.Storage.StorageAccounts" in (INFRA / "app" / "eventgrid.bicep").read_text()


def test_queue_triggers_watch_queues_infra_creates(functions: Functions) -> None:
    queues = list_param("storage", "queueNames")
    for name, bindings in functions:
        for binding in bindings:
            if binding["type"] == "queueTrigger":
                queue = resolved(binding["queueName"])
                assert queue in queues, (
                    f"{name}: queue {queue!r} is not created by infra (storage queueNames)"
                )


def test_the_bindings_are_valid_with_the_settings_azure_gets(functions: Functions) -> None:
    host_json = json.loads((ROOT / "host.json").read_text())
    assert check_bindings.check(functions, azure_settings(), host_json) == []
