"""Settings: one typed object, read once at startup.

Precedence, strongest first: explicit keyword arguments (CLI flags) > `WARDEN_*`
environment variables > the TOML file (`--config FILE` or `WARDEN_CONFIG`) >
the defaults below. Every field carries a description; the CLI's `--help` and
the README's configuration table are generated from them.

Secrets are `SecretStr` and never appear in `repr`, logs or `redacted()`.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pydantic
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from warden.domain.alerts import AlertRoutes, parse_routes
from warden.domain.controls import DEFAULT_MAX_POSITION_USD, Limits
from warden.domain.errors import ValidationError as DomainValidationError
from warden.domain.margin import MarginMode, MarginPlan, SymbolConfig, same_market
from warden.domain.plan import ExitPlan
from warden.domain.values import account_spelled

ENV_PREFIX = "WARDEN_"
CONFIG_ENV = "WARDEN_CONFIG"
REDACTED = "**********"

CLI_VARIABLES = frozenset({CONFIG_ENV, "WARDEN_URL"})
"""WARDEN_* variables the command line reads besides the settings (--config, --url)."""

OTHER_VARIABLES = CLI_VARIABLES | frozenset(
    {
        # the test suite's and the Makefile's own (tests/conftest.py, tests/chaos, tests/e2e,
        # tests/testnet, tests/entrypoints/test_dashboard.py, `make test`)
        "WARDEN_TEST_PG_HOST",
        "WARDEN_TEST_PG_PORT",
        "WARDEN_TEST_PG_USER",
        "WARDEN_CHAOS_SEED",
        "WARDEN_CHAOS_RUNS",
        "WARDEN_E2E_SEED",
        "WARDEN_E2E_ROUNDS",
        "WARDEN_ARTIFACTS",
        "WARDEN_CHROMIUM",
        "WARDEN_FREQTRADE",
        "WARDEN_TESTNET_SMOKE",
        "WARDEN_TESTNET_TRADE",
        "WARDEN_TESTNET_EXCHANGE",
    }
)
"""WARDEN_* variables that are not settings but are read (so never refused as unknown)."""

SERVICE_LINK = re.compile(
    r"WARDEN_(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT_[0-9]+_(?:TCP|UDP|SCTP)"
    r"(?:_PROTO|_PORT|_ADDR)?)"
)
SERVICE_LINK_PORT = re.compile(r"WARDEN_[A-Z0-9_]+_PORT")
SERVICE_LINK_URL = re.compile(r"(?:tcp|udp|sctp)://[^\s/]+:[0-9]+")
"""The variables Kubernetes puts into every pod for each Service of its namespace (a Service
`warden-db`: WARDEN_DB_SERVICE_HOST, WARDEN_DB_SERVICE_PORT[_NAME], WARDEN_DB_PORT=tcp://IP:PORT,
WARDEN_DB_PORT_5432_TCP[_PROTO|_PORT|_ADDR]): not settings, never read, never refused. A
`..._PORT` is one only when its value is such a URL."""

_config_file: ContextVar[Path | None] = ContextVar("warden_config_file", default=None)


class _WithoutServiceLink(PydanticBaseSettingsSource):
    """The environment, less WARDEN_PORT=tcp://IP:PORT: the service link Kubernetes puts into
    every pod for a Service named `warden` (SERVICE_LINK_URL), not the port to listen on. Read
    as `port`, it stopped warden starting; `port` comes from the file or its default then."""

    def __init__(self, inner: PydanticBaseSettingsSource) -> None:
        super().__init__(inner.settings_cls)
        self.inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        values = self.inner()
        port = values.get("port")
        if isinstance(port, str) and SERVICE_LINK_URL.fullmatch(port.strip()):
            del values["port"]
        return values


class ConfigError(ValueError):
    """A setting that cannot be used; `field` names it (`config` for the file itself)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SymbolSettings(pydantic.BaseModel):
    """One [symbols.X] table: what differs for that symbol."""

    model_config = pydantic.ConfigDict(extra="forbid")
    leverage: int | None = Field(None, ge=1, le=125)
    margin_mode: Literal["isolated", "cross"] | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool(cls, value: object, info: ValidationInfo) -> object:
        return no_bool_for_number(cls, value, info)


ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
"""An account's name: what `?account=`, `--account` and Telegram's `@NAME` carry."""

ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
"""The name of an environment variable an [accounts.*] table names for a secret."""

NEEDS_KEYS = ("binanceusdm", "bybit")
"""Exchanges whose accounts sign their calls with an API key and secret."""


AMOUNTS = ("default_usd", "max_position_usd", "max_total_usd", "max_daily_loss_usd")
"""Decimal settings an account table may set; Settings adds the exit plan's."""


def secret_flaw(value: str) -> str | None:
    """Why a key, secret or token read from the environment or the file cannot be the one meant
    (never showing it): empty, whitespace or a line break at either end, a control character."""
    if not value.strip():
        return "is empty"
    if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return (
            "starts or ends with whitespace or a line break, or holds a control character (read from"
            " a file or an `echo` with its newline?): remove it; the value is not shown"
        )
    return None


def _numeric_ids(value: object, what: str, *, negative: bool) -> str:
    """Comma-separated Telegram ids (a list in TOML, a string in the environment), normalised."""
    items = value if isinstance(value, list | tuple) else str(value or "").split(",")
    ids = [str(item).strip() for item in items if str(item).strip()]
    for one in ids:
        if ":" in one:  # 123456:ABC... is a bot token (the settings swapped): never shown
            raise ValueError(
                f"must be comma-separated numeric {what} ids; one of them looks like a bot token"
                " (it has a ':'), which goes in telegram_token; it is not shown"
            )
        digits = one.lstrip("-") if negative else one
        if not (one.isascii() and digits.isdigit()):
            raise ValueError(f"must be comma-separated numeric {what} ids, not {one!r}")
    return ",".join(ids)


def read_token_flaw(api_token: SecretStr | None, read_token: SecretStr | None) -> None:
    """Refuse a read token equal to the API token (the one token copied into both): the full token
    is checked first, so the token meant only to read (a dashboard, a monitoring tool) would open,
    close and kill. Neither is shown. `warden run` checks it again against <data_dir>/api-token."""
    if api_token is not None and read_token is not None and api_token == read_token:
        raise DomainValidationError(
            "api_read_token",
            "is the same as the API token (api_token, or <data_dir>/api-token): it would trade,"
            " not only read; give it a token of its own (neither is shown)",
        )


def no_bool_for_number(model: type[pydantic.BaseModel], value: object, info: ValidationInfo) -> object:
    """TOML's `true` is not a number: pydantic reads it as 1 for an int or a float (drift_sub_account
    = true traded on sub-account 1), while a decimal setting refuses it. Refused for every number."""
    if isinstance(value, bool) and info.field_name is not None:
        annotation = model.model_fields[info.field_name].annotation
        kinds = set(get_args(annotation)) or {annotation}
        if bool not in kinds and kinds & {int, float}:
            raise ValueError(f"must be a number, not {str(value).lower()}")
    return value


def ascii_number(value: object) -> object:
    """A decimal setting written as text must use ASCII digits: pydantic's Decimal (Python's) takes
    any Unicode digit, so "\u0661\u0660\u0660" (Arabic-Indic) was read as 100."""
    if isinstance(value, str) and not value.isascii():
        raise ValueError(f"must be written with ASCII digits (0-9), not {value!r}")
    return value


class AccountSettings(pydantic.BaseModel):
    """One [accounts.NAME] table: an exchange account this engine trades, with its own lease.

    Unset fields take the top-level setting of the same name, except the keys: an account's
    secrets are named by the environment variables that hold them, never shared.
    """

    model_config = pydantic.ConfigDict(extra="forbid")
    exchange: Literal["sim", "binanceusdm", "bybit", "drift"] | None = None
    exchange_url: str | None = None
    testnet: bool | None = None
    api_key_env: str | None = Field(None, min_length=1)
    api_secret_env: str | None = Field(None, min_length=1)
    drift_sub_account: int | None = Field(None, ge=0, le=65535)
    drift_keypair_path: SecretStr | None = Field(None, min_length=1)
    drift_rpc_url_env: str | None = Field(None, min_length=1)
    sim_seed: int | None = None
    leverage: int | None = Field(None, ge=1, le=125)
    margin_mode: Literal["isolated", "cross"] | None = None
    default_usd: Decimal | None = Field(None, gt=0)
    max_open_positions: int | None = Field(None, ge=1)
    max_position_usd: Decimal | None = Field(None, gt=0, allow_inf_nan=False)
    max_total_usd: Decimal | None = Field(None, gt=0, allow_inf_nan=False)
    max_daily_loss_usd: Decimal | None = Field(None, gt=0, allow_inf_nan=False)

    _ascii = field_validator(*AMOUNTS, mode="before")(ascii_number)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool(cls, value: object, info: ValidationInfo) -> object:
        return no_bool_for_number(cls, value, info)

    @field_validator("exchange_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, not {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("api_key_env", "api_secret_env", "drift_rpc_url_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        """A variable's NAME, in capitals: a key pasted here instead (Binance's are 64 letters and
        digits, a valid name in mixed case) was printed back in `... the environment variable
        <KEY> is not set`. What was written is never shown: it may be the secret itself."""
        if value is not None and not ENV_NAME.fullmatch(value):
            raise ValueError(
                "must be the NAME of the environment variable that holds the secret (capital letters,"
                " digits and _, e.g. MAIN_KEY), not the secret itself; what is written there is not"
                " shown, as it may be the secret"
            )
        return value


class Settings(BaseSettings):
    """Everything warden can be told. Construct with `Settings.load(...)` to honour `--config`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="forbid",
        validate_default=True,
        allow_inf_nan=False,  # `order_timeout = inf` is no deadline: every number must be finite
    )

    # -- where and how it runs ------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Port the HTTP API listens on.")
    db: str = Field(
        "sqlite:///./data/warden.db",
        description="Database URL: sqlite:///PATH (embedded) or postgresql://USER@HOST/DB.",
    )
    data_dir: Path = Field(
        Path("./data"),
        description=(
            "Directory for local state: the API token file, the in-process simulator's account,"
            " a control change the database could not store yet, and each account's installation"
            " id (`installation-<account>.json`, for guard stops placed when the database cannot"
            " be opened at start)."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    log_json: bool = Field(False, description="Log one JSON object per line instead of console text.")

    # -- the exchange ---------------------------------------------------------------------------
    exchange: Literal["sim", "binanceusdm", "bybit", "drift"] = Field(
        "sim",
        description=(
            "Exchange: sim (in-process simulator), binanceusdm (Binance USD-M futures), bybit"
            " (Bybit v5 USDT perpetuals) or drift (Drift perpetuals through the driftpy sidecar)."
        ),
    )
    exchange_url: str | None = Field(
        None,
        description=(
            "Base URL of a server that speaks the exchange's protocol (e.g. `warden sim serve`);"
            " every URL ccxt could use is pointed at it. With drift: a running sidecar or"
            " `warden sim serve --venue drift` (unset: warden starts the sidecar itself)."
        ),
    )
    testnet: bool = Field(
        False,
        description=(
            "Trade on the exchange's test environment: Binance demo trading, Bybit testnet"
            " (ignored with exchange_url)."
        ),
    )
    api_key: SecretStr | None = Field(None, description="Exchange API key.")
    api_secret: SecretStr | None = Field(None, description="Exchange API secret.")
    account: str = Field(
        "default",
        min_length=1,
        description="Account name (letters, digits, _ and -, at most 32); one engine writes per account.",
    )
    drift_keypair_path: SecretStr | None = Field(
        None, description="Path of the Solana keypair file Drift orders are signed with (never logged)."
    )
    drift_rpc_url: SecretStr | None = Field(
        None, description="Solana RPC URL the Drift sidecar uses (it may carry a key: never logged)."
    )
    drift_sub_account: int = Field(0, ge=0, le=65535, description="Drift sub-account id.")
    drift_sidecar_python: Path = Field(
        Path(".drift-venv/bin/python"),
        description="The Drift sidecar's interpreter (its own environment, built by `make drift`).",
    )
    sim_seed: int = Field(42, description="Random seed of the simulated exchange's price walk.")
    sim_tick_interval: float = Field(
        1.0, gt=0, description="Seconds between simulated price ticks (sim exchange only)."
    )

    # -- the API ---------------------------------------------------------------------------------
    api_token: SecretStr | None = Field(
        None,
        description="Bearer token for the API (every /api/v1 call); made into DATA_DIR/api-token if unset.",
    )

    api_read_token: SecretStr | None = Field(
        None,
        description="Optional token that may only read (dashboards, monitoring); mutating calls get 403.",
    )
    max_body_bytes: int = Field(
        65536, ge=1024, le=16 * 1024 * 1024, description="Largest request body accepted; larger ones get 413."
    )
    max_signal_age: float = Field(
        60.0, gt=0, description="A signal whose timestamp is older than this many seconds is refused (422)."
    )
    signal_wait: float = Field(
        2.0,
        ge=0,
        le=60,
        description=(
            "Seconds POST /signals waits for the position to be protected before answering 202 with its id"
            " (TradingView gives up after 3 s); ?wait=true waits for the outcome."
        ),
    )
    webhook_allow_ips: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="If set, POST /signals is accepted only from these addresses or networks (comma list).",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Reverse proxies whose X-Forwarded-For is believed when finding a caller's address.",
    )

    # -- the exit plan (fractions of the entry price / of the filled size) ---------------------
    stop_pct: Decimal = Field(Decimal("0.015"), description="Stop-loss distance from entry (0.015 = 1.5 %).")
    tp1_pct: Decimal = Field(Decimal("0.01"), description="TP1 distance from entry.")
    tp1_fraction: Decimal = Field(Decimal("0.6"), description="Fraction of the size TP1 closes.")
    tp2_pct: Decimal = Field(Decimal("0.02"), description="TP2 distance from entry.")
    tp2_fraction: Decimal = Field(Decimal("0.2"), description="Fraction of the size TP2 closes.")
    trail_pct: Decimal = Field(
        Decimal("0.005"), description="Trailing distance of the runner after TP2 (from the peak)."
    )
    breakeven_after_tp1: bool = Field(False, description="Move the stop to the entry price after TP1.")
    default_usd: Decimal = Field(
        Decimal(100), gt=0, description="Notional in USD when a signal gives neither usd nor qty."
    )

    # -- deadlines and safety -------------------------------------------------------------------
    protection_window: float = Field(
        2.0,
        gt=0,
        description=(
            "Target seconds from a fill to its resting stop; each position's time is recorded"
            " and a longer one alerts."
        ),
    )
    order_timeout: float = Field(5.0, gt=0, description="Deadline in seconds for one exchange call.")
    db_timeout: float = Field(5.0, gt=0, description="Deadline in seconds for one database call.")
    reconcile_interval: float = Field(30.0, gt=0, description="Seconds between reconciliation runs.")
    stream_silence: float = Field(
        60.0,
        ge=5,
        description="Seconds without any stream event (mark, order, fill) while a position is open before "
        "the trader is alerted (stream_silent); marks normally arrive about every second on every venue.",
    )
    entry_deadline: float = Field(
        10.0,
        gt=0,
        description="Seconds an entry the exchange acknowledged but has not filled may work before it is "
        "cancelled (what filled by then is protected).",
    )
    allow_stacking: bool = Field(
        False,
        description="Allow a second position on a symbol that already has one open (as many as the "
        "exchange's cap on resting stops and take-profits per symbol leaves room for).",
    )
    orphan_policy: Literal["adopt", "close", "alert"] = Field(
        "adopt",
        description="What to do with an exchange position warden has no record of: adopt, close or alert.",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool(cls, value: object, info: ValidationInfo) -> object:
        return no_bool_for_number(cls, value, info)

    @field_validator("api_key", "api_secret", "telegram_token", "drift_rpc_url")
    @classmethod
    def _secret_is_clean(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty key reached ccxt (the engine retried its start for ever on "requires apiKey"),
        one read with its newline crashed `warden run` (aiohttp refuses the header): refused here."""
        if value is not None:
            why = secret_flaw(value.get_secret_value())
            if why == "is empty":
                why += ": give the value, or leave the setting unset"
            if why is not None:
                raise ValueError(why)
        return value

    @field_validator("api_token", "api_read_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty token would be matched by an empty `secret` or a bare `Bearer `; one with
        whitespace or a line break at an end (a `\r` from a .env file written on Windows) by no
        header at all, since the API strips what follows `Bearer`: the CLI, the dashboard and the
        alerts carrying it as printed were all refused."""
        if value is not None:
            why = secret_flaw(value.get_secret_value())
            if why == "is empty":
                raise ValueError("is empty: set a token, or leave the setting unset")
            if why is not None:
                raise ValueError(why)
        return value

    @model_validator(mode="after")
    def _read_token_is_another(self) -> Settings:
        read_token_flaw(self.api_token, self.api_read_token)
        return self

    @field_validator("webhook_allow_ips", "trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        """A list, or comma-separated text (environment variables); each an address or a network."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            for item in value:
                try:
                    ipaddress.ip_network(str(item), strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or network") from None
            return [str(item) for item in value]
        return value

    @model_validator(mode="after")
    def _proxies_are_not_the_senders(self) -> Settings:
        """A trusted proxy is believed about who called: a trusted range holding the whole address
        space (`0.0.0.0/0`, `::/0`: `--forwarded-allow-ips='*'` as proxy guides write it) or an
        allowed public sender (TradingView's servers) believes anyone on the internet, who may then
        write an allowed address into X-Forwarded-For and get past webhook_allow_ips."""
        allowed = [ipaddress.ip_network(entry, strict=False) for entry in self.webhook_allow_ips]
        if not allowed:
            return self
        for entry in self.trusted_proxies:
            trusted = ipaddress.ip_network(entry, strict=False)
            held = [
                a for a in allowed if a.is_global and a.version == trusted.version and trusted.overlaps(a)
            ]
            if trusted.prefixlen == 0 or held:
                whom = f"holds {held[0]}, which webhook_allow_ips lists" if held else "is every address"
                raise DomainValidationError(
                    "trusted_proxies",
                    f"{entry} {whom}: each caller in it would be believed as a proxy, and could name an"
                    " allowed sender in X-Forwarded-For to get past webhook_allow_ips; list only the"
                    " reverse proxies in front of warden (e.g. 127.0.0.1)",
                )
        return self

    # -- risk limits (checked before anything is sent) --------------------------------------------
    max_open_positions: int | None = Field(
        None, ge=1, description="Most positions open at once; a signal beyond it is refused (422)."
    )
    max_position_usd: Decimal | None = Field(
        DEFAULT_MAX_POSITION_USD,
        gt=0,
        allow_inf_nan=False,
        description="Largest notional of one entry in USD (a fat-finger guard); a larger signal is refused.",
    )
    max_total_usd: Decimal | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Largest open notional of all positions together, in USD.",
    )
    max_daily_loss_usd: Decimal | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Realized loss (UTC day) that pauses new entries until the next day, and alerts.",
    )

    # -- leverage and margin ---------------------------------------------------------------------
    leverage: int | None = Field(
        None,
        ge=1,
        le=125,
        description="Leverage set on each symbol before its first entry; unset: left alone.",
    )
    margin_mode: Literal["isolated", "cross"] | None = Field(
        None, description="Margin mode set on each symbol before its first entry: isolated or cross."
    )
    symbols: dict[str, SymbolSettings] = Field(
        default_factory=dict,
        description="Per-symbol leverage and margin_mode ([symbols.SOL] tables; env as JSON).",
    )

    # -- alerts and the Telegram bot ---------------------------------------------------------------
    telegram_token: SecretStr | None = Field(
        None, description="Telegram bot token from @BotFather; unset: no bot."
    )
    telegram_chat_ids: str = Field(
        "",
        description="Comma-separated chat ids the bot serves and alerts; every other chat is ignored.",
    )
    telegram_user_ids: str = Field(
        "",
        description="Comma-separated Telegram user ids whose commands are served (in any allowlisted chat);"
        " unset: every member of an allowlisted chat.",
    )
    telegram_api_url: str = Field(
        "https://api.telegram.org",
        description="Telegram Bot API server; warden calls {url}/bot{token}/{method}.",
    )
    alert_webhook_url: str | None = Field(
        None, description="Also POST every alert as JSON here (Discord/Slack/ntfy-style relays)."
    )
    alert_routes: dict[str, str] = Field(
        default_factory=dict,
        description="Per alert kind: on, silent or off ([alert_routes] table; env as JSON). Critical kinds"
        " cannot be off.",
    )

    engine_name: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="This engine's name in each account's lease: what `warden status`, /accounts and the"
        " dashboard show as the account's holder. Unset: host:pid.",
    )
    capacity: int | None = Field(
        None,
        ge=1,
        description="The most accounts this engine holds at once; for the others it stands by, taking one"
        " over when its lease is free and this engine has room (a fleet sharing accounts). Unset: no limit.",
    )
    lease_timeout: float | None = Field(
        None,
        ge=10,
        le=600,
        description="PostgreSQL only, for a fleet on several hosts: seconds after an engine's last"
        " renewal of an account's lease before another engine may take the account over (ending the"
        " silent engine's session). The holder acts only for half of it after each renewal. Unset:"
        " the lease ends only with its database session (at once when the engine's process dies;"
        " after the server's TCP keepalive, two hours by default, when its host does), and an engine"
        " cut off from the database goes on protecting.",
    )
    accounts: dict[str, AccountSettings] = Field(
        default_factory=dict,
        description="The exchange accounts this engine trades, one [accounts.NAME] table each (exchange,"
        " exchange_url, testnet, api_key_env, api_secret_env, limits); none: the one account above.",
    )

    @field_validator("accounts")
    @classmethod
    def _account_names(cls, value: dict[str, AccountSettings]) -> dict[str, AccountSettings]:
        seen: dict[str, str] = {}
        for name in value:
            _check_account_name(name)
            other = seen.setdefault(name.casefold(), name)
            if other != name:  # one file in data_dir on a case-insensitive disk, one word to a trader
                raise ValueError(
                    f"{other!r} and {name!r} differ only in case: give two accounts names that differ"
                    " in more (their files in data_dir would be one on a case-insensitive disk)"
                )
        return value

    @field_validator("symbols")
    @classmethod
    def _one_table_per_market(cls, value: dict[str, SymbolSettings]) -> dict[str, SymbolSettings]:
        """Two tables that name one market ([symbols.SOL] and [symbols.SOLUSDT], or [symbols.sol]):
        one silently won, by its spelling. Refused, naming both."""
        keys = list(value)
        for i, later in enumerate(keys):
            for earlier in keys[:i]:
                if same_market(earlier, later):
                    raise ValueError(
                        f"[symbols.{earlier}] and [symbols.{later}] name the same market: only one of"
                        " them would apply; keep one table per market"
                    )
        return value

    @field_validator("account")
    @classmethod
    def _account_name(cls, value: str) -> str:
        return _check_account_name(value)  # it names files in data_dir (the simulator's, the controls')

    @model_validator(mode="after")
    def _accounts_have_keys(self) -> Settings:
        for name, table in self.accounts.items():
            exchange = table.exchange or self.exchange
            if exchange in NEEDS_KEYS and (table.api_key_env is None or table.api_secret_env is None):
                missing = "api_key_env" if table.api_key_env is None else "api_secret_env"
                raise DomainValidationError(
                    f"accounts.{name}.{missing}",
                    f"{exchange} needs api_key_env and api_secret_env: the names of the environment"
                    " variables that hold this account's key and secret",
                )
            if table.api_key_env is not None and table.api_key_env == table.api_secret_env:
                raise DomainValidationError(
                    f"accounts.{name}.api_secret_env",
                    f"names {table.api_secret_env}, as api_key_env does: the key would go as the secret",
                )
        key, secret = self.api_key, self.api_secret  # the one account's (tables never inherit them)
        if not self.accounts and key is not None and secret is not None and key == secret:
            raise DomainValidationError(
                "api_secret", "is the same as api_key (the key given twice?); neither is shown"
            )
        return self

    _ascii = field_validator(
        *AMOUNTS, "stop_pct", "tp1_pct", "tp1_fraction", "tp2_pct", "tp2_fraction", "trail_pct", mode="before"
    )(ascii_number)

    @field_validator("telegram_chat_ids", mode="before")
    @classmethod
    def _chat_ids(cls, value: object) -> str:
        return _numeric_ids(value, "chat", negative=True)  # a group's id is negative

    @field_validator("telegram_user_ids", mode="before")
    @classmethod
    def _user_ids(cls, value: object) -> str:
        return _numeric_ids(value, "user", negative=False)  # a user's id is positive

    @field_validator("telegram_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, not {value!r}")
        return value.rstrip("/")

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        """A webhook URL carries its own secret (Discord's and Slack's token): never shown."""
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                "must start with http:// or https:// (the URL is not shown: it holds the webhook's token)"
            )
        return value.rstrip("/") if value else value

    @field_validator("alert_routes")
    @classmethod
    def _routes(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            parse_routes(value)
        except DomainValidationError as exc:
            raise ValueError(f"{exc.field.removeprefix('alert_routes.')}: {exc.message}") from None
        return value

    @field_validator("db")
    @classmethod
    def _db_is_url(cls, value: str) -> str:
        why = database_url_flaw(value)
        if why is not None:
            raise ValueError(why)
        return value

    @field_validator("exchange_url")
    @classmethod
    def _exchange_url_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, not {value!r}")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _lease_timeout_needs_postgres(self) -> Settings:
        if self.lease_timeout is not None and database_backend(self.db) == "sqlite":
            raise DomainValidationError(
                "lease_timeout",
                "needs PostgreSQL: on SQLite the lease is a lock file on one host, which ends with"
                " the engine's process",
            )
        return self

    @model_validator(mode="after")
    def _plan_is_valid(self) -> Settings:
        self.exit_plan()  # raises a DomainValidationError naming the field
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _config_file.get() or _env_config_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, _WithoutServiceLink(env_settings)]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @classmethod
    def load(
        cls, config_file: Path | str | None = None, *, check_env: bool = True, **overrides: Any
    ) -> Settings:
        """Build the settings from every source; a bad value raises ConfigError naming it.

        `overrides` whose value is None are ignored, so CLI flags left unset fall
        through to the environment, the file and the defaults. A WARDEN_* variable that
        names nothing warden reads is a ConfigError naming it (`unknown_variables`), unless
        `check_env` is False (the client commands, which only warn).
        """
        path = Path(config_file) if config_file is not None else _env_config_file()
        if path is not None:
            _check_toml(path)
        given = {k: v for k, v in overrides.items() if v is not None}
        token = _config_file.set(path)
        try:
            settings = cls(**given)
        except pydantic.ValidationError as exc:
            raise _config_error(exc) from None
        except DomainValidationError as exc:
            raise ConfigError(exc.field, exc.message) from None
        except SettingsError as exc:  # a nested setting's variable that is not JSON
            raise _source_error(exc) from None
        finally:
            _config_file.reset(token)
        if check_env:
            for variable, message in settings.unknown_variables(os.environ):
                raise ConfigError(variable, message)
        return settings

    def unknown_variables(self, environ: Mapping[str, str]) -> list[tuple[str, str]]:
        """(variable, why) for each WARDEN_* variable that names nothing warden reads, with the
        settings it is closest to: a misspelt risk limit would otherwise be ignored while the
        trader believes it applies.

        Known: every setting's variable (in any case, as the settings read them), the command
        line's and the tests' own (OTHER_VARIABLES), and every variable an [accounts.*] table
        names for its key, secret or RPC URL (any name, a WARDEN_* one included). A setting's
        variable set twice in different cases with different values is refused too (`_set_twice`)."""
        settings = {f"{ENV_PREFIX}{name.upper()}" for name in type(self).model_fields}
        named = {
            variable
            for table in self.accounts.values()
            for variable in (table.api_key_env, table.api_secret_env, table.drift_rpc_url_env)
            if variable is not None
        }
        known = sorted(settings | CLI_VARIABLES)
        unknown = [
            (variable, _unknown_variable(variable, known))
            for variable in sorted(environ)
            if variable.upper().startswith(ENV_PREFIX)
            and variable.upper() not in settings
            and variable not in OTHER_VARIABLES
            and variable not in named
            and not _service_link(variable, environ[variable])
        ]
        return _set_twice(environ, settings) + unknown

    def account_names(self) -> tuple[str, ...]:
        """The accounts this engine serves: the [accounts.*] tables, or the one `account`."""
        return tuple(self.accounts) or (self.account,)

    @property
    def multi_account(self) -> bool:
        """More than one account: every signal, read and command must say which."""
        return len(self.accounts) > 1

    def only(self, name: str) -> Settings:
        """These settings serving the one [accounts.NAME] table `name` (`warden run --account`:
        one engine per account on several hosts, the accounts shared out through their leases).
        `name` is matched whatever its case (no two tables differ only in case)."""
        name = account_spelled(name, self.accounts)
        if name not in self.accounts:
            raise ConfigError("account", f"unknown account {name!r}; accounts: {', '.join(self.accounts)}")
        # The tables before it in the file are compared here, as a run of the whole file does: an
        # engine of `--account b` beside one of `--account a`, on one exchange account, was two
        # writers. Only the tables whose key variables are set here can be compared.
        resolved: dict[str, Settings] = {}
        for other in self.accounts:
            with contextlib.suppress(ConfigError):  # its keys are not set here: nothing to compare
                resolved[other] = self.for_account(other)
            if other == name:
                break
        why = same_exchange_account(resolved).get(name)
        if why is not None:
            raise ConfigError(f"accounts.{name}", why.removeprefix(f"accounts.{name}: "))
        return self.model_copy(update={"accounts": {name: self.accounts[name]}, "account": name})

    def check_flags(self, flags: Mapping[str, Any]) -> None:
        """Refuse a command-line flag that an [accounts.*] table this engine serves overrides
        (`--leverage 3` beside `leverage = 10` in [accounts.main]): a table beats the top-level
        settings it leaves to them, so the flag would be silently not what that account trades
        with. The environment and the file's top level stay every account's defaults."""
        for key, given in flags.items():
            if given is None or key not in AccountSettings.model_fields:
                continue
            mine = getattr(self, key)
            for name, table in self.accounts.items():
                theirs = getattr(table, key)
                if theirs is not None and theirs != mine:
                    flag = f"--{key.replace('_', '-')}"
                    raise ConfigError(
                        key,
                        f"{flag} {_shown(mine)} is not what accounts.{name} trades with: its table sets"
                        f" {key} = {_shown(theirs)}, and a table's own setting beats the top-level one;"
                        f" set it in the table (or run without {flag})",
                    )

    def for_account(self, name: str, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings one account's engine runs with: its table over the top-level settings.

        Its key and secret are read from the environment variables its table names; one that
        is not set is a ConfigError naming the table's field.
        """
        if not self.accounts:
            if name != self.account:
                raise ConfigError("account", f"unknown account {name!r}; this engine serves {self.account!r}")
            return self
        table = self.accounts.get(name)
        if table is None:
            raise ConfigError("account", f"unknown account {name!r}; accounts: {', '.join(self.accounts)}")
        environ = os.environ if environ is None else environ
        update: dict[str, Any] = {"account": name, "accounts": {}, "api_key": None, "api_secret": None}
        if table.drift_keypair_path is not None:
            update["drift_keypair_path"] = table.drift_keypair_path
        for key in ("api_key", "api_secret", "drift_rpc_url"):
            variable = getattr(table, f"{key}_env")
            if variable is None:
                continue
            value = environ.get(variable)
            if not value:
                raise ConfigError(
                    f"accounts.{name}.{key}_env", f"the environment variable {variable} is not set"
                )
            why = secret_flaw(value)
            if why is not None:
                raise ConfigError(f"accounts.{name}.{key}_env", f"the environment variable {variable} {why}")
            update[key] = SecretStr(value)
        secrets = {"api_key_env", "api_secret_env", "drift_rpc_url_env", "drift_keypair_path"}
        for key, value in table.model_dump(exclude=secrets).items():
            if value is not None:
                update[key] = value
        return self.model_copy(update=update)

    def exit_plan(self) -> ExitPlan:
        return ExitPlan(
            stop_pct=self.stop_pct,
            tp1_pct=self.tp1_pct,
            tp1_fraction=self.tp1_fraction,
            tp2_pct=self.tp2_pct,
            tp2_fraction=self.tp2_fraction,
            trail_pct=self.trail_pct,
            breakeven_after_tp1=self.breakeven_after_tp1,
        )

    def routes(self) -> AlertRoutes:
        return parse_routes(self.alert_routes)

    def margin_plan(self) -> MarginPlan:
        def config(leverage: int | None, mode: str | None) -> SymbolConfig:
            return SymbolConfig(leverage, MarginMode(mode) if mode else None)

        return MarginPlan(
            config(self.leverage, self.margin_mode),
            {k.upper(): config(v.leverage, v.margin_mode) for k, v in self.symbols.items()},
        )

    def limits(self) -> Limits:
        return Limits(
            max_open_positions=self.max_open_positions,
            max_position_usd=self.max_position_usd,
            max_total_usd=self.max_total_usd,
            max_daily_loss_usd=self.max_daily_loss_usd,
        )

    @property
    def chat_ids(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.telegram_chat_ids.split(",") if c)

    @property
    def user_ids(self) -> tuple[int, ...]:
        return tuple(int(u) for u in self.telegram_user_ids.split(",") if u)

    @property
    def token_file(self) -> Path:
        return self.data_dir / "api-token"

    @property
    def api_url(self) -> str:
        """Where a client on this machine reaches the API."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def redacted(self) -> dict[str, str | None]:
        """Every setting as display text; secrets are shown only as set or unset."""
        shown: dict[str, str | None] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown[name] = REDACTED
            elif value is None:
                shown[name] = None
            else:
                shown[name] = str(value).lower() if isinstance(value, bool) else str(value)
        return shown


def same_exchange_account(per_account: Mapping[str, Settings]) -> dict[str, str]:
    """Accounts that name an exchange account another one already trades: two writers on one
    exchange account would each find the other's positions, so the later table is refused. The
    same key on the same venue and endpoint is one account; the endpoint is `exchange_url` when
    set (`testnet` is then ignored, so it does not tell two tables apart), else the venue's live
    or test environment. Different URLs may be different venues (simulators each holding accounts
    under one key), so they are not compared. Drift: one sidecar URL is one sub-account (the
    sidecar's own; the table's wallet and sub-account are not used with `exchange_url`), else
    one wallet file and sub-account."""
    seen: dict[tuple[object, ...], str] = {}
    refused: dict[str, str] = {}
    for name, s in per_account.items():
        key = s.api_key.get_secret_value() if s.api_key is not None else None
        if s.exchange == "drift" and s.exchange_url is not None:
            # A running sidecar trades its own wallet and sub-account: the table's are not used.
            identity: tuple[object, ...] = ("drift", s.exchange_url)
        elif s.exchange == "drift":
            path = s.drift_keypair_path.get_secret_value() if s.drift_keypair_path else None
            wallet = os.path.realpath(path) if path else None  # one file, however its path is written
            identity = ("drift", None, wallet, s.drift_sub_account)
        elif key is not None:
            endpoint = s.exchange_url or ("testnet" if s.testnet else "live")
            identity = (s.exchange, endpoint, key)
        else:
            continue  # the simulator: every account has its own
        if identity in seen:
            refused[name] = (
                f"accounts.{name}: trades the same exchange account as {seen[identity]!r}"
                " (same exchange, endpoint and key); one writer per exchange account"
            )
        else:
            seen[identity] = name
    return refused


def _shown(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def describe(name: str) -> str:
    """The description of a setting, with its environment variable (for `--help`)."""
    info = Settings.model_fields[name]
    return f"{info.description} (env: {ENV_PREFIX}{name.upper()})"


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(setting, environment variable, default, description) for the README's table."""
    rows = []
    for name, info in Settings.model_fields.items():
        value = info.get_default(call_default_factory=True)
        default = "" if value is None or value == {} else str(value)
        if isinstance(value, bool):
            default = str(value).lower()
        elif isinstance(value, list):
            default = ", ".join(str(v) for v in value)
        rows.append((name, f"{ENV_PREFIX}{name.upper()}", default, info.description or ""))
    return rows


def _service_link(variable: str, value: str) -> bool:
    """Whether `variable` is one Kubernetes made for a Service (SERVICE_LINK), not a setting."""
    if SERVICE_LINK.fullmatch(variable):
        return True
    return bool(SERVICE_LINK_PORT.fullmatch(variable) and SERVICE_LINK_URL.fullmatch(value))


def _set_twice(environ: Mapping[str, str], settings: set[str]) -> list[tuple[str, str]]:
    """(variable, why) for a setting given by two variables that differ only in case and hold
    different values (WARDEN_LEVERAGE=3 beside a forgotten warden_leverage=20): both are read as
    the one setting, and which of them wins is not the trader's to see. The values are not shown."""
    spellings: dict[str, list[str]] = {}
    for variable in sorted(environ):
        if variable.upper() in settings:
            spellings.setdefault(variable.upper(), []).append(variable)
    return [
        (names[0], f"is set again as {' and '.join(names[1:])} with another value: keep one of them")
        for names in spellings.values()
        if len({environ[name] for name in names}) > 1
    ]


def _unknown_variable(variable: str, known: list[str]) -> str:
    """Why `variable` is refused, with the known variables it is closest to."""
    message = "is not a setting warden knows"
    wanted = variable.upper()
    head = wanted.split("__", 1)[0]
    if "__" in wanted.removeprefix(ENV_PREFIX) and head in known:
        return f"{message}; a nested setting is not read from its own variable: give {head} as JSON"
    bare = {name.removeprefix(ENV_PREFIX): name for name in known}
    close = difflib.get_close_matches(wanted.removeprefix(ENV_PREFIX), list(bare), n=3, cutoff=0.6)
    if close:
        return f"{message}; did you mean {' or '.join(bare[c] for c in close)}?"
    return f"{message} (the settings are listed by `warden run --help` and in the README)"


def _check_account_name(name: str) -> str:
    if not ACCOUNT_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not an account name: letters, digits, _ and -, at most 32, "
            "starting with a letter or digit"
        )
    return name


DATABASE_BACKENDS = ("sqlite", "postgresql", "postgres")
"""The schemes `db` takes (any driver after a `+` is replaced: adapters/db/urls.py)."""
DATABASE_HINT = "use sqlite:///path/to/warden.db or postgresql://user@host:5432/dbname"


def database_backend(url: str) -> str:
    """The backend a database URL names: its scheme without a driver (`sqlite+aiosqlite` -> sqlite)."""
    return url.partition("://")[0].partition("+")[0]


def database_url_flaw(url: str) -> str | None:
    """Why warden cannot use `url` as its database, found before anything starts, without showing
    a password: not a URL, a scheme it has no driver for, SQLite without a file, or a password
    holding a bare '@' (the URL reads the password up to its first '@' and the rest as the host,
    so an error showed the password's tail as part of the host, and warden looked for that host)."""
    if "://" not in url:
        shown = f"***@{url.rpartition('@')[2]}" if "@" in url else url  # no credentials
        return f"must be a database URL like sqlite:///./data/warden.db, not {shown!r}"
    scheme, _, rest = url.partition("://")
    backend = database_backend(url)
    if backend not in DATABASE_BACKENDS:
        return f"unsupported database scheme {scheme!r}; {DATABASE_HINT}"
    if backend == "sqlite":
        path = rest.partition("?")[0].removeprefix("/")
        if not path or path == ":memory:" or path.startswith("file:"):
            return f"SQLite needs a file path; {DATABASE_HINT}"
        return None
    if "@" in rest:
        host = re.split(r"[/?]", rest.partition("@")[2], maxsplit=1)[0]
        if "@" in host:
            return (
                "the user name or password holds an '@': write each '@' in them as %40"
                " (postgresql://user:pa%40ss@host/dbname); the URL is not shown"
            )
        if any(mark in rest.rpartition("@")[0] for mark in "/?#"):
            # each ends the host part: the password's head was read as a port, its tail as a
            # parameter, and either was shown in the refusal
            return (
                "the user name or password holds a '/', '?' or '#': write them %2F, %3F and %23"
                " (postgresql://user:pa%2Fss@host/dbname); the URL is not shown"
            )
    return _postgres_port_flaw(rest) or _postgres_query_flaw(rest)


POSTGRES_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
"""What `sslmode` (libpq's name, in every managed PostgreSQL's connection string) may say; the
driver takes the same modes as `ssl` (adapters/db/urls.py hands sslmode over as ssl)."""


def _postgres_port_flaw(rest: str) -> str | None:
    """A port that is not one (`:99999`, `:54O2`): the driver failed on it only once the engine
    connected, with a traceback (OverflowError, ValueError) instead of the setting's name."""
    hostport = re.split(r"[/?]", rest, maxsplit=1)[0].rpartition("@")[2]
    if "," in hostport:  # several hosts: left to the driver
        return None
    tail = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    if ":" not in tail:
        return None
    port = tail.rpartition(":")[2]
    if not (port.isascii() and port.isdigit()):
        return f"port {port!r} in the URL is not a number; the URL is not shown"
    if not 1 <= int(port) <= 65535:
        return f"port {int(port)} in the URL is not a port (1 to 65535); the URL is not shown"
    return None


def _postgres_query_flaw(rest: str) -> str | None:
    """A URL parameter the driver does not take: SQLAlchemy hands each one to asyncpg's connect()
    as a keyword, which failed once the engine connected (`TypeError: connect() got an unexpected
    keyword argument 'connect_timeout'`). sslmode (or ssl) is taken, with a mode it knows, and
    host (libpq's and the driver's way to name a Unix socket's directory: `?host=/var/run/postgresql`);
    no parameter's value is shown but the mode's."""
    query = rest.partition("?")[2]
    modes = ", ".join(POSTGRES_SSL_MODES)
    given = urllib.parse.parse_qsl(query, keep_blank_values=True)
    ssl = [value for key, value in given if key in ("sslmode", "ssl")]
    for key, value in given:
        if key == "host":
            if not value or len([k for k, _ in given if k == "host"]) > 1:
                return "host in the URL must be given once, with a value; the URL is not shown"
            continue
        if key not in ("sslmode", "ssl"):
            return (
                f"the URL's parameter {key!r} is not one warden's PostgreSQL driver takes: it takes"
                f" sslmode ({modes}) and host (a Unix socket's directory); the URL is not shown"
            )
        if value not in POSTGRES_SSL_MODES:
            return f"sslmode in the URL must be one of {modes}, not {value!r}"
    if len(ssl) > 1:
        return "sslmode is given more than once in the URL (ssl is its other name): give it once"
    return None


def _env_config_file() -> Path | None:
    raw = os.environ.get(CONFIG_ENV)
    return Path(raw) if raw else None


def _check_toml(path: Path) -> None:
    """The file can be read and is TOML; anything else is a ConfigError naming `config` (a
    traceback was printed for a file saved as UTF-16, or one the user may not read)."""
    if path.is_dir():
        raise ConfigError("config", f"{path} is a directory, not a TOML file")
    if not path.is_file():
        raise ConfigError("config", f"no such file: {path}")
    try:
        with path.open("rb") as fh:
            tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "config", f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8, as TOML requires"
        ) from None
    except OSError as exc:
        raise ConfigError("config", f"{path} cannot be read: {exc.strerror or exc}") from None


def _source_error(exc: SettingsError) -> ConfigError:
    """pydantic-settings' own refusal (WARDEN_SYMBOLS='SOL=3': a nested setting's variable must
    hold JSON) as a ConfigError naming the setting; the value is not shown (the cause's message,
    from the JSON decoder, carries a position only)."""
    match = re.search(r'field "(\w+)"', str(exc))
    field = match.group(1) if match else "settings"
    example = _JSON_EXAMPLES.get(field)
    message = f"the environment variable {ENV_PREFIX}{field.upper()} must hold JSON"
    if example is not None:
        message += f", e.g. {example}"
    if exc.__cause__ is not None:
        message += f" ({exc.__cause__})"
    return ConfigError(field, message)


_JSON_EXAMPLES = {
    "symbols": """'{"SOL": {"leverage": 3}}'""",
    "alert_routes": """'{"tp_filled": "silent"}'""",
    "accounts": """'{"main": {"exchange": "bybit", "api_key_env": "K", "api_secret_env": "S"}}'""",
}


def _config_error(exc: pydantic.ValidationError) -> ConfigError:
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"]]
    field = ".".join(loc) or "settings"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "is not a setting warden knows"
    elif first["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    return ConfigError(field, message)
