// The Today page, kept current: the server sends the figures' HTML every few seconds as
// server-sent events (/ui/today/events) and this swaps it in. Only the numbers change: no
// reload, the scroll position and the focus stay. When the session ends the server says so and
// the page reloads (to the sign-in page). Without this script the page reloads each minute.
(function () {
  "use strict";
  var box = document.getElementById("figures");
  if (!box || !window.EventSource) { return; }
  var live = document.getElementById("live");
  var source = new EventSource(box.getAttribute("data-events"));
  source.addEventListener("open", function () { if (live) { live.hidden = false; } });
  source.addEventListener("figures", function (e) {
    box.innerHTML = e.data;
    box.setAttribute("data-pushes", String(Number(box.getAttribute("data-pushes") || "0") + 1));
  });
  source.addEventListener("ended", function () { source.close(); window.location.reload(); });
  source.addEventListener("error", function () {
    if (live) { live.hidden = true; }
    // The browser tries again by itself unless the server refused (signed out, say).
    if (source.readyState === EventSource.CLOSED) {
      window.setTimeout(function () { window.location.reload(); }, 30000);
    }
  });
})();
