"""The simulator's clock can be off from the host's (`clock_offset`, `warden sim serve --clock-offset`,
the `clock_offset` knob of POST /sim/faults): its time endpoint answers on that clock and its
signed-request window (-1021 on Binance, retCode 10002 on Bybit) is judged on it, as a real exchange
judges a drifted host. The host's clock is a fixed fake here, so every offset is exact."""

from __future__ import annotations

from datetime import UTC, datetime

from warden.adapters.sim.server import VENUE
from warden.adapters.sim.server.bybit.auth import FUTURE_TOLERANCE_MS

from .bybit_client import bybit_server
from .server_client import raw_server

HOST = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOST_MS = int(HOST.timestamp() * 1000)


def host() -> datetime:
    return HOST


async def test_binance_time_and_recv_window_follow_the_offset_clock() -> None:
    async with raw_server(now=host, clock_offset=-2.0) as raw:  # the host runs 2 s ahead
        status, body = await raw.call("GET", "/fapi/v1/time", signed=False)
        assert (status, body) == (200, {"serverTime": HOST_MS - 2000})
        status, body = await raw.call("GET", "/fapi/v3/account", timestamp=HOST_MS)
        assert (status, body["code"]) == (400, -1021)  # 2 s in the server's future
        status, _ = await raw.call("GET", "/fapi/v3/account", timestamp=HOST_MS - 2000)
        assert status == 200

        # changed while it runs: now the host is 12 s behind (recvWindow is 10 s)
        status, shown = await raw.control("POST", "/sim/faults", {"clock_offset": 12})
        assert (status, shown["clock_offset"]) == (200, 12.0)
        status, body = await raw.call("GET", "/fapi/v1/time", signed=False)
        assert body == {"serverTime": HOST_MS + 12_000}
        status, body = await raw.call("GET", "/fapi/v3/account", timestamp=HOST_MS)
        assert (status, body["code"]) == (400, -1021)  # older than recvWindow
        status, _ = await raw.call("GET", "/fapi/v3/account", timestamp=HOST_MS + 12_000)
        assert status == 200
        status, shown = await raw.control("GET", "/sim/faults")
        assert shown["clock_offset"] == 12.0


async def test_the_clock_knob_takes_a_finite_number_only() -> None:
    async with raw_server(now=host) as raw:
        for bad in ("2", True, None, [1]):
            status, body = await raw.control("POST", "/sim/faults", {"clock_offset": bad})
            assert (status, body["code"]) == (400, -1102), bad
        status, shown = await raw.control("GET", "/sim/faults")
        assert shown["clock_offset"] == 0.0
        assert raw.app[VENUE].now() == HOST


async def test_bybit_time_and_recv_window_follow_the_offset_clock() -> None:
    async with bybit_server(now=host, clock_offset=-2.0) as bybit:
        answer = await bybit.get("/v5/market/time", signed=False)
        assert answer["time"] == HOST_MS - 2000
        assert answer["result"]["timeSecond"] == str((HOST_MS - 2000) // 1000)
        path, params = "/v5/position/list", {"category": "linear", "settleCoin": "USDT"}
        refused = await bybit.get(path, params, timestamp=HOST_MS)
        assert refused["retCode"] == 10002  # 2 s ahead: Bybit allows less than 1 s
        assert "server timestamp or recv_window" in refused["retMsg"]
        edge = await bybit.get(path, params, timestamp=HOST_MS - 2000 + FUTURE_TOLERANCE_MS)
        assert edge["retCode"] == 10002  # the bound is exclusive: timestamp < server + 1000
        assert (await bybit.get(path, params, timestamp=HOST_MS - 2000))["retCode"] == 0

        status, _ = await bybit.control("POST", "/sim/faults", {"clock_offset": 7})  # host 7 s behind
        assert status == 200
        assert (await bybit.get(path, params, timestamp=HOST_MS))["retCode"] == 10002  # recv_window 5 s
        assert (await bybit.get(path, params, timestamp=HOST_MS + 7000 - 5000))["retCode"] == 0
        assert (await bybit.get(path, params, timestamp=HOST_MS + 7000 - 5001))["retCode"] == 10002
