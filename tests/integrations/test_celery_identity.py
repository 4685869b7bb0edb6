"""A task runs in the identity it was sent from (Celery's message headers), in-process: a worker
thread on an in-memory broker. The same with a real prefork worker and Redis is in
``test_celery_redis.py``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import pytest

from sankofa_sdk import Client

from .conftest import Backend, event_names

pytest.importorskip("celery")


class Tasks:
    """A Celery app on an in-memory broker, its tasks and a worker thread, for the module (a
    worker takes seconds to stop); each test connects the hooks for its own client."""

    def __init__(self) -> None:
        from celery import Celery

        self.client: Optional[Client] = None
        self.app = Celery("identity", broker="memory://", backend="cache+memory://")
        self.app.conf.broker_transport_options = {"polling_interval": 0.01}

        @self.app.task(name="identity.report")
        def report(event: str, distinct_id: Optional[str] = None) -> str:
            assert self.client is not None
            self.client.track(event, distinct_id=distinct_id)
            return self.client.distinct_id

        @self.app.task(name="identity.sign_up")
        def sign_up(user: str) -> str:
            assert self.client is not None
            self.client.identify(user)  # stitches the carried anonymous id
            self.client.track("Signed Up")
            return self.client.distinct_id

        self.report = report
        self.sign_up = sign_up

    @contextmanager
    def hooked(self, client: Client, **options: Any) -> Iterator[Tasks]:
        from sankofa_sdk.integrations.celery import setup_celery

        self.client = client
        hooks = setup_celery(client, **options)
        try:
            yield self
        finally:
            hooks.disconnect()
            self.client = None


@pytest.fixture(scope="module")
def tasks() -> Iterator[Tasks]:
    from celery.contrib.testing.worker import start_worker

    tasks = Tasks()
    with start_worker(tasks.app, pool="solo", perform_ping_check=False):
        yield tasks


@pytest.fixture
def worker(tasks: Tasks, client: Client) -> Iterator[Tasks]:
    with tasks.hooked(client) as hooked:
        yield hooked


def test_a_task_sent_in_a_users_context_runs_as_that_user(
    worker: Tasks, client: Client, backend: Backend
) -> None:
    with client.context("user_46"):
        sent = worker.report.delay("Invoice Sent")
    assert sent.get(10) == "user_46"
    # Sent from outside any identity: a fresh anonymous one, not the last task's user.
    assert worker.report.delay("Cleanup Ran").get(10) not in ("user_46", client.distinct_id)
    # An explicit distinct_id wins over the carried one.
    with client.context("user_46"):
        worker.report.delay("Refund Made", "user_47").get(10)
    assert client.flush(10) and backend.wait_until_applied(10)
    assert event_names(backend, "user_46") == ["Invoice Sent"]
    assert event_names(backend, "user_47") == ["Refund Made"]


def test_an_anonymous_visitor_is_stitched_when_the_task_identifies(
    worker: Tasks, client: Client, backend: Backend
) -> None:
    with client.context(anonymous_id="anon-visitor-48") as visitor:
        assert visitor.anonymous_id == "anon-visitor-48"
        client.track("Pricing Viewed")
        assert worker.sign_up.delay("user_48").get(10) == "user_48"
    assert client.flush(10) and backend.wait_until_applied(10)
    assert backend.aliases() == [("anon-visitor-48", "user_48")]
    assert event_names(backend, "user_48") == ["Pricing Viewed", "Signed Up"]


def test_propagation_can_be_switched_off(tasks: Tasks, client: Client, backend: Backend) -> None:
    with tasks.hooked(client, propagate_identity=False) as worker, client.context("user_49"):
        ran_as = worker.report.delay("Invoice Sent").get(10)
    assert ran_as != "user_49"
    assert client.flush(10) and backend.wait_until_applied(10)
    assert event_names(backend, "user_49") == []
    assert event_names(backend, ran_as) == ["Invoice Sent"]


def test_an_unusable_carried_identity_runs_the_task_anonymously(worker: Tasks) -> None:
    sent = worker.report.apply_async(
        ("Invoice Sent",), headers={"sankofa_identity": {"distinct_id": "x"}}
    )
    assert sent.get(10) != "x"  # "x" would be discarded by the engine
