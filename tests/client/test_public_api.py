"""The package's public surface: what ``__all__`` promises is there, typed, and importable."""

from __future__ import annotations

import asyncio
import logging
import typing

import pytest

import sankofa_sdk
from sankofa_sdk import Client, ClientStats


def test_everything_in___all___is_importable_from_the_package() -> None:
    for name in sankofa_sdk.__all__:
        assert getattr(sankofa_sdk, name) is not None, name
    assert sorted(sankofa_sdk.__all__) == sankofa_sdk.__all__


def test_the_types_an_app_annotates_with_are_public() -> None:
    # Before, Identity and ErrorHandler were importable only from private modules.
    for name in ("Identity", "ErrorHandler", "ClientStats"):
        assert name in sankofa_sdk.__all__


def test_stats_has_every_key_its_typed_dict_declares() -> None:
    client = Client("sk_test_x", send=False)
    try:
        stats = client.stats()
        assert set(stats) == set(typing.get_type_hints(ClientStats))
    finally:
        client.shutdown()


def test_flush_waits_ten_seconds_by_default() -> None:
    # A request handler must not block for max_retry_time (300 s) against a dead engine.
    import inspect

    assert inspect.signature(Client.flush).parameters["timeout"].default == 10.0
    assert inspect.signature(sankofa_sdk.flush).parameters["timeout"].default == 10.0


def test_flush_on_an_event_loop_thread_hints_at_aflush_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Client("sk_test_x", host="http://127.0.0.1:9", send=True, max_retry_time=1)

    async def handler() -> None:
        client.flush(0)
        client.flush(0)
        await client.aflush(0)

    try:
        with caplog.at_level(logging.WARNING, logger="sankofa_sdk"):
            asyncio.run(handler())
        hints = [r for r in caplog.records if "aflush" in r.getMessage()]
        assert len(hints) == 1
    finally:
        client.shutdown(timeout=0.1)


def test_init_is_typed_with_every_option_of_the_client() -> None:
    import inspect

    from sankofa_sdk._default import ClientOptions

    parameters = inspect.signature(Client.__init__).parameters
    options = {n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(typing.get_type_hints(ClientOptions)) == options - {"clock"}


def test_segment_argument_order_gets_a_hint() -> None:
    client = Client("sk_test_x", send=False, strict=True)
    try:
        with pytest.raises(sankofa_sdk.ValidationError, match="track\\(event_name, properties"):
            client.track("user_42", "Signed In")  # type: ignore[arg-type]
    finally:
        client.shutdown()


def test_context_refuses_an_unreadable_id_with_a_validation_error() -> None:
    class Unreadable(str):
        def __str__(self) -> str:
            raise RuntimeError("no")

    client = Client("sk_test_x", send=False)
    try:
        with pytest.raises(sankofa_sdk.ValidationError) as raised, client.context(Unreadable("u1")):
            pass
        assert isinstance(raised.value.__cause__, RuntimeError)
    finally:
        client.shutdown()
