"""PATCH /positions/{id}: tighten a stop through place-then-cancel; per-signal trail_pct."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from warden.bootstrap import Runtime
from warden.domain.values import OrderType, Symbol

from .conftest import AUTH
from .test_api import SIGNAL, open_sol

SOL = Symbol("SOL/USDT:USDT")


def stops(runtime: Runtime) -> list[tuple[Decimal, Decimal | None]]:
    assert runtime.sim is not None
    return [
        (o.qty, o.trigger_price) for o in runtime.sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET
    ]


async def test_patch_tightens_the_stop_on_the_exchange(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """A tighter stop rests for the full size and replaces the old one; stop_moved is recorded."""
    p = await open_sol(client)  # long 0.66 @ 150, stop 147.75
    response = await client.patch(f"/api/v1/positions/{p['id']}", json={"stop_price": "148.5"}, headers=AUTH)
    assert response.status_code == 200, response.text
    moved = response.json()
    assert (moved["stop_price"], moved["stop_resting"]) == ("148.50", True)
    assert stops(runtime) == [(Decimal(p["size"]), Decimal("148.50"))]
    events = (await client.get(f"/api/v1/positions/{p['id']}/events", headers=AUTH)).json()
    assert any(e["kind"] == "stop_moved" and e["data"].get("to") == "148.50" for e in events)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stop_price": "147"}, "stop_price"),  # looser
        ({"stop_price": "147.75"}, "stop_price"),  # the same
        ({"stop_price": "151"}, "stop_price"),  # above the mark: it would trigger at once
        ({"stop_price": "NaN"}, "stop_price"),
        ({"stop_price": "\u0661\u0664\u0668.5"}, "stop_price"),  # 148.5 in Arabic-Indic digits
        ({"tp3_price": "160"}, "tp3_price"),
        ({}, "stop_price"),
    ],
)
async def test_patch_refusals(client: httpx.AsyncClient, runtime: Runtime, body: object, field: str) -> None:
    """A stop never loosens, never goes through the mark; unknown fields are refused; nothing changes."""
    p = await open_sol(client)
    before = stops(runtime)
    response = await client.patch(f"/api/v1/positions/{p['id']}", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert stops(runtime) == before


async def test_patch_unknown_or_closed_position(client: httpx.AsyncClient) -> None:
    missing = await client.patch("/api/v1/positions/nope", json={"stop_price": "1"}, headers=AUTH)
    assert (missing.status_code, missing.json()["field"]) == (404, "position_id")
    p = await open_sol(client)
    await client.post(f"/api/v1/positions/{p['id']}/close", headers=AUTH)
    closed = await client.patch(f"/api/v1/positions/{p['id']}", json={"stop_price": "149"}, headers=AUTH)
    assert (closed.status_code, closed.json()["field"]) == (422, "position_id")


async def test_patch_needs_the_full_token(client: httpx.AsyncClient) -> None:
    p = await open_sol(client)
    response = await client.patch(f"/api/v1/positions/{p['id']}", json={"stop_price": "148.5"})
    assert response.status_code == 401


async def test_signal_carries_its_own_trail_pct(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """trail_pct on a signal is that position's trailing distance (kept with it in the database)."""
    p = await open_sol(client, trail_pct="0.01")
    assert p["trail_pct"] == "0.01"
    stored = await runtime.store.get_position(p["id"])
    assert stored is not None and stored.plan.trail_pct == Decimal("0.01")
    bad = await client.post(
        "/api/v1/signals", json={**SIGNAL, "symbol": "ETH", "trail_pct": "1.5"}, headers=AUTH
    )
    assert (bad.status_code, bad.json()["field"]) == (422, "trail_pct")


def take_profits(runtime: Runtime) -> list[tuple[Decimal, Decimal | None]]:
    assert runtime.sim is not None
    return sorted(
        (o.qty, o.trigger_price)
        for o in runtime.sim.core.open_orders(SOL)
        if o.type is OrderType.TAKE_PROFIT_MARKET
    )


async def test_patch_moves_a_take_profit_on_the_exchange(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """TP1 moves to its new price: the resting order is replaced with the same quantity."""
    p = await open_sol(client)  # long 0.66 @ 150: TP1 0.39 @ 151.50, TP2 0.13 @ 153.00
    before = take_profits(runtime)
    response = await client.patch(f"/api/v1/positions/{p['id']}", json={"tp1_price": "152"}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["tp1_price"] == "152.00"
    tp1_qty = Decimal(p["tp1_qty"])
    assert (tp1_qty, Decimal("152.00")) in take_profits(runtime)
    assert len(take_profits(runtime)) == len(before)
    stored = await runtime.store.get_position(p["id"])
    assert stored is not None and stored.tp1_price == Decimal("152.00")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tp1_price": "149"}, "tp1_price"),  # below the mark for a long: it would fill at once
        ({"tp1_price": "154"}, "tp1_price"),  # beyond TP2
        ({"tp2_price": "151"}, "tp2_price"),  # before TP1
    ],
)
async def test_patch_take_profit_refusals(
    client: httpx.AsyncClient, runtime: Runtime, body: object, field: str
) -> None:
    """A take-profit stays on the profit side of the mark and in order; nothing changes otherwise."""
    p = await open_sol(client)
    before = take_profits(runtime)
    response = await client.patch(f"/api/v1/positions/{p['id']}", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert take_profits(runtime) == before


async def test_a_signal_carries_its_own_take_profits(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """tp1_price / tp2_price on a signal are that position's levels, resting on the exchange."""
    p = await open_sol(client, tp1_price="151", tp2_price="155")
    assert (p["tp1_price"], p["tp2_price"]) == ("151.00", "155.00")
    assert sorted(price for _, price in take_profits(runtime)) == [Decimal("151.00"), Decimal("155.00")]
    bad = await client.post(
        "/api/v1/signals", json={**SIGNAL, "symbol": "ETH", "tp1_price": "1"}, headers=AUTH
    )
    assert (bad.status_code, bad.json()["field"]) == (422, "tp1_price")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stop_price": "148.5", "tp1_price": "149"}, "tp1_price"),  # TP1 below the mark
        ({"stop_price": "148.5", "tp2_price": "151"}, "tp2_price"),  # TP2 before TP1
        ({"tp1_price": "151", "tp2_price": "150.5"}, "tp2_price"),  # TP2 before the new TP1
        ({"tp1_price": "152", "tp2_price": "149"}, "tp2_price"),  # TP2 below the mark
    ],
    ids=["stop-then-bad-tp1", "stop-then-bad-tp2", "tp1-then-bad-tp2", "tp1-then-tp2-through-the-mark"],
)
async def test_a_patch_with_one_bad_field_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, body: dict[str, str], field: str
) -> None:
    """A PATCH is checked whole before anything moves: the stop (or TP1) was moved on the exchange
    and recorded, and only then was the next field refused — a 422 ("bad input, nothing was sent")
    over a position whose stop had changed. Now the 422 names the bad field and the stop, the
    take-profits and the record are as they were."""
    p = await open_sol(client)  # long 0.66 @ 150: stop 147.75, TP1 151.50, TP2 153.00
    before = (stops(runtime), take_profits(runtime))
    response = await client.patch(f"/api/v1/positions/{p['id']}", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert (stops(runtime), take_profits(runtime)) == before
    now = (await client.get(f"/api/v1/positions/{p['id']}", headers=AUTH)).json()
    assert (now["stop_price"], now["tp1_price"], now["tp2_price"]) == (
        p["stop_price"],
        p["tp1_price"],
        p["tp2_price"],
    )


async def test_both_take_profits_move_past_the_old_tp2_together(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """{"tp1_price": "154", "tp2_price": "156"} on TP1 151.50 / TP2 153: the new levels are in order,
    but TP1 was checked against the TP2 still in place (153) and refused "TP2 must stay beyond
    TP1". The pair is checked as it will stand, and both move."""
    p = await open_sol(client)
    response = await client.patch(
        f"/api/v1/positions/{p['id']}", json={"tp1_price": "154", "tp2_price": "156"}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert (response.json()["tp1_price"], response.json()["tp2_price"]) == ("154.00", "156.00")
    assert take_profits(runtime) == sorted(
        [(Decimal(p["tp1_qty"]), Decimal("154.00")), (Decimal(p["tp2_qty"]), Decimal("156.00"))]
    )


async def test_two_stop_moves_at_once_are_both_made(slow: tuple[Runtime, httpx.AsyncClient]) -> None:
    """Two PATCHes tightening the stop at once (a script trailing by hand, a double click): a move
    that arrived while the first was on its way to the exchange was folded into it without its
    price, and answered 502 "exchange error: the stop at 149.00 did not rest; the stop stays at
    147.75" — the exchange had refused nothing, and the stop was at 148.50. The second waits for
    the first and is then made: both 200, the stop at 149 for the full size."""
    runtime, client = slow
    opened = await client.post("/api/v1/signals", params={"wait": "true"}, json=SIGNAL, headers=AUTH)
    p = opened.json()
    first, second = await asyncio.gather(
        client.patch(f"/api/v1/positions/{p['id']}", json={"stop_price": "148.5"}, headers=AUTH),
        client.patch(f"/api/v1/positions/{p['id']}", json={"stop_price": "149"}, headers=AUTH),
    )
    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    assert second.json()["stop_price"] == "149.00"
    assert stops(runtime) == [(Decimal(p["size"]), Decimal("149.00"))]


async def test_a_stop_move_overtaken_by_a_tighter_one_is_a_422(
    slow: tuple[Runtime, httpx.AsyncClient],
) -> None:
    """Two PATCHes at once, the second looser than the first: once the first has moved the stop to
    149, 148.5 would loosen it — a 422 saying so (it was a 502 blaming the exchange)."""
    runtime, client = slow
    opened = await client.post("/api/v1/signals", params={"wait": "true"}, json=SIGNAL, headers=AUTH)
    p = opened.json()
    first, second = await asyncio.gather(
        client.patch(f"/api/v1/positions/{p['id']}", json={"stop_price": "149"}, headers=AUTH),
        client.patch(f"/api/v1/positions/{p['id']}", json={"stop_price": "148.5"}, headers=AUTH),
    )
    assert first.status_code == 200, first.text
    assert (second.status_code, second.json()["field"]) == (422, "stop_price"), second.text
    assert stops(runtime) == [(Decimal(p["size"]), Decimal("149.00"))]
