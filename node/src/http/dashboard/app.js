// rota's dashboard: plain JavaScript, no build step. It reads the REST API of the node that
// serves it (from this node's replica, `stale=true`; only replication progress is asked of
// the leader, every few seconds) and watches `/api/events` live. With auth on, it sends a bearer token kept in this tab's
// session storage; EventSource cannot send one, so the stream is then read with fetch().
"use strict";

const FINISHED = new Set(["succeeded", "dead_lettered", "canceled"]);
const KINDS = ["enqueued", "ready", "leased", "attempt_ended", "retry_scheduled", "succeeded",
  "dead_lettered", "canceled", "replayed", "governance", "leader"];
const WINDOW_S = 300;
const BUCKET_S = 5;
const FEED_ROWS = 40;
const POLL_MS = 3000;
// How often the leader is asked how far each node has replicated.
const LEADER_POLL_MS = 3000;

const state = {
  token: sessionStorage.getItem("rota-token"),
  lastEventId: null,
  stream: null,
  // Enqueue log times of jobs seen enqueued since the page opened, for latency.
  enqueuedAt: new Map(),
  // Per second of log time: jobs finished and their enqueue → finish latencies.
  seconds: new Map(),
  newestSecond: 0,
  refreshTimer: null,
  soon: null,
  refreshing: false,
  again: false,
  leader: null,
  leaderAskedAt: 0,
  // Browser clock minus log time, from the newest event: the chart's "now" in log time.
  skewMs: 0,
  jobTimer: null,
};

// ---- helpers ---------------------------------------------------------------------------

function $(id) { return document.getElementById(id); }

/// An element with attributes and children (strings become text, never HTML).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function jobLink(id) {
  return el("a", { href: `#/jobs/${id}`, "data-job": id }, `#${id}`);
}

function statusSpan(status) {
  return el("span", { class: `status ${status}` }, status.replaceAll("_", " "));
}

function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function clock(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toISOString().slice(11, 19);
}

function fill(table, rows, columns, emptyText) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren();
  if (rows.length === 0) {
    body.append(el("tr", { class: "empty" }, el("td", { colSpan: columns }, emptyText)));
    return;
  }
  for (const row of rows) body.append(row);
}

function showError(text) {
  const banner = $("error");
  banner.textContent = text || "";
  banner.hidden = !text;
}

class Unauthorized extends Error {}

/// GETs `path` from this node's REST API; a problem+json answer becomes an Error with its
/// detail, a 401 an Unauthorized.
async function api(path) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { headers });
  if (response.status === 401) throw new Unauthorized("credentials needed");
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(body && body.detail ? `${path}: ${body.detail}` : `${path}: HTTP ${response.status}`);
  }
  return body;
}

// ---- sign in ---------------------------------------------------------------------------

function askForToken(message) {
  stopWatching();
  $("overview").hidden = true;
  $("job").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.token = $("token").value.trim();
  try {
    // Any reader may sign in, a tenant-bound one too (the cluster's status is not theirs).
    await api("/api/jobs?limit=1&summary=true&stale=true");
    sessionStorage.setItem("rota-token", state.token);
    $("login").hidden = true;
    route();
    watch();
  } catch (e) {
    $("login-error").textContent = e instanceof Unauthorized ? "that token was refused" : e.message;
  }
});

// ---- the overview ----------------------------------------------------------------------

function renderCluster(local, leader) {
  const me = local.nodeId;
  const role = local.raftError ? "stopped" : local.role;
  $("node-line").textContent =
    `node ${me} · ${role} · leader ${local.leaderId ?? "unknown"} · term ${local.term}` +
    ` · applied ${local.appliedIndex ?? 0} · log time ${time(local.logTime)}`;
  const matched = new Map();
  if (leader) for (const m of leader.members) matched.set(m.id, m.matchedIndex);
  const head = leader ? leader.lastLogIndex ?? 0 : null;
  fill("members", local.members.map((m) => {
    const memberRole = m.id === me ? role
      : m.id === local.leaderId ? "leader" : m.voter ? "follower" : "learner";
    const label = m.voter || memberRole === "learner" ? memberRole : `${memberRole} (non-voter)`;
    const at = matched.get(m.id);
    return el("tr", { "data-node": m.id },
      el("td", {}, m.id === me ? `${m.id} (this node)` : m.id),
      el("td", {}, m.addr),
      el("td", {}, label),
      el("td", { class: "num matched" }, at ?? "–"),
      el("td", { class: "num" }, at !== undefined && at !== null && head !== null ? head - at : "–"));
  }), 5, "no members: the cluster is not initialized");
  $("cluster-note").textContent = local.raftError
    ? `Raft stopped on this node: ${local.raftError}`
    : leader ? `matched: the last log index the leader (node ${leader.nodeId}, log at ${head}) knows each node holds`
      : "no leader answers: replication progress unknown";
  $("statuses").replaceChildren(...Object.entries(local.jobs).map(([status, count]) =>
    el("span", { class: "chip", "data-status": status }, statusSpan(status), ` ${count}`)));
}

function renderGovernance(g) {
  $("maintenance").hidden = !g.maintenance;
  if (g.maintenance) {
    $("maintenance").textContent = `maintenance: ${g.maintenance.reason} (${g.maintenance.actor})`;
  }
  fill("queues", g.queues.map((q) => el("tr", { "data-tenant": q.tenant, "data-type": q.jobType },
    el("td", {}, q.tenant), el("td", {}, q.jobType),
    el("td", { class: "num" }, q.pending), el("td", { class: "num" }, q.ready),
    el("td", { class: "num" }, q.leased), el("td", { class: "num" }, q.retrying))),
  6, "no jobs waiting or running");
  fill("incidents", g.incidents.map((i) => el("tr", {},
    el("td", {}, `#${i.id}`), el("td", {}, i.jobType), el("td", {}, time(i.openedAt)),
    el("td", { class: "num" }, `${i.failureRatePercent}%`),
    el("td", {}, i.resolved ? "resolved" : el("span", { class: "status dead_lettered" }, "breaker open")))),
  5, "no incidents: every breaker is closed");
  const scope = (s) => [s.tenant && `tenant ${s.tenant}`, s.jobType && `type ${s.jobType}`]
    .filter(Boolean).join(", ") || "everything";
  const limits = [
    ...g.paused.map((p) => `paused: ${scope(p.scope)}${p.stamp ? ` (${p.stamp.actor}: ${p.stamp.reason})` : ""}`),
    ...g.throttles.map((t) => `throttle ${scope(t.scope)}: ${t.active} of ${t.maxConcurrent} running`),
    ...g.quotas.map((q) => `quota ${scope(q.scope)}: ${q.active}${q.maxActive !== undefined ? ` of ${q.maxActive}` : ""} active` +
      (q.maxPerHour !== undefined ? `, ${q.maxPerHour}/h` : "")),
  ];
  $("limits").replaceChildren(...limits.map((text) => el("li", {}, text)));
}

function renderLeases(page) {
  $("leases-count").textContent = page.nextAfter ? `(first ${page.jobs.length})` : `(${page.jobs.length})`;
  fill("leases", page.jobs.map((j) => el("tr", {},
    el("td", {}, jobLink(j.jobId)), el("td", {}, j.tenant), el("td", {}, j.jobType),
    el("td", {}, j.leaseWorker ?? ""), el("td", { class: "num" }, j.attemptCount),
    el("td", {}, clock(j.leaseUntil)))), 6, "no job is leased");
}

function renderDead(page) {
  $("dead-count").textContent = page.nextAfter ? `(oldest ${page.jobs.length})` : `(${page.jobs.length})`;
  fill("dead", page.jobs.map((j) => el("tr", {},
    el("td", {}, jobLink(j.jobId)), el("td", {}, j.tenant), el("td", {}, j.jobType),
    el("td", { class: "num" }, j.attemptCount), el("td", {}, j.error ?? ""))),
  5, "the dead-letter queue is empty");
}

/// Asks the leader how far each node has replicated, at most once per LEADER_POLL_MS;
/// between asks (or when no leader answers) the last answer stands.
async function leaderView(local) {
  if (local && local.role === "leader") return local;
  if (Date.now() - state.leaderAskedAt < LEADER_POLL_MS) return state.leader;
  state.leaderAskedAt = Date.now();
  state.leader = await api("/api/cluster?leader=true").catch(() => null);
  return state.leader;
}

/// Reads what the overview shows and renders each part that answered; one refresh at a
/// time (a request during one runs right after it).
async function refresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(refresh, POLL_MS);
  if (!$("login").hidden) return;
  if (state.refreshing) { state.again = true; return; }
  state.refreshing = true;
  try {
    const here = await api("/api/cluster").then((v) => ({ value: v }), (e) => ({ error: e }));
    const parts = await Promise.allSettled([
      here.error ? Promise.reject(here.error) : here.value,
      leaderView(here.value),
      api("/api/governance?stale=true"),
      api("/api/jobs?status=leased&summary=true&limit=20&stale=true"),
      api("/api/dead-letters?limit=20&stale=true"),
    ]);
    const failed = parts.filter((p) => p.status === "rejected").map((p) => p.reason);
    if (failed.some((e) => e instanceof Unauthorized)) { askForToken(); return; }
    const [local, leader, governance, leases, dead] = parts.map((p) => p.value);
    if (local) renderCluster(local, leader);
    if (governance) renderGovernance(governance);
    if (leases) renderLeases(leases);
    if (dead) renderDead(dead);
    showError(failed.length > 0 ? failed.map((e) => e.message).join("; ") : null);
  } finally {
    state.refreshing = false;
    if (state.again) { state.again = false; refreshSoon(); }
  }
}

/// Refreshes soon: at most one refresh per half second however fast events come.
function refreshSoon() {
  if (state.soon) return;
  state.soon = setTimeout(() => { state.soon = null; refresh(); }, 500);
}

// ---- the chart -------------------------------------------------------------------------

function countFinish(data) {
  const at = Date.parse(data.at);
  if (isNaN(at)) return;
  const second = Math.floor(at / 1000);
  let bucket = state.seconds.get(second);
  if (!bucket) {
    bucket = { done: 0, latencies: [] };
    state.seconds.set(second, bucket);
  }
  bucket.done += 1;
  const enqueued = state.enqueuedAt.get(data.jobId);
  if (enqueued !== undefined) {
    bucket.latencies.push(at - enqueued);
    state.enqueuedAt.delete(data.jobId);
  }
  state.newestSecond = Math.max(state.newestSecond, second);
}

function median(values) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function drawChart() {
  const svg = $("chart");
  const W = 600, H = 200, left = 40, right = 44, top = 10, bottom = 22;
  // Now in log time, on a whole bucket, so that the bars stay put as time passes.
  const now = Math.floor((Date.now() - state.skewMs) / 1000);
  const end = Math.floor(Math.max(now, state.newestSecond) / BUCKET_S) * BUCKET_S - 1;
  const start = end - WINDOW_S;
  for (const second of state.seconds.keys()) if (second <= start) state.seconds.delete(second);
  const buckets = [];
  for (let s = start + 1; s <= end; s += BUCKET_S) {
    let done = 0;
    const latencies = [];
    for (let i = s; i < s + BUCKET_S; i++) {
      const b = state.seconds.get(i);
      if (b) { done += b.done; latencies.push(...b.latencies); }
    }
    buckets.push({ rate: done / BUCKET_S, p50: median(latencies) });
  }
  const maxRate = Math.max(1, ...buckets.map((b) => b.rate));
  const maxLatency = Math.max(1, ...buckets.map((b) => b.p50 ?? 0));
  const plotW = W - left - right, plotH = H - top - bottom;
  const barW = plotW / buckets.length;
  const ns = "http://www.w3.org/2000/svg";
  const shape = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const parts = [
    shape("line", { class: "axis", x1: left, y1: top + plotH, x2: W - right, y2: top + plotH }),
    shape("text", { x: left - 4, y: top + 10, "text-anchor": "end" }, Math.round(maxRate)),
    shape("text", { x: left - 4, y: top + plotH, "text-anchor": "end" }, "0"),
    shape("text", { x: W - right + 4, y: top + 10 }, `${Math.round(maxLatency)} ms`),
    shape("text", { x: left, y: H - 4 }, "−5 min"),
    shape("text", { x: W - right, y: H - 4, "text-anchor": "end" }, "now"),
  ];
  buckets.forEach((b, i) => {
    const h = (b.rate / maxRate) * plotH;
    if (h > 0) {
      parts.push(shape("rect", { class: "bar", x: left + i * barW + 1, y: top + plotH - h, width: Math.max(1, barW - 2), height: h }));
    }
  });
  const points = buckets.map((b, i) => b.p50 === null ? null
    : `${(left + (i + 0.5) * barW).toFixed(1)},${(top + plotH - (b.p50 / maxLatency) * plotH).toFixed(1)}`)
    .filter(Boolean);
  if (points.length > 0) parts.push(shape("polyline", { class: "line", points: points.join(" ") }));
  svg.replaceChildren(...parts);
  const last = buckets[buckets.length - 1];
  $("chart-now").textContent = `last whole ${BUCKET_S} s: ${last.rate.toFixed(1)} jobs/s` +
    (last.p50 !== null ? `, p50 ${Math.round(last.p50)} ms` : "");
}

// ---- events ----------------------------------------------------------------------------

function eventDetail(data) {
  const parts = [];
  if (data.workerId) parts.push(`worker ${data.workerId}, lease ${data.leaseId}`);
  if (data.kind === "leader") parts.push(`node ${data.leader} leads term ${data.term}`);
  if (data.detail) parts.push(data.detail);
  if (data.actor) parts.push(`by ${data.actor}: ${data.reason}${data.ticket ? ` [${data.ticket}]` : ""}`);
  return parts.join(" · ");
}

function onEvent(kind, data) {
  if (data.at) {
    const at = Date.parse(data.at);
    if (!isNaN(at) && Math.floor(at / 1000) >= state.newestSecond) state.skewMs = Date.now() - at;
  }
  if (kind === "enqueued" && data.at) {
    state.enqueuedAt.set(data.jobId, Date.parse(data.at));
    if (state.enqueuedAt.size > 100000) state.enqueuedAt.delete(state.enqueuedAt.keys().next().value);
  }
  if (FINISHED.has(kind)) countFinish(data);
  const body = document.querySelector("#events tbody");
  body.prepend(el("tr", { class: "fresh", "data-kind": kind, "data-job": data.jobId, "data-id": data.id },
    el("td", {}, data.id),
    el("td", {}, clock(data.at)),
    el("td", {}, statusSpan(kind)),
    el("td", {}, data.jobId !== undefined ? jobLink(data.jobId) : ""),
    el("td", {}, data.tenant ? `${data.tenant} / ${data.jobType}` : ""),
    el("td", {}, eventDetail(data))));
  while (body.rows.length > FEED_ROWS) body.deleteRow(body.rows.length - 1);
  refreshSoon();
  if (data.jobId !== undefined && data.jobId === currentJob()) reloadJobSoon();
}

function onControl(kind, detail) {
  const body = document.querySelector("#events tbody");
  body.prepend(el("tr", { "data-kind": kind }, el("td", { colSpan: 6, class: "error" }, `${kind}: ${detail}`)));
  if (kind === "gone") {
    // The resume point is gone: read the state afresh and watch from now.
    state.lastEventId = null;
    refresh();
  }
}

function setLive(on) {
  const live = $("live");
  live.className = `live ${on ? "on" : "off"}`;
  live.textContent = on ? "live" : "reconnecting";
}

function handle(kind, id, text) {
  if (kind === "gone" || kind === "lagged") {
    onControl(kind, text);
    return;
  }
  if (id) state.lastEventId = id;
  try {
    onEvent(kind, JSON.parse(text));
  } catch (e) {
    showError(`an event did not parse: ${e.message}`);
  }
}

function stopWatching() {
  if (state.stream) state.stream.close();
  state.stream = null;
}

/// Watches `/api/events` from the last event seen (or from now), reconnecting after a
/// drop, a `lagged` or a `gone` (which starts from now).
function watch() {
  stopWatching();
  if (!$("login").hidden) return;
  const query = state.lastEventId ? `?after=${encodeURIComponent(state.lastEventId)}` : "";
  if (!state.token) {
    const source = new EventSource(`/api/events${query}`);
    source.onopen = () => setLive(true);
    source.onerror = () => {
      setLive(false);
      // EventSource reconnects by itself with Last-Event-ID; once it gives up (a 401, say),
      // start anew unless this stream was replaced or closed on purpose.
      if (source.readyState === EventSource.CLOSED && state.stream === source) {
        setTimeout(() => { if (state.stream === source) watch(); }, 2000);
      }
    };
    for (const kind of [...KINDS, "gone", "lagged"]) {
      source.addEventListener(kind, (event) => {
        handle(kind, event.lastEventId, event.data);
        if (kind === "gone") { source.close(); setTimeout(watch, 500); }
      });
    }
    state.stream = source;
  } else {
    state.stream = streamWithToken(query);
  }
}

/// The event stream read with fetch(), which can send the bearer token.
function streamWithToken(query) {
  const abort = new AbortController();
  const handleStop = { close: () => abort.abort() };
  (async () => {
    try {
      const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
      const response = await fetch(`/api/events${query}`, { headers, signal: abort.signal });
      if (response.status === 401) { askForToken("the token was refused"); return; }
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw new Error(`the event stream: ${body && body.detail ? body.detail : `HTTP ${response.status}`}`);
      }
      setLive(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let event = { kind: "message", id: null, data: [] };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, "");
          buffer = buffer.slice(newline + 1);
          if (line === "") {
            if (event.data.length > 0) handle(event.kind, event.id, event.data.join("\n"));
            event = { kind: "message", id: null, data: [] };
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event.kind = value;
            else if (field === "id") event.id = value;
            else if (field === "data") event.data.push(value);
          }
        }
      }
    } catch (e) {
      if (abort.signal.aborted) return;
      showError(e.message);
    }
    setLive(false);
    if (!abort.signal.aborted) setTimeout(() => { if (state.stream === handleStop) watch(); }, 2000);
  })();
  return handleStop;
}

// ---- a job's page ----------------------------------------------------------------------

function currentJob() {
  const match = location.hash.match(/^#\/jobs\/(\d+)$/);
  return match ? Number(match[1]) : null;
}

function reloadJobSoon() {
  if (state.jobTimer) return;
  state.jobTimer = setTimeout(() => { state.jobTimer = null; loadJob(); }, 300);
}

function artifact(a) {
  return `${a.name} ${a.uri}${a.digest ? ` (${a.digest})` : ""}`;
}

async function loadJob() {
  const id = currentJob();
  if (id === null) return;
  const title = $("job-title");
  let job;
  try {
    job = await api(`/api/jobs/${id}`);
    $("job-error").textContent = "";
  } catch (e) {
    if (e instanceof Unauthorized) { askForToken(); return; }
    if (currentJob() !== id) return;
    title.textContent = `Job ${id}`;
    title.dataset.status = "unknown";
    $("job-error").textContent = e.message;
    return;
  }
  if (currentJob() !== id) return;
  title.replaceChildren(`Job ${job.jobId} · `, statusSpan(job.status));
  title.dataset.status = job.status;
  const fields = [
    ["tenant", job.tenant], ["job type", job.jobType], ["project", job.project],
    ["priority", job.priority], ["created", time(job.createdAt)], ["finished", time(job.finishedAt)],
    ["attempts", job.attemptCount], ["max attempts", job.retry && job.retry.maxAttempts],
    ["idempotency key", job.idempotencyKey], ["correlation id", job.correlationId],
    ["lease", job.leaseId !== undefined ? `${job.leaseId} by ${job.leaseWorker} until ${time(job.leaseUntil)}` : null],
    ["retry at", time(job.retryAt)], ["not before", time(job.notBefore)],
    ["error", job.error], ["payload sha256", job.payloadDigest],
    ["archived", job.archived ? time(job.archivedAt) || "yes" : null],
  ].filter(([, v]) => v !== undefined && v !== null && v !== "");
  $("job-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("job-payload").textContent = job.payload !== undefined
    ? JSON.stringify(job.payload, null, 2)
    : job.payloadBase64 !== undefined ? `base64: ${job.payloadBase64}` : "(empty)";
  fill("job-attempts", (job.attempts || []).map((a) => el("tr", { "data-outcome": a.outcome },
    el("td", {}, a.number), el("td", {}, a.worker), el("td", {}, a.leaseId),
    el("td", {}, time(a.startedAt)), el("td", {}, time(a.endedAt)),
    el("td", {}, statusSpan(a.outcome)), el("td", {}, a.error ?? ""),
    el("td", {}, (a.outputs || []).map(artifact).join("; ")))),
  8, "no attempt yet");
  const lineage = [];
  for (const input of job.inputs || []) lineage.push(el("li", {}, "input: ", artifact(input)));
  for (const a of job.attempts || []) {
    for (const output of a.outputs || []) lineage.push(el("li", {}, `output of attempt ${a.number}: `, artifact(output)));
  }
  for (const dep of job.dependsOn || []) {
    const waiting = (job.unmetDependencies || []).includes(dep) ? " (not finished)" : "";
    lineage.push(el("li", {}, "depends on ", jobLink(dep), waiting));
  }
  if (job.replayOf !== undefined) lineage.push(el("li", {}, "replay of ", jobLink(job.replayOf)));
  if (job.planId !== undefined) lineage.push(el("li", {}, `step ${job.planStep ?? ""} of plan ${job.planId}`));
  if (job.backfill) lineage.push(el("li", {}, `backfill: ${job.backfill.reason} [${job.backfill.ticket}]`));
  if (lineage.length === 0) lineage.push(el("li", { class: "muted" }, "no inputs, outputs or dependencies"));
  $("job-lineage").replaceChildren(...lineage);
  fill("job-history", (job.history || []).map((h) => el("tr", { "data-kind": h.kind },
    el("td", {}, h.logIndex), el("td", {}, time(h.at)), el("td", {}, statusSpan(h.kind)),
    el("td", {}, h.detail))), 4, job.archived ? "archived: history not kept" : "no events");
}

// ---- routing ---------------------------------------------------------------------------

function route() {
  if (!$("login").hidden) return;
  const onJob = currentJob() !== null;
  $("overview").hidden = onJob;
  $("job").hidden = !onJob;
  if (onJob) {
    $("job-title").textContent = `Job ${currentJob()}`;
    $("job-title").removeAttribute("data-status");
    $("job-error").textContent = "";
    loadJob();
  }
  refresh();
}

$("find").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = $("find-id").value.trim();
  if (/^\d+$/.test(id)) location.hash = `#/jobs/${id}`;
});

window.addEventListener("hashchange", route);
setInterval(drawChart, 1000);
route();
drawChart();
watch();
