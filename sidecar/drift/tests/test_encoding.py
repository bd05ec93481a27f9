"""Every instruction the sidecar sends, built by its own code with driftpy's Program and decoded
with driftpy's IDL coder, compared field by field with the protocol order warden asked for.

No chain is needed: the instruction's data is what Drift's program will read. Throwaway keypairs
only.
"""

from __future__ import annotations

import pytest
from solders.keypair import Keypair
from warden_drift_sidecar import encode
from warden_drift_sidecar import protocol as p

PROGRAM = encode.drift_program()
KEYS = [Keypair().pubkey() for _ in range(4)]
ACCOUNTS = dict(zip(("state", "user", "userStats", "authority"), KEYS, strict=True))
CANCEL_ACCOUNTS = {k: v for k, v in ACCOUNTS.items() if k != "userStats"}

ENTRY = {
    "market_index": 0,
    "order_type": "market",
    "direction": "long",
    "base_asset_amount": "1000000000",
    "reduce_only": False,
    "user_order_id": 1,
}
STOP = {
    "market_index": 0,
    "order_type": "trigger_market",
    "direction": "short",
    "base_asset_amount": "1000000000",
    "reduce_only": True,
    "user_order_id": 2,
    "trigger_price": "147750000",
    "trigger_condition": "below",
}
TP1 = {
    "market_index": 0,
    "order_type": "trigger_market",
    "direction": "short",
    "base_asset_amount": "600000000",
    "reduce_only": True,
    "user_order_id": 3,
    "trigger_price": "151500000",
    "trigger_condition": "above",
}
SHORT_STOP = {
    "market_index": 1,
    "order_type": "trigger_market",
    "direction": "long",
    "base_asset_amount": "100000",
    "reduce_only": True,
    "user_order_id": 255,
    "trigger_price": "66000000000",
    "trigger_condition": "above",
}
CLOSE = {
    "market_index": 2,
    "order_type": "market",
    "direction": "short",
    "base_asset_amount": "18446744073709551615",
    "reduce_only": True,
    "user_order_id": 0,
}


def decoded(ix: object) -> tuple[str, dict[str, object]]:
    named = PROGRAM.coder.instruction.parse(ix.data)  # type: ignore[attr-defined]
    return named.name, {k: v for k, v in dict(named.data).items() if not k.startswith("_")}


def as_protocol(params: object) -> dict[str, object]:
    """A decoded OrderParams, in the protocol's words (what warden would have had to send)."""
    out: dict[str, object] = {
        "market_index": params.market_index,
        "order_type": encode._variant(params.order_type),
        "direction": encode._variant(params.direction),
        "base_asset_amount": str(params.base_asset_amount),
        "reduce_only": params.reduce_only,
        "user_order_id": params.user_order_id,
    }
    if out["order_type"] == "trigger_market":
        out["trigger_price"] = str(params.trigger_price)
        out["trigger_condition"] = encode._variant(params.trigger_condition)
    else:
        assert params.trigger_price in (None, 0)
    assert encode._variant(params.market_type) == "perp"
    assert (params.price, params.post_only.__class__.__name__, params.bit_flags) == (0, "None", 0)
    assert (params.oracle_price_offset, params.auction_duration, params.max_ts) == (None, None, None)
    return out


@pytest.mark.parametrize(
    "order", [ENTRY, STOP, TP1, SHORT_STOP, CLOSE], ids=["entry", "stop", "tp1", "short-stop", "close"]
)
def test_one_order_decodes_to_what_warden_asked_for(order: dict[str, object]) -> None:
    name, data = decoded(encode.place_orders_ix(PROGRAM, [order], ACCOUNTS))
    assert name == "place_orders"
    [params] = data["params"]
    assert as_protocol(params) == order


def test_entry_stop_and_take_profit_in_one_transaction_keep_their_order_and_fields() -> None:
    """Drift accepts reduce-only trigger orders before the position exists (checked at fill), so
    the three can travel in one place_orders; each decodes to exactly what was asked."""
    name, data = decoded(encode.place_orders_ix(PROGRAM, [ENTRY, STOP, TP1], ACCOUNTS))
    assert name == "place_orders"
    assert [as_protocol(x) for x in data["params"]] == [ENTRY, STOP, TP1]


@pytest.mark.parametrize(
    ("name", "idl_name"), [("place_orders", "placeOrders"), ("cancel_order", "cancelOrder")]
)
def test_the_accounts_are_the_ones_given_in_the_idls_order(name: str, idl_name: str) -> None:
    [spec] = [i for i in PROGRAM.idl.instructions if i.name == idl_name]
    wanted = [a.name for a in spec.accounts]
    if name == "place_orders":
        ix = encode.place_orders_ix(PROGRAM, [ENTRY], ACCOUNTS)
    else:
        ix = encode.cancel_order_ix(PROGRAM, 1, CANCEL_ACCOUNTS)
    by_key = {v: k for k, v in ACCOUNTS.items()}
    assert [by_key[m.pubkey] for m in ix.accounts] == wanted
    assert ix.program_id == PROGRAM.program_id
    assert [m.is_signer for m in ix.accounts] == [n == "authority" for n in wanted]


@pytest.mark.parametrize("order_id", [1, 7, 4_294_967_295])
def test_a_cancel_is_by_drifts_order_id(order_id: int) -> None:
    name, data = decoded(encode.cancel_order_ix(PROGRAM, order_id, CANCEL_ACCOUNTS))
    assert (name, data) == ("cancel_order", {"order_id": order_id})


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"user_order_id": 256}, "user_order_id"),
        ({"user_order_id": -1}, "user_order_id"),
        ({"base_asset_amount": "0"}, "base_asset_amount"),
        ({"base_asset_amount": 1.5}, "base_asset_amount"),
        ({"trigger_condition": "triggered_below"}, "trigger_condition"),
        ({"order_type": "limit"}, "order_type"),
        ({"direction": "up"}, "direction"),
        ({"reduce_only": "true"}, "reduce_only"),
    ],
)
def test_orders_drift_would_misread_are_refused_before_encoding(change: dict[str, object], why: str) -> None:
    with pytest.raises(p.ProtocolError, match=why):
        encode.place_orders_ix(PROGRAM, [{**STOP, **change}], ACCOUNTS)


def test_a_market_order_with_a_trigger_price_is_refused() -> None:
    with pytest.raises(p.ProtocolError, match="trigger_price"):
        encode.order_params({**ENTRY, "trigger_price": "1"})


def test_an_account_order_reads_back_as_the_protocol_writes_it() -> None:
    from driftpy.types import (
        MarketType,
        Order,
        OrderStatus,
        OrderTriggerCondition,
        OrderType,
        PositionDirection,
    )

    fields = dict.fromkeys(Order.__dataclass_fields__, 0)
    fields.update(
        status=OrderStatus.Open(),
        order_type=OrderType.TriggerMarket(),
        market_type=MarketType.Perp(),
        direction=PositionDirection.Short(),
        trigger_condition=OrderTriggerCondition.TriggeredBelow(),
        order_id=42,
        user_order_id=9,
        base_asset_amount=10**9,
        trigger_price=147_750_000,
        reduce_only=True,
        slot=123,
    )
    for name in ("existing_position_direction",):
        fields[name] = PositionDirection.Long()
    row = encode.order_json(Order(**fields))
    assert row["order_type"] == "trigger_market"
    assert row["direction"] == "short"
    assert row["trigger_condition"] == "triggered_below"
    assert row["status"] == "open"
    assert (row["order_id"], row["user_order_id"], row["base_asset_amount"], row["trigger_price"]) == (
        42,
        9,
        "1000000000",
        "147750000",
    )
