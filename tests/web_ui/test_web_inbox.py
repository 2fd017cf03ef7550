"""<notification-inbox> in a real browser (headless Chromium through Playwright) against gunicorn +
PostgreSQL (+ Pushpin where installed), embedded in another origin's page under a strict CSP."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from web_ui_helpers import (BADGE, BELL, INBOX, ITEMS, POLL_SECONDS, counts, expect, item, open_panel, ready,
                            wait_counts_match, wait_status)

pytestmark = pytest.mark.e2e


# ---- the bell -----------------------------------------------------------------------------------

@pytest.mark.parametrize("created, badge, spoken", [
    (3, "3", "3 new notifications"), (100, "99+", "100 new notifications")])
def test_the_badge_shows_the_unseen_count_and_says_it_aloud(page, host, api, user, created, badge, spoken):
    for n in range(created):
        api.create(user, f"n{n}")
    page.goto(host.url(user, api))
    ready(page)
    expect(page.locator(BADGE)).to_have_text(badge)
    expect(page.locator(f"{INBOX} [aria-live='polite']")).to_have_text(spoken)
    expect(page.locator(BELL)).to_have_attribute("aria-label", f"Notifications: {spoken}")


# ---- live -----------------------------------------------------------------------------------------

def test_a_new_notification_appears_within_a_second_through_pushpin(page, host, live_api, user):
    page.goto(host.url(user, live_api))
    ready(page, "stream")
    open_panel(page)
    expect(page.locator(f"{INBOX} .empty")).to_be_visible()
    page.wait_for_timeout(300)  # the stream is held (its first event came before live-mode was set)
    started = time.monotonic()
    created = live_api.create(user, "Live one")
    first = page.locator(ITEMS).first
    expect(first).to_have_attribute("data-id", created["notification_id"], timeout=1000)
    elapsed = time.monotonic() - started
    expect(first.locator(".title")).to_have_text("Live one")
    expect(page.locator(BADGE)).to_have_text("1")
    print(f"create -> shown in the browser through Pushpin: {elapsed * 1000:.0f} ms")


def test_without_pushpin_it_polls_at_the_servers_interval(page, host, stack, user):
    direct = stack.direct
    polls = []
    page.on("response", lambda r: polls.append((r.status, r.request.headers.get("if-none-match")))
            if "/unread/count" in r.url and r.request.method == "GET" else None)
    page.goto(host.url(user, direct))
    page.wait_for_function(f"() => document.querySelector('{INBOX}').getAttribute('live-mode') === 'polling'",
                           timeout=(POLL_SECONDS + 5) * 1000)
    deadline = time.monotonic() + 2 * POLL_SECONDS + 5  # the first conditional poll (a loaded machine's timers lag)
    while not any(status == 304 and tag for status, tag in polls) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert any(status == 304 and tag for status, tag in polls), polls  # conditional: nothing changed, 304
    started = time.monotonic()
    direct.create(user, "Polled")
    expect(page.locator(BADGE)).to_have_text("1", timeout=(POLL_SECONDS + 2) * 1000)
    elapsed = time.monotonic() - started
    assert elapsed <= POLL_SECONDS + 1.5, elapsed
    print(f"create -> badge without Pushpin: {elapsed:.2f} s (retry: {POLL_SECONDS} s)")


def test_polling_starts_at_the_servers_interval_when_the_stream_degrades_before_the_first_count(
        page, host, stack, user):
    """The poll interval comes with a count's answer (X-Poll-Interval). When the stream degrades to
    polling before the first count has answered (a slow API, a loaded machine), the client asks at
    once instead of waiting a default 30 s; from then on it polls at the server's interval."""
    held = []

    def hold_the_first_count(route):
        if route.request.method == "GET" and not held:
            held.append(route)  # answered only once polling has begun
        else:
            route.continue_()
    page.route(lambda url: "/notifications/unread/count" in url, hold_the_first_count)
    polls = []
    page.on("response", lambda r: polls.append((r.status, r.request.headers.get("if-none-match")))
            if "/unread/count" in r.url and r.request.method == "GET" else None)
    try:
        page.goto(host.url(user, stack.direct))
        page.wait_for_function(
            f"() => document.querySelector('{INBOX}').getAttribute('live-mode') === 'polling'",
            timeout=(POLL_SECONDS + 5) * 1000)
        # the first count is still unanswered (the poll the client sent at once may have been)
        assert len(held) == 1
        deadline = time.monotonic() + 2 * POLL_SECONDS + 5  # well under the 30 s it used to wait
        while not any(status == 304 and tag for status, tag in polls) and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        assert any(status == 304 and tag for status, tag in polls), polls
    finally:
        if held:
            held[0].continue_()


def test_a_retracted_notification_disappears_live(page, host, api, stack, user):
    keep = api.create(user, "Keep")
    gone = api.create(user, "Take back", dedupe_key=f"like-{user}")
    page.goto(host.url(user, api))
    ready(page)
    open_panel(page)
    expect(item(page, gone["notification_id"])).to_be_visible()
    api.call("POST", "/notifications/retract", {"dedupe_key": f"like-{user}"}, service=True, expect=200)
    wait = 2000 if api is stack.live else (POLL_SECONDS + 3) * 1000
    expect(item(page, gone["notification_id"])).to_have_count(0, timeout=wait)
    expect(item(page, keep["notification_id"])).to_be_visible()


def test_two_tabs_stay_in_sync(context, host, api, user):
    one = api.create(user, "Shared")
    first, second = context.new_page(), context.new_page()
    # The second tab hears nothing from the server: whatever it learns comes from the first tab.
    second.route("**/notifications/stream**", lambda route: route.abort())
    for tab in (first, second):
        tab.goto(host.url(user, api))
        ready(tab, "any")
        tab.wait_for_function(f"() => (document.querySelector('{INBOX}').counts || {{}}).unread_count === 1")
        open_panel(tab)
        expect(item(tab, one["notification_id"])).to_have_class("item unread")
    item(first, one["notification_id"]).locator("[data-action='read']").click()
    expect(item(second, one["notification_id"])).to_have_class("item", timeout=2000)
    assert counts(second)["unread_count"] == 0


# ---- opening, acting ------------------------------------------------------------------------------

def test_opening_marks_what_it_shows_as_seen_with_before(page, host, api, user):
    older = api.create(user, "Older")
    newest = api.create(user, "Newest")
    page.goto(host.url(user, api))
    ready(page)
    held = []
    page.route("**/notifications/bulk", lambda route: held.append(route))
    open_panel(page)
    expect(page.locator(ITEMS)).to_have_count(2)
    deadline = time.monotonic() + 5
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "opening the panel sent no seen action"
    body = json.loads(held[0].request.post_data)
    assert body == {"action": "seen", "all": True, "before": newest["delivered_at"]}
    meanwhile = api.create(user, "Arrived meanwhile")  # after what the panel shows
    held[0].continue_()
    page.unroute("**/notifications/bulk")
    deadline = time.monotonic() + 5
    while api.get(user, older["notification_id"])["seen_at"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.get(user, newest["notification_id"])["seen_at"] is not None
    assert api.get(user, meanwhile["notification_id"])["seen_at"] is None
    assert api.counts(user)["unseen_count"] == 1
    wait_counts_match(page, api, user)


def test_read_unread_archive_snooze_and_mark_all_read_round_trip(page, host, api, user):
    made = [api.create(user, f"n{n}") for n in range(6)]  # newest last
    ids = [n["notification_id"] for n in made]
    page.goto(host.url(user, api))
    ready(page)
    open_panel(page)
    expect(page.locator(ITEMS)).to_have_count(6)

    item(page, ids[5]).locator("[data-action='read']").click()
    expect(item(page, ids[5])).to_have_class("item")
    wait_status(api, user, ids[5], "read")
    wait_counts_match(page, api, user)

    item(page, ids[5]).locator("[data-action='unread']").click()
    expect(item(page, ids[5])).to_have_class("item unread")
    wait_status(api, user, ids[5], "unread")
    wait_counts_match(page, api, user)

    item(page, ids[4]).locator("[data-action='archive']").click()
    expect(item(page, ids[4])).to_have_count(0)
    wait_status(api, user, ids[4], "archived")
    wait_counts_match(page, api, user)

    before = datetime.now(timezone.utc)
    item(page, ids[3]).locator("[data-action='snooze-hour']").click()
    expect(item(page, ids[3])).to_have_count(0)
    snoozed = wait_status(api, user, ids[3], "snoozed")
    wait_counts_match(page, api, user)
    until = datetime.fromisoformat(snoozed["snoozed_until"].replace("Z", "+00:00"))
    assert timedelta(minutes=59) < until - before < timedelta(minutes=61)

    item(page, ids[2]).locator("[data-action='snooze-tomorrow']").click()
    expect(item(page, ids[2])).to_have_count(0)
    snoozed = wait_status(api, user, ids[2], "snoozed")
    wait_counts_match(page, api, user)
    local = page.evaluate(f"() => {{ const d = new Date({json.dumps(snoozed['snoozed_until'])});"
                          " return [d.getHours(), d.getMinutes(), d.getDate()]; }")
    tomorrow = page.evaluate("() => { const d = new Date(); d.setDate(d.getDate() + 1); return d.getDate(); }")
    assert local == [9, 0, tomorrow]

    # The archived tab lists it; "move to inbox" brings it back.
    page.locator(f"{INBOX} [role='tab'][data-tab='archived']").click()
    expect(item(page, ids[4])).to_be_visible()
    item(page, ids[4]).locator("[data-action='unarchive']").click()
    expect(item(page, ids[4])).to_have_count(0)
    wait_status(api, user, ids[4], "unread")
    wait_counts_match(page, api, user)
    page.locator(f"{INBOX} [role='tab'][data-tab='inbox']").click()
    expect(page.locator(ITEMS)).to_have_count(4)

    held = []
    page.route("**/notifications/mark-read", lambda route: held.append(route))
    page.locator(f"{INBOX} .mark-all").click()
    deadline = time.monotonic() + 5
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    body = json.loads(held[0].request.post_data)
    newest_shown = max(api.get(user, i)["delivered_at"] for i in (ids[0], ids[1], ids[4], ids[5]))
    assert body == {"all": True, "before": newest_shown}
    late = api.create(user, "After mark-all")  # arrives while the request is on its way: stays unread
    held[0].continue_()
    page.unroute("**/notifications/mark-read")
    expect(page.locator(f"{INBOX} li.item.unread")).to_have_count(1, timeout=5000)  # the late one, live
    wait_counts_match(page, api, user)
    assert api.counts(user)["unread_count"] == 1
    assert api.get(user, late["notification_id"])["status"] == "unread"


def test_opening_an_item_marks_it_read_and_follows_its_action_url(page, host, api, user):
    target = api.create(user, "Go there", action_url=f"{host.origin}/landing")
    page.goto(host.url(user, api))
    ready(page)
    open_panel(page)
    with page.expect_navigation(url=f"{host.origin}/landing"):
        item(page, target["notification_id"]).locator(".open").click()
    wait_status(api, user, target["notification_id"], "read")


def test_load_more_reaches_the_oldest(page, host, api, user):
    made = [api.create(user, f"n{n}") for n in range(12)]
    page.goto(host.url(user, api, size=5))
    ready(page)
    open_panel(page)
    expect(page.locator(ITEMS)).to_have_count(5)
    more = page.locator(f"{INBOX} .more")
    more.click()
    expect(page.locator(ITEMS)).to_have_count(10)
    more.focus()
    page.keyboard.press("Enter")  # by keyboard: focus lands on the first item it brought
    expect(page.locator(ITEMS)).to_have_count(12)
    expect(more).to_be_hidden()
    assert page.evaluate(f"""() => document.querySelector('{INBOX}').shadowRoot.activeElement
        .closest('li').dataset.id""") == made[1]["notification_id"]
    shown = page.locator(ITEMS).evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert shown == [n["notification_id"] for n in reversed(made)]


def test_the_grouped_view_says_who_and_how_many_others(page, host, api, user):
    for n, name in enumerate(["Bo", "Cy", "Ana"]):
        api.create(user, f"{name} liked your post", group_key="post-1-likes", payload={"actor_name": name})
    single = api.create(user, "A lone comment")
    page.goto(host.url(user, api))
    ready(page)
    open_panel(page)
    page.locator(f"{INBOX} .group-toggle").click()
    expect(page.locator(ITEMS)).to_have_count(2)
    group = page.locator(f"{INBOX} li.item[data-key='post-1-likes']")
    expect(group.locator(".actor")).to_have_text("Ana and 2 others")
    expect(group).to_have_attribute("data-count", "3")
    group.locator("[data-action='group-read']").click()
    expect(group).to_have_class("item group")
    deadline = time.monotonic() + 5
    while api.counts(user)["unread_count"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.counts(user)["unread_count"] == 1
    wait_counts_match(page, api, user)
    assert api.get(user, single["notification_id"])["status"] == "unread"


def test_a_list_answer_keeps_the_rows_it_does_not_change(page, host, api, user):
    """A list answer (a sync after a live update, a refresh) rebuilds only the rows that changed: a
    row swapped between a click's mousedown and mouseup loses the click (CI saw a group's "Mark
    read" do nothing). A kept row's buttons act on the current entry."""
    kept = api.create(user, "Stays as it is")
    changed = api.create(user, "Read on another device")
    page.goto(host.url(user, api))
    ready(page)
    open_panel(page)
    expect(item(page, changed["notification_id"])).to_have_class("item unread")
    wait_counts_match(page, api, user)  # the panel's own "seen" is done
    kept_row = item(page, kept["notification_id"]).element_handle()
    changed_row = item(page, changed["notification_id"]).element_handle()
    api.call("PUT", f"/notifications/{changed['notification_id']}/read", user=user, expect=200)
    page.evaluate(f"() => document.querySelector('{INBOX}').refresh()")
    expect(item(page, changed["notification_id"])).to_have_class("item")
    assert kept_row.evaluate("row => row.isConnected") is True
    assert changed_row.evaluate("row => row.isConnected") is False
    item(page, kept["notification_id"]).locator("[data-action='read']").click()
    expect(item(page, kept["notification_id"])).to_have_class("item")
    assert wait_status(api, user, kept["notification_id"], "read")["status"] == "read"


def test_a_refused_action_rolls_back_and_shows_an_error(page, host, api, user):
    one = api.create(user, "Stays unread")
    page.goto(host.url(user, api))
    ready(page)
    open_panel(page)
    problem = {"type": "about:blank", "title": "Service Unavailable", "status": 503,
               "code": "database_unavailable", "detail": "The database is unavailable; retry shortly."}
    page.route(f"**/notifications/{one['notification_id']}/read",
               lambda route: route.fulfill(status=503, content_type="application/problem+json",
                                           headers={"Access-Control-Allow-Origin": "*", "Retry-After": "1"},
                                           body=json.dumps(problem)))
    row = item(page, one["notification_id"])
    row.locator("[data-action='read']").click()
    alert = page.locator(f"{INBOX} [role='alert']")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("The database is unavailable")
    expect(row).to_have_class("item unread")
    assert counts(page)["unread_count"] == 1  # the optimistic 0, undone
    wait_counts_match(page, api, user)
    assert api.get(user, one["notification_id"])["status"] == "unread"
    errors = page.evaluate("() => window.hostPage.events.filter(e => e.type === 'inbox-error')")
    assert errors and errors[0]["detail"]["status"] == 503 and errors[0]["detail"]["code"] == "database_unavailable"


# ---- CSP, keyboard --------------------------------------------------------------------------------

def test_it_works_under_a_strict_csp(page, host, api, user):
    api.create(user, "Under CSP")
    response = page.goto(host.url(user, api))
    csp = response.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "require-trusted-types-for" in csp
    ready(page)
    open_panel(page)
    expect(page.locator(ITEMS)).to_have_count(1)
    # its styles applied (a constructed stylesheet, which no style-src blocks)
    background = page.locator(BADGE).evaluate("el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(217, 45, 32)", background
    assert page.evaluate("() => window.hostPage.violations") == []


def test_keyboard_only(page, host, api, user):
    one = api.create(user, "By keyboard")
    page.goto(host.url(user, api))
    ready(page)

    def focused() -> dict:
        return page.evaluate("""() => { let a = document.activeElement;
            while (a && a.shadowRoot && a.shadowRoot.activeElement) a = a.shadowRoot.activeElement;
            return {cls: a.className, tab: a.dataset.tab || null, action: a.dataset.action || null, id: a.id,
                    outline: getComputedStyle(a).outlineStyle}; }""")

    page.locator("#before").focus()
    page.keyboard.press("Tab")
    assert focused()["cls"] == "bell"
    assert focused()["outline"] != "none"  # visible focus
    page.keyboard.press("Enter")
    expect(page.locator(f"{INBOX} .panel")).to_be_visible()
    expect(page.locator(ITEMS)).to_have_count(1)
    seen = []
    for _ in range(12):
        page.keyboard.press("Tab")
        now = focused()
        seen.append(now)
        if now["action"] == "read":
            break
    assert [s["tab"] for s in seen if s["tab"]] == ["inbox"], seen  # one tab stop for the tab list
    assert seen[-1]["action"] == "read", seen
    page.keyboard.press("Enter")
    expect(item(page, one["notification_id"])).to_have_class("item")
    # arrows move between tabs
    page.locator(f"{INBOX} [role='tab'][data-tab='inbox']").focus()
    page.keyboard.press("ArrowRight")
    assert focused()["tab"] == "unread"
    expect(page.locator(f"{INBOX} [role='tab'][data-tab='unread']")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Escape")
    expect(page.locator(f"{INBOX} .panel")).to_be_hidden()
    assert focused()["cls"] == "bell"
    wait_status(api, user, one["notification_id"], "read")


def test_a_refused_ticket_is_retried_with_backoff_and_a_new_ticket_comes_before_expiry(page, host, api, user):
    posts = []
    problem = {"type": "about:blank", "title": "Service Unavailable", "status": 503,
               "code": "database_unavailable", "detail": "The database is unavailable; retry shortly."}

    def ticket(route):
        if route.request.method != "POST":
            route.continue_()
            return
        posts.append(time.monotonic())
        if len(posts) == 1:  # the first is refused
            route.fulfill(status=503, content_type="application/problem+json", body=json.dumps(problem),
                          headers={"Access-Control-Allow-Origin": "*", "Retry-After": "1"})
            return
        response = route.fetch()
        body = response.json()
        # expiring in 61 s: renewed a minute ahead, so at once (the component waits at least 5 s)
        body["expires_at"] = (datetime.now(timezone.utc) + timedelta(seconds=61)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        route.fulfill(response=response, json=body)

    page.route("**/notifications/stream/ticket", ticket)
    page.goto(host.url(user, api))
    ready(page)
    deadline = time.monotonic() + 12
    while len(posts) < 3 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(posts) >= 3, posts
    assert 0.4 <= posts[1] - posts[0] <= 2.5, posts  # backoff: 1 s, jittered down to half
    assert posts[2] - posts[1] >= 4.5, posts  # the renewal, before the (stubbed) expiry
    ready(page)
    open_panel(page)
    created = api.create(user, "After the renewal")
    expect(item(page, created["notification_id"])).to_have_count(1, timeout=(POLL_SECONDS + 3) * 1000)
