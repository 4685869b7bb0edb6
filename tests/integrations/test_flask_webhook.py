"""examples/flask_webhook.py: a signed billing webhook updates the right person, and only it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sankofa_sdk import Client
from sankofa_sdk.integrations.flask import current_client

from .conftest import Backend, app_traits, deliver, event_names, load_example

flask = pytest.importorskip("flask")

SECRET = "whsec_test_secret"
VISITOR = "anon-visitor-of-the-webhook"


@pytest.fixture
def example() -> Any:
    return load_example("flask_webhook")


def post(app: Any, example: Any, payload: dict[str, Any], signature: Any = None) -> Any:
    body = json.dumps(payload).encode()
    test_client = app.test_client()
    return test_client.post(
        "/webhooks/billing",
        data=body,
        content_type="application/json",
        headers={"X-Billing-Signature": signature or example.sign(body, SECRET)},
    )


def test_a_plan_change_updates_the_mapped_user_and_never_the_request_identity(
    example: Any, client: Client, backend: Backend
) -> None:
    app = example.create_app(client, webhook_secret=SECRET)
    identities: list[tuple[str, bool]] = []

    @app.after_request
    def record_identity(response: flask.Response) -> flask.Response:
        # The request's own identity after the handler: untouched (still anonymous, unused).
        identity = current_client().distinct_id
        identities.append((identity, identity in ("user_42", "user_43")))
        return response

    client.track("Before Webhooks")  # the test's own identity, a third party
    outer = client.distinct_id
    update = {
        "type": "subscription.updated",
        "customer": "cus_Ada0042",
        "plan": "team",
        "previous_plan": "pro",
        "status": "active",
    }
    assert post(app, example, update).status_code == 204
    paid = {"type": "invoice.paid", "customer": "cus_Ada0042", "amount": 4999}
    assert post(app, example, paid).status_code == 204
    assert client.distinct_id == outer

    deliver(client, backend)
    person = backend.get_person("user_42")
    assert person is not None
    assert app_traits(person) == {"plan": "team", "billing_status": "active"}
    assert person["aliases"] == []
    assert event_names(backend, "user_42") == ["Subscription Changed", "Invoice Paid"]
    invoice = backend.events("user_42", event_name="Invoice Paid")[0]
    assert invoice["properties"]["amount"] == 49.99
    assert backend.aliases() == []
    assert backend.get_person("user_43") is None
    assert event_names(backend, outer) == ["Before Webhooks"]
    assert [known for _, known in identities] == [False, False]
    assert all(backend.get_person(identity) is None for identity, _ in identities)


@pytest.mark.parametrize("signature", ["sha256=deadbeef", "nope"])
def test_a_badly_signed_delivery_is_refused_and_sends_nothing(
    example: Any, client: Client, backend: Backend, signature: str
) -> None:
    app = example.create_app(client, webhook_secret=SECRET)
    update = {"type": "subscription.updated", "customer": "cus_Ada0042", "plan": "free"}
    assert post(app, example, update, signature).status_code == 400
    assert post(app, example, {"type": "invoice.paid", "customer": "cus_Nobody"}).status_code == 202
    deliver(client, backend)
    assert backend.events() == []
    assert backend.get_person("user_42") is None
