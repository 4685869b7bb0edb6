"""Regenerate the README's console screenshots: ``python -m scripts.console_screenshots``.

Starts a reference server, feeds it with the real client (an anonymous visit that signs in,
a few other people, a stream of events), opens the console in headless Chromium and saves
``docs/console-profile.png`` and ``docs/console-live.png``. Needs the test extra and
Chromium, like the browser tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sankofa_sdk import Client
from sankofa_sdk.server import ReferenceServer
from tests.console import browser as chromium

DOCS = Path(__file__).resolve().parents[1] / "docs"
VIEWPORT = {"width": 1100, "height": 700}
PEOPLE = [
    ("user_ama", "Ama Mensah", "ama@mensah.example", "+233 20 555 0134", "#0e7490", "team"),
    ("user_kofi", "Kofi Boateng", "kofi@boateng.example", None, "#9a3412", "pro"),
    ("user_esi", "Esi Owusu", "esi@owusu.example", "+233 24 555 0199", "#6b21a8", "free"),
]


def portrait(color: str) -> bytes:
    """A small abstract portrait: a head and shoulders on a coloured ground."""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
        f'<rect width="64" height="64" fill="{color}"/>'
        '<circle cx="32" cy="25" r="12" fill="#fde7d0"/>'
        '<path d="M10 64c2-14 12-20 22-20s20 6 22 20z" fill="#f8fafc"/></svg>'
    ).encode()


def feed(server: ReferenceServer, images: str) -> None:
    with Client(server.api_key, host=server.url, flush_interval=0.05) as client:
        for distinct_id, name, email, phone, color, plan in PEOPLE:
            with client.context():
                client.track("Viewed Pricing", {"plan": plan, "referrer": "newsletter"})
                traits = {"$name": name, "$email": email, "$avatar": f"{images}/{color[1:]}.svg"}
                if phone:
                    traits["$phone"] = phone
                client.identify(distinct_id, {**traits, "plan": plan, "seats": 4, "beta": True})
                client.track("Signed Up", {"method": "email"})
                client.track("Created Project", {"template": "analytics", "projects": 1})
        client.people_set({"company": "Mensah & Co", "role": "Founder"}, distinct_id="user_ama")
        assert client.flush(10)
    assert server.wait_until_applied(10)


def main() -> int:
    reason = chromium.missing()
    if reason is not None:
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 1
    from playwright.sync_api import expect, sync_playwright

    DOCS.mkdir(exist_ok=True)
    # The colour is the image's name: /0e7490.svg
    portraits = chromium.image_server(lambda path: portrait("#" + path.strip("/").split(".")[0]))
    with portraits as images, ReferenceServer(rate_limit=None) as server, sync_playwright() as pw:
        feed(server, images)
        browser = chromium.launch(pw)
        page = browser.new_page(viewport=VIEWPORT, color_scheme="light")
        page.goto(server.console_url)
        page.get_by_role("link", name="Ama Mensah").click()
        page.wait_for_function(
            "() => document.querySelector('.profile-head .avatar img')?.naturalWidth > 0"
        )
        page.screenshot(path=str(DOCS / "console-profile.png"))

        page.set_viewport_size({"width": VIEWPORT["width"], "height": 940})
        page.get_by_role("link", name="Live events").click()
        rows = page.locator(".row.op")
        expect(rows.first).to_be_visible()
        with Client(server.api_key, host=server.url, flush_interval=0.05) as client:
            client.track("Invited Teammate", {"seats": 5}, distinct_id="user_ama")
            assert client.flush(10)
        newest = page.locator(".row.op", has_text="Invited Teammate")
        newest.locator("summary").click()
        expect(newest.locator("pre.json")).to_be_visible()
        page.screenshot(path=str(DOCS / "console-live.png"))
        browser.close()
    for name in ("console-profile.png", "console-live.png"):
        print(f"wrote docs/{name} ({(DOCS / name).stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
