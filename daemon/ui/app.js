// opmond dashboard. Plain script, no build step: it reads the admin JSON API
// (/api/v1/...) and the daemon's own state (/ui/api/status), redraws every
// REFRESH_MS, and keeps its filters in the query string so a view can be
// bookmarked. Every call it makes is bounded: the chart by its bucket count,
// recent failures by a record limit and an adaptive window, the service
// table is paged here.
(function () {
  "use strict";

  var REFRESH_MS = 10000;
  var MAX_BUCKETS = 1500;        // chart buckets per answer
  var FULL_RELOAD_MS = 300000;   // the whole chart range is asked for this often
  var RECENT_S = 600;            // in between, only this much (at least two buckets)
  var FAIL_LIMIT = 2000;         // records per recent-failures call
  var FAIL_SHOWN = 50;           // failures listed
  var QUARANTINE_SHOWN = 50;     // quarantined records listed
  var PAGE_SIZE = 50;            // service table rows per page
  var INTERVALS = [1, 5, 15, 60, 1440];
  var FAIL_FIELDS = [
    "requestInTs", "securityServerType", "succeeded", "faultCode", "faultString",
    "clientXRoadInstance", "clientMemberClass", "clientMemberCode", "clientSubsystemCode",
    "serviceXRoadInstance", "serviceMemberClass", "serviceMemberCode", "serviceSubsystemCode",
    "serviceCode", "serviceVersion"
  ];

  var $ = function (id) { return document.getElementById(id); };
  var form = $("filters");

  var state = {
    filters: null,        // from the URL
    sort: { key: "bad", dir: -1 },
    page: 0,
    find: "",
    services: [],         // health rows, unsorted
    failWindow: 600,      // seconds searched for recent failures; adapts
    lastStored: null,     // {t, n}: for the store rate
    rate: null,
    paused: false,
    busy: false,          // a refresh is running
    again: false,         // another was asked for meanwhile
    timer: 0,
    chart: null,
    traffic: null         // bucket counts of the chart's view, refreshed in part
  };

  // ---- URL <-> filters -------------------------------------------------

  function readURL() {
    var q = new URLSearchParams(location.search);
    var f = {
      range: q.get("range") || "3600",
      interval: q.get("interval") || "",
      type: q.get("type") || "",
      member: q.get("member") || "",
      service: q.get("service") || ""
    };
    if (!form.elements.range.querySelector('option[value="' + cssEscape(f.range) + '"]')) f.range = "3600";
    if (f.interval && INTERVALS.indexOf(+f.interval) < 0) f.interval = "";
    if (f.type !== "Client" && f.type !== "Producer") f.type = "";
    state.filters = f;
    var s = q.get("sort");
    if (s) {
      var desc = s.charAt(0) === "-";
      var key = desc ? s.slice(1) : s;
      if (document.querySelector('#health-table th[data-key="' + cssEscape(key) + '"]')) {
        state.sort = { key: key, dir: desc ? -1 : 1 };
      }
    }
    state.find = q.get("find") || "";
    state.page = Math.max(0, (parseInt(q.get("page"), 10) || 1) - 1);
    Object.keys(f).forEach(function (k) { form.elements[k].value = f[k]; });
    $("service-find").value = state.find;
  }

  function writeURL(push) {
    var q = new URLSearchParams();
    var f = state.filters;
    Object.keys(f).forEach(function (k) { if (f[k] && !(k === "range" && f[k] === "3600")) q.set(k, f[k]); });
    if (!(state.sort.key === "bad" && state.sort.dir === -1)) q.set("sort", (state.sort.dir < 0 ? "-" : "") + state.sort.key);
    if (state.find) q.set("find", state.find);
    if (state.page > 0) q.set("page", String(state.page + 1));
    var s = q.toString();
    var url = location.pathname + (s ? "?" + s : "");
    if (url === location.pathname + location.search) return;
    if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
  }

  function cssEscape(s) { return String(s).replace(/["\\]/g, "\\$&"); }

  // ---- formatting ------------------------------------------------------

  var nf = new Intl.NumberFormat("en");
  function num(n) { return n == null ? "–" : nf.format(n); }
  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function fmtTime(ms) {
    if (ms == null) return "–";
    var d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function fmtDuration(s) {
    if (s == null) return "–";
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + " d " + h + " h";
    if (h) return h + " h " + m + " min";
    if (m) return m + " min" + (s % 60 ? " " + (s % 60) + " s" : "");
    return s + " s";
  }
  function fmtBytes(n) {
    if (n == null) return "–";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function round(n) { return n == null ? null : Math.round(n); }

  // X-Road's slash form; an absent subsystem leaves its segment empty.
  function serviceName(s) {
    var id = [s.xRoadInstance, s.memberClass, s.memberCode, s.subsystemCode || "", s.serviceCode].join("/");
    return s.serviceVersion != null ? id + "/" + s.serviceVersion : id;
  }
  function party(r, p) {
    var id = [r[p + "XRoadInstance"], r[p + "MemberClass"], r[p + "MemberCode"]].join("/");
    return r[p + "SubsystemCode"] != null ? id + "/" + r[p + "SubsystemCode"] : id;
  }
  function recordService(r) {
    var id = [r.serviceXRoadInstance, r.serviceMemberClass, r.serviceMemberCode, r.serviceSubsystemCode || "", r.serviceCode].join("/");
    return r.serviceVersion != null ? id + "/" + r.serviceVersion : id;
  }

  // parseService splits INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION].
  function parseService(s) {
    var p = s.split("/");
    if (p.length < 5 || p.length > 6) return null;
    return {
      provider: p[3] ? p.slice(0, 4).join("/") : p.slice(0, 3).join("/"),
      code: p[4], version: p.length === 6 ? p[5] : null
    };
  }

  // el builds an element; text is always set as text, never parsed as HTML.
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  // breakable returns text with a line-break opportunity after each
  // separator, so long identifiers wrap at their segments.
  function breakable(text, sep) {
    var f = document.createDocumentFragment();
    String(text).split(sep).forEach(function (part, i, all) {
      f.appendChild(document.createTextNode(part + (i < all.length - 1 ? sep : "")));
      if (i < all.length - 1) f.appendChild(document.createElement("wbr"));
    });
    return f;
  }
  function idCell(text) {
    var td = el("td", "id");
    td.appendChild(breakable(text, "/"));
    return td;
  }

  // labelCells gives each cell its column's name, which a narrow window
  // shows beside the value when rows are laid out as cards.
  function labelCells(table) {
    var names = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) { return th.textContent; });
    table.querySelectorAll("tbody tr").forEach(function (tr) {
      Array.prototype.forEach.call(tr.children, function (td, i) {
        if (td.colSpan === 1 && names[i]) td.dataset.label = names[i];
      });
    });
  }
  function setError(id, err) { $(id).textContent = err ? String(err.message || err) : ""; }

  // ---- API -------------------------------------------------------------

  function api(path, params) {
    var q = new URLSearchParams();
    Object.keys(params || {}).forEach(function (k) {
      if (params[k] !== "" && params[k] != null) q.set(k, params[k]);
    });
    var url = path + (q.toString() ? "?" + q : "");
    var ctl = new AbortController();
    var t = setTimeout(function () { ctl.abort(); }, 60000);
    return fetch(url, { signal: ctl.signal, headers: { Accept: "application/json" } }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) throw new Error(path + ": " + (body.error || "HTTP " + r.status));
        return body;
      });
    }, function (e) {
      throw new Error(path + ": " + (e.name === "AbortError" ? "no answer within 60 s" : e.message));
    }).finally(function () { clearTimeout(t); });
  }

  // ---- daemon state ----------------------------------------------------

  function renderStatus(s) {
    var now = Date.now();
    if (state.lastStored && now > state.lastStored.t && s.recordsStoredTotal >= state.lastStored.n) {
      state.rate = (s.recordsStoredTotal - state.lastStored.n) / ((now - state.lastStored.t) / 1000);
    }
    state.lastStored = { t: now, n: s.recordsStoredTotal };
    var g = s.globalConf || {};
    var gtext = g.mode;
    if (g.mode !== "standalone") gtext += g.valid ? ", ✓ valid" : ", ✗ not valid: " + (g.error || "");
    var tls = "not used (plain HTTP)";
    if (s.scheme === "https") {
      var parts = [], total = 0;
      Object.keys(s.tlsHandshakeFailures || {}).forEach(function (k) {
        var v = s.tlsHandshakeFailures[k];
        total += v;
        if (v) parts.push(k.replace(/_/g, " ") + " " + num(v));
      });
      tls = num(total) + (parts.length ? " (" + parts.join(", ") + ")" : "");
    }
    var rows = [
      ["Version", s.version + " (" + s.commit + ", " + s.goVersion + ")"],
      ["Uptime", fmtDuration(s.uptimeSeconds) + ", since " + fmtTime(s.startedAt * 1000)],
      ["Database size", fmtBytes(s.databaseBytes)],
      ["Records in database", s.recordCount == null ? "unknown" : num(s.recordCount)],
      ["Store rate", state.rate == null ? "measuring…" : num(Math.round(state.rate * 10) / 10) + " records/s"],
      ["Stored since start", num(s.recordsStoredTotal) + " records, " + num(s.storeRequestsError) + " failed requests"],
      ["Quarantined since start", num(s.recordsQuarantinedTotal)],
      ["Last purge", s.lastPurge == null ? "unknown (" + num(s.purgeRuns) + " runs, " + num(s.recordsPurgedTotal) + " records purged)"
        : fmtTime(s.lastPurge * 1000) + " (" + num(s.purgeRuns) + " runs, " + num(s.recordsPurgedTotal) + " records purged)"],
      ["Global configuration", gtext],
      ["Configuration expires", g.expiry == null ? "–" : fmtTime(g.expiry * 1000)],
      ["Configuration loaded", g.lastLoad == null ? "–" : fmtTime(g.lastLoad * 1000)],
      ["TLS handshake failures", tls],
      ["Retention", s.keepRecordsForDays + " days"]
    ];
    var dl = $("daemon-state");
    dl.replaceChildren();
    rows.forEach(function (r) {
      dl.appendChild(el("dt", null, r[0]));
      dl.appendChild(el("dd", r[0] === "Global configuration" && !g.valid ? "bad-mark" : null, r[1]));
    });
  }

  // ---- traffic chart ---------------------------------------------------

  function chooseInterval(rangeS, wanted) {
    var min = Math.ceil(rangeS / 60 / MAX_BUCKETS);
    if (wanted && wanted >= min) return { minutes: wanted, raised: false };
    for (var i = 0; i < INTERVALS.length; i++) {
      if (INTERVALS[i] >= min && (wanted || rangeS / 60 / INTERVALS[i] <= 200)) {
        return { minutes: INTERVALS[i], raised: !!wanted };
      }
    }
    return { minutes: 1440, raised: !!wanted };
  }

  // loadTraffic asks for the whole range only when the view changes, and
  // then every few minutes (so records that arrive late are counted); in
  // between it asks for the last two buckets alone, since a count costs the
  // daemon time in proportion to the records it covers. When even that is
  // slow (a busy daemon, long buckets), the chart refreshes less often than
  // the rest of the page, so that it keeps the daemon busy a fifth of the
  // time at most.
  function loadTraffic(now, f) {
    var range = +f.range;
    var iv = chooseInterval(range, +f.interval || 0);
    var step = iv.minutes * 60;
    var key = [range, step, f.type, f.member, f.service].join("|");
    var c = state.traffic;
    var same = c && c.key === key;
    if (same && Date.now() - c.lastAt < 5 * c.lastMs) return Promise.resolve();
    var full = !same || Date.now() - c.fullAt > Math.max(FULL_RELOAD_MS, 10 * c.fullMs);
    var from = now - range;
    if (!full) from = Math.max(from, now - Math.max(step, RECENT_S));
    var asked = Date.now();
    return api("/api/v1/intervals", {
      from: from, to: now, interval: iv.minutes,
      type: f.type, member: f.member, service: f.service
    }).then(function (a) {
      var took = Date.now() - asked;
      if (full || !state.traffic || state.traffic.key !== key) {
        state.traffic = { key: key, counts: new Map(), fullAt: asked, fullMs: took };
      }
      state.traffic.lastAt = asked;
      state.traffic.lastMs = took;
      var counts = state.traffic.counts;
      (a.intervals || []).forEach(function (b) { counts.set(b.intervalStart, [b.successCount, b.failureCount]); });
      var xs = [], ok = [], bad = [], sumOk = 0, sumBad = 0;
      var first = Math.floor((now - range) / step) * step;
      counts.forEach(function (v, t) { if (t < first) counts.delete(t); });
      for (var t = first; t <= now; t += step) {
        var v = counts.get(t) || [0, 0];
        xs.push(t); ok.push(v[0]); bad.push(v[1]);
        sumOk += v[0]; sumBad += v[1];
      }
      var label = iv.minutes === 1440 ? "day" : iv.minutes === 60 ? "hour" : iv.minutes + " min";
      $("traffic-summary").textContent = num(sumOk) + " successful and " + num(sumBad) + " failed requests (✗ " +
        (sumOk + sumBad ? (100 * sumBad / (sumOk + sumBad)).toFixed(1) : "0.0") + " %) in the " +
        form.elements.range.selectedOptions[0].textContent + ", per " + label +
        (iv.raised ? " (interval raised to keep the chart under " + MAX_BUCKETS + " points)" : "") + ".";
      var box = $("chart");
      box.dataset.points = String(xs.length);
      box.dataset.total = String(sumOk + sumBad);
      drawChart([xs, ok, bad]);
    });
  }

  function chartWidth() { return Math.max(240, $("chart").clientWidth || 600); }

  function drawChart(data) {
    if (typeof uPlot === "undefined") throw new Error("chart library not loaded");
    if (state.chart) { state.chart.setData(data); return; }
    var opts = {
      width: chartWidth(), height: 260,
      scales: { x: { time: true } },
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      axes: [{}, { label: "requests", size: 60 }],
      series: [
        { label: "time" },
        { label: "✓ successful", stroke: "#1a7f37", width: 2, fill: "rgba(26,127,55,0.08)" },
        { label: "✗ failed", stroke: "#b3261e", width: 2, dash: [6, 4],
          points: { show: true, size: 5, fill: "#b3261e" } }
      ]
    };
    state.chart = new uPlot(opts, data, $("chart"));
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        if (state.chart && Math.abs(state.chart.width - chartWidth()) > 4) {
          state.chart.setSize({ width: chartWidth(), height: 260 });
        }
      }).observe($("chart"));
    }
  }

  // ---- services (health statistics) ------------------------------------

  function loadHealth(f) {
    return api("/api/v1/health", { client: f.member }).then(function (h) {
      var svc = f.service ? parseService(f.service) : null;
      state.services = (h.servicesEvents || []).map(function (e) {
        var st = e.lastPeriodStatistics || {};
        return {
          service: serviceName(e.service || {}),
          ok: st.successfulRequestCount || 0,
          bad: st.unsuccessfulRequestCount || 0,
          lastOk: e.lastSuccessfulRequestTimestamp,
          lastBad: e.lastUnsuccessfulRequestTimestamp,
          durMin: st.requestMinDuration, durAvg: round(st.requestAverageDuration), durMax: st.requestMaxDuration,
          reqAvg: round(st.requestAverageSize), respAvg: round(st.responseAverageSize)
        };
      }).filter(function (r) { return !f.service || r.service === f.service || (svc && !svc.version && r.service.indexOf(f.service + "/") === 0); });
      $("services-note").textContent = "Health statistics of the last " + fmtDuration(h.statisticsPeriodSeconds || 0) +
        " (Producer requests), since the daemon started at " + fmtTime(h.monitoringStartupTimestamp) + ".";
      renderServices();
    });
  }

  function compare(a, b) {
    var k = state.sort.key, x = a[k], y = b[k];
    if (x == null && y == null) return a.service < b.service ? -1 : 1;
    if (x == null) return 1;      // unknown values last in either direction
    if (y == null) return -1;
    if (x < y) return -state.sort.dir;
    if (x > y) return state.sort.dir;
    return a.service < b.service ? -1 : a.service > b.service ? 1 : 0;
  }

  function renderServices() {
    var find = state.find.toLowerCase();
    var rows = find ? state.services.filter(function (r) { return r.service.toLowerCase().indexOf(find) >= 0; }) : state.services.slice();
    rows.sort(compare);
    var pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    if (state.page >= pages) state.page = pages - 1;
    var shown = rows.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
    var tb = document.querySelector("#health-table tbody");
    tb.replaceChildren();
    shown.forEach(function (r) {
      var tr = el("tr", r.bad ? "bad" : null);
      tr.appendChild(idCell(r.service));
      tr.appendChild(el("td", "num ok-mark", num(r.ok)));
      tr.appendChild(el("td", "num" + (r.bad ? " bad-mark" : ""), r.bad ? "✗ " + num(r.bad) : "0"));
      tr.appendChild(el("td", "time", fmtTime(r.lastOk)));
      tr.appendChild(el("td", "time" + (r.lastBad ? " bad-mark" : ""), fmtTime(r.lastBad)));
      tr.appendChild(el("td", "num", r.durAvg == null ? "–" : num(r.durMin) + " / " + num(r.durAvg) + " / " + num(r.durMax)));
      tr.appendChild(el("td", "num", num(r.reqAvg)));
      tr.appendChild(el("td", "num", num(r.respAvg)));
      tb.appendChild(tr);
    });
    if (!shown.length) {
      var tr = el("tr");
      var td = el("td", null, state.services.length ? "No service matches." : "No requests in the statistics period.");
      td.colSpan = 8;
      tr.appendChild(td);
      tb.appendChild(tr);
    }
    labelCells($("health-table"));
    $("services-count").textContent = "(" + num(rows.length) + ")";
    $("page-info").textContent = "Page " + (state.page + 1) + " of " + pages;
    $("page-prev").disabled = state.page === 0;
    $("page-next").disabled = state.page >= pages - 1;
    document.querySelectorAll("#health-table th").forEach(function (th) {
      if (th.dataset.key === state.sort.key) th.setAttribute("aria-sort", state.sort.dir < 0 ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    });
  }

  // ---- recent failures -------------------------------------------------

  // The records API pages forward from `from`, so the newest records are
  // found by searching a window ending now that holds at most FAIL_LIMIT
  // records: when an answer is cut, the next window is narrowed to what the
  // cut answer spanned; when it is complete and few failures were found, the
  // window grows for the next refresh (up to the time range).
  function loadFailures(now, status, f) {
    var to = now - status.recordsAvailableOffsetSeconds - 1;
    var range = +f.range;
    var svc = f.service ? parseService(f.service) : null;
    var params = { fields: FAIL_FIELDS.join(","), limit: FAIL_LIMIT, client: f.member,
      "service-provider": svc ? svc.provider : "" };
    var tries = 0;
    function attempt() {
      var win = Math.max(1, Math.min(state.failWindow, range));
      var from = to - win + 1;
      params.from = from; params.to = to;
      return api("/api/v1/records", params).then(function (a) {
        var recs = a.records || [];
        var cut = a.nextRecordsFrom != null;
        if (cut && tries < 3 && win > 1) {
          tries++;
          state.failWindow = Math.max(1, Math.floor((a.nextRecordsFrom - from) * 0.8));
          return attempt();
        }
        var fails = recs.filter(function (r) {
          return r.succeeded === false &&
            (!f.type || r.securityServerType === f.type) &&
            (!svc || (r.serviceCode === svc.code && (svc.version == null || r.serviceVersion === svc.version)));
        });
        fails.sort(function (a, b) { return b.requestInTs - a.requestInTs; });
        if (!cut && fails.length < FAIL_SHOWN && win < range) state.failWindow = Math.min(range, win * 4);
        renderFailures(fails, recs.length, win, cut, status.recordsAvailableOffsetSeconds);
      });
    }
    return attempt();
  }

  function renderFailures(fails, scanned, win, cut, offset) {
    var tb = document.querySelector("#failures-table tbody");
    tb.replaceChildren();
    fails.slice(0, FAIL_SHOWN).forEach(function (r) {
      var tr = el("tr", "bad");
      tr.appendChild(el("td", "time", fmtTime(r.requestInTs)));
      tr.appendChild(el("td", null, r.securityServerType || "–"));
      tr.appendChild(idCell(party(r, "client")));
      tr.appendChild(idCell(recordService(r)));
      var fc = el("td", "bad-mark fault", "✗ ");
      var code = el("code");
      code.appendChild(breakable(r.faultCode || "(no fault code)", "."));
      fc.appendChild(code);
      tr.appendChild(fc);
      tr.appendChild(el("td", "text", r.faultString || ""));
      tb.appendChild(tr);
    });
    if (!fails.length) {
      var tr = el("tr");
      var td = el("td", null, "No failures found.");
      td.colSpan = 6;
      tr.appendChild(td);
      tb.appendChild(tr);
    }
    labelCells($("failures-table"));
    $("failures-count").textContent = "(" + num(fails.length) + (fails.length > FAIL_SHOWN ? ", newest " + FAIL_SHOWN + " shown" : "") + ")";
    $("failures-note").textContent = "Failed requests among the " + num(scanned) + " records stored in the last " +
      fmtDuration(win) + (cut ? " (oldest " + num(FAIL_LIMIT) + " of them: traffic is heavy)" : "") +
      (offset ? "; the last " + fmtDuration(offset + 1) + " are not available yet (records-available-timestamp-offset-seconds)" : "") + ".";
  }

  // ---- quarantine ------------------------------------------------------

  function loadQuarantine(now, f) {
    var range = +f.range;
    return api("/api/v1/quarantine", { from: now - range, to: now }).then(function (a) {
      var recs = (a.records || []).slice().reverse();
      $("quarantine-count").textContent = "(" + num(recs.length) + ")";
      $("quarantine").dataset.count = String(recs.length);
      $("quarantine-note").textContent = num(recs.length) + " records received in the " +
        form.elements.range.selectedOptions[0].textContent + " could not be stored and are kept here with the reason" +
        (recs.length > QUARANTINE_SHOWN ? "; the newest " + QUARANTINE_SHOWN + " are listed" : "") + ".";
      var tb = document.querySelector("#quarantine-table tbody");
      tb.replaceChildren();
      recs.slice(0, QUARANTINE_SHOWN).forEach(function (q) {
        var tr = el("tr", "bad");
        tr.appendChild(el("td", "time", fmtTime(q.receivedAt * 1000)));
        tr.appendChild(el("td", "text bad-mark", "✗ " + q.reason));
        var td = el("td", "text");
        var raw = JSON.stringify(q.record !== undefined ? q.record : q.raw);
        td.appendChild(el("pre", null, raw && raw.length > 2000 ? raw.slice(0, 2000) + "…" : raw));
        tr.appendChild(td);
        tb.appendChild(tr);
      });
      if (!recs.length) {
        var tr = el("tr");
        var td = el("td", null, "Nothing in quarantine.");
        td.colSpan = 3;
        tr.appendChild(td);
        tb.appendChild(tr);
      }
      labelCells($("quarantine-table"));
    });
  }

  // ---- refresh loop ----------------------------------------------------

  function section(id, p) {
    return p.then(function () { setError(id, null); return true; }, function (e) { setError(id, e); return false; });
  }

  // refresh loads everything once; one runs at a time, and a request for
  // another while one runs (a new filter, say) runs right after it.
  function refresh() {
    clearTimeout(state.timer);
    if (state.busy) { state.again = true; return; }
    state.busy = true;
    var started = Date.now();
    var f = state.filters;
    var done = api("/ui/api/status").then(function (s) {
      setError("daemon-error", null);
      renderStatus(s);
      var now = s.now;
      return Promise.all([
        section("traffic-error", loadTraffic(now, f)),
        section("services-error", loadHealth(f)),
        section("failures-error", loadFailures(now, s, f)),
        section("quarantine-error", loadQuarantine(now, f))
      ]);
    }).catch(function (e) { setError("daemon-error", e); return [false]; });
    return done.then(function (oks) {
      var bad = oks.filter(function (ok) { return !ok; }).length;
      $("refresh-state").textContent = (bad ? "✗ " + bad + " part(s) failed to load; " : "✓ ") + "updated " +
        fmtTime(Date.now()) + (state.paused ? ", refresh paused" : ", next in " + REFRESH_MS / 1000 + " s");
      document.body.dataset.refreshed = String(Date.now());
      state.busy = false;
      if (state.again) { state.again = false; refresh(); return; }
      schedule(Math.max(1000, REFRESH_MS - (Date.now() - started)));
    });
  }

  // A hidden tab asks nothing of the daemon; it refreshes when shown again.
  function schedule(ms) {
    clearTimeout(state.timer);
    if (!state.paused) state.timer = setTimeout(function () { if (!document.hidden) refresh(); }, ms);
  }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && !state.paused) refresh();
  });

  // ---- events ----------------------------------------------------------

  // filterError checks the identifiers' shape (the daemon checks the rest).
  function filterError(f) {
    var m = f.member ? f.member.split("/") : null;
    if (m && (m.length < 3 || m.length > 4 || m.slice(0, 3).indexOf("") >= 0)) {
      return "Member: INSTANCE/CLASS/CODE or INSTANCE/CLASS/CODE/SUBSYSTEM, such as EE/GOV/70000001/MONITORING";
    }
    var s = f.service ? f.service.split("/") : null;
    if (s && (s.length < 5 || s.length > 6 || [0, 1, 2, 4].some(function (i) { return !s[i]; }))) {
      return "Service: INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION], with an empty SUBSYSTEM for a member's own service";
    }
    return "";
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = {};
    ["range", "interval", "type", "member", "service"].forEach(function (k) { f[k] = form.elements[k].value.trim(); });
    var bad = filterError(f);
    $("filter-error").textContent = bad;
    if (bad) return;
    state.filters = f;
    state.page = 0;
    state.failWindow = 600;
    writeURL(true);
    refresh();
  });
  form.addEventListener("reset", function (ev) {
    ev.preventDefault();
    ["interval", "type", "member", "service"].forEach(function (k) { form.elements[k].value = ""; });
    form.elements.range.value = "3600";
    form.requestSubmit();
  });
  window.addEventListener("popstate", function () { readURL(); renderServices(); refresh(); });

  document.querySelectorAll("#health-table th button").forEach(function (b) {
    b.addEventListener("click", function () {
      var key = b.parentNode.dataset.key;
      if (state.sort.key === key) state.sort.dir = -state.sort.dir;
      else state.sort = { key: key, dir: key === "service" ? 1 : -1 };
      state.page = 0;
      writeURL(false);
      renderServices();
    });
  });
  $("page-prev").addEventListener("click", function () { state.page--; writeURL(false); renderServices(); });
  $("page-next").addEventListener("click", function () { state.page++; writeURL(false); renderServices(); });
  $("service-find").addEventListener("input", function () {
    state.find = this.value.trim();
    state.page = 0;
    writeURL(false);
    renderServices();
  });
  $("pause").addEventListener("click", function () {
    state.paused = !state.paused;
    this.setAttribute("aria-pressed", String(state.paused));
    this.textContent = state.paused ? "Resume refresh" : "Pause refresh";
    if (state.paused) clearTimeout(state.timer); else refresh();
  });

  readURL();
  refresh();
})();
