"""A trader's configuration mistakes: each is refused at start, naming the setting, in one line —
never a traceback, never silently ignored, and never with a secret in the message."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from warden.config import ConfigError, Settings
from warden.entrypoints.cli import app

runner = CliRunner()


def one_error_line(stderr: str) -> str:
    """The CLI's refusal: exactly one line, `error: ...`, no traceback."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# -- the config file itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("leverage = 5\n".encode("utf-16"), "not UTF-8"),  # Windows Notepad's "Unicode"
        ('account = "caf\xe9"\n'.encode("latin-1"), "not UTF-8"),
    ],
    ids=["utf-16", "latin-1"],
)
def test_a_config_file_that_is_not_utf8_is_refused_naming_config(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    path = tmp_path / "warden.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        Settings.load(path)
    assert caught.value.field == "config" and fragment in caught.value.message
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert one_error_line(result.stderr).startswith("error: config: ")


def test_a_config_directory_is_named_as_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load(tmp_path)
    assert caught.value.field == "config"
    assert "is a directory" in caught.value.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_config_file_is_refused_naming_config(tmp_path: Path) -> None:
    path = tmp_path / "warden.toml"
    path.write_text("leverage = 5\n")
    path.chmod(0)
    with pytest.raises(ConfigError) as caught:
        Settings.load(path)
    assert caught.value.field == "config" and "cannot be read" in caught.value.message


def test_an_unreadable_config_file_is_refused_naming_config_as_any_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`warden status` run as another user than the engine's (WARDEN_CONFIG of a 0600 file): the
    client commands read the file without click's check, so the refusal is warden's own."""
    path = tmp_path / "warden.toml"
    path.write_text("leverage = 5\n")

    def denied(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(ConfigError) as caught:
        Settings.load(path)
    assert caught.value.field == "config" and "cannot be read" in caught.value.message
    result = runner.invoke(app, ["status"], env={"WARDEN_CONFIG": str(path)})
    assert result.exit_code == 1
    assert one_error_line(result.stderr).startswith("error: config: ")


# -- the environment ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("WARDEN_SYMBOLS", "SOL=3", "symbols"),
        ("WARDEN_ALERT_ROUTES", "tp_filled=silent", "alert_routes"),
        ("WARDEN_ACCOUNTS", '{"main": {"exchange": "sim"}', "accounts"),
    ],
)
def test_a_nested_setting_that_is_not_json_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    """A nested setting's variable holds JSON; anything else was a pydantic-settings traceback."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    assert caught.value.field == field
    assert variable in caught.value.message and "JSON" in caught.value.message
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2
    assert one_error_line(result.stderr).startswith(f"error: {field}: ")


# -- an account's keys --------------------------------------------------------------------------

BINANCE_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
"""The shape of a Binance API key (64 letters and digits): a valid-looking variable name."""


@pytest.mark.parametrize(
    ("field", "pasted"),
    [
        ("api_key_env", BINANCE_KEY),
        ("api_secret_env", "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"),
        ("api_key_env", "8mAFk0G2-AgmAaQL7Xm"),
        ("drift_rpc_url_env", "https://mainnet.helius-rpc.com/?api-key=0b1c2d3e-secret"),
    ],
    ids=["binance-key", "binance-secret", "dashed", "rpc-url"],
)
def test_a_key_pasted_where_its_variable_name_goes_is_refused_and_never_shown(
    tmp_path: Path, field: str, pasted: str
) -> None:
    """`api_key_env = "<the key itself>"` (the trader pasted the key, not the variable's name) was
    taken as a variable name and then printed — in `account main is not running: ... the
    environment variable <KEY> is not set`, the log, GET /accounts and `warden status` — or echoed
    by the refusal of a name with a dash. It is refused at start, naming the field, without it."""
    exchange = "drift" if field == "drift_rpc_url_env" else "binanceusdm"
    keys = "" if exchange == "drift" else 'api_key_env = "MAIN_KEY"\napi_secret_env = "MAIN_SECRET"\n'
    table = f'[accounts.main]\nexchange = "{exchange}"\n{keys}'
    table = table.replace(f'{field} = "MAIN_KEY"', f'{field} = "{pasted}"')
    table = table.replace(f'{field} = "MAIN_SECRET"', f'{field} = "{pasted}"')
    if field not in table:
        table += f'{field} = "{pasted}"\n'
    path = tmp_path / "warden.toml"
    path.write_text(table + '[accounts.alt]\nexchange = "sim"\n')
    with pytest.raises(ConfigError) as caught:
        Settings.load(path)
    assert caught.value.field == f"accounts.main.{field}"
    assert "environment variable" in caught.value.message
    assert pasted not in str(caught.value)
    result = runner.invoke(app, ["run", "--config", str(path), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert pasted not in result.output and pasted not in result.stderr
    assert one_error_line(result.stderr).startswith(f"error: accounts.main.{field}: ")


@pytest.mark.parametrize("variable", ["WARDEN_API_KEY", "WARDEN_API_SECRET", "WARDEN_TELEGRAM_TOKEN"])
@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "is empty"),  # `export WARDEN_API_KEY=$BINANCE_KEY` with BINANCE_KEY unset
        ("   ", "is empty"),
        ("sim-key-0123456789\n", "whitespace"),  # a Kubernetes secret made with `echo`, a .env line
        (" sim-key-0123456789", "whitespace"),
    ],
    ids=["empty", "blank", "newline", "space"],
)
def test_an_empty_or_padded_secret_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    """An empty key reached ccxt and the engine retried its start for ever on `AuthenticationError:
    binanceusdm requires "apiKey" credential`; one with a newline crashed `warden run` with an
    ExceptionGroup traceback (aiohttp refuses the header); a bot token with one never reached
    Telegram. Each is refused at start, naming the setting, without the value."""
    monkeypatch.setenv("WARDEN_API_KEY", "sim-key")
    monkeypatch.setenv("WARDEN_API_SECRET", "sim-secret")
    monkeypatch.setenv(variable, value)
    field = variable.removeprefix("WARDEN_").lower()
    with pytest.raises(ConfigError) as caught:
        Settings.load(exchange="binanceusdm")
    assert caught.value.field == field and fragment in caught.value.message
    assert value.strip() == "" or value.strip() not in str(caught.value)
    args = [
        "run",
        "--exchange",
        "binanceusdm",
        "--data-dir",
        str(tmp_path),
        "--db",
        f"sqlite:///{tmp_path}/w.db",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert one_error_line(result.stderr).startswith(f"error: {field}: ")
    assert not (tmp_path / "w.db").exists()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("   ", "is empty"), ("mk-0123456789\n", "whitespace"), ("mk-0123456789\r\n", "whitespace")],
    ids=["blank", "newline", "crlf"],
)
def test_an_account_key_variable_that_is_blank_or_padded_is_refused_naming_the_field(
    tmp_path: Path, value: str, fragment: str
) -> None:
    path = tmp_path / "warden.toml"
    path.write_text(
        '[accounts.main]\nexchange = "bybit"\napi_key_env = "MAIN_KEY"\napi_secret_env = "MAIN_SECRET"\n'
    )
    settings = Settings.load(path)
    with pytest.raises(ConfigError) as caught:
        settings.for_account("main", {"MAIN_KEY": value, "MAIN_SECRET": "ms"})
    assert caught.value.field == "accounts.main.api_key_env"
    assert "MAIN_KEY" in caught.value.message and fragment in caught.value.message
    assert value.strip() == "" or value.strip() not in str(caught.value)


# -- the database URL ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("db", "fragment"),
    [
        ("mysql://warden:hunter2@db-host/warden", "unsupported database scheme 'mysql'"),
        ("sqlite://", "SQLite needs a file path"),
        ("sqlite:///:memory:", "SQLite needs a file path"),
        # each of these was a traceback once the engine connected (OverflowError, ValueError,
        # TypeError: connect() got an unexpected keyword argument), then `error: <Exception>: ...`
        ("postgresql://warden:hunter2@db-host:99999/warden", "port 99999"),
        ("postgresql://warden:hunter2@db-host:54O2/warden", "port '54O2'"),
        ("postgresql://warden:hunter2@[::1]:70000/warden", "port 70000"),
        ("postgresql://warden:hunter2@db-host/warden?connect_timeout=5", "'connect_timeout'"),
        ("postgresql://warden:hunter2@db-host/warden?sslmode=requird", "sslmode"),
        ("postgresql://warden:hunter2@db-host/warden?sslmode=require&ssl=disable", "sslmode"),
    ],
)
def test_a_database_url_warden_cannot_use_is_refused_at_load_naming_db(
    tmp_path: Path, db: str, fragment: str
) -> None:
    """These passed the settings and failed once the engine opened the database: a traceback, then
    `error: ValueError: ...` (exit 1) without the setting's name."""
    with pytest.raises(ConfigError) as caught:
        Settings.load(db=db)
    assert caught.value.field == "db" and fragment in caught.value.message
    assert "hunter2" not in str(caught.value)
    result = runner.invoke(app, ["run", "--db", db, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert one_error_line(result.stderr).startswith("error: db: ")


def test_a_password_with_a_bare_at_sign_is_refused_without_any_of_it(tmp_path: Path) -> None:
    """`postgresql://warden:s3c@retPW@db-host/warden`: the URL takes the password to end at its
    first '@' and the rest for the host, so every error showed `warden:***@retPW@db-host` — the
    password's tail — and warden looked for a host named `retPW@db-host`."""
    db = "postgresql://warden:s3c@retPW@db-host:5432/warden"
    with pytest.raises(ConfigError) as caught:
        Settings.load(db=db)
    assert caught.value.field == "db" and "%40" in caught.value.message
    assert "retPW" not in str(caught.value) and "s3c" not in str(caught.value)
    result = runner.invoke(app, ["run", "--db", db, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "retPW" not in result.stderr
    assert one_error_line(result.stderr).startswith("error: db: ")


@pytest.mark.parametrize("password", ["hun/ter2", "hun?ter2", "hun#ter2", "hun?x=1&ter2"])
def test_a_password_with_a_bare_slash_question_mark_or_hash_is_refused_without_any_of_it(
    tmp_path: Path, password: str
) -> None:
    """A '/', '?' or '#' ends the URL's host part, so the password's head was read as a port
    ("port 'hun' in the URL is not a number") or its tail as a parameter, and shown."""
    db = f"postgresql://warden:{password}@db-host:5432/warden"
    with pytest.raises(ConfigError) as caught:
        Settings.load(db=db)
    assert caught.value.field == "db" and "%2F" in caught.value.message
    assert "hun" not in str(caught.value) and "ter2" not in str(caught.value)
    result = runner.invoke(app, ["run", "--db", db, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "hun" not in result.stderr and "ter2" not in result.stderr
    assert one_error_line(result.stderr).startswith("error: db: ")


def test_redact_hides_all_of_a_password_with_a_bare_at_sign() -> None:
    from warden.adapters.db.urls import redact

    shown = redact("postgresql://warden:s3c@retPW@db-host:5432/warden")
    assert "retPW" not in shown and "s3c" not in shown
    assert shown == "postgresql://warden:***@db-host:5432/warden"
    assert "retPW" not in redact("not a url://warden:s3c@retPW@db-host")


def free_port() -> str:
    """A port nothing listens on (just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def closed_port_url() -> str:
    """A PostgreSQL URL nothing answers at."""
    return f"postgresql://warden:hunter2@127.0.0.1:{free_port()}/warden"


@pytest.mark.parametrize(
    ("args", "env", "start"),
    [
        ([], {"WARDEN_LEVERAGE": "five"}, "error: leverage: "),
        (["--db", "mysql://warden:hunter2@db-host/warden"], {}, "error: db: unsupported database scheme"),
        (["--db", "postgresql://warden:s3c@retPW@db-host/warden"], {}, "error: db: "),
        (["--db", None], {}, "error: db: "),
    ],
    ids=["bad-setting", "mysql", "bare-at", "nothing-answers"],
)
def test_db_upgrade_refuses_in_one_line(args: list[str | None], env: dict[str, str], start: str) -> None:
    """`warden db upgrade` let every failure out as a traceback: a bad setting (CliError), a URL
    it cannot use (ValueError), a database that does not answer (StoreUnavailable)."""
    argv = [closed_port_url() if arg is None else arg for arg in args]
    result = runner.invoke(app, ["db", "upgrade", *argv], env=env)
    assert result.exit_code != 0
    assert one_error_line(result.stderr).startswith(start)
    assert "hunter2" not in result.stderr and "retPW" not in result.stderr


def test_run_with_a_database_that_does_not_answer_is_one_line_naming_db(tmp_path: Path) -> None:
    """A wrong host or port in `db` is found when the engine migrates it: a traceback was logged
    before `error: StoreUnavailable: ...`."""
    args = ["run", "--port", free_port(), "--data-dir", str(tmp_path), "--db", closed_port_url()]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: db: "), result.stderr


# -- one engine per account (`warden run --account NAME`) ----------------------------------------

SAME_KEYS = """
[accounts.a]
exchange = "bybit"
api_key_env = "A_KEY"
api_secret_env = "A_SECRET"

[accounts.b]
exchange = "bybit"
api_key_env = "B_KEY"
api_secret_env = "B_SECRET"
"""


def test_run_account_refuses_a_table_that_trades_an_earlier_tables_exchange_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tables holding the same key on the same venue are one exchange account: `warden run`
    of the whole file refuses the later one, but `warden run --account b` (one engine per account,
    on several hosts, sharing the file, as the README sets it up) compared b with nothing and ran
    it beside `--account a`: two writers on one exchange account, each adopting the other's
    positions as orphans."""
    path = tmp_path / "warden.toml"
    path.write_text(SAME_KEYS)
    for variable, value in {"A_KEY": "k", "A_SECRET": "s", "B_KEY": "k", "B_SECRET": "s"}.items():
        monkeypatch.setenv(variable, value)
    settings = Settings.load(path)
    assert settings.only("a").account_names() == ("a",)
    with pytest.raises(ConfigError) as caught:
        settings.only("b")
    assert caught.value.field == "accounts.b"
    assert "same exchange account as 'a'" in caught.value.message
    result = runner.invoke(app, ["run", "--config", str(path), "--account", "b", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert one_error_line(result.stderr).startswith("error: accounts.b: ")
    monkeypatch.setenv("B_KEY", "another-key")
    assert settings.only("b").account_names() == ("b",)


# -- a flag beside an [accounts.*] table --------------------------------------------------------

TABLES = """
[accounts.main]
exchange = "sim"
leverage = 10
default_usd = 500

[accounts.alt]
exchange = "sim"
"""


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """`warden run`'s engine replaced by a recorder of the settings it would start with."""
    from warden.entrypoints import cli

    started: list[Settings] = []

    async def serve(settings: Settings, token: object, sock: object) -> None:
        started.append(settings)

    monkeypatch.setattr(cli, "serve", serve)
    return started


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--leverage", "3"], "leverage"),
        (["--leverage", "3", "--account", "main"], "leverage"),
        (["--default-usd", "50"], "default_usd"),
        (["--exchange", "bybit"], "exchange"),
    ],
    ids=["leverage", "leverage-one-account", "default-usd", "exchange"],
)
def test_a_flag_an_account_table_overrides_is_refused_naming_it(
    tmp_path: Path, served: list[Settings], flags: list[str], field: str
) -> None:
    """README: flags beat WARDEN_* variables, which beat the file. But a table's own setting beat
    the flag: `warden run --account main --leverage 3` traded main at the table's 10x, saying
    nothing. The flag is refused, naming the setting and the table that sets it."""
    path = tmp_path / "warden.toml"
    path.write_text(TABLES)
    args = ["run", "--config", str(path), "--data-dir", str(tmp_path), "--port", free_port(), *flags]
    result = runner.invoke(app, args)
    assert served == []
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: {field}: ") and "accounts.main" in line


@pytest.mark.parametrize(
    "flags",
    [["--leverage", "10"], ["--leverage", "3", "--account", "alt"], ["--margin-mode", "isolated"]],
    ids=["same-value", "other-account", "not-in-a-table"],
)
def test_a_flag_no_served_table_overrides_applies(
    tmp_path: Path, served: list[Settings], flags: list[str]
) -> None:
    path = tmp_path / "warden.toml"
    path.write_text(TABLES)
    args = ["run", "--config", str(path), "--data-dir", str(tmp_path), "--port", free_port(), *flags]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(served) == 1


# -- alerts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "secret"),
    [
        ("alert_webhook_url", "discord.com/api/webhooks/1234/Zx9-SECRETwebhookTOKEN", "SECRETwebhookTOKEN"),
        ("telegram_chat_ids", "111111111,123456789:AAH-SECRETbotTOKEN", "SECRETbotTOKEN"),
    ],
    ids=["webhook-without-scheme", "bot-token-as-chat-id"],
)
def test_a_refused_alert_setting_never_shows_the_secret_in_it(field: str, value: str, secret: str) -> None:
    """A webhook URL is its own password (Discord's and Slack's carry the token; the webhook
    channel never prints it), and a bot token put where the chat ids go (the two lines swapped)
    is the bot: the refusal echoed either whole."""
    with pytest.raises(ConfigError) as caught:
        Settings.load(**{field: value})
    assert caught.value.field == field
    assert secret not in str(caught.value)
    result = runner.invoke(app, ["run"], env={f"WARDEN_{field.upper()}": value})
    assert result.exit_code == 2
    assert secret not in result.stderr
    assert one_error_line(result.stderr).startswith(f"error: {field}: ")


@pytest.mark.parametrize(
    ("top", "env"),
    [("", {"WARDEN_ACCOUNT": "alt"}), ('account = "alt"\n', {})],
    ids=["WARDEN_ACCOUNT", "file"],
)
def test_the_account_setting_from_the_environment_or_the_file_picks_one_table(
    tmp_path: Path, served: list[Settings], top: str, env: dict[str, str]
) -> None:
    """`--account alt` serves the one table; WARDEN_ACCOUNT=alt (a host's unit file, one engine per
    account) or `account = "alt"` was ignored beside [accounts.*] tables, and the engine served
    every table."""
    path = tmp_path / "warden.toml"
    path.write_text(top + TABLES)
    args = ["run", "--config", str(path), "--data-dir", str(tmp_path), "--port", free_port()]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert [s.account_names() for s in served] == [("alt",)]


def test_an_account_setting_naming_no_table_is_refused(tmp_path: Path, served: list[Settings]) -> None:
    path = tmp_path / "warden.toml"
    path.write_text(TABLES)
    args = ["run", "--config", str(path), "--data-dir", str(tmp_path), "--port", free_port()]
    result = runner.invoke(app, args, env={"WARDEN_ACCOUNT": "mian"})
    assert result.exit_code == 2 and served == []
    assert one_error_line(result.stderr) == "error: account: unknown account 'mian'; accounts: main, alt"


# -- types --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("drift_sub_account = true\n", "drift_sub_account"),
        ("max_open_positions = true\n", "max_open_positions"),
        ("leverage = true\n", "leverage"),
        ("reconcile_interval = true\n", "reconcile_interval"),
        ('[accounts.main]\nexchange = "sim"\ndrift_sub_account = true\n', "accounts.main.drift_sub_account"),
        ('[accounts.main]\nexchange = "sim"\nleverage = false\n', "accounts.main.leverage"),
        ("[symbols.SOL]\nleverage = true\n", "symbols.SOL.leverage"),
    ],
)
def test_true_or_false_for_a_number_is_refused_naming_it(tmp_path: Path, text: str, field: str) -> None:
    """TOML's true was read as 1 for a whole number or a duration (drift_sub_account = true traded
    on sub-account 1, leverage = false was refused as 0), while a decimal setting refused it."""
    path = tmp_path / "warden.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        Settings.load(path)
    assert caught.value.field == field
    assert "number" in caught.value.message


def test_account_names_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    """[accounts.Main] beside [accounts.main]: `@main` and `@Main` in Telegram, `--account` and the
    files each keeps in data_dir (kill-NAME.json, controls-NAME.json, sim-NAME.json) are one file on
    a case-insensitive disk (macOS, Windows): `resume` of one removed the other's kept kill."""
    path = tmp_path / "warden.toml"
    path.write_text('[accounts.main]\nexchange = "sim"\n[accounts.Main]\nexchange = "sim"\n')
    with pytest.raises(ConfigError) as caught:
        Settings.load(path)
    assert caught.value.field == "accounts"
    assert "'Main'" in caught.value.message and "'main'" in caught.value.message
    assert "case" in caught.value.message


def test_a_setting_given_twice_in_different_case_with_different_values_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings' variables are read in any case, so WARDEN_LEVERAGE=3 beside a forgotten
    warden_leverage=20 was two values for one setting, and one of them (20, here) silently won."""
    monkeypatch.setenv("WARDEN_LEVERAGE", "3")
    monkeypatch.setenv("warden_leverage", "20")
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    assert {caught.value.field, *caught.value.message.split()} >= {"WARDEN_LEVERAGE", "warden_leverage"}
    result = runner.invoke(app, ["run", "--data-dir", str(tmp_path), "--port", free_port()])
    assert result.exit_code == 2
    assert one_error_line(result.stderr).startswith("error: ")
    monkeypatch.setenv("warden_leverage", "3")  # the same value twice: no doubt which applies
    assert Settings.load().leverage == 3


def test_a_nested_settings_json_is_merged_into_the_files_tables_as_the_readme_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "warden.toml"
    path.write_text('[symbols.SOL]\nleverage = 10\nmargin_mode = "cross"\n[accounts.a]\nexchange = "sim"\n')
    monkeypatch.setenv("WARDEN_SYMBOLS", '{"SOL": {"leverage": 3}}')
    monkeypatch.setenv("WARDEN_ACCOUNTS", '{"b": {"exchange": "sim"}}')
    s = Settings.load(path)
    assert (s.symbols["SOL"].leverage, s.symbols["SOL"].margin_mode) == (3, "cross")
    assert s.account_names() == ("a", "b")


def test_an_account_naming_one_variable_for_its_key_and_its_secret_is_refused(tmp_path: Path) -> None:
    """`api_secret_env = "MAIN_KEY"` (a line copied and not edited): the key went as the secret,
    and the engine retried its start for ever on the exchange's `Invalid API-key` — naming the
    key, which was right."""
    path = tmp_path / "warden.toml"
    path.write_text(
        '[accounts.main]\nexchange = "bybit"\napi_key_env = "MAIN_KEY"\napi_secret_env = "MAIN_KEY"\n'
    )
    with pytest.raises(ConfigError) as caught:
        Settings.load(path)
    assert caught.value.field == "accounts.main.api_secret_env"
    assert "api_key_env" in caught.value.message


def test_the_key_given_as_the_secret_too_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_API_KEY", "k-0123456789")
    monkeypatch.setenv("WARDEN_API_SECRET", "k-0123456789")
    with pytest.raises(ConfigError) as caught:
        Settings.load(exchange="bybit")
    assert caught.value.field == "api_secret" and "api_key" in caught.value.message
    assert "k-0123456789" not in str(caught.value)


def test_when_no_account_can_start_the_last_line_says_so_without_a_traceback(tmp_path: Path) -> None:
    """`warden run --account main` on a host where main's key variable is not set (the usual slip of
    one engine per account): the reason was printed, then a traceback and `error: ExceptionGroup:
    unhandled errors in a TaskGroup (1 sub-exception)`."""
    path = tmp_path / "warden.toml"
    path.write_text(SAME_KEYS)
    args = [
        "run",
        "--config",
        str(path),
        "--account",
        "a",
        "--data-dir",
        str(tmp_path),
        "--port",
        free_port(),
    ]
    result = runner.invoke(app, [*args, "--db", f"sqlite:///{tmp_path}/w.db"])
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr and "ExceptionGroup" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: no account could start (each is named above)"], result.stderr
    assert "account a is not running: accounts.a.api_key_env: the environment variable A_KEY" in result.stderr


# -- the API's tokens ---------------------------------------------------------------------------


def test_a_read_token_equal_to_the_api_token_is_refused_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WARDEN_API_READ_TOKEN set to the API token (the one token copied into both): the token that
    was to only read opened, closed and killed, since the full token is checked first. A monitoring
    tool or a shared dashboard handed the "read-only" token could trade the account."""
    monkeypatch.setenv("WARDEN_API_TOKEN", "t-0123456789abcdef")
    monkeypatch.setenv("WARDEN_API_READ_TOKEN", "t-0123456789abcdef")
    with pytest.raises(ConfigError) as caught:
        Settings.load()
    assert caught.value.field == "api_read_token" and "api_token" in caught.value.message
    assert "t-0123456789abcdef" not in str(caught.value)
    result = runner.invoke(app, ["run", "--port", free_port()])
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert line.startswith("error: api_read_token: ") and "t-0123456789abcdef" not in line


def test_a_read_token_equal_to_the_token_file_is_refused_at_start(tmp_path: Path) -> None:
    """No api_token set: the engine's token is <data_dir>/api-token, and `warden token`'s output
    pasted into WARDEN_API_READ_TOKEN made the read token the full one all the same."""
    (tmp_path / "api-token").write_text("f-0123456789abcdef\n")
    (tmp_path / "api-token").chmod(0o600)
    args = ["run", "--port", free_port(), "--data-dir", str(tmp_path), "--db", f"sqlite:///{tmp_path}/w.db"]
    result = runner.invoke(app, args, env={"WARDEN_API_READ_TOKEN": "f-0123456789abcdef"})
    assert result.exit_code == 2, result.output
    line = one_error_line(result.stderr)
    assert line.startswith("error: api_read_token: ") and "f-0123456789abcdef" not in line


# -- [symbols.X] ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("SOL", "SOLUSDT"),
        ("SOL", "sol"),
        ("SOLUSDT", '"SOL/USDT:USDT"'),
        ("SOL", "SOLUSDC"),
        ("ethusdt", "ETH"),
    ],
)
def test_two_symbol_tables_for_one_market_are_refused_naming_both(
    tmp_path: Path, first: str, second: str
) -> None:
    """`[symbols.SOL] leverage = 3` beside `[symbols.SOLUSDT] leverage = 20` (or `[symbols.sol]`):
    each spelling names SOL/USDT:USDT, and one of them silently won (the full symbol, then the
    coin, then COINUSDT; among spellings differing in case, the last in the file) - the trader
    could not tell which leverage the exchange was set to."""
    path = tmp_path / "warden.toml"
    path.write_text(f"[symbols.{first}]\nleverage = 3\n\n[symbols.{second}]\nleverage = 20\n")
    with pytest.raises(ConfigError) as caught:
        Settings.load(path)
    assert caught.value.field == "symbols"
    assert first.strip('"') in caught.value.message and second.strip('"') in caught.value.message
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert one_error_line(result.stderr).startswith("error: symbols: ")


def test_symbol_tables_for_different_markets_are_taken(tmp_path: Path) -> None:
    path = tmp_path / "warden.toml"
    path.write_text(
        "[symbols.SOLUSDT]\nleverage = 3\n[symbols.SOLUSDC]\nleverage = 5\n[symbols.BTC]\nleverage = 2\n"
    )
    assert set(Settings.load(path).symbols) == {"SOLUSDT", "SOLUSDC", "BTC"}


def newer_database(directory: Path) -> str:
    """A SQLite database a newer warden migrated: at a revision this warden does not know."""
    import asyncio
    import sqlite3

    from warden.bootstrap import upgrade_database

    url = f"sqlite:///{directory / 'newer.db'}"
    asyncio.run(upgrade_database(url))
    with contextlib.closing(sqlite3.connect(directory / "newer.db")) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    return url


@pytest.mark.parametrize("command", ["run", "upgrade"])
def test_a_database_a_newer_warden_migrated_is_one_line_naming_db(command: str, tmp_path: Path) -> None:
    """A rollback after an upgrade: `warden run` logged Alembic's traceback and ended with
    `error: CommandError: Can't locate revision identified by '0099'`; `warden db upgrade` ended
    in that traceback alone. Both refuse in one line naming db and saying the schema is newer."""
    url = newer_database(tmp_path)
    if command == "run":
        args = ["run", "--port", free_port(), "--data-dir", str(tmp_path), "--db", url]
    else:
        args = ["db", "upgrade", "--db", url]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: db: "), result.stderr
    assert "newer" in errors[0] and "0099" in errors[0]


@pytest.fixture
def weak_user_url(pg_url: str) -> Iterator[str]:
    """`pg_url` as a login role that may not create tables in it (PostgreSQL 15's default for
    a user that does not own the database: no CREATE on schema public)."""
    import asyncio
    import secrets

    from sqlalchemy.engine import make_url

    from tests.store.pgtools import admin

    role = f"warden_weak_{secrets.token_hex(4)}"

    async def as_admin(sql: str) -> None:
        async with admin(pg_url) as conn:
            await conn.execute(sql)

    asyncio.run(as_admin(f'CREATE ROLE "{role}" LOGIN'))
    asyncio.run(as_admin(f'REVOKE CREATE ON SCHEMA public FROM PUBLIC, "{role}"'))
    try:
        yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        asyncio.run(as_admin(f'DROP OWNED BY "{role}"'))
        asyncio.run(as_admin(f'DROP ROLE "{role}"'))


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["run", "upgrade"])
def test_a_database_user_that_may_not_create_tables_is_one_line_naming_db(
    command: str, weak_user_url: str, tmp_path: Path
) -> None:
    """A trader gives warden a PostgreSQL user without the right to create tables: the first
    migration is refused. `warden run` logged a traceback then `error: StoreError: migrate: ...
    refused it: ... permission denied for schema public`; `warden db upgrade` ended in the
    traceback. Both refuse in one line naming db and saying what the user lacks."""
    if command == "run":
        args = ["run", "--port", free_port(), "--data-dir", str(tmp_path), "--db", weak_user_url]
    else:
        args = ["db", "upgrade", "--db", weak_user_url]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: db: "), result.stderr
    assert "permission denied" in errors[0] and "CREATE" in errors[0]


@pytest.mark.parametrize("command", ["run", "upgrade"])
def test_a_sqlite_file_whose_directory_cannot_be_made_is_one_line_naming_db(
    command: str, tmp_path: Path
) -> None:
    """The SQLite file's directory is made at start; when it cannot be (a file is in the way, a
    directory warden may not write), `FileExistsError` / `PermissionError` came out as a traceback
    and `error: FileExistsError: ...`. It is the database being unavailable: one line naming db."""
    (tmp_path / "taken").write_text("not a directory")
    url = f"sqlite:///{tmp_path / 'taken' / 'warden.db'}"
    if command == "run":
        args = ["run", "--port", free_port(), "--data-dir", str(tmp_path / "data"), "--db", url]
    else:
        args = ["db", "upgrade", "--db", url]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: db: "), result.stderr
    assert "taken" in errors[0]


SOCKET_DIR = Path("/var/run/postgresql")


@pytest.mark.parametrize(
    "db",
    [
        "postgresql://warden@/warden?host=/var/run/postgresql",
        "postgresql:///warden?host=/var/run/postgresql",
        "postgresql://warden:hunter2@/warden?host=/var/run/postgresql&sslmode=disable",
    ],
)
def test_a_unix_socket_database_url_is_taken(db: str) -> None:
    """PostgreSQL on the same host over its socket: libpq's (and the driver's) `?host=/socket/dir`.
    It was refused at load ("the URL's parameter 'host' is not one warden's PostgreSQL driver
    takes"), though the driver connects with it; with sslmode too it was told sslmode was given
    twice."""
    assert Settings.load(db=db).db == db


@pytest.mark.postgres
def test_db_upgrade_over_the_unix_socket(pg_url: str) -> None:
    if not (SOCKET_DIR / ".s.PGSQL.5432").exists():
        pytest.skip(f"no PostgreSQL socket in {SOCKET_DIR}")
    from sqlalchemy.engine import make_url

    parsed = make_url(pg_url)
    if parsed.host != "127.0.0.1" or parsed.port not in (None, 5432):
        pytest.skip("the test server is not this host's")
    db = f"postgresql://{parsed.username}@/{parsed.database}?host={SOCKET_DIR}"
    result = runner.invoke(app, ["db", "upgrade", "--db", db])
    assert result.exit_code == 0, result.stderr
