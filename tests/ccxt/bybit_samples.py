"""Recorded Bybit v5 payloads, run through unmodified ccxt's own parsers.

Sources (MIT-licensed data of the ccxt project, copied selectively):
- ccxt `ts/src/test/static/response/bybit.json`: the linear orders (fetchClosedOrders,
  fetchOpenOrder), positions (fetchPositions, fetchPosition), the Funding execution
  (fetchMyTrades "Swap private trade"), an order answer (createOrder);
- ccxt `ts/src/test/static/ws/bybit.json`: the linear `tickers.BTCUSDT` snapshot and delta;
- the generated `ccxt/async_support/bybit.py` 4.5.90: the instruments-info entry
  (`fetch_future_markets`) and the `execution` topic row (`parse_trade`, "watchMyTrades execution").

Bybit's live answers carry no conditional order in these recordings, so `CONDITIONAL_UNTRIGGERED`
is the recorded reduce-only order with the fields Bybit documents for a conditional one
(triggerPrice, triggerDirection, stopOrderType, orderStatus Untriggered) set: marked as such.

`offline()` is an unmodified `ccxt.pro.bybit` whose markets are loaded from the recorded
instruments-info answer (its one HTTP method replaced on the instance: no network).
"""

from __future__ import annotations

from typing import Any

import ccxt.pro

Raw = dict[str, Any]

INSTRUMENT_BTC: Raw = {  # bybit.py fetch_future_markets, the recorded linear entry
    "symbol": "BTCUSDT",
    "contractType": "LinearPerpetual",
    "status": "Trading",
    "baseCoin": "BTC",
    "quoteCoin": "USDT",
    "launchTime": "1585526400000",
    "deliveryTime": "0",
    "deliveryFeeRate": "",
    "priceScale": "2",
    "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
    "priceFilter": {"minPrice": "0.50", "maxPrice": "999999.00", "tickSize": "0.50"},
    "lotSizeFilter": {
        "maxOrderQty": "100.000",
        "minOrderQty": "0.001",
        "qtyStep": "0.001",
        "postOnlyMaxOrderQty": "1000.000",
    },
    "unifiedMarginTrade": True,
    "fundingInterval": 480,
    "settleCoin": "USDT",
}
INSTRUMENT_LTC: Raw = {  # the same shape for the LTC orders, positions and executions below
    **INSTRUMENT_BTC,
    "symbol": "LTCUSDT",
    "baseCoin": "LTC",
    "priceFilter": {"minPrice": "0.01", "maxPrice": "19999.98", "tickSize": "0.01"},
    "lotSizeFilter": {
        "maxOrderQty": "35000.0",
        "minOrderQty": "0.1",
        "qtyStep": "0.1",
        "minNotionalValue": "5",
    },
}
INSTRUMENT_DELIVERY: Raw = {
    **INSTRUMENT_BTC,
    "symbol": "BTCUSDT-26DEC25",
    "contractType": "LinearFutures",
    "deliveryTime": "1766736000000",
}

INSTRUMENT_USDC_PERP: Raw = {  # Bybit's USDC-settled perpetual: its id is BTCPERP
    **INSTRUMENT_BTC,
    "symbol": "BTCPERP",
    "quoteCoin": "USDC",
    "settleCoin": "USDC",
}

ORDER_ANSWER: Raw = {"orderId": "1992319485461489920", "orderLinkId": "1992319485469878528"}  # createOrder

CLOSED_REDUCE_ONLY_SELL: Raw = {  # fetchClosedOrders, "Fetch swap closed orders by the symbol"
    "symbol": "BTCUSDT",
    "orderType": "Market",
    "orderLinkId": "",
    "slLimitPrice": "0",
    "orderId": "f5f2d355-9a11-4af3-9b83-aa1d6ab6ddfe",
    "cancelType": "UNKNOWN",
    "avgPrice": "122529.9",
    "stopOrderType": "",
    "lastPriceOnCreated": "123747.9",
    "orderStatus": "Filled",
    "createType": "CreateByUser",
    "takeProfit": "",
    "cumExecValue": "122.5299",
    "tpslMode": "",
    "smpType": "None",
    "triggerDirection": "0",
    "blockTradeId": "",
    "cumFeeDetail": {"USDT": "0.06739145"},
    "rejectReason": "EC_NoError",
    "isLeverage": "",
    "price": "120518",
    "orderIv": "",
    "createdTime": "1757837618905",
    "tpTriggerBy": "",
    "positionIdx": "0",
    "timeInForce": "IOC",
    "leavesValue": "0",
    "updatedTime": "1757837618909",
    "side": "Sell",
    "smpGroup": "0",
    "triggerPrice": "",
    "tpLimitPrice": "0",
    "cumExecFee": "0.06739145",
    "slTriggerBy": "",
    "leavesQty": "0",
    "closeOnTrigger": False,
    "slippageToleranceType": "UNKNOWN",
    "placeType": "",
    "cumExecQty": "0.001",
    "reduceOnly": True,
    "qty": "0.001",
    "stopLoss": "",
    "smpOrderId": "",
    "slippageTolerance": "0",
    "triggerBy": "",
    "extraFees": "",
}

OPEN_LIMIT_BUY: Raw = {  # fetchOpenOrder, "Fetch an open swap order by its ID and symbol"
    **CLOSED_REDUCE_ONLY_SELL,
    "orderType": "Limit",
    "orderId": "3606515b-e4d7-4ea4-b096-bb247d0661ae",
    "avgPrice": "",
    "lastPriceOnCreated": "160995.3",
    "orderStatus": "New",
    "cumExecValue": "0",
    "cumFeeDetail": {},
    "price": "102000",
    "createdTime": "1758189775648",
    "timeInForce": "GTC",
    "leavesValue": "102",
    "updatedTime": "1758189775651",
    "side": "Buy",
    "cumExecFee": "0",
    "leavesQty": "0.001",
    "cumExecQty": "0",
    "reduceOnly": False,
    "marketUnit": "",
}

CONDITIONAL_UNTRIGGERED: Raw = {  # the recorded order, with the fields of a conditional one (module doc)
    **CLOSED_REDUCE_ONLY_SELL,
    "orderLinkId": "wd-a1b2c3-0123456789ab-s1",
    "orderStatus": "Untriggered",
    "avgPrice": "0",
    "cumExecValue": "0",
    "cumExecQty": "0",
    "cumExecFee": "0",
    "cumFeeDetail": {},
    "leavesQty": "0.001",
    "triggerPrice": "120000",
    "triggerDirection": 2,
    "triggerBy": "MarkPrice",
    "stopOrderType": "Stop",
    "closeOnTrigger": True,
    "timeInForce": "GTC",
}

POSITION_LONG: Raw = {  # fetchPositions, "Fetch linear position"
    "symbol": "LTCUSDT",
    "leverage": "6",
    "autoAddMargin": "0",
    "avgPrice": "64.59947917",
    "liqPrice": "",
    "riskLimitValue": "200000",
    "takeProfit": "",
    "positionValue": "77.519375",
    "isReduceOnly": False,
    "tpslMode": "Full",
    "riskId": "71",
    "trailingStop": "0",
    "unrealisedPnl": "7.800625",
    "markPrice": "71.1",
    "adlRankIndicator": "2",
    "cumRealisedPnl": "-51.90142002",
    "positionMM": "0.81072399",
    "createdTime": "1677168085779",
    "positionIdx": "0",
    "positionIM": "12.95542633",
    "seq": "15411084098",
    "updatedTime": "1699948800031",
    "side": "Buy",
    "bustPrice": "",
    "positionBalance": "11.699649",
    "leverageSysUpdatedTime": "",
    "size": "1.2",
    "positionStatus": "Normal",
    "mmrSysUpdatedTime": "1698293363950",
    "stopLoss": "",
    "tradeMode": "0",
}

POSITION_FLAT: Raw = {  # fetchPosition, "linear position" (asked by symbol: shown though flat)
    **POSITION_LONG,
    "avgPrice": "0",
    "positionValue": "",
    "unrealisedPnl": "",
    "markPrice": "68",
    "adlRankIndicator": "0",
    "positionMM": "0",
    "positionIM": "0",
    "side": "",
    "positionBalance": "0",
    "size": "0",
}

EXECUTION_FUNDING: Raw = {  # fetchMyTrades, "Swap private trade": a funding payment, not a fill
    "symbol": "LTCUSDT",
    "orderType": "UNKNOWN",
    "underlyingPrice": "",
    "orderLinkId": "",
    "orderId": "4dbe586c-8706-4d73-a3b0-f60a60955e95",
    "stopOrderType": "UNKNOWN",
    "execTime": "1699948800000",
    "feeRate": "0.0001",
    "tradeIv": "",
    "blockTradeId": "",
    "markPrice": "72.25",
    "execPrice": "72.25",
    "markIv": "",
    "orderQty": "0",
    "orderPrice": "0",
    "execValue": "86.7",
    "closedSize": "0",
    "execType": "Funding",
    "seq": "15411084098",
    "side": "Buy",
    "indexPrice": "",
    "leavesQty": "0",
    "isMaker": False,
    "execFee": "0.00867",
    "execId": "6dff7827-9774-4881-b275-d2b9eec1ce9b",
    "execQty": "1.2",
}

EXECUTION_TRADE_WS: Raw = {  # bybit.py parse_trade, "watchMyTrades execution" (the `execution` topic)
    "category": "linear",
    "symbol": "BTCUSDT",
    "closedSize": "0",
    "execFee": "0.0679239",
    "execId": "135dbae5-cbed-5275-9290-3956bb2ed907",
    "execPrice": "123498",
    "execQty": "0.001",
    "execType": "Trade",
    "execValue": "123.498",
    "feeRate": "0.00055",
    "tradeIv": "",
    "markIv": "",
    "blockTradeId": "",
    "markPrice": "122392",
    "indexPrice": "",
    "underlyingPrice": "",
    "leavesQty": "0",
    "orderId": "aee7453a-a100-465f-857a-3db780e9329a",
    "orderLinkId": "",
    "orderPrice": "123615.9",
    "orderQty": "0.001",
    "orderType": "Market",
    "stopOrderType": "UNKNOWN",
    "side": "Buy",
    "execTime": "1757837580469",
    "isLeverage": "0",
    "isMaker": False,
    "seq": 9517074055,
    "marketUnit": "",
    "execPnl": "0",
    "createType": "CreateByUser",
    "extraFees": [],
    "feeCoin": "USDT",
}

TICKER_SNAPSHOT: Raw = {  # ws/bybit.json, watchTicker "linear swap ticker": the snapshot's data
    "symbol": "BTCUSDT",
    "tickDirection": "ZeroMinusTick",
    "price24hPcnt": "-0.00506",
    "lastPrice": "63958.60",
    "prevPrice24h": "64283.90",
    "highPrice24h": "64477.00",
    "lowPrice24h": "63183.10",
    "prevPrice1h": "64246.90",
    "markPrice": "63958.60",
    "indexPrice": "63986.67",
    "openInterest": "57798.137",
    "openInterestValue": "3696687925.13",
    "turnover24h": "3947254153.7179",
    "volume24h": "61874.6390",
    "fundingIntervalHour": "8",
    "fundingCap": "0.005",
    "singleOpenInterest": "28899.069",
    "singleOpenInterestValue": "1848343994.54",
    "nextFundingTime": "1786550400000",
    "fundingRate": "0.0000544",
    "bid1Price": "63958.60",
    "bid1Size": "6.907",
    "ask1Price": "63958.70",
    "ask1Size": "2.750",
    "preOpenPrice": "",
    "preQty": "",
    "curPreListingPhase": "",
}
TICKER_DELTA: Raw = {"symbol": "BTCUSDT", "indexPrice": "63986.66"}  # the next push: no markPrice in it


async def offline() -> Any:
    """An unmodified ccxt.pro.bybit with the recorded instruments loaded (no keys, no network)."""
    client = ccxt.pro.bybit({"options": {"fetchMarkets": {"types": ["linear"]}}})

    async def instruments_info(params: dict[str, Any]) -> Raw:
        listed = (
            []
            if params.get("status") == "PreLaunch"
            else [INSTRUMENT_BTC, INSTRUMENT_LTC, INSTRUMENT_DELIVERY, INSTRUMENT_USDC_PERP]
        )
        return {
            "retCode": 0,
            "retMsg": "OK",
            "result": {"category": "linear", "list": listed, "nextPageCursor": ""},
        }

    client.publicGetV5MarketInstrumentsInfo = instruments_info
    await client.load_markets()
    return client
