"""`Chain.send`: what the sidecar answers when the RPC fails around a send. Only a refused
connection proves nothing was sent (503 unavailable); a send that timed out, or a confirmation
wait that failed after the bytes went out, is `pending` (unknown: warden settles it by the
signature), never "nothing was sent". A fake RPC connection: no chain is needed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from warden_drift_sidecar import protocol as p
from warden_drift_sidecar.server import Chain

SIGNATURE = "5" * 88


class Connection:
    def __init__(self, *, send: BaseException | None = None, status: BaseException | None = None) -> None:
        self.send_error, self.status_error = send, status
        self.sent = 0

    async def send_raw_transaction(self, raw: bytes, opts: Any) -> None:
        self.sent += 1
        if self.send_error is not None:
            raise self.send_error

    async def get_signature_statuses(self, sigs: Any, search_transaction_history: bool) -> Any:
        assert self.status_error is not None
        raise self.status_error


def chain(connection: Connection) -> Chain:
    made = Chain.__new__(Chain)
    made.connection = connection
    made.prepared = {SIGNATURE: (b"signed", 1000)}
    made.sent = set()
    return made


@pytest.mark.parametrize(
    "error", [TimeoutError(), OSError("connection reset"), httpx.ReadTimeout("read timed out")]
)
def test_a_confirmation_wait_that_fails_after_the_send_is_pending(error: BaseException) -> None:
    answer = asyncio.run(chain(Connection(status=error)).send(SIGNATURE))
    assert answer == {"signature": SIGNATURE, "status": p.PENDING}


@pytest.mark.parametrize(
    "error", [TimeoutError(), OSError("connection reset"), httpx.ReadTimeout("read timed out")]
)
def test_a_send_that_may_have_reached_the_rpc_is_pending(error: BaseException) -> None:
    answer = asyncio.run(chain(Connection(send=error)).send(SIGNATURE))
    assert answer == {"signature": SIGNATURE, "status": p.PENDING}


@pytest.mark.parametrize("error", [ConnectionRefusedError("refused"), httpx.ConnectError("refused")])
def test_only_a_refused_connection_is_unavailable(error: BaseException) -> None:
    with pytest.raises(p.ProtocolError) as raised:
        asyncio.run(chain(Connection(send=error)).send(SIGNATURE))
    assert raised.value.code == p.UNAVAILABLE


def test_solana_py_s_wrapped_errors_are_judged_by_their_cause() -> None:
    from solana.exceptions import SolanaRpcException

    def wrapped(cause: Exception) -> SolanaRpcException:
        try:
            raise SolanaRpcException(cause, None, None, "SendRawTransaction") from cause
        except SolanaRpcException as exc:
            return exc

    answer = asyncio.run(chain(Connection(send=wrapped(httpx.ReadTimeout("slow")))).send(SIGNATURE))
    assert answer["status"] == p.PENDING
    with pytest.raises(p.ProtocolError) as raised:
        asyncio.run(chain(Connection(send=wrapped(httpx.ConnectError("refused")))).send(SIGNATURE))
    assert raised.value.code == p.UNAVAILABLE


class Resent(Connection):
    """The first send goes out (its confirmation is not seen in time); the next is refused by
    preflight, as an RPC refuses bytes that already landed ("This transaction has already been
    processed") or whose blockhash it does not know yet."""

    async def send_raw_transaction(self, raw: bytes, opts: Any) -> None:
        from solana.rpc.core import RPCException

        self.sent += 1
        if self.sent > 1:
            raise RPCException("Transaction simulation failed: This transaction has already been processed")

    async def get_signature_statuses(self, sigs: Any, search_transaction_history: bool) -> Any:
        return type("Statuses", (), {"value": [None]})()  # not seen (yet) at this node

    async def get_block_height(self, commitment: str) -> Any:
        return type("Height", (), {"value": 10})()  # far below the last valid block height


def test_bytes_sent_before_that_preflight_refuses_are_pending_never_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """warden sends the same signed bytes again while their outcome is unknown (never a new
    transaction while these could land). A preflight refusal of that resend says nothing about
    the first: it may have landed ("already processed") or still land. Answering `failed` made
    warden release the u8 and build a NEW transaction for the same order: the order twice."""
    monkeypatch.setattr("warden_drift_sidecar.server.CONFIRM_WAIT", 0.0)
    made = chain(Resent())
    assert asyncio.run(made.send(SIGNATURE))["status"] == p.PENDING
    again = asyncio.run(made.send(SIGNATURE))
    assert again["status"] == p.PENDING, again


def test_a_first_send_that_preflight_refuses_is_failed() -> None:
    """Bytes never forwarded before, refused by preflight (the program refused the simulation):
    they cannot land, warden may build a new transaction."""
    from solana.rpc.core import RPCException

    answer = asyncio.run(chain(Connection(send=RPCException("InsufficientCollateral"))).send(SIGNATURE))
    assert answer["status"] == p.FAILED
