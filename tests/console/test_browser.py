"""The console in a real browser (headless Chromium), fed by the real client.

One browser serves the whole module; each test gets a fresh server and a fresh browser context
(no cookies). Waits are Playwright's: they poll the page until a condition holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from sankofa_sdk import Client
from sankofa_sdk._operations import format_epoch
from sankofa_sdk.server import ReferenceServer

from ..server.conftest import alias, batch, people, post, track
from . import browser as chromium

reason = chromium.missing()
if reason is not None and os.environ.get("SANKOFA_REQUIRE_BROWSER"):
    raise RuntimeError(f"the browser tests must run here, but {reason}")
pytestmark = pytest.mark.skipif(reason is not None, reason=f"browser tests skipped: {reason}")

if reason is None:
    from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

AVATAR = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
    b'<rect width="64" height="64" fill="#0e7490"/></svg>'
)


@pytest.fixture(scope="module")
def avatar_url() -> Iterator[str]:
    with chromium.image_server(lambda path: AVATAR) as base:
        yield base + "/ada.svg"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's event loop must be gone before other modules use asyncio.
    with sync_playwright() as playwright:
        launched = chromium.launch(playwright)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from checked_page(browser)


# India keeps +05:30 all year: a zone that is not UTC, with no daylight saving to follow.
KOLKATA = timezone(timedelta(hours=5, minutes=30))


@pytest.fixture
def page_in_kolkata(browser: Browser) -> Iterator[Page]:
    yield from checked_page(browser, timezone_id="Asia/Kolkata")


def checked_page(browser: Browser, **options: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, **options)
    context.set_default_timeout(10_000)  # a failing test fails in seconds, not Playwright's 30
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    opened.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    yield opened
    context.close()
    assert problems == [], "the page must run without errors, CSP refusals or dialogs"


@pytest.fixture
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer(rate_limit=None) as srv:
        yield srv


@pytest.fixture
def client(server: ReferenceServer) -> Iterator[Client]:
    with Client(server.api_key, host=server.url, flush_interval=0.05) as sdk:
        yield sdk


def delivered(client: Client, server: ReferenceServer) -> None:
    assert client.flush(10) and server.wait_until_applied(10)


def open_view(page: Page, server: ReferenceServer, view: str) -> None:
    page.goto(server.console_url)
    page.goto(f"{server.url}/#/{view}")


def test_profile_of_a_person_identified_after_an_anonymous_visit(
    page: Page, server: ReferenceServer, client: Client, avatar_url: str
) -> None:
    client.track("Viewed Pricing", {"plan": "pro"})
    anonymous_id = client.distinct_id
    client.identify(
        "user_42",
        {
            "$name": "Ada Lovelace",
            "$email": "ada@example.com",
            "$avatar": avatar_url,
            "$phone": "+44 20 7946 0000",
            "plan": "pro",
            "seats": 3,
        },
    )
    delivered(client, server)

    page.goto(server.console_url)
    page.get_by_role("link", name="Ada Lovelace").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")
    contact = page.get_by_role("list", name="Contact")
    expect(contact).to_contain_text("ada@example.com")
    expect(contact).to_contain_text("+44 20 7946 0000")
    page.wait_for_function(
        "() => document.querySelector('.profile-head .avatar img')?.naturalWidth > 0"
    )
    expect(page.locator("tr[data-key=plan]")).to_contain_text("pro")
    expect(page.locator("tr[data-key=seats] td.type")).to_have_text("integer")
    expect(page.locator(".facts .aliases")).to_contain_text(anonymous_id)
    expect(page.locator("code.distinct-id")).to_have_text("user_42")


def test_trait_history_links_to_the_request_a_value_came_in(
    page: Page, server: ReferenceServer
) -> None:
    sent = post(
        server,
        "/api/v1/batch",
        batch(people("user_9", {"name": "Kofi", "plan": "pro"})),
        headers={"Idempotency-Key": "signup-9"},
    )
    assert sent.status == 200 and server.wait_until_applied(10)
    number = server.requests[-1].sequence

    open_view(page, server, "people")
    page.get_by_role("link", name="Kofi").click()
    page.get_by_role("tab", name="Trait history").click()
    entry = page.locator("table.history tr", has_text="plan")
    expect(entry).to_contain_text("signup-9")
    entry.get_by_role("link", name=f"request #{number}").click()

    focused = page.get_by_role("region", name=f"Request #{number}")
    expect(focused).to_contain_text("POST /api/v1/batch")
    expect(focused).to_contain_text("Idempotency-Key: signup-9")


def test_live_stream_shows_a_new_event(page: Page, server: ReferenceServer, client: Client) -> None:
    open_view(page, server, "live")
    expect(page.get_by_text("Nothing yet")).to_be_visible()

    client.track("Checkout Started", {"cart": 3}, distinct_id="user_7")
    assert client.flush(10)

    # The page asks every 0.4 s; the wait's deadline is for a slow machine, not a measure.
    row = page.locator(".row.op", has_text="Checkout Started")
    expect(row).to_be_visible()
    row.locator("summary").click()
    expect(row.locator("pre.json")).to_contain_text('"event_name": "Checkout Started"')
    expect(row.locator("pre.json")).to_contain_text('"cart": 3')


def test_streaming_rows_wait_while_paused(
    page: Page, server: ReferenceServer, client: Client
) -> None:
    open_view(page, server, "live")
    expect(page.get_by_text("Nothing yet")).to_be_visible()
    page.get_by_role("button", name="Pause").click()

    client.track("While Paused", distinct_id="user_7")
    assert client.flush(10)

    expect(page.get_by_role("button", name="Show 1 new")).to_be_visible()
    expect(page.locator(".row.op")).to_have_count(0)
    page.get_by_role("button", name="Show 1 new").click()
    expect(page.locator(".row.op", has_text="While Paused")).to_be_visible()


def test_a_refused_request_shows_its_reason(page: Page, server: ReferenceServer) -> None:
    poison = track("user_1", "Bad", properties=["not", "an", "object"])
    assert post(server, "/api/v1/batch", batch(track("user_1"), poison)).status == 400

    open_view(page, server, "requests")

    row = page.locator(".row.request", has_text="400")
    expect(row).to_contain_text("operation 1 (track): properties is not an object")
    row.locator("summary").click()
    expect(row.locator("pre.json").first).to_contain_text('"event_name": "Bad"')
    expect(row).to_contain_text('{"error":"Invalid track payload"}')


def test_hostile_trait_values_stay_text(page: Page, server: ReferenceServer) -> None:
    name = "<img src=x onerror=window.pwned=1>"
    script = "<script>window.pwned=2</script>"
    hostile = {
        "name": name,
        "avatar": "javascript:window.pwned=3",
        "email": '"><svg onload=window.pwned=4>',
        "bio": script,
    }
    assert post(server, "/api/v1/batch", batch(people("user_x", hostile))).status == 200
    assert server.wait_until_applied(10)

    open_view(page, server, "people")
    page.get_by_role("link", name=name).click()

    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.locator("tr[data-key=bio] td.value")).to_have_text(script)
    expect(page.locator(".profile-head .avatar .initials")).to_be_visible()
    assert page.locator(".profile-head .avatar img").count() == 0
    assert page.locator("main img, main svg, main script").count() == 0
    assert page.evaluate("() => window.pwned") is None


def test_a_wrong_or_missing_token_gets_nothing(page: Page, server: ReferenceServer) -> None:
    assert post(server, "/api/v1/batch", batch(track("user_secret", "Secret"))).status == 200
    assert server.wait_until_applied(10)

    for address in (server.url + "/", server.url + "/?token=wrong", server.url + "/#/people"):
        answer = page.goto(address)
        assert answer is not None and answer.status == 401
        expect(page.get_by_role("heading", level=1)).to_have_text("This console needs its token")
    status = page.evaluate(
        "async () => (await fetch('/console/api/people?project=proj_reference')).status"
    )

    assert status == 401
    assert "user_secret" not in page.content()
    assert page.context.cookies() == []


def test_keyboard_phone_width_and_dark_mode(
    page: Page, server: ReferenceServer, client: Client
) -> None:
    client.identify("user_9", {"name": "Kofi Boateng", "plan": "team"})
    client.track("Opened App")
    delivered(client, server)
    page.set_viewport_size({"width": 390, "height": 844})
    page.emulate_media(color_scheme="dark")
    open_view(page, server, "people")

    page.keyboard.press("/")
    page.keyboard.type("kofi")
    link = page.get_by_role("link", name="Kofi Boateng")
    expect(link).to_have_count(1)
    link.focus()
    page.keyboard.press("Enter")
    page.get_by_role("tab", name="Properties (5)").focus()
    page.keyboard.press("ArrowRight")

    expect(page.get_by_role("tab", name="Events (1)")).to_be_focused()
    expect(page.get_by_role("tabpanel")).to_contain_text("Opened App")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(20, 19, 17)"


def local(stamp: str) -> str:
    """What the console's lists show for an RFC 3339 UTC stamp, in Kolkata's time."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(KOLKATA)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC+05:30"


def assert_whole(time: Locator) -> None:
    """The text of a <time> is all on screen, not cut to "2026-05-10 …"."""
    assert time.evaluate("e => e.scrollWidth <= e.clientWidth && e.offsetWidth > 0")


def test_every_event_and_request_time_shows_the_date_the_time_of_day_and_the_zone(
    page_in_kolkata: Page, server: ReferenceServer
) -> None:
    page = page_in_kolkata
    stamped = "2026-05-09T20:15:42.318Z"  # 01:45:42 on the 10th in Kolkata
    sent = post(server, "/api/v1/batch", batch(track("user_5", "Paid", timestamp=stamped)))
    assert sent.status == 200 and server.wait_until_applied(10)
    received = server.requests[-1].received_at
    stored = format_epoch(received)  # as the request log gives it

    open_view(page, server, "person?id=user_5&tab=events")
    time = page.locator(".row.event time")
    expect(time).to_contain_text("2026-05-10 01:45:42")
    assert_whole(time)
    expect(time).to_have_text("2026-05-10 01:45:42.318 UTC+05:30")
    assert time.get_attribute("datetime") == stamped

    # The live stream and the request log show when the server stored and received it.
    open_view(page, server, "live")
    time = page.locator(".row.op time")
    expect(time).to_contain_text(" UTC+05:30")
    assert_whole(time)
    at = time.get_attribute("datetime") or ""
    assert abs(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() - received) < 5
    expect(time).to_have_text(local(at))

    open_view(page, server, "requests")
    time = page.locator(".row.request time")
    expect(time).to_have_text(local(stored))
    assert_whole(time)


def test_the_environment_switch_counts_the_people_the_list_shows(
    page: Page, server: ReferenceServer
) -> None:
    sent = post(
        server,
        "/api/v1/batch",
        batch(
            people("user_1", {"name": "Ama Mensah"}),  # a profile
            track("user_2", "Opened App"),  # only events
            track("anon_3", "Viewed Pricing"),  # events under an id aliased to a profile
            people("user_3", {"name": "Kofi"}),
            alias("anon_3", "user_3"),
        ),
    )
    assert sent.status == 200 and server.wait_until_applied(10)

    open_view(page, server, "people")

    expect(page.locator("table.people tbody tr")).to_have_count(3)
    expect(page.locator(".count")).to_contain_text("of 3 people")
    expect(page.locator(".env label", has_text="Live")).to_have_text("Live (3)")
    expect(page.locator(".env label", has_text="Test")).to_have_text("Test (0)")
