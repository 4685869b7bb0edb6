"""The decoded-size cap covers the whole body: every gzip member and every listed encoding.

The engine sets no limit on the decoded size (spec section 4); the reference server caps it so
a small compressed body cannot take a test machine's memory. The cap must hold for the total, or
a body of several gzip members (each under the cap) costs a multiple of it.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib

import pytest

from sankofa_sdk.server import ReferenceServer, _encoding
from sankofa_sdk.server._encoding import decode_body

from .conftest import applied, batch, post, track

CAP = 1 << 20  # 1 MiB: small enough to measure, large enough for real bodies
MEMBER = 600 * 1024  # each member alone is under the cap; three are not


STEP = 64 * 1024


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_encoding, "MAX_DECODED_BYTES", CAP)
    monkeypatch.setattr(_encoding, "CHUNK_BYTES", STEP)


def _members(count: int, size: int = MEMBER) -> bytes:
    return b"".join(gzip.compress(b" " * size) for _ in range(count))


def _decoded_with_peak(body: bytes) -> tuple[bytes, int]:
    """``decode_body(body, "gzip")`` and the most memory Python held while it ran."""
    tracemalloc.start()
    try:
        result = decode_body(body, "gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def test_members_under_the_cap_in_total_are_decoded(small_cap: None) -> None:
    assert decode_body(_members(1), "gzip") == b" " * MEMBER


def test_members_over_the_cap_in_total_are_refused(small_cap: None) -> None:
    assert decode_body(_members(3), "gzip") == _encoding.UNDECODABLE


def test_decoding_a_multi_member_bomb_stays_within_the_cap(small_cap: None) -> None:
    body = _members(20)  # 12 MiB decoded if each member had its own cap
    result, peak = _decoded_with_peak(body)
    assert result == _encoding.UNDECODABLE
    # One copy of what was decoded (at most the cap), not two: zlib asked for the whole budget
    # at once holds its output twice, which for a 600 MB bomb peaked near 1 GB.
    assert peak < 1.25 * CAP + 2 * STEP + len(body), peak


def test_a_bomb_in_one_member_peaks_near_the_cap_not_twice_it(small_cap: None) -> None:
    body = gzip.compress(b"\x00" * (8 * CAP))  # 8 MiB decoded from 8 KB
    result, peak = _decoded_with_peak(body)
    assert result == _encoding.UNDECODABLE
    assert peak < 1.25 * CAP + 2 * STEP + len(body), peak


def test_the_cap_counts_every_listed_encoding(small_cap: None) -> None:
    # 700 KiB through two layers: each layer alone is under the cap, both together are not.
    inner = zlib.compress(b" " * (700 * 1024))
    assert decode_body(gzip.compress(inner), "gzip, deflate") == b" " * (700 * 1024)
    padded_member = gzip.compress(b"\x00" * (400 * 1024))
    two_layers = gzip.compress(inner) + padded_member
    # gzip yields inner + 400 KiB (under the cap) and deflate would then yield 700 KiB more.
    assert decode_body(two_layers, "gzip") != _encoding.UNDECODABLE
    assert decode_body(two_layers, "gzip, deflate") == _encoding.UNDECODABLE


def test_many_small_members_are_decoded(small_cap: None) -> None:
    body = b"".join(gzip.compress(b"ab") for _ in range(5000))
    assert decode_body(body, "gzip") == b"ab" * 5000


def test_a_bomb_over_http_is_400_and_nothing_is_stored(
    server: ReferenceServer, small_cap: None
) -> None:
    text = json.dumps(batch(track("user_bomb"))).encode()
    body = gzip.compress(text) + _members(3)
    reply = post(server, "/api/v1/batch", body, {"Content-Encoding": "gzip"})
    assert (reply.status, reply.body) == (400, b'{"error":"Invalid batch payload"}')
    assert applied(server).stats()["events"] == 0
