"""Order validation: the Binance USD-M filters and refusals the simulator enforces.

Every refusal raises `SimRejection` with the Binance error code, before anything changes.
"""

from __future__ import annotations

from decimal import Decimal

from warden.adapters.sim.book import direction_of, fires
from warden.adapters.sim.ledger import SimPosition
from warden.domain.reports import OrderRequest
from warden.domain.values import Instrument, OrderType

MAX_PRICE = Decimal(10_000_000)
"""The highest price (mark or trigger) the simulator accepts: exchangeInfo's PRICE_FILTER maxPrice."""

MAX_QTY = Decimal(100_000)
"""The largest order quantity the simulator accepts: exchangeInfo's LOT_SIZE maxQty."""


class SimError(Exception):
    """Base of the simulator core's errors."""


DUPLICATE_ID = -4116
"""The refusal of a second order with a client id already resting (Binance's code)."""


class SimRejection(SimError):
    """The simulated exchange refused an order; nothing happened."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SimOrderNotFound(SimError):
    """No such order (or, for a cancel, no such open order)."""


def check_quantity(request: OrderRequest, instrument: Instrument) -> None:
    """The quantity must be positive, at most MAX_QTY, a whole number of lots and at least the minimum."""
    qty = request.qty
    if not qty.is_finite():
        raise SimRejection(-1111, f"quantity {qty} is not a number")
    if qty <= 0:
        raise SimRejection(-4003, f"quantity {qty} must be greater than zero")
    if qty > MAX_QTY:
        raise SimRejection(-4005, f"quantity {qty} is greater than the maximum {MAX_QTY}")
    if qty % instrument.lot_size != 0:
        raise SimRejection(-1111, f"quantity {qty} is not a multiple of the lot size {instrument.lot_size}")
    if qty < instrument.min_qty:
        raise SimRejection(-4005, f"quantity {qty} is below the minimum {instrument.min_qty}")


def check_trigger(
    request: OrderRequest, instrument: Instrument, mark: Decimal, *, immediate_ok: bool = False
) -> None:
    """Conditional orders need a positive on-tick trigger (at most MAX_PRICE) that does not fire at
    once (unless `immediate_ok`: a venue that accepts it and fires it at once)."""
    trigger = request.trigger_price
    if not request.type.conditional:
        if trigger is not None:
            raise SimRejection(-1106, "parameter 'stopPrice' sent when not required")
        return
    if trigger is None or not trigger.is_finite() or trigger <= 0:
        raise SimRejection(-1102, "mandatory parameter 'stopPrice' was not sent or is not positive")
    if trigger > MAX_PRICE:
        raise SimRejection(-4016, f"trigger {trigger} is greater than the maximum price {MAX_PRICE}")
    if trigger % instrument.tick_size != 0:
        tick = instrument.tick_size
        raise SimRejection(-4014, f"trigger {trigger} is not a multiple of the tick size {tick}")
    if not immediate_ok and fires(direction_of(request.side, request.type), trigger, mark):
        raise SimRejection(-2021, f"order would immediately trigger (trigger {trigger}, mark {mark})")


def check_notional(request: OrderRequest, instrument: Instrument, mark: Decimal) -> None:
    """Orders that can open exposure must be worth at least the minimum notional."""
    if request.reduce_only:
        return
    price = request.trigger_price if request.type.conditional and request.trigger_price else mark
    notional = request.qty * price
    if notional < instrument.min_notional:
        raise SimRejection(
            -4164, f"order notional {notional} must be no smaller than {instrument.min_notional}"
        )


def check_reduce_only_market(request: OrderRequest, position: SimPosition) -> None:
    """A reduce-only market order must shrink an open position."""
    if request.type is OrderType.MARKET and request.reduce_only and not position.reduced_by(request.side):
        raise SimRejection(-2022, "ReduceOnly Order is rejected")


def validate(
    request: OrderRequest,
    instrument: Instrument,
    mark: Decimal,
    position: SimPosition,
    *,
    close_position: bool,
    immediate_ok: bool = False,
) -> None:
    """Every check, in the order Binance applies them (roughly); raises SimRejection."""
    if close_position:
        if not request.type.conditional:
            raise SimRejection(-4136, "closePosition is only for STOP_MARKET and TAKE_PROFIT_MARKET")
    else:
        check_quantity(request, instrument)
    check_trigger(request, instrument, mark, immediate_ok=immediate_ok)
    if not close_position:
        check_notional(request, instrument, mark)
    check_reduce_only_market(request, position)
