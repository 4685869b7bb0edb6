"""Settings of the example Django project: the Sankofa part is ``SANKOFA`` and ``MIDDLEWARE``.

Run it against the bundled reference server (no network):

    python examples/django_app/manage.py runserver_embedded

or against an engine: ``SANKOFA_API_KEY=sk_live_… python examples/django_app/manage.py runserver``.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-secret-key-not-for-production")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "django_app.urls"
INSTALLED_APPS = ["django.contrib.sessions"]
DATABASES: dict[str, dict[str, str]] = {}  # this example stores nothing itself
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
USE_TZ = True

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # After the session middleware, so views see the session; every request gets its own
    # Sankofa identity, seeded from the browser's anonymous id cookie.
    "sankofa_sdk.integrations.django.SankofaMiddleware",
]

SANKOFA = {
    "api_key": os.environ.get("SANKOFA_API_KEY"),
    "host": os.environ.get("SANKOFA_HOST", "https://api.sankofa.dev"),
    "anonymous_id_cookie": "sankofa_anon",
    # Without a key (local development) every call is a no-op instead of an error.
    "disabled": not os.environ.get("SANKOFA_API_KEY"),
}
