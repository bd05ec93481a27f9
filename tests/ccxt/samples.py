"""Recorded-shape Binance USD-M payloads (reference sections 3 and 4), run through ccxt's own parsers.

The raw dicts are Binance's wire format; `offline()` is an unmodified ccxt client with markets
set from an exchangeInfo entry (no network), so `ccxt_*` give exactly what ccxt hands the adapter.
"""

from __future__ import annotations

from typing import Any

import ccxt.pro

Raw = dict[str, Any]

EXCHANGE_INFO_BTC: Raw = {
    "symbol": "BTCUSDT",
    "pair": "BTCUSDT",
    "contractType": "PERPETUAL",
    "deliveryDate": 4133404800000,
    "onboardDate": 1569398400000,
    "status": "TRADING",
    "baseAsset": "BTC",
    "quoteAsset": "USDT",
    "marginAsset": "USDT",
    "pricePrecision": 2,
    "quantityPrecision": 3,
    "filters": [
        {"filterType": "PRICE_FILTER", "tickSize": "0.10", "minPrice": "556.80", "maxPrice": "4529764"},
        {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000"},
        {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "120"},
        {"filterType": "MIN_NOTIONAL", "notional": "100"},
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
    ],
    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
}

EXCHANGE_INFO_DELIVERY: Raw = {
    **EXCHANGE_INFO_BTC,
    "symbol": "BTCUSDT_261225",
    "contractType": "CURRENT_QUARTER",
    "deliveryDate": 1797926400000,
}

PLAIN_ORDER_FILLED: Raw = {
    "orderId": 4087922044,
    "symbol": "BTCUSDT",
    "status": "FILLED",
    "clientOrderId": "wd-p1-e1",
    "price": "0.00",
    "avgPrice": "65010.40",
    "origQty": "0.200",
    "executedQty": "0.200",
    "cumQty": "0.200",
    "cumQuote": "13002.08000",
    "timeInForce": "GTC",
    "type": "MARKET",
    "reduceOnly": False,
    "closePosition": False,
    "side": "BUY",
    "positionSide": "BOTH",
    "stopPrice": "0.00",
    "workingType": "CONTRACT_PRICE",
    "priceProtect": False,
    "origType": "MARKET",
    "priceMatch": "NONE",
    "selfTradePreventionMode": "NONE",
    "goodTillDate": 0,
    "updateTime": 1739781831932,
}

ALGO_ORDER_NEW: Raw = {
    "algoId": 2148719,
    "clientAlgoId": "wd-p1-s1",
    "algoType": "CONDITIONAL",
    "orderType": "STOP_MARKET",
    "symbol": "BTCUSDT",
    "side": "SELL",
    "positionSide": "BOTH",
    "timeInForce": "GTC",
    "quantity": "0.200",
    "algoStatus": "NEW",
    "triggerPrice": "64000.00",
    "price": "0.00",
    "workingType": "MARK_PRICE",
    "priceMatch": "NONE",
    "closePosition": False,
    "priceProtect": False,
    "reduceOnly": True,
    "createTime": 1750515742297,
    "updateTime": 1750515742297,
    "triggerTime": 0,
    "goodTillDate": 0,
}

ALGO_ORDER_FINISHED: Raw = {
    **ALGO_ORDER_NEW,
    "algoStatus": "FINISHED",
    "actualOrderId": "88937381063",
    "updateTime": 1765431097019,
    "triggerTime": 1765431097019,
}

CHILD_ORDER_FILLED: Raw = {
    **PLAIN_ORDER_FILLED,
    "orderId": 88937381063,
    "clientOrderId": "spawned-by-the-algo-service",
    "side": "SELL",
    "avgPrice": "63990.10",
    "reduceOnly": True,
    "updateTime": 1765431097020,
}

POSITION_RISK_LONG: Raw = {
    "symbol": "BTCUSDT",
    "positionSide": "BOTH",
    "positionAmt": "0.009",
    "entryPrice": "67445.9",
    "breakEvenPrice": "67479.62295",
    "markPrice": "67502.68519858",
    "unRealizedProfit": "0.51106678",
    "liquidationPrice": "64846.98753790",
    "isolatedMargin": "0",
    "notional": "607.52416678",
    "marginAsset": "USDT",
    "isolatedWallet": "0",
    "initialMargin": "7.59405208",
    "maintMargin": "2.43009666",
    "positionInitialMargin": "7.59405208",
    "openOrderInitialMargin": "0",
    "adl": "2",
    "bidNotional": "0",
    "askNotional": "0",
    "updateTime": "1722161166529",
}

POSITION_RISK_SHORT: Raw = {
    **POSITION_RISK_LONG,
    "positionAmt": "-0.004",
    "notional": "-270.01",
    "unRealizedProfit": "-0.2",
}

USER_TRADE: Raw = {
    "symbol": "BTCUSDT",
    "id": 698759,
    "orderId": 25851813,
    "side": "SELL",
    "price": "7819.01",
    "qty": "0.002",
    "realizedPnl": "-0.91539999",
    "marginAsset": "USDT",
    "quoteQty": "15.63802",
    "commission": "-0.07819010",
    "commissionAsset": "USDT",
    "time": 1569514978020,
    "positionSide": "BOTH",
    "buyer": False,
    "maker": False,
}

WS_TRADE: Raw = {
    "e": "ORDER_TRADE_UPDATE",
    "E": 1568879465651,
    "T": 1568879465650,
    "o": {
        "s": "BTCUSDT",
        "c": "wd-p1-e1",
        "S": "BUY",
        "o": "MARKET",
        "f": "GTC",
        "q": "0.001",
        "p": "0",
        "ap": "33468.46000",
        "sp": "0",
        "x": "TRADE",
        "X": "FILLED",
        "i": 13351197194,
        "l": "0.001",
        "z": "0.001",
        "L": "33468.46",
        "n": "0.01338738",
        "N": "USDT",
        "T": 1612095165362,
        "t": 458032604,
        "b": "0",
        "a": "0",
        "m": False,
        "R": False,
        "wt": "CONTRACT_PRICE",
        "ot": "MARKET",
        "ps": "BOTH",
        "cp": False,
        "rp": "0",
        "pP": False,
        "si": 0,
        "ss": 0,
    },
}

WS_ALGO_TRIGGERED: Raw = {
    "e": "ALGO_UPDATE",
    "T": 1765431097019,
    "E": 1765431097025,
    "o": {
        "caid": "wd-p1-a1",
        "aid": 2148720,
        "at": "CONDITIONAL",
        "o": "TAKE_PROFIT_MARKET",
        "s": "BTCUSDT",
        "S": "SELL",
        "ps": "BOTH",
        "f": "GTC",
        "q": "0.01",
        "X": "TRIGGERED",
        "ai": "88937381064",
        "ap": "0.00000",
        "aq": "0.00000",
        "act": "MARKET",
        "tp": "66000",
        "p": "0",
        "V": "EXPIRE_MAKER",
        "wt": "MARK_PRICE",
        "pm": "NONE",
        "cp": False,
        "pP": False,
        "R": True,
        "tt": 1765431097019,
        "gtd": 0,
    },
}

WS_ALGO_FINISHED: Raw = {
    **WS_ALGO_TRIGGERED,
    "o": {**WS_ALGO_TRIGGERED["o"], "X": "FINISHED", "ap": "66001.20", "aq": "0.01"},
}

WS_MARK: Raw = {
    "e": "markPriceUpdate",
    "E": 1562305380000,
    "s": "BTCUSDT",
    "p": "11794.15000000",
    "i": "11784.62659091",
    "P": "11784.25641265",
    "r": "0.00038167",
    "T": 1562306400000,
}


def offline() -> Any:
    """An unmodified ccxt binanceusdm with the BTC perpetual (and a delivery future) as markets."""
    client = ccxt.pro.binanceusdm({"options": {"fetchCurrencies": False}})
    client.set_markets([client.parse_market(EXCHANGE_INFO_BTC), client.parse_market(EXCHANGE_INFO_DELIVERY)])
    return client


def ccxt_order(raw: Raw) -> Raw:
    client = offline()
    parsed: Raw = client.parse_order(raw, client.market("BTC/USDT:USDT"))
    return parsed


def ccxt_ws_order(message: Raw) -> Raw:
    body = dict(message["o"])
    body.setdefault("T", message["T"])
    parsed: Raw = offline().parse_ws_order(body)
    return parsed


def ccxt_ws_trade(message: Raw) -> Raw:
    parsed: Raw = offline().parse_ws_trade(message["o"])
    return parsed


def ccxt_trade(raw: Raw) -> Raw:
    client = offline()
    parsed: Raw = client.parse_trade(raw, client.market("BTC/USDT:USDT"))
    return parsed


def ccxt_position(raw: Raw) -> Raw:
    client = offline()
    parsed: Raw = client.parse_position_risk(raw, client.market("BTC/USDT:USDT"))
    return parsed


def ccxt_mark(raw: Raw) -> Raw:
    parsed: Raw = offline().parse_ws_ticker(raw, "swap")
    return parsed
