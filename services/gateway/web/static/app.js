// EVA web UI: small enhancements only; every page works without them.
// - A form sends once: its submit button is disabled after the first
//   click (the server files once anyway: each form carries its own
//   idempotency key).
// - The queue refreshes itself (data-refresh seconds) without a reload,
//   and says so to screen readers only when the number of open requests
//   changes.
(function () {
  "use strict";
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if (f.dataset.sent === "1") { e.preventDefault(); return; }
    f.dataset.sent = "1";
    var b = f.querySelector("button[type=submit]");
    if (b) { window.setTimeout(function () { b.disabled = true; }, 0); }
  });

  var live = document.getElementById("queue-live");
  var secs = parseInt(document.body.dataset.refresh || "0", 10);
  if (!live || !secs || !window.fetch) { return; }
  var status = document.getElementById("live-status");
  function count() {
    var m = live.querySelector("[data-open]");
    return m ? m.getAttribute("data-open") : "";
  }
  function refresh() {
    if (document.hidden) { return; }
    var before = count();
    fetch(live.dataset.live, { credentials: "same-origin", headers: { "X-EVA-Refresh": "1" }, redirect: "error" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html");
        var fresh = doc.body.firstChild;
        if (!fresh) { return; }
        var focused = document.activeElement && live.contains(document.activeElement);
        if (focused) { return; } // never pull the rug from under the keyboard
        live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes));
        var after = count();
        if (status && after !== before) { status.textContent = live.querySelector("[data-open]").textContent; }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  window.setInterval(refresh, secs * 1000);
})();
