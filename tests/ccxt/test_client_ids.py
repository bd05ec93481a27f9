"""warden's client order ids fit both venues: Bybit's orderLinkId and Binance's newClientOrderId."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from warden.adapters.sim.server.bybit.params import ORDER_LINK_ID
from warden.domain.values import OrderRole, PositionId, client_order_id, parse_client_id

BINANCE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


@given(
    installation=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=6),
    position=st.text("0123456789abcdef", min_size=12, max_size=12),
    role=st.sampled_from(list(OrderRole)),
    seq=st.integers(min_value=0, max_value=10**6),
)
def test_every_client_order_id_is_a_valid_order_link_id(
    installation: str, position: str, role: OrderRole, seq: int
) -> None:
    cid = client_order_id(PositionId(position), role, seq, installation)
    assert ORDER_LINK_ID.match(cid), cid  # at most 36 of [A-Za-z0-9_-]
    assert BINANCE.match(cid), cid
    assert len(cid) <= 3 + 6 + 1 + 12 + 1 + 1 + 7
    assert parse_client_id(cid) is not None


def test_the_longest_ordinary_id_has_room_to_spare() -> None:
    cid = client_order_id(PositionId("0123456789ab"), OrderRole.STOP, 99, "a1b2c3")
    assert (cid, len(cid)) == ("wd-a1b2c3-0123456789ab-s99", 26)
