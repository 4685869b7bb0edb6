"""Configuration mistakes in the integrations raise ``ConfigurationError``, and say it once."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sankofa_sdk import Client, ConfigurationError
from sankofa_sdk.integrations import SankofaASGIMiddleware, SankofaWSGIMiddleware


def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return []


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    return None


@pytest.mark.parametrize("middleware", [SankofaWSGIMiddleware, SankofaASGIMiddleware])
@pytest.mark.parametrize(
    "options",
    [
        {"anonymous_id_cookie": ""},
        {"anonymous_id_header": "   "},
        {"anonymous_id_cookie": 42},
        {"anonymous_id_validator": "^anon_"},
        {"user_id": "session.user_id"},
        {"set_anonymous_id_cookie": True},  # which cookie? none is named
    ],
)
def test_middleware_options_that_cannot_work_raise_configuration_error(
    middleware: Any, options: dict[str, Any]
) -> None:
    app = wsgi_app if middleware is SankofaWSGIMiddleware else asgi_app
    with pytest.raises(ConfigurationError):
        middleware(app, **options)


def test_flask_extension_set_up_twice_raises_configuration_error(client: Client) -> None:
    flask = pytest.importorskip("flask")
    from sankofa_sdk.integrations.flask import Sankofa

    app = flask.Flask("t")
    extension = Sankofa(app, client=client)
    with pytest.raises(ConfigurationError, match="already"):
        extension.init_app(app)


def test_flask_current_client_without_the_extension_raises_configuration_error() -> None:
    flask = pytest.importorskip("flask")
    from sankofa_sdk.integrations.flask import current_client

    with flask.Flask("t").app_context(), pytest.raises(ConfigurationError, match="not set up"):
        current_client()


def test_flask_bad_cookie_option_in_app_config_raises_configuration_error(client: Client) -> None:
    flask = pytest.importorskip("flask")
    from sankofa_sdk.integrations.flask import Sankofa

    app = flask.Flask("t")
    app.config["SANKOFA"] = {"anonymous_id_cookie": ""}
    with pytest.raises(ConfigurationError, match="anonymous_id_cookie"):
        Sankofa(app, client=client)


def test_flask_without_a_key_raises_configuration_error_and_logs_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    flask = pytest.importorskip("flask")
    import sankofa_sdk
    from sankofa_sdk.integrations.flask import Sankofa

    monkeypatch.delenv("SANKOFA_API_KEY", raising=False)
    sankofa_sdk.shutdown()  # no module-level client either
    caplog.set_level(logging.DEBUG, logger="sankofa_sdk")

    with pytest.raises(ConfigurationError, match="no client for the Flask app"):
        Sankofa(flask.Flask("t"))

    assert [r.getMessage() for r in caplog.records] == []


def test_django_setting_that_is_not_a_dict_raises_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("django")
    from sankofa_sdk.integrations import django as sankofa_django

    monkeypatch.setattr(sankofa_django, "_client", None)
    with pytest.raises(ConfigurationError, match="dict"):
        sankofa_django._client_from(["api_key"])


def test_flask_unknown_client_option_in_app_config_raises_configuration_error() -> None:
    flask = pytest.importorskip("flask")
    from sankofa_sdk.integrations.flask import Sankofa

    app = flask.Flask("t")
    app.config["SANKOFA"] = {"api_key": "sk_test_0123456789abcdef", "flush_every": 3}
    with pytest.raises(ConfigurationError, match="flush_every"):
        Sankofa(app)


def test_django_unknown_client_option_raises_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("django")
    from sankofa_sdk.integrations import django as sankofa_django

    monkeypatch.setattr(sankofa_django, "_client", None)
    with pytest.raises(ConfigurationError, match="flush_every"):
        sankofa_django._client_from({"api_key": "sk_test_0123456789abcdef", "flush_every": 3})
