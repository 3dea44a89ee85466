// VCS Agent Pools panel: plain JavaScript over the gateway's JSON API (/api/…).
// Every value from the API reaches the page through textContent, never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "vcs-gateway-admin-token";
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);

  let current = null; // { view: "list" } or { view: "pool", name }
  let pending = null; // the token just issued: { pool, token }, kept until "Done"
  let busy = false;

  // ---- API -----------------------------------------------------------------

  class Unauthorized extends Error {}

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const admin = sessionStorage.getItem(TOKEN_KEY);
    if (admin) headers.Authorization = "Bearer " + admin;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    let data = {};
    try { data = await response.json(); } catch (_) { data = { error: "the gateway sent no JSON (status " + response.status + ")" }; }
    if (response.status === 401) throw new Unauthorized(data.error || "unauthorized");
    return { status: response.status, data };
  }

  // ---- small DOM helpers ---------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "title") node.title = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function show(id) {
    for (const view of ["login-view", "list-view", "pool-view", "refused-view", "callers-view", "missing-view"]) {
      $(view).hidden = view !== id;
    }
    $("nav").hidden = id === "login-view";
    const section = { "refused-view": "refused", "callers-view": "callers" }[id] || "list";
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === section && id !== "login-view") link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  let flashTimer = null;
  function flash(message) {
    $("flash").textContent = message;
    $("flash").hidden = !message;
    clearTimeout(flashTimer);
    if (message) flashTimer = setTimeout(() => { $("flash").hidden = true; }, 10000);
  }

  function setFieldError(inputId, errorId, message) {
    const input = inputId ? $(inputId) : null;
    $(errorId).textContent = message || "";
    $(errorId).hidden = !message;
    if (input) input.setAttribute("aria-invalid", message ? "true" : "false");
  }

  const pad = (n) => String(n).padStart(2, "0");
  function dateTime(ms) {
    const d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function clock(ms) {
    const d = new Date(ms);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function ago(seconds) {
    const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
    if (s < 60) return "less than a minute ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
    return Math.floor(s / 86400) + " days ago";
  }
  function bytes(n) {
    if (n < 1024) return n + " B";
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let v = n / 1024, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return v.toFixed(v < 10 ? 1 : 0) + " " + units[i];
  }
  function duration(ms) {
    if (ms < 1) return "<1 ms";
    if (ms < 1000) return Math.round(ms) + " ms";
    return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  }

  // A path with a line-break opportunity after each "/" and "%2F", so a long path wraps
  // between its segments instead of mid-word. Built from text nodes: never parsed as HTML.
  function breakable(path) {
    const fragment = document.createDocumentFragment();
    for (const part of String(path).split(/(?<=\/|%2[Ff])/)) {
      fragment.append(document.createTextNode(part), document.createElement("wbr"));
    }
    return fragment;
  }

  // ---- charts: inline SVG drawn here, nothing fetched ------------------------

  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }
  const minuteClock = (ms) => { const d = new Date(ms); return pad(d.getHours()) + ":" + pad(d.getMinutes()); };
  const served = (m) => Math.max(0, m.requests - m.denied - m.errors);
  function describeMinute(m) {
    return minuteClock(m.time_ms) + ": " + m.requests + " requests, " + served(m) + " served, " +
      m.denied + " denied, " + m.errors + " failed";
  }
  function totals(minutes) {
    return minutes.reduce((t, m) => ({ requests: t.requests + m.requests, denied: t.denied + m.denied, errors: t.errors + m.errors }),
      { requests: 0, denied: 0, errors: 0 });
  }
  function summary(minutes) {
    const t = totals(minutes);
    return "Last hour: " + t.requests + " requests, " + (t.requests - t.denied - t.errors) + " served, " +
      t.denied + " denied, " + t.errors + " failed";
  }
  // The smallest of 2, 4, 6, 8, 10, 20, 40, … at or above n, so the middle tick is whole.
  function niceMax(n) {
    if (n <= 2) return 2;
    const magnitude = Math.pow(10, Math.floor(Math.log10(n)));
    for (const f of [1, 2, 4, 6, 8, 10]) if (f * magnitude >= n && (f * magnitude) % 2 === 0) return f * magnitude;
    return 10 * magnitude;
  }

  // Stacked bars per minute (served, denied, failed), oldest left. `big` adds axes.
  function chart(minutes, big) {
    const W = big ? 960 : 180, H = big ? 240 : 40;
    const left = big ? 44 : 0, right = big ? 10 : 0, top = big ? 24 : 2, bottom = big ? 28 : 0;
    const plotW = W - left - right, plotH = H - top - bottom;
    const max = niceMax(Math.max(0, ...minutes.map((m) => m.requests)));
    const step = plotW / Math.max(1, minutes.length);
    const barW = Math.max(1, step - (big ? 3 : 1));
    const scale = plotH / max;
    const root = svg("svg", {
      class: "chart " + (big ? "big" : "spark"), viewBox: "0 0 " + W + " " + H,
      width: W, height: H, role: "img", "aria-label": summary(minutes), "data-max": max,
    });
    const baseY = top + plotH;
    if (big) {
      for (const v of [0, max / 2, max]) {
        const y = baseY - v * scale;
        root.append(svg("line", { class: "grid-line", x1: left, x2: W - right, y1: y, y2: y }));
        root.append(svg("text", { class: "axis", x: left - 6, y: y + 4, "text-anchor": "end" }, v));
      }
      for (const i of [0, 15, 30, 45, minutes.length - 1]) {
        if (!minutes[i]) continue;
        root.append(svg("text", { class: "axis", x: left + i * step + step / 2, y: H - 8, "text-anchor": i ? "middle" : "start" },
          minuteClock(minutes[i].time_ms)));
      }
      root.append(svg("text", { class: "axis title", x: 4, y: 11 }, "requests per minute"));
    }
    minutes.forEach((m, i) => {
      const group = svg("g", {
        class: "bar", "data-time": m.time_ms, "data-requests": m.requests,
        "data-denied": m.denied, "data-errors": m.errors,
      }, svg("title", {}, describeMinute(m)));
      group.append(svg("rect", { class: "hit", x: left + i * step, y: top, width: step, height: plotH }));
      let y = baseY;
      for (const [kind, n] of [["served", served(m)], ["denied", m.denied], ["errors", m.errors]]) {
        if (!n) continue;
        y -= n * scale;
        group.append(svg("rect", { class: kind, x: left + i * step + (step - barW) / 2, y, width: barW, height: n * scale, "data-count": n }));
      }
      root.append(group);
    });
    root.append(svg("line", { class: "base-line", x1: left, x2: W - right, y1: baseY, y2: baseY }));
    return root;
  }

  const STATES = {
    serving: "Serving", refusing: "Refusing", failing: "Failing", idle: "Quiet", offline: "No agent",
  };
  function statePill(state) {
    return el("span", { class: "state " + state }, STATES[state] || state);
  }

  // ---- token download ------------------------------------------------------

  function download(pool, token, extension) {
    const blob = new Blob([token + "\n"], { type: "application/octet-stream" });
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: pool + (extension || ".token") });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function issue(pool, token) {
    pending = { pool, token };
    download(pool, token);
    $("token-pool").textContent = pool;
    $("token-file").textContent = pool + ".token";
    $("token-notice").hidden = false;
  }

  $("token-again").addEventListener("click", () => { if (pending) download(pending.pool, pending.token); });
  $("token-done").addEventListener("click", () => {
    pending = null; // the token leaves memory: it is never shown again
    $("token-notice").hidden = true;
  });

  let pendingSecret = null; // a caller's secret just issued: { caller, secret }, kept until "Done"
  function issueSecret(caller, secret) {
    pendingSecret = { caller, secret };
    download(caller, secret, ".secret");
    $("secret-caller").textContent = caller;
    $("secret-file").textContent = caller + ".secret";
    $("secret-value").textContent = secret;
    $("secret-notice").hidden = false;
  }
  $("secret-again").addEventListener("click", () => {
    if (pendingSecret) download(pendingSecret.caller, pendingSecret.secret, ".secret");
  });
  $("secret-done").addEventListener("click", () => {
    pendingSecret = null; // the secret leaves the page and memory: it is never shown again
    $("secret-value").textContent = "";
    $("secret-notice").hidden = true;
  });

  // ---- confirmation dialog -------------------------------------------------

  function confirmAction(title, text, ok) {
    return new Promise((resolve) => {
      const dialog = $("confirm");
      $("confirm-title").textContent = title;
      $("confirm-text").textContent = text;
      $("confirm-ok").textContent = ok;
      dialog.returnValue = "";
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
    });
  }

  // ---- views ---------------------------------------------------------------

  // Redraws a part only when its data changed (or a minute passed, for the "… ago" texts),
  // so polling does not disturb a reader who is selecting text or hovering a row.
  const drawn = {};
  function changed(part, data) {
    const key = JSON.stringify(data) + "@" + Math.floor(Date.now() / 60000);
    if (drawn[part] === key) return false;
    drawn[part] = key;
    return true;
  }

  const poolHref = (name, tab) => "#/pools/" + encodeURIComponent(name) + (tab ? "/" + tab : "");

  function renderPools(pools) {
    if (!changed("renderPools", pools)) return;
    const body = $("pools").querySelector("tbody");
    body.replaceChildren(...pools.map((p) => el("tr", { "data-pool": p.name, "data-state": p.state },
      el("td", { class: "name" }, el("a", { href: poolHref(p.name) }, p.name), el("span", { class: "sub" }, p.description || "")),
      el("td", { class: "state-cell" }, statePill(p.state), el("span", { class: "sub" }, p.state_reason)),
      el("td", { class: "spark" }, el("a", { href: poolHref(p.name), "aria-label": summary(p.minutes) }, chart(p.minutes, false))),
      el("td", { class: "num" }, p.agents,
        p.warnings.length ? el("span", { class: "sub warn", title: p.warnings.join("\n") }, "⚠ " + p.warnings.length + " warning" + (p.warnings.length > 1 ? "s" : "")) : null),
      el("td", { class: "num" }, p.idle + " / " + p.busy),
      el("td", { class: "num" }, p.requests_last_hour),
      el("td", { class: "num" }, p.denials_last_hour
        ? el("a", { href: poolHref(p.name, "refused"), class: "bad", title: "What was refused" }, p.denials_last_hour) : "0"),
      el("td", { class: "num" + (p.errors_last_hour ? " bad" : "") }, p.errors_last_hour),
      el("td", { class: "when", title: dateTime(p.created * 1000) }, dateTime(p.created * 1000).slice(0, 10)),
    )));
    $("pools").hidden = pools.length === 0;
    $("no-pools").hidden = pools.length !== 0;
  }

  function renderPool(pool) {
    if (!changed("renderPool", pool)) return;
    $("pool-title").textContent = pool.name;
    $("pool-description-text").textContent = pool.description || "No description.";
    $("pool-state").replaceChildren(statePill(pool.state), " " + pool.state_reason);
    $("pool-warnings").replaceChildren(...pool.warnings.map((w) => el("li", {}, "⚠ " + w)));
    $("pool-warnings").hidden = pool.warnings.length === 0;
    const facts = [
      ["Tunnel URL", "private://" + pool.name + "/…"],
      ["Pool id", pool.id],
      ["Created", dateTime(pool.created * 1000) + " (" + ago(pool.created) + ")"],
      ["Last hour", pool.requests_last_hour + " requests, " + pool.denials_last_hour + " denied, " +
        pool.errors_last_hour + " failed"],
      ["Webhook URL", pool.webhook_url || "none (vcs-gateway pool update --webhook-url)"],
      ["Last webhooks", (pool.webhooks || []).length === 0 ? "none" : el("ul", {}, ...pool.webhooks.slice(0, 10).map((w) =>
        el("li", { class: w.status < 300 ? "" : "bad" }, clock(w.time_ms) + " " + w.event + " " + (w.project || "-") +
          " → " + w.status + (w.reason ? " (" + w.reason + ")" : "")))) ],
    ];
    $("pool-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    $("pool-chart").replaceChildren(chart(pool.minutes, true), el("p", { class: "legend" },
      el("span", { class: "key served" }), "served ", el("span", { class: "key denied" }), "denied ",
      el("span", { class: "key errors" }), "failed (no agent, queue timeout, VCS unreachable or 5xx)"));
    const busy = pool.minutes.filter((m) => m.requests > 0).reverse();
    $("pool-figures").querySelector("tbody").replaceChildren(...busy.map((m) => el("tr", {},
      el("td", {}, minuteClock(m.time_ms)), el("td", { class: "num" }, m.requests), el("td", { class: "num" }, served(m)),
      el("td", { class: "num" }, m.denied), el("td", { class: "num" }, m.errors))));
    $("pool-figures").querySelector("table").hidden = busy.length === 0;
    $("no-figures").hidden = busy.length !== 0;
  }

  function renderTabs(name, tab) {
    for (const link of document.querySelectorAll("#pool-tabs [data-tab]")) {
      link.href = poolHref(name, link.dataset.tab === "overview" ? "" : link.dataset.tab);
      if (link.dataset.tab === tab) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    for (const panel of document.querySelectorAll("#pool-view [data-panel]")) {
      panel.hidden = panel.dataset.panel !== tab;
    }
  }

  function refusedRows(groups, withPool) {
    return groups.map((g) => el("tr", { "data-shape": g.method + " " + g.shape },
      el("td", { class: "num" }, el("strong", {}, g.count)),
      withPool ? el("td", {}, el("a", { href: poolHref(g.pool, "refused") }, g.pool)) : null,
      el("td", { class: "path shape" }, el("span", { class: "method" }, g.method), " ", breakable(g.shape)),
      el("td", { class: "reason" }, g.reason),
      el("td", {}, g.callers.length ? g.callers.join(", ") : "—"),
      el("td", { class: "when", title: dateTime(g.last_seen_ms) }, clock(g.last_seen_ms),
        el("span", { class: "sub" }, ago(g.last_seen_ms / 1000))),
      el("td", { class: "path" }, breakable(g.example)),
    ));
  }

  function renderRefused(part, data, withPool) {
    if (!changed(part, data)) return;
    const groups = data.groups || [];
    $(part).querySelector("tbody").replaceChildren(...refusedRows(groups, withPool));
    $(part).hidden = groups.length === 0;
    $("no-" + part).hidden = groups.length !== 0;
    $(part + "-dropped").textContent = data.dropped
      ? data.dropped + " more denials are not grouped: only the " + "most recent shapes are kept." : "";
    $(part + "-dropped").hidden = !data.dropped;
    if (part === "pool-refused") $("refused-count").textContent = "(" + groups.length + ")";
  }

  function renderAgents(agents) {
    if (!changed("renderAgents", agents)) return;
    const body = $("agents").querySelector("tbody");
    body.replaceChildren(...agents.map((a) => {
      const tags = Object.entries(a.metadata || {}).map(([k, v]) => el("span", { class: "tag" }, k + "=" + v));
      return el("tr", { "data-agent": a.instance },
        el("td", { class: "mono" }, a.instance),
        el("td", { class: "tags" }, ...(tags.length ? tags : ["—"])),
        el("td", { class: "mono" }, a.remote),
        el("td", {}, a.version),
        el("td", { class: "when" }, dateTime(a.connected_since * 1000), el("span", { class: "sub" }, ago(a.connected_since))),
        el("td", { class: "num" }, a.idle + " / " + a.busy),
      );
    }));
    $("agent-count").textContent = agents.length ? "(" + agents.length + ")" : "";
    $("agents").hidden = agents.length === 0;
    $("no-agents").hidden = agents.length !== 0;
  }

  function renderLog(requests) {
    if (!changed("renderLog", requests)) return;
    const body = $("log").querySelector("tbody");
    body.replaceChildren(...requests.map((r) => {
      const denied = r.error === "denied";
      const reason = r.error
        ? el("span", { class: "reason" }, el("span", { class: "kind" }, r.error.replace(/_/g, " ")), r.reason || "")
        : "";
      return el("tr", { "data-id": r.id, class: denied ? "denied" : "" },
        el("td", { class: "when", title: dateTime(r.time_ms) }, clock(r.time_ms)),
        el("td", {}, r.caller || "—"),
        el("td", { class: "mono" }, r.method),
        el("td", { class: "path" }, breakable(r.path)),
        el("td", { class: "rule" }, r.rule || "—", r.project ? el("span", { class: "sub" }, r.project) : null),
        el("td", { class: "num" }, el("span", { class: "status s" + String(r.status).charAt(0) }, r.status)),
        el("td", { class: "num" }, bytes(r.bytes_in) + " / " + bytes(r.bytes_out)),
        el("td", { class: "num" }, duration(r.elapsed_ms)),
        el("td", {}, reason),
      );
    }));
    const filtered = logFilter.outcome !== "all" || logFilter.path !== "" || logFilter.caller !== "";
    $("log").hidden = requests.length === 0;
    $("no-log").hidden = requests.length !== 0 || filtered;
    $("no-log-match").hidden = requests.length !== 0 || !filtered;
  }

  function live() {
    $("live").textContent = "Live · updated " + clock(Date.now());
    $("live").hidden = false;
  }

  let rerun = false; // a refresh was asked for while one ran: run again with what changed
  async function refresh() {
    if (!current) return;
    if (busy) { rerun = true; return; }
    busy = true;
    try {
      if (current.view === "list") {
        const { data } = await api("GET", "/api/pools");
        renderPools(data.pools || []);
        show("list-view");
      } else if (current.view === "callers") {
        const [callers, traffic, pools] = await Promise.all([
          api("GET", "/api/callers"), api("GET", "/api/traffic"), api("GET", "/api/pools"),
        ]);
        knownPools = (pools.data.pools || []).map((p) => p.name);
        renderCallers(callers.data.callers || [], traffic.data.callers || {});
        show("callers-view");
      } else if (current.view === "refused") {
        const { data } = await api("GET", "/api/refused");
        renderRefused("all-refused", data, true);
        show("refused-view");
      } else {
        const name = encodeURIComponent(current.name);
        const query = new URLSearchParams({ limit: "100", outcome: logFilter.outcome, path: logFilter.path, caller: logFilter.caller });
        const [pool, agents, log, refused] = await Promise.all([
          api("GET", "/api/pools/" + name),
          api("GET", "/api/pools/" + name + "/agents"),
          api("GET", "/api/pools/" + name + "/log?" + query),
          api("GET", "/api/pools/" + name + "/refused"),
        ]);
        if (pool.status === 404) {
          $("missing-text").textContent = "There is no pool named \"" + current.name + "\". It may have been deleted.";
          show("missing-view");
        } else {
          renderPool(pool.data.pool);
          renderAgents(agents.data.agents || []);
          renderLog(log.data.requests || []);
          renderRefused("pool-refused", refused.data, false);
          renderTabs(current.name, current.tab);
          show("pool-view");
        }
      }
      live();
      $("sign-out").hidden = !sessionStorage.getItem(TOKEN_KEY);
    } catch (e) {
      if (e instanceof Unauthorized) {
        show("login-view");
        $("live").hidden = true;
      } else {
        $("live").textContent = "Gateway unreachable, retrying…";
      }
    } finally {
      busy = false;
      if (rerun) { rerun = false; refresh(); }
    }
  }

  function route() {
    const match = location.hash.match(/^#\/pools\/([^/]+)(?:\/(refused|log))?$/);
    if (match) {
      const name = decodeURIComponent(match[1]);
      if (!current || current.name !== name) resetLogFilter();
      current = { view: "pool", name, tab: match[2] || "overview" };
    } else {
      current = { view: { "#/refused": "refused", "#/callers": "callers" }[location.hash] || "list" };
    }
    if (current.view === "pool") {
      flash("");
      renderTabs(current.name, current.tab);
    }
    refresh();
  }

  // ---- access log filters --------------------------------------------------

  const logFilter = { outcome: "all", path: "", caller: "" };
  function resetLogFilter() {
    logFilter.outcome = "all";
    logFilter.path = "";
    logFilter.caller = "";
    $("log-filters").reset();
  }
  function filterChanged() {
    logFilter.outcome = $("log-outcome").value;
    logFilter.path = $("log-path").value.trim();
    logFilter.caller = $("log-caller").value.trim();
    refresh();
  }
  $("log-caller").addEventListener("input", filterChanged);
  $("log-outcome").addEventListener("change", filterChanged);
  $("log-path").addEventListener("input", filterChanged);
  $("log-filters").addEventListener("submit", (event) => { event.preventDefault(); filterChanged(); });

  // ---- callers ---------------------------------------------------------------

  let knownPools = [];

  function renderCallers(callers, traffic) {
    if (!changed("renderCallers", [callers, traffic])) return;
    const none = { requests: 0, denied: 0, errors: 0, pools: {} };
    $("callers").querySelector("tbody").replaceChildren(...callers.map((c) => {
      const t = traffic[c.name] || none;
      const scope = c.all_pools ? ["all pools"] : c.pools;
      const pools = scope.map((name) => {
        const p = (t.pools || {})[name];
        const figures = p ? " (" + p.requests + " requests, " + p.denied + " denied)" : "";
        return el("span", { class: "scope" }, c.all_pools ? name : el("a", { href: poolHref(name) }, name), figures);
      });
      return el("tr", { "data-caller": c.name },
        el("td", { class: "name" }, c.name),
        el("td", { class: "tags" }, ...pools),
        el("td", { class: "num" }, t.requests),
        el("td", { class: "num" + (t.denied ? " bad" : "") }, t.denied),
        el("td", { class: "num" + (t.errors ? " bad" : "") }, t.errors),
        el("td", { class: "when", title: c.created_at }, dateTime(c.created * 1000).slice(0, 10)),
        el("td", { class: "row-actions" },
          el("button", { type: "button", "data-action": "rotate", "data-caller": c.name }, "Rotate secret"),
          el("button", { type: "button", class: "danger", "data-action": "delete", "data-caller": c.name }, "Delete")),
      );
    }));
    $("callers").hidden = callers.length === 0;
    $("no-callers").hidden = callers.length !== 0;
  }

  function resetCallerForm() {
    $("caller-form").reset();
    setFieldError("caller-name", "caller-name-error", "");
    setFieldError(null, "caller-pools-error", "");
    setFieldError(null, "caller-error", "");
  }

  $("add-caller").addEventListener("click", () => {
    resetCallerForm();
    $("caller-pool-list").replaceChildren(...knownPools.map((name) =>
      el("label", { class: "check" }, el("input", { type: "checkbox", value: name, "data-pool": name }), name)));
    if (!knownPools.length) $("caller-pool-list").replaceChildren(el("p", { class: "hint" }, "No pools yet."));
    $("caller-form").hidden = false;
    $("caller-name").focus();
  });
  $("caller-cancel").addEventListener("click", () => { resetCallerForm(); $("caller-form").hidden = true; });
  $("caller-all-pools").addEventListener("change", () => {
    for (const box of $("caller-pool-list").querySelectorAll("input")) box.disabled = $("caller-all-pools").checked;
  });

  $("caller-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    resetErrorsOnly();
    const name = $("caller-name").value.trim();
    const all = $("caller-all-pools").checked;
    const pools = [...$("caller-pool-list").querySelectorAll("input:checked")].map((b) => b.value);
    $("caller-submit").disabled = true;
    try {
      const { status, data } = await api("POST", "/api/callers", all ? { name, all_pools: true } : { name, pools });
      if (status === 201) {
        resetCallerForm();
        $("caller-form").hidden = true;
        issueSecret(data.caller.name, data.secret);
        flash("Caller " + data.caller.name + " created.");
        refresh();
      } else if (data.field === "name") {
        setFieldError("caller-name", "caller-name-error", data.error);
        $("caller-name").focus();
      } else if (data.field === "pools" || data.field === "all_pools") {
        setFieldError(null, "caller-pools-error", data.error);
      } else {
        setFieldError(null, "caller-error", data.error || "The caller was not created (status " + status + ").");
      }
    } catch (e) {
      if (e instanceof Unauthorized) show("login-view");
      else setFieldError(null, "caller-error", "The gateway cannot be reached.");
    } finally {
      $("caller-submit").disabled = false;
    }
  });
  function resetErrorsOnly() {
    setFieldError("caller-name", "caller-name-error", "");
    setFieldError(null, "caller-pools-error", "");
    setFieldError(null, "caller-error", "");
  }

  $("callers").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const name = button.dataset.caller;
    const path = "/api/callers/" + encodeURIComponent(name);
    try {
      if (button.dataset.action === "rotate") {
        const ok = await confirmAction("Rotate the secret of " + name + "?",
          "A new secret is downloaded. Requests with the current one are refused from now on; " +
          "give the SaaS the new one.", "Rotate secret");
        if (!ok) return;
        const { status, data } = await api("POST", path + "/rotate");
        if (status === 200) issueSecret(data.caller.name, data.secret);
        else flash(data.error || "The secret was not rotated (status " + status + ").");
      } else {
        const ok = await confirmAction("Delete caller " + name + "?",
          "Its secret stops working at once: requests that present it are refused. " +
          "This cannot be undone.", "Delete caller");
        if (!ok) return;
        const { status, data } = await api("DELETE", path);
        flash(status === 200 ? "Caller " + name + " deleted." : data.error || "The caller was not deleted (status " + status + ").");
      }
      refresh();
    } catch (e) {
      if (e instanceof Unauthorized) show("login-view");
    }
  });

  // ---- actions -------------------------------------------------------------

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("admin-token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    try {
      await api("GET", "/api/pools");
      $("admin-token").value = "";
      setFieldError("admin-token", "login-error", "");
      refresh();
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      setFieldError("admin-token", "login-error",
        e instanceof Unauthorized ? "The gateway refused this token." : "The gateway cannot be reached.");
    }
  });

  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = "#/";
    location.reload();
  });

  function resetAddForm() {
    $("add-form").reset();
    setFieldError("pool-name", "pool-name-error", "");
    setFieldError("pool-description", "pool-description-error", "");
    setFieldError(null, "add-error", "");
  }

  $("add-pool").addEventListener("click", () => {
    resetAddForm();
    $("add-form").hidden = false;
    $("pool-name").focus();
  });

  $("add-cancel").addEventListener("click", () => {
    resetAddForm();
    $("add-form").hidden = true;
  });

  $("add-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("pool-name").value.trim();
    const description = $("pool-description").value.trim();
    setFieldError("pool-name", "pool-name-error", "");
    setFieldError("pool-description", "pool-description-error", "");
    setFieldError(null, "add-error", "");
    $("add-submit").disabled = true;
    try {
      const { status, data } = await api("POST", "/api/pools", { name, description });
      if (status === 201) {
        resetAddForm();
        $("add-form").hidden = true;
        issue(data.pool.name, data.token);
        flash("Pool " + data.pool.name + " created. Its agents can connect now.");
        refresh();
      } else if (data.field === "name" || data.field === "description") {
        const input = data.field === "name" ? "pool-name" : "pool-description";
        setFieldError(input, input + "-error", data.error);
        $(input).focus();
      } else {
        setFieldError(null, "add-error", data.error || "The pool was not created (status " + status + ").");
      }
    } catch (e) {
      if (e instanceof Unauthorized) show("login-view");
      else setFieldError(null, "add-error", "The gateway cannot be reached.");
    } finally {
      $("add-submit").disabled = false;
    }
  });

  $("rotate-key").addEventListener("click", async () => {
    const name = current && current.name;
    if (!name) return;
    const ok = await confirmAction("Rotate the key of " + name + "?",
      "A new configuration token is downloaded. Agents using the current token are disconnected " +
      "now and refused from now on; give them the new token.", "Rotate key");
    if (!ok) return;
    try {
      const { status, data } = await api("POST", "/api/pools/" + encodeURIComponent(name) + "/rotate");
      if (status === 200) issue(data.pool.name, data.token);
      else flash(data.error || "The key was not rotated (status " + status + ").");
      refresh();
    } catch (e) {
      if (e instanceof Unauthorized) show("login-view");
    }
  });

  $("delete-pool").addEventListener("click", async () => {
    const name = current && current.name;
    if (!name) return;
    const ok = await confirmAction("Delete pool " + name + "?",
      "Its agents are disconnected at once and its token stops working. Requests for private://" +
      name + "/… fail from now on. This cannot be undone.", "Delete pool");
    if (!ok) return;
    try {
      const { status, data } = await api("DELETE", "/api/pools/" + encodeURIComponent(name));
      if (status === 200) {
        location.hash = "#/";
        flash("Pool " + name + " deleted; its agents were disconnected.");
      } else {
        flash(data.error || "The pool was not deleted (status " + status + ").");
      }
    } catch (e) {
      if (e instanceof Unauthorized) show("login-view");
    }
  });

  window.addEventListener("hashchange", route);
  setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
  route();
})();
