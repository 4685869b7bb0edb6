"""A billing webhook (Flask): the provider tells us a customer's plan changed.

A webhook acts for a customer, not for whoever sent the HTTP request (that is the billing
provider's server). So the handler maps the provider's customer id to the app's user id and
passes ``distinct_id=`` to every call: the request's own identity is never read nor changed,
and nothing is aliased.

The provider signs each delivery: ``X-Billing-Signature: sha256=<hex HMAC of the body>`` with
the shared secret. Unsigned or badly signed deliveries are refused before anything is sent.

    python examples/flask_webhook.py --embedded
    curl -X POST localhost:5001/webhooks/billing -H 'X-Billing-Signature: sha256=…' -d '{…}'
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
from typing import Any, Optional

from flask import Flask, jsonify, request

import sankofa_sdk
from sankofa_sdk.integrations.flask import Sankofa, current_client

# A stand-in for the app's table that links billing customers to users.
BILLING_CUSTOMERS = {
    "cus_Ada0042": "user_42",
    "cus_Grace043": "user_43",
}


def sign(body: bytes, secret: str) -> str:
    """The signature header value the provider sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def create_app(
    client: Optional[sankofa_sdk.Client] = None, *, webhook_secret: Optional[str] = None
) -> Flask:
    app = Flask(__name__)
    secret = webhook_secret or os.environ.get("BILLING_WEBHOOK_SECRET", "whsec_dev_only")
    Sankofa(app, client=client)  # client=None: the module-level client (SANKOFA_API_KEY)

    @app.post("/webhooks/billing")
    def billing_webhook() -> Any:
        body = request.get_data()
        if not hmac.compare_digest(
            request.headers.get("X-Billing-Signature", ""), sign(body, secret)
        ):
            return jsonify(error="bad signature"), 400
        event = request.get_json(force=True)
        user_id = BILLING_CUSTOMERS.get(event.get("customer", ""))
        if user_id is None:
            return jsonify(error="unknown customer"), 202  # acknowledged, nothing to record
        analytics = current_client()
        if event.get("type") == "subscription.updated":
            plan = event["plan"]
            analytics.people_set(
                {"plan": plan, "billing_status": event.get("status", "active")},
                distinct_id=user_id,
            )
            analytics.track(
                "Subscription Changed",
                {"plan": plan, "previous_plan": event.get("previous_plan")},
                distinct_id=user_id,
            )
        elif event.get("type") == "invoice.paid":
            analytics.track(
                "Invoice Paid",
                {"amount": event["amount"] / 100, "currency": event.get("currency", "usd")},
                distinct_id=user_id,
            )
        return "", 204

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedded", action="store_true", help="use the bundled reference server")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args()
    if args.embedded:
        from sankofa_sdk.server import ReferenceServer

        with ReferenceServer() as server:
            print(f"reference server on {server.url}")
            client = sankofa_sdk.Client(server.api_key, host=server.url)
            create_app(client).run(port=args.port)
    else:
        create_app().run(port=args.port)


if __name__ == "__main__":
    main()
