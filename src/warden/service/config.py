"""The engine's own settings: plain values, chosen by bootstrap from the user's config."""

from __future__ import annotations

from dataclasses import dataclass, field

from warden.domain.controls import Limits
from warden.domain.margin import MarginPlan
from warden.domain.plan import ExitPlan


@dataclass(frozen=True, slots=True)
class EngineConfig:
    exchange_name: str = "sim"
    account: str = ""
    """The account's name, as alerts about the whole account name it ("" in tests: unnamed)."""
    database: str = ""
    plan: ExitPlan = field(default_factory=ExitPlan)
    order_timeout: float = 5.0
    query_timeout: float = 5.0
    fill_wait: float = 1.0
    lookup_attempts: int = 5
    protect_attempts: int = 3
    retry_backoff: float = 0.2
    protection_window: float = 2.0
    allow_stacking: bool = False
    early_buffer_limit: int = 10_000
    watermark_flush_interval: float = 1.0
    reconcile_interval: float = 30.0
    stream_silence: float = 60.0
    """Seconds without any stream event, while a position is open, before the trader is alerted:
    far above the normal gap between marks on every venue (about 1 s on Binance, Bybit, Drift's
    sidecar and the simulators), so only a dead stream reaches it."""
    orphan_policy: str = "adopt"
    installation_id: str = ""
    """Carried in every client order id; "" makes legacy ids (tests that predate it)."""
    entry_deadline: float = 10.0
    """Seconds an acknowledged-but-unfilled entry may work before it is cancelled."""
    pending_deadline: float = 30.0
    """An order intent still PENDING after this long is resolved by lookup during reconciliation."""
    alert_timeout: float = 2.0
    repeat_window: float = 60.0
    """Refused signals of one kind within this many seconds are told as one count (RepeatDigest),
    the window doubling to 15 minutes while they go on; 0: each told."""
    mark_max_age: float = 5.0
    """A streamed mark at most this old sizes a signal; older, the exchange is asked (one REST call)."""
    start_backoff_max: float = 30.0
    reconcile_rounds: int = 4
    """Diff-and-repair rounds within one reconciliation pass (a flip needs close, then adopt)."""
    limits: Limits = field(default_factory=Limits)
    """Risk limits, checked before an entry is written or sent (domain/controls.py)."""
    margin: MarginPlan = field(default_factory=MarginPlan)
    """Leverage and margin mode per symbol, set before the first entry and checked at startup."""
