// EVA web UI: small enhancements only; every page works without them.
// - A form sends once: its submit button is disabled after the first
//   click (the server files once anyway: each form carries its own
//   idempotency key).
// - The queue (#queue-live) refreshes itself without a reload: on each
//   change the server streams (an EventSource on data-changes, GET
//   /v1/changes; a burst of changes makes one fetch; the queue, a read
//   model, may be a moment behind the log: while a request the stream
//   said was filed is not listed, up to 3 more at 1, 2, 4 s; when the
//   list changed nothing, 1 more at 2 s), and every
//   data-refresh seconds by the clock (4 times less often while the
//   stream is open; the only way without EventSource, or once the
//   stream was refused). Never while the page is hidden: once when it
//   shows again if something was missed. Never while the keyboard is in
//   the list: once it leaves. It says so to screen readers only when the
//   number of open requests changes. The stream closes on pagehide, and
//   when the page has stayed hidden a minute (data-release seconds on
//   #queue-live): a gateway serves a bounded number of streams, and
//   forgotten tabs must not hold them. It opens again when the page
//   shows, with one refresh for what changed meanwhile.
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
  var missed = false; // a refresh was skipped (hidden, or focus inside)
  var last = Date.now(); // the last refresh that replaced the list
  var soonTimer = 0;
  var es = null; // the change stream, while open or reconnecting
  var filed = {}; // requests the stream said were filed, not yet listed
  var released = false; // the stream was closed while the page was hidden
  var hiddenTimer = 0;
  function count() {
    var m = live.querySelector("[data-open]");
    return m ? m.getAttribute("data-open") : "";
  }
  // sig is what the list shows of each case: its id and status.
  function sig() {
    return Array.prototype.map.call(live.querySelectorAll("[data-case-id], [data-status]"), function (e) {
      return e.getAttribute("data-case-id") || e.getAttribute("data-status");
    }).join(" ");
  }
  // unlisted counts the filed requests the list does not show yet.
  function unlisted() {
    var n = 0;
    Object.keys(filed).forEach(function (id) {
      if (live.querySelector("[data-case-id='" + id + "']")) { delete filed[id]; } else { n++; }
    });
    return n;
  }
  function focused() {
    return document.activeElement && live.contains(document.activeElement);
  }
  // refresh fetches the list and replaces it. A change comes from the
  // log, and the queue, a read model, may be a moment behind it: after a
  // refresh for changes (tries: a number), while a filed request is not
  // listed, fetch again 1, 2 and 4 s later; when the list changed no
  // case's id or status, once more 2 s later.
  function refresh(tries) {
    if (document.hidden || focused()) { missed = true; return; }
    missed = false;
    var before = count(), was = sig();
    fetch(live.dataset.live, { credentials: "same-origin", headers: { "X-EVA-Refresh": "1" }, redirect: "error" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html");
        var fresh = doc.body.firstChild;
        if (!fresh) { return; }
        if (focused()) { missed = true; return; } // never pull the rug from under the keyboard
        live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes));
        last = Date.now();
        var after = count();
        if (status && after !== before) { status.textContent = live.querySelector("[data-open]").textContent; }
        if (typeof tries !== "number") { return; }
        var n = unlisted();
        if (n && tries < 3) {
          window.setTimeout(function () { refresh(tries + 1); }, 1000 << tries);
        } else if (n) {
          filed = {}; // beyond the first page, or gone again: the clock's
        } else if (tries === 0 && sig() === was) {
          window.setTimeout(function () { refresh(3); }, 2000);
        }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  // soon refreshes once, 400 ms after the first of a burst of calls.
  function soon() {
    if (soonTimer) { return; }
    soonTimer = window.setTimeout(function () { soonTimer = 0; refresh(0); }, 400);
  }
  function follow() {
    if (!window.EventSource || !live.dataset.changes || es) { return; }
    es = new EventSource(live.dataset.changes);
    var first = true;
    // The stream starts from now: what changed since the page was read
    // comes by one refresh. A reconnection resumes where it stopped.
    es.onopen = function () { if (first) { first = false; window.setTimeout(refresh, 400); } };
    es.onmessage = function (e) {
      try {
        var c = JSON.parse(e.data);
        if (c.type === "RequestSubmitted" && /^[0-9a-f-]{36}$/.test(c.case_id)) { filed[c.case_id] = true; }
      } catch (err) { /* not ours to read: refresh all the same */ }
      soon();
    };
    es.onerror = function () {
      // CLOSED: refused (4xx, signed out); the clock goes on alone.
      // Otherwise the browser reconnects by itself (Last-Event-ID).
      if (es && es.readyState === EventSource.CLOSED) { es = null; }
    };
  }
  window.setInterval(function () {
    var streaming = es && es.readyState === EventSource.OPEN;
    if (!streaming || Date.now() - last >= secs * 4000 - 500) { refresh(); }
  }, secs * 1000);
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      if (!hiddenTimer && es) {
        hiddenTimer = window.setTimeout(function () {
          hiddenTimer = 0;
          if (document.hidden && es) { es.close(); es = null; released = true; }
        }, parseInt(live.dataset.release || "60", 10) * 1000);
      }
      return;
    }
    if (hiddenTimer) { window.clearTimeout(hiddenTimer); hiddenTimer = 0; }
    if (released) { released = false; follow(); return; } // its opening refreshes
    if (missed) { soon(); }
  });
  live.addEventListener("focusout", function (e) {
    if (missed && !(e.relatedTarget && live.contains(e.relatedTarget))) { soon(); }
  });
  window.addEventListener("pagehide", function () {
    if (es) { es.close(); es = null; }
  });
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) { follow(); soon(); } // back from the back/forward cache
  });
  follow();
})();
