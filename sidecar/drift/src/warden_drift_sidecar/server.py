"""The sidecar process: protocol v1 over HTTP + one websocket, answered with driftpy on Solana.

Environment (set by warden, never logged): DRIFT_KEYPAIR_PATH (a Solana CLI keypair file),
DRIFT_RPC_URL, DRIFT_SUB_ACCOUNT, and optionally DRIFT_ENV (mainnet, default, or devnet).

Transactions are built here, not by `DriftClient.send_ixs`, so that the signature and the last
valid block height are known (and returned to warden, which stores them) BEFORE anything is
sent: `POST /v1/tx/place` and `/v1/tx/cancel` sign, `POST /v1/tx/{sig}/send` sends the same
bytes (any number of times: a signature lands at most once) and waits a little for
confirmation, `GET /v1/tx/{sig}` settles an unknown outcome: confirmed or failed (the
signature's status), expired (not found and the chain is past its last valid block height), or
pending. Orders, fills and cancels are read from the program's own events in the user's
transactions (driftpy's EventSubscriber); the user account and the oracles from driftpy's
subscriptions.

This module talks to a real chain and cannot run here; `encode.py` (every instruction it sends)
is what the tests prove against driftpy's IDL coder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from warden_drift_sidecar import encode
from warden_drift_sidecar import protocol as p

log = logging.getLogger("warden_drift_sidecar")

CONFIRM_WAIT = 4.0
HISTORY = 5000


class Chain:
    """driftpy, subscribed: the user account, the perp markets and their oracles, and events."""

    def __init__(self) -> None:
        from driftpy.drift_client import DriftClient
        from driftpy.events.event_subscriber import EventSubscriber
        from driftpy.events.types import EventSubscriptionOptions
        from driftpy.keypair import load_keypair
        from solana.rpc.async_api import AsyncClient

        keypair = load_keypair(os.environ["DRIFT_KEYPAIR_PATH"])
        self.sub_account = int(os.environ.get("DRIFT_SUB_ACCOUNT", "0"))
        self.connection = AsyncClient(os.environ["DRIFT_RPC_URL"])
        self.keypair = keypair
        self.client = DriftClient(
            self.connection,
            keypair,
            env=os.environ.get("DRIFT_ENV", "mainnet"),  # type: ignore[arg-type]
            active_sub_account_id=self.sub_account,
            sub_account_ids=[self.sub_account],
        )
        self.events = EventSubscriber(
            self.connection,
            self.client.program,
            EventSubscriptionOptions(
                address=self.client.get_user_account_public_key(self.sub_account),
                event_types=("OrderRecord", "OrderActionRecord"),
                max_tx=HISTORY,
                max_events_per_type=HISTORY,
                commitment="confirmed",
            ),
        )
        self.prepared: dict[str, tuple[bytes, int]] = {}
        self.sent: set[str] = set()  # signatures whose bytes may have left (a send was attempted)
        self.orders: dict[int, p.Json] = {}  # order id -> last known order (from events)
        self.fills: list[p.Json] = []
        self.sockets: set[web.WebSocketResponse] = set()

    async def start(self) -> None:
        await self.client.subscribe()
        await self.client.add_user(self.sub_account)
        await self.events.subscribe()
        self.events.event_emitter.new_event += self._on_event

    @property
    def user_key(self) -> Any:
        return self.client.get_user_account_public_key(self.sub_account)

    def accounts(self) -> dict[str, Any]:
        return {
            "state": self.client.get_state_public_key(),
            "user": self.user_key,
            "userStats": self.client.get_user_stats_public_key(),
            "authority": self.keypair.pubkey(),
        }

    # ----- events -> the history and the websocket -------------------------------------------

    def _on_event(self, event: Any) -> None:
        data = event.data
        if event.event_type == "OrderRecord" and data.user == self.user_key:
            self.orders[int(data.order.order_id)] = encode.order_json(data.order)
            self._broadcast(p.body(type="order", order=self.orders[int(data.order.order_id)]))
            return
        if event.event_type != "OrderActionRecord":
            return
        action = encode._variant(data.action)
        ours_taker = data.taker == self.user_key
        ours_maker = data.maker == self.user_key
        if not (ours_taker or ours_maker):
            return
        order_id = int(data.taker_order_id if ours_taker else data.maker_order_id)
        known = self.orders.get(order_id)
        if action == "fill":
            fill = {
                "fill_id": f"{data.market_index}-{data.fill_record_id}",
                "order_id": order_id,
                "user_order_id": known["user_order_id"] if known else 0,
                "market_index": int(data.market_index),
                "direction": encode._variant(
                    data.taker_order_direction if ours_taker else data.maker_order_direction
                ),
                "base_asset_amount": str(data.base_asset_amount_filled),
                "quote_asset_amount": str(data.quote_asset_amount_filled),
                "fee": str(data.taker_fee if ours_taker else -(data.maker_fee or 0)),
                "ts": int(data.ts) * 1000,
                "signature": str(event.tx_sig),
                "liquidation": "liquidation" in encode._variant(data.action_explanation),
            }
            self.fills = [*self.fills[-HISTORY:], fill]
            if known is not None:
                filled = int(
                    data.taker_order_cumulative_base_asset_amount_filled
                    if ours_taker
                    else data.maker_order_cumulative_base_asset_amount_filled
                )
                quote = int(
                    data.taker_order_cumulative_quote_asset_amount_filled
                    if ours_taker
                    else data.maker_order_cumulative_quote_asset_amount_filled
                )
                known.update(base_asset_amount_filled=str(filled), quote_asset_amount_filled=str(quote))
                if filled >= int(known["base_asset_amount"]):
                    known["status"] = p.FILLED
            self._broadcast(p.body(type="fill", fill=fill))
        elif action in ("cancel", "expire") and known is not None:
            known["status"] = p.CANCELED
        elif action == "trigger" and known is not None:
            known["trigger_condition"] = "triggered_" + known["trigger_condition"].removeprefix("triggered_")
        if known is not None:
            self._broadcast(p.body(type="order", order=known))

    def _broadcast(self, message: p.Json) -> None:
        for ws in list(self.sockets):
            if not ws.closed:
                asyncio.get_running_loop().create_task(ws.send_json(message))

    # ----- transactions ------------------------------------------------------------------------

    async def sign(self, ixs: list[Any]) -> p.Json:
        from solders.message import MessageV0
        from solders.transaction import VersionedTransaction

        latest = (await self.connection.get_latest_blockhash("confirmed")).value
        lookup = await self.client.fetch_market_lookup_table_accounts()
        message = MessageV0.try_compile(self.keypair.pubkey(), ixs, lookup, latest.blockhash)
        tx = VersionedTransaction(message, [self.keypair])
        signature = str(tx.signatures[0])
        self.prepared[signature] = (bytes(tx), int(latest.last_valid_block_height))
        return p.body(signature=signature, last_valid_block_height=int(latest.last_valid_block_height))

    async def send(self, signature: str) -> p.Json:
        from solana.rpc.core import RPCException
        from solana.rpc.types import TxOpts

        prepared = self.prepared.get(signature)
        if prepared is None:
            raise p.ProtocolError(p.NOT_FOUND, "this sidecar did not sign that transaction (restarted?)")
        raw, height = prepared
        pending = {"signature": signature, "status": p.PENDING}
        sent_before = signature in self.sent
        self.sent.add(signature)
        try:
            await self.connection.send_raw_transaction(
                raw, TxOpts(skip_preflight=False, preflight_commitment="confirmed")
            )
        except RPCException as exc:  # preflight refused it: THIS send was not forwarded
            if sent_before:  # an earlier send of these bytes may have landed ("already processed")
                log.warning("resend of %s refused by preflight: %s", signature[:16], str(exc)[:200])
                return pending  # or may still land: warden settles it by the signature
            return {"signature": signature, "status": p.FAILED, "error": str(exc)[:500]}
        except Exception as exc:
            if _never_connected(exc):  # the only failure that proves the bytes never left
                raise p.ProtocolError(p.UNAVAILABLE, f"RPC unreachable: {exc}") from exc
            log.warning("send of %s failed after it may have reached the RPC: %r", signature[:16], exc)
            return pending  # unknown: warden settles it by the signature, never as "not sent"
        deadline = time.monotonic() + CONFIRM_WAIT
        while time.monotonic() < deadline:
            try:
                status = await self.status(signature, height)
            except Exception as exc:  # sent: whatever fails now, the outcome is unknown
                log.warning("confirming %s failed: %r", signature[:16], exc)
                return pending
            if status["status"] != p.PENDING:
                return status
            await asyncio.sleep(0.4)  # one slot
        return pending

    async def status(self, signature: str, last_valid_block_height: int | None) -> p.Json:
        from solders.signature import Signature

        sig = Signature.from_string(signature)
        found = (await self.connection.get_signature_statuses([sig], search_transaction_history=True)).value[
            0
        ]
        if (
            found is None
            or found.confirmation_status is None
            or str(found.confirmation_status).endswith("Processed")
        ):
            height = (await self.connection.get_block_height("confirmed")).value
            if last_valid_block_height is None and signature in self.prepared:
                last_valid_block_height = self.prepared[signature][1]
            if last_valid_block_height is not None and height > last_valid_block_height:
                return {"signature": signature, "status": p.EXPIRED}
            return {"signature": signature, "status": p.PENDING}
        if found.err is not None:
            return {"signature": signature, "status": p.FAILED, "error": str(found.err), "slot": found.slot}
        return {
            "signature": signature,
            "status": p.CONFIRMED,
            "slot": found.slot,
            "orders": await self._placed(sig),
        }

    async def _placed(self, sig: Any) -> list[p.Json]:
        """The orders a confirmed transaction placed, from its OrderRecord events."""
        from driftpy.events.parse import parse_logs

        tx = await self.connection.get_transaction(sig, "json", max_supported_transaction_version=0)
        logs = tx.value.transaction.meta.log_messages if tx.value and tx.value.transaction.meta else []
        placed = []
        for event in parse_logs(self.client.program, logs or []):
            if event.name == "OrderRecord" and event.data.user == self.user_key:
                order = encode.order_json(event.data.order)
                self.orders[order["order_id"]] = order
                placed.append(order)
        return placed

    # ----- reads -------------------------------------------------------------------------------

    def user(self) -> p.Json:
        account = self.client.get_user(self.sub_account).get_user_account()
        positions = []
        for position in account.perp_positions:
            base = int(position.base_asset_amount)
            if base == 0:
                continue
            entry = abs(int(position.quote_entry_amount)) * p.BASE_PRECISION // abs(base)
            positions.append(
                {
                    "market_index": int(position.market_index),
                    "base_asset_amount": str(base),
                    "entry_price": str(entry),
                }
            )
        orders = [encode.order_json(o) for o in account.orders if encode._variant(o.status) == "open"]
        for order in orders:
            self.orders[order["order_id"]] = order
        return {
            "authority": str(self.keypair.pubkey()),
            "sub_account": self.sub_account,
            "positions": positions,
            "orders": orders,
        }

    def markets(self) -> list[p.Json]:
        rows = []
        for market in self.client.get_perp_market_accounts():
            amm = market.amm
            rows.append(
                {
                    "market_index": int(market.market_index),
                    "symbol": bytes(market.name).decode("utf-8", "replace").strip("\x00 ").strip(),
                    "base_precision": str(p.BASE_PRECISION),
                    "price_precision": str(p.PRICE_PRECISION),
                    "order_step_size": str(amm.order_step_size),
                    "order_tick_size": str(amm.order_tick_size),
                    "min_order_size": str(amm.min_order_size),
                    "status": encode._variant(market.status),
                }
            )
        return rows

    def prices(self) -> list[p.Json]:
        rows = []
        for market in self.client.get_perp_market_accounts():
            oracle = self.client.get_oracle_price_data_for_perp_market(market.market_index)
            mark = oracle.price
            with contextlib.suppress(Exception):
                from driftpy.math.amm import calculate_bid_ask_price

                bid, ask = calculate_bid_ask_price(market.amm, oracle)
                mark = (bid + ask) // 2
            rows.append(
                {
                    "market_index": int(market.market_index),
                    "oracle_price": str(oracle.price),
                    "mark_price": str(mark),
                }
            )
        return rows


def _never_connected(exc: BaseException) -> bool:
    """Whether a send failed before any byte could reach the RPC (solana-py wraps httpx's errors
    in SolanaRpcException; the cause is what happened)."""
    import httpx

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError | httpx.ConnectError | httpx.ConnectTimeout):
            return True
        seen = seen.__cause__
    return False


def create_app(chain: Chain) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        route = request.match_info.route.name or ""
        if request.headers.get(p.VERSION_HEADER, str(p.VERSION)) != str(p.VERSION):
            return web.json_response(p.ProtocolError(p.VERSION_MISMATCH, "speaks v1").body(), status=409)
        try:
            return await ROUTES[route](request)
        except p.ProtocolError as exc:
            return web.json_response(exc.body(), status=p.HTTP_STATUS[exc.code])
        except (TimeoutError, OSError) as exc:
            return web.json_response(p.ProtocolError(p.UNAVAILABLE, str(exc)).body(), status=503)

    async def info(request: web.Request) -> web.Response:
        return web.json_response(
            p.body(
                protocol="warden-drift-sidecar",
                authority=str(chain.keypair.pubkey()),
                sub_account=chain.sub_account,
            )
        )

    async def place(request: web.Request) -> web.Response:
        data = await request.json()
        ix = encode.place_orders_ix(
            chain.client.program,
            data.get("orders") or [],
            chain.accounts(),
            _remaining(chain, data.get("orders") or []),
        )
        return web.json_response(await chain.sign([ix]))

    async def cancel(request: web.Request) -> web.Response:
        data = await request.json()
        remaining = chain.client.get_remaining_accounts(
            user_accounts=[chain.client.get_user_account(chain.sub_account)]
        )
        accounts = {k: v for k, v in chain.accounts().items() if k != "userStats"}
        ixs = [
            encode.cancel_order_ix(chain.client.program, i, accounts, remaining)
            for i in data.get("order_ids") or []
        ]
        return web.json_response(await chain.sign(ixs))

    async def send(request: web.Request) -> web.Response:
        return web.json_response(p.body(**await chain.send(request.match_info["signature"])))

    async def tx(request: web.Request) -> web.Response:
        raw = request.query.get("last_valid_block_height")
        return web.json_response(
            p.body(**await chain.status(request.match_info["signature"], int(raw) if raw else None))
        )

    async def order(request: web.Request) -> web.Response:
        chain.user()
        found = chain.orders.get(int(request.match_info["order_id"]))
        if found is None:
            raise p.ProtocolError(p.NOT_FOUND, "order not in the user account nor in the events seen")
        return web.json_response(p.body(order=found))

    async def fills(request: web.Request) -> web.Response:
        index = int(request.query["market_index"])
        since = int(request.query.get("since", "0"))
        return web.json_response(
            p.body(fills=[f for f in chain.fills if f["market_index"] == index and f["ts"] >= since])
        )

    async def events(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)
        await ws.send_json(p.body(type="hello"))
        chain.sockets.add(ws)
        try:
            async for message in ws:
                if message.type is WSMsgType.ERROR:
                    break
        finally:
            chain.sockets.discard(ws)
        return ws

    async def markets(request: web.Request) -> web.Response:
        return web.json_response(p.body(markets=chain.markets()))

    async def prices(request: web.Request) -> web.Response:
        return web.json_response(p.body(prices=chain.prices()))

    async def user(request: web.Request) -> web.Response:
        return web.json_response(p.body(**chain.user()))

    ROUTES = {
        "info": info,
        "markets": markets,
        "prices": prices,
        "user": user,
        "order": order,
        "fills": fills,
        "place": place,
        "cancel": cancel,
        "send": send,
        "tx": tx,
        "events": events,
    }
    app = web.Application()
    for method, path, name in [
        ("GET", "/v1/info", "info"),
        ("GET", "/v1/markets", "markets"),
        ("GET", "/v1/prices", "prices"),
        ("GET", "/v1/user", "user"),
        ("GET", "/v1/orders/{order_id}", "order"),
        ("GET", "/v1/fills", "fills"),
        ("POST", "/v1/tx/place", "place"),
        ("POST", "/v1/tx/cancel", "cancel"),
        ("POST", "/v1/tx/{signature}/send", "send"),
        ("GET", "/v1/tx/{signature}", "tx"),
        ("GET", "/v1/events", "events"),
    ]:
        app.router.add_route(method, path, handle, name=name)
    return app


def _remaining(chain: Chain, orders: list[p.Json]) -> Any:
    indexes = [int(o.get("market_index", 0)) for o in orders if isinstance(o, dict)]
    return chain.client.get_remaining_accounts(
        readable_perp_market_indexes=indexes, user_accounts=[chain.client.get_user_account(chain.sub_account)]
    )


async def _prices_loop(chain: Chain) -> None:
    while True:
        await asyncio.sleep(1.0)
        with contextlib.suppress(Exception):
            for row in chain.prices():
                chain._broadcast(p.body(type="price", **row))


async def main(host: str, port: int) -> None:
    chain = Chain()
    await chain.start()
    runner = web.AppRunner(create_app(chain), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info(
        "drift sidecar v%s on http://%s:%s (authority %s)", p.VERSION, host, port, chain.keypair.pubkey()
    )
    await _prices_loop(chain)


def run() -> None:
    parser = argparse.ArgumentParser(prog="warden_drift_sidecar")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s drift-sidecar %(levelname)s %(message)s")
    for name in ("DRIFT_KEYPAIR_PATH", "DRIFT_RPC_URL"):
        if not os.environ.get(name):
            raise SystemExit(f"{name} is not set")
    if not Path(os.environ["DRIFT_KEYPAIR_PATH"]).is_file():
        raise SystemExit("DRIFT_KEYPAIR_PATH does not name a file")
    asyncio.run(main(args.host, args.port))


__all__ = ["Chain", "create_app", "json", "run"]
