/* The demo page's part: a token for the demo user (a development-only endpoint) and the
   "send me a test notification" button. */
(() => {
  "use strict";
  const root = document.querySelector("notification-inbox").getAttribute("data-ui-root") || "/ui";
  let count = 0;
  let current = null;

  // The component calls this for a token (again after a 401); it keeps it in memory only.
  async function token() {
    const response = await fetch(`${root}/demo/token`, { method: "POST", cache: "no-store" });
    if (!response.ok) throw new Error(`demo token: HTTP ${response.status}`);
    current = (await response.json()).token;
    return current;
  }

  async function send() {
    const status = document.getElementById("sent");
    count += 1;
    const response = await fetch(`${root}/demo/notifications`, {
      method: "POST", cache: "no-store",
      headers: { Authorization: `Bearer ${current || await token()}`, "Content-Type": "application/json" },
      body: JSON.stringify({ title: `Test notification #${count}` }),
    });
    status.textContent = response.ok ? `Sent test notification #${count}.` : `Failed: HTTP ${response.status}`;
  }

  window.notificationsDemo = { token };
  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("send").addEventListener("click", () => send().catch((e) => {
      document.getElementById("sent").textContent = `Failed: ${e.message}`;
    }));
  });
})();
