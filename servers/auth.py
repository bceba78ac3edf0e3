"""Who may call a server: the bearer token and the WebSocket's Origin.

Kept out of the ASGI guard (``servers.app``) so both rules read, and test, alone.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

__all__ = ["LOOPBACK_NAMES", "bearer_matches", "origin_allowed"]

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def bearer_matches(header: bytes, token: bytes) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``.

    The scheme is case-insensitive (RFC 7235 section 2.1: ``bearer`` and ``BEARER``
    are ``Bearer``), and one or more spaces may follow it; the token is compared
    in constant time, so the comparison time does not reveal how much of a guess
    was right.
    """
    scheme, _, credentials = header.partition(b" ")
    if scheme.lower() != b"bearer":
        # Still compare, so a wrong scheme takes the time a wrong token does.
        hmac.compare_digest(header, token)
        return False
    return hmac.compare_digest(credentials.lstrip(b" "), token)


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_allowed(origin: str, host: str, allowed: tuple[str, ...]) -> bool:
    """Whether a WebSocket upgrade with this ``Origin`` header may proceed.

    Browsers send ``Origin`` on every WebSocket upgrade and let any page open a
    socket to any address, loopback included; programs (palaestra's clients,
    aiohttp, websockets) send none. So a request without ``Origin`` passes, and
    one with it passes only when the origin is listed in ``allowed`` (``"*"``
    allows all), or is this very server on a loopback address (a page the server
    itself would serve: same host and port as the ``Host`` header, and that host
    loopback, which also defeats DNS rebinding, whose ``Host`` is the attacker's
    name).

    Args:
        origin: The ``Origin`` header ("" when absent).
        host: The ``Host`` header.
        allowed: Origins allowed besides, as ``scheme://host[:port]``.
    """
    if not origin:
        return True
    if "*" in allowed or origin.rstrip("/").lower() in {a.rstrip("/").lower() for a in allowed}:
        return True
    try:
        parts = urlsplit(origin)
        netloc = parts.netloc.lower()
        origin_host = parts.hostname or ""
    except ValueError:
        return False
    same_host = netloc == host.lower()
    return parts.scheme in ("http", "https") and same_host and _is_loopback(origin_host)
