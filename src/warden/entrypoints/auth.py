"""Who may call the API: tokens, the dashboard's session cookie, the webhook's source address.

Three ways to present a token, checked in this order:

- `Authorization: Bearer <token>` (the CLI, scripts);
- the dashboard's session cookie, set by its login (HttpOnly, SameSite=Strict); it holds an
  HMAC of the token, never the token itself, so it is useless anywhere else. It reads from
  anywhere, but changes something only from warden's own page (`from_own_page`): SameSite
  ignores ports, so a page on another port of the same host (another local app) is the same
  *site*, and the browser sends the cookie with the forms and fetches it makes to warden;
- `"secret": "<token>"` in a JSON body (TradingView cannot set headers).

The API token may do everything; the optional read token (`api_read_token`) only reads.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from enum import IntEnum
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.requests import HTTPConnection

from warden.config import Settings
from warden.entrypoints.token import token_matches

SESSION_COOKIE = "warden_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Access(IntEnum):
    NONE = 0
    READ = 1
    FULL = 2


def session_value(token: SecretStr, access: Access) -> str:
    """The cookie for a token: an HMAC keyed by the token, so the cookie reveals nothing."""
    label = b"warden-dashboard-session/" + access.name.lower().encode()
    return hmac.new(token.get_secret_value().encode(), label, hashlib.sha256).hexdigest()


def token_access(given: str | None, settings: Settings) -> Access:
    if token_matches(given, settings.api_token):
        return Access.FULL
    if token_matches(given, settings.api_read_token):
        return Access.READ
    return Access.NONE


def cookie_access(value: str | None, settings: Settings) -> Access:
    if not value:
        return Access.NONE
    for token, access in ((settings.api_token, Access.FULL), (settings.api_read_token, Access.READ)):
        if token is not None and hmac.compare_digest(value.encode(), session_value(token, access).encode()):
            return access
    return Access.NONE


def request_access(conn: HTTPConnection, settings: Settings, body: object = None) -> Access:
    """The strongest access any of the caller's credentials grants."""
    scheme, _, bearer = conn.headers.get("authorization", "").partition(" ")
    found = Access.NONE
    if scheme.lower() == "bearer":
        found = max(found, token_access(bearer.strip(), settings))
    if conn.scope.get("method", "GET") in SAFE_METHODS or from_own_page(conn):
        found = max(found, cookie_access(conn.cookies.get(SESSION_COOKIE), settings))
    secret = body.get("secret") if isinstance(body, dict) else None
    if isinstance(secret, str):
        found = max(found, token_access(secret, settings))
    return found


def from_own_page(conn: HTTPConnection) -> bool:
    """Whether a browser sent this request from a page warden served: its `Origin` (which
    browsers put on every POST and PATCH: fetch, htmx, a form) names the host it is sent to.
    Host and port only, so a TLS proxy in front (https Origin, http to warden) still counts."""
    origin, host = conn.headers.get("origin"), conn.headers.get("host")
    if not origin or not host:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def foreign_cookie(conn: HTTPConnection, settings: Settings) -> bool:
    """A valid session cookie on a request that changes something, sent from another page."""
    return (
        conn.scope.get("method", "GET") not in SAFE_METHODS
        and not from_own_page(conn)
        and cookie_access(conn.cookies.get(SESSION_COOKIE), settings) is not Access.NONE
    )


def networks(entries: list[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def _address(text: str | None) -> IPAddress | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    # A dual-stack listener (host = "::") sees an IPv4 peer as ::ffff:a.b.c.d: that is a.b.c.d.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address


def _within(address: IPAddress, nets: list[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in nets)


def client_address(conn: HTTPConnection, trusted_proxies: list[IPNetwork]) -> IPAddress | None:
    """The caller's address: the peer, or — when the peer is a trusted proxy — the nearest
    untrusted hop of X-Forwarded-For (read right to left). None when it cannot be told."""
    address = _address(conn.client.host if conn.client else None)
    if address is None or not _within(address, trusted_proxies):
        return address
    forwarded = conn.headers.get("x-forwarded-for")
    if not forwarded:
        return address
    for hop in reversed(forwarded.split(",")):
        parsed = _address(hop)
        if parsed is None:
            return None
        address = parsed
        if not _within(address, trusted_proxies):
            break
    return address


def source_allowed(conn: HTTPConnection, settings: Settings) -> tuple[bool, str]:
    """Whether a signal may come from this caller's address (always, without an allowlist)."""
    if not settings.webhook_allow_ips:
        return True, ""
    address = client_address(conn, networks(settings.trusted_proxies))
    if address is not None and _within(address, networks(settings.webhook_allow_ips)):
        return True, str(address)
    return False, "unknown" if address is None else str(address)
