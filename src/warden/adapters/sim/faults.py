"""Fault knobs of the simulated exchange. Tests mutate them at runtime."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from warden.domain.reports import OrderRequest
from warden.ports import ExchangeTimeout, ExchangeUnavailable

OrderPredicate = Callable[[OrderRequest], bool]


class SimServerError(ExchangeTimeout):
    """`server_error_if`: a 5xx. Nothing was executed, but the caller cannot know that (a Binance
    5xx on an order means "execution status unknown"): it must look the order up."""


class SimRateLimited(ExchangeUnavailable):
    """`rate_limit_if`: a 429, refused before processing; nothing was executed."""


@dataclass(slots=True)
class SimFaults:
    """What goes wrong, and how often. Random choices come from the adapter's seeded RNG.

    rest_latency / stream_latency: seconds added to every REST call / to each stream event.
    drop_rate / duplicate_rate / reorder_rate: per-event chances on the user stream.
    events_before_response: place_order returns only after the consumer has taken the
        events it caused off the stream (bounded wait), like a fill racing its response.
    reject_if / unavailable_if: refuse an order (OrderRejected / ExchangeUnavailable)
        without executing it.
    timeout_after_execution_if: execute the order, then raise ExchangeTimeout.
    execute_late_if: a place it matches is answered with an unknown outcome (ExchangeTimeout; on
        the Binance face HTTP 503 -1007 "execution status unknown", as Binance answers when its
        matching engine did not answer in time) with nothing done yet: lookups by its client id
        find nothing and no event is sent. `execute_delay` seconds later (through the adapter's
        injected sleep) the request reaches the matching engine and is executed as sent (a
        market order fills at the mark of that moment, its events on the stream), as a real
        exchange may still execute such an order seconds later. Should its client id be taken
        meanwhile, the late request is refused as a duplicate and nothing happens. A request
        still in flight is not kept in the state file (it is lost with the process).
    execute_delay: seconds from the unknown answer of such a request to its execution. Read
        when the order is placed.
    fail_queries: every fetch_* raises ExchangeUnavailable.
    ack_only_if: a MARKET order it matches is acknowledged, not filled: place_order returns it
        OPEN with nothing filled (on the server: status NEW, executedQty "0"); it fills
        `fill_delay` seconds later (through the adapter's injected sleep) at the mark of that
        moment, with the usual fill events on the stream. Until then lookups show it OPEN and
        a cancel cancels it for good. Conditional orders are not affected.
    fill_delay: seconds from the acknowledgement of such an order to its fill (0: the next
        turn of the event loop, still after the response). Read when the order is placed.
    partial_fill: (0 to 1) the part of such an order that its first fill takes, rounded down to
        the lot: the order stays open, partly filled (Binance's PARTIALLY_FILLED), and the rest
        fills `fill_delay` later, as a thin book or a Drift auction fills an order over seconds.
        A reduce-only one (a close) fills no more than the position holds when each part comes
        due, and expires once it holds nothing. Read at each fill. 0: whole at once.
        The server faces speak it as the venues do: Binance's TRADE message PARTIALLY_FILLED
        then FILLED (z cumulative), Bybit's order PartiallyFilled (cumExecQty), each trade its
        own execution; lookups show the order partly filled meanwhile.
    fill_parts: (2 to 20, with partial_fill) how many parts such an order fills in: each but the
        last takes `partial_fill` of what is left (rounded down to the lot), each `fill_delay`
        after the one before, as an order matched against several makers over time is. Read at
        each fill; a simulator restarted from its state file fills the rest of an order it had
        begun in one part.
    fire_in_parts: a conditional order (a stop, a take-profit) the mark reaches leaves the book
        and executes as an acknowledged market order does: at the next turn, and with
        `partial_fill` in `fill_parts` parts, `fill_delay` apart (a stop that fires into a thin
        book fills against several makers). Meanwhile it still covers: the exchange is executing
        it against the position. In process only (the server faces do not speak it). Read when
        the mark moves.
    stream_silent: (the server faces only) the private sockets stay open but go quiet: no
        events (they are lost, as on a dead connection) and no answer to pings. A client must
        notice the silence by itself (a missed keep-alive), reconnect and reconcile.
    server_error_if: a place or cancel it matches is answered with a 5xx (SimServerError, an
        ExchangeTimeout: nothing was done, but the caller cannot tell); nothing changes.
    rate_limit_if: a place or cancel it matches is answered 429 (SimRateLimited, an
        ExchangeUnavailable; the Bybit face: retCode 10006); nothing changes. For a cancel, the
        predicate sees the order being cancelled as a request.
    retry_after: (the server faces) seconds the rate-limit answer of `rate_limit_if` /
        `unavailable_if` tells the client to stay away: the Binance face's 429 carries it in its
        `Retry-After` header, as Binance's 429 and 418 do (0: no header); the Bybit face's 10006
        carries `X-Bapi-Limit-Reset-Timestamp` that far past its now (ms, the server's clock),
        with `X-Bapi-Limit-Status` 0 and `X-Bapi-Limit`, as Bybit does (0: the reset is now).
    stream_gap: seconds of silence. Set above 0, the user stream goes silent at its next event
        for that long: events meanwhile are lost (a socket that died without anyone noticing),
        then it reconnects and the consumer gets a StreamGap. The knob reads back 0 once the
        silence is over.
    subscribe_delay: (the Bybit server face only) seconds a private socket takes to act on a
        `subscribe`: the topics take effect, and the acknowledgement is sent, only then (the
        socket's later commands wait behind it). Events meanwhile do not reach that socket.
    """

    rest_latency: float = 0.0
    stream_latency: float = 0.0
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    events_before_response: bool = False
    reject_if: OrderPredicate | None = None
    unavailable_if: OrderPredicate | None = None
    timeout_after_execution_if: OrderPredicate | None = None
    execute_late_if: OrderPredicate | None = None
    execute_delay: float = 0.0
    fail_queries: bool = False
    ack_only_if: OrderPredicate | None = None
    fill_delay: float = 0.0
    partial_fill: float = 0.0
    fill_parts: int = 2
    fire_in_parts: bool = False
    stream_silent: bool = False
    server_error_if: OrderPredicate | None = None
    rate_limit_if: OrderPredicate | None = None
    retry_after: float = 0.0
    stream_gap: float = 0.0
    subscribe_delay: float = 0.0
