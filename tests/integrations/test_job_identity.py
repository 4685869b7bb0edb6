"""What a job carries from where it was enqueued, and what it makes of it (``_jobs``), without a
runner: the runners' own tests use these through Celery, RQ and Dramatiq."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sankofa_sdk import Client
from sankofa_sdk.integrations._jobs import carried_ids, identity_to_carry, job_identity


def test_nothing_is_carried_from_outside_any_identity(client: Client) -> None:
    assert identity_to_carry(None) is None
    assert identity_to_carry(client) is None


def test_an_identified_context_carries_both_ids(client: Client) -> None:
    with client.context("user_50", anonymous_id="anon-50"):
        assert identity_to_carry(client) == {"distinct_id": "user_50", "anonymous_id": "anon-50"}
        with client.context():
            carried = identity_to_carry(client)
            assert carried is not None and set(carried) == {"anonymous_id"}  # anonymous


def test_a_job_runs_in_what_it_carried_and_gives_the_worker_its_own_back(client: Client) -> None:
    outside = client.distinct_id
    with job_identity(client, {"distinct_id": "user_51", "anonymous_id": "anon-51"}):
        assert identity_to_carry(client) == {"distinct_id": "user_51", "anonymous_id": "anon-51"}
        assert client.distinct_id == "user_51"
    with job_identity(client, None):
        assert identity_to_carry(client) is None  # none until the job needs one
        assert client.distinct_id not in (outside, "user_51")
    assert client.distinct_id == outside


@pytest.mark.parametrize(
    "carried",
    ["user_52", ["user_52"], {"distinct_id": "x"}, {"anonymous_id": {"a": 1}}],
)
def test_an_unusable_carried_identity_is_logged_and_ignored(
    carried: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sankofa_sdk")
    from sankofa_sdk.integrations import _jobs

    _jobs._warnings.reset()
    assert carried_ids(carried) == (None, None)
    assert "unusable sankofa_identity" in caplog.text
