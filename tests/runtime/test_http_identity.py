"""The real runtime process serving tests/apps/identity_app: hostile key bytes, caller identity
headers as App Service Authentication sets them, named keys (keys.json and the admin API), the
WEBSITE_AUTH_ENABLED setting, and `req.url` built on the configured base.

One runtime is shared by the module; tests that need other settings start their own process.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from selfhost.keys import load_or_create_keys, write_keys
from tests.support.apps import app_root
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.runtime

IDENTITY_APP = app_root("identity_app")
ALICE = "alice-key-0123456789abcdef"
FORGED = {
    "X-MS-CLIENT-PRINCIPAL": base64.b64encode(b'{"claims": [{"typ": "roles", "val": "operator"}]}').decode(),
    "X-MS-CLIENT-PRINCIPAL-NAME": "root",
    "x-ms-client-principal-id": "root",
    "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
}


def with_named_key(state: Path, name: str, value: str) -> None:
    """A keys.json holding a named function key, as a user would add it before starting."""
    keys = load_or_create_keys(state)
    named = dataclasses.replace(keys, function_keys={**keys.function_keys, name: value})
    write_keys(state / "keys.json", named)


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    state = tmp_path_factory.mktemp("identity") / "state"
    with_named_key(state, "alice@example.org", ALICE)
    runtime = RuntimeProcess(IDENTITY_APP, state).start()
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture(scope="module")
def client(rt: RuntimeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rt.base_url, timeout=30) as c:
        yield c


def seen(client: httpx.Client, key: str | None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """What the function saw of a GET /api/whoami made with `key` and extra `headers`."""
    sent = {**(headers or {}), **({"x-functions-key": key} if key else {})}
    r = client.get("/api/whoami", headers=sent)
    assert r.status_code == 200, r.text
    return dict(r.json())


def principal_of(headers: dict[str, str]) -> dict[str, Any] | None:
    encoded = headers.get("x-ms-client-principal")
    return None if encoded is None else dict(json.loads(base64.b64decode(encoded)))


def identity_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("x-ms-client-principal")}


def test_a_0xff_key_is_401_with_an_empty_body(client: httpx.Client) -> None:
    for value in (b"\xff", b"\xff\xfe\xfd", b"\xc3\x28"):
        r = client.get("/api/whoami", headers={"x-functions-key": value})
        assert (r.status_code, r.content) == (401, b""), value
    r = client.get("/api/whoami?code=%FF")
    assert (r.status_code, r.content) == (401, b"")


def test_forged_principal_headers_are_stripped(client: httpx.Client, rt: RuntimeProcess) -> None:
    assert identity_headers(seen(client, rt.function_key, FORGED)["headers"]) == {}
    r = client.get("/api/whoami-open", headers=FORGED)
    assert r.status_code == 200 and identity_headers(r.json()["headers"]) == {}


def test_a_named_key_is_its_caller(client: httpx.Client) -> None:
    headers = seen(client, ALICE, FORGED)["headers"]
    assert principal_of(headers) == {
        "auth_typ": "functionkey",
        "name_typ": "name",
        "role_typ": "roles",
        "claims": [{"typ": "name", "val": "alice@example.org"}],
    }
    assert {k: v for k, v in identity_headers(headers).items() if k != "x-ms-client-principal"} == {
        "x-ms-client-principal-name": "alice@example.org",
        "x-ms-client-principal-id": "alice@example.org",
        "x-ms-client-principal-idp": "functionkey",
    }


def test_the_master_key_is_admin_with_the_operator_role(client: httpx.Client, rt: RuntimeProcess) -> None:
    headers = seen(client, rt.master_key, FORGED)["headers"]
    assert headers["x-ms-client-principal-name"] == "admin"
    principal = principal_of(headers)
    assert principal is not None
    assert principal["claims"] == [{"typ": "name", "val": "admin"}, {"typ": "roles", "val": "operator"}]


def test_the_default_key_and_no_key_carry_no_principal(client: httpx.Client, rt: RuntimeProcess) -> None:
    assert identity_headers(seen(client, rt.function_key)["headers"]) == {}
    assert identity_headers(client.get("/api/whoami-open").json()["headers"]) == {}


def test_the_app_sees_website_auth_enabled(client: httpx.Client, rt: RuntimeProcess) -> None:
    # The runtime sets it for the app only: this test process never gets it from the runtime.
    assert seen(client, rt.function_key)["auth_enabled"] == os.environ.get("WEBSITE_AUTH_ENABLED", "True")


def test_req_url_ignores_a_forged_host(client: httpx.Client, rt: RuntimeProcess) -> None:
    url = seen(client, rt.function_key, {"Host": "evil.example"})["url"]
    assert url == f"http://127.0.0.1:{rt.port}/api/whoami"


def test_keys_added_through_the_admin_api_apply_at_once_and_persist(
    client: httpx.Client, rt: RuntimeProcess
) -> None:
    master = {"x-functions-key": rt.master_key}
    value = "bob-key-0123456789abcdef"
    assert client.get("/api/whoami", headers={"x-functions-key": value}).status_code == 401
    document = {"name": "bob@example.org", "value": value}
    r = client.put("/admin/host/functionkeys/bob@example.org", json=document, headers=master)
    assert r.status_code == 201, r.text
    assert seen(client, value)["headers"]["x-ms-client-principal-name"] == "bob@example.org"
    assert rt.keys()["functionKeys"]["bob@example.org"] == value
    assert stat.S_IMODE((rt.state_dir / "keys.json").stat().st_mode) == 0o600
    assert (
        client.put("/admin/host/functionkeys/bad name", json={"value": value}, headers=master).status_code
        == 400
    )
    as_alice = {"x-functions-key": ALICE}
    assert (
        client.put("/admin/host/functionkeys/bob", json={"value": value}, headers=as_alice).status_code == 401
    )
    assert client.delete("/admin/host/functionkeys/bob@example.org", headers=master).status_code == 204
    assert client.get("/api/whoami", headers={"x-functions-key": value}).status_code == 401
    assert "bob@example.org" not in rt.keys()["functionKeys"]


def test_a_hand_edit_of_keys_json_applies_without_a_restart(client: httpx.Client, rt: RuntimeProcess) -> None:
    value = "carol-key-0123456789abcdef"
    data = rt.keys()
    data["functionKeys"]["carol"] = value
    path = rt.state_dir / "keys.json"
    path.write_text(json.dumps(data))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # coarse timestamps
    assert seen(client, value)["headers"]["x-ms-client-principal-name"] == "carol"


def test_website_auth_enabled_set_by_the_environment_wins(tmp_path: Path) -> None:
    rt = RuntimeProcess(IDENTITY_APP, tmp_path / "state", env={"WEBSITE_AUTH_ENABLED": "False"}).start()
    try:
        r = httpx.get(rt.url("api/whoami"), headers={"x-functions-key": rt.function_key}, timeout=30)
        assert r.json()["auth_enabled"] == "False"
    finally:
        rt.stop()


def test_public_base_url_is_the_base_of_req_url(tmp_path: Path) -> None:
    env = {"PUBLIC_BASE_URL": "https://exports.example.org/"}
    rt = RuntimeProcess(IDENTITY_APP, tmp_path / "state", env=env).start()
    try:
        r = httpx.get(
            rt.url("api/whoami?x=1"), headers={"x-functions-key": rt.function_key, "Host": "evil.example"}
        )
        assert r.json()["url"] == "https://exports.example.org/api/whoami?x=1"
    finally:
        rt.stop()


def test_a_bad_public_base_url_stops_the_start_naming_the_setting(tmp_path: Path) -> None:
    rt = RuntimeProcess(IDENTITY_APP, tmp_path / "state", env={"PUBLIC_BASE_URL": "exports.example.org"})
    rt.start(wait=False)
    assert rt.process is not None
    try:
        assert rt.process.wait(timeout=30) == 1
    finally:
        rt.stop()
    wait_until(lambda: "PUBLIC_BASE_URL must be an http(s) URL" in rt.log_text(), timeout=5)
    assert "Traceback" not in rt.log_text()
