"""Quickstart: an app that identifies a user on sign-in, tracks, updates traits and resets.

From a fresh clone, against the bundled reference server (no network needed):

    bash .ci/demo                       # same as: python examples/quickstart.py --embedded

Against a real engine:

    SANKOFA_API_KEY=sk_live_… SANKOFA_HOST=https://api.sankofa.dev python examples/quickstart.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import sankofa_sdk


def visit_sign_in_and_out(client: sankofa_sdk.Client) -> str:
    """What an app does over one visit. Returns the visitor's anonymous id."""
    # Before sign-in the visitor is anonymous; the SDK made an id for this context.
    client.track("Viewed Pricing", {"plan": "pro", "referrer": "newsletter"})
    anonymous_id = client.distinct_id

    # On sign-in: identify stitches the anonymous id to the user (one alias) and sets traits.
    client.identify("user_42", {"email": "ada@example.com", "name": "Ada Lovelace"})
    client.track("Signed In", {"method": "password"})
    client.people_set({"plan": "pro", "seats": 3, "trial_ends_at": "2026-12-01"})
    client.track("Plan Upgraded", {"from": "free", "to": "pro", "price": 49.99})
    client.people_unset(["trial_ends_at"])  # partial update: only this key goes

    # On sign-out: a fresh anonymous identity, so the next visitor is not user_42.
    client.reset()
    return anonymous_id


def run_embedded() -> int:
    from sankofa_sdk.server import ReferenceServer

    with ReferenceServer() as server:
        print(f"reference server on {server.url}")
        with sankofa_sdk.Client(server.api_key, host=server.url) as client:
            anonymous_id = visit_sign_in_and_out(client)
            client.flush()
            print("client stats:", client.stats())
        server.wait_until_applied()
        person = server.get_person("user_42")
        events = server.events("user_42")
        print("\nprofile of user_42 as the server stored it:")
        print(json.dumps(person, indent=2, default=str))
        print(f"\nevents of user_42 (the anonymous {anonymous_id[:8]}… visit included):")
        for event in reversed(events):
            print(f"  {event['timestamp']}  {event['event_name']:<15} {event['distinct_id']}")
        ok = (
            person is not None
            and person["traits"].get("plan") == "pro"
            and "trial_ends_at" not in person["traits"]
            and anonymous_id in person["aliases"]
            and len(events) == 3
        )
        print(
            "\nOK: the profile, the alias and all three events arrived."
            if ok
            else "\nUNEXPECTED RESULT"
        )
        return 0 if ok else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--embedded", action="store_true", help="start the bundled reference server in-process"
    )
    args = parser.parse_args(argv)
    if args.embedded:
        return run_embedded()
    if not os.environ.get("SANKOFA_API_KEY"):
        parser.error("set SANKOFA_API_KEY (and SANKOFA_HOST), or pass --embedded")
    client = sankofa_sdk.init()
    visit_sign_in_and_out(client)
    delivered = client.flush(timeout=10)
    print("delivered" if delivered else "not all delivered in 10 s", client.stats())
    sankofa_sdk.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
