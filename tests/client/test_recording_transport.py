"""``sankofa_sdk.testing.RecordingTransport``: the transport apps (and these tests) use instead
of HTTP, and the ``transport=`` option that takes it."""

from __future__ import annotations

import textwrap

import pytest

import sankofa_sdk.testing
from sankofa_sdk import Client
from sankofa_sdk.testing import RecordingTransport, Reply

from ..conftest import API_KEY


def docstring_example(doc: str) -> str:
    """The code block after the first ``::`` of ``doc``, dedented."""
    _, _, after = doc.partition("::\n")
    lines: list[str] = []
    for line in after.splitlines():
        if line and not line.startswith(" "):
            break  # back to the prose
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip() + "\n"


def test_the_module_docstring_example_works_as_written() -> None:
    doc = sankofa_sdk.testing.__doc__
    assert doc is not None
    example = docstring_example(doc)
    assert "RecordingTransport(Reply(503), Reply(503))" in example  # the block was found
    namespace: dict[str, object] = {}
    try:
        exec(compile(example, "sankofa_sdk/testing.py (docstring)", "exec"), namespace)
    finally:
        client = namespace.get("client")
        if isinstance(client, Client):
            client.shutdown()


def test_a_lost_answer_is_resent_with_the_same_key_and_applied_twice() -> None:
    transport = RecordingTransport(Reply.lost())  # applied, the answer never came; then 200
    client = Client(API_KEY, transport=transport, backoff_base=0.01)
    try:
        client.track("Paid", {"amount": 5}, distinct_id="user_42")
        assert client.flush(5)
    finally:
        client.shutdown()
    assert len(transport.requests) == 2
    first, second = transport.requests
    assert first.key == second.key
    assert first.reply.status is None and first.reply.was_applied
    assert first.body == second.body  # the very same batch
    # An engine that does not deduplicate by Idempotency-Key stores it twice.
    applied = transport.applied_operations()
    assert [op["payload"]["event_name"] for op in applied] == ["Paid", "Paid"]
    assert applied[0] == applied[1]  # same $insert_id: recognisable as one event
    assert transport.sent_operations() == applied
    stats = client.stats()
    assert (stats["delivered"], stats["retried"], stats["dropped"]) == (1, 1, {})


def test_a_reset_connection_is_not_applied() -> None:
    transport = RecordingTransport(Reply.reset())
    client = Client(API_KEY, transport=transport, backoff_base=0.01)
    try:
        client.track("Paid", distinct_id="user_42")
        assert client.flush(5)
    finally:
        client.shutdown()
    assert len(transport.requests) == 2
    assert len(transport.sent_operations()) == 2
    assert len(transport.applied_operations()) == 1


@pytest.mark.parametrize("status", [999, 99, 600, 0])
def test_a_reply_must_be_an_http_status(status: int) -> None:
    with pytest.raises(ValueError, match="HTTP status"):
        Reply(status=status)


def test_a_script_item_must_be_a_reply_or_a_status() -> None:
    with pytest.raises(TypeError, match="Reply or an HTTP status"):
        RecordingTransport("503")  # type: ignore[arg-type]


def test_an_object_that_is_not_a_transport_is_refused_naming_the_missing_calls() -> None:
    with pytest.raises(TypeError) as raised:
        Client(API_KEY, transport=object())  # type: ignore[arg-type]
    message = str(raised.value)
    for call in ("send", "abort", "close", "reset_after_fork"):
        assert call in message
    assert "object" in message


def test_the_transport_is_closed_at_shutdown() -> None:
    transport = RecordingTransport()
    client = Client(API_KEY, transport=transport)
    client.track("Signed In", distinct_id="user_42")
    assert client.flush(5)
    assert not transport.closed
    client.shutdown()
    assert transport.closed
    assert len(transport.applied_operations()) == 1


def test_async_with_delivers_and_shuts_down_without_blocking_the_loop() -> None:
    import asyncio

    transport = RecordingTransport()

    async def main() -> Client:
        async with Client("sk_test", transport=transport) as client:
            client.track("Webhook Received", distinct_id="user_async")
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                ticks += 1

            await asyncio.gather(tick(), client.aflush(5))
            assert ticks == 1
        return client

    client = asyncio.run(main())
    assert [op["payload"]["event_name"] for op in transport.applied_operations()] == [
        "Webhook Received"
    ]
    assert transport.closed and client.stats()["queued"] == 0
