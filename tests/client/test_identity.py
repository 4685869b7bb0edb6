"""Identity: anonymous ids, identify/alias stitching, reset, and isolation between contexts."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

import responses

from sankofa_sdk import Client

from ..conftest import BATCH_URL, sent_operations

MakeClient = Callable[..., Client]


def ops(rsps: responses.RequestsMock) -> list[tuple[str, dict[str, Any]]]:
    return [(op["type"], op["payload"]) for op in sent_operations(rsps)]


def test_anonymous_then_identify_sends_one_alias_then_traits(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    client = make_client()
    client.track("Viewed Pricing")
    anon = client.distinct_id
    client.identify("user_42", {"email": "ada@example.com"})
    client.identify("user_42")  # again: no second alias
    client.track("Signed In")
    assert client.flush(10)
    sent = ops(rsps)
    assert [kind for kind, _ in sent] == ["track", "alias", "people", "track"]
    assert sent[0][1]["distinct_id"] == anon
    assert sent[1][1]["alias_id"] == anon and sent[1][1]["distinct_id"] == "user_42"
    assert sent[2][1] == {
        **sent[2][1],
        "distinct_id": "user_42",
        "properties": {"email": "ada@example.com"},
    }
    assert sent[3][1]["distinct_id"] == "user_42"


def test_identify_before_any_anonymous_call_sends_no_alias(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    client = make_client()
    client.identify("user_42")
    client.track("Signed In")
    assert client.flush(10)
    assert [kind for kind, _ in ops(rsps)] == ["track"]


def test_identify_with_explicit_anonymous_id_aliases_it(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    client = make_client()
    client.identify("user_42", anonymous_id="browser-anon-7")
    assert client.flush(10)
    ((kind, payload),) = ops(rsps)
    assert kind == "alias" and payload["alias_id"] == "browser-anon-7"


def test_known_user_is_never_aliased_to_another_known_user(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    client = make_client()
    client.identify("user_a")
    client.track("A did")
    client.identify("user_b")
    client.track("B did")
    assert client.flush(10)
    assert [(k, p["distinct_id"]) for k, p in ops(rsps)] == [
        ("track", "user_a"),
        ("track", "user_b"),
    ]


def test_reset_starts_a_fresh_anonymous_identity(make_client: MakeClient) -> None:
    client = make_client(send=False)
    first = client.distinct_id
    client.identify("user_42")
    assert client.distinct_id == "user_42"
    client.reset()
    assert client.distinct_id not in (first, "user_42")
    assert len(client.distinct_id) == 36


def test_explicit_distinct_id_leaves_the_context_alone(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    client = make_client()
    client.identify("signed_in_user")
    client.people_set({"plan": "pro"}, distinct_id="cus_customer_9")
    client.track("Invoice Paid", distinct_id="cus_customer_9")
    assert client.distinct_id == "signed_in_user"
    client.track("Clicked")
    assert client.flush(10)
    assert [p["distinct_id"] for _, p in ops(rsps)] == [
        "cus_customer_9",
        "cus_customer_9",
        "signed_in_user",
    ]


def test_context_block_scopes_identity_and_restores_it(make_client: MakeClient) -> None:
    client = make_client(send=False)
    client.identify("outer_user")
    with client.context() as inner:
        assert client.distinct_id == inner.distinct_id != "outer_user"
        client.identify("inner_user")
        with client.context("nested_user"):
            assert client.distinct_id == "nested_user"
        assert client.distinct_id == "inner_user"
    assert client.distinct_id == "outer_user"


def test_threads_identifying_different_users_never_mix(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    client = make_client(flush_at=50)
    barrier = threading.Barrier(16)

    def user_session(n: int) -> None:
        barrier.wait()
        client.track("Landing")
        client.identify(f"thread_user_{n}", {"n": n})
        for i in range(50):
            client.track("Step", {"owner": f"thread_user_{n}", "i": i})
        client.reset()
        client.track("After Sign Out", {"owner": f"thread_user_{n}"})

    threads = [threading.Thread(target=user_session, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.flush(20)
    sent = ops(rsps)
    steps = [p for k, p in sent if k == "track" and p["event_name"] == "Step"]
    assert len(steps) == 16 * 50
    assert all(p["distinct_id"] == p["properties"]["owner"] for p in steps)
    aliases = [p for k, p in sent if k == "alias"]
    assert sorted(p["distinct_id"] for p in aliases) == sorted(
        f"thread_user_{n}" for n in range(16)
    )
    assert len({p["alias_id"] for p in aliases}) == 16
    for p in (p for k, p in sent if k == "track" and p["event_name"] == "After Sign Out"):
        assert p["distinct_id"] != p["properties"]["owner"]


def test_asyncio_tasks_identifying_different_users_never_mix(
    rsps: responses.RequestsMock, make_client: MakeClient
) -> None:
    rsps.add(responses.POST, BATCH_URL, status=200)
    client = make_client(flush_at=100)

    async def request(n: int) -> None:
        client.track("Landing")
        await asyncio.sleep(0)  # let the other tasks interleave
        client.identify(f"task_user_{n}")
        await asyncio.sleep(0)
        for i in range(5):
            client.track("Step", {"owner": f"task_user_{n}", "i": i})
            await asyncio.sleep(0)

    async def main() -> None:
        client.identify("parent_user")
        await asyncio.gather(*(request(n) for n in range(200)))
        assert client.distinct_id == "parent_user"  # children's identify did not leak upward

    asyncio.run(main())
    assert client.flush(20)
    sent = ops(rsps)
    steps = [p for k, p in sent if k == "track" and p["event_name"] == "Step"]
    assert len(steps) == 1000 and all(p["distinct_id"] == p["properties"]["owner"] for p in steps)
    # Each task inherited the parent's known identity, so no task aliases anything.
    assert [k for k, _ in sent if k == "alias"] == []
    assert {p["distinct_id"] for k, p in sent if k == "track" and p["event_name"] == "Landing"} == {
        "parent_user"
    }
