// The Cerebelum UI: a small single-page app over /api. Everything shown is set with
// textContent or attributes, never innerHTML, so a step output holding <script> is text.
"use strict";

const state = { ns: "", me: null, phases: new Set(), q: "", page: 1, source: null, timer: null };

function el(tag, attrs, ...children) {
  const node = tag === "svg" || tag === "g" || tag === "rect" || tag === "text" || tag === "path" || tag === "title"
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fill(parent, ...children) {
  parent.replaceChildren(...children.flat().filter(c => c !== null && c !== undefined));
}

function csrf() {
  const m = document.cookie.match(/(?:^|; )cerebelum_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

function flash(text, info) {
  const f = document.getElementById("flash");
  f.textContent = text || "";
  f.className = info ? "info" : "";
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  if (response.status === 401) { location.href = "/login"; throw new Error("not signed in"); }
  const text = await response.text();
  let data;
  try { data = JSON.parse(text); } catch (_) { data = { error: text }; }
  if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
  return data;
}

function nsq() { return "ns=" + encodeURIComponent(state.ns); }

function left(deadline) {
  const ms = Date.parse(deadline) - Date.now();
  if (isNaN(ms)) return "";
  if (ms <= 0) return "now";
  const s = Math.ceil(ms / 1000);
  if (s < 120) return s + "s";
  if (s < 7200) return Math.round(s / 60) + "m";
  return Math.round(s / 3600) + "h";
}

function countdown(deadline) {
  return el("span", { class: "countdown", "data-deadline": deadline, title: deadline }, left(deadline));
}

function tickCountdowns() {
  let due = false;
  for (const node of document.querySelectorAll("[data-deadline]")) {
    const text = left(node.dataset.deadline);
    if (text === "now" && node.textContent !== "now") due = true;
    node.textContent = text;
  }
  if (due) setTimeout(render, 400);  // the step moves on: show its next phase
}

function age(stamp) {
  const s = (Date.now() - Date.parse(stamp)) / 1000;
  if (isNaN(s)) return "";
  if (s < 120) return Math.round(s) + "s";
  if (s < 7200) return Math.round(s / 60) + "m";
  if (s < 172800) return Math.round(s / 3600) + "h";
  return Math.round(s / 86400) + "d";
}

function phase(p) { return el("span", { class: "phase phase-" + p }, p); }

function link(ns, name) { return el("a", { href: "#/wf/" + encodeURIComponent(ns) + "/" + encodeURIComponent(name) }, name); }

// -- pages -----------------------------------------------------------------------------

const PHASES = ["Running", "Sleeping", "Polling", "Retrying", "WaitingForApproval", "WaitingForCallback", "Suspended", "Succeeded", "Failed", "Cancelled", "Pending"];

async function pageWorkflows(main) {
  const params = [nsq(), "page=" + state.page];
  if (state.phases.size) params.push("phase=" + [...state.phases].join(","));
  if (state.q) params.push("q=" + encodeURIComponent(state.q));
  const data = await api("/api/workflows?" + params.join("&"));
  const search = el("input", { type: "search", id: "search", value: state.q, "aria-label": "Search workflows", placeholder: "search names, steps, messages" });
  search.addEventListener("change", () => { state.q = search.value; state.page = 1; render(); });
  const chips = el("div", { class: "chips", role: "group", "aria-label": "Filter by phase" },
    PHASES.filter(p => data.counts[p]).map(p => el("button", {
      type: "button", "aria-pressed": state.phases.has(p) ? "true" : "false", "data-phase": p,
      onclick: () => { state.phases.has(p) ? state.phases.delete(p) : state.phases.add(p); state.page = 1; render(); },
    }, p + " " + data.counts[p])));
  const rows = data.items.map(w => el("tr", { "data-workflow": w.name },
    el("td", {}, link(w.namespace, w.name)),
    el("td", { class: "phase-cell" }, phase(w.phase)),
    el("td", {}, w.progress || ""),
    el("td", { class: "wide" }, w.currentStep || ""),
    el("td", { class: "wide" }, w.nextWakeAt ? countdown(w.nextWakeAt) : ""),
    el("td", {}, w.created ? age(w.created) : "")));
  const pager = el("div", { class: "pager" },
    el("button", { type: "button", disabled: data.page <= 1, onclick: () => { state.page -= 1; render(); } }, "Previous"),
    el("span", { id: "page" }, `page ${data.page} of ${data.pages} · ${data.total} workflows`),
    el("button", { type: "button", disabled: data.page >= data.pages, onclick: () => { state.page += 1; render(); } }, "Next"));
  fill(main, el("h1", {}, "Workflows in " + state.ns), search, chips,
    el("table", { id: "workflows" },
      el("thead", {}, el("tr", {}, ["Name", "Phase", "Progress"].map(h => el("th", { scope: "col" }, h)),
        el("th", { scope: "col", class: "wide" }, "Step"), el("th", { scope: "col", class: "wide" }, "Wakes in"), el("th", { scope: "col" }, "Age"))),
      el("tbody", {}, rows)), pager);
}

async function pageWaiting(main) {
  const data = await api("/api/waiting?" + nsq());
  document.getElementById("waiting-count").textContent = data.items.length || "";
  const items = data.items.map(g => el("li", { class: "gate", "data-gate": g.workflow + "/" + g.step },
    el("div", {}, link(g.namespace, g.workflow), " · step ", el("strong", {}, g.step)),
    g.message ? el("p", {}, g.message) : null,
    g.deadline ? el("p", {}, "Decide within ", countdown(g.deadline)) : el("p", {}, "No deadline"),
    g.required ? el("p", {}, `${(g.votes || []).length} of ${g.required} approvals`) : null,
    el("a", { href: "#/wf/" + encodeURIComponent(g.namespace) + "/" + encodeURIComponent(g.workflow), class: "open" }, "Open to decide")));
  fill(main, el("h1", {}, "Waiting for me"),
    items.length ? el("ul", { id: "waiting" }, items) : el("p", { id: "waiting-empty" }, "Nothing waits for you in " + state.ns + "."));
}

function gateForm(ns, name, step) {
  const id = step.name;
  const gate = step.gate || {};
  const reason = el("input", { id: "reason-" + id, name: "reason", autocomplete: "off" });
  const fields = [el("label", { for: "reason-" + id }, "Reason"), reason];
  let choice = null, data = null;
  if (gate.options && gate.options.length) {
    choice = el("select", { id: "choice-" + id }, gate.options.map(o => el("option", { value: o }, o)));
    fields.push(el("label", { for: "choice-" + id }, "Option"), choice);
  }
  const props = (gate.schema && gate.schema.properties) || null;
  const inputs = {};
  if (props) {
    for (const [key, prop] of Object.entries(props)) {
      const input = el("input", { id: `data-${id}-${key}`, name: key, type: prop.type === "integer" || prop.type === "number" ? "number" : "text" });
      inputs[key] = [input, prop];
      fields.push(el("label", { for: input.id }, key + (prop.description ? " — " + prop.description : "")), input);
    }
  } else if (gate.schema) {
    data = el("textarea", { id: "data-" + id, rows: 3 });
    fields.push(el("label", { for: data.id }, "Data (JSON)"), data);
  }
  const collect = () => {
    const body = { step: id, reason: reason.value };
    if (choice) body.choice = choice.value;
    if (props) {
      body.data = {};
      for (const [key, [input, prop]] of Object.entries(inputs)) {
        if (input.value === "") continue;
        body.data[key] = prop.type === "integer" ? parseInt(input.value, 10) : prop.type === "number" ? Number(input.value) : input.value;
      }
    } else if (data && data.value.trim()) {
      body.data = JSON.parse(data.value);
    }
    return body;
  };
  const decide = async (verb) => {
    if (!confirm(`${verb} step ${id} of ${name}?`)) return;
    try {
      await api(`/api/workflows/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/${verb}`, collect());
      flash(`${verb} of ${id} sent`, true);
    } catch (e) { flash(e.message); }
    render();
  };
  const allowed = step.mayDecide !== false && state.me && state.me.canPatch;
  const why = step.whyNot || (state.me && !state.me.canPatch ? "you may not change workflows here" : "");
  return el("form", { class: "gate", id: "gate-" + id, onsubmit: (e) => e.preventDefault() },
    el("h3", {}, "Approval: " + id),
    step.approval && step.approval.message ? el("p", {}, step.approval.message) : null,
    step.deadline ? el("p", {}, "Decide within ", countdown(step.deadline)) : null,
    why ? el("p", { class: "why", id: "why-" + id }, why) : null,
    ...fields,
    el("p", {},
      el("button", { type: "button", class: "primary approve", disabled: !allowed, title: why || null, onclick: () => decide("approve") }, "Approve"), " ",
      el("button", { type: "button", class: "danger reject", disabled: !allowed, title: why || null, onclick: () => decide("reject") }, "Reject")));
}

function drawGraph(g) {
  const W = 150, H = 40, GX = 60, GY = 24;
  const cols = Math.max(1, ...g.nodes.map(n => n.column + 1));
  const rows = Math.max(1, ...g.nodes.map(n => n.row + 1));
  const svg = el("svg", { id: "graph", role: "img", "aria-label": "Steps of the workflow", width: cols * (W + GX) + 20, height: rows * (H + GY) + 20, viewBox: `0 0 ${cols * (W + GX) + 20} ${rows * (H + GY) + 20}` });
  const pos = {};
  for (const n of g.nodes) pos[n.name] = { x: 10 + n.column * (W + GX), y: 10 + n.row * (H + GY) };
  for (const e of g.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    let d;
    if (e.type === "goto") {
      const top = Math.min(a.y, b.y) - GY / 2 + 4;
      d = `M${a.x + W / 2},${a.y} C${a.x + W / 2},${top} ${b.x + W / 2},${top} ${b.x + W / 2},${b.y}`;
    } else {
      d = `M${a.x + W},${a.y + H / 2} C${a.x + W + GX / 2},${a.y + H / 2} ${b.x - GX / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}`;
    }
    svg.append(el("path", { class: "edge " + e.type, d, "data-from": e.from, "data-to": e.to }));
  }
  for (const n of g.nodes) {
    const p = pos[n.name];
    svg.append(el("g", { class: `node phase-${n.phase}`, "data-step": n.name, "data-column": n.column, transform: `translate(${p.x},${p.y})` },
      el("title", {}, `${n.name}: ${n.phase} (${n.kind})${n.part === "finally" ? ", finally" : ""}`),
      el("rect", { width: W, height: H }),
      el("text", { x: 8, y: 16 }, n.name.length > 20 ? n.name.slice(0, 19) + "…" : n.name),
      el("text", { x: 8, y: 32 }, n.phase)));
  }
  return svg;
}

function show(value) {
  return el("pre", {}, typeof value === "string" ? value : JSON.stringify(value, null, 2));
}

function callbackForm(ns, name, step) {
  const id = step.name;
  const data = el("textarea", { id: "callback-data-" + id, rows: 3 });
  const send = async (outcome) => {
    if (!confirm(`${outcome ? "Report failure of" : "Call back"} step ${id} of ${name}?`)) return;
    const body = { step: id };
    try {
      if (data.value.trim()) body.data = JSON.parse(data.value);
      if (outcome) body.outcome = outcome;
      await api(`/api/workflows/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/signal`, body);
      flash(`callback of ${id} sent`, true);
    } catch (e) { flash(e.message); }
    render();
  };
  const allowed = state.me && state.me.canPatch;
  return el("form", { class: "gate", id: "callback-" + id, onsubmit: (e) => e.preventDefault() },
    el("h3", {}, "Callback: " + id),
    step.deadline ? el("p", {}, "Times out in ", countdown(step.deadline)) : null,
    el("label", { for: data.id }, "Payload (JSON, the step's output)"), data,
    el("p", {},
      el("button", { type: "button", class: "primary", disabled: !allowed, onclick: () => send(null) }, "Call back"), " ",
      el("button", { type: "button", class: "danger", disabled: !allowed, onclick: () => send("failed") }, "Report failure")));
}

async function pageWorkflow(main, ns, name) {
  const d = await api(`/api/workflows/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`);
  const s = d.summary;
  const act = async (verb) => {
    if (!confirm(`${verb} ${name}?`)) return;
    try { await api(`/api/workflows/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/${verb}`, {}); flash(`${verb} sent`, true); }
    catch (e) { flash(e.message); }
    render();
  };
  const can = state.me && state.me.canPatch && !d.finished;
  const controls = el("p", { class: "controls" },
    el("button", { type: "button", id: "cancel", disabled: !can, onclick: () => act("cancel") }, "Cancel"), " ",
    d.suspended
      ? el("button", { type: "button", id: "resume", disabled: !can, onclick: () => act("resume") }, "Resume")
      : el("button", { type: "button", id: "suspend", disabled: !can, onclick: () => act("suspend") }, "Suspend"));
  const gates = [
    ...d.steps.filter(st => st.phase === "WaitingForApproval").map(st => gateForm(ns, name, st)),
    ...d.steps.filter(st => st.phase === "WaitingForCallback").map(st => callbackForm(ns, name, st)),
  ];
  const rows = d.steps.map(st => el("tr", { "data-step": st.name },
    el("th", { scope: "row" }, st.name),
    el("td", { class: "step-phase" }, phase(st.phase)),
    el("td", {}, String(st.attempts)),
    el("td", {}, st.deadline ? countdown(st.deadline) : ""),
    el("td", { class: "detail" },
      st.approval && st.approval.decidedBy ? el("div", { class: "decided" }, `${(st.approval.decision || "").toLowerCase()} · decidedBy: ${st.approval.decidedBy}` + (st.approval.reason ? ` · reason: ${st.approval.reason}` : "")) : null,
      st.message ? el("div", {}, st.message) : null,
      st.error ? el("div", { class: "error" }, `${st.error.errorClass}: ${st.error.message}`) : null,
      st.output !== undefined && st.output !== null ? el("details", {}, el("summary", {}, "output"), show(st.output)) : null)));
  fill(main, 
    el("h1", {}, name, " ", phase(s.phase)),
    el("p", { id: "message" }, s.message || ""),
    d.main ? el("p", {}, `Main steps ended ${d.main.phase} (${d.main.reason}); finally steps run`) : null,
    controls,
    ...gates,
    el("h2", {}, "Steps"),
    drawGraph(d.graph),
    el("table", { id: "steps" }, el("thead", {}, el("tr", {}, ["Step", "Phase", "Attempts", "Wakes in", "Detail"].map(h => el("th", { scope: "col" }, h)))), el("tbody", {}, rows)),
    el("h2", {}, "History"),
    el("table", { id: "history" }, el("tbody", {}, d.history.slice().reverse().map(h => el("tr", {},
      el("td", {}, h.time), el("td", {}, h.step || "workflow"), el("td", {}, phase(h.phase)), el("td", {}, h.reason || ""), el("td", {}, h.message || ""))))),
    el("h2", {}, "Events"),
    d.events === null ? el("p", {}, "You may not read Events here.") :
      el("table", { id: "events" }, el("tbody", {}, (d.events || []).map(e => el("tr", {},
        el("td", {}, e.type || ""), el("td", {}, e.reason || ""), el("td", {}, e.message || ""), el("td", {}, e.time || ""))))));
}

async function pageTemplates(main) {
  const data = await api("/api/templates?" + nsq());
  const items = data.items.map(t => {
    const props = (t.inputs && t.inputs.properties) || {};
    const required = new Set((t.inputs && t.inputs.required) || []);
    const inputs = {};
    const fields = Object.entries(props).map(([key, prop]) => {
      const id = `input-${t.name}-${key}`;
      const input = prop.enum
        ? el("select", { id }, prop.enum.map(v => el("option", { value: JSON.stringify(v), selected: v === prop.default }, String(v))))
        : el("input", { id, type: prop.type === "integer" || prop.type === "number" ? "number" : "text", value: prop.default ?? "", required: required.has(key) });
      inputs[key] = [input, prop];
      return [el("label", { for: id }, key + (required.has(key) ? " *" : "") + (prop.description ? " — " + prop.description : "")), input];
    });
    const submit = async () => {
      const body = {};
      for (const [key, [input, prop]] of Object.entries(inputs)) {
        if (input.value === "") continue;
        body[key] = input.tagName === "SELECT" ? JSON.parse(input.value)
          : prop.type === "integer" ? parseInt(input.value, 10) : prop.type === "number" ? Number(input.value)
          : prop.type === "boolean" ? input.value === "true" : input.value;
      }
      try {
        const made = await api(`/api/templates/${encodeURIComponent(state.ns)}/${encodeURIComponent(t.name)}/submit`, { inputs: body });
        location.hash = "#/wf/" + encodeURIComponent(state.ns) + "/" + encodeURIComponent(made.name);
      } catch (e) { flash(e.message); }
    };
    return el("form", { class: "inputs gate", "data-template": t.name, onsubmit: (e) => { e.preventDefault(); submit(); } },
      el("h2", {}, t.name), ...fields.flat(), el("p", {}, el("button", { type: "submit", class: "primary" }, "Run")));
  });
  fill(main, el("h1", {}, "Templates in " + state.ns), ...(items.length ? items : [el("p", {}, "No templates.")]));
}

async function pageCrons(main) {
  const data = await api("/api/crons?" + nsq());
  const rows = data.items.map(c => el("tr", { "data-cron": c.name },
    el("td", {}, c.name), el("td", {}, c.schedule), el("td", {}, c.suspend ? "suspended" : ""),
    el("td", {}, c.status.lastScheduleTime || ""), el("td", {}, c.status.nextScheduleTime ? countdown(c.status.nextScheduleTime) : ""),
    el("td", {}, el("button", { type: "button", onclick: async () => {
      if (!confirm(`Run ${c.name} now?`)) return;
      try { const made = await api(`/api/crons/${encodeURIComponent(state.ns)}/${encodeURIComponent(c.name)}/trigger`, {}); location.hash = "#/wf/" + encodeURIComponent(state.ns) + "/" + encodeURIComponent(made.name); }
      catch (e) { flash(e.message); }
    } }, "Run now"))));
  fill(main, el("h1", {}, "Schedules in " + state.ns),
    el("table", {}, el("thead", {}, el("tr", {}, ["Name", "Schedule", "", "Last", "Next in", ""].map(h => el("th", { scope: "col" }, h)))), el("tbody", {}, rows)));
}

// -- the router, live updates ------------------------------------------------------------

let rendering = null;
async function render() {
  const main = document.getElementById("main");
  const parts = (location.hash || "#/workflows").slice(2).split("/").map(decodeURIComponent);
  for (const a of document.querySelectorAll("header nav a")) a.removeAttribute("aria-current");
  const nav = document.getElementById("nav-" + (parts[0] === "wf" ? "workflows" : parts[0]));
  if (nav) nav.setAttribute("aria-current", "page");
  // What the user is typing survives a live update: values and focus are put back.
  const typed = {};
  for (const f of main.querySelectorAll("input[id], textarea[id], select[id]")) typed[f.id] = f.value;
  const focused = document.activeElement && main.contains(document.activeElement) ? document.activeElement.id : null;
  const run = (async () => {
    try {
      if (parts[0] === "wf" && parts.length >= 3) await pageWorkflow(main, parts[1], parts[2]);
      else if (parts[0] === "waiting") await pageWaiting(main);
      else if (parts[0] === "templates") await pageTemplates(main);
      else if (parts[0] === "crons") await pageCrons(main);
      else await pageWorkflows(main);
      for (const [id, value] of Object.entries(typed)) {
        const f = document.getElementById(id);
        if (f && main.contains(f) && f.type !== "search") f.value = value;
      }
      if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
      document.body.dataset.rendered = String(Date.now());
    } catch (e) { flash(e.message); }
  })();
  rendering = run;
  await run;
}

let pending = null;
function changed(event) {
  const route = (location.hash || "#/workflows").slice(2).split("/").map(decodeURIComponent);
  if (route[0] === "templates" || route[0] === "crons") return;  // no workflow shown
  if (route[0] === "wf") {
    let change = {};
    try { change = JSON.parse(event.data); } catch (_) { /* a resync */ }
    if (change.name && change.name !== route[2]) return;  // another workflow
  }
  if (pending) return;
  pending = setTimeout(() => { pending = null; render(); }, 150);
}

function connect() {
  if (state.source) state.source.close();
  state.source = new EventSource("/api/stream?" + nsq());
  state.source.addEventListener("change", changed);
}

async function start() {
  const params = new URLSearchParams(location.search);
  state.me = await api("/api/me" + (params.get("ns") ? "?ns=" + encodeURIComponent(params.get("ns")) : ""));
  state.ns = state.me.namespace;
  document.getElementById("whoami").textContent = "signed in as " + state.me.user;
  const ns = document.getElementById("namespace");
  ns.value = state.ns;
  ns.addEventListener("change", async () => {
    state.ns = ns.value.trim(); state.page = 1;
    state.me = await api("/api/me?" + nsq());
    connect(); render();
  });
  if (state.me.mode === "cluster") {
    document.getElementById("logout").hidden = false;
    document.getElementById("logout-csrf").value = csrf();
  }
  window.addEventListener("hashchange", render);
  setInterval(tickCountdowns, 1000);
  connect();
  await render();
  api("/api/waiting?" + nsq()).then(d => { document.getElementById("waiting-count").textContent = d.items.length || ""; }).catch(() => {});
}

document.addEventListener("DOMContentLoaded", () => { start().catch(e => flash(e.message)); });
