"""Real processes for the end-to-end tests: `warden sim serve` and `warden run`, driven over HTTP.

Everything here is synchronous (subprocess.Popen + httpx.Client). Nothing sleeps to
synchronise: `poll` / `converge` re-check a condition until it holds or a deadline passes
(the short pause between checks only keeps the polling from spinning a CPU).

Every process is started through a `Processes` registry, whose `close()` SIGKILLs (by pid)
whatever is still running and prints the tail of every log; the tests' fixture calls it in
a `finally`, so the logs show up in pytest's captured output when a test fails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import httpx

from warden.domain.values import OrderRole, parse_client_id

LAUNCH = "from warden.entrypoints.cli import main; main()"
SIM_KEY, SIM_SECRET = "sim-key", "sim-secret"
TOKEN = "e2e-test-token"
SYMBOLS = {"BTC": "BTC/USDT:USDT", "ETH": "ETH/USDT:USDT", "SOL": "SOL/USDT:USDT"}
MARKET_IDS = {"BTC": "BTCUSDT", "ETH": "ETHUSDT", "SOL": "SOLUSDT"}
ORDER_PATHS = ("/fapi/v1/order", "/fapi/v1/algoOrder")
VENUES = ("binance", "bybit")
EXCHANGE_OF = {"binance": "binanceusdm", "bybit": "bybit", "drift": "drift"}
D = Decimal
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def poll(condition: Callable[[], T | None], *, within: float, what: str, every: float = 0.05) -> T:
    """Call `condition` until it returns something truthy; fail after `within` seconds.

    Transport errors count as "not yet" (a process that is still starting or just died).
    """
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            result = condition()
        except httpx.TransportError as exc:
            result, last = None, exc
        else:
            if result:
                return result
            last = result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what} (last: {last!r})")
        time.sleep(every)


class ContractBroken(AssertionError):
    """An invariant or API contract does not hold (as opposed to a test that could not set up)."""


def converge(check: Callable[[], list[str]], *, within: float, what: str, every: float = 0.1) -> float:
    """Poll `check` (a list of problems) until it is empty; return how long that took."""
    started = time.monotonic()
    deadline = started + within
    problems: list[str] = []
    while True:
        try:
            problems = check()
        except httpx.TransportError as exc:
            problems = [f"transport error: {exc!r}"]
        if not problems:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            listed = "\n  ".join(problems)
            raise ContractBroken(f"{what}: not converged within {within}s:\n  {listed}")
        time.sleep(every)


# ----------------------------------------------------------------------------- processes


class Process:
    """One child process; its output goes to `<dir>/<name>.<n>.log` (n counts restarts)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.logs = logs
        self.popen: subprocess.Popen[bytes] | None = None
        self.log_paths: list[Path] = []

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        assert not self.alive, f"{self.name} is already running"
        path = self.logs / f"{self.name}.{len(self.log_paths)}.log"
        self.log_paths.append(path)
        with path.open("wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-c", LAUNCH, *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,  # a Ctrl-C on the test run does not reach it; we kill it
            )

    def kill9(self) -> None:
        """SIGKILL this process (by its pid) and reap it."""
        if self.popen is None or self.popen.poll() is not None:
            return
        os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def check_running(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.popen.returncode}:\n{self.tail(self.log_paths[-1])}"
            )

    @staticmethod
    def tail(path: Path, lines: int = 60) -> str:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Processes:
    """Registry of every process a test starts; `close()` kills the survivors and shows the logs."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.all: list[Process] = []

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        return {**base, "PYTHONUNBUFFERED": "1", **extra}

    def sim(
        self,
        *,
        seed: int = 7,
        price_interval: float | None = None,
        venue: str = "binance",
        clock_offset: float | None = None,
    ) -> SimServer:
        """`warden sim serve --venue VENUE` (binance, bybit or drift) on a free port;
        `price_interval=0` switches its random walk off (exact price paths); `clock_offset`: seconds
        the simulator's clock runs ahead of this host's (negative: behind)."""
        port = free_port()
        args = ["sim", "serve", "--host", "127.0.0.1", "--port", str(port), "--seed", str(seed)]
        if price_interval is not None:
            args += ["--price-interval", str(price_interval)]
        if clock_offset is not None:
            args += ["--clock-offset", str(clock_offset)]
        args += ["--venue", venue]
        server = SimServer("sim", args, self.env(), self.dir, port, venue)
        self.all.append(server)
        server.start()
        server.wait_ready()
        return server

    def engine(
        self,
        name: str,
        data: Path,
        *,
        sim: SimServer | None,
        db: str | None = None,
        start: bool = True,
        **env: str,
    ) -> Engine:
        """`warden run` on a free port; against `sim` (binanceusdm or bybit through ccxt, as the sim
        speaks) or the embedded sim."""
        port = free_port()
        data.mkdir(parents=True, exist_ok=True)
        db = db or f"sqlite:///{data / 'w.db'}"
        args = ["run", "--host", "127.0.0.1", "--port", str(port), "--db", db, "--data-dir", str(data)]
        extra = {"WARDEN_API_TOKEN": TOKEN, **env}
        if sim is not None:
            args += ["--exchange", EXCHANGE_OF[sim.venue], "--exchange-url", sim.url]
            extra |= {"WARDEN_API_KEY": SIM_KEY, "WARDEN_API_SECRET": SIM_SECRET}
        engine = Engine(name, args, self.env(**extra), self.dir, port)
        self.all.append(engine)
        if start:
            engine.start()
        return engine

    def close(self) -> None:
        for proc in self.all:
            if isinstance(proc, SimServer) and proc.alive:
                proc.save_requests(self.dir / f"{proc.name}-requests.txt")
        for proc in self.all:
            proc.kill9()
            if isinstance(proc, SimServer):
                proc.http.close()
        for proc in self.all:
            for path in proc.log_paths:
                print(f"\n===== {path.name} (last lines) =====\n{proc.tail(path)}")


# ----------------------------------------------------------------------------- the sim server


class SimServer(Process):
    """The simulator process; what differs between venues on the wire is answered here
    (which requests place, cancel or price orders, and how the exchange's own records are read)."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], logs: Path, port: int, venue: str = "binance"
    ) -> None:
        super().__init__(name, args, env, logs)
        self.venue = venue
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=10.0)

    @property
    def api_prefix(self) -> str:
        """Every request of the venue's own API (not /sim/) starts with this."""
        return "/v5/" if self.venue == "bybit" else "/fapi/"

    def is_order_request(self, r: dict[str, Any]) -> bool:
        """A request that places or cancels an order (accepted or not)."""
        if self.venue == "bybit":
            return r["method"] == "POST" and r["path"] in ("/v5/order/create", "/v5/order/cancel")
        return r["method"] in ("POST", "DELETE") and r["path"] in ORDER_PATHS

    def is_mark_request(self, r: dict[str, Any], coin: str) -> bool:
        """The engine asking for `coin`'s mark price (what it does first with a signal)."""
        path = "/v5/market/tickers" if self.venue == "bybit" else "/fapi/v1/premiumIndex"
        return r["path"] == path and f"symbol={MARKET_IDS[coin]}" in r["query"]

    def cancel_of(self, r: dict[str, Any]) -> str | None:
        """The client order id a cancel request named (None if `r` is no cancel)."""
        if self.venue == "bybit":
            if (r["method"], r["path"]) != ("POST", "/v5/order/cancel"):
                return None
            return str(json.loads(r["query"]).get("orderLinkId") or "") or None
        if r["method"] != "DELETE" or r["path"] not in ORDER_PATHS:
            return None
        params = dict(parse_qsl(r["query"], keep_blank_values=True))
        return params.get("origClientOrderId") or params.get("clientAlgoId")

    def refused_as_busy(self, r: dict[str, Any]) -> str | None:
        """The client id of an order placement refused as "too many requests" (429 / 10006)."""
        if self.venue == "bybit":
            if (r["method"], r["path"]) == ("POST", "/v5/order/create") and r.get("note", "").startswith(
                "10006"
            ):
                return str(json.loads(r["query"]).get("orderLinkId") or "") or None
            return None
        if r["method"] == "POST" and r["path"] in ORDER_PATHS and r["status"] == 429:
            params = dict(parse_qsl(r["query"], keep_blank_values=True))
            return params.get("newClientOrderId") or params.get("clientAlgoId")
        return None

    def wait_ready(self, within: float = 30.0) -> None:
        def up() -> bool:
            self.check_running()
            return self.http.get("/sim/state").status_code == 200

        poll(up, within=within, what=f"{self.name} to answer")

    def state(self) -> dict[str, Any]:
        response = self.http.get("/sim/state")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def requests(self) -> list[dict[str, Any]]:
        response = self.http.get("/sim/requests")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        assert response.status_code == 200, f"{path} {body}: {response.status_code} {response.text}"
        return response.json()  # type: ignore[no-any-return]

    def set_price(self, coin: str, price: Decimal) -> dict[str, Any]:
        return self.control("/sim/price", {"symbol": MARKET_IDS[coin], "price": str(price)})

    def faults(self, **knobs: Any) -> dict[str, Any]:
        return self.control("/sim/faults", knobs)

    def bybit_signed(self, path: str, **params: Any) -> Any:
        """A signed Bybit v5 GET, as any client would send it; the envelope's `result`."""
        query = urlencode(params)
        stamp, window = str(int(time.time() * 1000)), "10000"
        payload = f"{stamp}{SIM_KEY}{window}{query}"
        headers = {
            "X-BAPI-API-KEY": SIM_KEY,
            "X-BAPI-TIMESTAMP": stamp,
            "X-BAPI-RECV-WINDOW": window,
            "X-BAPI-SIGN": hmac.new(SIM_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest(),
        }
        response = self.http.get(f"{path}?{query}", headers=headers)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        body = response.json()
        assert body["retCode"] == 0, f"{path}: {body}"
        return body["result"]

    def bybit_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every row of a cursor-paged Bybit list."""
        rows: list[dict[str, Any]] = []
        cursor = ""
        while True:
            result = self.bybit_signed(path, **params, **({"cursor": cursor} if cursor else {}))
            rows += result["list"]
            cursor = result["nextPageCursor"]
            if not cursor:
                return rows

    def signed(self, path: str, **params: Any) -> Any:
        """A signed Binance GET, as any client would send it (for allOrders / userTrades)."""
        fields = {**params, "timestamp": int(time.time() * 1000), "recvWindow": 10000}
        query = urlencode(fields)
        signature = hmac.new(SIM_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        response = self.http.get(f"{path}?{query}&signature={signature}", headers={"X-MBX-APIKEY": SIM_KEY})
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()

    def save_requests(self, path: Path) -> None:
        """The exchange-facing request log, one line each (a post-mortem for a failed test)."""
        try:
            lines = [
                f"{r['at']} {r['method']} {r['path']} {r['status']} {r.get('note', '')} {r['query'][:120]}"
                for r in self.requests()
                if not r["path"].startswith("/sim/")
            ]
        except httpx.HTTPError:
            return
        path.write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- the engine


class Engine(Process):
    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path, port: int) -> None:
        super().__init__(name, args, env, logs)
        self.url = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {TOKEN}"}

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def healthz(self) -> int:
        with self.client(2.0) as http:
            return http.get("/healthz").status_code

    def wait_ready(self, within: float = 60.0) -> float:
        """Poll /healthz until 200 (recovery passed, accepting signals); return the seconds it took."""
        started = time.monotonic()

        def ready() -> bool:
            self.check_running()
            return self.healthz() == 200

        poll(ready, within=within, what=f"{self.name} /healthz 200")
        return time.monotonic() - started

    def get(self, path: str) -> Any:
        with self.client() as http:
            response = http.get(f"/api/v1{path}")
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def status(self) -> dict[str, Any]:
        return self.get("/status")  # type: ignore[no-any-return]

    def positions(self, *, include_closed: bool = False) -> list[dict[str, Any]]:
        return self.get("/positions?all=true" if include_closed else "/positions")  # type: ignore[no-any-return]

    def events(self, position_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        path = f"/positions/{position_id}/events" if position_id else "/events"
        return self.get(f"{path}?limit={limit}")  # type: ignore[no-any-return]

    def signal(self, coin: str, side: str, usd: int | Decimal) -> httpx.Response:
        with self.client() as http:
            return http.post("/api/v1/signals", json={"symbol": coin, "side": side, "usd": str(usd)})

    def signal_qty(self, coin: str, side: str, qty: str) -> httpx.Response:
        with self.client() as http:
            return http.post("/api/v1/signals", json={"symbol": coin, "side": side, "qty": qty})

    def position(self, position_id: str) -> dict[str, Any]:
        return self.get(f"/positions/{position_id}")  # type: ignore[no-any-return]

    def close_position(self, position_id: str) -> httpx.Response:
        with self.client() as http:
            return http.post(f"/api/v1/positions/{position_id}/close", json={})

    def reconcile(self) -> dict[str, Any]:
        with self.client(60.0) as http:
            response = http.post("/api/v1/reconcile", json={})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- the invariants


def exit_side(side: str) -> str:
    return "sell" if side == "long" else "buy"


def signed_qty(side: str, qty: Decimal) -> Decimal:
    return qty if side == "long" else -qty


def protection_problems(state: dict[str, Any]) -> list[str]:
    """I1 on the exchange: every non-flat position is covered by resting reduce-only STOP_MARKET
    orders of the opposite side whose open quantity sums to the position size; and no exit
    order of warden's rests in a symbol that is flat."""
    problems = []
    held = {p["symbol"]: p for p in state["positions"]}
    for symbol, pos in held.items():
        stops = [o for o in state["open_orders"] if o["symbol"] == symbol and o["type"] == "stop_market"]
        good = [o for o in stops if o["side"] == exit_side(pos["side"]) and o["reduce_only"]]
        covered = sum((D(o["qty"]) - D(o["filled_qty"]) for o in good), D(0))
        if covered != abs(D(pos["qty"])) or len(good) != len(stops):
            shown = [(o["client_order_id"], o["side"], o["qty"], o["trigger_price"]) for o in stops]
            problems.append(f"I1 {symbol} {pos['side']} {pos['qty']}: stops {shown} cover {covered}")
    for order in state["open_orders"]:
        ours = order["client_order_id"].startswith("wd-") or order.get("user_order_id", 0) > 0  # Drift: a u8
        if order["symbol"] not in held and ours:
            problems.append(
                f"stray {order['client_order_id']} {order['type']} rests in flat {order['symbol']}"
            )
    return problems


def agreement_problems(state: dict[str, Any], positions: list[dict[str, Any]]) -> list[str]:
    """I4: warden's active positions, summed (signed) per symbol, equal the exchange's; every
    active position with a size is protected and says its stop is resting."""
    problems = []
    exchange: dict[str, Decimal] = defaultdict(Decimal)
    for pos in state["positions"]:
        exchange[pos["symbol"]] += signed_qty(pos["side"], abs(D(pos["qty"])))  # /sim/state signs it
    warden: dict[str, Decimal] = defaultdict(Decimal)
    for pos in positions:
        warden[pos["symbol"]] += signed_qty(pos["side"], D(pos["size"]))
        if D(pos["size"]) > 0 and (pos["status"] != "protected" or not pos["stop_resting"]):
            problems.append(
                f"I1 warden {pos['id']} {pos['symbol']} {pos['status']}, stop_resting {pos['stop_resting']}"
            )
        if pos["status"] in ("opening", "closing"):
            problems.append(f"{pos['id']} {pos['symbol']} still {pos['status']}")
    for symbol in sorted(set(exchange) | set(warden)):
        if exchange[symbol] != warden[symbol]:
            problems.append(f"I4 {symbol}: exchange {exchange[symbol]}, warden {warden[symbol]}")
    return problems


def placed_client_id(r: dict[str, Any]) -> str | None:
    """The client order id of an order placement the exchange accepted (None for anything else):
    Binance answers 200 to /fapi/v1/order or /algoOrder; Bybit 200 with retCode 0 (no note) to
    /v5/order/create, the id in the JSON body's orderLinkId."""
    if r["method"] != "POST" or r["status"] != 200:
        return None
    if r["path"] == "/v5/order/create":
        if r.get("note"):
            return None  # a retCode refusal, logged with HTTP 200
        return str(json.loads(r["query"]).get("orderLinkId") or "") or None
    if r["path"] not in ORDER_PATHS:
        return None
    params = dict(parse_qsl(r["query"], keep_blank_values=True))
    return params.get("newClientOrderId") or params.get("clientAlgoId") or None


def accepted_order_ids(requests: Iterable[dict[str, Any]]) -> Counter[str]:
    """How often each client order id was accepted by an order-placing endpoint."""
    seen: Counter[str] = Counter()
    for r in requests:
        cid = placed_client_id(r)
        if cid:
            seen[cid] += 1
    return seen


def short(cid: str) -> str:
    """`<position>-<role><seq>` of a warden client id (the installation part dropped); "" if not warden's."""
    parsed = parse_client_id(cid)
    return "" if parsed is None else f"{parsed.position_id}-{parsed.role.code}{parsed.seq}"


def placements(requests: Iterable[dict[str, Any]], prefix: str = "") -> dict[str, int]:
    """When (the simulator's ms clock) each warden order was accepted, keyed by its client id, for
    those whose id starts with `prefix` (see `client_prefix`)."""
    placed: dict[str, int] = {}
    for r in requests:
        cid = placed_client_id(r) or ""
        if cid.startswith(prefix):
            placed.setdefault(cid, r["at"])
    return placed


def client_prefix(requests: Iterable[dict[str, Any]], position_id: str) -> str:
    """`wd-<installation>-<position>-`: the start of every client order id of a position, read
    from an order of it the exchange accepted (the installation id is the engine's own)."""
    for cid in placements(requests):
        parsed = parse_client_id(cid)
        if parsed is not None and parsed.position_id == position_id:
            return cid[: cid.rindex("-") + 1]
    raise AssertionError(f"no order of position {position_id} reached the exchange")


def naked_seconds(requests: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Per position id: seconds from its entry being accepted to its first stop being accepted,
    as the exchange saw it (kills and restarts included)."""
    entries: dict[str, int] = {}
    stops: dict[str, int] = {}
    for cid, at in placements(requests).items():
        parsed = parse_client_id(cid)
        if parsed is None:
            continue
        if parsed.role is OrderRole.ENTRY:
            entries.setdefault(parsed.position_id, at)
        elif parsed.role is OrderRole.STOP:
            stops.setdefault(parsed.position_id, at)
    return {pid: (stops[pid] - at) / 1000 for pid, at in entries.items() if pid in stops}


@dataclass
class Executions:
    """Who traded what, from the exchange's own records (allOrders, allAlgoOrders, userTrades)."""

    qty_by_order: dict[str, Decimal] = field(default_factory=dict)  # client id -> ordered qty
    filled: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))  # client id -> traded
    orders_per_id: Counter[str] = field(default_factory=Counter)  # client id -> distinct exchange orders


def executions(sim: SimServer) -> Executions:
    return bybit_executions(sim) if sim.venue == "bybit" else binance_executions(sim)


def binance_executions(sim: SimServer) -> Executions:
    out = Executions()
    owner: dict[int, str] = {}
    for coin, market in MARKET_IDS.items():
        del coin
        for order in sim.signed("/fapi/v1/allOrders", symbol=market, limit=1000):
            cid = order["clientOrderId"]
            if cid.startswith("wd-"):
                owner[order["orderId"]] = cid
                out.orders_per_id[cid] += 1
                out.qty_by_order[cid] = D(order["origQty"])
        for algo in sim.signed("/fapi/v1/allAlgoOrders", symbol=market, limit=1000):
            cid = algo["clientAlgoId"]
            if cid.startswith("wd-"):
                out.orders_per_id[cid] += 1
                out.qty_by_order[cid] = D(algo["quantity"])
                if algo["actualOrderId"]:
                    owner[int(algo["actualOrderId"])] = cid
        for trade in sim.signed("/fapi/v1/userTrades", symbol=market, limit=1000):
            cid = owner.get(trade["orderId"])
            if cid is not None:
                out.filled[cid] += D(trade["qty"])
    return out


def bybit_executions(sim: SimServer) -> Executions:
    """Bybit's records: open orders (realtime), closed ones (history), executions; a conditional
    order's executions carry its own orderLinkId and orderId."""
    out = Executions()
    linear = {"category": "linear", "limit": 50}
    for coin, market in MARKET_IDS.items():
        del coin
        orders = sim.bybit_pages("/v5/order/realtime", symbol=market, **linear)
        orders += sim.bybit_pages("/v5/order/history", symbol=market, **linear)
        ids_per_link: dict[str, set[str]] = defaultdict(set)
        for order in orders:
            cid = order["orderLinkId"]
            if cid.startswith("wd-"):
                ids_per_link[cid].add(order["orderId"])
                out.qty_by_order[cid] = D(order["qty"])
        for cid, ids in ids_per_link.items():
            out.orders_per_id[cid] += len(ids)
        for trade in sim.bybit_pages("/v5/execution/list", symbol=market, category="linear", limit=100):
            if trade["orderLinkId"].startswith("wd-"):
                out.filled[trade["orderLinkId"]] += D(trade["execQty"])
    return out


def double_execution_problems(sim: SimServer) -> list[str]:
    """No order executed twice: each warden client order id was accepted once, is one exchange
    order, traded no more than its quantity; and no position had two entries executed."""
    problems = []
    requests = sim.requests()
    for cid, n in accepted_order_ids(requests).items():
        if cid.startswith("wd-") and n > 1:
            problems.append(f"{cid} accepted {n} times")
    done = executions(sim)
    entries: Counter[str] = Counter()
    for cid, n in done.orders_per_id.items():
        if n > 1:
            problems.append(f"{cid} is {n} exchange orders")
    for cid, qty in done.filled.items():
        if qty > done.qty_by_order.get(cid, D(0)):
            problems.append(f"{cid} traded {qty}, more than its {done.qty_by_order.get(cid)}")
        parsed = parse_client_id(cid)
        if parsed is not None and parsed.role is OrderRole.ENTRY and qty > 0:
            entries[parsed.position_id] += 1
    for pid, n in entries.items():
        if n > 1:
            problems.append(f"position {pid} had {n} entry orders executed")
    return problems


def check_all(sim: SimServer, engine: Engine) -> list[str]:
    """What the exchange shows unprotected, and where it and the engine disagree."""
    state = sim.state()
    return protection_problems(state) + agreement_problems(state, engine.positions())
