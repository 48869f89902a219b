// The vers web UI: the VM tree kept from GET /v1/events, a VM's details
// and actions, and terminals over the exec WebSocket. It talks only to its
// own origin; every change carries the session's CSRF token.
"use strict";

const csrf = document.querySelector('meta[name="vers-csrf"]').content;
const $ = (id) => document.getElementById(id);

const state = {
  vms: new Map(),   // id -> VM
  heads: new Map(), // project dir -> VM id
  commits: new Map(), // id -> commit (GET /v1/commits)
  selected: "", // a VM id, or "commit:" and a commit id
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
      // The first tree is drawn with its HEAD marks and commits, not
      // before them: nothing moves under the pointer once it shows.
      state.vms = new Map((e.vms || []).map((v) => [v.id, v]));
      Promise.all([loadHeads(), loadCommits()]).finally(scheduleRender);
      return;
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
    case "commit.created": case "tag.set": case "tag.removed":
      loadCommits().then(scheduleRender);
      return;
    case "commit.removed":
      state.commits.delete(e.commit);
      break;
    default:
      return;
  }
  scheduleRender();
  if (state.selected && (e.vm_id === state.selected || (e.vm && e.vm.id === state.selected))) {
    scheduleDetails();
  }
}

// loadCommits lists the commits; the caller draws the tree. Commits are
// listed again at each change: an event names a commit, and
// the page shows its tags and sizes too.
// A change while a list is in flight lists them once more after it.
let commitsLoading = null;
let commitsAgain = false;
function loadCommits() {
  if (commitsLoading) {
    commitsAgain = true;
    return commitsLoading;
  }
  commitsLoading = (async () => {
    do {
      commitsAgain = false;
      try {
        const list = await call("GET", "/v1/commits");
        state.commits = new Map((list || []).filter((c) => c.kind === "commit").map((c) => [c.id, c]));
      } catch (e) {
        say("commits: " + e.message, true);
      }
    } while (commitsAgain);
    if (state.selected.startsWith("commit:")) scheduleDetails();
  })().finally(() => { commitsLoading = null; });
  return commitsLoading;
}

async function loadHeads() {
  try {
    const heads = await call("GET", "/v1/heads");
    state.heads = new Map((heads || []).filter((h) => h.vm_id).map((h) => [h.dir, h.vm_id]));
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
  const commitsOf = new Map(); // VM id -> its commits, oldest first
  const orphans = []; // commits of VMs that are gone
  const byTime = [...state.commits.values()].sort((a, b) => (a.created_at < b.created_at ? -1 : 1));
  for (const c of byTime) {
    if (c.source_vm && state.vms.has(c.source_vm)) {
      if (!commitsOf.has(c.source_vm)) commitsOf.set(c.source_vm, []);
      commitsOf.get(c.source_vm).push(c);
    } else {
      orphans.push(c);
    }
  }
  const commitNode = (c) => {
    const row = el("div", { className: "node commitnode" + ("commit:" + c.id === state.selected ? " selected" : ""), tabIndex: 0 },
      el("span", { className: "glyph" }, "◆"),
      el("span", { className: "name" }, (c.tags || []).length ? c.tags.join(", ") : c.id.slice(0, 12)),
      el("span", { className: "id" }, c.id.slice(0, 12)),
      el("span", { className: "state" }, "commit"),
      el("span", { className: "age" }, age(c.created_at)));
    row.dataset.commit = c.id;
    row.title = "commit " + c.id + (c.source_alias || c.source_vm ? " of " + (c.source_alias || c.source_vm) : "");
    return el("li", {}, row);
  };
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
    const ks = kids.get(v.id) || [];
    const cs = commitsOf.get(v.id) || [];
    if (ks.length || cs.length) {
      const ul = document.createElement("ul");
      ul.append(...cs.map(commitNode), ...ks.map(node));
      li.append(ul);
    }
    return li;
  };
  $("tree").replaceChildren(...roots.map(node), ...orphans.map(commitNode));
  $("empty").hidden = state.vms.size > 0;
  $("count").textContent = state.vms.size + " VM" + (state.vms.size === 1 ? "" : "s");
  const dirs = [...state.heads.keys()].sort();
  $("heads").replaceChildren(...dirs.map((d) => {
    const p = document.createElement("div");
    const v = state.vms.get(state.heads.get(d));
    p.className = "headline";
    p.textContent = "HEAD of " + dirLabel(d) + " → " + (v ? name(v) : state.heads.get(d).slice(0, 12));
    p.title = d;
    return p;
  }));
  const sel = state.selected;
  if (sel && (sel.startsWith("commit:") ? !state.commits.has(sel.slice(7)) : !state.vms.has(sel))) select("");
  if (!drawnOnce) {
    drawnOnce = true;
    performance.mark("vers-tree"); // the first tree: how long the page took to show it
  }
}

$("tree").addEventListener("click", (ev) => {
  const row = ev.target.closest(".node");
  if (row) select(row.dataset.commit ? "commit:" + row.dataset.commit : row.dataset.id);
});
$("tree").addEventListener("dblclick", (ev) => {
  const row = ev.target.closest(".node");
  if (row && row.dataset.id) openTerminal(row.dataset.id);
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

// dirLabel names a project directory by the shortest end of its path that
// no other known directory shares (its whole path is in the title).
function dirLabel(d) {
  const others = [...state.heads.keys()].filter((o) => o !== d);
  const parts = d.split("/").filter(Boolean);
  for (let n = 1; n <= parts.length; n++) {
    const tail = parts.slice(-n).join("/");
    if (!others.some((o) => o === tail || o.endsWith("/" + tail))) return tail;
  }
  return d;
}

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  Object.assign(e, attrs || {});
  e.append(...kids);
  return e;
}

async function renderDetails() {
  const pane = $("details");
  const id = state.selected;
  if (id.startsWith("commit:")) {
    renderCommit(pane, id.slice(7));
    return;
  }
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
  const dirs = [...state.heads].filter(([, vm]) => vm === id).map(([d]) => d);
  if (dirs.length) rows.push(["HEAD of", dirs.map(dirLabel).join(", ")]);
  if (info) {
    rows.push(["Children", String((info.children || []).length)]);
    rows.push(["Accelerator", info.accelerator || "-"]);
    rows.push(["Memory", info.memory.pss_bytes ? mib(info.memory.pss_bytes) + " PSS" : "- (no process)"]);
    rows.push(["Disk", mib(info.disk.overlay_bytes) + " own layer, chain of " + info.disk.chain_length]);
    if (info.last_pause) rows.push(["Last pause", info.last_pause.pause_ms.toFixed(1) + " ms (" + info.last_pause.op + ")"]);
  }
  // versd keeps the last branch's figures; this page's own answer stands
  // in for a versd that has none.
  let b = info && info.last_branch;
  if (!b && state.lastBranch && state.lastBranch.parent.id === id) {
    const r = state.lastBranch;
    b = { children: r.children.map((k) => k.id), pause_ms: r.pause_ms, first_ready_ms: r.first_ready_ms, all_ready_ms: r.all_ready_ms };
  }
  if (b) {
    const n = b.children.length;
    rows.push(["Last branch", `${n} ${n === 1 ? "child" : "children"}, paused ${b.pause_ms.toFixed(1)} ms; first child ready ${b.first_ready_ms} ms, all ${b.all_ready_ms} ms`]);
  }
  const dl = el("dl", { id: "info" });
  for (const [k, val] of rows) dl.append(el("dt", {}, k), el("dd", {}, val));

  // The form is made once per VM and then updated in place: what was typed
  // or chosen stays, and so do the elements a click is on its way to.
  if (pane.dataset.vm !== id || !$("vm-actions")) buildForm(pane, id);
  $("vm-name").textContent = name(v);
  const known = [...state.heads.keys()].sort();
  setOptions($("checkout-dir"), known.map((d) => ({ value: d, title: d, label: dirLabel(d) + (state.heads.get(d) === id ? " (HEAD here)" : "") })));
  $("checkout-group").hidden = !known.length;
  $("checkout-none").hidden = !!known.length;
  const others = [...state.vms.values()].filter((o) => o.id !== id).sort((a, b2) => (name(a) < name(b2) ? -1 : 1));
  setOptions($("diff-other"), others.map((o) => ({ value: o.id, title: o.id, label: name(o) })));
  $("diff-group").hidden = !others.length;
  const paused = v.state === "paused";
  const pr = $("act-pause") || $("act-resume");
  pr.id = paused ? "act-resume" : "act-pause";
  pr.textContent = paused ? "Resume" : "Pause";
  pr.onclick = paused
    ? () => act("resume " + name(v), () => call("POST", vmPath(id) + "/resume"))
    : () => act("pause " + name(v), () => call("POST", vmPath(id) + "/pause"));
  $("info").replaceWith(dl);
}

// buildForm lays out a VM's details pane: its name, its actions, the
// comparisons and a place for its info. renderDetails fills what changes.
function buildForm(pane, id) {
  const alias = el("input", { id: "branch-alias", placeholder: "alias (optional)", size: 14 });
  const count = el("input", { id: "branch-count", type: "number", min: 1, max: 64, size: 3, value: 1 });
  const tag = el("input", { id: "commit-tag", placeholder: "tag (optional)", size: 14 });
  const button = (label, bid, fn, title) => el("button", { id: bid, onclick: fn, title: title || "" }, label);

  // Checkout names the project directory whose HEAD it moves: one of those
  // versd knows (GET /v1/heads).
  const dirSel = el("select", { id: "checkout-dir", title: "the project directory whose HEAD moves" });
  const checkout = el("span", { id: "checkout-group", className: "group" }, dirSel,
    button("Checkout", "act-checkout", () => checkoutIn(dirSel.value, id), "move the chosen directory's HEAD to this VM"));
  const noDirs = el("span", { id: "checkout-none", className: "hint" }, "no project directory known: `vers checkout` in one");

  const otherSel = el("select", { id: "diff-other", title: "the VM to compare with" });
  const content = el("input", { id: "diff-content", type: "checkbox" });
  const diff = el("span", { id: "diff-group", className: "group" }, otherSel,
    el("label", { title: "a text diff of each changed file" }, content, "content"),
    button("Diff", "act-diff", () => diffVMs(id, otherSel.value, content.checked), "what differs between the two filesystems"));
  const cmd = el("input", { id: "fan-cmd", placeholder: "command for this VM and all below it", size: 30 });
  cmd.onkeydown = (ev) => { if (ev.key === "Enter") fanOut(id, cmd.value); };

  const actions = el("div", { id: "vm-actions", className: "actions" },
    button("Terminal", "act-terminal", () => openTerminal(id)),
    el("span", { className: "group" }, alias, count, button("Branch", "act-branch", () => branch(id, alias.value, +count.value || 1))),
    el("span", { className: "group" }, tag, button("Commit", "act-commit", () => commit(id, tag.value))),
    button("Pause", "act-pause", null),
    button("Kill…", "act-kill", () => kill(id)),
  );
  const compare = el("div", { className: "actions" },
    checkout, noDirs, diff,
    el("span", { className: "group" }, cmd, button("Run in subtree", "act-fanout", () => fanOut(id, cmd.value), "run the command in this VM and every VM below it, at once")),
    button("Console log", "act-console", () => showConsole(id), "the end of what its kernel and init wrote to the serial port"),
  );
  // The actions first: always in sight.
  pane.replaceChildren(el("h2", { id: "vm-name" }), actions, compare, el("dl", { id: "info" }));
  pane.dataset.vm = id;
}

// setOptions makes a select's options those given, in place, keeping the
// choice while it is still offered; an unchanged list is left alone.
function setOptions(sel, opts) {
  const now = [...sel.options].map((o) => [o.value, o.title, o.textContent].join("\x00"));
  const want = opts.map((o) => [o.value, o.title, o.label].join("\x00"));
  if (now.join("\x01") === want.join("\x01")) return;
  const chosen = sel.value;
  sel.replaceChildren(...opts.map((o) => el("option", { value: o.value, title: o.title }, o.label)));
  if (opts.some((o) => o.value === chosen)) sel.value = chosen;
}

// renderCommit shows a commit, and starts a VM from it.
function renderCommit(pane, cid) {
  const c = state.commits.get(cid);
  if (!c) {
    pane.replaceChildren(el("p", { className: "hint" }, "The commit is gone."));
    delete pane.dataset.vm;
    return;
  }
  const src = state.vms.get(c.source_vm);
  const rows = [
    ["Commit", c.id], ["Tags", (c.tags || []).join(", ") || "-"], ["Message", c.message || "-"],
    ["Made of", src ? name(src) : (c.source_alias || c.source_vm || "-") + (src ? "" : " (gone)")],
    ["Created", new Date(c.created_at).toLocaleString() + " (" + age(c.created_at) + " ago)"],
    ["Machine", `${c.vcpu_count} vCPU, ${c.mem_size_mib} MiB RAM, ${c.fs_size_vm_mib} MiB disk`],
    ["Size", mib(c.logical_bytes) + " as a VM sees it, " + mib(c.added_bytes) + " added to the store"],
  ];
  const dl = el("dl", { id: "info" });
  for (const [k, val] of rows) dl.append(el("dt", {}, k), el("dd", {}, val));
  const keep = pane.dataset.vm === "commit:" + cid && $("run-alias") ? $("run-alias").value : "";
  const alias = el("input", { id: "run-alias", placeholder: "alias (optional)", size: 14, value: keep });
  const actions = el("div", { className: "actions" },
    el("span", { className: "group" }, alias,
      el("button", { id: "act-run-commit", onclick: () => runCommit(c, alias.value), title: "a new VM from the instant of the commit" }, "Run from commit")));
  pane.replaceChildren(el("h2", {}, "commit " + ((c.tags || [])[0] || c.id.slice(0, 12))), actions, dl);
  pane.dataset.vm = "commit:" + cid;
}

async function runCommit(c, alias) {
  const r = await act("run from commit " + c.id.slice(0, 12), () => call("POST", "/v1/commits/" + encodeURIComponent(c.id) + "/run", { alias: alias.trim() }));
  if (!r) return;
  say(`started ${r.vms.map(name).join(", ")} from commit ${c.id.slice(0, 12)}: ready in ${r.all_ready_ms} ms`);
  if (r.vms.length) select(r.vms[0].id);
}

async function checkoutIn(dir, id) {
  const v = state.vms.get(id);
  const h = await act("checkout " + name(v) + " in " + dir, () => call("POST", "/v1/heads/checkout", { dir, vm: id }));
  if (h) say(`HEAD of ${dirLabel(h.dir)} → ${name(v)}`);
}

// ---- results: a diff, a command across a subtree, a console log

function showResult(title, ...body) {
  const pane = $("results");
  const close = el("button", { className: "close", title: "close", onclick: () => { pane.hidden = true; } }, "×");
  pane.replaceChildren(el("div", { className: "result-head" }, el("h3", {}, title), close), ...body);
  pane.hidden = false;
}

const kindMark = { added: "A", removed: "D", changed: "M" };

function changeRow(c, expected) {
  const size = (e) => (e && e.type === "file" ? e.size + " B" : e ? e.type : "");
  const what = c.kind === "changed" ? (c.what || []).join(", ") + (c.a && c.b && c.a.size !== c.b.size ? ` (${size(c.a)} → ${size(c.b)})` : "")
    : size(c.kind === "added" ? c.b : c.a);
  const tr = el("tr", { className: c.kind + (expected ? " expected" : "") },
    el("td", { className: "kind" }, kindMark[c.kind] || c.kind), el("td", { className: "path" }, c.path), el("td", {}, what),
    el("td", { className: "note" }, c.note || ""));
  tr.dataset.kind = c.kind;
  tr.dataset.path = c.path;
  return tr;
}

async function diffVMs(a, b, content) {
  const [va, vb] = [state.vms.get(a), state.vms.get(b)];
  if (!va || !vb) return;
  const d = await act(`diff ${name(va)} ${name(vb)}`, () => call("POST", "/v1/diff", { a, b, content }));
  if (!d) return;
  const label = (r) => r.commit ? "commit " + r.commit.slice(0, 12) : r.alias || r.id.slice(0, 12);
  const st = d.stat;
  const table = el("table", { id: "diff-table", className: "result" },
    el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "path"), el("th", {}, "what differs"), el("th", {}, ""))),
    el("tbody", {}, ...d.changes.map((c) => changeRow(c, false)), ...(d.expected || []).map((c) => changeRow(c, true))));
  const body = [
    el("p", { id: "diff-stat" }, `${st.added} added, ${st.removed} removed, ${st.changed} changed (${d.method}, ${d.duration_ms} ms)`),
    d.changes.length || (d.expected || []).length ? table : el("p", { className: "hint" }, "No difference."),
  ];
  for (const f of d.content || []) {
    body.push(el("h4", {}, f.path + (f.binary ? " (binary)" : "") + (f.truncated ? " (only its start compared)" : "")));
    if (f.diff) body.push(el("pre", { className: "filediff" }, f.diff));
  }
  for (const e of d.errors || []) body.push(el("p", { className: "error" }, e));
  showResult(`${label(d.a)} → ${label(d.b)}`, ...body);
  say(`diff ${label(d.a)} ${label(d.b)}: ${st.added} added, ${st.removed} removed, ${st.changed} changed`);
}

// fanOut runs command in id and every VM below it, in versd (POST
// /v1/fanout), which groups the rows as vers compare does.
async function fanOut(id, command) {
  const v = state.vms.get(id);
  if (!v) return;
  if (!command.trim()) {
    say("give the command to run", true);
    return;
  }
  const r = await act(`run in ${name(v)} and below`, () => call("POST", "/v1/fanout", { command, tree: id }));
  if (!r) return;
  const label = (ref) => ref.alias || ref.id.slice(0, 12);
  const table = el("table", { id: "fan-table", className: "result" },
    el("thead", {}, el("tr", {}, el("th", {}, "VM"), el("th", {}, "exit"), el("th", {}, "time"), el("th", {}, "output"))));
  // One section per group, the largest first; each group's output once.
  const order = r.groups.map((g, i) => i).sort((x, y) => r.groups[y].vms.length - r.groups[x].vms.length);
  for (const gi of order) {
    const g = r.groups[gi];
    const rows = r.results.filter((row) => row.group === gi + 1);
    const first = rows[0];
    const out = first.error ? first.error.message : (first.stdout + (first.stderr ? (first.stdout ? "\n" : "") + first.stderr : "")).trimEnd();
    const tbody = el("tbody", { className: "fan-group" },
      el("tr", { className: "group-head" }, el("td", { colSpan: 4 },
        `${g.vms.length} VM${g.vms.length === 1 ? "" : "s"}: ${first.error ? first.error.code : "exit " + g.exit_code}${first.timed_out ? " (timed out)" : ""}`)));
    tbody.dataset.group = gi + 1;
    rows.forEach((row, k) => {
      const tr = el("tr", {}, el("td", {}, label(row.vm)), el("td", {}, String(row.exit_code)), el("td", {}, row.duration_ms + " ms"),
        k === 0 ? el("td", { rowSpan: rows.length, className: "out" }, el("pre", {}, out || "(no output)")) : "");
      tr.dataset.vm = row.vm.id;
      tbody.append(tr);
    });
    table.append(tbody);
  }
  const n = r.groups.length;
  showResult(`${command} — in ${name(v)} and below`,
    el("p", { id: "fan-stat" }, `${r.results.length} VMs, ${n} result${n === 1 ? "" : "s"}${n === 1 ? ": all agree" : ""}`), table);
  say(`ran in ${r.results.length} VMs: ${n} result${n === 1 ? "" : "s"}`);
}

async function showConsole(id) {
  const v = state.vms.get(id);
  if (!v) return;
  try {
    const res = await fetch(vmPath(id) + "/console?bytes=65536");
    const text = await res.text();
    if (!res.ok) throw new Error(JSON.parse(text).message || res.status);
    const pre = el("pre", { id: "console-log" }, text || "(the console log is empty)");
    showResult("console log of " + name(v) + " (its last 64 KiB)", pre);
    pre.scrollTop = pre.scrollHeight;
  } catch (e) {
    say("console log: " + e.message, true);
  }
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
