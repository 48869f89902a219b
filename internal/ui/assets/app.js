// The vers web UI: the VM tree kept from GET /v1/events, a VM's details
// and actions, and terminals over the exec WebSocket. It talks only to its
// own origin; every change carries the session's CSRF token.
"use strict";

const csrf = document.querySelector('meta[name="vers-csrf"]').content;
const $ = (id) => document.getElementById(id);

const state = {
  vms: new Map(),   // id -> VM
  heads: new Map(), // project dir -> VM id
  selected: "",
  lastBranch: null, // the answer of the last branch made here
};

// ---- API

async function call(method, path, body) {
  const opts = { method, headers: { "X-Vers-CSRF": csrf } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) {
    throw new Error((data && data.message) || `${method} ${path}: ${res.status}`);
  }
  return data;
}

const vmPath = (id) => "/v1/vms/" + encodeURIComponent(id);

function say(text, isError) {
  const m = $("msg");
  m.textContent = text;
  m.className = isError ? "error" : "";
}

async function act(what, fn) {
  say(what + "…");
  try {
    const r = await fn();
    say(what + ": done");
    return r;
  } catch (e) {
    say(what + ": " + e.message, true);
    return null;
  }
}

// ---- events

function wsURL(path) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

function connectEvents() {
  const ws = new WebSocket(wsURL("/v1/events"));
  ws.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn live"; };
  ws.onmessage = (m) => applyEvent(JSON.parse(m.data));
  ws.onclose = () => {
    $("conn").textContent = "reconnecting…";
    $("conn").className = "conn";
    setTimeout(connectEvents, 1000);
  };
}

function applyEvent(e) {
  switch (e.type) {
    case "hello":
      state.vms = new Map((e.vms || []).map((v) => [v.id, v]));
      loadHeads();
      break;
    case "vm.created": case "vm.state": case "vm.branched":
      if (e.vm) state.vms.set(e.vm.id, e.vm);
      for (const k of e.children || []) state.vms.set(k.id, k);
      break;
    case "vm.killed":
      state.vms.delete(e.vm_id);
      for (const [dir, id] of state.heads) if (id === e.vm_id) state.heads.delete(dir);
      break;
    case "head.moved":
      if (e.vm_id) state.heads.set(e.dir, e.vm_id); else state.heads.delete(e.dir);
      break;
    default:
      return;
  }
  scheduleRender();
  if (state.selected && (e.vm_id === state.selected || (e.vm && e.vm.id === state.selected))) {
    scheduleDetails();
  }
}

async function loadHeads() {
  try {
    const heads = await call("GET", "/v1/heads");
    state.heads = new Map((heads || []).filter((h) => h.vm_id).map((h) => [h.dir, h.vm_id]));
    scheduleRender();
  } catch (e) {
    say("heads: " + e.message, true);
  }
}

// ---- the tree

let renderQueued = false;
function scheduleRender() {
  if (!renderQueued) {
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; renderTree(); });
  }
}

const name = (v) => v.alias || v.id.slice(0, 12);

function age(t) {
  const s = Math.max(0, Math.round((Date.now() - new Date(t).getTime()) / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m";
  if (s < 86400) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

function childrenOf() {
  const kids = new Map();
  const roots = [];
  const byAge = [...state.vms.values()].sort((a, b) => (a.created_at < b.created_at ? -1 : 1));
  for (const v of byAge) {
    if (v.parent_id && state.vms.has(v.parent_id)) {
      if (!kids.has(v.parent_id)) kids.set(v.parent_id, []);
      kids.get(v.parent_id).push(v);
    } else {
      roots.push(v);
    }
  }
  return { kids, roots };
}

// subtree is v and every VM below it, v first.
function subtree(id) {
  const { kids } = childrenOf();
  const out = [];
  const walk = (v) => { out.push(v); for (const k of kids.get(v.id) || []) walk(k); };
  if (state.vms.has(id)) walk(state.vms.get(id));
  return out;
}

let drawnOnce = false;
function renderTree() {
  const { kids, roots } = childrenOf();
  const headsOf = new Map();
  for (const [dir, id] of state.heads) {
    if (!headsOf.has(id)) headsOf.set(id, []);
    headsOf.get(id).push(dir);
  }
  const node = (v) => {
    const li = document.createElement("li");
    const row = document.createElement("div");
    row.className = "node" + (v.id === state.selected ? " selected" : "");
    row.dataset.id = v.id;
    row.dataset.alias = v.alias || "";
    row.tabIndex = 0;
    const dot = document.createElement("span");
    dot.className = "dot " + v.state;
    const n = document.createElement("span");
    n.className = "name";
    n.textContent = name(v);
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = v.id.slice(0, 12);
    const st = document.createElement("span");
    st.className = "state " + v.state;
    st.textContent = v.state;
    const ag = document.createElement("span");
    ag.className = "age";
    ag.textContent = age(v.created_at);
    row.append(dot, n, id, st, ag);
    if (v.origin_commit) {
      const c = document.createElement("span");
      c.className = "commit";
      c.textContent = "⎇ " + v.origin_commit.slice(0, 12);
      c.title = "started from commit " + v.origin_commit;
      row.append(c);
    }
    for (const dir of headsOf.get(v.id) || []) {
      const h = document.createElement("span");
      h.className = "head";
      h.textContent = "HEAD";
      h.title = "HEAD of " + dir;
      row.append(h);
    }
    li.append(row);
    const ks = kids.get(v.id);
    if (ks) {
      const ul = document.createElement("ul");
      ul.append(...ks.map(node));
      li.append(ul);
    }
    return li;
  };
  $("tree").replaceChildren(...roots.map(node));
  $("empty").hidden = state.vms.size > 0;
  $("count").textContent = state.vms.size + " VM" + (state.vms.size === 1 ? "" : "s");
  const dirs = [...state.heads.keys()].sort();
  $("heads").replaceChildren(...dirs.map((d) => {
    const p = document.createElement("div");
    const v = state.vms.get(state.heads.get(d));
    p.className = "headline";
    p.textContent = "HEAD of " + d + " → " + (v ? name(v) : state.heads.get(d).slice(0, 12));
    return p;
  }));
  if (state.selected && !state.vms.has(state.selected)) select("");
  if (!drawnOnce) {
    drawnOnce = true;
    performance.mark("vers-tree"); // the first tree: how long the page took to show it
  }
}

$("tree").addEventListener("click", (ev) => {
  const row = ev.target.closest(".node");
  if (row) select(row.dataset.id);
});
$("tree").addEventListener("dblclick", (ev) => {
  const row = ev.target.closest(".node");
  if (row) openTerminal(row.dataset.id);
});

function select(id) {
  state.selected = id;
  scheduleRender();
  scheduleDetails();
}

// ---- details and actions

let detailsQueued = false;
function scheduleDetails() {
  if (!detailsQueued) {
    detailsQueued = true;
    setTimeout(() => { detailsQueued = false; renderDetails(); }, 50);
  }
}

const mib = (b) => (b / (1 << 20)).toFixed(1) + " MiB";

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  Object.assign(e, attrs || {});
  e.append(...kids);
  return e;
}

async function renderDetails() {
  const pane = $("details");
  const id = state.selected;
  const v = state.vms.get(id);
  if (!v) {
    pane.replaceChildren(el("p", { className: "hint" }, "Select a VM; double-click opens a terminal."));
    delete pane.dataset.vm;
    return;
  }
  let info = null;
  try {
    info = await call("GET", vmPath(id) + "/info");
  } catch (e) {
    if (state.selected !== id) return;
  }
  if (state.selected !== id) return;
  const rows = [
    ["ID", v.id], ["Alias", v.alias || "-"],
    ["State", v.state + (v.state_reason ? " (" + v.state_reason + ")" : "")],
    ["Parent", v.parent_id ? name(state.vms.get(v.parent_id) || { id: v.parent_id }) : "-"],
    ["Created", new Date(v.created_at).toLocaleString() + " (" + age(v.created_at) + " ago)"],
    ["Machine", `${v.vcpu_count} vCPU, ${v.mem_size_mib} MiB RAM, ${v.fs_size_vm_mib} MiB disk`],
  ];
  if (v.origin_commit) rows.push(["Commit", v.origin_commit]);
  if (info) {
    rows.push(["Children", String((info.children || []).length)]);
    rows.push(["Accelerator", info.accelerator || "-"]);
    rows.push(["Memory", info.memory.pss_bytes ? mib(info.memory.pss_bytes) + " PSS" : "- (no process)"]);
    rows.push(["Disk", mib(info.disk.overlay_bytes) + " own layer, chain of " + info.disk.chain_length]);
    if (info.last_pause) rows.push(["Last pause", info.last_pause.pause_ms.toFixed(1) + " ms (" + info.last_pause.op + ")"]);
  }
  const b = state.lastBranch;
  if (b && b.parent.id === id) {
    rows.push(["Last branch", `paused ${b.pause_ms.toFixed(1)} ms; first child ready ${b.first_ready_ms} ms, all ${b.all_ready_ms} ms`]);
  }
  const dl = el("dl", { id: "info" });
  for (const [k, val] of rows) dl.append(el("dt", {}, k), el("dd", {}, val));

  // What was typed stays when the pane is drawn again for the same VM.
  const kept = (inputID, dflt) => (pane.dataset.vm === id && $(inputID) ? $(inputID).value : dflt);
  const alias = el("input", { id: "branch-alias", placeholder: "alias (optional)", size: 14, value: kept("branch-alias", "") });
  const count = el("input", { id: "branch-count", type: "number", min: 1, max: 64, size: 3, value: kept("branch-count", 1) });
  const tag = el("input", { id: "commit-tag", placeholder: "tag (optional)", size: 14, value: kept("commit-tag", "") });
  const button = (label, id, fn) => el("button", { id, onclick: fn }, label);
  const actions = el("div", { className: "actions" },
    button("Terminal", "act-terminal", () => openTerminal(id)),
    el("span", { className: "group" }, alias, count, button("Branch", "act-branch", () => branch(id, alias.value, +count.value || 1))),
    el("span", { className: "group" }, tag, button("Commit", "act-commit", () => commit(id, tag.value))),
    v.state === "paused"
      ? button("Resume", "act-resume", () => act("resume " + name(v), () => call("POST", vmPath(id) + "/resume")))
      : button("Pause", "act-pause", () => act("pause " + name(v), () => call("POST", vmPath(id) + "/pause"))),
    button("Kill…", "act-kill", () => kill(id)),
  );
  pane.replaceChildren(el("h2", {}, name(v)), actions, dl); // the actions first: always in sight
  pane.dataset.vm = id;
}

async function branch(id, alias, count) {
  const r = await act("branch " + name(state.vms.get(id)), () => call("POST", vmPath(id) + "/branch", { alias: alias.trim(), count }));
  if (!r) return;
  state.lastBranch = r;
  say(`branched ${name(r.parent)} into ${r.children.map(name).join(", ")}: paused ${r.pause_ms.toFixed(1)} ms, all ready in ${r.all_ready_ms} ms`);
  scheduleDetails();
}

async function commit(id, tag) {
  const r = await act("commit " + name(state.vms.get(id)), () => call("POST", vmPath(id) + "/commit", { tag: tag.trim() }));
  if (r) say(`committed ${r.commit.id.slice(0, 12)}${tag ? " (" + tag.trim() + ")" : ""}: paused ${r.pause_ms.toFixed(1)} ms`);
}

// kill asks first, naming every VM that goes.
function kill(id) {
  const goes = subtree(id);
  if (!goes.length) return;
  const dlg = $("confirm");
  $("confirm-text").textContent = goes.length === 1
    ? `Kill ${name(goes[0])}?`
    : `Kill ${name(goes[0])} and the ${goes.length - 1} VM(s) branched from it?`;
  $("confirm-list").replaceChildren(...goes.map((v) => el("li", {}, name(v) + " (" + v.id.slice(0, 12) + ")")));
  $("confirm-yes").onclick = async () => {
    dlg.close();
    await act("kill " + name(goes[0]), () => call("DELETE", vmPath(id) + (goes.length > 1 ? "?recursive=true" : "")));
  };
  $("confirm-no").onclick = () => dlg.close();
  dlg.showModal();
}

// ---- terminals

const terms = []; // {id, vm, term, fit, ws, tab, screen}
let termSeq = 0;

// xterm.js is loaded with the first terminal, so that the tree is shown
// without waiting for it.
let xtermLoaded = null;
function loadXterm() {
  const load = (src) => new Promise((ok, fail) => {
    document.head.append(el("script", { src, onload: ok, onerror: () => fail(new Error("cannot load " + src)) }));
  });
  xtermLoaded = xtermLoaded || load("vendor/xterm.js").then(() => load("vendor/addon-fit.js"));
  return xtermLoaded;
}

async function openTerminal(vmID) {
  const v = state.vms.get(vmID);
  if (!v) return;
  try {
    await loadXterm();
  } catch (e) {
    xtermLoaded = null;
    say(e.message, true);
    return;
  }
  $("no-terms").hidden = true;
  const t = { id: ++termSeq, vm: vmID };
  t.screen = el("div", { className: "screen" });
  t.screen.dataset.vm = vmID;
  $("screens").append(t.screen);
  const close = el("button", { className: "close", title: "close", onclick: (ev) => { ev.stopPropagation(); closeTerminal(t); } }, "×");
  t.tab = el("div", { className: "tab", role: "tab", onclick: () => showTerminal(t) }, name(v) + " ", close);
  t.tab.dataset.vm = vmID;
  $("tabs").append(t.tab);
  t.term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000, fontFamily: "monospace" });
  t.fit = new FitAddon.FitAddon();
  t.term.loadAddon(t.fit);
  t.term.open(t.screen);
  terms.push(t);
  showTerminal(t);

  const ws = new WebSocket(wsURL(vmPath(vmID) + "/exec"));
  ws.binaryType = "arraybuffer";
  t.ws = ws;
  const enc = new TextEncoder();
  ws.onopen = () => {
    ws.send(JSON.stringify({ tty: true, stdin: true, rows: t.term.rows, cols: t.term.cols, term: "xterm-256color" }));
  };
  ws.onmessage = (m) => {
    if (typeof m.data === "string") {
      const c = JSON.parse(m.data);
      if (c.type === "exit") t.term.write(`\r\n[exited ${c.signaled || c.exit_code}]\r\n`);
      if (c.type === "error") t.term.write("\r\n[" + (c.error ? c.error.message : "exec failed") + "]\r\n");
      return;
    }
    const b = new Uint8Array(m.data);
    if (b.length > 1) t.term.write(b.subarray(1));
  };
  ws.onclose = () => { t.tab.classList.add("ended"); };
  t.term.onData((d) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const bytes = enc.encode(d);
    const frame = new Uint8Array(bytes.length + 1);
    frame.set(bytes, 1); // frame[0] = 0: stdin
    ws.send(frame);
  });
  t.term.onResize(({ rows, cols }) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "resize", rows, cols }));
  });
}

function showTerminal(t) {
  for (const o of terms) {
    const on = o === t;
    o.screen.hidden = !on;
    o.tab.classList.toggle("active", on);
  }
  t.fit.fit();
  t.term.focus();
}

function closeTerminal(t) {
  if (t.ws) t.ws.close();
  t.term.dispose();
  t.screen.remove();
  t.tab.remove();
  terms.splice(terms.indexOf(t), 1);
  if (terms.length) showTerminal(terms[terms.length - 1]);
  else $("no-terms").hidden = false;
}

window.addEventListener("resize", () => {
  for (const t of terms) if (!t.screen.hidden) t.fit.fit();
});

// Ages move on even when nothing happens.
setInterval(scheduleRender, 10000);
connectEvents();
