"""`warden run` with [accounts.*] tables, as a real process: bad tables stop it at once, naming
the field; when no account can start it says why for each and exits non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.entrypoints.test_run import LAUNCH, free_port


def run(tmp_path: Path, tables: str, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "warden.toml"
    config.write_text(tables)
    args = ["run", "--port", str(free_port()), "--db", f"sqlite:///{tmp_path}/w.db"]
    args += ["--data-dir", str(tmp_path / "data"), "--config", str(config), *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_a_misspelt_key_in_a_table_stops_run_naming_it(tmp_path: Path) -> None:
    done = run(tmp_path, '[accounts.main]\nexchange = "sim"\napi_key_evn = "X"\n')
    assert done.returncode == 2, done.stderr
    assert "error: accounts.main.api_key_evn: is not a setting warden knows" in done.stderr


def test_an_unknown_exchange_stops_run_naming_it(tmp_path: Path) -> None:
    done = run(tmp_path, '[accounts.main]\nexchange = "kraken"\n')
    assert done.returncode == 2, done.stderr
    assert "error: accounts.main.exchange: Input should be" in done.stderr


def test_when_no_account_can_start_run_says_why_for_each_and_exits(tmp_path: Path) -> None:
    tables = (
        '[accounts.a]\nexchange = "bybit"\n'
        'api_key_env = "NO_SUCH_A_KEY"\napi_secret_env = "NO_SUCH_A_SECRET"\n'
        '[accounts.b]\nexchange = "binanceusdm"\n'
        'api_key_env = "NO_SUCH_B_KEY"\napi_secret_env = "NO_SUCH_B_SECRET"\n'
    )
    done = run(tmp_path, tables)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "warden: account a is not running: accounts.a.api_key_env: the environment variable" in done.stderr
    assert "warden: account b is not running: accounts.b.api_key_env" in done.stderr
    assert "no account could start" in done.stderr


def test_run_account_serves_one_table(tmp_path: Path) -> None:
    """`--account nope` names a table the file does not have: refused, naming the field."""
    done = run(tmp_path, '[accounts.main]\nexchange = "sim"\n', "--account", "nope")
    assert done.returncode == 2, done.stderr
    assert "error: account: unknown account 'nope'; accounts: main" in done.stderr


def test_a_ccxt_venue_without_keys_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    """`warden run --exchange bybit` (or binanceusdm) with no key in the environment: one line
    naming the setting and exit 2, as for every other bad setting; no traceback."""
    for exchange in ("bybit", "binanceusdm"):
        args = ["run", "--port", str(free_port()), "--db", f"sqlite:///{tmp_path}/w-{exchange}.db"]
        args += ["--data-dir", str(tmp_path / "data"), "--exchange", exchange]
        done = _run_without_settings(args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"error: api_key: {exchange} needs WARDEN_API_KEY and WARDEN_API_SECRET\n" in done.stderr
        assert "Traceback" not in done.stdout + done.stderr


def test_drift_with_a_keypair_path_naming_no_file_is_one_line_that_does_not_show_the_path(
    tmp_path: Path,
) -> None:
    """The keypair path is a secret (never logged): a path with no file behind it is refused before
    the sidecar is started, naming the setting, not the path."""
    missing = tmp_path / "no-such-keypair.json"
    args = ["run", "--port", str(free_port()), "--db", f"sqlite:///{tmp_path}/w.db"]
    args += ["--data-dir", str(tmp_path / "data"), "--exchange", "drift"]
    done = _run_without_settings(
        args, WARDEN_DRIFT_KEYPAIR_PATH=str(missing), WARDEN_DRIFT_RPC_URL="http://127.0.0.1:9"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: drift_keypair_path: no keypair file at the configured path\n" in done.stderr
    assert "drift sidecar started" not in done.stdout + done.stderr
    assert str(missing) not in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def _run_without_settings(args: list[str], **settings: str) -> subprocess.CompletedProcess[str]:
    """`warden <args>` with no WARDEN_* setting from this environment, only `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")} | settings
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
