"""``Client.context(anonymous_id=...)``: seeding a context with a browser's anonymous id."""

from __future__ import annotations

from typing import Callable

import pytest

import sankofa_sdk
from sankofa_sdk import Client, ValidationError

from .conftest import Backend, deliver, event_names

BROWSER_ID = "0b7f6c1e-browser-anon-4d2a"


def test_identify_in_a_seeded_context_stitches_the_seeded_id(
    client: Client, backend: Backend
) -> None:
    with client.context(anonymous_id=BROWSER_ID) as identity:
        assert identity.anonymous_id == BROWSER_ID and not identity.identified
        assert client.distinct_id == BROWSER_ID
        client.identify("user_seeded_1")  # no call under the seeded id in this context
        client.track("Signed In")
    deliver(client, backend)
    assert backend.aliases() == [(BROWSER_ID, "user_seeded_1")]
    person = backend.get_person("user_seeded_1")
    assert person is not None and BROWSER_ID in person["aliases"]
    assert event_names(backend, BROWSER_ID) == ["Signed In"]


def test_a_seeded_context_tracks_under_the_seeded_id_and_ends_with_the_block(
    client: Client, backend: Backend
) -> None:
    outer = client.distinct_id
    with client.context(anonymous_id=BROWSER_ID):
        client.track("Viewed Pricing")
        client.reset()
        fresh = client.distinct_id
        assert fresh not in (BROWSER_ID, outer)
    assert client.distinct_id == outer
    deliver(client, backend)
    assert [e["distinct_id"] for e in backend.events()] == [BROWSER_ID]
    assert fresh != BROWSER_ID


def test_known_and_anonymous_id_together_make_a_known_context_without_alias(
    client: Client, backend: Backend
) -> None:
    with client.context("user_seeded_2", anonymous_id=BROWSER_ID) as identity:
        # the given anonymous id counts as used, but a known context never aliases it
        assert identity == ("user_seeded_2", BROWSER_ID, True, True)
        client.identify("user_seeded_2")
        client.track("Opened App")
    deliver(client, backend)
    assert backend.aliases() == []
    assert event_names(backend, "user_seeded_2") == ["Opened App"]


@pytest.mark.parametrize("bad", ["a", "", "gzip-user", 3.5])
def test_an_anonymous_id_the_engine_would_discard_is_refused(
    make_client: Callable[..., Client], bad: object
) -> None:
    client = make_client(send=False)
    with pytest.raises(ValidationError), client.context(anonymous_id=bad):  # type: ignore[arg-type]
        pass


def test_module_level_context_passes_the_anonymous_id(backend: Backend) -> None:
    sankofa_sdk.init(api_key=backend.api_key, host=backend.url, flush_interval=0.05)
    try:
        with sankofa_sdk.context(anonymous_id=BROWSER_ID) as identity:
            assert identity is not None and identity.distinct_id == BROWSER_ID
            sankofa_sdk.identify("user_seeded_3", {"plan": "pro"})
        assert sankofa_sdk.flush(10)
    finally:
        sankofa_sdk.shutdown()
    assert backend.wait_until_applied(10)
    assert backend.aliases() == [(BROWSER_ID, "user_seeded_3")]
