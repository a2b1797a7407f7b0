// memproxy inspector: a small client of the JSON API. Every memory text is put on the
// page with textContent (never innerHTML): memory content is untrusted.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { key: "", user: "", items: [], after: null, hasMore: false, selected: null, scores: null };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function say(message, error) {
  const status = $("status");
  status.textContent = message || "";
  status.className = error ? "error" : "";
}

async function api(method, path, { params, body } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  const headers = { Accept: "application/json" };
  if (state.key) headers.Authorization = "Bearer " + state.key;
  if (state.user) headers["X-Memory-User"] = encodeURIComponent(state.user);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) {
    const err = (data && data.error) || {};
    throw new Error(`${response.status} ${err.code || err.type || ""}: ${err.message || text}`);
  }
  return data;
}

const userParam = () => (state.user ? { user: state.user } : {});
const userBody = () => (state.user ? { user: state.user } : {});

// ---------------------------------------------------------------- memories

async function loadMemories(more) {
  const page = await api("GET", "/v1/memories", {
    params: { ...userParam(), limit: 1000, after: more ? state.after : null, tier: $("tier").value || null },
  });
  state.items = more ? state.items.concat(page.data) : page.data;
  state.after = page.last_id;
  state.hasMore = page.has_more;
  state.scores = null;
  renderMemories();
}

function shown() {
  const text = $("text").value.trim().toLowerCase();
  const kind = $("kind").value, st = $("state").value, tier = $("tier").value;
  const since = $("since").value, until = $("until").value;
  return state.items.filter((m) => {
    if (text && !m.content.toLowerCase().includes(text)) return false;
    if (kind && m.kind !== kind) return false;
    if (st && m.state !== st) return false;
    if (tier && m.tier !== tier) return false;
    const day = (m.event_time || m.created_at || "").slice(0, 10);
    if (since && day < since) return false;
    if (until && day > until) return false;
    return true;
  });
}

function renderMemories() {
  const kinds = new Set(state.items.map((m) => m.kind));
  const kindSelect = $("kind"), chosen = kindSelect.value;
  kindSelect.replaceChildren(el("option", "any kind"));
  kindSelect.firstChild.value = "";
  for (const k of [...kinds].sort()) kindSelect.append(el("option", k));
  kindSelect.value = kinds.has(chosen) ? chosen : "";
  const rows = shown();
  const body = $("memories").tBodies[0];
  body.replaceChildren();
  for (const m of rows) {
    const tr = el("tr", undefined, "pick");
    tr.dataset.id = m.id;
    if (state.selected && state.selected.id === m.id) tr.classList.add("selected");
    tr.append(el("td", m.content), el("td", m.kind));
    const tier = el("td"); tier.append(el("span", m.tier, "tag " + m.tier)); tr.append(tier);
    tr.append(el("td", m.state), el("td", m.version), el("td", (m.created_at || "").slice(0, 16).replace("T", " ")));
    tr.append(el("td", state.scores && m.id in state.scores ? state.scores[m.id].toFixed(3) : ""));
    tr.addEventListener("click", () => showMemory(m.id).catch((e) => say(e.message, true)));
    body.append(tr);
  }
  $("count").textContent = `${rows.length} shown of ${state.items.length}${state.hasMore ? "+" : ""}`;
  $("more").hidden = !state.hasMore;
}

async function rankedSearch() {
  const query = $("text").value.trim();
  if (!query) { say("Type something to search for."); return; }
  const found = await api("POST", "/v1/memories/search", { body: { ...userBody(), query, limit: 50, token_budget: 100000 } });
  state.scores = Object.fromEntries(found.data.map((h) => [h.id, h.score]));
  const order = found.data.map((h) => h.id);
  const byId = new Map(state.items.map((m) => [m.id, m]));
  const hits = [];
  for (const id of order) hits.push(byId.get(id) || await api("GET", `/v1/memories/${encodeURIComponent(id)}`));
  state.items = hits;
  state.hasMore = false;
  $("text").value = "";
  renderMemories();
  $("count").textContent = `${hits.length} ranked for “${query}”`;
  say(`Ranked search: ${hits.length} match(es).`);
}

// ---------------------------------------------------------------- one memory

async function showMemory(id) {
  const m = await api("GET", `/v1/memories/${encodeURIComponent(id)}`);
  state.selected = m;
  $("detail-section").hidden = false;
  $("d-id").textContent = m.id;
  $("d-content").value = m.content;
  $("d-pin").textContent = m.tier === "core" ? "Unpin from core" : "Pin to core";
  $("d-version").textContent = m.version;
  const fields = $("d-fields");
  fields.replaceChildren();
  for (const [k, v] of [["user", m.user], ["kind", m.kind], ["tier", m.tier], ["state", m.state], ["version", m.version],
    ["event time", m.event_time], ["created", m.created_at], ["updated", m.updated_at], ["tokens", m.tokens]]) {
    fields.append(el("dt", k), el("dd", v === null || v === undefined ? "—" : v));
  }
  $("d-provenance").textContent = JSON.stringify(m.provenance, null, 2);
  $("d-metadata").textContent = JSON.stringify(m.metadata, null, 2);
  for (const tr of $("memories").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.id === id);
}

async function saveMemory() {
  const m = state.selected;
  const updated = await api("PATCH", `/v1/memories/${encodeURIComponent(m.id)}`, { body: { content: $("d-content").value } });
  await refreshAll(updated.id);
  say(`Saved: version ${updated.version}.`);
}

async function togglePin() {
  const m = state.selected;
  const tier = m.tier === "core" ? "recall" : "core";
  await api("PATCH", `/v1/memories/${encodeURIComponent(m.id)}`, { body: { tier } });
  await refreshAll(m.id);
  say(tier === "core" ? "Pinned to core." : "Unpinned from core.");
}

async function deleteMemory() {
  const m = state.selected;
  if (!window.confirm("Delete this memory?")) return;
  await api("DELETE", `/v1/memories/${encodeURIComponent(m.id)}`);
  state.selected = null;
  $("detail-section").hidden = true;
  await refreshAll(null);
  say("Deleted.");
}

// ---------------------------------------------------------------- core, scheduler

async function loadCore() {
  const page = await api("GET", "/v1/memories", { params: { ...userParam(), tier: "core", limit: 1 } });
  const core = page.core;
  $("core-meta").textContent = `version ${core.version} · ${core.injected_ids.length} memories · ${core.tokens}/${core.token_budget} tokens`;
  $("core-block").textContent = core.block || "(empty: nothing is pinned or promoted)";
  const body = $("decisions").tBodies[0];
  body.replaceChildren();
  for (const d of core.decisions.slice().reverse()) {
    const tr = el("tr");
    tr.append(el("td", (d.at || "").replace("T", " ").slice(0, 19)), el("td", d.action), el("td", d.memory_id), el("td", d.reason));
    body.append(tr);
  }
  if (!core.decisions.length) {
    const tr = el("tr"); const td = el("td", "no decisions yet"); td.colSpan = 4; tr.append(td); body.append(tr);
  }
}

// ---------------------------------------------------------------- try a prompt

async function explain() {
  const query = $("prompt").value.trim();
  if (!query) return;
  const x = await api("POST", "/v1/memories/explain", { body: { ...userBody(), query } });
  $("explain-summary").textContent =
    `${x.injected.length} recalled memories injected (${x.tokens} of ${x.token_budget} tokens), ` +
    `${x.core.ids.length} core memories (version ${x.core.version}) · time ${x.now}`;
  const body = $("candidates").tBodies[0];
  body.replaceChildren();
  x.candidates.forEach((c, i) => {
    const tr = el("tr", undefined, c.injected ? "" : "cut");
    const parts = Object.entries(c.parts || {}).filter(([, v]) => v).map(([k, v]) => `${k} ${Number(v).toFixed(3)}`).join(" · ");
    const inj = el("td"); inj.append(el("span", c.injected ? "yes" : "no", "tag " + (c.injected ? "yes" : "no")));
    tr.append(el("td", i + 1), el("td", c.content), el("td", Number(c.score).toFixed(3)), el("td", parts), inj, el("td", c.cut || ""));
    body.append(tr);
  });
  say(`Explained: ${x.candidates.length} candidate(s).`);
}

// ---------------------------------------------------------------- forget, counters

async function forgetUser() {
  const name = state.user;
  if (!name || $("forget-confirm").value !== name) return;
  const done = await api("DELETE", `/v1/users/${encodeURIComponent(name)}/memories`);
  $("forget-confirm").value = "";
  $("forget").disabled = true;
  await refreshAll(null);
  say(`Forgot ${name}: ${done.deleted} memories erased.`);
}

async function counters() {
  const box = $("counters");
  try {
    const headers = state.key ? { Authorization: "Bearer " + state.key } : {};
    const response = await fetch("/metrics", { headers });
    if (!response.ok) { box.textContent = response.status === 403 ? "counters need an admin key" : ""; return; }
    const text = await response.text();
    const sum = (name) => text.split("\n").filter((l) => l.startsWith(name + "{") || l.startsWith(name + " "))
      .reduce((t, l) => t + Number(l.trim().split(/\s+/).pop()), 0);
    box.textContent = `requests ${sum("memproxy_requests_total")} · recalls ${sum("memproxy_recall_seconds_count")}` +
      ` · degraded ${sum("memproxy_memory_degraded_total")} · injected tokens ${sum("memproxy_injected_tokens_total")}` +
      ` · journal ${sum("memproxy_journal_depth")} · stored ${sum("memproxy_store_memories")}`;
  } catch (e) {
    box.textContent = "";
  }
}

// ---------------------------------------------------------------- wiring

async function refreshAll(selectId) {
  await Promise.all([loadMemories(false), loadCore()]);
  if (selectId) await showMemory(selectId);
}

async function connect(event) {
  if (event) event.preventDefault();
  state.key = $("key").value.trim();
  state.user = $("user").value.trim();
  sessionStorage.setItem("memproxy.key", state.key);
  sessionStorage.setItem("memproxy.user", state.user);
  $("forget-name").textContent = state.user || "(name the user above)";
  try {
    await refreshAll(null);
    $("main").hidden = false;
    say(`Showing ${state.user || "this key's owner"}.`);
  } catch (e) {
    $("main").hidden = true;
    say(e.message, true);
  }
  counters();
}

const guard = (fn) => () => fn().catch((e) => say(e.message, true));

document.addEventListener("DOMContentLoaded", () => {
  $("key").value = sessionStorage.getItem("memproxy.key") || "";
  $("user").value = sessionStorage.getItem("memproxy.user") || "";
  $("connect").addEventListener("submit", connect);
  for (const id of ["text", "kind", "state", "since", "until"]) $(id).addEventListener("input", renderMemories);
  $("tier").addEventListener("change", guard(() => loadMemories(false)));
  $("search").addEventListener("click", guard(rankedSearch));
  $("reload").addEventListener("click", guard(() => refreshAll(state.selected && state.selected.id)));
  $("more").addEventListener("click", guard(() => loadMemories(true)));
  $("d-save").addEventListener("click", guard(saveMemory));
  $("d-pin").addEventListener("click", guard(togglePin));
  $("d-delete").addEventListener("click", guard(deleteMemory));
  $("try").addEventListener("submit", (e) => { e.preventDefault(); guard(explain)(); });
  $("forget-confirm").addEventListener("input", () => { $("forget").disabled = !state.user || $("forget-confirm").value !== state.user; });
  $("forget").addEventListener("click", guard(forgetUser));
  setInterval(counters, 5000);
  if ($("key").value || $("user").value) connect(null);
});
