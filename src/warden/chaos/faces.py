"""What differs between the venues a process run can play on (`warden sim serve --venue X` and
`warden run --exchange Y`): market names, which requests place or cancel orders, how a fault is
switched on, and how the exchange's own order and trade records are read.

Binance and Bybit share the simulator's control surface (client-id globs, the same knobs); a
fault is switched on the same way on both. Drift's face never sees warden's client ids (Drift
orders carry a u8 `user_order_id`): its order faults are globs on the order LABEL
`<order_type>-<direction>-<condition|none>-<ro|open>-u<id>-m<market>` (see
adapters/sim/drift/venue.py), and its trades are matched to warden's records by fill id.

Faults a face cannot inject are never drawn for it (`FACE_FAULTS`); see `SKIPPED` for why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

from warden.chaos.generate import PROCESS_FAULTS
from warden.chaos.steps import Fault, FaultKind, role_glob
from warden.domain.values import parse_client_id

KEY, SECRET = "sim-key", "sim-secret"
D = Decimal
BASE_PRECISION = D(10**9)  # Drift's base amounts are integers of 1e-9
COINS = ("BTC", "ETH", "SOL")

SKIPPED: dict[str, dict[FaultKind, str]] = {
    "binance": {},
    "bybit": {},
    "drift": {
        FaultKind.STREAM_GAP: "the Drift face has no stream_gap knob (its event socket is dropped by "
        "stream_disconnect instead)",
        FaultKind.RATE_LIMIT: "the Drift face has no rate-limit answer (the sidecar protocol's outage "
        "is server_errors: unavailable_if)",
        FaultKind.EXECUTE_LATE: "the Drift face has no execute_late_if knob (a transaction is sent or "
        "not; one of unknown outcome is timeout_after_execution_if or hold_send_if)",
    },
}
"""Per venue, the process faults its face cannot inject, and why (never drawn for it)."""

FACE_FAULTS = {venue: PROCESS_FAULTS - set(skipped) for venue, skipped in SKIPPED.items()}
"""Per venue, what its process runs draw from (`generate.scenario(..., faults=...)`)."""
IN_PARTS = {"binance": True, "bybit": True, "drift": False}
"""Per venue, whether its face fills an acknowledged order in parts (`partial_fill`): the Drift
face's auction fills an order whole (`generate.scenario(..., in_parts=...)`)."""

Knobs = dict[str, Any]


def coin(symbol: str) -> str:
    """BTC of BTC/USDT:USDT, BTCUSDT or BTC-PERP."""
    return symbol.split("/", maxsplit=1)[0].split("-", maxsplit=1)[0].removesuffix("USDT")


class Face:
    """Binance USD-M: `/fapi/...`, client ids in the query string."""

    venue = "binance"
    exchange = "binanceusdm"
    order_paths: tuple[str, ...] = ("/fapi/v1/order", "/fapi/v1/algoOrder")

    def __init__(self, http: httpx.Client, url: str) -> None:
        self.http, self.url = http, url

    # ----- names
    def market(self, symbol: str) -> str:
        """The venue's market id (/sim/price, /sim/external-order, signals) of a chaos symbol."""
        return coin(symbol) + "USDT"

    def state_symbol(self, symbol: str) -> str:
        """The symbol /sim/state and warden's API name a chaos symbol by."""
        return symbol

    def tick(self, symbol: str) -> Decimal:
        return D("0.1") if symbol.startswith("BTC") else D("0.01")

    def lot(self, symbol: str) -> Decimal:
        return D("0.001") if symbol.startswith(("BTC", "ETH")) else D("0.01")

    # ----- requests
    def is_order_request(self, r: dict[str, Any]) -> bool:
        """A request that places or cancels an order (what a crash's `at` counts)."""
        return r["method"] in ("POST", "DELETE") and r["path"] in self.order_paths

    def placed(self, r: dict[str, Any]) -> str | None:
        """The client id of an order placement the exchange accepted (None for anything else)."""
        if r["method"] != "POST" or r["path"] not in self.order_paths or r["status"] != 200:
            return None
        params = dict(parse_qsl(r["query"], keep_blank_values=True))
        return params.get("newClientOrderId") or params.get("clientAlgoId") or None

    # ----- faults
    def disconnect_path(self) -> str:
        return "/sim/expire-listen-key"

    def knobs(self, fault: Fault, side: str = "long") -> Knobs:
        """The /sim/faults knobs that switch `fault` on (stream and crash faults excepted); `side`:
        that of the position the step acts on (only Drift's globs need it)."""
        kind, glob = fault.kind, role_glob(fault.roles) if fault.roles else None
        if kind is FaultKind.ACK_ONLY:
            return {
                "ack_only_if": glob,
                "fill_delay": min(fault.seconds, 3.0),
                "partial_fill": fault.rate,
                "fill_parts": max(2, fault.count),
            }
        if kind is FaultKind.TIMEOUT_AFTER_EXECUTION:
            return {"timeout_after_execution_if": glob}
        if kind is FaultKind.REJECT:
            return {"reject_if": glob}
        if kind is FaultKind.SERVER_ERRORS:
            return {"server_error_if": glob}
        if kind is FaultKind.RATE_LIMIT:
            return {"rate_limit_if": glob, "retry_after": fault.retry_after}
        if kind is FaultKind.QUERY_FAILURES:
            return {"fail_queries": True}
        if kind is FaultKind.EXECUTE_LATE:
            return {"execute_late_if": glob, "execute_delay": fault.seconds}
        raise ValueError(f"{kind} is not a /sim/faults knob")

    def off(self, fault: Fault) -> Knobs:
        """The knobs that end a timed burst (a Retry-After already given stands: the client waits it out)."""
        return {
            name: False if name == "fail_queries" else 0 if name == "retry_after" else None
            for name in self.knobs(fault)
        }

    def doubles(self) -> list[str]:
        """Orders of one client id that are more than one exchange order (read by `traded`)."""
        return []

    def settling(self, state: dict[str, Any]) -> bool:
        """Whether the exchange itself has work scheduled that will change the account (then the
        step is not judged yet: the in-process checker's clock would have run past it)."""
        del state
        return False

    def cleared(self) -> Knobs:
        return {
            "drop_rate": 0,
            "duplicate_rate": 0,
            "ack_only_if": None,
            "fill_delay": 0,
            "timeout_after_execution_if": None,
            "reject_if": None,
            "server_error_if": None,
            "rate_limit_if": None,
            "retry_after": 0,
            "execute_late_if": None,
            "execute_delay": 0,
            "fail_queries": False,
        }

    def after_kill(self) -> Knobs:
        """Knobs switched off when the engine is killed (a pending delayed fill is left to land)."""
        return {"ack_only_if": None, "fill_delay": 0}

    # ----- the exchange's records
    def signed(self, path: str, **params: Any) -> Any:
        fields = {**params, "timestamp": int(time.time() * 1000), "recvWindow": 10000}
        query = urlencode(fields)
        signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        response = self.http.get(
            f"{self.url}{path}?{query}&signature={signature}", headers={"X-MBX-APIKEY": KEY}
        )
        response.raise_for_status()
        return response.json()

    def accepted(self, requests: list[dict[str, Any]]) -> Counter[str]:
        """How often the exchange accepted each of warden's client ids."""
        seen: Counter[str] = Counter()
        for r in requests:
            cid = self.placed(r)
            if cid and parse_client_id(cid) is not None:
                seen[cid] += 1
        return seen

    def traded(self, owners: dict[str, str]) -> dict[str, Decimal]:
        """What each warden order traded, from the exchange's own records, keyed by client id
        (`owners`: warden's recorded trade id -> client id; only Drift needs it)."""
        del owners
        owner: dict[int, str] = {}
        traded: dict[str, Decimal] = defaultdict(Decimal)
        for coin in COINS:
            market = coin + "USDT"
            for order in self.signed("/fapi/v1/allOrders", symbol=market, limit=1000):
                if parse_client_id(order["clientOrderId"]) is not None:
                    owner[order["orderId"]] = order["clientOrderId"]
            for algo in self.signed("/fapi/v1/allAlgoOrders", symbol=market, limit=1000):
                if parse_client_id(algo["clientAlgoId"]) is not None and algo["actualOrderId"]:
                    owner[int(algo["actualOrderId"])] = algo["clientAlgoId"]
            for trade in self.signed("/fapi/v1/userTrades", symbol=market, limit=1000):
                cid = owner.get(trade["orderId"])
                if cid is not None:
                    traded[cid] += D(trade["qty"])
        return traded


class BybitFace(Face):
    """Bybit v5 linear: `/v5/...`, the client id (orderLinkId) in a JSON body, retCode refusals
    logged with HTTP 200 and a note. The control surface is Binance's (client-id globs)."""

    venue = "bybit"
    exchange = "bybit"
    order_paths = ("/v5/order/create", "/v5/order/amend", "/v5/order/cancel")

    def is_order_request(self, r: dict[str, Any]) -> bool:
        return r["method"] == "POST" and r["path"] in self.order_paths

    def placed(self, r: dict[str, Any]) -> str | None:
        if (r["method"], r["path"], r["status"]) != ("POST", "/v5/order/create", 200) or r.get("note"):
            return None
        return str(json.loads(r["query"]).get("orderLinkId") or "") or None

    def disconnect_path(self) -> str:
        return "/sim/disconnect"  # no listen keys: the private socket drops

    def signed(self, path: str, **params: Any) -> Any:
        query = urlencode(params)
        stamp, window = str(int(time.time() * 1000)), "10000"
        payload = f"{stamp}{KEY}{window}{query}"
        headers = {
            "X-BAPI-API-KEY": KEY,
            "X-BAPI-TIMESTAMP": stamp,
            "X-BAPI-RECV-WINDOW": window,
            "X-BAPI-SIGN": hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest(),
        }
        response = self.http.get(f"{self.url}{path}?{query}", headers=headers)
        response.raise_for_status()
        body = response.json()
        if body["retCode"] != 0:
            raise httpx.HTTPError(f"{path}: {body}")
        return body["result"]

    def _pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        cursor = ""
        while True:
            result = self.signed(path, **params, **({"cursor": cursor} if cursor else {}))
            rows += result["list"]
            cursor = result["nextPageCursor"]
            if not cursor:
                return rows

    def traded(self, owners: dict[str, str]) -> dict[str, Decimal]:
        """Executions carry their order's orderLinkId (a conditional order's too)."""
        del owners
        traded: dict[str, Decimal] = defaultdict(Decimal)
        for coin in COINS:
            rows = self._pages("/v5/execution/list", symbol=coin + "USDT", category="linear", limit=100)
            for trade in rows:
                if parse_client_id(trade["orderLinkId"]) is not None:
                    traded[trade["orderLinkId"]] += D(trade["execQty"])
        return traded


class DriftFace(Face):
    """The Drift sidecar protocol: every order travels in a signed transaction (`/v1/tx/...`)."""

    venue = "drift"
    exchange = "drift"
    INSTRUMENTS = {  # tick, step (Drift's, see adapters/sim/drift/markets.py)
        "SOL": (D("0.001"), D("0.01")),
        "BTC": (D("0.1"), D("0.0001")),
        "ETH": (D("0.01"), D("0.001")),
    }
    INDEX = {"SOL": 0, "BTC": 1, "ETH": 2}

    def __init__(self, http: httpx.Client, url: str) -> None:
        super().__init__(http, url)
        self._orders_of: dict[str, set[int]] = defaultdict(set)

    def market(self, symbol: str) -> str:
        return coin(symbol) + "-PERP"

    def state_symbol(self, symbol: str) -> str:
        return self.market(symbol)

    def tick(self, symbol: str) -> Decimal:
        return self.INSTRUMENTS[coin(symbol)][0]

    def lot(self, symbol: str) -> Decimal:
        return self.INSTRUMENTS[coin(symbol)][1]

    def is_order_request(self, r: dict[str, Any]) -> bool:
        path = str(r["path"])
        return r["method"] == "POST" and path.startswith("/v1/tx/") and path.endswith("/send")

    def placed(self, r: dict[str, Any]) -> str | None:
        return None  # the simulator never sees a client id: see `traded`

    def disconnect_path(self) -> str:
        return "/sim/disconnect"

    @staticmethod
    def _labels(roles: str, side: str) -> Any:
        """One glob on Drift's order labels for warden's role codes. A label shows no role, only
        the order's shape: stops and take-profits are told apart by their trigger condition, which
        depends on the position's side, so those globs hit the orders of `side`'s positions only;
        TP1 and TP2 look the same ("a" or "b" hits both); "sc" hits every reduce-only order of the
        side (its take-profits too)."""
        exit_dir = "short" if side == "long" else "long"
        stop_if, tp_if = ("below", "above") if side == "long" else ("above", "below")
        if roles in ("", "*"):
            return True
        return {
            "e": "market-*-open-*",
            "c": "market-*-ro-*",
            "s": f"trigger_market-{exit_dir}-{stop_if}-ro-*",
            "a": f"trigger_market-{exit_dir}-{tp_if}-ro-*",
            "b": f"trigger_market-{exit_dir}-{tp_if}-ro-*",
            "ab": f"trigger_market-{exit_dir}-{tp_if}-ro-*",
            "sc": f"*market-{exit_dir}-*-ro-*",
        }[roles]

    def knobs(self, fault: Fault, side: str = "long") -> Knobs:
        kind = fault.kind
        if kind is FaultKind.ACK_ONLY:  # every Drift market order is acknowledged, then auctioned
            return {"auction_delay": min(fault.seconds, 3.0)}
        if kind is FaultKind.TIMEOUT_AFTER_EXECUTION:
            return {"timeout_after_execution_if": self._labels(fault.roles, side)}
        if kind is FaultKind.REJECT:
            return {"reject_if": self._labels(fault.roles, side)}
        if kind is FaultKind.SERVER_ERRORS:  # an RPC outage: the transaction was not sent
            return {"unavailable_if": self._labels(fault.roles, side)}
        if kind is FaultKind.QUERY_FAILURES:
            return {"fail_queries": True}
        raise ValueError(f"{kind} is not a Drift /sim/faults knob")

    def cleared(self) -> Knobs:
        return {
            "drop_rate": 0,
            "duplicate_rate": 0,
            "auction_delay": 0.1,
            "timeout_after_execution_if": None,
            "reject_if": None,
            "unavailable_if": None,
            "fail_queries": False,
        }

    def after_kill(self) -> Knobs:
        return {"auction_delay": 0.1}

    def accepted(self, requests: list[dict[str, Any]]) -> Counter[str]:
        return Counter()  # no client ids on the wire; `traded` checks one exchange order per id

    def traded(self, owners: dict[str, str]) -> dict[str, Decimal]:
        """What each of warden's orders traded: Drift's fills of orders with a u8 (warden's; outside
        orders carry none) matched to warden's records by fill id (warden stores `F<fill_id>`). A
        fill warden never recorded is keyed `drift order <id> (u<u8>)`, a key warden's records
        cannot hold (so it counts as traded and not recorded)."""
        traded: dict[str, Decimal] = defaultdict(Decimal)
        self._orders_of.clear()
        for index in self.INDEX.values():
            response = self.http.get(f"{self.url}/v1/fills", params={"market_index": index})
            response.raise_for_status()
            for fill in response.json()["fills"]:
                if not fill["user_order_id"]:
                    continue
                qty = D(fill["base_asset_amount"]) / BASE_PRECISION
                cid = owners.get(f"F{fill['fill_id']}")
                if cid is not None:
                    self._orders_of[cid].add(int(fill["order_id"]))
                traded[cid or f"drift order {fill['order_id']} (u{fill['user_order_id']})"] += qty
        return traded

    def settling(self, state: dict[str, Any]) -> bool:
        """A market order waiting for its auction, or a trigger order the oracle has crossed (or a
        keeper has triggered) that has not filled yet: Drift fills it within the keeper and auction
        delays, on its own."""
        oracle = state["oracle"]
        for order in state["open_orders"]:
            condition = order.get("trigger_condition", "")
            if order["type"] == "market" or condition.startswith("triggered_"):
                return True
            if order["trigger_price"] is None:
                continue
            mark, trigger = D(oracle[order["symbol"]]), D(order["trigger_price"])
            if (condition == "above" and mark >= trigger) or (condition == "below" and mark <= trigger):
                return True
        return False

    def doubles(self) -> list[str]:
        return [
            f"{cid} recorded fills of {len(ids)} Drift orders {sorted(ids)}"
            for cid, ids in self._orders_of.items()
            if len(ids) > 1
        ]


FACES: dict[str, type[Face]] = {"binance": Face, "bybit": BybitFace, "drift": DriftFace}
