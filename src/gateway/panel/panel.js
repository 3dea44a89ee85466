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
    for (const view of ["login-view", "list-view", "pool-view", "missing-view"]) {
      $(view).hidden = view !== id;
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

  // ---- token download ------------------------------------------------------

  function download(pool, token) {
    const blob = new Blob([token + "\n"], { type: "application/octet-stream" });
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: pool + ".token" });
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

  function renderPools(pools) {
    if (!changed("renderPools", pools)) return;
    const body = $("pools").querySelector("tbody");
    body.replaceChildren(...pools.map((p) => el("tr", { "data-pool": p.name },
      el("td", { class: "name" }, el("a", { href: "#/pools/" + encodeURIComponent(p.name) }, p.name)),
      el("td", {}, p.description || "—"),
      el("td", { class: "when", title: p.created_at }, dateTime(p.created * 1000)),
      el("td", { class: "num" }, p.agents),
      el("td", { class: "num" }, p.idle + " / " + p.busy),
      el("td", { class: "num" }, p.requests_last_hour),
      el("td", { class: "num" + (p.denials_last_hour ? " bad" : "") }, p.denials_last_hour),
    )));
    $("pools").hidden = pools.length === 0;
    $("no-pools").hidden = pools.length !== 0;
  }

  function renderPool(pool) {
    if (!changed("renderPool", pool)) return;
    $("pool-title").textContent = pool.name;
    $("pool-description-text").textContent = pool.description || "No description.";
    const facts = [
      ["Tunnel URL", "private://" + pool.name + "/…"],
      ["Pool id", pool.id],
      ["Created", dateTime(pool.created * 1000) + " (" + ago(pool.created) + ")"],
      ["Last hour", pool.requests_last_hour + " requests, " + pool.denials_last_hour + " denied"],
    ];
    $("pool-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
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
        el("td", { class: "mono" }, r.method),
        el("td", { class: "path" }, r.path),
        el("td", { class: "rule" }, r.rule || "—", r.project ? el("span", { class: "sub" }, r.project) : null),
        el("td", { class: "num" }, el("span", { class: "status s" + String(r.status).charAt(0) }, r.status)),
        el("td", { class: "num" }, bytes(r.bytes_in) + " / " + bytes(r.bytes_out)),
        el("td", { class: "num" }, duration(r.elapsed_ms)),
        el("td", {}, reason),
      );
    }));
    $("log").hidden = requests.length === 0;
    $("no-log").hidden = requests.length !== 0;
  }

  function live() {
    $("live").textContent = "Live · updated " + clock(Date.now());
    $("live").hidden = false;
  }

  async function refresh() {
    if (busy || !current) return;
    busy = true;
    try {
      if (current.view === "list") {
        const { data } = await api("GET", "/api/pools");
        renderPools(data.pools || []);
        show("list-view");
      } else {
        const name = encodeURIComponent(current.name);
        const [pool, agents, log] = await Promise.all([
          api("GET", "/api/pools/" + name),
          api("GET", "/api/pools/" + name + "/agents"),
          api("GET", "/api/pools/" + name + "/log?limit=100"),
        ]);
        if (pool.status === 404) {
          $("missing-text").textContent = "There is no pool named \"" + current.name + "\". It may have been deleted.";
          show("missing-view");
        } else {
          renderPool(pool.data.pool);
          renderAgents(agents.data.agents || []);
          renderLog(log.data.requests || []);
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
    }
  }

  function route() {
    const match = location.hash.match(/^#\/pools\/([^/]+)$/);
    current = match ? { view: "pool", name: decodeURIComponent(match[1]) } : { view: "list" };
    if (current.view === "pool") flash("");
    refresh();
  }

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
