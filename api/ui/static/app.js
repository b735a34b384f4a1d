// wasmtask dashboard: a small static app over the public HTTP API (/v1).
// Every value shown comes from the API with the token the user gave; text is
// always inserted as text (never as HTML), so task data cannot run script.
"use strict";

const TOKEN_KEY = "wasmtask-token";
const POLL_MS = 1000;
const main = document.getElementById("main");
let pollTimer = null;
let renderSeq = 0; // a render that is no longer current drops its result

// ---- DOM helpers ----------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function stateBadge(state) {
  return h("span", { class: "state " + state, "data-state": state }, state || "—");
}

function short(version) {
  return version ? version.replace(/^sha256:/, "").slice(0, 12) : "";
}

function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? t : d.toLocaleString();
}

function duration(a, b) {
  if (!a || !b) return "";
  const ms = new Date(b) - new Date(a);
  if (isNaN(ms)) return "";
  return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}

function bytes(n) {
  if (n === undefined || n === null) return "—";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function toast(msg, isError) {
  const t = document.getElementById("toast");
  t.textContent = msg;
  t.className = "toast" + (isError ? " error" : "");
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

// ---- API ------------------------------------------------------------------

class Unauthorized extends Error {}

async function api(method, path, body, headers) {
  const opts = { method, headers: Object.assign({}, headers) };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) opts.headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) {
    if (body instanceof FormData || body instanceof Blob) opts.body = body;
    else { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  }
  const resp = await fetch(path, opts);
  if (resp.status === 401) throw new Unauthorized("missing or wrong token");
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!resp.ok) {
    const err = data && data.error;
    throw new Error(err ? (err.field ? err.field + ": " : "") + err.message : "HTTP " + resp.status);
  }
  return data;
}

// act runs an action (a button's), reports its result and refreshes the page.
async function act(what, fn) {
  try {
    await fn();
    toast(what + ": done");
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin("Your token was refused; sign in again.");
    toast(what + ": " + e.message, true);
  }
  route();
}

// ---- login ----------------------------------------------------------------

function showLogin(message) {
  stopPolling();
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "current-password", placeholder: "bearer token" });
  const form = h("form", { class: "login", id: "login", onsubmit: async (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value);
      try {
        await api("GET", "/v1/engine");
        route();
      } catch (e) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(e instanceof Unauthorized ? "That token was refused." : e.message);
      }
    } },
    h("h1", {}, "Sign in to wasmtask"),
    h("p", { class: "muted" }, "This server needs its bearer token (serve --token). It is kept in this tab's session storage only."),
    h("label", {}, "Token", input),
    message ? h("p", { class: "error", id: "login-error" }, message) : null,
    h("button", { type: "submit" }, "Sign in"));
  main.replaceChildren(form);
  input.focus();
}

// ---- routing --------------------------------------------------------------

function stopPolling() {
  clearTimeout(pollTimer);
  pollTimer = null;
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  const parts = path.split("/").map(decodeURIComponent);
  return { page: parts[0] || "overview", arg: parts.slice(1).join("/"), params: new URLSearchParams(query || "") };
}

const pages = { overview: overviewPage, tasks: tasksPage, task: taskPage, plugins: pluginsPage, cron: cronPage };

async function route() {
  stopPolling();
  const seq = ++renderSeq;
  const r = parseHash();
  const page = pages[r.page] || overviewPage;
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = !sessionStorage.getItem(TOKEN_KEY);
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.page === (r.page === "task" ? "tasks" : r.page));
  }
  const tick = async (first) => {
    try {
      const view = await page(r, first);
      if (seq !== renderSeq) return;
      if (view) main.replaceChildren(view);
      document.getElementById("live").textContent = "live · " + new Date().toLocaleTimeString();
    } catch (e) {
      if (seq !== renderSeq) return;
      if (e instanceof Unauthorized) return showLogin(sessionStorage.getItem(TOKEN_KEY) ? "Your token was refused." : null);
      main.replaceChildren(h("p", { class: "error" }, e.message));
    }
    if (seq === renderSeq && page.live !== false) pollTimer = setTimeout(() => tick(false), POLL_MS);
  };
  tick(true);
}

// ---- overview -------------------------------------------------------------

async function overviewPage() {
  const [eng, hist] = await Promise.all([api("GET", "/v1/engine"), api("GET", "/v1/engine/history")]);
  const runs = eng.runs || {};
  const order = ["scheduled", "ready", "leased", "running", "retry_wait", "completed", "failed", "canceled"];
  const keys = order.concat(Object.keys(runs).filter((k) => !order.includes(k)));
  const paused = eng.paused;
  return h("div", { id: "overview" },
    h("h1", {}, "Overview"),
    h("div", { class: "actions" },
      h("span", { id: "engine-state" }, "Engine: ", stateBadge(paused ? "paused" : "running")),
      paused
        ? h("button", { id: "resume", onclick: () => act("Resume", () => api("POST", "/v1/engine/resume")) }, "Resume")
        : h("button", { id: "pause", class: "secondary", onclick: () => act("Pause", () => api("POST", "/v1/engine/pause")) }, "Pause dispatch")),
    h("div", { class: "cards", id: "counts" },
      card("tasks", eng.tasks, "tasks retained"),
      card("in_flight", eng.in_flight, "attempts in flight"),
      keys.map((k) => card("runs-" + k, runs[k] || 0, k + " runs"))),
    h("h2", {}, "Last hour"),
    chart(hist && hist.points || []),
    h("h2", {}, "Storage"),
    h("div", { class: "cards" },
      card("wal-bytes", bytes(eng.disk && eng.disk.wal_bytes), "WAL"),
      card("snapshot-bytes", bytes(eng.disk && eng.disk.snapshot_bytes), "snapshots"),
      card("wal-seq", eng.wal_seq, "WAL sequence"),
      card("recovery", (eng.recovery && eng.recovery.seconds || 0).toFixed(3) + " s", "last recovery")));
}

function card(id, value, label) {
  return h("div", { class: "card", id: "card-" + id }, h("div", { class: "n" }, value), h("div", { class: "k" }, label));
}

// chart draws completed and failed runs per minute (and submissions) from
// the server's samples of the last hour.
function chart(points) {
  const W = 720, H = 160, P = 28;
  const svg = s("svg", { class: "chart", id: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  if (points.length < 2) {
    svg.append(s("text", { x: P, y: H / 2 }, "collecting samples: the chart fills in as the server runs"));
    return svg;
  }
  const rate = (key) => points.slice(1).map((p, i) => {
    const dt = (new Date(p.time) - new Date(points[i].time)) / 60000;
    return { t: new Date(p.time), v: dt > 0 ? Math.max(0, p[key] - points[i][key]) / dt : 0 };
  });
  const series = { completed: rate("completed"), failed: rate("failed"), submitted: rate("submitted") };
  const t0 = series.completed[0].t, t1 = series.completed[series.completed.length - 1].t;
  const vmax = Math.max(1, ...Object.values(series).flat().map((p) => p.v));
  const x = (t) => P + ((t - t0) / Math.max(1, t1 - t0)) * (W - 2 * P);
  const y = (v) => H - P + 8 - (v / vmax) * (H - 2 * P);
  svg.append(s("line", { class: "axis", x1: P, y1: H - P + 8, x2: W - P, y2: H - P + 8 }));
  svg.append(s("text", { x: 2, y: y(vmax) + 4 }, Math.round(vmax)));
  svg.append(s("text", { x: 2, y: H - P + 12 }, "0"));
  svg.append(s("text", { x: W - 330, y: 14 }, "per minute:"));
  ["completed", "failed", "submitted"].forEach((k, i) =>
    svg.append(s("text", { x: W - 260 + i * 75, y: 14, class: "legend-" + k }, k)));
  for (const [k, pts] of Object.entries(series)) {
    svg.append(s("polyline", { class: k, points: pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ") }));
  }
  const last = series.completed.length - 1;
  const failRate = series.completed[last].v + series.failed[last].v > 0
    ? (100 * series.failed[last].v / (series.completed[last].v + series.failed[last].v)).toFixed(1) + " % failed" : "";
  svg.append(s("text", { x: P, y: 14 }, failRate));
  return svg;
}

// ---- tasks ----------------------------------------------------------------

const TASK_STATES = ["", "pending", "running", "waiting_children", "completed", "failed", "canceled"];

async function tasksPage(r, first) {
  const p = r.params;
  const q = new URLSearchParams();
  for (const k of ["state", "handler", "label", "id", "cursor"]) if (p.get(k)) q.set(k, p.get(k));
  q.set("limit", "50");
  const list = await api("GET", "/v1/tasks?" + q);
  // Keep the filter form (and its focus) across live refreshes.
  let form = document.getElementById("task-filters");
  if (first || !form) form = taskFilters(p);
  const rows = list.tasks.map((t) => h("tr", { "data-id": t.id },
    h("td", { class: "mono" }, h("a", { href: "#/task/" + encodeURIComponent(t.id) }, t.id)),
    h("td", {}, t.handler),
    h("td", {}, stateBadge(t.state)),
    h("td", {}, String(t.runs.length)),
    h("td", {}, String(t.runs.reduce((n, run) => n + run.attempts.length, 0))),
    h("td", {}, fmtTime(t.submitted_at))));
  const next = new URLSearchParams(p);
  next.set("cursor", list.next_cursor || "");
  const firstPage = new URLSearchParams(p);
  firstPage.delete("cursor");
  return h("div", { id: "tasks" },
    h("h1", {}, "Tasks"),
    form,
    h("table", { id: "task-table" },
      h("thead", {}, h("tr", {}, ["id", "handler", "state", "runs", "attempts", "submitted"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "no tasks match")))),
    h("div", { class: "pager" },
      p.get("cursor") ? h("a", { href: "#/tasks?" + firstPage }, "« first page") : null,
      list.next_cursor ? h("a", { href: "#/tasks?" + next, id: "next-page" }, "next page »") : h("span", {}, "last page")));
}

function taskFilters(p) {
  const field = (name, label, el) => { el.name = name; el.value = p.get(name) || ""; return h("label", {}, label, el); };
  const stateSel = h("select", {}, TASK_STATES.map((st) => h("option", { value: st }, st || "any")));
  const form = h("form", { class: "filters", id: "task-filters", onsubmit: (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
      location.hash = "#/tasks?" + q;
    } },
    field("state", "State", stateSel),
    field("handler", "Handler", h("input", { placeholder: "plugin name" })),
    field("label", "Label", h("input", { placeholder: "key=value" })),
    field("id", "Id contains", h("input", { placeholder: "text" })),
    h("button", { type: "submit" }, "Filter"));
  return form;
}

// ---- one task -------------------------------------------------------------

async function taskPage(r) {
  const t = await api("GET", "/v1/tasks/" + encodeURIComponent(r.arg));
  const final = ["completed", "failed", "canceled"].includes(t.state);
  const attempts = [];
  for (const run of t.runs) for (const a of run.attempts) attempts.push({ run, a });
  const spec = [
    ["handler", t.handler], ["state", stateBadge(t.state)], ["priority", t.priority],
    ["max attempts", t.max_attempts], ["timeout", t.timeout || ""],
    ["concurrency key", t.concurrency_key || ""],
    ["labels", Object.entries(t.labels || {}).map(([k, v]) => k + "=" + v).join(", ")],
    ["submitted", fmtTime(t.submitted_at)], ["finished", fmtTime(t.finished_at)],
    ["cancel reason", t.cancel_reason || ""],
  ];
  return h("div", { id: "task" },
    h("h1", {}, "Task ", h("span", { class: "mono", id: "task-id" }, t.id), " ", stateBadge(t.state)),
    h("div", { class: "actions" },
      h("button", { id: "cancel", class: "danger", disabled: final, onclick: () => {
        if (confirm("Cancel task " + t.id + " and its subtree?")) act("Cancel", () => api("POST", "/v1/tasks/" + encodeURIComponent(t.id) + "/cancel"));
      } }, "Cancel"),
      h("button", { id: "retry", class: "secondary", disabled: !(t.state === "failed" || t.state === "canceled"),
        onclick: () => act("Retry", () => api("POST", "/v1/tasks/" + encodeURIComponent(t.id) + "/retry")) }, "Retry now")),
    h("dl", { id: "spec" }, spec.filter(([, v]) => v !== "" && v !== undefined).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("h2", {}, "Workflow"),
    graph(t),
    h("h2", {}, "Attempts"),
    h("table", { id: "attempts" },
      h("thead", {}, h("tr", {}, ["run", "#", "outcome", "error", "duration", "worker", "module", "started"].map((c) => h("th", {}, c)))),
      h("tbody", {}, attempts.length ? attempts.map(({ run, a }) => h("tr", {},
        h("td", {}, String(run.index)), h("td", {}, String(a.number)),
        h("td", {}, a.outcome ? stateBadge(a.outcome) : stateBadge(run.state)),
        h("td", { class: "mono attempt-error" }, a.error || ""),
        h("td", {}, duration(a.started_at, a.finished_at)),
        h("td", {}, a.worker || "local"),
        h("td", { class: "mono", title: a.module || "" }, short(a.module)),
        h("td", {}, fmtTime(a.started_at)))) : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "no attempts")))),
    attempts.filter(({ a }) => a.log).map(({ run, a }) =>
      [h("h2", {}, `Log of run ${run.index}, attempt ${a.number}`), h("pre", { class: "attempt-log" }, a.log)]),
    h("h2", {}, "Output"),
    h("pre", { id: "output" }, t.output !== undefined && t.output !== null ? preview(t.output)
      : t.output_b64 ? "(binary, base64) " + preview(t.output_b64) : "—"),
    runsTable(t));
}

function preview(text) {
  return text.length > 4096 ? text.slice(0, 4096) + "\n… (" + text.length + " characters in all)" : text;
}

function runsTable(t) {
  const due = t.runs.filter((r) => r.due_at);
  if (!due.length) return null;
  return [h("h2", {}, "Scheduled runs"),
    h("table", {}, h("tbody", {}, due.map((r) => h("tr", {}, h("td", {}, String(r.index)), h("td", {}, stateBadge(r.state)), h("td", {}, fmtTime(r.due_at))))))];
}

// graph draws the task's neighbourhood: prerequisites (after) on the left,
// the task, its children on the right, its parent above.
function graph(t) {
  const after = t.after || [], children = t.children || [];
  const NW = 170, NH = 26, GAP = 8, COLS = [20, 260, 500];
  const rows = Math.max(after.length, children.length, 1);
  const H = Math.max(rows * (NH + GAP) + 40, t.parent ? 110 : 60);
  const svg = s("svg", { class: "graph", id: "graph", width: 700, height: H, viewBox: `0 0 700 ${H}` },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" },
      s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#98a2b3" }))));
  const mid = H / 2;
  const node = (id, x, y, self) => {
    const label = id.length > 24 ? id.slice(0, 23) + "…" : id;
    const g = s("g", { class: "node" + (self ? " self" : ""), transform: `translate(${x},${y - NH / 2})` },
      s("rect", { width: NW, height: NH }), s("text", { x: 8, y: 17 }, label), s("title", {}, id));
    return self ? g : s("a", { href: "#/task/" + encodeURIComponent(id) }, g);
  };
  const col = (ids, x) => ids.map((id, i) => ({ id, x, y: mid + (i - (ids.length - 1) / 2) * (NH + GAP) }));
  for (const p of col(after, COLS[0])) {
    svg.append(s("path", { class: "edge", d: `M${p.x + NW},${p.y} C${p.x + NW + 30},${p.y} ${COLS[1] - 30},${mid} ${COLS[1]},${mid}` }));
    svg.append(node(p.id, p.x, p.y));
  }
  for (const c of col(children, COLS[2])) {
    svg.append(s("path", { class: "edge", d: `M${COLS[1] + NW},${mid} C${COLS[1] + NW + 30},${mid} ${c.x - 30},${c.y} ${c.x},${c.y}` }));
    svg.append(node(c.id, c.x, c.y));
  }
  if (t.parent) {
    svg.append(s("path", { class: "edge", d: `M${COLS[1] + NW / 2},${NH + 6} L${COLS[1] + NW / 2},${mid - NH / 2}` }));
    svg.append(node(t.parent, COLS[1], NH / 2 + 4));
  }
  svg.append(node(t.id, COLS[1], mid, true));
  if (!after.length && !children.length && !t.parent) {
    svg.append(s("text", { x: COLS[2], y: mid + 4 }, "no prerequisites, parent or children"));
  }
  return svg;
}

// ---- plugins --------------------------------------------------------------

async function pluginsPage(r, first) {
  const { plugins } = await api("GET", "/v1/plugins");
  let deploy = document.getElementById("deploy");
  if (first || !deploy) deploy = deployForm();
  return h("div", { id: "plugins" },
    h("h1", {}, "Plugins"),
    h("table", { id: "plugin-table" },
      h("thead", {}, h("tr", {}, ["name", "active", "mode", "versions", "attempts (active)", "last error", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, plugins.length ? plugins.map((p) => pluginRows(p)) : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "no plugin deployed")))),
    h("h2", {}, "Deploy a module"),
    deploy);
}

function pluginRows(p) {
  const versions = [...new Set((p.history || []).map((e) => e.version))];
  const counts = (p.attempts || {})[p.active] || {};
  const prev = [...(p.history || [])].reverse().find((e) => e.version !== p.active);
  return [
    h("tr", { "data-plugin": p.name },
      h("td", {}, p.name),
      h("td", { class: "mono active-version", title: p.active || "" }, p.active ? short(p.active) : "(" + (p.state || "none") + ")"),
      h("td", {}, [p.mode || "", p.state && p.state !== "active" ? " · " + p.state : ""]),
      h("td", {}, String(versions.length)),
      h("td", {}, Object.entries(counts).map(([k, v]) => k + " " + v).join(", ")),
      h("td", { class: "error" }, p.last_error || ""),
      h("td", {}, h("button", { class: "secondary rollback", disabled: !prev,
        title: prev ? "activate " + prev.version : "no earlier version",
        onclick: () => act("Roll back " + p.name, () => api("POST", "/v1/plugins/" + encodeURIComponent(p.name) + "/rollback")) }, "Roll back"))),
    h("tr", { class: "history" }, h("td", { colspan: 7, class: "muted" },
      "history: ", (p.history || []).slice(-5).reverse().map((e) => `${short(e.version)} (${e.source}, ${fmtTime(e.activated_at)})`).join(" ← "))),
  ];
}

function deployForm() {
  const name = h("input", { name: "name", placeholder: "plugin name", required: true });
  const file = h("input", { type: "file", name: "module", accept: ".wasm,application/wasm", required: true });
  const manifest = h("input", { type: "file", name: "manifest", accept: ".json,application/json" });
  const form = h("form", { class: "filters", id: "deploy", onsubmit: (ev) => {
      ev.preventDefault();
      const fd = new FormData();
      fd.append("module", file.files[0]);
      if (manifest.files[0]) fd.append("manifest", manifest.files[0]);
      act("Deploy " + name.value, () => api("PUT", "/v1/plugins/" + encodeURIComponent(name.value), fd)).then(() => form.reset());
    } },
    h("label", {}, "Name", name), h("label", {}, "Module (.wasm)", file), h("label", {}, "Manifest (optional)", manifest),
    h("button", { type: "submit" }, "Deploy"));
  return form;
}

// ---- cron -----------------------------------------------------------------

// cronPage lists pending tasks whose run policy is cron, with their next
// occurrences (the scheduled runs the engine keeps ahead).
async function cronPage() {
  const rows = [];
  let cursor = "";
  for (let i = 0; i < 5; i++) { // at most 5,000 pending tasks scanned
    const q = new URLSearchParams({ state: "pending", limit: "1000" });
    if (cursor) q.set("cursor", cursor);
    const list = await api("GET", "/v1/tasks?" + q);
    for (const t of list.tasks) if (t.run_policy && t.run_policy.cron) rows.push(t);
    if (!list.next_cursor) break;
    cursor = list.next_cursor;
  }
  return h("div", { id: "cron" },
    h("h1", {}, "Cron tasks"),
    h("table", { id: "cron-table" },
      h("thead", {}, h("tr", {}, ["id", "handler", "expression", "runs done", "next occurrences"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.length ? rows.map((t) => h("tr", {},
        h("td", { class: "mono" }, h("a", { href: "#/task/" + encodeURIComponent(t.id) }, t.id)),
        h("td", {}, t.handler),
        h("td", { class: "mono" }, t.run_policy.cron.expr),
        h("td", {}, String(t.runs.filter((r) => ["completed", "failed", "canceled"].includes(r.state)).length)),
        h("td", {}, t.runs.filter((r) => r.due_at).map((r) => fmtTime(r.due_at)).join(" · ")))) :
        h("tr", {}, h("td", { colspan: 5, class: "muted" }, "no cron task is pending")))));
}

// ---- start ----------------------------------------------------------------

document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin("Signed out.");
});
window.addEventListener("hashchange", route);
route();
