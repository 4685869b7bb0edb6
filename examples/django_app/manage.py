#!/usr/bin/env python
"""Django's command-line utility for the example project.

``python examples/django_app/manage.py runserver_embedded`` starts the bundled reference server
and points the example at it; any other command is Django's own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.settings")
    from django.core.management import execute_from_command_line

    if sys.argv[1:2] == ["runserver_embedded"]:
        from sankofa_sdk.server import ReferenceServer

        with ReferenceServer() as server:
            print(f"reference server on {server.url}")
            os.environ["SANKOFA_API_KEY"] = server.api_key
            os.environ["SANKOFA_HOST"] = server.url
            execute_from_command_line([sys.argv[0], "runserver", "--noreload", *sys.argv[2:]])
        return
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
