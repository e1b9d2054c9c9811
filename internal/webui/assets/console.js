// The console's live numbers: polls /live (the overview as JSON, no
// secret) every 5 s and updates the overview's counters and chart. The
// page works without it; it only saves a reload.
"use strict";
(function () {
  var svgNS = "http://www.w3.org/2000/svg";
  var chart = document.getElementById("chart");
  if (!chart) { return; }

  function set(id, value) {
    var el = document.getElementById(id);
    if (el && el.textContent !== String(value)) { el.textContent = String(value); }
  }

  function draw(minutes) {
    var height = 120, column = 10, top = 1;
    minutes.forEach(function (m) { top = Math.max(top, m.accepted + m.deferred + m.rejected); });
    Array.prototype.slice.call(chart.querySelectorAll("rect")).forEach(function (r) { r.remove(); });
    minutes.forEach(function (m, i) {
      var y = height;
      [["accepted", m.accepted], ["deferred", m.deferred], ["rejected", m.rejected]].forEach(function (s) {
        if (!s[1]) { return; }
        var h = Math.max(1, Math.floor(s[1] * height / top));
        y -= h;
        var r = document.createElementNS(svgNS, "rect");
        r.setAttribute("x", i * column); r.setAttribute("y", y);
        r.setAttribute("width", column - 2); r.setAttribute("height", h);
        r.setAttribute("class", "s-" + s[0]);
        var t = document.createElementNS(svgNS, "title");
        t.textContent = m.start.substring(11, 16) + ": " + s[1] + " " + s[0];
        r.appendChild(t);
        chart.appendChild(r);
      });
    });
  }

  function update(ov) {
    set("live-accepted", ov.messages_total.accepted);
    set("live-deferred", ov.messages_total.deferred);
    set("live-rejected", ov.messages_total.rejected);
    set("live-sessions-busy", ov.upstream_sessions_busy);
    set("live-sessions-open", ov.upstream_sessions_open);
    set("live-inflight", ov.messages_in_flight);
    set("live-attention", ov.attention_total);
    Object.keys(ov.accounts_by_state).forEach(function (s) { set("live-state-" + s, ov.accounts_by_state[s]); });
    var h = ov.messages_last_hour;
    set("live-hour", h.accepted + " accepted, " + h.deferred + " deferred, " + h.rejected + " rejected");
    set("live-at", ov.at.replace("T", " ").replace(/\..*$/, "").replace("Z", "") + " UTC");
    draw(ov.per_minute);
    document.body.setAttribute("data-live-updates", String(Number(document.body.getAttribute("data-live-updates") || 0) + 1));
  }

  function poll() {
    fetch("/live", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.assign("/signin"); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (ov) { if (ov) { update(ov); } })
      .catch(function () { /* the next poll tries again */ })
      .then(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
