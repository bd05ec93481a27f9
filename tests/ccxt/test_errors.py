"""The one translation table: every ccxt exception class lands on the right port error."""

from __future__ import annotations

import pytest

import ccxt
from warden.adapters.ccxt import Call, ParseError, translate, translated
from warden.adapters.ccxt.errors import BINANCE, BYBIT, CodeTable
from warden.ports import (
    DuplicateOrder,
    ExchangeError,
    ExchangeTimeout,
    ExchangeUnavailable,
    OrderNotFound,
    OrderRejected,
)

ORDER, QUERY = Call.ORDER, Call.QUERY

CASES = [
    # (ccxt exception, on an order call, on a query)
    (ccxt.OrderNotFound, OrderNotFound, OrderNotFound),
    (ccxt.OrderImmediatelyFillable, OrderRejected, OrderRejected),
    (ccxt.InvalidOrder, OrderRejected, OrderRejected),
    (ccxt.DuplicateOrderId, DuplicateOrder, OrderRejected),
    (ccxt.InsufficientFunds, OrderRejected, OrderRejected),
    (ccxt.BadRequest, OrderRejected, OrderRejected),
    (ccxt.BadSymbol, OrderRejected, OrderRejected),
    (ccxt.ArgumentsRequired, OrderRejected, OrderRejected),
    (ccxt.NotSupported, OrderRejected, OrderRejected),
    (ccxt.AuthenticationError, OrderRejected, ExchangeUnavailable),
    (ccxt.PermissionDenied, OrderRejected, ExchangeUnavailable),
    (ccxt.OperationRejected, OrderRejected, ExchangeUnavailable),
    (ccxt.ExchangeClosedByUser, ExchangeUnavailable, ExchangeUnavailable),
    (ccxt.DDoSProtection, ExchangeUnavailable, ExchangeUnavailable),
    (ccxt.RateLimitExceeded, ExchangeUnavailable, ExchangeUnavailable),
    (ccxt.InvalidNonce, ExchangeUnavailable, ExchangeUnavailable),
    (ccxt.RequestTimeout, ExchangeTimeout, ExchangeUnavailable),
    (ccxt.ExchangeNotAvailable, ExchangeTimeout, ExchangeUnavailable),
    (ccxt.OnMaintenance, ExchangeTimeout, ExchangeUnavailable),
    (ccxt.NetworkError, ExchangeTimeout, ExchangeUnavailable),
    (ccxt.BadResponse, ExchangeTimeout, ExchangeUnavailable),
    (ccxt.OperationFailed, ExchangeTimeout, ExchangeUnavailable),
    (ccxt.ExchangeError, ExchangeTimeout, ExchangeUnavailable),
]


@pytest.mark.parametrize(("ccxt_error", "on_order", "on_query"), CASES)
def test_translation_table(
    ccxt_error: type[Exception], on_order: type[ExchangeError], on_query: type[ExchangeError]
) -> None:
    """Order calls: only a proven refusal is OrderRejected, anything ambiguous is an unknown outcome."""
    order_error = translate(ccxt_error("binanceusdm boom"), ORDER)
    query_error = translate(ccxt_error("binanceusdm boom"), QUERY)
    assert type(order_error) is on_order
    assert type(query_error) is on_query
    assert "boom" in str(order_error)


def test_every_ccxt_error_class_is_covered() -> None:
    """No ccxt exception falls through the table (it ends with ExchangeError and OperationFailed)."""
    classes = [c for c in vars(ccxt).values() if isinstance(c, type) and issubclass(c, ccxt.BaseError)]
    uncovered = [
        c.__name__
        for c in classes
        if c is not ccxt.BaseError
        and not issubclass(c, ccxt.UnsubscribeError)
        and translate(c("x"), ORDER) is None
    ]
    assert uncovered == []


def test_translated_raises_the_port_error_and_keeps_the_cause() -> None:
    original = ccxt.OrderImmediatelyFillable(
        'binanceusdm {"code":-2021,"msg":"Order would immediately trigger."}'
    )
    with pytest.raises(OrderRejected, match="-2021") as caught, translated(ORDER):
        raise original
    assert caught.value.__cause__ is original


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (BINANCE, 'binanceusdm {"code":-4116,"msg":"ClientOrderId is duplicated."}'),
        (BYBIT, 'bybit {"retCode":110072,"retMsg":"OrderLinkedID is duplicate"}'),
    ],
)
def test_a_client_id_in_use_is_a_duplicate_not_a_plain_refusal(codes: CodeTable, message: str) -> None:
    """-4116 and 110072 say an order with the id exists (most likely an earlier send, resting):
    a stop refused so is covered, and is looked up in full rather than taken for refused."""
    assert type(translate(ccxt.InvalidOrder(message), ORDER, codes)) is DuplicateOrder
    assert type(translate(ccxt.InvalidOrder(message), QUERY, codes)) is OrderRejected


@pytest.mark.parametrize("ccxt_error", [ccxt.InvalidOrder, ccxt.BadRequest])
def test_an_order_the_matching_engine_refused_as_late_is_retryable_not_refused(
    ccxt_error: type[Exception],
) -> None:
    """-5028: the order reached Binance's matching engine after its recvWindow (a backlog inside
    Binance, in fast markets) and was not processed, like -1021 at the gateway. ccxt calls it
    InvalidOrder (BadRequest in its linear table): taken for a final refusal, a stop refused so
    would close the position at market at once instead of being sent again."""
    message = 'binanceusdm {"code":-5028,"msg":"Timestamp for this request is outside of the ME recvWindow."}'
    assert type(translate(ccxt_error(message), ORDER, BINANCE)) is ExchangeUnavailable
    assert type(translate(ccxt_error(message), QUERY, BINANCE)) is ExchangeUnavailable


def test_translated_lets_foreign_exceptions_through() -> None:
    """Not ccxt's, not a reading error: propagate unchanged (a bug is not an exchange outage)."""
    with pytest.raises(ZeroDivisionError), translated(QUERY):
        raise ZeroDivisionError


@pytest.mark.parametrize("unreadable", [ParseError("no id"), KeyError("order"), TypeError("None")])
def test_an_unreadable_response_is_an_unknown_outcome_or_a_failed_query(unreadable: Exception) -> None:
    with pytest.raises(ExchangeTimeout), translated(ORDER):
        raise unreadable
    with pytest.raises(ExchangeUnavailable), translated(QUERY):
        raise unreadable
