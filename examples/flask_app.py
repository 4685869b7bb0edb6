"""A Flask app: anonymous browsing, sign-in that stitches the browser's id, sign-out.

The browser keeps its anonymous id in the ``sankofa_anon`` cookie (a front-end SDK sets it, or,
as here, the extension does: ``set_anonymous_id_cookie=True``). The extension gives every
request its own identity seeded from that cookie when it holds an anonymous-looking id (a
UUID), so:

- ``GET /pricing`` by a visitor is tracked under the browser's anonymous id;
- ``POST /login`` calls ``identify``, which sends one alias ``browser id → user``: the visit
  before sign-in now belongs to the user;
- later requests of the signed-in user are attributed through ``user_id=`` (no call needed);
- ``POST /logout`` calls ``reset``: the rest of that request is a new anonymous visitor.

Run it against the bundled reference server (no network):

    python examples/flask_app.py --embedded        # then open http://127.0.0.1:5000/pricing

or against an engine: ``SANKOFA_API_KEY=sk_live_… SANKOFA_HOST=https://… python examples/flask_app.py``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional

from flask import Flask, jsonify, request, session

import sankofa_sdk
from sankofa_sdk.integrations.flask import Sankofa, current_client

ANONYMOUS_ID_COOKIE = "sankofa_anon"

# A stand-in for the app's user table: email -> (user id, name).
USERS = {
    "ada@example.com": ("user_42", "Ada Lovelace"),
    "grace@example.com": ("user_43", "Grace Hopper"),
}


def create_app(client: Optional[sankofa_sdk.Client] = None) -> Flask:
    """The app. ``client`` defaults to one made from ``SANKOFA_API_KEY``/``SANKOFA_HOST``."""
    app = Flask(__name__)
    app.secret_key = os.environ.get("FLASK_SECRET_KEY", "dev-only-secret")
    if client is None:
        app.config["SANKOFA"] = {
            "api_key": os.environ.get("SANKOFA_API_KEY"),
            "host": os.environ.get("SANKOFA_HOST", "https://api.sankofa.dev"),
        }
    Sankofa(
        app,
        client=client,
        anonymous_id_cookie=ANONYMOUS_ID_COOKIE,
        # No front-end SDK here: the extension hands the browser its anonymous id while it is
        # signed out (a new browser, a cookie that was not taken, a sign-out), so its next
        # visit shares it and sign-in stitches it.
        set_anonymous_id_cookie=True,
        user_id=lambda: session.get("user_id"),
    )

    @app.get("/pricing")
    def pricing() -> Any:
        analytics = current_client()
        analytics.track("Viewed Pricing", {"plan": request.args.get("plan", "pro")})
        return jsonify(distinct_id=analytics.distinct_id)

    @app.post("/login")
    def login() -> Any:
        form = request.get_json(force=True)
        found = USERS.get(form.get("email", ""))
        if found is None:
            return jsonify(error="unknown user"), 401
        user_id, name = found
        session["user_id"] = user_id
        analytics = current_client()
        # Stitches the browser's anonymous id (from the cookie) to the user, then sets traits.
        analytics.identify(user_id, {"email": form["email"], "name": name})
        analytics.track("Signed In", {"method": "password"})
        return jsonify(distinct_id=analytics.distinct_id)

    @app.post("/upgrade")
    def upgrade() -> Any:
        if "user_id" not in session:
            return jsonify(error="sign in first"), 401
        analytics = current_client()  # this request is the signed-in user's (user_id= above)
        plan = request.get_json(force=True).get("plan", "pro")
        analytics.track("Plan Upgraded", {"to": plan})
        analytics.people_set({"plan": plan})
        return jsonify(distinct_id=analytics.distinct_id)

    @app.post("/logout")
    def logout() -> Any:
        analytics = current_client()
        analytics.track("Signed Out")
        session.pop("user_id", None)
        analytics.reset()  # the rest of this request is a new anonymous visitor (new cookie)
        return jsonify(distinct_id=analytics.distinct_id)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedded", action="store_true", help="use the bundled reference server")
    parser.add_argument("--port", type=int, default=5000)
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
