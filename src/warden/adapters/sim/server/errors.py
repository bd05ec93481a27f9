"""The one kind of refusal every face of the server renders: `VenueError`.

Each venue renders its own wire format (Binance: an HTTP error status with
`{"code", "msg"}`; Bybit: HTTP 200 with the `{"retCode", "retMsg", ...}` envelope). The
request middleware catches any `VenueError`, logs `note` and sends `response()`.
"""

from __future__ import annotations

from aiohttp import web


class VenueError(Exception):
    """A refusal in the wire format of one venue; `status` and `note` go to the request log."""

    status: int = 400

    @property
    def note(self) -> str:
        return str(self)

    def response(self) -> web.Response:
        raise NotImplementedError
