/* The service worker of <notification-inbox>: shows a Web Push (API.md, "What a push carries") and
 * opens or focuses the notification's action_url when it is clicked. Served at a stable URL
 * (/ui/sw.js, revalidated on every update check) with Service-Worker-Allowed: / so the host page
 * may choose a wider scope. */
"use strict";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let data = {};
  if (event.data) {
    try { data = event.data.json(); } catch (error) { data = { title: event.data.text() }; }
  }
  const title = data.title || "New notification";
  const options = {
    body: data.message || "",
    tag: data.notification_id || undefined, // a repeat of the same notification replaces it
    renotify: false,
    requireInteraction: data.priority === "urgent",
    timestamp: data.created_at ? Date.parse(data.created_at) : Date.now(),
    data: { notification_id: data.notification_id || null, action_url: data.action_url || null },
  };
  event.waitUntil(Promise.all([
    self.registration.showNotification(title, options),
    // open inboxes refresh their counts at once (they also hear it from the stream)
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      for (const client of windows) client.postMessage({ type: "notification-inbox:push", notification: data });
    }),
  ]));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = event.notification.data && event.notification.data.action_url;
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const url = target && /^https?:\/\//i.test(target) ? target : null;
    if (url) {
      for (const client of windows) {
        if (client.url === url && "focus" in client) return client.focus();
      }
      return self.clients.openWindow(url);
    }
    if (windows.length && "focus" in windows[0]) return windows[0].focus();
    return self.clients.openWindow(self.registration.scope);
  })());
});
