"""The demo page (/ui/demo, ENABLE_UI_DEMO): a newcomer opens it, clicks "send me a test
notification" and watches it arrive. Screenshots go to .ci/artifacts/ (CI keeps them);
UPDATE_DOCS_SCREENSHOT=1 also refreshes docs/web-inbox.png."""
from __future__ import annotations

import os
import re
import shutil

import pytest
from web_ui_helpers import ARTIFACTS, BADGE, INBOX, ITEMS, POLL_SECONDS, ROOT, counts, expect, open_panel, ready

pytestmark = pytest.mark.e2e

VIOLATIONS = """window.violations = [];
document.addEventListener('securitypolicyviolation', (e) => window.violations.push(e.violatedDirective));"""


def _seed(api, user):
    for actor, title, message in (("Ana", "Ana commented on your post", "Nice route!"),
                                  ("Bo", "Bo liked your photo", None),
                                  ("Cy", "Cy mentioned you", "@demo are you coming on Sunday?")):
        api.create(user, title, message=message, payload={"actor_name": actor})


def test_the_demo_page_shows_a_test_notification_live(context, api, stack):
    _seed(api, stack.demo_user)
    context.add_init_script(VIOLATIONS)
    page = context.new_page()
    response = page.goto(f"{api.url}/ui/demo")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    ready(page)
    unseen = counts(page)["unseen_count"]
    assert unseen >= 3
    page.locator("#send").click()
    expect(page.locator("#sent")).to_have_text(re.compile(r"Sent test notification #1\."))
    live = api is stack.live
    expect(page.locator(BADGE)).to_have_text(str(unseen + 1), timeout=2000 if live else (POLL_SECONDS + 3) * 1000)
    open_panel(page)
    expect(page.locator(ITEMS).first.locator(".title")).to_have_text("Test notification #1")
    expect(page.locator(ITEMS).first.locator(".actor")).to_have_text("Demo")
    page.locator("#send").click()  # (a click outside closes the panel, as popovers do)
    expect(page.locator(f"{INBOX} .panel")).to_be_hidden()
    expect(page.locator(BADGE)).to_have_text("1", timeout=2000 if live else (POLL_SECONDS + 3) * 1000)
    open_panel(page)
    expect(page.locator(ITEMS).first.locator(".title")).to_have_text("Test notification #2")
    page.wait_for_timeout(300)  # the seen action settles: the badge the screenshot shows
    assert page.evaluate("() => window.violations") == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "web-inbox-demo.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10000
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "web-inbox.png")


def test_the_demo_page_in_the_dark(browser, api, stack):
    context = browser.new_context(viewport={"width": 1000, "height": 760}, color_scheme="dark",
                                  reduced_motion="reduce")
    try:
        page = context.new_page()
        page.goto(f"{api.url}/ui/demo")
        ready(page)
        open_panel(page)
        expect(page.locator(ITEMS).first).to_be_visible()
        panel = page.locator(f"{INBOX} .panel")
        assert panel.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(27, 31, 39)"
        assert panel.evaluate("el => getComputedStyle(el).transitionDuration") == "0s"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-inbox-demo-dark.png"))
    finally:
        context.close()
