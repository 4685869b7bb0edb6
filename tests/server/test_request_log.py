"""The request log (``server.requests``): what each record says about the request and its answer."""

from __future__ import annotations

import time

import pytest

from sankofa_sdk.server import ReferenceServer

from .conftest import batch, batch_ok, post, request, send_batch, track


def test_records_carry_project_time_answer_and_sequence(server: ReferenceServer) -> None:
    before = time.time()
    send_batch(server, track())
    post(server, "/api/v1/track", b"{}", key=None)
    after = time.time()

    first, second = server.requests
    assert (first.project_id, first.answer) == (server.project_id, batch_ok(server, n=1, events=1))
    assert (second.project_id, second.answer) == (None, b'{"error":"Missing API Key","ok":false}')
    assert before <= first.received_at <= second.received_at <= after
    assert second.sequence == first.sequence + 1


def test_a_reset_connection_is_recorded_without_an_answer(server: ReferenceServer) -> None:
    server.faults.reset_connections(1)
    with pytest.raises(ConnectionError):
        send_batch(server, track())

    (record,) = server.requests
    assert (record.status, record.answer, record.fault) == (None, b"", True)


def test_a_body_over_the_cap_is_recorded_though_never_read(fresh: ReferenceServer) -> None:
    too_big = b"x" * (fresh.max_body_bytes + 1)

    reply = post(fresh, "/api/v1/batch", too_big)

    assert reply.status == 413
    (record,) = fresh.requests
    assert (record.method, record.path, record.status) == ("POST", "/api/v1/batch", 413)
    assert record.answer == reply.body


def test_other_projects_requests_name_their_project(fresh: ReferenceServer) -> None:
    other = fresh.add_project("Other", project_id="proj_other")

    post(fresh, "/api/v1/batch", batch(track()), key=other.test_api_key)
    request(fresh, "GET", "/health")

    assert [(r.project_id, r.environment) for r in fresh.requests] == [
        ("proj_other", "test"),
        (None, None),
    ]
