"""[accounts.NAME] tables: parsed, resolved per account, and bad input refused naming the field."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from warden.config import ConfigError, Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("WARDEN_"):
            monkeypatch.delenv(name)


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "warden.toml"
    path.write_text(text)
    return Settings.load(path)


def refused(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value


TWO = """
max_position_usd = 500

[accounts.main]
exchange = "binanceusdm"
api_key_env = "MAIN_KEY"
api_secret_env = "MAIN_SECRET"
testnet = true
max_open_positions = 3

[accounts.alt]
exchange = "bybit"
exchange_url = "http://127.0.0.1:9999/"
api_key_env = "ALT_KEY"
api_secret_env = "ALT_SECRET"
max_position_usd = 50
"""


def test_without_accounts_the_one_account_is_unchanged() -> None:
    """No [accounts.*] table: one account named `default`, resolved to the very same settings."""
    s = Settings.load()
    assert s.account_names() == ("default",)
    assert not s.multi_account
    assert s.for_account("default") is s
    with pytest.raises(ConfigError, match="unknown account 'main'"):
        s.for_account("main")


def test_two_accounts_resolve_their_own_exchange_keys_and_limits(tmp_path: Path) -> None:
    s = load(tmp_path, TWO)
    assert s.account_names() == ("main", "alt")
    assert s.multi_account
    env = {"MAIN_KEY": "mk", "MAIN_SECRET": "ms", "ALT_KEY": "ak", "ALT_SECRET": "as"}
    main, alt = s.for_account("main", env), s.for_account("alt", env)
    assert (main.account, main.exchange, main.testnet, main.exchange_url) == (
        "main",
        "binanceusdm",
        True,
        None,
    )
    assert (alt.account, alt.exchange, alt.testnet, alt.exchange_url) == (
        "alt",
        "bybit",
        False,
        "http://127.0.0.1:9999",
    )
    assert main.api_key is not None and main.api_key.get_secret_value() == "mk"
    assert alt.api_secret is not None and alt.api_secret.get_secret_value() == "as"
    assert main.limits().max_open_positions == 3
    assert main.limits().max_position_usd == Decimal(500)  # the top-level limit
    assert alt.limits().max_position_usd == Decimal(50)  # its own
    assert main.accounts == {} and not main.multi_account


def test_keys_are_never_inherited_from_the_top_level(tmp_path: Path) -> None:
    """A sim account next to a keyed one does not get the top-level api_key (two writers, one account)."""
    s = load(
        tmp_path, 'api_key = "shared"\napi_secret = "shared"\n[accounts.a]\n[accounts.b]\nsim_seed = 7\n'
    )
    a, b = s.for_account("a"), s.for_account("b")
    assert a.api_key is None and b.api_key is None
    assert (a.exchange, a.sim_seed, b.sim_seed) == ("sim", 42, 7)


def test_an_unset_key_variable_names_the_account_field(tmp_path: Path) -> None:
    s = load(tmp_path, TWO)
    with pytest.raises(ConfigError) as caught:
        s.for_account("alt", {"ALT_KEY": "ak"})
    assert caught.value.field == "accounts.alt.api_secret_env"
    assert "ALT_SECRET is not set" in caught.value.message


def test_unknown_exchange_names_the_field(tmp_path: Path) -> None:
    error = refused(tmp_path, '[accounts.main]\nexchange = "kraken"\n')
    assert error.field == "accounts.main.exchange"
    assert "'sim', 'binanceusdm', 'bybit' or 'drift'" in error.message


def test_missing_key_variable_names_names_the_field(tmp_path: Path) -> None:
    error = refused(tmp_path, '[accounts.main]\nexchange = "bybit"\napi_key_env = "K"\n')
    assert error.field == "accounts.main.api_secret_env"
    assert "bybit needs api_key_env and api_secret_env" in error.message
    error = refused(tmp_path, '[accounts.main]\nexchange = "binanceusdm"\n')
    assert error.field == "accounts.main.api_key_env"


def test_misspelt_keys_are_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, '[accounts.main]\napi_key_evn = "K"\n')
    assert (error.field, error.message) == ("accounts.main.api_key_evn", "is not a setting warden knows")
    error = refused(tmp_path, '[acounts.main]\nexchange = "sim"\n')
    assert (error.field, error.message) == ("acounts", "is not a setting warden knows")


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ('[accounts."bad name"]\n', "accounts", "'bad name' is not an account name"),
        ('[accounts.main]\napi_key_env = "MY-KEY"\n', "accounts.main.api_key_env", "environment variable"),
        ('[accounts.main]\nexchange_url = "127.0.0.1:1"\n', "accounts.main.exchange_url", "http://"),
        ("[accounts.main]\nmax_open_positions = 0\n", "accounts.main.max_open_positions", "greater than"),
    ],
)
def test_bad_account_values_name_the_field(tmp_path: Path, text: str, field: str, fragment: str) -> None:
    error = refused(tmp_path, text)
    assert error.field == field
    assert fragment in error.message


def test_run_account_picks_one_table(tmp_path: Path) -> None:
    """`warden run --account alt` with [accounts.*] tables: this engine serves alt alone."""
    s = load(tmp_path, TWO).only("alt")
    assert s.account_names() == ("alt",) and not s.multi_account
    assert s.for_account("alt", {"ALT_KEY": "k", "ALT_SECRET": "s"}).exchange == "bybit"
    with pytest.raises(ConfigError, match="unknown account 'nope'; accounts: main, alt"):
        load(tmp_path, TWO).only("nope")


def test_drift_accounts_take_their_own_wallet_and_rpc(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        '[accounts.d1]\nexchange = "drift"\ndrift_keypair_path = "/keys/one.json"\n'
        'drift_rpc_url_env = "RPC_ONE"\ndrift_sub_account = 2\n[accounts.d2]\nexchange = "drift"\n',
    )
    one = s.for_account("d1", {"RPC_ONE": "https://rpc.example/one"})
    assert (
        one.drift_keypair_path is not None and one.drift_keypair_path.get_secret_value() == "/keys/one.json"
    )
    assert one.drift_rpc_url is not None and one.drift_rpc_url.get_secret_value() == "https://rpc.example/one"
    assert one.drift_sub_account == 2
    assert "/keys/one.json" not in repr(one) and "/keys/one.json" not in repr(s)
    with pytest.raises(ConfigError, match="RPC_ONE is not set"):
        s.for_account("d1", {})
    assert s.for_account("d2").drift_keypair_path is None


def test_run_account_is_matched_in_any_case(tmp_path: Path) -> None:
    """`warden run --account ALT`: no two tables differ only in case (refused), so the name is
    matched whatever its case and the engine serves the table under its configured spelling."""
    s = load(tmp_path, TWO).only("ALT")
    assert s.account == "alt" and s.account_names() == ("alt",)
