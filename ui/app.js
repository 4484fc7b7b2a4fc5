// acmedge console: the domains table, the live event stream and actions, all through the admin
// API of the server that served this page. Every value from the server is inserted as text.
"use strict";
(function () {
  const PAGE = 50;          // rows per page
  const MAX_FEED = 200;     // lines kept in the live feed
  const MAX_HISTORY = 5000; // events kept for details and charts
  const $ = (id) => document.getElementById(id);
  const st = {
    token: sessionStorage.getItem("acmedge.token") || "",
    domains: [], sortKey: "domain", sortDir: 1, page: 0,
    events: [], lastId: 0, detail: null, refreshTimer: 0, streamAbort: null, backoff: 500,
  };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function toast(msg) {
    const t = $("toast");
    t.textContent = msg;
    t.classList.add("show");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove("show"), 4000);
  }
  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (st.token) h["Authorization"] = "Bearer " + st.token;
    return h;
  }
  // Calls the admin API; resolves to {status, body} (body parsed when JSON). A 401 asks for a token.
  async function api(method, path, body) {
    const opt = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}), cache: "no-store" };
    if (body) opt.body = JSON.stringify(body);
    const r = await fetch(path, opt);
    let data = null;
    const text = await r.text();
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    if (r.status === 401) needLogin();
    return { status: r.status, body: data };
  }
  function needLogin() {
    $("login").hidden = false;
    $("token").focus();
  }

  // ---- time helpers
  function parseTime(s) { const t = s ? Date.parse(s) : NaN; return isNaN(t) ? null : t; }
  function span(ms) {
    const s = Math.floor(Math.abs(ms) / 1000);
    if (s >= 86400) return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
    if (s >= 3600) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    if (s >= 60) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return s + "s";
  }
  function timeLeft(s) {
    const t = parseTime(s);
    if (t === null) return "-";
    const d = t - Date.now();
    return d < 0 ? "expired " + span(d) + " ago" : span(d);
  }
  function shortTime(s) {
    const t = parseTime(s);
    return t === null ? "-" : new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  // ---- domains table
  async function loadDomains() {
    let r;
    try { r = await api("GET", "/v1/domains"); } catch (e) { return; }
    if (r.status !== 200) return;
    const list = Array.isArray(r.body) ? r.body : (r.body && Array.isArray(r.body.domains) ? r.body.domains : []);
    st.domains = list;
    renderDomains();
    renderExpiryChart();
    if (st.detail) renderDetail();
  }
  // Event bursts coalesce into one reload; with many names the list is fetched less often
  // (1 s per 1000 names, at most every 15 s) so a busy proxy does not ship megabytes per event.
  function scheduleRefresh() {
    if (st.refreshTimer) return;
    const delay = Math.min(15000, Math.max(250, st.domains.length));
    st.refreshTimer = setTimeout(() => { st.refreshTimer = 0; loadDomains(); }, delay);
  }
  function filtered() {
    const q = $("filter").value.trim().toLowerCase();
    const sf = $("state-filter").value;
    const k = st.sortKey, dir = st.sortDir;
    return st.domains
      .filter((d) => (!sf || d.state === sf) &&
        (!q || [d.domain, d.last_error, d.issuer, d.issuer_dn, d.state].some((v) => v && String(v).toLowerCase().includes(q))))
      .sort((a, b) => {
        const x = a[k] == null ? "" : String(a[k]), y = b[k] == null ? "" : String(b[k]);
        return x < y ? -dir : x > y ? dir : 0;
      });
  }
  function renderDomains() {
    const rows = filtered();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    if (st.page >= pages) st.page = pages - 1;
    const tb = document.querySelector("#domains tbody");
    // A cluster backend adds "instance": show the column only then.
    const withInstance = st.domains.some((d) => d.instance);
    const ith = document.querySelector('#domains th[data-key="instance"]');
    if (withInstance && !ith) {
      const th = el("th", null, "Instance");
      th.dataset.key = "instance";
      th.addEventListener("click", () => sortBy("instance"));
      document.querySelector("#domains thead tr").insertBefore(th, document.querySelector("#domains thead th:last-child"));
    } else if (!withInstance && ith) ith.remove();
    tb.replaceChildren();
    for (const d of rows.slice(st.page * PAGE, st.page * PAGE + PAGE)) {
      const tr = el("tr");
      tr.dataset.domain = d.domain;
      tr.appendChild(el("td", "name", d.domain));
      tr.appendChild(el("td", "state " + (d.state || ""), d.state || "-"));
      const exp = el("td", null, timeLeft(d.not_after));
      const t = parseTime(d.not_after);
      if (t !== null && t - Date.now() < 7 * 86400e3) exp.className = "soon";
      exp.title = d.not_after || "";
      tr.appendChild(exp);
      const iss = el("td", null, d.issuer || "-");
      iss.title = d.issuer_dn || "";
      tr.appendChild(iss);
      tr.appendChild(el("td", "err", d.last_error || ""));
      tr.appendChild(el("td", null, d.retry_at ? shortTime(d.retry_at) : "-"));
      if (withInstance) tr.appendChild(el("td", null, d.instance || "-"));
      const act = el("td");
      const del = el("button", "danger", "Delete");
      del.type = "button";
      del.dataset.action = "delete";
      del.addEventListener("click", (ev) => { ev.stopPropagation(); doDelete(d.domain); });
      act.appendChild(del);
      tr.appendChild(act);
      tr.addEventListener("click", () => openDetail(d.domain));
      tb.appendChild(tr);
    }
    $("page-info").textContent = rows.length ? "page " + (st.page + 1) + " of " + pages + " (" + rows.length + " names)" : "no names";
    $("prev").disabled = st.page === 0;
    $("next").disabled = st.page >= pages - 1;
    const counts = {};
    for (const d of st.domains) counts[d.state] = (counts[d.state] || 0) + 1;
    $("summary").textContent = st.domains.length + " names" +
      Object.keys(counts).sort().map((k) => " \u00b7 " + counts[k] + " " + k).join("");
    document.querySelectorAll("#domains th[data-key]").forEach((th) => {
      th.classList.toggle("asc", th.dataset.key === st.sortKey && st.sortDir > 0);
      th.classList.toggle("desc", th.dataset.key === st.sortKey && st.sortDir < 0);
    });
  }

  function sortBy(key) {
    if (st.sortKey === key) st.sortDir = -st.sortDir; else { st.sortKey = key; st.sortDir = 1; }
    renderDomains();
  }

  // ---- actions (each confirmed)
  function confirmAction(text) {
    const dlg = $("confirm");
    $("confirm-text").textContent = text;
    return new Promise((resolve) => {
      dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
      dlg.showModal();
    });
  }
  async function doAdd(name) {
    if (!name) return;
    if (!(await confirmAction("Request a certificate for " + name + "?"))) return;
    const r = await api("POST", "/v1/domains", { domain: name });
    if (r.status === 202 || r.status === 200) { toast(name + ": " + ((r.body && r.body.state) || "requested")); $("add-name").value = ""; }
    else toast(name + ": " + ((r.body && r.body.error) || "HTTP " + r.status));
    loadDomains();
  }
  async function doDelete(name) {
    if (!(await confirmAction("Delete " + name + "? Its certificate is removed from the cache and storage."))) return;
    const r = await api("DELETE", "/v1/domains/" + encodeURIComponent(name));
    toast(r.status === 200 ? name + " deleted" : name + ": " + ((r.body && r.body.error) || "HTTP " + r.status));
    if (st.detail === name && r.status === 200) closeDetail();
    loadDomains();
  }
  async function doRenew(name) {
    if (!(await confirmAction("Request a new certificate for " + name + " now?"))) return;
    const r = await api("POST", "/v1/domains/" + encodeURIComponent(name) + "/renew");
    toast(name + ": " + (r.status < 300 ? "renewal requested" : ((r.body && r.body.error) || "HTTP " + r.status)));
    loadDomains();
  }

  async function doRevoke(name, reason, reasonName) {
    if (!(await confirmAction("Revoke the certificate of " + name + " (" + reasonName + ")? This cannot be undone."))) return;
    const r = await api("POST", "/v1/domains/" + encodeURIComponent(name) + "/revoke", { reason });
    toast(name + ": " + (r.status < 300 ? "revoked" : ((r.body && r.body.error) || "HTTP " + r.status)));
    loadDomains();
  }

  // ---- detail
  function openDetail(name) { st.detail = name; renderDetail(); $("detail").scrollIntoView({ block: "nearest" }); }
  function closeDetail() { st.detail = null; $("detail").hidden = true; }
  function renderDetail() {
    const name = st.detail;
    const d = st.domains.find((x) => x.domain === name) || { domain: name };
    $("detail").hidden = false;
    $("detail-name").textContent = name;
    const dl = $("detail-fields");
    dl.replaceChildren();
    for (const k of Object.keys(d)) {
      if (k === "domain") continue;
      dl.appendChild(el("dt", null, k));
      const v = d[k];
      dl.appendChild(el("dd", null, v === null || v === undefined ? "-" : typeof v === "object" ? JSON.stringify(v) : v));
    }
    if (d.not_after) {
      // Renew and revoke call the admin API's per-name endpoints; an acmedge without them
      // answers 404/405, which is shown as the result.
      const dd = el("dd", "actions");
      const renew = el("button", null, "Renew now");
      renew.type = "button";
      renew.dataset.action = "renew";
      renew.addEventListener("click", () => doRenew(name));
      const reason = el("select");
      reason.setAttribute("aria-label", "revocation reason");
      for (const [v, t] of [[0, "unspecified"], [1, "keyCompromise"], [4, "superseded"], [5, "cessationOfOperation"]]) {
        const o = el("option", null, t);
        o.value = String(v);
        reason.appendChild(o);
      }
      const revoke = el("button", "danger", "Revoke");
      revoke.type = "button";
      revoke.dataset.action = "revoke";
      revoke.addEventListener("click", () => doRevoke(name, +reason.value, reason.selectedOptions[0].textContent));
      dd.append(renew, " ", reason, " ", revoke);
      dl.appendChild(el("dt", null, "actions"));
      dl.appendChild(dd);
    }
    const ol = $("detail-events");
    ol.replaceChildren();
    const mine = st.events.filter((e) => e.domain === name);
    for (const e of mine.slice(-100).reverse()) ol.appendChild(eventLine(e));
    if (!mine.length) ol.appendChild(el("li", "kv", "no events in the buffer for this name"));
  }

  // ---- events
  function eventLine(e) {
    const li = el("li");
    li.dataset.id = e.id;
    li.appendChild(el("span", "t", shortTime(e.time).slice(11)));
    li.appendChild(el("span", "ty " + e.type, e.type));
    li.appendChild(el("span", "dom", e.domain || ""));
    const kv = [];
    for (const k of Object.keys(e)) {
      if (["id", "time", "type", "domain"].includes(k)) continue;
      kv.push(k + "=" + (typeof e[k] === "object" ? JSON.stringify(e[k]) : e[k]));
    }
    if (kv.length) li.appendChild(el("span", "kv", " " + kv.join(" ")));
    return li;
  }
  function onEvent(e, fresh) {
    if (typeof e.id !== "number") return;
    if (!fresh.seen && e.id <= st.lastId) {
      // A restarted acmedge numbers its events from 1 again: start over rather than drop them.
      st.events = []; $("events").replaceChildren();
    } else if (e.id <= st.lastId) {
      return; // already shown
    }
    fresh.seen = true;
    st.lastId = e.id;
    st.events.push(e);
    if (st.events.length > MAX_HISTORY) st.events.splice(0, st.events.length - MAX_HISTORY);
    const feed = $("events");
    feed.insertBefore(eventLine(e), feed.firstChild);
    while (feed.childElementCount > MAX_FEED) feed.lastChild.remove();
    if (e.domain) scheduleRefresh();
    if (st.detail && e.domain === st.detail) renderDetail();
    renderRateChart();
  }
  // SSE over fetch (EventSource cannot send the bearer token); resumes with Last-Event-ID.
  async function stream() {
    for (;;) {
      const ctl = new AbortController();
      st.streamAbort = ctl;
      const fresh = { seen: false };
      try {
        const h = headers({ Accept: "text/event-stream" });
        let url = "/v1/events";
        if (st.lastId > 0) h["Last-Event-ID"] = String(st.lastId); else url += "?since=0";
        const r = await fetch(url, { headers: h, signal: ctl.signal, cache: "no-store" });
        if (r.status === 401) { setConn(false, "token needed"); needLogin(); return; }
        if (r.status !== 200 || !r.body) throw new Error("HTTP " + r.status);
        setConn(true, "live");
        st.backoff = 500;
        scheduleRefresh(); // anything missed while disconnected
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "", data = [];
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.search(/\r\n|\r|\n/)) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(buf[i] === "\r" && buf[i + 1] === "\n" ? i + 2 : i + 1);
            if (line === "") {
              if (data.length) {
                try { onEvent(JSON.parse(data.join("\n")), fresh); } catch (err) { /* not an event */ }
              }
              data = [];
            } else if (line.startsWith("data:")) {
              data.push(line.slice(5).replace(/^ /, ""));
            } else if (line.startsWith(": missed")) {
              toast("the event buffer overflowed: " + line.slice(9) + " event(s) not shown");
              scheduleRefresh();
            }
          }
        }
      } catch (err) {
        if (ctl.signal.aborted && st.streamAbort !== ctl) return;
      }
      setConn(false, "reconnecting");
      await new Promise((res) => setTimeout(res, st.backoff));
      st.backoff = Math.min(st.backoff * 2, 10000);
    }
  }
  function setConn(on, text) {
    const c = $("conn");
    c.className = "badge " + (on ? "on" : "off");
    c.textContent = text;
  }

  // ---- charts (SVG, drawn from the event history and the domains list)
  const SVGNS = "http://www.w3.org/2000/svg";
  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function bars(svg, series, labels, colors) {
    svg.replaceChildren();
    const n = labels.length, W = 300, H = 75, left = 14;
    let max = 1;
    for (const s of series) for (const v of s) max = Math.max(max, v);
    const bw = (W - left) / n;
    svg.appendChild(svgEl("text", { x: 0, y: 8 }, String(max)));
    svg.appendChild(svgEl("line", { x1: left, y1: H, x2: W, y2: H, stroke: "#d9dbe0" }));
    series.forEach((s, si) => {
      s.forEach((v, i) => {
        if (!v) return;
        const h = (v / max) * (H - 10);
        const w = bw / series.length;
        const r = svgEl("rect", { x: left + i * bw + si * w, y: H - h, width: Math.max(w - 1, 1), height: h, fill: colors[si] });
        r.appendChild(svgEl("title", {}, labels[i] + ": " + v));
        svg.appendChild(r);
      });
    });
    const step = Math.ceil(n / 6);
    labels.forEach((l, i) => { if (i % step === 0) svg.appendChild(svgEl("text", { x: left + i * bw, y: H + 10 }, l)); });
  }
  function renderRateChart() {
    const now = Math.floor(Date.now() / 60000), N = 30;
    const ok = new Array(N).fill(0), bad = new Array(N).fill(0), labels = [];
    for (let i = 0; i < N; i++) labels.push("-" + (N - 1 - i) + "m");
    for (const e of st.events) {
      const t = parseTime(e.time);
      if (t === null) continue;
      const idx = N - 1 - (now - Math.floor(t / 60000));
      if (idx < 0 || idx >= N) continue;
      if (e.type === "cert_issued" || e.type === "cert_renewed") ok[idx]++;
      else if (e.type === "issuance_failed") bad[idx]++;
    }
    bars($("chart-rate"), [ok, bad], labels, ["#1a7f37", "#cf222e"]);
  }
  function renderExpiryChart() {
    const edges = [7, 14, 30, 60, 90], labels = ["<7d", "7-14d", "14-30d", "30-60d", "60-90d", ">90d"];
    const c = new Array(labels.length).fill(0);
    for (const d of st.domains) {
      const t = parseTime(d.not_after);
      if (t === null) continue;
      const days = (t - Date.now()) / 86400e3;
      let i = edges.findIndex((e) => days < e);
      if (i < 0) i = labels.length - 1;
      c[i]++;
    }
    bars($("chart-expiry"), [c], labels, ["#0969da"]);
  }

  // ---- wiring
  function init() {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      st.token = $("token").value.trim();
      sessionStorage.setItem("acmedge.token", st.token);
      $("login").hidden = true;
      loadDomains();
      if (st.streamAbort) st.streamAbort.abort();
      st.streamAbort = null;
      stream();
    });
    $("add-form").addEventListener("submit", (ev) => { ev.preventDefault(); doAdd($("add-name").value.trim().toLowerCase()); });
    $("filter").addEventListener("input", () => { st.page = 0; renderDomains(); });
    $("state-filter").addEventListener("change", () => { st.page = 0; renderDomains(); });
    $("prev").addEventListener("click", () => { st.page--; renderDomains(); });
    $("next").addEventListener("click", () => { st.page++; renderDomains(); });
    $("detail-close").addEventListener("click", closeDetail);
    document.querySelectorAll("#domains th[data-key]").forEach((th) => th.addEventListener("click", () => sortBy(th.dataset.key)));
    renderRateChart();
    loadDomains();
    stream();
    setInterval(() => { renderDomains(); renderRateChart(); }, 30000); // time-left columns age
  }
  // For scripted checks: drop the stream as a network failure would (it resumes by itself).
  window.acmedgeConsole = { dropStream: () => { if (st.streamAbort) st.streamAbort.abort(); }, lastId: () => st.lastId };
  document.addEventListener("DOMContentLoaded", init);
})();
