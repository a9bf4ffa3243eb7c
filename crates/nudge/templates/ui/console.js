// The console's small enhancements. Every page works without this file; with it, expiry countdowns tick,
// and the overview can refresh itself. Served from the binary at /ui/static/console.js (no other script
// runs: the pages' Content-Security-Policy allows this origin's scripts only).
(function () {
  "use strict";

  // "in 1d 23h", "5m ago": the same wording as the server's.
  function span(ms) {
    var d = Math.floor(Math.abs(ms) / 1000);
    var s;
    if (d < 60) s = d + "s";
    else if (d < 3600) s = Math.floor(d / 60) + "m";
    else if (d < 86400) s = Math.floor(d / 3600) + "h " + Math.floor((d % 3600) / 60) + "m";
    else s = Math.floor(d / 86400) + "d " + Math.floor((d % 86400) / 3600) + "h";
    return ms >= 0 ? "in " + s : s + " ago";
  }

  function tick() {
    var now = Date.now();
    var els = document.querySelectorAll("[data-countdown]");
    for (var i = 0; i < els.length; i++) {
      var at = Number(els[i].getAttribute("data-countdown"));
      if (isFinite(at)) els[i].textContent = span(at - now);
    }
  }

  // The overview reloads its content (tables and charts) every few seconds while the box is ticked; the
  // choice is kept for the browser tab.
  function live(main) {
    var every = Number(main.getAttribute("data-live")) * 1000;
    if (!(every > 0)) return;
    var box = document.createElement("p");
    box.className = "live";
    var label = document.createElement("label");
    var input = document.createElement("input");
    input.type = "checkbox";
    input.id = "live-refresh";
    input.checked = sessionStorage.getItem("nudge-live") === "1";
    label.appendChild(input);
    label.appendChild(document.createTextNode(" Refresh every " + every / 1000 + " s"));
    box.appendChild(label);
    var status = document.createElement("span");
    status.className = "muted";
    status.setAttribute("role", "status");
    box.appendChild(status);
    main.parentNode.insertBefore(box, main);
    var timer = null;
    function refresh() {
      fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) {
          if (r.redirected || !r.ok) throw new Error("HTTP " + r.status);
          return r.text();
        })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("main");
          if (!fresh) throw new Error("not a console page");
          main.innerHTML = fresh.innerHTML;
          status.textContent = "";
          tick();
        })
        .catch(function (e) {
          status.textContent = " Not refreshed: " + e.message + ". Reload the page to sign in again if needed.";
          stop();
        });
    }
    function start() {
      if (timer === null) timer = setInterval(refresh, every);
    }
    function stop() {
      if (timer !== null) clearInterval(timer);
      timer = null;
    }
    input.addEventListener("change", function () {
      sessionStorage.setItem("nudge-live", input.checked ? "1" : "0");
      if (input.checked) {
        refresh();
        start();
      } else {
        stop();
      }
    });
    if (input.checked) start();
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    var main = document.getElementById("main");
    if (main && main.hasAttribute("data-live")) live(main);
  });
})();
