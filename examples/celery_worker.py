"""A Celery worker that sends analytics from its tasks.

``setup_celery()`` runs every task in the identity it was sent from (a signed-in request's
user), else in a fresh one of its own, and shuts the client down whenever a worker process
ends; the client's thread delivers in batches, never one request per task. Tasks that act for
someone else pass ``distinct_id=``; a task that ``identify``-s (here: stitching a signup's
anonymous id) affects that task only.

Run a worker (any broker; the client comes from ``SANKOFA_API_KEY`` / ``SANKOFA_HOST``, and
``SANKOFA_SPOOL_DIR`` keeps what a killed child tracked for the worker to deliver):

    CELERY_BROKER_URL=redis://localhost:6379/0 SANKOFA_SPOOL_DIR=/var/lib/myapp/sankofa \
        celery -A celery_worker worker

or the demo, which runs the tasks in-process against the bundled reference server:

    python examples/celery_worker.py --embedded
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from celery import Celery

import sankofa_sdk
from sankofa_sdk.integrations.celery import setup_celery

app = Celery(
    "celery_worker",
    broker=os.environ.get("CELERY_BROKER_URL", "memory://"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "cache+memory://"),
)

# The module-level client (sankofa_sdk.init(), or SANKOFA_API_KEY in the environment), looked up
# when a task is sent or runs. Pass a Client to setup_celery() to use your own.
setup_celery()


@app.task
def process_signup(user_id: str, anonymous_id: str, email: str) -> str:
    """Stitch the visitor's anonymous id to the new user; the rest of the task is the user's.

    ``anonymous_id`` is the id the sign-up request ran under (``client.distinct_id`` there,
    before ``identify``), never a raw cookie value: whatever id is passed here is merged into
    the user, so it must be one your front end generated (see README, "The browser's
    anonymous id").
    """
    sankofa_sdk.identify(user_id, {"email": email}, anonymous_id=anonymous_id)
    sankofa_sdk.track("Signup Processed")
    return user_id


@app.task
def send_welcome_email(user_id: str) -> None:
    sankofa_sdk.track("Welcome Email Sent", {"template": "welcome-v2"}, distinct_id=user_id)


@app.task
def sync_crm_contact(user_id: str, traits: dict[str, Any]) -> None:
    """A CRM sync: a partial people update, keys not sent are kept."""
    sankofa_sdk.people_set(traits, distinct_id=user_id)


@app.task
def export_public_stats() -> str:
    """System work for nobody in particular: a fresh anonymous id, never the last task's user."""
    client = sankofa_sdk.get_client()
    sankofa_sdk.track("Public Stats Exported")
    return client.distinct_id if client else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedded", action="store_true", help="run the demo in-process")
    args = parser.parse_args()
    if not args.embedded:
        app.worker_main(["worker", "--loglevel=info"])
        return
    from sankofa_sdk.server import ReferenceServer

    with ReferenceServer() as server:
        sankofa_sdk.init(api_key=server.api_key, host=server.url)
        app.conf.task_always_eager = True
        process_signup.delay("user_42", "anon-7f3c", "ada@example.com")
        send_welcome_email.delay("user_42")
        sync_crm_contact.delay("user_42", {"company": "Analytical Engines Ltd"})
        export_public_stats.delay()
        sankofa_sdk.shutdown()
        server.wait_until_applied()
        print("user_42:", server.get_person("user_42"))


if __name__ == "__main__":
    main()
