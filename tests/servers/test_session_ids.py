"""Session ids: 128 random bits, URL-safe, never repeated."""

import re

from palaestra.servers.sessions import _SessionIds


def test_session_ids_are_unique_url_safe_and_128_bits():
    ids = _SessionIds()
    drawn = [ids.next() for _ in range(5000)]  # crosses many refills of the buffer
    assert len(set(drawn)) == len(drawn)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in drawn)  # 16 bytes, base64url
    assert _SessionIds().next() != _SessionIds().next()
