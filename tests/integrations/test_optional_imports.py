"""The integration modules import without their frameworks and say what is missing when used."""

from __future__ import annotations

import subprocess
import sys
import textwrap

FRAMEWORKS = ("flask", "werkzeug", "django", "asgiref", "celery", "kombu", "starlette", "fastapi")


def run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60
    )


def test_importing_the_integrations_imports_no_framework() -> None:
    done = run(
        f"""
        import sys
        import sankofa_sdk.integrations
        from sankofa_sdk.integrations import asgi, celery, django, flask, wsgi
        loaded = sorted(n for n in {FRAMEWORKS!r} if n in sys.modules)
        assert not loaded, loaded
        """
    )
    assert done.returncode == 0, done.stderr


def test_using_a_helper_without_its_framework_raises_a_clear_import_error() -> None:
    done = run(
        f"""
        import sys
        for name in {FRAMEWORKS!r}:
            sys.modules[name] = None  # as if not installed
        from sankofa_sdk.integrations import celery, django, flask

        def message(call):
            try:
                call()
            except ImportError as exc:
                return str(exc)
            raise AssertionError("no ImportError")

        assert "pip install celery" in message(celery.setup_celery)
        assert "pip install django" in message(django.get_client)
        assert "pip install django" in message(lambda: django.SankofaMiddleware(lambda r: r))
        assert "pip install flask" in message(flask.current_client)
        """
    )
    assert done.returncode == 0, done.stderr


def test_the_job_runner_modules_say_what_is_missing_when_imported() -> None:
    # Their classes subclass the runner's (an RQ Worker, a Dramatiq Middleware): they import
    # it when imported themselves, and only then; nothing else imports them.
    done = run(
        """
        import importlib, sys
        import sankofa_sdk, sankofa_sdk.integrations
        assert not {"rq", "dramatiq"} & set(sys.modules)
        for name, package in (("rq", "rq"), ("dramatiq", "dramatiq")):
            sys.modules[package] = None  # as if not installed
            try:
                importlib.import_module("sankofa_sdk.integrations." + name)
            except ImportError as exc:
                assert f"pip install {package}" in str(exc), exc
            else:
                raise AssertionError("no ImportError")
        """
    )
    assert done.returncode == 0, done.stderr
