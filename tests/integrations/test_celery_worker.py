"""examples/celery_worker.py: eager tasks, and a real worker thread on an in-memory broker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest

import sankofa_sdk
from sankofa_sdk import Client

from .conftest import Backend, app_traits, event_names, load_example

pytest.importorskip("celery")


@pytest.fixture(scope="module")
def loaded_example() -> Iterator[Any]:
    # Imported once: Celery keeps task names process-wide. Its setup_celery() hooks are
    # captured so that they can be disconnected after these tests.
    from sankofa_sdk.integrations import celery as integration

    captured: list[Any] = []
    original = integration.setup_celery

    def capture(*args: Any, **kwargs: Any) -> Any:
        captured.append(original(*args, **kwargs))
        return captured[-1]

    integration.setup_celery = capture  # type: ignore[assignment]
    try:
        module = load_example("celery_worker")
    finally:
        integration.setup_celery = original  # type: ignore[assignment]
    yield module
    for hooks in captured:
        hooks.disconnect()


@pytest.fixture
def example(loaded_example: Any) -> Iterator[Any]:
    yield loaded_example
    loaded_example.app.conf.task_always_eager = False


@pytest.fixture
def default_client(backend: Backend) -> Iterator[Client]:
    client = sankofa_sdk.init(api_key=backend.api_key, host=backend.url, flush_interval=60)
    yield client
    sankofa_sdk.shutdown()


def test_eager_tasks_have_their_own_identity_and_leave_the_caller_alone(
    example: Any, default_client: Client, backend: Backend
) -> None:
    example.app.conf.task_always_eager = True
    default_client.identify("user_caller")  # e.g. a web request that enqueues work
    assert example.process_signup.delay("user_42", "anon-signup-42", "ada@example.com").get() == (
        "user_42"
    )
    assert default_client.distinct_id == "user_caller"
    example.send_welcome_email.delay("user_42").get()
    example.sync_crm_contact.delay("user_42", {"company": "Analytical Engines"}).get()
    stats_id = example.export_public_stats.delay().get()
    assert stats_id not in ("user_42", "user_caller")
    assert default_client.distinct_id == "user_caller"
    assert default_client.flush(10) and backend.wait_until_applied(10)

    assert backend.aliases() == [("anon-signup-42", "user_42")]
    person = backend.get_person("user_42")
    assert person is not None
    assert app_traits(person) == {"email": "ada@example.com", "company": "Analytical Engines"}
    assert event_names(backend, "user_42") == ["Signup Processed", "Welcome Email Sent"]
    assert event_names(backend, stats_id) == ["Public Stats Exported"]
    assert backend.get_person("user_caller") is None


def test_a_worker_runs_tasks_in_separate_identities_and_shuts_the_client_down(
    example: Any, default_client: Client, backend: Backend
) -> None:
    from celery.contrib.testing.worker import start_worker

    with start_worker(example.app, pool="solo", perform_ping_check=False) as worker:
        assert example.process_signup.delay("user_43", "anon-signup-43", "grace@x.io").get(10)
        # the same worker thread, the next task: not user_43 any more
        stats_id = example.export_public_stats.delay().get(10)
        example.send_welcome_email.delay("user_43").get(10)
        worker.stop()  # a warm shutdown, as on SIGTERM: sends worker_shutdown
    # worker_shutdown shut the client down: it delivered everything and accepts nothing more
    default_client.track("After Shutdown")
    assert default_client.stats()["dropped"].get("closed") == 1
    assert backend.wait_until_applied(10)

    assert stats_id != "user_43"
    assert backend.aliases() == [("anon-signup-43", "user_43")]
    assert event_names(backend, "user_43") == ["Signup Processed", "Welcome Email Sent"]
    assert event_names(backend, stats_id) == ["Public Stats Exported"]


def test_setup_celery_with_an_explicit_client_and_no_flush(
    client: Client, backend: Backend
) -> None:
    from celery import Celery

    from sankofa_sdk.integrations.celery import setup_celery

    app = Celery("explicit", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = True

    @app.task
    def sign_in(user: str) -> str:
        client.identify(user)
        client.track("Task Ran")
        return client.distinct_id

    hooks = setup_celery(client)
    try:
        assert sign_in.delay("user_44").get() == "user_44"
        assert client.distinct_id != "user_44"
    finally:
        hooks.disconnect()
    assert client.flush(10) and backend.wait_until_applied(10)
    assert event_names(backend, "user_44") == ["Task Ran"]


def test_a_flush_after_each_task_is_an_opt_in(
    make_client: Callable[..., Client], backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery import Celery

    from sankofa_sdk.integrations.celery import setup_celery

    client = make_client(flush_interval=60)  # only a flush can deliver in this test's time
    flushes: list[Optional[float]] = []
    flush = client.flush

    def counted_flush(timeout: Optional[float] = 10.0) -> bool:
        flushes.append(timeout)
        return flush(timeout)

    monkeypatch.setattr(client, "flush", counted_flush)
    app = Celery("flushing", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = True

    @app.task
    def report(n: int) -> None:
        client.track("Report Built", {"n": n}, distinct_id="user_45")

    hooks = setup_celery(client)
    try:
        report.delay(1).get()
        assert flushes == []  # no request per task by default
    finally:
        hooks.disconnect()
    hooks = setup_celery(client, flush_after_task=True, flush_timeout=3.0)
    try:
        report.delay(2).get()
        assert flushes == [3.0]
        assert client.stats()["delivered"] == 2  # the task's flush sent both
    finally:
        hooks.disconnect()
    assert backend.wait_until_applied(10)
    assert event_names(backend, "user_45") == ["Report Built", "Report Built"]


def test_the_same_task_id_on_two_threads_ends_each_threads_own_identity(client: Client) -> None:
    # A threads pool can run one task id twice at once (a redelivered acks_late task): each
    # thread's task_postrun must end the identity that thread's task_prerun opened.
    from sankofa_sdk.integrations.celery import CeleryHooks

    hooks = CeleryHooks(client, flush_timeout=2.0, flush_after_task=False)
    a_started, b_started, a_ended = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple[str, str, str]] = {}

    def run(name: str, started: threading.Event, wait_for: threading.Event) -> None:
        before = client.distinct_id
        hooks.task_prerun(task_id="task-1", task=None)
        client.identify(f"user_celery_{name}")
        during = client.distinct_id
        started.set()
        assert wait_for.wait(10)
        hooks.task_postrun(task_id="task-1", task=None)
        seen[name] = (before, during, client.distinct_id)

    def run_a() -> None:
        run("a", a_started, b_started)
        a_ended.set()

    def run_b() -> None:
        assert a_started.wait(10)
        run("b", b_started, a_ended)

    threads = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    for name in ("a", "b"):
        before, during, after = seen[name]
        assert during == f"user_celery_{name}"
        assert after == before  # the task's identity ended in its own thread
