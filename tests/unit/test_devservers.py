"""scripts/devservers.py (behind `make run`): command lines, environment, settings file, stopping."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest

from scripts import devservers
from scripts.devservers import Child, DevServersError, Options, Ports
from selfhost.keys import load_or_create_keys
from tests.support.ports import free_port

pytestmark = pytest.mark.unit

PORTS = Ports(runtime=17071, blob=20000, queue=20001, table=20002, smtp=21025, mail_web=21080)


def options(tmp_path: Path) -> Options:
    return Options(app_root=tmp_path / "app", state_dir=tmp_path / "state", ports=PORTS)


def test_azurite_listens_on_loopback_with_the_required_flags(tmp_path: Path) -> None:
    argv = devservers.azurite_command(options(tmp_path))

    assert argv[0].endswith("node_modules/.bin/azurite")
    for host_flag, port_flag, port in (
        ("--blobHost", "--blobPort", 20000),
        ("--queueHost", "--queuePort", 20001),
        ("--tableHost", "--tablePort", 20002),
    ):
        assert argv[argv.index(host_flag) + 1] == "127.0.0.1"
        assert argv[argv.index(port_flag) + 1] == str(port)
    assert argv[argv.index("--location") + 1] == str(tmp_path / "state" / "azurite")
    assert argv[-4:] == ["--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]


def test_maildev_binds_smtp_and_web_to_loopback(tmp_path: Path) -> None:
    argv = devservers.maildev_command(options(tmp_path))

    assert argv[argv.index("--ip") + 1] == "127.0.0.1"
    assert argv[argv.index("--web-ip") + 1] == "127.0.0.1"
    assert argv[argv.index("--smtp") + 1] == "21025"
    assert argv[argv.index("--web") + 1] == "21080"
    assert argv[argv.index("--mail-directory") + 1] == str(tmp_path / "state" / "mail")


def test_runtime_uses_the_state_folder_and_port(tmp_path: Path) -> None:
    argv = devservers.runtime_command(options(tmp_path))

    assert argv[1:3] == ["-m", "selfhost"]
    assert argv[argv.index("--state-dir") + 1] == str(tmp_path / "state" / "runtime")
    assert argv[argv.index("--port") + 1] == "17071"


def test_runtime_environment_carries_non_default_ports(tmp_path: Path) -> None:
    env = devservers.runtime_environment(
        options(tmp_path), {"PATH": "/bin", "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    )

    assert env["PATH"] == "/bin"
    # Explicit endpoints: UseDevelopmentStorage=true would mean the default ports.
    assert "BlobEndpoint=http://127.0.0.1:20000/devstoreaccount1;" in env["AzureWebJobsStorage"]
    assert "QueueEndpoint=http://127.0.0.1:20001/devstoreaccount1;" in env["AzureWebJobsStorage"]
    assert "TableEndpoint=http://127.0.0.1:20002/devstoreaccount1;" in env["AzureWebJobsStorage"]
    assert (env["SMTP_HOST"], env["SMTP_PORT"]) == ("127.0.0.1", "21025")


def test_runtime_environment_leaves_default_ports_to_local_settings(tmp_path: Path) -> None:
    opts = Options(app_root=tmp_path, state_dir=tmp_path, ports=Ports())

    env = devservers.runtime_environment(opts, {"PATH": "/bin"})

    assert env == {"PATH": "/bin", "PYTHONUNBUFFERED": "1", "LOCAL_SECRETS_PATH": str(tmp_path / "secrets")}


def test_local_settings_are_created_from_the_example_once(tmp_path: Path) -> None:
    (tmp_path / "local.settings.example.json").write_text('{"Values": {"A": "example"}}')

    assert devservers.ensure_local_settings(tmp_path) is True
    (tmp_path / "local.settings.json").write_text('{"Values": {"A": "edited"}}')
    assert devservers.ensure_local_settings(tmp_path) is False

    assert json.loads((tmp_path / "local.settings.json").read_text()) == {"Values": {"A": "edited"}}


def test_a_busy_port_is_reported_with_the_make_variable_to_change() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        ports = Ports(
            runtime=free_port(),
            blob=port,
            queue=free_port(),
            table=free_port(),
            smtp=free_port(),
            mail_web=free_port(),
        )

        with pytest.raises(DevServersError, match=f"port {port} \\(Azurite blob\\).*AZURITE_BLOB_PORT="):
            devservers.check_ports_free(ports)


def test_the_same_port_twice_is_refused() -> None:
    with pytest.raises(DevServersError, match="both set to port 1025"):
        devservers.check_ports_free(Ports(smtp=1025, mail_web=1025, runtime=free_port()))


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
    )
    child = Child(
        "stubborn", [sys.executable, "-c", code, str(ready)], cwd=tmp_path, log_path=tmp_path / "log"
    )
    child.start(devservers._pdeathsig_hook())
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)

    started = time.monotonic()
    child.stop(grace_s=0.5)

    assert child.process is not None
    assert child.process.returncode == -9
    assert time.monotonic() - started < 5


def test_stop_on_a_child_that_never_started_does_nothing(tmp_path: Path) -> None:
    Child("never", ["true"], cwd=tmp_path).stop(grace_s=0.1)


def test_stop_after_the_child_exited_on_its_own(tmp_path: Path) -> None:
    child = Child("quick", [sys.executable, "-c", "pass"], cwd=tmp_path)
    child.start(None)
    assert child.process is not None
    child.process.wait(timeout=10)

    child.stop(grace_s=0.1)

    assert child.exit_code() == 0


def test_the_front_door_gets_the_runtime_function_key_which_the_runtime_then_keeps(tmp_path: Path) -> None:
    opts = options(tmp_path)
    env = devservers.frontdoor_keys_environment(opts, {})

    assert env == {"FHIR_FRONTDOOR_KEYS": load_or_create_keys(opts.runtime_state).default_function_key}
    assert (opts.runtime_state / "keys.json").stat().st_mode & 0o777 == 0o600
    assert devservers.frontdoor_keys_environment(opts, {}) == env  # the same key on every start


def test_a_frontdoor_key_set_elsewhere_is_left_alone(tmp_path: Path) -> None:
    opts = options(tmp_path)
    assert devservers.frontdoor_keys_environment(opts, {"FHIR_FRONTDOOR_KEYS": "mine"}) == {}
    opts.app_root.mkdir(parents=True)
    settings = {"Values": {"FHIR_FRONTDOOR_KEYS": "from-local-settings"}}
    (opts.app_root / "local.settings.json").write_text(json.dumps(settings))
    assert devservers.frontdoor_keys_environment(opts, {}) == {}
    assert not (opts.runtime_state / "keys.json").exists()


def test_local_defaults_fill_only_what_neither_the_environment_nor_local_settings_set(tmp_path: Path) -> None:
    opts = options(tmp_path)
    assert devservers.local_defaults_environment(opts, {}) == devservers.LOCAL_DEFAULTS
    opts.app_root.mkdir(parents=True)
    (opts.app_root / "local.settings.json").write_text(
        json.dumps({"Values": {"OUTBOUND_ALLOW": "127.0.0.1"}})
    )
    env = devservers.local_defaults_environment(opts, {"MAIL_NOTIFIER_SCHEDULE": "*/5 * * * * *"})
    assert set(env) == set(devservers.LOCAL_DEFAULTS) - {"OUTBOUND_ALLOW", "MAIL_NOTIFIER_SCHEDULE"}
