/* <notification-inbox>: a bell with the unseen count and an inbox panel for the Notifications API.
 *
 * Plain JavaScript, no build step, no dependency, no framework. Works under a strict Content Security
 * Policy: no inline script or style, no eval, no innerHTML (DOM built node by node; styles through a
 * constructed stylesheet). Tokens live in memory only, never in localStorage.
 *
 *   <script src="https://notifications.example.com/ui/notification-inbox.js" defer></script>
 *   <notification-inbox api-base="https://notifications.example.com/api/v1"
 *                       token-provider="getNotificationsToken"></notification-inbox>
 *
 * docs/WEB.md lists the attributes, properties, events, CSS custom properties and strings.
 */
(() => {
  "use strict";
  if (customElements.get("notification-inbox")) return;

  const DEFAULT_STRINGS = {
    bell: "Notifications",
    unseenLabel: (n) => (n === 0 ? "No new notifications" : n === 1 ? "1 new notification" : `${n} new notifications`),
    title: "Notifications",
    tabInbox: "Inbox",
    tabUnread: "Unread",
    tabArchived: "Archived",
    grouped: "Group",
    markAllRead: "Mark all read",
    markRead: "Mark read",
    markUnread: "Mark unread",
    archive: "Archive",
    unarchive: "Move to inbox",
    snoozeHour: "Snooze 1 h",
    snoozeTomorrow: "Tomorrow 9:00",
    loadMore: "Load more",
    loading: "Loading…",
    empty: "Nothing here",
    unreadDot: "Unread",
    close: "Close",
    others: (actor, n) => (actor ? (n === 0 ? actor : n === 1 ? `${actor} and 1 other` : `${actor} and ${n} others`)
                                 : (n === 0 ? "" : `${n + 1} notifications`)),
    enablePush: "Enable notifications",
    disablePush: "Turn off notifications",
    pushBlocked: "Notifications are blocked in this browser's settings",
    errorAction: "That did not work; the change was undone.",
    errorLoad: "Could not load notifications.",
    live: "Live",
    polling: "Updates every few seconds",
    offline: "Reconnecting…",
  };

  const CSS = `
:host { --ni-font: inherit; --ni-bg: #ffffff; --ni-fg: #1d2433; --ni-muted: #5f6b7a; --ni-border: #d9dee6;
  --ni-accent: #3557d4; --ni-accent-fg: #ffffff; --ni-badge-bg: #d92d20; --ni-badge-fg: #ffffff;
  --ni-unread-bg: #f2f5ff; --ni-hover: #f5f6f8; --ni-focus: #3557d4; --ni-error-bg: #fdecea; --ni-error-fg: #8a1c12;
  --ni-radius: 10px; --ni-panel-width: 380px; --ni-panel-max-height: 520px; --ni-shadow: 0 10px 30px rgba(16,24,40,.18);
  display: inline-block; position: relative; font: 14px/1.4 var(--ni-font); color: var(--ni-fg); }
@media (prefers-color-scheme: dark) {
  :host { --ni-bg: #1b1f27; --ni-fg: #e7eaf0; --ni-muted: #9aa4b2; --ni-border: #343b47; --ni-accent: #8aa4ff;
    --ni-accent-fg: #0d1020; --ni-unread-bg: #232a3a; --ni-hover: #262c36; --ni-focus: #8aa4ff;
    --ni-error-bg: #3b1d1a; --ni-error-fg: #ffb4a9; --ni-shadow: 0 10px 30px rgba(0,0,0,.5); }
}
* { box-sizing: border-box; }
button { font: inherit; color: inherit; background: none; border: 0; cursor: pointer; padding: 0; }
button:focus-visible, [tabindex]:focus-visible { outline: 2px solid var(--ni-focus); outline-offset: 2px; border-radius: 6px; }
[hidden] { display: none !important; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.bell { position: relative; width: 40px; height: 40px; border-radius: 50%; display: inline-grid; place-items: center;
  color: var(--ni-fg); transition: background .15s; }
.bell:hover { background: var(--ni-hover); }
.bell svg { width: 24px; height: 24px; fill: none; stroke: currentColor; stroke-width: 1.8; stroke-linecap: round; stroke-linejoin: round; }
.badge { position: absolute; top: 2px; right: 0; min-width: 18px; height: 18px; padding: 0 5px; border-radius: 9px;
  background: var(--ni-badge-bg); color: var(--ni-badge-fg); font-size: 11px; font-weight: 700; line-height: 18px;
  text-align: center; }
.panel { position: absolute; z-index: 1000; top: calc(100% + 6px); right: 0; width: var(--ni-panel-width); max-width: calc(100vw - 16px);
  background: var(--ni-bg); color: var(--ni-fg); border: 1px solid var(--ni-border); border-radius: var(--ni-radius);
  box-shadow: var(--ni-shadow); display: flex; flex-direction: column; max-height: var(--ni-panel-max-height);
  transition: opacity .15s, transform .15s; }
.panel.start { right: auto; left: 0; }
header { display: flex; align-items: center; gap: 8px; padding: 12px 14px 6px; }
h2 { font-size: 16px; margin: 0; flex: 1; }
.link { color: var(--ni-accent); font-size: 13px; padding: 2px 4px; }
.link:disabled { color: var(--ni-muted); cursor: default; }
.toolbar { display: flex; align-items: center; gap: 4px; padding: 0 10px; border-bottom: 1px solid var(--ni-border); }
[role="tablist"] { display: flex; gap: 2px; flex: 1; }
[role="tab"] { padding: 8px 8px; border-bottom: 2px solid transparent; color: var(--ni-muted); }
[role="tab"][aria-selected="true"] { color: var(--ni-fg); border-bottom-color: var(--ni-accent); font-weight: 600; }
.group-toggle { font-size: 12px; padding: 3px 8px; border: 1px solid var(--ni-border); border-radius: 12px; color: var(--ni-muted); }
.group-toggle[aria-pressed="true"] { background: var(--ni-accent); color: var(--ni-accent-fg); border-color: var(--ni-accent); }
.status { font-size: 11px; color: var(--ni-muted); padding: 4px 14px 0; }
.error { margin: 8px 10px 0; padding: 8px 10px; border-radius: 8px; background: var(--ni-error-bg); color: var(--ni-error-fg); font-size: 13px; }
.list { list-style: none; margin: 0; padding: 0; overflow-y: auto; flex: 1; }
.item { position: relative; display: flex; flex-direction: column; gap: 4px; padding: 10px 14px 8px 24px; border-bottom: 1px solid var(--ni-border); }
.item.unread { background: var(--ni-unread-bg); }
.item:hover { background: var(--ni-hover); }
.dot { position: absolute; left: 9px; top: 17px; width: 8px; height: 8px; border-radius: 50%; background: var(--ni-accent); }
.item:not(.unread) .dot { display: none; }
.open { text-align: left; min-width: 0; display: flex; flex-direction: column; gap: 2px; }
.actor { font-size: 12px; color: var(--ni-muted); }
.title { font-weight: 600; overflow-wrap: anywhere; }
.item:not(.unread) .title { font-weight: 500; }
.message { color: var(--ni-muted); overflow-wrap: anywhere; }
time { font-size: 12px; color: var(--ni-muted); }
.actions { display: flex; flex-wrap: wrap; gap: 2px 12px; }
.actions button { font-size: 12px; color: var(--ni-accent); padding: 2px 0; white-space: nowrap; }
.more { margin: 8px auto; padding: 6px 12px; border: 1px solid var(--ni-border); border-radius: 16px; }
.empty { padding: 28px 14px; text-align: center; color: var(--ni-muted); margin: 0; }
footer { display: flex; justify-content: flex-end; padding: 6px 10px; border-top: 1px solid var(--ni-border); }
footer:empty { display: none; }
@media (prefers-reduced-motion: reduce) { .bell, .panel { transition: none; } }
`;

  const BELL_PATH = "M6 8a6 6 0 1 1 12 0c0 7 3 9 3 9H3s3-2 3-9 M10.3 21a1.94 1.94 0 0 0 3.4 0";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TABS = [["inbox", "tabInbox"], ["unread", "tabUnread"], ["archived", "tabArchived"]];
  const BACKOFF_MAX_MS = 60000;
  const TICKET_RENEW_MARGIN_MS = 60000; // a new ticket this long before the old one expires
  const PROVIDER_WAIT_MS = 10000;
  const DEGRADED_MS = 5000;
  const STREAM_RETRY_POLLS = 10; // polling: try the stream again after this many polls // a stream that ends this soon after its first event: no GRIP proxy (polling)

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child) el.append(child);
    return el;
  }

  function base64UrlToBytes(text) {
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && problem.detail) || `HTTP ${status}`);
      this.status = status;
      this.code = (problem && problem.code) || null;
    }
  }

  class NotificationInbox extends HTMLElement {
    static get observedAttributes() { return ["api-base", "token-provider"]; }

    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      this._strings = { ...DEFAULT_STRINGS };
      this.tokenProvider = null;
      this.resolveActor = (n) => (n && n.payload && (n.payload.actor_name || n.payload.actor)) || "";
      this._token = null;
      this._counts = { unread_count: 0, unseen_count: 0 };
      this._tab = "inbox";
      this._grouped = false;
      this._items = []; // notifications or groups, as shown
      this._busy = 0; // actions in flight
      this._actions = 0; // actions started (a list answer that predates one is not applied)
      this._cursor = null;
      this._listTag = null; // the ETag of the first page shown
      this._loaded = false;
      this._connected = false;
      this._stream = null;
      this._backoff = 0;
      this._timers = new Set();
      this._pushKey = null;
      this._channel = null;
      this._build();
    }

    // ---- public API -------------------------------------------------------------------------
    get strings() { return this._strings; }
    set strings(value) { this._strings = { ...DEFAULT_STRINGS, ...(value || {}) }; this._relabel(); this._render(); }
    get counts() { return this._countsKnown ? { ...this._counts } : null; } // null until the first answer
    get apiBase() {
      const base = this.getAttribute("api-base") || "/api/v1";
      return new URL(base, document.baseURI).href.replace(/\/+$/, "");
    }
    get open() { return !this._panel.hidden; }
    set open(value) { if (value) this.show(); else this.hide(); }

    show() {
      if (this.open) return;
      this._panel.hidden = false;
      this._place();
      this._bell.setAttribute("aria-expanded", "true");
      this._emit("inbox-open");
      this._reload().then(() => this._markShownSeen());
    }

    // Under the bell, toward the side of the viewport that has room for it.
    _place() {
      const bell = this.getBoundingClientRect();
      const width = this._panel.offsetWidth;
      this._panel.classList.toggle("start", bell.right < width + 8 && bell.left + width < window.innerWidth);
    }

    hide(focusBell) {
      if (!this.open) return;
      this._panel.hidden = true;
      this._bell.setAttribute("aria-expanded", "false");
      if (focusBell) this._bell.focus();
      this._emit("inbox-close");
    }

    refresh() { return Promise.all([this._refreshCounts(), this.open ? this._reload() : null]); }

    connectedCallback() {
      this._connected = true;
      this._onDocumentClick = (event) => { if (this.open && !event.composedPath().includes(this)) this.hide(false); };
      document.addEventListener("click", this._onDocumentClick);
      this._openChannel();
      this._refreshCounts().catch(() => {});
      this._connectStream();
      this._setupPush();
      if ("serviceWorker" in navigator) {
        // a push shown by the service worker (sw.js): the counts changed
        this._onWorkerMessage = (event) => {
          if (event.data && event.data.type === "notification-inbox:push") this.refresh().catch(() => {});
        };
        navigator.serviceWorker.addEventListener("message", this._onWorkerMessage);
      }
      this._every(60000, () => this._updateTimes());
    }

    disconnectedCallback() {
      this._connected = false;
      document.removeEventListener("click", this._onDocumentClick);
      if (this._onWorkerMessage) navigator.serviceWorker.removeEventListener("message", this._onWorkerMessage);
      this._closeStream();
      for (const timer of this._timers) clearTimeout(timer);
      this._timers.clear();
      if (this._channel) this._channel.close();
      this._channel = null;
    }

    attributeChangedCallback(name, old, value) {
      if (!this._connected || old === value) return;
      this._token = null;
      this._closeStream();
      this._items = []; this._loaded = false;
      this._refreshCounts().catch(() => {});
      this._connectStream();
    }

    // ---- DOM ----------------------------------------------------------------------------------
    _build() {
      const root = this.shadowRoot;
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
      const svg = document.createElementNS(SVG_NS, "svg");
      svg.setAttribute("viewBox", "0 0 24 24");
      svg.setAttribute("aria-hidden", "true");
      const path = document.createElementNS(SVG_NS, "path");
      path.setAttribute("d", BELL_PATH);
      svg.append(path);
      this._badge = h("span", { class: "badge", part: "badge", "aria-hidden": "true", hidden: true });
      this._bell = h("button", { class: "bell", part: "bell", type: "button", "aria-haspopup": "dialog",
                                 "aria-expanded": "false", onclick: () => (this.open ? this.hide(true) : this.show()) },
                     svg, this._badge);
      this._announce = h("span", { class: "sr-only", "aria-live": "polite", "aria-atomic": "true", role: "status" });
      this._heading = h("h2", { id: "ni-title" });
      this._markAll = h("button", { class: "link mark-all", type: "button", onclick: () => this._markAllRead() });
      this._pushButton = h("button", { class: "link push", type: "button", hidden: true, onclick: () => this._togglePush() });
      this._tabs = h("div", { role: "tablist", onkeydown: (e) => this._tabKeys(e) });
      for (const [name] of TABS) {
        this._tabs.append(h("button", { role: "tab", type: "button", "data-tab": name, id: `ni-tab-${name}`,
                                         "aria-controls": "ni-list", onclick: () => this._selectTab(name) }));
      }
      this._groupToggle = h("button", { class: "group-toggle", type: "button", "aria-pressed": "false",
                                        onclick: () => this._toggleGrouped() });
      this._status = h("div", { class: "status", part: "status" });
      this._error = h("div", { class: "error", role: "alert", part: "error", hidden: true });
      this._list = h("ul", { class: "list", id: "ni-list", role: "tabpanel", part: "list" });
      this._more = h("button", { class: "more", type: "button", hidden: true, onclick: () => this._loadMore() });
      this._empty = h("p", { class: "empty", hidden: true });
      this._panel = h("div", { class: "panel", part: "panel", role: "dialog", "aria-labelledby": "ni-title", hidden: true,
                                onkeydown: (e) => { if (e.key === "Escape") { e.stopPropagation(); this.hide(true); } } },
                      h("header", {}, this._heading, this._markAll),
                      h("div", { class: "toolbar" }, this._tabs, this._groupToggle),
                      this._status, this._error, this._list, this._empty, this._more,
                      h("footer", {}, this._pushButton));
      root.append(this._bell, this._announce, this._panel);
      this._relabel();
    }

    _relabel() {
      const s = this._strings;
      this._heading.textContent = s.title;
      this._markAll.textContent = s.markAllRead;
      this._more.textContent = s.loadMore;
      this._empty.textContent = s.empty;
      this._groupToggle.textContent = s.grouped;
      for (const [name, key] of TABS) {
        const tab = this._tabs.querySelector(`[data-tab="${name}"]`);
        tab.textContent = s[key];
        const selected = name === this._tab;
        tab.setAttribute("aria-selected", String(selected));
        tab.tabIndex = selected ? 0 : -1;
      }
      this._groupToggle.hidden = this._tab === "archived";
      this._showCounts();
      this._showPushButton();
    }

    _showCounts() {
      const unseen = this._counts.unseen_count;
      this._badge.textContent = unseen > 99 ? "99+" : String(unseen);
      this._badge.hidden = unseen === 0;
      const label = this._strings.unseenLabel(unseen);
      this._bell.setAttribute("aria-label", `${this._strings.bell}: ${label}`);
      if (this._announce.textContent !== label) this._announce.textContent = label;
      this._markAll.disabled = this._counts.unread_count === 0;
    }

    _render() {
      const list = this._list;
      const focusedId = this.shadowRoot.activeElement && this.shadowRoot.activeElement.closest(".item")
        && this.shadowRoot.activeElement.closest(".item").dataset.key;
      const focusedAction = focusedId && this.shadowRoot.activeElement.dataset.action;
      // A row whose content is unchanged keeps its node: a list answer arriving between a click's
      // mousedown and mouseup (a sync after a live update) must not swap the button under the pointer,
      // which loses the click. Handlers find their entry by key when clicked (_current).
      const shown = new Map(Array.from(list.children, (row) => [row.dataset.key, row]));
      const rows = this._items.map((entry) => {
        const row = this._grouped && this._tab !== "archived" ? this._groupRow(entry) : this._row(entry);
        const old = shown.get(row.dataset.key);
        return old && old.isEqualNode(row) ? old : row;
      });
      if (rows.length !== list.children.length || rows.some((row, index) => row !== list.children[index])) {
        list.replaceChildren(...rows);
      }
      this._empty.hidden = !this._loaded || this._items.length > 0;
      this._more.hidden = !this._cursor;
      if (focusedId) {
        const row = list.querySelector(`.item[data-key="${CSS_escape(focusedId)}"]`);
        const target = row && (row.querySelector(`[data-action="${focusedAction}"]`) || row.querySelector("button"));
        if (target) target.focus();
      }
    }

    _row(n) {
      const s = this._strings;
      const unread = n.status === "unread";
      const actor = this.resolveActor(n);
      const actions = h("div", { class: "actions" });
      if (n.status === "archived") {
        actions.append(this._action("unarchive", s.unarchive, n));
      } else {
        actions.append(this._action(unread ? "read" : "unread", unread ? s.markRead : s.markUnread, n),
                       this._action("archive", s.archive, n),
                       this._action("snooze-hour", s.snoozeHour, n),
                       this._action("snooze-tomorrow", s.snoozeTomorrow, n));
      }
      return h("li", { class: unread ? "item unread" : "item", part: unread ? "item unread" : "item",
                       "data-id": n.notification_id, "data-key": n.notification_id, "data-status": n.status },
               h("span", { class: "dot", title: s.unreadDot }),
               h("button", { class: "open", type: "button", "data-action": "open", onclick: () => this._openItem(this._current(n)) },
                 actor ? h("span", { class: "actor", text: actor }) : null,
                 h("span", { class: "title", text: n.title }),
                 n.message ? h("span", { class: "message", text: n.message }) : null,
                 this._time(n.delivered_at)),
               actions);
    }

    _groupRow(group) {
      const s = this._strings;
      const latest = group.latest;
      const unread = group.unread_count > 0;
      const key = group.group_key || latest.notification_id;
      const others = s.others(this.resolveActor(latest), group.notifications_count - 1);
      return h("li", { class: unread ? "item unread group" : "item group", part: "item group", "data-key": key,
                       "data-id": latest.notification_id, "data-count": group.notifications_count },
               h("span", { class: "dot", title: s.unreadDot }),
               h("button", { class: "open", type: "button", "data-action": "open", onclick: () => {
                 const current = this._current(group);
                 this._openItem(current.latest, current);
               } },
                 others ? h("span", { class: "actor", text: others }) : null,
                 h("span", { class: "title", text: latest.title }),
                 latest.message ? h("span", { class: "message", text: latest.message }) : null,
                 this._time(latest.delivered_at)),
               h("div", { class: "actions" },
                 unread ? this._action("group-read", s.markRead, group) : null,
                 this._action("group-archive", s.archive, group)));
    }

    _action(name, label, target) {
      return h("button", { type: "button", "data-action": name, text: label,
                           onclick: (event) => { event.stopPropagation(); this._act(name, this._current(target)); } });
    }

    // The shown entry with this one's key (a kept row's handlers were made for an earlier, equal-looking one).
    _current(entry) {
      const key = this._keyOf(entry);
      return this._items.find((e) => this._keyOf(e) === key) || entry;
    }

    _time(iso) {
      return h("time", { datetime: iso, title: new Date(iso).toLocaleString(this._lang()), text: this._relative(iso) });
    }

    _lang() { return this.closest("[lang]") ? this.closest("[lang]").lang : (document.documentElement.lang || undefined); }

    _relative(iso) {
      const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
      const format = new Intl.RelativeTimeFormat(this._lang(), { numeric: "auto" });
      for (const [unit, size] of [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
                                  ["hour", 3600], ["minute", 60]]) {
        if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
      }
      return format.format(0, "second");
    }

    _updateTimes() {
      for (const time of this._list.querySelectorAll("time")) time.textContent = this._relative(time.dateTime);
    }

    _showError(message) {
      this._error.textContent = message;
      this._error.hidden = false;
      clearTimeout(this._errorTimer);
      this._errorTimer = setTimeout(() => { this._error.hidden = true; }, 8000);
    }

    _emit(name, detail, cancelable) {
      return this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true, cancelable: !!cancelable }));
    }

    _every(ms, fn) {
      const tick = () => { fn(); this._later(ms, tick); };
      this._later(ms, tick);
    }

    _later(ms, fn) {
      const timer = setTimeout(() => { this._timers.delete(timer); if (this._connected) fn(); }, ms);
      this._timers.add(timer);
      return timer;
    }

    // ---- HTTP -----------------------------------------------------------------------------------
    async _getToken(renew) {
      if (this._token && !renew) return this._token;
      if (!this._tokenRequest) {
        // One provider call at a time, however many requests need the token.
        this._tokenRequest = (async () => (await this._provider())())().finally(() => { this._tokenRequest = null; });
      }
      this._token = await this._tokenRequest;
      return this._token;
    }

    // The host page's callback: the `tokenProvider` property, or the global function `token-provider`
    // names. A host script that runs after this one (defer order) gets up to PROVIDER_WAIT_MS to define it.
    async _provider() {
      const deadline = Date.now() + PROVIDER_WAIT_MS;
      for (;;) {
        let provider = this.tokenProvider;
        const name = this.getAttribute("token-provider");
        if (!provider && name) provider = name.split(".").reduce((obj, key) => (obj == null ? obj : obj[key]), window);
        if (typeof provider === "function") return provider;
        if (Date.now() > deadline) throw new ApiError(0, { code: "missing_token", detail: "no token-provider" });
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }

    async _api(method, path, { body, etag, keepalive, auth = true } = {}, retried = false) {
      const headers = {};
      if (auth) headers.Authorization = `Bearer ${await this._getToken(false)}`;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (etag) headers["If-None-Match"] = etag;
      const response = await fetch(this.apiBase + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
        credentials: "omit", keepalive: !!keepalive });
      if (response.status === 401 && auth && !retried) {
        await this._getToken(true);
        return this._api(method, path, { body, etag, keepalive, auth }, true);
      }
      if (response.status === 304) return { status: 304, etag, data: null, response };
      let data = null;
      const type = response.headers.get("Content-Type") || "";
      if (response.status !== 204 && type.includes("json")) data = await response.json();
      if (!response.ok) throw new ApiError(response.status, data);
      return { status: response.status, etag: response.headers.get("ETag"), data, response };
    }

    // ---- counts and lists -------------------------------------------------------------------
    _setCounts(counts, fromEvent) {
      if (!counts) return;
      const next = { unread_count: counts.unread_count, unseen_count: counts.unseen_count };
      if (next.unread_count === undefined || next.unseen_count === undefined) return;
      const changed = !this._countsKnown || next.unread_count !== this._counts.unread_count
        || next.unseen_count !== this._counts.unseen_count;
      this._counts = next;
      this._countsKnown = true;
      this._showCounts();
      if (changed) this._emit("inbox-counts", this.counts);
      if (fromEvent && this.open) this._sync();
    }

    async _refreshCounts() {
      const result = await this._api("GET", "/notifications/unread/count", { etag: this._countsTag });
      if (result.status === 200) {
        this._countsTag = result.etag;
        this._setCounts(result.data);
      }
      const interval = parseInt(result.response.headers.get("X-Poll-Interval") || "", 10);
      if (interval > 0) this._pollSeconds = interval;
      return result.status === 200;
    }

    _path(cursor, limit) {
      const size = limit || parseInt(this.getAttribute("page-size") || "20", 10);
      const query = new URLSearchParams({ limit: String(size) });
      if (cursor) query.set("cursor", cursor);
      if (this._grouped && this._tab !== "archived") {
        if (this._tab === "unread") query.set("unread", "true");
        return `/notifications/groups?${query}`;
      }
      if (this._tab !== "inbox") query.set("status", this._tab);
      return `/notifications?${query}`;
    }

    _keyOf(entry) { return entry.notification_id || entry.group_key || entry.latest.notification_id; }

    async _reload() {
      this._status.textContent = this._loaded ? this._status.textContent : this._strings.loading;
      try {
        const result = await this._api("GET", this._path(null));
        this._items = result.data.items;
        this._cursor = result.data.next_cursor;
        this._listTag = result.etag;
        this._loaded = true;
        this._render();
      } catch (error) {
        this._showError(this._strings.errorLoad);
        this._emit("inbox-error", { action: "load", status: error.status, code: error.code, message: error.message });
      }
      this._showLiveStatus();
    }

    /* Bring the shown first page up to date (after a counts change that this tab did not cause: another
       tab, a retraction, a snooze ending): one request, a 304 when nothing changed. */
    async _sync() {
      if (this._busy) { this._syncPending = true; return; } // once the action is done
      if (this._syncing) { this._syncAgain = true; return; }
      this._syncing = true;
      try {
        do {
          this._syncAgain = false;
          const shown = Math.min(100, Math.max(this._items.length, parseInt(this.getAttribute("page-size") || "20", 10)));
          const path = this._path(null, shown);
          const started = this._actions;
          const result = await this._api("GET", path, { etag: this._listTag });
          if (result.status === 304) continue;
          // An action of ours began meanwhile: this answer may predate it (its optimistic state stays).
          if (this._busy) { this._syncPending = true; continue; }
          if (started !== this._actions) { this._syncAgain = true; continue; }
          const fresh = result.data.items;
          const keys = new Set(fresh.map((e) => this._keyOf(e)));
          // Past the refreshed range (the user loaded more than 100): keep what was shown, minus repeats.
          const rest = this._items.length > shown ? this._items.slice(shown).filter((e) => !keys.has(this._keyOf(e))) : [];
          this._items = fresh.concat(rest);
          if (!rest.length) this._cursor = result.data.next_cursor;
          this._listTag = result.etag;
          this._loaded = true;
          this._render();
        } while (this._syncAgain);
      } catch (error) {
        // the next event or poll tries again
      } finally {
        this._syncing = false;
      }
    }

    async _loadMore() {
      if (!this._cursor) return;
      const hadFocus = this.shadowRoot.activeElement === this._more;
      try {
        const result = await this._api("GET", this._path(this._cursor));
        const keys = new Set(this._items.map((e) => this._keyOf(e)));
        const added = result.data.items.filter((e) => !keys.has(this._keyOf(e)));
        const firstAdded = this._items.length;
        this._items = this._items.concat(added);
        this._cursor = result.data.next_cursor;
        this._render();
        // a keyboard user lands on the first new item, not on a button that may now be hidden
        const row = this._list.children[firstAdded];
        if (hadFocus && row) row.querySelector(".open").focus();
      } catch (error) {
        this._showError(this._strings.errorLoad);
        this._emit("inbox-error", { action: "load", status: error.status, code: error.code, message: error.message });
      }
    }

    _selectTab(name) {
      if (name === this._tab) return;
      this._tab = name;
      this._items = []; this._cursor = null; this._loaded = false; this._listTag = null;
      this._relabel();
      this._render();
      this._reload();
    }

    _tabKeys(event) {
      const names = TABS.map(([name]) => name);
      const index = names.indexOf(this._tab);
      let next = null;
      if (event.key === "ArrowRight") next = names[(index + 1) % names.length];
      else if (event.key === "ArrowLeft") next = names[(index + names.length - 1) % names.length];
      else if (event.key === "Home") next = names[0];
      else if (event.key === "End") next = names[names.length - 1];
      if (!next) return;
      event.preventDefault();
      this._selectTab(next);
      this._tabs.querySelector(`[data-tab="${next}"]`).focus();
    }

    _toggleGrouped() {
      this._grouped = !this._grouped;
      this._groupToggle.setAttribute("aria-pressed", String(this._grouped));
      this._items = []; this._cursor = null; this._loaded = false; this._listTag = null;
      this._render();
      this._reload();
    }

    _newest() {
      let newest = null;
      for (const entry of this._items) {
        const at = entry.delivered_at || (entry.latest && entry.latest.delivered_at);
        if (at && (!newest || at > newest)) newest = at;
      }
      return newest;
    }

    // Opening the panel marks what it shows as seen: `before` = the newest shown, so that a notification
    // arriving meanwhile stays unseen.
    async _markShownSeen() {
      const before = this._newest();
      const unseen = this._items.some((e) => (e.latest || e).seen_at === null);
      if (!before || !unseen || this._tab === "archived") return;
      try {
        const result = await this._api("POST", "/notifications/bulk", { body: { action: "seen", all: true, before } });
        this._setCounts(result.data);
        this._broadcast();
      } catch (error) {
        this._emit("inbox-error", { action: "seen", status: error.status, code: error.code, message: error.message });
      }
    }

    // ---- actions: optimistic, rolled back with a visible error when the API refuses -----------
    async _act(name, target) {
      const snapshot = { items: this._items.slice(), counts: { ...this._counts }, cursor: this._cursor };
      const replace = (id, changes) => {
        this._items = this._items.map((n) => (n.notification_id === id ? { ...n, ...changes } : n));
      };
      const remove = (key) => { this._items = this._items.filter((e) => this._keyOf(e) !== key); };
      const now = new Date().toISOString();
      const counts = { ...this._counts };
      let request;
      const id = target.notification_id;
      const unseen = target.seen_at === null && target.status !== "archived";
      switch (name) {
        case "read":
          replace(id, { status: "read", read_at: now, seen_at: target.seen_at || now });
          counts.unread_count -= 1; if (unseen) counts.unseen_count -= 1;
          if (this._tab === "unread") remove(id);
          request = ["PUT", `/notifications/${id}/read`];
          break;
        case "unread":
          replace(id, { status: "unread", read_at: null });
          counts.unread_count += 1;
          request = ["DELETE", `/notifications/${id}/read`];
          break;
        case "archive":
          remove(id);
          if (target.status === "unread") counts.unread_count -= 1;
          if (unseen) counts.unseen_count -= 1;
          request = ["DELETE", `/notifications/${id}`];
          break;
        case "unarchive":
          remove(id);
          request = ["POST", "/notifications/bulk", { action: "unarchive", notification_ids: [id] }];
          break;
        case "snooze-hour":
        case "snooze-tomorrow": {
          const until = new Date();
          if (name === "snooze-hour") until.setTime(until.getTime() + 3600 * 1000);
          else { until.setDate(until.getDate() + 1); until.setHours(9, 0, 0, 0); }
          remove(id);
          if (target.status === "unread") counts.unread_count -= 1;
          if (unseen) counts.unseen_count -= 1;
          request = ["PUT", `/notifications/${id}/snooze`, { until: until.toISOString() }];
          break;
        }
        case "group-read":
        case "group-archive": {
          const group = target;
          const selector = group.group_key ? { group_key: group.group_key }
                                           : { notification_ids: [group.latest.notification_id] };
          const action = name === "group-read" ? "read" : "archive";
          const key = this._keyOf(group);
          if (action === "read") {
            this._items = this._items.map((g) => (this._keyOf(g) === key
              ? { ...g, unread_count: 0, latest: { ...g.latest, status: "read" } } : g));
            if (this._tab === "unread") remove(key);
            counts.unread_count -= group.unread_count;
          } else {
            remove(key);
            counts.unread_count -= group.unread_count;
          }
          // `before`: what was shown; a member arriving meanwhile is left alone
          request = ["POST", "/notifications/bulk", { action, ...selector, before: group.latest.delivered_at }];
          break;
        }
        default:
          return;
      }
      counts.unread_count = Math.max(0, counts.unread_count);
      counts.unseen_count = Math.max(0, counts.unseen_count);
      this._counts = counts;
      this._showCounts();
      this._render();
      this._busy = (this._busy || 0) + 1;
      this._actions = (this._actions || 0) + 1;
      try {
        const [method, path, body] = request;
        const result = await this._api(method, path, { body });
        if (result.data && result.data.unread_count !== undefined && result.data.unseen_count !== undefined) {
          this._setCounts(result.data);
        } else {
          await this._refreshCounts().catch(() => {});
        }
        this._listTag = null; // our own change: the next sync must not trust the old tag
        this._broadcast();
        this._emit("inbox-change", { action: name, target });
      } catch (error) {
        this._items = snapshot.items;
        this._cursor = snapshot.cursor;
        this._counts = snapshot.counts;
        this._showCounts();
        this._render();
        this._showError(`${this._strings.errorAction} (${error.message})`);
        this._emit("inbox-error", { action: name, status: error.status, code: error.code, message: error.message });
      } finally {
        this._busy -= 1;
        if (!this._busy && this._syncPending && this.open) { this._syncPending = false; this._sync(); }
      }
    }

    async _markAllRead() {
      const before = this._tab === "archived" ? null : this._newest();
      const snapshot = { items: this._items.slice(), counts: { ...this._counts } };
      this._items = this._items.map((e) => (e.notification_id
        ? (e.status === "unread" ? { ...e, status: "read" } : e)
        : { ...e, unread_count: 0, latest: { ...e.latest, status: e.latest.status === "unread" ? "read" : e.latest.status } }));
      if (this._tab === "unread") this._items = [];
      this._counts = { ...this._counts, unread_count: 0 };
      this._showCounts();
      this._render();
      this._busy = (this._busy || 0) + 1;
      this._actions = (this._actions || 0) + 1;
      try {
        const body = { all: true };
        if (before) body.before = before;
        const result = await this._api("POST", "/notifications/mark-read", { body });
        this._setCounts({ unseen_count: this._counts.unseen_count, ...result.data });
        this._listTag = null;
        this._broadcast();
        this._emit("inbox-change", { action: "mark-all-read" });
      } catch (error) {
        this._items = snapshot.items;
        this._counts = snapshot.counts;
        this._showCounts();
        this._render();
        this._showError(`${this._strings.errorAction} (${error.message})`);
        this._emit("inbox-error", { action: "mark-all-read", status: error.status, code: error.code, message: error.message });
      } finally {
        this._busy -= 1;
        if (!this._busy && this._syncPending && this.open) { this._syncPending = false; this._sync(); }
      }
    }

    async _openItem(n, group) {
      const proceed = this._emit("inbox-click", { notification: n, group: group || null }, true);
      if (n.status === "unread") {
        if (group) await this._act("group-read", group);
        else await this._act("read", n);
      }
      if (!proceed || !n.action_url || !/^https?:\/\//i.test(n.action_url)) return;
      window.location.assign(n.action_url);
    }

    // ---- live updates ---------------------------------------------------------------------------
    async _connectStream() {
      if (!this._connected || typeof EventSource === "undefined") return this._poll();
      let ticket;
      try {
        const result = await this._api("POST", "/notifications/stream/ticket");
        ticket = result.data;
      } catch (error) {
        return this._retryStream();
      }
      const url = `${this.apiBase}/notifications/stream?ticket=${encodeURIComponent(ticket.ticket)}`;
      const previous = this._stream;
      const stream = new EventSource(url);
      const state = { source: stream, firstAt: 0 };
      this._stream = state;
      const renewIn = Math.max(5000, new Date(ticket.expires_at).getTime() - Date.now() - TICKET_RENEW_MARGIN_MS);
      state.renewTimer = this._later(renewIn, () => { if (this._stream === state) this._connectStream(); });
      stream.addEventListener("counts", (event) => {
        if (!state.firstAt) {
          state.firstAt = Date.now();
          if (previous) this._closeStream(previous); // the new stream is up: the old one can go
        }
        this._backoff = 0;
        // `id` is the user's change version: events from different API processes may arrive out of order
        const version = Number(event.lastEventId);
        if (version && this._version && version < this._version) return;
        if (version) this._version = version;
        this._setCounts(JSON.parse(event.data), true);
      });
      stream.addEventListener("notification", (event) => this._received(JSON.parse(event.data)));
      stream.addEventListener("open", () => { state.openedAt = Date.now(); });
      stream.addEventListener("error", () => {
        if (this._stream !== state) return;
        if (stream.readyState === EventSource.CLOSED) {
          // refused (an expired or bad ticket, 401) or a network failure: a new ticket, after a backoff
          this._closeStream(state);
          this._stream = null;
          this._retryStream();
          return;
        }
        // The server ended the stream right after its first event: no GRIP proxy, so the stream is a poll
        // (`retry:` = POLL_INTERVAL_SECONDS). Poll the counts instead, at the same interval (their
        // X-Poll-Interval) with If-None-Match: a 304 costs the server one indexed lookup, a reconnection
        // a ticket check and a count. Now and then the stream is tried again (a proxy may be back).
        if (state.firstAt && Date.now() - state.firstAt < DEGRADED_MS) {
          this._closeStream(state);
          this._stream = null;
          this._poll(STREAM_RETRY_POLLS);
        }
      });
      this._setLiveMode("stream");
      return undefined;
    }

    _retryStream() {
      this._setLiveMode("offline");
      this._backoff = Math.min(BACKOFF_MAX_MS, this._backoff ? this._backoff * 2 : 1000);
      const delay = this._backoff / 2 + Math.random() * this._backoff / 2; // jitter: tabs do not stampede
      this._later(delay, () => this._connectStream());
    }

    _closeStream(state) {
      const target = state || this._stream;
      if (!target) return;
      target.source.close();
      clearTimeout(target.renewTimer);
      this._timers.delete(target.renewTimer);
      if (!state) this._stream = null;
    }

    // Poll the counts with If-None-Match at the server's interval (X-Poll-Interval); a change refreshes the
    // shown page. `rounds`: polls before the stream is tried again (none: poll for good, no EventSource).
    _poll(rounds) {
      this._setLiveMode("polling");
      // Interval unknown (the stream degraded before the first count's answer, which carries it): ask now;
      // that answer sets it. (Was: wait 30 s, where the server asks for a few.)
      this._later(this._pollSeconds ? this._pollSeconds * 1000 : 0, async () => {
        try { if (await this._refreshCounts() && this.open) this._sync(); } catch (error) { /* next time */ }
        if (rounds === undefined || rounds > 1) this._poll(rounds === undefined ? undefined : rounds - 1);
        else this._connectStream();
      });
    }

    _setLiveMode(mode) {
      if (this.getAttribute("live-mode") !== mode) this.setAttribute("live-mode", mode);
      this._showLiveStatus();
    }

    _showLiveStatus() {
      const mode = this.getAttribute("live-mode");
      this._status.textContent = mode === "stream" ? "" : mode === "polling" ? this._strings.polling
                               : mode === "offline" ? this._strings.offline : "";
    }

    _received(n) {
      this._emit("inbox-notification", n);
      if (!this.open || !this._loaded) return;
      const shows = this._grouped ? false : (this._tab === "inbox" || (this._tab === "unread" && n.status === "unread"));
      if (shows && !this._items.some((e) => e.notification_id === n.notification_id)) {
        this._items = [n].concat(this._items);
        this._render();
      }
    }

    // ---- other tabs -------------------------------------------------------------------------
    _openChannel() {
      if (typeof BroadcastChannel === "undefined") return;
      this._channel = new BroadcastChannel(`notification-inbox ${this.apiBase}`);
      this._channel.onmessage = (event) => {
        if (!event.data || event.data.type !== "changed") return;
        this._countsTag = null;
        this._refreshCounts().then(() => { if (this.open) this._sync(); }).catch(() => {});
      };
    }

    _broadcast() {
      if (this._channel) this._channel.postMessage({ type: "changed" });
    }

    // ---- Web Push -----------------------------------------------------------------------------
    _pushSupported() {
      return "serviceWorker" in navigator && typeof PushManager !== "undefined" && typeof Notification !== "undefined"
        && window.isSecureContext;
    }

    _serviceWorkerUrl() {
      // The host page's choice (relative to the page: a service worker is always of the page's origin),
      // else the API's /ui/sw.js (which works when the page and the API share an origin).
      const chosen = this.getAttribute("service-worker");
      return chosen ? new URL(chosen, document.baseURI).href : new URL("/ui/sw.js", this.apiBase).href;
    }

    async _registration(register) {
      const url = this._serviceWorkerUrl();
      const scope = this.getAttribute("service-worker-scope") || undefined;
      if (!register) {
        return navigator.serviceWorker.getRegistration(scope || new URL("./", url).href);
      }
      const registration = await navigator.serviceWorker.register(trustedScriptUrl(url), scope ? { scope } : undefined);
      const worker = registration.installing || registration.waiting;
      if (worker && !registration.active) {
        await new Promise((resolve) => {
          worker.addEventListener("statechange", () => { if (worker.state === "activated") resolve(); });
        });
      }
      return registration;
    }

    async _setupPush() {
      if (!this._pushSupported()) return;
      try {
        const result = await this._api("GET", "/push/vapid-public-key", { auth: false });
        this._pushKey = result.data && result.data.public_key;
      } catch (error) {
        this._pushKey = null; // 404: push is not configured on this server
      }
      if (!this._pushKey) return this._showPushButton();
      try {
        const registration = await this._registration(false);
        const subscription = registration && await registration.pushManager.getSubscription();
        this._pushOn = !!subscription && Notification.permission === "granted";
      } catch (error) {
        this._pushOn = false;
      }
      return this._showPushButton();
    }

    _showPushButton() {
      if (!this._pushButton) return;
      this._pushButton.hidden = !this._pushKey;
      const blocked = typeof Notification !== "undefined" && Notification.permission === "denied";
      this._pushButton.textContent = this._pushOn ? this._strings.disablePush
                                   : blocked ? this._strings.pushBlocked : this._strings.enablePush;
      this._pushButton.disabled = !this._pushOn && blocked;
    }

    async _togglePush() {
      try {
        if (this._pushOn) {
          const registration = await this._registration(false);
          const subscription = registration && await registration.pushManager.getSubscription();
          if (subscription) {
            await this._api("DELETE", `/push/subscriptions?endpoint=${encodeURIComponent(subscription.endpoint)}`)
              .catch((error) => { if (error.status !== 404) throw error; });
            await subscription.unsubscribe();
          }
          this._pushOn = false;
        } else {
          // asked from the user's click, as browsers require
          const permission = await Notification.requestPermission();
          if (permission !== "granted") { this._showPushButton(); return; }
          const registration = await this._registration(true);
          const subscription = await registration.pushManager.subscribe({
            userVisibleOnly: true, applicationServerKey: base64UrlToBytes(this._pushKey) });
          const body = { ...subscription.toJSON(), user_agent: navigator.userAgent.slice(0, 200) };
          await this._api("POST", "/push/subscriptions", { body });
          this._pushOn = true;
        }
        this._emit("inbox-push", { enabled: this._pushOn });
      } catch (error) {
        this._showError(`${this._strings.errorAction} (${error.message})`);
        this._emit("inbox-error", { action: "push", status: error.status, code: error.code, message: error.message });
      }
      this._showPushButton();
    }
  }

  // Under Trusted Types (`require-trusted-types-for 'script'`) a service worker's URL must be a
  // TrustedScriptURL: the host page's CSP allows the policy `trusted-types notification-inbox`, which
  // passes only same-origin URLs (a service worker cannot be anything else).
  let scriptUrlPolicy = null;
  function trustedScriptUrl(url) {
    if (!window.trustedTypes || !window.trustedTypes.createPolicy) return url;
    if (!scriptUrlPolicy) {
      try {
        scriptUrlPolicy = window.trustedTypes.createPolicy("notification-inbox", {
          createScriptURL: (value) => {
            const parsed = new URL(value, location.href);
            if (parsed.origin !== location.origin) throw new TypeError(`not this origin: ${value}`);
            return parsed.href;
          },
        });
      } catch (error) {
        return url; // the policy is not allowed: without enforced Trusted Types the plain URL works
      }
    }
    return scriptUrlPolicy.createScriptURL(url);
  }

  function CSS_escape(value) { return window.CSS && CSS.escape ? CSS.escape(value) : value.replace(/"/g, '\\"'); }

  NotificationInbox.defaultStrings = DEFAULT_STRINGS;
  window.NotificationInbox = NotificationInbox;
  customElements.define("notification-inbox", NotificationInbox);
})();
