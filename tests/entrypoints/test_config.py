"""Settings: precedence of the sources, validation that names the field, secrets kept out of sight."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from warden.config import REDACTED, ConfigError, Settings, reference_rows


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "warden.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    """With no sources, the documented defaults apply."""
    s = Settings.load()
    assert (s.host, s.port, s.exchange, s.db) == ("127.0.0.1", 8080, "sim", "sqlite:///./data/warden.db")
    assert s.stop_pct == Decimal("0.015")
    assert s.api_token is None
    assert s.orphan_policy == "adopt"


def test_flag_beats_env_beats_toml_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag wins over WARDEN_*, which wins over the TOML file, which wins over the default."""
    config = write_toml(tmp_path, 'port = 9001\nhost = "0.0.0.0"\naccount = "toml"\nstop_pct = 0.02\n')
    monkeypatch.setenv("WARDEN_PORT", "9002")
    monkeypatch.setenv("WARDEN_ACCOUNT", "env")
    s = Settings.load(config, account="flag")
    assert s.account == "flag"  # flag > env
    assert s.port == 9002  # env > toml
    assert s.host == "0.0.0.0"  # toml > default
    assert s.stop_pct == Decimal("0.02")  # a TOML float becomes the exact decimal
    assert s.tp1_pct == Decimal("0.01")  # default


def test_unset_flags_fall_through(tmp_path: Path) -> None:
    """A flag passed as None (not given on the command line) does not hide the file's value."""
    config = write_toml(tmp_path, "port = 9001\n")
    assert Settings.load(config, port=None).port == 9001


def test_config_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WARDEN_CONFIG names the TOML file when --config is not given."""
    monkeypatch.setenv("WARDEN_CONFIG", str(write_toml(tmp_path, 'exchange = "binanceusdm"\n')))
    assert Settings.load().exchange == "binanceusdm"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"port": 0}, "port"),
        ({"port": "http"}, "port"),
        ({"exchange": "kraken"}, "exchange"),
        ({"db": "warden.db"}, "db"),
        ({"exchange_url": "localhost:9000"}, "exchange_url"),
        ({"stop_pct": "1.5"}, "stop_pct"),
        ({"tp1_fraction": "0.9"}, "tp2_fraction"),
        ({"default_usd": "-5"}, "default_usd"),
        ({"default_usd": "\u0661\u0660\u0660"}, "default_usd"),  # Arabic-Indic 100
        ({"max_position_usd": "\uff15\uff10"}, "max_position_usd"),  # full-width 50
        ({"stop_pct": "0.\u0660\u0661"}, "stop_pct"),
        ({"telegram_chat_ids": "\u0661\u0662\u0663"}, "telegram_chat_ids"),
        ({"orphan_policy": "ignore"}, "orphan_policy"),
        ({"account": "../../etc/x"}, "account"),  # names files in data_dir: never a path
        ({"account": "a b"}, "account"),
        ({"order_timeout": 0}, "order_timeout"),
        ({"colour": "blue"}, "colour"),
        ({"lease_timeout": 20}, "lease_timeout"),  # on SQLite (the default db): a lock file, no timeout
        ({"lease_timeout": 5, "db": "postgresql://u@h/d"}, "lease_timeout"),  # below 10 s
        ({"lease_timeout": "soon", "db": "postgresql://u@h/d"}, "lease_timeout"),
    ],
)
def test_bad_value_names_the_field(overrides: dict[str, Any], field: str) -> None:
    """Every invalid setting is reported with the name of the setting."""
    with pytest.raises(ConfigError) as info:
        Settings.load(**overrides)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_bad_env_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad WARDEN_* value is reported by its setting name."""
    monkeypatch.setenv("WARDEN_PORT", "eighty")
    with pytest.raises(ConfigError, match=r"^port: "):
        Settings.load()


def test_unknown_key_in_toml_is_refused(tmp_path: Path) -> None:
    """A typo in the config file is an error naming the key, not silently ignored."""
    with pytest.raises(ConfigError) as info:
        Settings.load(write_toml(tmp_path, "stop_pc = 0.02\n"))
    assert info.value.field == "stop_pc"


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    """A config file that is missing or not TOML is reported as `config`."""
    with pytest.raises(ConfigError, match=r"^config: no such file"):
        Settings.load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"^config: .* not valid TOML"):
        Settings.load(write_toml(tmp_path, "port = = 1\n"))


def test_secrets_never_displayed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets appear neither in repr nor in redacted(); unset secrets show as None."""
    monkeypatch.setenv("WARDEN_API_TOKEN", "tok-123456")
    s = Settings.load(api_key="key-abcdef")
    shown = s.redacted()
    assert shown["api_token"] == REDACTED
    assert shown["api_key"] == REDACTED
    assert shown["api_secret"] is None
    for text in (repr(s), str(s), str(shown)):
        assert "tok-123456" not in text
        assert "key-abcdef" not in text
    assert s.api_token is not None
    assert s.api_token.get_secret_value() == "tok-123456"


@pytest.mark.parametrize("field", ["api_token", "api_read_token"])
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_api_token_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    """An empty token (WARDEN_API_TOKEN= left blank in a compose file, say) was taken as the
    token: `"secret": ""` in a body, or `Authorization: Bearer ` with nothing after it, then
    matched it and traded. It is refused at load, naming the setting, from a flag or the env."""
    with pytest.raises(ConfigError) as info:
        Settings.load(**{field: value})
    assert info.value.field == field
    monkeypatch.setenv(f"WARDEN_{field.upper()}", value)
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert info.value.field == field


@pytest.mark.parametrize("field", ["api_token", "api_read_token"])
@pytest.mark.parametrize("value", ["tok-0123456789 ", "tok-0123456789\r", " tok-0123456789", "tok-01\x0123"])
def test_a_padded_api_token_is_refused_naming_it_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    """WARDEN_API_TOKEN with a trailing space or a \r (a compose or .env file written on Windows):
    it was taken as written, while the API strips what follows `Bearer`, so no header ever
    matched — the CLI, the dashboard and every TradingView alert carrying the token as printed
    got 401, the exact token too. Refused at load like the exchange's secrets, never shown."""
    with pytest.raises(ConfigError) as info:
        Settings.load(**{field: value})
    assert info.value.field == field and "tok-01" not in str(info.value)
    monkeypatch.setenv(f"WARDEN_{field.upper()}", value)
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert info.value.field == field and "tok-01" not in str(info.value)


@pytest.mark.parametrize(
    "field",
    [
        "order_timeout",
        "db_timeout",
        "protection_window",
        "entry_deadline",
        "max_signal_age",
        "reconcile_interval",
        "sim_tick_interval",
    ],
)
def test_an_infinite_duration_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    """`order_timeout = inf` (TOML has inf) was accepted: no deadline on an exchange call, no age
    limit on signals, a reconcile that never runs. Every duration must be a finite number, from
    the file, the environment or a flag."""
    with pytest.raises(ConfigError) as info:
        Settings.load(write_toml(tmp_path, f"{field} = inf\n"))
    assert info.value.field == field
    monkeypatch.setenv(f"WARDEN_{field.upper()}", "Infinity")
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert info.value.field == field
    monkeypatch.delenv(f"WARDEN_{field.upper()}")
    with pytest.raises(ConfigError) as info:
        Settings.load(**{field: "inf"})
    assert info.value.field == field


@pytest.mark.parametrize("db", ["postgresql:/warden:hunter2@db-host/warden", "warden:hunter2@db-host/warden"])
def test_a_malformed_database_url_is_refused_without_its_password(db: str) -> None:
    """A mistyped URL (one slash short) was echoed whole in the error, password and all; the error
    still names `db` and shows where it points, with the credentials hidden."""
    with pytest.raises(ConfigError) as info:
        Settings.load(db=db)
    assert info.value.field == "db"
    assert "hunter2" not in str(info.value)
    assert "db-host/warden" in str(info.value)


def test_exit_plan_from_settings() -> None:
    """The exit-plan settings become the domain's ExitPlan."""
    plan = Settings.load(tp1_fraction="0.5", breakeven_after_tp1=True).exit_plan()
    assert plan.tp1_fraction == Decimal("0.5")
    assert plan.breakeven_after_tp1 is True


def test_api_url_for_wildcard_host() -> None:
    """A client on this machine reaches an engine bound to 0.0.0.0 through 127.0.0.1."""
    assert Settings.load(host="0.0.0.0", port=9999).api_url == "http://127.0.0.1:9999"


def test_reference_rows_document_every_field() -> None:
    """Every setting has a description and an environment variable in the generated reference."""
    rows = reference_rows()
    assert {r[0] for r in rows} == set(Settings.model_fields)
    assert all(r[3] for r in rows)
    assert rows[[r[0] for r in rows].index("port")][:3] == ("port", "WARDEN_PORT", "8080")


# -- WARDEN_* variables that name no setting ---------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "suggested"),
    [
        ("WARDEN_MAX_POSITONS", "WARDEN_MAX_OPEN_POSITIONS"),
        ("WARDEN_DAILY_LOSS_LIMT", "WARDEN_MAX_DAILY_LOSS_USD"),
        ("WARDEN_STOP_PC", "WARDEN_STOP_PCT"),
        ("warden_max_positons", "WARDEN_MAX_OPEN_POSITIONS"),  # settings are read whatever the case
        ("WARDEN_SYMBOLS__SOL__LEVERAGE", "WARDEN_SYMBOLS"),  # no nested delimiter: it was never read
    ],
)
def test_an_unknown_warden_variable_is_refused_naming_it_and_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, suggested: str
) -> None:
    """A misspelt risk limit in the environment was silently ignored: the trader believed it applied.
    It is refused, naming the variable and the real settings it is closest to."""
    monkeypatch.setenv(variable, "3")
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert info.value.field == variable
    assert info.value.message.startswith("is not a setting warden knows")
    assert suggested in info.value.message


def test_an_unknown_variable_with_nothing_close_is_refused_without_a_guess(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WARDEN_ZZZZZZZZZZZZ", "1")
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert info.value.field == "WARDEN_ZZZZZZZZZZZZ"
    assert "did you mean" not in info.value.message
    assert "README" in info.value.message or "--help" in info.value.message


def test_every_setting_and_every_variable_warden_reads_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every setting's variable (in any case), WARDEN_CONFIG and WARDEN_URL (the CLI's), and the
    test suite's and Makefile's own WARDEN_* variables are not refused."""
    monkeypatch.setenv("WARDEN_CONFIG", str(write_toml(tmp_path, "port = 9001\n")))
    monkeypatch.setenv("WARDEN_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("warden_host", "0.0.0.0")
    monkeypatch.setenv("WARDEN_MAX_OPEN_POSITIONS", "3")
    monkeypatch.setenv("WARDEN_MAX_DAILY_LOSS_USD", "500")
    monkeypatch.setenv("WARDEN_ALERT_ROUTES", '{"tp_filled": "silent"}')
    for name in (
        "WARDEN_TEST_PG_HOST",
        "WARDEN_FREQTRADE",
        "WARDEN_CHAOS_SEED",
        "WARDEN_E2E_ROUNDS",
        "WARDEN_TESTNET_SMOKE",
        "WARDEN_CHROMIUM",
        "WARDEN_ARTIFACTS",
    ):
        monkeypatch.setenv(name, "1")
    s = Settings.load()
    assert (s.port, s.host, s.max_open_positions, s.max_daily_loss_usd) == (9001, "0.0.0.0", 3, Decimal(500))


def test_variables_the_accounts_name_for_their_keys_are_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An account's api_key_env / api_secret_env / drift_rpc_url_env may name any variable, a
    WARDEN_* one included (from the file or from WARDEN_ACCOUNTS); each is read, not refused."""
    config = write_toml(
        tmp_path,
        '[accounts.alt]\nexchange = "bybit"\napi_key_env = "WARDEN_ALT_KEY"\n'
        'api_secret_env = "WARDEN_ALT_SECRET"\n'
        '[accounts.d]\nexchange = "drift"\ndrift_rpc_url_env = "WARDEN_D_RPC"\n',
    )
    monkeypatch.setenv("WARDEN_ALT_KEY", "k")
    monkeypatch.setenv("WARDEN_ALT_SECRET", "s")
    monkeypatch.setenv("WARDEN_D_RPC", "https://rpc.example")
    alt = Settings.load(config).for_account("alt")
    assert alt.api_key is not None and alt.api_key.get_secret_value() == "k"
    for name in ("WARDEN_ALT_KEY", "WARDEN_ALT_SECRET", "WARDEN_D_RPC"):
        monkeypatch.delenv(name)
    monkeypatch.setenv(
        "WARDEN_ACCOUNTS",
        '{"main": {"exchange": "binanceusdm", "api_key_env": "WARDEN_MAIN_KEY",'
        ' "api_secret_env": "WARDEN_MAIN_SECRET"}}',
    )
    monkeypatch.setenv("WARDEN_MAIN_KEY", "mk")
    monkeypatch.setenv("WARDEN_MAIN_SECRET", "ms")
    main = Settings.load().for_account("main")
    assert main.api_secret is not None and main.api_secret.get_secret_value() == "ms"
    monkeypatch.setenv("WARDEN_MAIN_KEYS", "k")  # named by no account
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert info.value.field == "WARDEN_MAIN_KEYS"


def test_every_warden_variable_the_code_reads_is_known() -> None:
    """A WARDEN_* variable read outside Settings (the CLI's, the tests', the Makefile's) must be on the
    known list, or `make test` and `warden status` would refuse to start."""
    from warden import config

    root = Path(__file__).resolve().parents[2]
    reads = re.compile(r"""(?:environ\.get\(|environ\[|getenv\(|envvar=)\s*["'](WARDEN_[A-Z0-9_]+)""")
    assigns = re.compile(r"(?:^|\s)(WARDEN_[A-Z0-9_]+)=")
    found: set[str] = set()
    files = [*root.glob("src/**/*.py"), *root.glob("tests/**/*.py"), *root.glob("scripts/**/*")]
    for path in [*files, root / "Makefile", *root.glob(".ci/*")]:
        if path.is_file():
            text = path.read_text(errors="replace")
            found |= set(reads.findall(text))
            if path.suffix != ".py":
                found |= set(assigns.findall(text))
    settings = {f"WARDEN_{name.upper()}" for name in Settings.model_fields}
    assert found, "the scan found nothing: its patterns are wrong"
    assert found - settings - config.OTHER_VARIABLES == set()


def test_kubernetes_service_variables_are_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kubernetes puts, into every pod of a namespace, variables for each Service in it
    (enableServiceLinks, on by default): a PostgreSQL Service named `warden-db` gives warden's own
    pod WARDEN_DB_SERVICE_HOST, WARDEN_DB_PORT=tcp://..., WARDEN_DB_PORT_5432_TCP_ADDR and more.
    warden never read them and started; refused as unknown settings, warden no longer started
    in such a namespace. They are not settings a trader misspelt: they are let through. A
    misspelt setting beside them is still refused."""
    service_links = {
        "WARDEN_DB_SERVICE_HOST": "10.96.0.12",
        "WARDEN_DB_SERVICE_PORT": "5432",
        "WARDEN_DB_SERVICE_PORT_POSTGRES": "5432",
        "WARDEN_DB_PORT": "tcp://10.96.0.12:5432",
        "WARDEN_DB_PORT_5432_TCP": "tcp://10.96.0.12:5432",
        "WARDEN_DB_PORT_5432_TCP_PROTO": "tcp",
        "WARDEN_DB_PORT_5432_TCP_PORT": "5432",
        "WARDEN_DB_PORT_5432_TCP_ADDR": "10.96.0.12",
        "WARDEN_SERVICE_HOST": "10.96.0.13",  # a Service named `warden` (warden's own)
        "WARDEN_SERVICE_PORT": "8080",
        "WARDEN_PORT_8080_TCP": "tcp://10.96.0.13:8080",
        "WARDEN_PORT_8080_TCP_ADDR": "10.96.0.13",
        "WARDEN_DASHBOARD_PORT_443_UDP_PROTO": "udp",
    }
    for name, value in service_links.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WARDEN_DB", "sqlite:///./data/k8s.db")
    assert Settings.load().db == "sqlite:///./data/k8s.db"
    monkeypatch.setenv("WARDEN_MAX_POSITONS", "3")
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert info.value.field == "WARDEN_MAX_POSITONS"
    monkeypatch.delenv("WARDEN_MAX_POSITONS")
    monkeypatch.setenv("WARDEN_DB_PORT", "5433")  # not a service link: a trader's guess at a setting
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert info.value.field == "WARDEN_DB_PORT"


def test_the_service_link_of_a_service_named_warden_is_not_the_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Service named `warden` (warden's own, the likeliest name) gives every pod of the namespace
    WARDEN_PORT=tcp://IP:PORT. Read as the `port` setting it stopped warden starting ("port: …
    not a valid integer"); it is Kubernetes', not the trader's, and is not read. A port the trader
    sets (in the file, or WARDEN_PORT=9000) still counts; a bad one is still refused."""
    monkeypatch.setenv("WARDEN_PORT", "tcp://10.96.0.13:8080")
    assert Settings.load().port == Settings.model_fields["port"].default
    config = tmp_path / "warden.toml"
    config.write_text("port = 9001\n")
    assert Settings.load(config).port == 9001
    monkeypatch.setenv("WARDEN_PORT", "9000")
    assert Settings.load(config).port == 9000
    monkeypatch.setenv("WARDEN_PORT", "http://10.96.0.13:8080")  # not what Kubernetes writes
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert info.value.field == "port"


def test_a_lease_timeout_on_postgresql_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_LEASE_TIMEOUT", "20")
    assert Settings.load(db="postgresql://u@h/d").lease_timeout == 20
    monkeypatch.delenv("WARDEN_LEASE_TIMEOUT")
    assert Settings.load(db="postgresql://u@h/d").lease_timeout is None
