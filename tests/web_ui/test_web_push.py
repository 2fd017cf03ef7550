"""Web Push from the page's side: the "Enable notifications" button's flow up to the subscription call
(the Push API and endpoints 16-19 stubbed in the page: no push service is reachable from a test), and
the service worker's `push` and `notificationclick` handlers, driven by events dispatched to it."""
from __future__ import annotations

import base64
import json
import time
import urllib.parse

import jwt
import pytest
from web_ui_helpers import INBOX, expect, ready

pytestmark = pytest.mark.e2e

# A 65-byte uncompressed P-256 point's shape (0x04 || X || Y), base64url without padding (endpoint 16).
VAPID_KEY = base64.urlsafe_b64encode(bytes([4]) + bytes(range(1, 65))).decode().rstrip("=")
ENDPOINT = "https://fcm.googleapis.com/fcm/send/c1Kr-test"
SUBSCRIPTION = {"endpoint": ENDPOINT, "expirationTime": None,
                "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
                         "auth": "tBHItJI5svbpez7KI4CCXg"}}
# The browser's Push API, stubbed before any page script runs: permission asked -> granted,
# subscribe() -> SUBSCRIPTION (recording its arguments), unsubscribe() recorded.
PUSH_STUB = """
(() => {
  let permission = "default", current = null;
  window.pushStub = {subscribeCalls: [], unsubscribed: 0, permissionRequests: 0};
  Object.defineProperty(Notification, "permission", {get: () => permission, configurable: true});
  Notification.requestPermission = async () => { window.pushStub.permissionRequests += 1; permission = "granted"; return permission; };
  PushManager.prototype.getSubscription = async () => current;
  PushManager.prototype.subscribe = async function (options) {
    window.pushStub.subscribeCalls.push({userVisibleOnly: options.userVisibleOnly,
                                         key: Array.from(new Uint8Array(options.applicationServerKey))});
    const data = %s;
    current = {endpoint: data.endpoint, toJSON: () => data,
               unsubscribe: async () => { window.pushStub.unsubscribed += 1; current = null; return true; }};
    return current;
  };
})();
""" % json.dumps(SUBSCRIPTION)
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, POST, DELETE",
        "Access-Control-Allow-Headers": "Authorization, Content-Type"}


def test_the_push_button_is_hidden_when_the_server_has_no_vapid_key(page, host, api, user):
    page.goto(host.url(user, api, **{"service-worker": "/sw.js"}))
    ready(page)
    page.locator(f"{INBOX} .bell").click()
    api.call("GET", "/push/vapid-public-key", expect=404)  # push is not configured on this server
    expect(page.locator(f"{INBOX} .push")).to_be_hidden()
    assert page.evaluate("() => window.hostPage.events.filter(e => e.type === 'inbox-error')") == []


def test_enable_notifications_subscribes_from_the_click_and_turning_off_unsubscribes(context, host, api, user):
    context.add_init_script(PUSH_STUB)
    page = context.new_page()
    calls = []

    def push_api(route):
        request = route.request
        calls.append((request.method, request.url, request.post_data, request.headers.get("authorization")))
        if request.method == "OPTIONS":
            route.fulfill(status=204, headers=CORS)
        elif request.url.endswith("/push/vapid-public-key"):
            route.fulfill(status=200, headers=CORS, content_type="application/json",
                          body=json.dumps({"public_key": VAPID_KEY}))
        elif request.method == "POST":
            route.fulfill(status=201, headers=CORS, content_type="application/json", body=json.dumps({
                "subscription_id": "5b0d2c1e-1111-4222-8333-444455556666",
                "endpoint_origin": "https://fcm.googleapis.com", "user_agent": "test",
                "created_at": "2026-12-07T00:00:00Z", "expiration_time": None, "last_success_at": None,
                "consecutive_failures": 0}))
        else:
            route.fulfill(status=204, headers=CORS)

    page.route("**/api/v1/push/**", push_api)
    page.goto(host.url(user, api, **{"service-worker": "/sw.js"}))
    ready(page)
    page.locator(f"{INBOX} .bell").click()
    button = page.locator(f"{INBOX} .push")
    expect(button).to_have_text("Enable notifications")
    assert page.evaluate("() => window.pushStub.permissionRequests") == 0  # never asked before the click

    button.click()
    page.wait_for_function(f"""() => document.querySelector('{INBOX}').shadowRoot.querySelector('.push').textContent
        === 'Turn off notifications' || window.hostPage.events.some(e => e.type === 'inbox-error')""")
    assert page.evaluate("() => window.hostPage.events.filter(e => e.type === 'inbox-error')") == []
    expect(button).to_have_text("Turn off notifications")
    stub = page.evaluate("() => window.pushStub")
    assert stub["permissionRequests"] == 1
    key = base64.urlsafe_b64decode(VAPID_KEY + "=" * (-len(VAPID_KEY) % 4))
    assert stub["subscribeCalls"] == [{"userVisibleOnly": True, "key": list(key)}]
    posted = [c for c in calls if c[0] == "POST"]
    assert len(posted) == 1 and posted[0][1].endswith("/api/v1/push/subscriptions")
    body = json.loads(posted[0][2])
    assert {k: v for k, v in body.items() if k != "user_agent"} == SUBSCRIPTION
    assert 0 < len(body["user_agent"]) <= 200
    scheme, _, token = posted[0][3].partition(" ")  # the user's JWT, from the host page's callback
    assert scheme == "Bearer" and jwt.decode(token, options={"verify_signature": False})["sub"] == user
    # the service worker the host page chose (its own origin) is registered
    registration = page.evaluate("async () => (await navigator.serviceWorker.getRegistration('/')).active.scriptURL")
    assert registration == f"{host.origin}/sw.js"

    button.click()
    expect(button).to_have_text("Enable notifications")
    deleted = [c for c in calls if c[0] == "DELETE"]
    assert len(deleted) == 1
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(deleted[0][1]).query)
    assert query == {"endpoint": [ENDPOINT]}
    assert page.evaluate("() => window.pushStub.unsubscribed") == 1
    events = page.evaluate("() => window.hostPage.events.filter(e => e.type === 'inbox-push').map(e => e.detail)")
    assert events == [{"enabled": True}, {"enabled": False}]


def _service_worker(context, page, origin: str):
    """Register /ui/sw.js (scope /ui/) from the demo page; its Playwright handle and CDP registration id."""
    context.grant_permissions(["notifications"], origin=origin)
    page.goto(f"{origin}/ui/demo")
    page.evaluate("async () => { await navigator.serviceWorker.register('/ui/sw.js');"
                  " await navigator.serviceWorker.ready; }")
    worker = next((w for w in context.service_workers if w.url.endswith("/ui/sw.js")), None) \
        or context.wait_for_event("serviceworker")
    assert worker.evaluate("() => self.registration.scope") == f"{origin}/ui/"
    cdp = context.new_cdp_session(page)
    registrations = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
    cdp.send("ServiceWorker.enable")
    scope = f"{origin}/ui/"
    deadline = time.monotonic() + 5
    while not [r for r in registrations if r["scopeURL"] == scope] and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    ours = [r for r in registrations if r["scopeURL"] == scope and not r["isDeleted"]]
    assert ours, registrations
    return worker, cdp, ours[-1]["registrationId"]


def test_the_service_worker_shows_a_push_tagged_with_the_notification_id(context, page, stack):
    origin = stack.direct.url
    worker, cdp, registration_id = _service_worker(context, page, origin)
    page.evaluate("() => { window.workerMessages = []; navigator.serviceWorker.addEventListener('message',"
                  " (e) => window.workerMessages.push(e.data)); }")
    payload = {"notification_id": "3f0e1a2b-4c5d-4e6f-8a9b-0c1d2e3f4a5b", "notification_type": "comment",
               "title": "Ana commented on your post", "message": "Nice route!",
               "action_url": "https://app.example.com/posts/812#c-9", "priority": "normal", "group_key": None,
               "created_at": "2026-11-26T03:42:21.123456Z", "unread_count": 7, "unseen_count": 2}
    cdp.send("ServiceWorker.deliverPushMessage",  # a real (trusted) push event
             {"origin": origin, "registrationId": registration_id, "data": json.dumps(payload)})
    shown = []
    deadline = time.monotonic() + 5
    while not shown and time.monotonic() < deadline:
        shown = worker.evaluate("async () => (await self.registration.getNotifications())"
                                ".map(n => ({title: n.title, body: n.body, tag: n.tag, data: n.data}))")
        page.wait_for_timeout(50)
    assert shown == [{"title": payload["title"], "body": payload["message"], "tag": payload["notification_id"],
                      "data": {"notification_id": payload["notification_id"], "action_url": payload["action_url"]}}]
    page.wait_for_function("() => window.workerMessages.length > 0")
    assert page.evaluate("() => window.workerMessages[0]") == {"type": "notification-inbox:push", "notification": payload}


def test_a_click_on_the_push_opens_its_action_url_or_focuses_a_tab_already_there(context, page, stack):
    origin = stack.direct.url
    worker, cdp, registration_id = _service_worker(context, page, origin)
    url = "https://app.example.com/posts/812#c-9"
    cdp.send("ServiceWorker.deliverPushMessage", {"origin": origin, "registrationId": registration_id, "data":
             json.dumps({"notification_id": "n-1", "title": "Open me", "action_url": url})})
    click = """async ({existing}) => {
      const [notification] = await self.registration.getNotifications({tag: 'n-1'});
      const record = {opened: [], focused: []};
      // the window side of clients, recorded: a synthetic click carries no user activation to open one
      self.clients.matchAll = async () => existing ? [{url: existing, focus: async () => record.focused.push(existing)}] : [];
      self.clients.openWindow = async (target) => { record.opened.push(target); return null; };
      try { self.dispatchEvent(new NotificationEvent('notificationclick', {notification})); } catch (e) {}
      await new Promise((resolve) => setTimeout(resolve, 200));
      record.left = (await self.registration.getNotifications({tag: 'n-1'})).length;
      return record;
    }"""
    deadline = time.monotonic() + 5
    while not worker.evaluate("async () => (await self.registration.getNotifications({tag: 'n-1'})).length") \
            and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert worker.evaluate(click, {"existing": None}) == {"opened": [url], "focused": [], "left": 0}
    cdp.send("ServiceWorker.deliverPushMessage", {"origin": origin, "registrationId": registration_id, "data":
             json.dumps({"notification_id": "n-1", "title": "Open me", "action_url": url})})
    deadline = time.monotonic() + 5
    while not worker.evaluate("async () => (await self.registration.getNotifications({tag: 'n-1'})).length") \
            and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert worker.evaluate(click, {"existing": url}) == {"opened": [], "focused": [url], "left": 0}
