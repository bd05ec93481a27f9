"""What the adapter has learned about Binance order ids.

userTrades and ORDER_TRADE_UPDATE name orders by exchange id only, and a fired
conditional order trades under a *new* order id (the algo order's `actualOrderId`,
ALGO_UPDATE's `ai`), whose own client id is not warden's. So every report the adapter
sees teaches it `exchange id -> client id`, and every fired algo order teaches it
`child id -> (algo id, client id)`. Bounded: the oldest entries are forgotten first
(they can be learned again over REST).
"""

from __future__ import annotations

from collections import OrderedDict

from warden.domain.reports import OrderReport

DEFAULT_CAPACITY = 50_000


class OrderIds:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._client: OrderedDict[str, str] = OrderedDict()  # exchange order id -> client id
        self._parent: OrderedDict[str, str] = OrderedDict()  # child order id -> algo order id

    def learn(self, report: OrderReport, child_id: str | None = None) -> None:
        """Remember a report's ids; `child_id` is the order a fired conditional order became."""
        if report.exchange_order_id in self._parent:
            return  # a child order printing its own client id: the algo order's id wins
        self._put(self._client, report.exchange_order_id, report.client_order_id)
        if child_id:
            self._put(self._parent, child_id, report.exchange_order_id)

    def learn_unknown(self, order_id: str, client_id: str) -> None:
        """An order nothing else explains (an outside order): remember its printed client id."""
        if order_id not in self._parent:
            self._put(self._client, order_id, client_id)

    def is_child(self, order_id: str) -> bool:
        return order_id in self._parent

    def attribution(self, order_id: str) -> tuple[str, str] | None:
        """(client id, exchange id) a fill of `order_id` belongs to; a child's fills go to its algo order."""
        parent = self._parent.get(order_id)
        if parent is not None:
            client = self._client.get(parent)
            return None if client is None else (client, parent)
        client = self._client.get(order_id)
        return None if client is None else (client, order_id)

    def _put(self, table: OrderedDict[str, str], key: str, value: str) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self._capacity:
            table.popitem(last=False)
