"""The User-Agent stand-in answers as the engine's uap-core parse does (spec section 8).

Expected families were read from uap-core's rules through ``ua-parser`` 1.0.2 with
``ua-parser-builtins`` 202610 (the engine uses the same rules through uap-go).
"""

from __future__ import annotations

import pytest

from sankofa_sdk.server import ReferenceServer
from sankofa_sdk.server._useragent import parse, stand_in

from .conftest import applied, post

CHROME_LINUX = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
HEADLESS = f"{CHROME_LINUX} HeadlessChrome/120.0.0.0 Safari/537.36"


@pytest.mark.parametrize(
    ("user_agent", "os", "browser", "device"),
    [
        (HEADLESS, "Linux", "HeadlessChrome", "Other"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/119.0.6045.105 Safari/537.36",
            "Windows",
            "HeadlessChrome",
            "Other",
        ),
        (f"{CHROME_LINUX} Chrome/120.0.0.0 Safari/537.36", "Linux", "Chrome", "Other"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
            "Windows",
            "Edge",
            "Other",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 "
            "Safari/605.1.15",
            "Mac OS X",
            "Safari",
            "Mac",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "iOS",
            "Mobile Safari",
            "iPhone",
        ),
        (
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Ubuntu",
            "Firefox",
            "Other",
        ),
        ("python-requests/2.31.0", "Other", "Python Requests", "Other"),
        ("curl/8.5.0", "Other", "curl", "Other"),
        ("Python-urllib/3.11", "Other", "Python-urllib", "Spider"),
        ("", "Other", "Other", "Other"),
    ],
)
def test_families_match_uap_core(user_agent: str, os: str, browser: str, device: str) -> None:
    # With the "ua" extra (installed for the tests) the parse is uap-core's own; the built-in
    # stand-in must give the same families for these agents without it.
    assert tuple(parse(user_agent)) == (os, browser, device)
    assert tuple(stand_in(user_agent)) == (os, browser, device)


def test_with_the_ua_extra_uap_core_parses_what_the_stand_in_cannot() -> None:
    pytest.importorskip("ua_parser")
    pixel = (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36"
    )
    assert parse(pixel).device_model == "Pixel 8"
    assert stand_in(pixel).device_model == "Other"


def test_android_chrome_is_chrome_mobile() -> None:
    ua = (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36"
    )
    os, browser, _ = parse(ua)  # uap-core names the device "Pixel 8"; the stand-in does not
    assert (os, browser) == ("Android", "Chrome Mobile")


def test_headless_chrome_is_stored_as_such(server: ReferenceServer) -> None:
    body = {"distinct_id": "user_1", "event_name": "Viewed"}
    reply = post(server, "/api/v1/track", body, {"User-Agent": HEADLESS})
    assert reply.status == 200
    applied(server)
    [event] = server.events("user_1")
    assert event["default_properties"]["$browser"] == "HeadlessChrome"
