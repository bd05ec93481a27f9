"""Binance USD-M account shapes: wallet, positionRisk v3 and account v3 (reference 3.3, 3.4)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from warden.adapters.sim.ledger import SimPosition
from warden.adapters.sim.server.shapes import START_BALANCE, Json, market_id, num
from warden.domain.values import ZERO


def wallet_balance(positions: Iterable[SimPosition]) -> Decimal:
    return START_BALANCE + sum((p.realized_pnl - p.fees for p in positions), ZERO)


def position_risk(
    position: SimPosition,
    mark: Decimal,
    now_ms: int,
    *,
    leverage: int = 20,
    margin_mode: str = "cross",
    liquidation: Decimal | None = None,
    version: int = 3,
) -> Json:
    """positionRisk v3 (the reference's fields only: no `leverage`, no `marginType`), or with
    `version=2` also v2's `leverage` / `marginType`. An isolated position shows its own wallet
    (`isolatedWallet`, the initial margin) and `isolatedMargin` (wallet + uPnL), which is how
    ccxt tells isolated from cross in v3."""
    qty = position.qty
    upnl = qty * (mark - position.entry_price) if qty else ZERO
    notional = qty * mark
    margin = abs(notional) / leverage
    isolated = margin_mode == "isolated" and qty != 0
    risk: Json = {
        "symbol": market_id(position.symbol),
        "positionSide": "BOTH",
        "positionAmt": num(qty),
        "entryPrice": num(position.entry_price),
        "breakEvenPrice": num(position.entry_price),
        "markPrice": num(mark),
        "unRealizedProfit": num(upnl),
        "liquidationPrice": num(liquidation) if liquidation is not None else "0",
        "isolatedMargin": num(margin + upnl) if isolated else "0",
        "notional": num(notional),
        "marginAsset": "USDT",
        "isolatedWallet": num(margin) if isolated else "0",
        "initialMargin": num(margin),
        "maintMargin": num(abs(notional) * Decimal("0.004")),
        "positionInitialMargin": num(margin),
        "openOrderInitialMargin": "0",
        "adl": 0,
        "bidNotional": "0",
        "askNotional": "0",
        "updateTime": now_ms,
    }
    if version == 2:
        risk |= {"leverage": str(leverage), "marginType": margin_mode, "isolated": isolated}
    return risk


def account(positions: list[tuple[SimPosition, Decimal, int, str]], now_ms: int) -> Json:
    """`positions`: (position, mark, leverage, margin mode) of every symbol."""
    wallet = wallet_balance(p for p, _, _, _ in positions)
    risks = [
        position_risk(p, m, now_ms, leverage=lev, margin_mode=mode, version=2)
        for p, m, lev, mode in positions
        if not p.flat
    ]
    upnl = sum((Decimal(r["unRealizedProfit"]) for r in risks), ZERO)
    used = sum((Decimal(r["initialMargin"]) for r in risks), ZERO)
    margin_balance = wallet + upnl
    available = margin_balance - used
    asset = {
        "asset": "USDT",
        "walletBalance": num(wallet),
        "unrealizedProfit": num(upnl),
        "marginBalance": num(margin_balance),
        "maintMargin": "0",
        "initialMargin": num(used),
        "positionInitialMargin": num(used),
        "openOrderInitialMargin": "0",
        "crossWalletBalance": num(wallet),
        "crossUnPnl": num(upnl),
        "availableBalance": num(available),
        "maxWithdrawAmount": num(available),
        "updateTime": now_ms,
    }
    return {
        "totalInitialMargin": num(used),
        "totalMaintMargin": "0",
        "totalWalletBalance": num(wallet),
        "totalUnrealizedProfit": num(upnl),
        "totalMarginBalance": num(margin_balance),
        "totalPositionInitialMargin": num(used),
        "totalOpenOrderInitialMargin": "0",
        "totalCrossWalletBalance": num(wallet),
        "totalCrossUnPnl": num(upnl),
        "availableBalance": num(available),
        "maxWithdrawAmount": num(available),
        "assets": [asset],
        "positions": [
            {
                "symbol": r["symbol"],
                "positionSide": "BOTH",
                "positionAmt": r["positionAmt"],
                "unrealizedProfit": r["unRealizedProfit"],
                "isolatedMargin": r["isolatedMargin"],
                "notional": r["notional"],
                "isolatedWallet": r["isolatedWallet"],
                "isolated": r["isolated"],
                "leverage": r["leverage"],
                "initialMargin": r["initialMargin"],
                "maintMargin": r["maintMargin"],
                "updateTime": now_ms,
            }
            for r in risks
        ],
    }
