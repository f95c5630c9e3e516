// Holdfast agent console (and, for admins, the admin pages).
//
// The session lives in an HttpOnly cookie this script cannot read; the
// script holds only a short-lived access token in memory and renews it
// through /api/v1/console/refresh. A dropped socket shows "reconnecting…"
// and resumes with cursors; only a session that is really ended (logout,
// revocation, expiry) brings the login page back. Everything that came
// from a visitor or an agent is set as text, never as HTML.

const $ = (id) => document.getElementById(id);
const CSRF = { "x-holdfast-csrf": "1" };

// ----- DOM helpers (text only) ----------------------------------------------
function h(tag, props = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v);
  }
  el.append(...kids.filter((x) => x != null));
  return el;
}

/** Text with http(s) links made clickable (rel=noopener); the rest stays text. */
function rich(el, text) {
  const re = /\bhttps?:\/\/[^\s<>"']+/gi;
  let last = 0, m;
  while ((m = re.exec(text))) {
    const url = m[0].replace(/[.,;:!?)\]]+$/, "");
    el.append(text.slice(last, m.index));
    el.append(link(url));
    last = m.index + url.length;
    re.lastIndex = last;
  }
  el.append(text.slice(last));
  return el;
}

/** A link if `url` is http(s), else plain text. */
function link(url) {
  let u = null;
  try { u = new URL(url); } catch { /* not a URL */ }
  if (u && (u.protocol === "http:" || u.protocol === "https:")) {
    return h("a", { href: u.href, target: "_blank", rel: "noopener noreferrer" }, url);
  }
  return document.createTextNode(url);
}

const ago = (ms) => {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
};
/** Dates and times are written the viewer's way: their browser's locale. */
const LOCALE = (navigator.languages && navigator.languages[0]) || navigator.language || undefined;
const fmt = (opts) => { try { return new Intl.DateTimeFormat(LOCALE, opts); } catch { return new Intl.DateTimeFormat(undefined, opts); } };
const FULL = fmt({ dateStyle: "medium", timeStyle: "short" }), SHORT = fmt({ dateStyle: "short", timeStyle: "short" }), HOUR = fmt({ hour: "2-digit", minute: "2-digit" });
const when = (ms) => FULL.format(new Date(ms));
/** A message's time: the hour today, the date and hour before. */
const clock = (ms) => {
  const d = new Date(ms), today = new Date().toDateString() === d.toDateString();
  return (today ? HOUR : SHORT).format(d);
};
/** A duration: "40 s", "3 min". */
const span = (ms) => (ms < 60000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60000)} min`);
/** Admins and the installation's operator administer their site. */
const isAdmin = () => !!me && (me.role === "admin" || me.role === "operator");
const isOperator = () => !!me && me.role === "operator";
const newId = () => crypto.randomUUID();

function browserName(ua) {
  if (!ua) return "unknown";
  const b = /Edg\//.test(ua) ? "Edge" : /Firefox\//.test(ua) ? "Firefox" : /Chrom(e|ium)\//.test(ua) ? "Chrome"
    : /Safari\//.test(ua) ? "Safari" : "Other";
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Windows/.test(ua) ? "Windows"
    : /Mac OS/.test(ua) ? "macOS" : /Linux/.test(ua) ? "Linux" : "";
  return os ? `${b} on ${os}` : b;
}

function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 6000);
}

// ----- session: access token in memory, refresh credential in a cookie ------
let token = null, me = null, renewTimer = 0;

/** 'ok', 'ended' (really logged out) or 'offline' (try again later). */
async function refresh() {
  try {
    // The access token we hold lets the server renew it even when its
    // store is down (lenient renewal); the cookie is the credential.
    const headers = token ? { ...CSRF, authorization: "Bearer " + token } : CSRF;
    const r = await fetch("/api/v1/console/refresh", { method: "POST", headers });
    if (r.ok) { setCreds(await r.json()); return "ok"; }
    return r.status === 401 ? "ended" : "offline";
  } catch {
    return "offline";
  }
}

function setCreds(c) {
  token = c.access_token;
  if (c.agent) me = c.agent; // a degraded renewal carries only the token
  clearTimeout(renewTimer);
  renewTimer = setTimeout(renew, c.expires_in * 800);
}

async function renew() {
  const r = await refresh();
  if (r === "ended") return sessionEnded();
  if (r === "offline") renewTimer = setTimeout(renew, 3000 + Math.random() * 5000);
}

function sessionEnded() {
  token = null;
  if (sock) { const s = sock; sock = null; s.close(); }
  clearTimeout(timer);
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = "Your session ended. Please log in again.";
}

// A busy server sheds a request with 503 (or 429) and `Retry-After`: the
// console waits that long and asks again, a few times, rather than leave a
// section blank. A POST is retried only under an `Idempotency-Key`, so a
// retry never creates a second thing; these paths take no key
// (`http::idempotency::exempt`), so their POSTs are not retried.
const BUSY_RETRIES = 4, BUSY_WAIT_MAX_S = 5;
const UNKEYED = ["/api/v1/auth/", "/api/v1/console/", "/api/v1/me/", "/api/v1/status/"];
const retriable = (method, path) => method !== "POST" || !UNKEYED.some((p) => path.startsWith(p));

async function api(path, opts = {}) {
  const method = opts.method || "GET";
  const key = method === "POST" ? newId() : null;
  for (let attempt = 0, busy = 0; ; attempt++) {
    const headers = { authorization: "Bearer " + token };
    if (typeof opts.body === "string") headers["content-type"] = "application/json";
    if (key) headers["idempotency-key"] = key;
    const r = await fetch(path, { method, body: opts.body, headers });
    if (r.status === 401 && attempt === 0) {
      const s = await refresh();
      if (s === "ended") { sessionEnded(); throw new Error("session ended"); }
      continue;
    }
    const wait = Number(r.headers.get("retry-after"));
    if ((r.status === 503 || r.status === 429) && busy < BUSY_RETRIES && wait <= BUSY_WAIT_MAX_S && retriable(method, path)) {
      busy++;
      // Spread the retries of many consoles: between half and all of the wait.
      await new Promise((done) => setTimeout(done, Math.max(wait, 0.2) * (500 + Math.random() * 500)));
      continue;
    }
    if (opts.raw && r.ok) return r.text();
    const body = r.status === 204 ? null : await r.json().catch(() => null);
    if (!r.ok) throw new Error((body && body.error && body.error.message) || `HTTP ${r.status}`);
    return body;
  }
}
const post = (path, body, method = "POST") => api(path, { method, body: JSON.stringify(body) });

// ----- state -------------------------------------------------------------------
const convs = new Map(); // id -> {id, status, visitor_id, group_id, agent_id, events, unread, live}
const cursors = {}; // conv -> last seq seen live
const visitors = new Map(); // id -> visitor record (or a pending promise)
// client_id -> { frame, at }, until acknowledged or seen stored. Resent
// after each welcome once the replay has shown what was stored, and never
// past the server's idempotency window (docs/protocol.md §5).
const outbox = new Map();
const RESEND_WITHIN_MS = 24 * 60 * 60 * 1000;
// conv -> the welcome's last_seq: that conversation's outbox waits for its
// replay to reach it, so a message stored before the cut is seen, not resent.
const replaying = new Map();
let queue = [], agents = [], groups = [], canned = [], selected = null, sock = null, welcomed = false;
let missedList = []; // the site's missed chats, as last listed
// Names the agent list held; a resume's welcome leaves out an unchanged one.
let agentsVersion = null;
let attempt = 0, timer = 0, laterMs = null, pinger = 0, typingOff = 0, myTyping = false, audio = null;

function conv(id, patch = {}) {
  let c = convs.get(id);
  if (!c) { c = { id, events: [], unread: 0, live: false }; convs.set(id, c); }
  Object.assign(c, patch);
  return c;
}

function visitorLabel(id) {
  if (!id) return "Visitor";
  const v = visitors.get(id);
  if (v && v.id) return v.name || v.email || `Visitor ${id.slice(-4)}`;
  if (!v) {
    visitors.set(id, api(`/api/v1/visitors/${id}`).then((x) => { visitors.set(id, x); renderLists(); if (selected) renderHead(); })
      .catch(() => visitors.delete(id)));
  }
  return `Visitor ${id.slice(-4)}`;
}

// ----- the socket --------------------------------------------------------------
function connect() {
  clearTimeout(timer);
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/v1/agent/socket");
  let refusedCode = null;
  sock = ws;
  welcomed = false;
  ws.onopen = () => {
    // Resume the conversations still ours (at most a few hundred).
    const mine = {};
    for (const c of convs.values()) {
      if (c.live && cursors[c.id] && c.status !== "closed" && Object.keys(mine).length < 400) mine[c.id] = cursors[c.id];
    }
    const hello = { type: "hello", v: 1, token, cursors: mine };
    if (agentsVersion) hello.agents_version = agentsVersion;
    ws.send(JSON.stringify(hello));
  };
  ws.onmessage = (m) => {
    let f;
    try { f = JSON.parse(m.data); } catch { return; }
    if (f.type === "error" && !welcomed) refusedCode = f.code;
    onFrame(f);
  };
  ws.onclose = async () => {
    if (sock !== ws) return;
    sock = null;
    welcomed = false;
    clearInterval(pinger);
    connState(false);
    if (refusedCode === "token_expired" || refusedCode === "unauthorized") {
      const r = await refresh();
      if (r === "ended") return sessionEnded();
    }
    // Full jitter over a capped exponential step, or the server's own delay.
    const delay = laterMs != null ? laterMs : Math.random() * Math.min(30000, 500 * 2 ** attempt++);
    laterMs = null;
    timer = setTimeout(connect, delay);
  };
}

/** Resend the outbox of the conversations `which` accepts; drop (as not
 * sent) what is older than the server remembers client ids. */
function resend(which) {
  for (const [id, { frame, at }] of outbox) {
    if (!which(frame.conv)) continue;
    if (Date.now() - at > RESEND_WITHIN_MS) {
      outbox.delete(id);
      document.querySelector(`[data-client-id="${CSS.escape(id)}"]`)?.remove();
      toast("A reply was not sent: it waited too long");
    } else send(frame);
  }
}

function send(frame) {
  if (sock && welcomed && sock.readyState === 1) { sock.send(JSON.stringify(frame)); return true; }
  return false;
}

let downSince = 0;
function connState(up) {
  if (up) { downSince = 0; $("conn").textContent = ""; return; }
  if (!downSince) downSince = Date.now();
  setTimeout(() => { if (downSince) $("conn").textContent = "Reconnecting…"; }, 800);
}

function onFrame(f) {
  if (f.conv && f.seq && f.author) return onEvent(f);
  switch (f.type) {
    case "welcome":
      welcomed = true;
      attempt = 0;
      connState(true);
      $("availability").value = f.availability;
      if (f.agents) { agents = f.agents; fillAllFilters(); renderTeam(); }
      agentsVersion = f.agents_version || null;
      setQueue(f.queue || [], false);
      for (const c of f.conversations) {
        const known = convs.get(c.id);
        // A transcript read over REST is replaced by the live replay.
        conv(c.id, known && known.live ? c : { ...c, live: true, events: [] });
      }
      for (const c of convs.values()) {
        if (c.live && c.status === "active" && !f.conversations.some((x) => x.id === c.id)) c.status = "closed";
      }
      clearInterval(pinger);
      pinger = setInterval(() => send({ type: "ping" }), 25000);
      replaying.clear();
      for (const c of f.conversations) if ((cursors[c.id] || 0) < c.last_seq) replaying.set(c.id, c.last_seq);
      resend((conv) => !replaying.has(conv));
      renderLists();
      if (selected) renderConversation();
      break;
    case "queue":
      setQueue(f.queue, true);
      break;
    case "availability": {
      const i = agents.findIndex((a) => a.id === f.agent.id);
      if (i >= 0) agents[i] = f.agent; else agents.push(f.agent);
      if (me && f.agent.id === me.id) $("availability").value = f.agent.availability;
      renderTeam();
      renderActions();
      break;
    }
    case "typing":
      if (f.conv === selected && f.from.kind === "visitor") {
        $("typing").textContent = f.on ? "Visitor is typing…" : "";
        clearTimeout(typingOff);
        if (f.on) typingOff = setTimeout(() => ($("typing").textContent = ""), 8000);
      }
      break;
    case "offline_message":
      loadOffline();
      alert_("New offline message", f.body);
      break;
    case "missed_chat":
      loadMissed();
      alert_("Missed chat", visitorLabel(f.conversation.visitor_id));
      break;
    case "ack":
      outbox.delete(f.client_id);
      break;
    case "error":
      if (f.ref && outbox.has(f.ref) && f.code !== "internal" && f.code !== "unavailable") outbox.delete(f.ref);
      if (welcomed) toast(f.message);
      break;
    case "reconnect":
      laterMs = f.after_ms;
      break;
  }
}

function setQueue(list, announce) {
  const before = new Set(queue.map((q) => q.conv));
  queue = list;
  for (const q of list) conv(q.conv, { status: "queued", visitor_id: q.visitor_id, group_id: q.group_id });
  if (announce && list.some((q) => !before.has(q.conv))) alert_("New chat waiting", "A visitor is waiting in the queue");
  renderLists();
  if (selected) renderActions();
}

function onEvent(f) {
  if (f.seq <= (cursors[f.conv] || 0)) return; // already seen
  cursors[f.conv] = f.seq;
  // Ours, stored, its ack lost with a connection: never resend it.
  if ((f.type === "message" || f.type === "note") && f.client_id && me && f.author.kind === "agent" && f.author.id === me.id) outbox.delete(f.client_id);
  if (replaying.has(f.conv) && f.seq >= replaying.get(f.conv)) {
    replaying.delete(f.conv);
    resend((conv) => conv === f.conv);
  }
  const c = conv(f.conv);
  if (!c.visitor_id && f.author.kind === "visitor") c.visitor_id = f.author.id;
  if (!c.group_id && !c.meta) {
    // Known only by its events so far: fetch what they do not say.
    c.meta = api(`/api/v1/conversations/${c.id}`).then((m) => {
      c.visitor_id = c.visitor_id || m.visitor_id;
      c.group_id = m.group_id;
      renderLists();
      if (selected === c.id) renderActions();
    }, () => (c.meta = null));
  }
  if (!c.live) {
    // First live event (a claim or an assignment): the server replays the
    // whole conversation, so drop the transcript read over REST.
    c.live = true;
    c.events = [];
    if (selected === c.id) $("log").replaceChildren();
  }
  c.events.push(f);
  if (f.type === "message") {
    if (f.author.kind === "visitor") {
      if (f.seq > (c.readUpTo || 0) && (selected !== c.id || document.hidden)) {
        c.unread++;
        // A replay after a reload brings old ones back: only new ones ring.
        if (Date.now() - f.at < 60000) alert_(`${visitorLabel(c.visitor_id)} writes`, f.body);
      }
      $("typing").textContent = "";
      markRead(c);
    }
  } else if (f.type === "read") {
    if (me && f.author.kind === "agent" && f.author.id === me.id && f.up_to > (c.readUpTo || 0)) {
      // Read before a reload, or in another tab.
      c.readUpTo = f.up_to;
      c.unread = c.events.filter((e) => e.type === "message" && e.author.kind === "visitor" && e.seq > c.readUpTo).length;
    }
  } else if (f.type === "assigned") {
    c.agent_id = f.agent.id;
    c.status = "active";
    if (me && f.agent.id === me.id) alert_("New chat", "A conversation was assigned to you");
  } else if (f.type === "transferred") {
    c.agent_id = null;
    c.status = "queued";
  } else if (f.type === "closed") {
    c.status = "closed";
  } else if (f.type === "rating" && Date.now() - f.at < 60000) {
    toast(ratingText(f, visitorLabel(c.visitor_id)));
    alert_("Chat rated", f.comment || f.rating);
  }
  renderLists();
  if (selected === c.id) { appendEvent(f); renderActions(); }
}

/** Tell the server what the open conversation has shown (read receipts
 *  are durable events, so unread counts survive a reload). */
function markRead(c) {
  if (!c || selected !== c.id || document.hidden || !c.live || !sock || !welcomed) return;
  const newest = c.events.reduce((n, e) => (e.type === "message" && e.author.kind === "visitor" ? Math.max(n, e.seq) : n), 0);
  if (newest > (c.readUpTo || 0) && newest !== c.readSent) {
    if (send({ type: "read", conv: c.id, seq: newest })) c.readSent = newest;
  }
}

// ----- notifications and sound ------------------------------------------------
function beep() {
  if (!$("sound").checked) return;
  try {
    audio = audio || new AudioContext();
    const o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = 660;
    g.gain.value = 0.06;
    o.connect(g).connect(audio.destination);
    o.start();
    o.stop(audio.currentTime + 0.2);
  } catch { /* no sound */ }
}
function alert_(title, body) {
  beep();
  if (window.Notification && Notification.permission === "granted" && (document.hidden || !document.hasFocus())) {
    try { new Notification(title, { body: String(body || "").slice(0, 140), tag: "holdfast" }); } catch { /* ignore */ }
  }
}

// ----- rendering ------------------------------------------------------------------
function renderLists() {
  $("queue-count").textContent = queue.length ? String(queue.length) : "";
  $("queue").replaceChildren(...queue.map((q) => item(q.conv, visitorLabel(q.visitor_id), `#${q.position} · ${ago(q.waiting_since)}`)));
  const mine = [...convs.values()].filter((c) => me && c.agent_id === me.id && c.status === "active");
  $("mine").replaceChildren(...mine.map((c) => item(c.id, visitorLabel(c.visitor_id), null, c.unread)));
  const unread = mine.reduce((n, c) => n + c.unread, 0);
  document.title = unread ? `(${unread}) Holdfast console` : "Holdfast console";
  renderMissed();
}

function item(id, label, sub, unread = 0) {
  const b = h("button", { type: "button", "aria-current": String(selected === id), onclick: () => select(id) },
    h("span", {}, label), sub ? h("span", { class: "sub" }, sub) : null,
    unread ? h("span", { class: "unread", "aria-label": `${unread} unread` }, String(unread)) : null);
  b.dataset.conv = id;
  return h("li", {}, b);
}

async function select(id) {
  selected = id;
  const c = conv(id);
  c.unread = 0;
  markRead(c);
  $("typing").textContent = "";
  renderLists();
  renderConversation();
  if (!c.live || !c.visitor_id) {
    // Not one of ours live: read its transcript (and state) over REST.
    try {
      const events = await api(`/api/v1/conversations/${id}/events?limit=1000`);
      if (selected !== id) return;
      if (!c.live) c.events = events;
      if (!c.visitor_id) {
        const v = events.find((e) => e.author.kind === "visitor");
        if (v) c.visitor_id = v.author.id;
      }
      renderConversation();
    } catch (e) { toast(e.message); }
  }
  follow(c);
  renderDetails(c);
}

function renderHead() {
  const c = convs.get(selected);
  $("conv-title").textContent = c ? `${c.visitor_id ? visitorLabel(c.visitor_id) : "Conversation"} · ${c.status || ""}` : "No conversation selected";
}

function renderConversation() {
  const c = convs.get(selected);
  $("log").replaceChildren();
  if (!c) return;
  renderHead();
  for (const e of c.events) appendEvent(e);
  for (const { frame } of outbox.values()) if (frame.conv === c.id) pendingBubble(frame);
  renderActions();
}

/** An agent's picture: their photo when they have one (only a path of
 *  ours: the server gives no other), else their name's first letter. */
function avatar(a, cls = "avatar") {
  const url = a && a.photo_url;
  if (typeof url === "string" && url.startsWith("/api/v1/agents/")) return h("span", { class: cls }, h("img", { src: url, alt: "" }));
  return h("span", { class: cls, "aria-hidden": "true" }, ((a && a.name) || "?").trim().charAt(0).toUpperCase());
}

/** The site's agents, with their photos and availability (live). */
function renderTeam() {
  const order = { online: 0, away: 1, offline: 2 };
  const list = [...agents].sort((a, b) => (order[a.availability] ?? 3) - (order[b.availability] ?? 3) || a.name.localeCompare(b.name));
  $("team").replaceChildren(...list.map((a) => {
    const li = h("li", {}, avatar(a), h("span", { class: "name" }, a.name), h("span", { class: "sub" }, a.availability));
    li.dataset.agent = a.id;
    return li;
  }));
}

/** Your photo in its dialog, and everywhere it shows. */
function showOwnPhoto() {
  $("photo-preview").replaceChildren(...avatar(me).childNodes);
  $("photo-remove").hidden = !me.photo_url;
}

async function setOwnPhoto(file) {
  $("photo-error").textContent = "";
  try {
    me = { ...me, ...(file ? await api("/api/v1/me/photo", { method: "PUT", body: file }) : await api("/api/v1/me/photo", { method: "DELETE" })) };
    showOwnPhoto();
    toast(file ? "Photo saved" : "Photo removed");
  } catch (e) { $("photo-error").textContent = e.message; }
  $("photo-file").value = "";
}

function agentName(id) {
  const a = agents.find((x) => x.id === id);
  return a ? a.name : "an agent";
}

function appendEvent(e) {
  const log = $("log");
  let el;
  if (e.type === "message") {
    // An integration's message (REST API) is its token's, not its maker's.
    const mine = !e.integration && me && e.author.kind === "agent" && e.author.id === me.id;
    const pending = !e.integration && e.client_id && log.querySelector(`[data-client-id="${CSS.escape(e.client_id)}"]`);
    if (pending) pending.remove();
    const who = e.integration ? `${e.integration} (integration)` : e.author.kind === "visitor" ? visitorLabel(e.author.id) : mine ? "You" : agentName(e.author.id);
    // A colleague's messages sit on the team's side, marked as theirs.
    const side = mine ? "msg me" : e.author.kind === "visitor" ? "msg" : "msg colleague";
    const at = h("time", { datetime: new Date(e.at).toISOString() }, clock(e.at));
    el = h("div", { class: side }, h("span", { class: "who" }, `${who} · `, at, e.by_email ? " · by email" : ""));
    // An erased message is a tombstone: its place, not its words.
    if (e.erased) el.append(h("em", {}, "(message erased)")); else rich(el, e.body || "");
    files(el, e.attachments);
  } else if (e.type === "note") {
    // An internal note: agents only, drawn apart from the conversation.
    const pending = e.client_id && log.querySelector(`[data-client-id="${CSS.escape(e.client_id)}"]`);
    if (pending) pending.remove();
    const who = me && e.author.id === me.id ? "You" : agentName(e.author.id);
    const at = h("time", { datetime: new Date(e.at).toISOString() }, clock(e.at));
    el = h("div", { class: "msg note" }, h("span", { class: "who" }, `Internal note · ${who} · `, at));
    if (e.erased) el.append(h("em", {}, "(note erased)")); else rich(el, e.body || "");
  } else if (e.type === "assigned") {
    el = h("div", { class: "sys" }, `Assigned to ${e.agent.name}`);
  } else if (e.type === "transferred") {
    el = h("div", { class: "sys" }, `Back to the ${e.group ? e.group.name : ""} queue`);
  } else if (e.type === "closed") {
    el = h("div", { class: "sys" }, "Conversation closed");
  } else if (e.type === "rating") {
    el = h("div", { class: `sys rating ${e.rating === "good" ? "good" : "bad"}` }, ratingText(e, visitorLabel(e.author.id)));
    if (e.comment) el.append(h("q", { class: "comment" }, e.comment));
  } else return;
  log.insertBefore(el, log.querySelector(".pending"));
  log.scrollTop = log.scrollHeight;
}

/** "Ada rated the chat 👍 good", as text. */
function ratingText(e, who) {
  return `${who} rated the chat ${e.rating === "good" ? "👍 good" : "👎 bad"}`;
}

// ----- files: thumbnails and links through short-lived signed links -----------
// The site's limits (the server checks every upload; this only refuses
// early what is plainly too large).
let attachLimits = { max_bytes: 10485760, types: [] };
const mb = (n) => (n < 1048576 ? Math.ceil(n / 1024) + " KB" : (n / 1048576).toFixed(1) + " MB");

/** Images as thumbnails opening full size, other files as name + size. */
function files(el, list) {
  for (const a of list || []) {
    const link = h("a", { class: "file", target: "_blank", rel: "noopener noreferrer" }, a.inline ? h("img", { alt: a.name }) : `📎 ${a.name} (${mb(a.size)})`);
    let at = 0;
    const fresh = async () => {
      if (Date.now() - at < 240000) return;
      at = Date.now();
      try {
        link.href = (await post(`/api/v1/attachments/${encodeURIComponent(a.id)}/link`, {})).url;
        if (a.inline) link.firstChild.src = link.href;
      } catch { at = 0; }
    };
    link.addEventListener("pointerenter", fresh);
    link.addEventListener("focus", fresh);
    fresh();
    el.append(link);
  }
}

async function attach(file) {
  const conv = selected;
  if (!conv) return;
  if (file.size > attachLimits.max_bytes) return toast(`Not sent: ${file.name} is larger than ${mb(attachLimits.max_bytes)}`);
  const t = file.type, types = attachLimits.types;
  if (types.length && t && !types.some((x) => x === t || (x.endsWith("/*") && t.startsWith(x.slice(0, -1))))) return toast(`Not sent: ${file.name}: this type of file is not allowed`);
  toast(`Uploading ${file.name}…`);
  try {
    const up = await api("/api/v1/attachments?name=" + encodeURIComponent(file.name), { method: "POST", body: file });
    const frame = { type: "send", conv, client_id: newId(), body: "", attachments: [up.id] };
    outbox.set(frame.client_id, { frame, at: Date.now() });
    if (conv === selected) pendingBubble(frame);
    if (!replaying.has(conv)) send(frame);
    $("toast").hidden = true;
  } catch (err) { toast(`Not sent: ${file.name}: ${err.message}`); }
}
const attachAll = (list, e) => { if (list && list.length) { if (e) e.preventDefault(); [...list].forEach(attach); } };

function pendingBubble(f) {
  const note = f.type === "note";
  const el = h("div", { class: note ? "msg note pending" : "msg me pending", "data-client-id": f.client_id },
    h("span", { class: "who" }, note ? "Internal note · You · sending" : "You · sending"));
  rich(el, f.body);
  $("log").append(el);
  $("log").scrollTop = $("log").scrollHeight;
}

function renderActions() {
  const c = convs.get(selected);
  const mineActive = c && me && c.agent_id === me.id && c.status === "active";
  const open = c && (c.status === "queued" || c.status === "active");
  $("claim").hidden = !open || mineActive || c.status === "active";
  // An admin joins a colleague's chat by taking it over (a transfer to themself).
  $("take-over").hidden = !(isAdmin() && c && c.status === "active" && c.agent_id && me && c.agent_id !== me.id);
  $("close").hidden = !open || !(mineActive || isAdmin() || c.status === "queued");
  // Anyone may leave an internal note in any chat; only its agent replies.
  $("composer").hidden = !c;
  if (!mineActive) $("note-mode").checked = true;
  else if ($("note-mode").disabled) $("note-mode").checked = false; // replies again
  $("note-mode").disabled = !mineActive;
  noteMode();
  $("email-reply").hidden = !(c && c.status === "offline");
  const canTransfer = mineActive || (open && isAdmin() && c.agent_id);
  $("transfer-wrap").hidden = !canTransfer;
  $("transfer-go").hidden = !canTransfer;
  if (canTransfer) {
    const people = agents.filter((a) => a.id !== c.agent_id).map((a) => h("option", { value: "agent:" + a.id }, `${a.name} (${a.availability})`));
    // Any group's queue; its own is "back to the queue" (never straight back to whoever lets it go).
    const queues = groups.map((g) => h("option", { value: "group:" + g.id, disabled: !!(g.now && !g.now.open) },
      (g.id === c.group_id ? `Back to the ${g.name} queue` : `${g.name} queue`) + (g.now && !g.now.open ? " (closed)" : "")));
    if (!groups.some((g) => g.id === c.group_id)) queues.push(h("option", { value: "group:" + c.group_id }, "Back to the queue"));
    $("transfer").replaceChildren(h("optgroup", { label: "Agents" }, ...people), h("optgroup", { label: "Groups" }, ...queues));
  }
  renderHead();
}

// What moves while you watch a visitor: the page they are on, how long
// they have been on the site, when they were last seen.
const liveDetails = (v) => ({
  "Time on site": `${ago(v.first_seen)} (since ${when(v.first_seen)})`,
  "Last seen": `${ago(v.last_seen)} ago`,
});

// Every few seconds, while the console is in view: the queue's waiting
// times, and the open chat's visitor read again (a new page shows).
const LIVE_EVERY_MS = 5000;
async function refreshLive() {
  if (document.hidden) return;
  if (queue.length) renderLists();
  const c = selected && convs.get(selected);
  if (!c || !c.visitor_id) return;
  try {
    const v = await api(`/api/v1/visitors/${c.visitor_id}`);
    if (selected !== c.id) return;
    visitors.set(v.id, v);
    const set = (k, val) => {
      const dd = [...document.querySelectorAll("#details dd")].find((d) => d.dataset.k === k);
      if (dd) dd.replaceChildren(val == null || val === "" ? "—" : val);
    };
    set("Page", v.page_url ? link(v.page_url) : null);
    for (const [k, val] of Object.entries(liveDetails(v))) set(k, val);
  } catch { /* the next round tries again */ }
}
setInterval(refreshLive, LIVE_EVERY_MS);

async function renderDetails(c) {
  const box = $("details");
  box.replaceChildren(h("h2", {}, "Visitor"));
  if (!c.visitor_id) return;
  try {
    const [v, past, greeted] = await Promise.all([
      api(`/api/v1/visitors/${c.visitor_id}`),
      api(`/api/v1/conversations?visitor=${encodeURIComponent(c.visitor_id)}&limit=20`),
      api(`/api/v1/conversations/${encodeURIComponent(c.id)}/greeting`).catch(() => null),
    ]);
    if (selected !== c.id) return;
    visitors.set(v.id, v);
    const row = (k, val) => [h("dt", {}, k), h("dd", { "data-k": k }, val == null || val === "" ? "—" : val)];
    // The proactive greeting the visitor answered, if one started the chat.
    const greeting = greeted && (greeted.name ? `${greeted.name}: ${greeted.message}` : "a rule since deleted");
    box.append(h("dl", {},
      ...(greeted ? row("Greeted by", greeting) : []),
      ...row("Name", v.name), ...row("Email", v.email),
      ...row("Page", v.page_url ? link(v.page_url) : null),
      ...row("Referrer", v.referrer ? link(v.referrer) : null),
      ...row("Browser", browserName(v.user_agent)),
      ...Object.entries(liveDetails(v)).flatMap(([k, val]) => row(k, val))));
    box.append(transcriptForm(c.id, v.email));
    box.append(banForm(v.id));
    if (isAdmin()) {
      box.append(h("button", { type: "button", class: "export", onclick: () => exportVisitor(v.id) }, "Export visitor's data (JSON)"));
      box.append(h("button", { type: "button", class: "erase", onclick: async () => {
        if (!confirm("Erase this visitor for good? Their details and every message of their chats are removed; this cannot be undone.")) return;
        try { await post(`/api/v1/admin/visitors/${encodeURIComponent(v.id)}/erase`, {}); visitors.delete(v.id); toast("Visitor erased"); } catch (e) { toast(e.message); }
      } }, "Erase visitor's data"));
    }
    box.append(h("h2", {}, "Past conversations"));
    box.append(h("ul", { class: "list" }, ...past.filter((p) => p.id !== c.id).map((p) => {
      const known = convs.get(p.id);
      if (!known || !known.live) conv(p.id, { ...p, live: false });
      return item(p.id, when(p.created_at), p.status);
    })));
  } catch (e) { box.append(h("p", {}, e.message)); }
}

/** Download everything kept about a visitor (an admin answering an access request). */
async function exportVisitor(id) {
  try {
    const doc = await api(`/api/v1/admin/visitors/${encodeURIComponent(id)}/export`);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" }));
    a.download = `visitor-${id}.json`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) { toast(e.message); }
}

/** "Ban visitor": with a reason, for a while or until lifted, their address too if asked. */
function banForm(visitorId) {
  const reason = h("input", { required: true, maxlength: "500", placeholder: "Reason (admins see it)", "aria-label": "Reason for the ban" });
  const address = h("input", { type: "checkbox" });
  const length = h("select", { "aria-label": "Ban for" },
    h("option", { value: "60" }, "1 hour"), h("option", { value: "1440" }, "1 day"), h("option", { value: "10080" }, "7 days"),
    h("option", { value: "43200" }, "30 days"), h("option", { value: "" }, "Until lifted"));
  length.value = "1440";
  return h("form", { class: "ban", onsubmit: async (e) => {
    e.preventDefault();
    if (!confirm("Ban this visitor? Their chats end and they cannot start new ones.")) return;
    const body = { visitor_id: visitorId, reason: reason.value, ip: address.checked };
    if (length.value) body.expires_in_minutes = Number(length.value);
    try { await post("/api/v1/bans", body); e.target.reset(); toast("Visitor banned"); } catch (err) { toast(err.message); }
  } }, h("h2", {}, "Ban"), reason, h("label", {}, address, " their address too"), length, h("button", { type: "submit" }, "Ban visitor"));
}

/** "Email transcript": to the visitor's address unless the agent types another. */
function transcriptForm(id, email) {
  const to = h("input", { type: "email", required: true, maxLength: 254, "aria-label": "Email the transcript to", value: email || "" });
  return h("form", { id: "transcript-form", class: "grid", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const r = await post(`/api/v1/conversations/${encodeURIComponent(id)}/transcript`, { to: to.value.trim() });
      toast(r.queued ? `Transcript queued for ${to.value.trim()}` : "That transcript was queued already (see Admin → Deliveries)");
    } catch (err) { toast(err.message); }
  } }, h("label", {}, "Email transcript to", to), h("button", { type: "submit" }, "Email transcript"));
}

// ----- composing, with canned responses ------------------------------------------
let suggestions = [], suggestAt = -1;

function onReplyInput() {
  const v = $("reply").value;
  const m = /^\/([\w-]*)$/.exec(v);
  suggestions = m ? canned.filter((c) => c.shortcut.startsWith(m[1].toLowerCase())) : [];
  suggestAt = suggestions.length ? 0 : -1;
  renderSuggest();
  if (selected && !myTyping && v && !$("note-mode").checked) { myTyping = true; send({ type: "typing", conv: selected, on: true }); }
  clearTimeout(onReplyInput.t);
  onReplyInput.t = setTimeout(() => { if (myTyping) { myTyping = false; send({ type: "typing", conv: selected, on: false }); } }, 3000);
}

function renderSuggest() {
  const list = $("suggest");
  list.hidden = !suggestions.length;
  list.replaceChildren(...suggestions.map((c, i) => h("li", { role: "option", "aria-selected": String(i === suggestAt), onmousedown: (e) => { e.preventDefault(); pick(i); } },
    h("strong", {}, "/" + c.shortcut), " " + c.body.slice(0, 80))));
}

function pick(i) {
  $("reply").value = suggestions[i].body;
  suggestions = [];
  renderSuggest();
  $("reply").focus();
}

function onReplyKey(e) {
  if (suggestions.length) {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      suggestAt = (suggestAt + (e.key === "ArrowDown" ? 1 : suggestions.length - 1)) % suggestions.length;
      return renderSuggest();
    }
    if (e.key === "Enter" || e.key === "Tab") { e.preventDefault(); return pick(suggestAt); }
    if (e.key === "Escape") { suggestions = []; return renderSuggest(); }
  }
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
}

/** The composer as a note's (agents only, drawn apart) or a reply's. */
function noteMode() {
  const on = $("note-mode").checked;
  $("composer").classList.toggle("noting", on);
  $("reply").placeholder = on ? "Internal note: only agents see it" : "";
  $("attach").hidden = on;
}

function onSend(e) {
  e.preventDefault();
  const body = $("reply").value;
  if (!body.trim() || !selected) return;
  const note = $("note-mode").checked;
  const frame = note ? { type: "note", conv: selected, client_id: newId(), body } : { type: "send", conv: selected, client_id: newId(), body };
  outbox.set(frame.client_id, { frame, at: Date.now() });
  $("reply").value = "";
  if (myTyping) send({ type: "typing", conv: selected, on: false });
  myTyping = false;
  pendingBubble(frame);
  if (!replaying.has(selected)) send(frame);
}

// An offline message answered by email: stored in the conversation, and
// mailed to the address the visitor left. A retry (same client_id) sends once.
async function onEmailReply(e) {
  e.preventDefault();
  const c = convs.get(selected);
  const body = $("email-reply-body").value;
  if (!c || !body.trim()) return;
  const client_id = $("email-reply").dataset.clientId || newId();
  $("email-reply").dataset.clientId = client_id;
  try {
    const event = await post(`/api/v1/conversations/${encodeURIComponent(c.id)}/reply`, { client_id, body });
    delete $("email-reply").dataset.clientId;
    $("email-reply-body").value = "";
    if (!c.events.some((x) => x.seq === event.seq)) c.events.push(event);
    if (selected === c.id) appendEvent(event);
    toast("Answer sent by email");
  } catch (err) { toast(err.message); }
}

// ----- lists over REST ----------------------------------------------------------------
async function loadOffline() {
  try {
    const list = await api("/api/v1/conversations?status=offline&limit=50");
    for (const c of list) conv(c.id, { ...c, live: convs.get(c.id)?.live || false });
    $("offline").replaceChildren(...list.map((c) => item(c.id, visitorLabel(c.visitor_id), ago(c.created_at))));
  } catch (e) { toast(e.message); }
}

// Chats whose visitor waited too long for a reply, or left before one.
async function loadMissed() {
  try {
    const list = await api("/api/v1/conversations?status=missed&limit=50");
    for (const c of list) {
      const { missed, ...rest } = c;
      conv(c.id, convs.get(c.id)?.live ? { missed } : { ...rest, missed, live: false });
    }
    missedList = list;
    renderMissed();
  } catch (e) { toast(e.message); }
}

function renderMissed() {
  $("missed").replaceChildren(...missedList.map((c) => item(c.id, visitorLabel(c.visitor_id),
    `${c.missed.reason === "left" ? "left after" : "waited"} ${span(c.missed.waited_ms)} · ${ago(c.missed.missed_at)}`)));
}

// Chat search: all the words, each as typed or the start of a longer one
// (in messages, or the visitor's name or email), with the filters; the box left empty lists past chats. A page at a time.
let searchNext = null;

function searchParams() {
  const q = new URLSearchParams({ limit: "25" });
  const words = $("search").value.trim();
  if (words) q.set("q", words);
  for (const [key, id] of [["status", "search-status"], ["agent", "search-agent"], ["group", "search-group"]]) if ($(id).value) q.set(key, $(id).value);
  // Dates are the agent's own days: from the first day's midnight to the
  // midnight after the last.
  if ($("search-from").value) q.set("from", String(new Date(`${$("search-from").value}T00:00`).getTime()));
  if ($("search-to").value) {
    const end = new Date(`${$("search-to").value}T00:00`);
    end.setDate(end.getDate() + 1);
    q.set("to", String(end.getTime()));
  }
  return q;
}

async function search(e, more = false) {
  if (e) e.preventDefault();
  $("search-section").hidden = false;
  $("results-title").textContent = $("search").value.trim() ? "Search results" : "Past chats";
  const q = searchParams();
  if (more && searchNext) q.set("cursor", searchNext);
  try {
    const page = await api(`/api/v1/search?${q}`);
    searchNext = page.next;
    const items = page.chats.map(resultItem);
    if (more) $("results").append(...items);
    else $("results").replaceChildren(...items);
    if (!more && !page.chats.length) $("results").replaceChildren(h("li", { class: "sys" }, "Nothing found"));
    $("results-more").hidden = !searchNext;
  } catch (err) { toast(err.message); }
}

/** One chat found: whose, when, its state and agent, and the words around
 *  what was found (all as text). */
function resultItem(hit) {
  conv(hit.conversation_id, convs.get(hit.conversation_id)?.live ? {}
    : { visitor_id: hit.visitor_id, group_id: hit.group_id, agent_id: hit.agent_id, status: hit.status });
  const who = hit.visitor_name || hit.visitor_email || `Visitor ${hit.visitor_id.slice(-4)}`;
  const li = item(hit.conversation_id, who,
    `${when(hit.created_at)} · ${hit.status}${hit.agent_name ? " · " + hit.agent_name : ""} · ${hit.group_name}`);
  const b = li.firstChild;
  b.classList.add("result");
  if (hit.visitor_name && hit.visitor_email) b.append(h("span", { class: "email" }, hit.visitor_email));
  if (hit.snippet) b.append(h("span", { class: "snippet" }, hit.snippet.text || "📎"));
  return li;
}

// ----- all chats (admins) -------------------------------------------------------------
/** The site's conversations by the filters chosen; admins only (the list
 *  API serves any agent of the site, the view is what admins asked for). */
async function loadAll() {
  if (!isAdmin()) return;
  const q = new URLSearchParams({ limit: "50" });
  for (const [key, id] of [["status", "all-status"], ["agent", "all-agent"], ["group", "all-group"]]) if ($(id).value) q.set(key, $(id).value);
  try {
    const list = await api(`/api/v1/conversations?${q}`);
    $("all").replaceChildren(...list.map((c) => {
      conv(c.id, { visitor_id: c.visitor_id, group_id: c.group_id, agent_id: c.agent_id, status: c.status });
      return item(c.id, visitorLabel(c.visitor_id), `${c.status}${c.agent_id ? " · " + agentName(c.agent_id) : ""}`);
    }));
    if (!list.length) $("all").replaceChildren(h("li", { class: "sys" }, "No chats"));
  } catch (e) { toast(e.message); }
}

function fillAllFilters() {
  const keep = (id, options) => { const v = $(id).value; $(id).replaceChildren($(id).options[0], ...options); $(id).value = v; };
  keep("all-agent", agents.map((a) => h("option", { value: a.id }, a.name)));
  keep("all-group", groups.map((g) => h("option", { value: g.id }, g.name)));
  keep("search-agent", agents.map((a) => h("option", { value: a.id }, a.name)));
  keep("search-group", groups.map((g) => h("option", { value: g.id }, g.name)));
}

/** A conversation open on screen that is not ours live: follow it by
 *  reading its new events every few seconds. */
let following = 0;
function follow(c) {
  clearInterval(following);
  if (c.live) return;
  following = setInterval(async () => {
    if (selected !== c.id || c.live || document.hidden) return;
    const after = c.events.length ? c.events[c.events.length - 1].seq : 0;
    try {
      const events = await api(`/api/v1/conversations/${c.id}/events?after=${after}`);
      if (selected !== c.id || c.live) return;
      for (const e of events) {
        c.events.push(e);
        appendEvent(e);
        if (e.type === "assigned") { c.agent_id = e.agent.id; c.status = "active"; }
        else if (e.type === "transferred") { c.agent_id = null; c.status = "queued"; }
        else if (e.type === "closed") c.status = "closed";
      }
      if (events.length) renderActions();
    } catch { /* the next round tries again */ }
  }, 3000);
}

const LIMITS = { "l-sessions-ip": "sessions_per_ip_per_minute", "l-convs-visitor": "conversations_per_visitor_per_hour",
  "l-convs-ip": "conversations_per_ip_per_hour", "l-msgs-visitor": "messages_per_visitor_per_minute", "l-msgs-ip": "messages_per_ip_per_minute" };

// ----- admin ---------------------------------------------------------------------------
async function loadAdmin() {
  try {
    const [site, list, groups] = await Promise.all([api("/api/v1/admin/site"), api("/api/v1/admin/agents"), api("/api/v1/admin/groups")]);
    $("site-title").value = site.name;
    $("widget-key").textContent = site.widget_key;
    $("snippet").value = `<script async src="${location.origin}/widget.js" data-site="${site.widget_key}"></script>`;
    const s = site.settings;
    $("s-color").value = s.color;
    $("s-position").value = s.position;
    $("s-greeting").value = s.greeting;
    $("s-team").value = s.team_name || "";
    $("s-logo").value = s.logo_url || "";
    $("s-reply-time").value = s.reply_time || "none";
    $("s-name").value = s.prechat.name;
    $("s-email").value = s.prechat.email;
    $("s-origins").value = s.allowed_origins.join("\n");
    $("s-missed").value = String(s.missed_chat_minutes);
    $("s-archive").value = s.transcript_archive;
    $("s-reply-to").value = s.reply_to;
    $("s-tz").value = s.time_zone || "UTC";
    $("s-retention").value = String(s.retention_days || 0);
    $("s-audit-retention").value = String(s.audit_retention_days || 0);
    $("s-language").value = s.language || "";
    $("s-strings").value = Object.entries(s.strings || {}).map(([k, v]) => `${k} = ${v}`).join("\n");
    // The keys a site may override are those of every language's table.
    fetch("/widget-i18n/de.json").then((r) => r.json()).then((table) => {
      $("s-string-keys").textContent = Object.keys(table).filter((k) => !k.startsWith("_")).join(", ");
    }, () => {});
    for (const [id, key] of Object.entries(LIMITS)) $(id).value = String(s.visitor_limits[key]);
    attachLimits = s.attachments || attachLimits;
    $("s-att-max").value = String(attachLimits.max_bytes / 1048576);
    $("s-att-types").value = attachLimits.types.join("\n");
    $("agents").replaceChildren(...list.map(agentRow));
    // Operators may set a password now; everyone else invites by email.
    $("n-password-label").hidden = !isOperator();
    $("invite-note").hidden = site.mail_enabled;
    $("invite-note").textContent = isOperator()
      ? "No mail relay is configured: set a password to add someone."
      : "Invitations are sent by email, and no mail relay is configured: ask your operator to add people.";
    await loadInvitations();
    const others = list.filter((a) => a.active && a.id !== me.id && (a.role !== "operator" || isOperator()));
    $("reset-agent").replaceChildren(...others.map((a) => h("option", { value: a.id }, `${a.name} (${a.email})`)));
    siteHours = s.hours || null;
    $("site-hours").replaceChildren(hoursEditor("Site", siteHours, (hours) => post("/api/v1/admin/site/hours", hours, "PUT")));
    $("groups").replaceChildren(...groups.map((g) => groupRow(g, list)));
    // Each section loads on its own: one that fails leaves the others shown.
    const sections = [() => loadGreetings(list), loadCanned, () => loadBans(list), loadApiTokens, loadWebhooks, loadAudit, loadDeliveries];
    if (isOperator()) sections.push(loadSites);
    const failed = (await Promise.allSettled(sections.map((load) => load()))).find((r) => r.status === "rejected");
    if (failed) toast(failed.reason.message);
  } catch (e) { toast(e.message); }
}

function agentRow(a) {
  // Only an operator gives or changes the operator role (the server checks it too).
  const locked = (me && a.id === me.id) || (a.role === "operator" && !isOperator());
  const role = h("select", { "aria-label": `Role of ${a.name}`, disabled: locked, onchange: (e) => patchAgent(a.id, { role: e.target.value }) },
    h("option", { value: "agent" }, "Agent"), h("option", { value: "admin" }, "Admin"),
    isOperator() || a.role === "operator" ? h("option", { value: "operator" }, "Operator") : null);
  role.value = a.role;
  const toggle = h("button", { type: "button", disabled: locked, onclick: () => {
    // Deactivating ends their sessions and takes them off routing: ask first.
    if (!a.active || confirm(`Deactivate ${a.name}? They are logged out at once and get no new chats.`)) patchAgent(a.id, { active: !a.active });
  } }, a.active ? "Deactivate" : "Reactivate");
  const name = h("input", { value: a.name, maxlength: "200", required: true, "aria-label": `Name of ${a.name}`, disabled: a.role === "operator" && !isOperator(),
    onchange: (e) => patchAgent(a.id, { name: e.target.value }) });
  const limit = h("input", { type: "number", min: "0", max: "100", value: String(a.chat_limit), "aria-label": `Chats at once for ${a.name}`,
    disabled: a.role === "operator" && !isOperator(), onchange: (e) => patchAgent(a.id, { chat_limit: Number(e.target.value) }) });
  // An admin may take down a photo that should not be shown to visitors.
  const unphoto = a.photo_url ? h("button", { type: "button", "aria-label": `Remove the photo of ${a.name}`, onclick: async () => {
    if (!confirm(`Remove the photo of ${a.name}?`)) return;
    try { await api(`/api/v1/admin/agents/${encodeURIComponent(a.id)}/photo`, { method: "DELETE" }); toast("Photo removed"); loadAdmin(); } catch (e) { toast(e.message); }
  } }, "Remove") : null;
  const tr = h("tr", {}, h("td", {}, avatar(a), unphoto), h("td", {}, name), h("td", {}, a.email), h("td", {}, role), h("td", {}, limit), h("td", {}, a.active ? a.availability : "deactivated"), h("td", {}, toggle));
  tr.dataset.email = a.email;
  return tr;
}

async function loadInvitations() {
  const list = await api("/api/v1/admin/invitations");
  $("invitations-table").hidden = list.length === 0;
  $("invitations").replaceChildren(...list.map((i) => {
    const revoke = h("button", { type: "button", onclick: async () => {
      try { await api(`/api/v1/admin/invitations/${encodeURIComponent(i.id)}`, { method: "DELETE" }); toast("Invitation revoked"); } catch (e) { toast(e.message); }
      loadInvitations().catch((e) => toast(e.message));
    } }, "Revoke");
    const until = i.expires_at > Date.now() ? when(i.expires_at) : "expired";
    const tr = h("tr", {}, h("td", {}, i.name), h("td", {}, i.email), h("td", {}, i.role), h("td", {}, until), h("td", {}, revoke));
    tr.dataset.invitation = i.email;
    return tr;
  }));
}

async function patchAgent(id, change) {
  try { await post(`/api/v1/admin/agents/${id}`, change, "PATCH"); toast("Saved"); } catch (e) { toast(e.message); }
  loadAdmin();
}

function groupRow(g, list) {
  // Each member with a button that takes them out of the group.
  const members = g.members.map((id) => {
    const name = (list.find((a) => a.id === id) || {}).name || id;
    const out = h("button", { type: "button", class: "linkish", "aria-label": `Remove ${name} from ${g.name}`, onclick: async () => {
      try { await api(`/api/v1/admin/groups/${g.id}/members/${encodeURIComponent(id)}`, { method: "DELETE" }); loadAdmin(); } catch (e) { toast(e.message); }
    } }, "×");
    return h("span", { class: "member" }, name, " ", out, " ");
  });
  const rename = h("button", { type: "button", "aria-label": `Rename ${g.name}`, onclick: async () => {
    const name = prompt(`New name for ${g.name}`, g.name);
    if (!name || name === g.name) return;
    try { await post(`/api/v1/admin/groups/${g.id}`, { name }, "PATCH"); loadAdmin(); } catch (e) { toast(e.message); }
  } }, "Rename");
  const pickAgent = h("select", { "aria-label": `Agent to add to ${g.name}` }, ...list.filter((a) => !g.members.includes(a.id)).map((a) => h("option", { value: a.id }, a.name)));
  const add = h("button", { type: "button", onclick: async () => {
    if (!pickAgent.value) return;
    try { await post(`/api/v1/admin/groups/${g.id}/members`, { agent_id: pickAgent.value }); loadAdmin(); } catch (e) { toast(e.message); }
  } }, "Add");
  // The group's own address for its leads (a shared inbox); empty: none.
  const address = h("input", { type: "email", maxLength: 254, value: g.email || "", placeholder: "leads also to…", "aria-label": `Address for ${g.name}'s leads`,
    onchange: async (e) => {
      try { await post(`/api/v1/admin/groups/${g.id}`, { email: e.target.value.trim() }, "PATCH"); toast("Saved"); } catch (err) { toast(err.message); }
    } });
  // Its own hours, or the site's (unticked); saving null gives the site's back.
  const hours = h("details", {}, h("summary", {}, g.hours ? "Own business hours" : "Business hours: the site's"),
    hoursEditor(g.name, g.hours || null, (schedule) => post(`/api/v1/admin/groups/${g.id}`, { hours: schedule }, "PATCH")));
  // Deleting (not the default group): its chats waiting in its queue move to
  // the default queue; past chats and reports keep its name.
  const remove = g.is_default ? null : h("button", { type: "button", class: "danger", "aria-label": `Delete ${g.name}`, onclick: async () => {
    if (!confirm(`Delete the group ${g.name}? Its members leave it, chats waiting in its queue move to the default queue, and it is no longer offered. Past chats and reports keep its name.`)) return;
    try { await api(`/api/v1/admin/groups/${g.id}`, { method: "DELETE" }); toast(`${g.name} deleted`); loadAdmin(); loadGroups(); } catch (e) { toast(e.message); }
  } }, "Delete");
  const li = h("li", {}, h("strong", {}, g.name), g.is_default ? " (default)" : "", " ", openNow(g), ": ", ...(members.length ? members : ["no one "]),
    pickAgent, " ", add, " ", rename, remove ? " " : null, remove, " ", address, hours);
  li.dataset.group = g.name;
  return li;
}

// ----- proactive greetings ----------------------------------------------------------------
/** The rules with their figures; each can be switched off or deleted. */
async function loadGreetings(people) {
  const active = people.filter((a) => a.active && a.role !== "probe");
  $("gr-from").replaceChildren(h("option", { value: "" }, "The team"), ...active.map((a) => h("option", { value: a.id }, a.name)));
  const rules = await api("/api/v1/admin/greetings");
  $("greetings").replaceChildren(...rules.map((r) => {
    const when = [r.url_pattern && `page ${r.url_pattern}`, r.referrer_pattern && `from ${r.referrer_pattern}`, `after ${r.min_seconds} s`,
      r.min_pages > 1 && `${r.min_pages}+ pages`, r.visitor !== "any" && `${r.visitor} visitors`].filter(Boolean).join(", ");
    const from = r.from_agent_id ? (people.find((a) => a.id === r.from_agent_id) || {}).name || "?" : "The team";
    const input = { name: r.name, enabled: !r.enabled, url_pattern: r.url_pattern, referrer_pattern: r.referrer_pattern, min_seconds: r.min_seconds,
      min_pages: r.min_pages, visitor: r.visitor, from_agent_id: r.from_agent_id, message: r.message };
    const toggle = h("button", { type: "button", onclick: async () => {
      try { await post(`/api/v1/admin/greetings/${encodeURIComponent(r.id)}`, input, "PUT"); loadAdmin(); } catch (e) { toast(e.message); }
    } }, r.enabled ? "Switch off" : "Switch on");
    const remove = h("button", { type: "button", onclick: async () => {
      if (!confirm(`Delete the rule ${r.name}?`)) return;
      try { await api(`/api/v1/admin/greetings/${encodeURIComponent(r.id)}`, { method: "DELETE" }); loadAdmin(); } catch (e) { toast(e.message); }
    } }, "Delete");
    const tr = h("tr", {}, h("td", {}, r.name + (r.enabled ? "" : " (off)")), h("td", {}, when), h("td", {}, from), h("td", {}, r.message),
      h("td", {}, String(r.shown)), h("td", {}, String(r.started)), h("td", {}, toggle, " ", remove));
    tr.dataset.greeting = r.name;
    return tr;
  }));
}

// ----- business hours -------------------------------------------------------------------
/** The site's groups, each open or closed now (every agent sees them). */
function loadGroups() {
  api("/api/v1/groups").then((list) => {
    groups = list;
    fillAllFilters();
    if (selected) renderActions();
    $("groups-now").replaceChildren(...list.map((g) => {
      const li = h("li", { class: "sub" }, g.name, " ", openNow(g));
      li.dataset.group = g.name;
      return li;
    }));
  }, () => {});
}

let siteHours = null;
const DAYS = [["mon", "Monday"], ["tue", "Tuesday"], ["wed", "Wednesday"], ["thu", "Thursday"], ["fri", "Friday"], ["sat", "Saturday"], ["sun", "Sunday"]];

/** "open until 17:00" or "closed, opens Mon 09:00", in the viewer's locale. */
function openNow(g) {
  const n = g.now || { open: true };
  const at = n.open ? n.closes_at : n.reopens_at;
  const t = at ? fmt({ weekday: "short", hour: "2-digit", minute: "2-digit" }).format(new Date(at)) : "";
  const text = n.open ? (t ? `open until ${t}` : "open") : (t ? `closed, opens ${t}` : "closed");
  const el = h("span", { class: n.open ? "open-now" : "closed-now" }, `(${text})`);
  el.dataset.open = String(n.open);
  return el;
}

/** A form for a schedule: a zone, each weekday's intervals, the exceptions. */
function hoursEditor(label, hours, save) {
  const on = h("input", { type: "checkbox", checked: !!hours });
  const tz = h("input", { maxLength: 64, required: true, value: hours ? hours.time_zone : Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC", "aria-label": `${label}: time zone` });
  const days = DAYS.map(([key, name]) => {
    const value = hours ? (hours.weekly[key] || []).join(", ") : key === "sat" || key === "sun" ? "" : "09:00-17:00";
    const input = h("input", { value, placeholder: "closed", "aria-label": `${label}: ${name}` });
    input.dataset.day = key;
    return h("label", {}, name, input);
  });
  const exceptions = h("textarea", { rows: 3, placeholder: "2026-12-25 closed\n2026-12-24 09:00-12:00", "aria-label": `${label}: exceptions` });
  exceptions.value = hours ? hours.exceptions.map((e) => `${e.date} ${e.hours.length ? e.hours.join(", ") : "closed"}`).join("\n") : "";
  const list = (text) => text.split(",").map((x) => x.trim()).filter(Boolean);
  const form = h("form", { class: "hours", "aria-label": `${label}: business hours`, onsubmit: async (e) => {
    e.preventDefault();
    const weekly = Object.fromEntries(days.map((d) => [d.lastChild.dataset.day, list(d.lastChild.value)]));
    const exc = exceptions.value.split("\n").map((x) => x.trim()).filter(Boolean).map((line) => {
      const [date, ...rest] = line.split(/\s+/);
      const text = rest.join(" ");
      return { date, hours: /^closed$/i.test(text) ? [] : list(text) };
    });
    try {
      await save(on.checked ? { time_zone: tz.value.trim(), weekly, exceptions: exc } : null);
      toast("Saved");
      loadAdmin();
    } catch (err) { toast(err.message); }
  } },
  h("label", { class: "check wide" }, on, `${label}: keep business hours`),
  h("label", {}, "Time zone (IANA)", tz), ...days,
  h("label", { class: "wide" }, "Exceptions: a date, then its hours or \"closed\", one a line", exceptions),
  h("button", { type: "submit" }, "Save hours"));
  return form;
}

async function loadCanned() {
  try { canned = await api("/api/v1/canned"); } catch { return; }
  $("canned").replaceChildren(...canned.map((c) => {
    const li = h("li", {}, h("strong", {}, "/" + c.shortcut), " " + c.body + " ");
    li.dataset.shortcut = c.shortcut;
    if (!isAdmin()) return li;
    // Edit in place: the shortcut and the text become fields until saved.
    const edit = h("button", { type: "button", "aria-label": `Edit /${c.shortcut}`, onclick: () => {
      const shortcut = h("input", { value: c.shortcut, maxLength: 32, required: true, "aria-label": "Shortcut" });
      const body = h("textarea", { rows: 2, maxLength: 5000, required: true, "aria-label": "Text" });
      body.value = c.body;
      li.replaceChildren(h("form", { class: "grid", onsubmit: async (e) => {
        e.preventDefault();
        try { await post(`/api/v1/admin/canned/${c.id}`, { shortcut: shortcut.value, body: body.value }, "PATCH"); toast("Saved"); loadCanned(); } catch (err) { toast(err.message); }
      } }, shortcut, body, h("button", { type: "submit" }, "Save"), h("button", { type: "button", onclick: () => loadCanned() }, "Cancel")));
    } }, "Edit");
    const del = h("button", { type: "button", "aria-label": `Delete /${c.shortcut}`, onclick: async () => {
      try { await api(`/api/v1/admin/canned/${c.id}`, { method: "DELETE" }); loadCanned(); } catch (e) { toast(e.message); }
    } }, "Delete");
    li.append(edit, " ", del);
    return li;
  }));
}

/** Show one of the views (chat, admin, status, reports) and the tabs to the others. */
function showView(name) {
  for (const view of ["chat", "admin", "status", "reports"]) $(`${view}-view`).hidden = view !== name;
  $("chats-tab").hidden = name === "chat";
  $("reports-tab").hidden = name === "reports";
  $("admin-tab").hidden = name === "admin" || !isAdmin();
  $("status-tab").hidden = name === "status" || !isOperator();
}

// The status page, run by the operator: its code loads with the tab.
async function loadStatus() {
  try {
    const { renderStatus } = await import("./console-status.js");
    await renderStatus($("status-view"), { api, post, h, toast });
  } catch (e) { toast(e.message); }
}

// Reports, with their charts: the code loads with the tab.
async function loadReports() {
  try {
    const { renderReports } = await import("./console-reports.js");
    await renderReports($("reports-view"), { api, h, toast });
  } catch (e) { toast(e.message); }
}

// The site's bans, lifted ones too (every value, the reason above all, is text).
async function loadBans(people) {
  const list = await api("/api/v1/admin/bans?limit=200");
  const name = (id) => (people.find((a) => a.id === id) || {}).name || "—";
  $("bans-empty").hidden = list.length > 0;
  $("bans").replaceChildren(...list.map((b) => {
    const status = b.in_force ? "in force" : b.lifted_at ? `lifted by ${name(b.lifted_by)} ${when(b.lifted_at)}` : "ended";
    const lift = b.in_force ? h("button", { type: "button", onclick: async () => {
      try { await api(`/api/v1/admin/bans/${encodeURIComponent(b.id)}/lift`, { method: "POST" }); toast("Ban lifted"); } catch (e) { toast(e.message); }
      loadAdmin();
    } }, "Lift") : null;
    const tr = h("tr", {}, h("td", {}, when(b.created_at)), h("td", {}, b.visitor_id ? visitorLabel(b.visitor_id) : "—"),
      h("td", {}, b.cidr || "—"), h("td", {}, b.reason), h("td", {}, name(b.created_by)),
      h("td", {}, b.expires_at ? when(b.expires_at) : "until lifted"), h("td", {}, status), h("td", {}, lift));
    tr.dataset.ban = b.id;
    return tr;
  }));
}

// The site's API tokens, revoked ones too (every value is text; the secret is shown once, on creation).
async function loadApiTokens() {
  const list = await api("/api/v1/admin/api-tokens");
  $("api-tokens-empty").hidden = list.length > 0;
  $("api-tokens").replaceChildren(...list.map((t) => {
    const revoke = t.revoked_at ? null : h("button", { type: "button", "aria-label": `Revoke ${t.name}`, onclick: async () => {
      if (!confirm(`Revoke the token ${t.name}? Integrations using it stop working at once.`)) return;
      try { await api(`/api/v1/admin/api-tokens/${encodeURIComponent(t.id)}`, { method: "DELETE" }); toast("Token revoked"); } catch (e) { toast(e.message); }
      loadApiTokens().catch((e) => toast(e.message));
    } }, "Revoke");
    const tr = h("tr", {}, h("td", {}, t.name), h("td", {}, h("code", {}, t.prefix + "…")), h("td", {}, t.scopes.join(", ")),
      h("td", {}, when(t.created_at)), h("td", {}, t.last_used_at ? when(t.last_used_at) : "never"),
      h("td", {}, t.revoked_at ? `revoked ${when(t.revoked_at)}` : "active"), h("td", {}, revoke));
    tr.dataset.token = t.id;
    return tr;
  }));
}

// The site's webhook endpoints and, for one, its delivery log (every value is text).
const WEBHOOK_EVENTS = ["conversation.created", "conversation.assigned", "conversation.closed", "conversation.missed",
  "message.created", "offline_message.created", "conversation.rated"];

async function loadWebhooks() {
  const list = await api("/api/v1/admin/webhooks");
  $("webhooks-empty").hidden = list.length > 0;
  $("webhooks").replaceChildren(...list.map((w) => {
    const toggle = h("button", { type: "button", "aria-label": `${w.enabled ? "Disable" : "Enable"} ${w.name}`, onclick: async () => {
      try { await post(`/api/v1/admin/webhooks/${encodeURIComponent(w.id)}`, { enabled: !w.enabled }, "PATCH"); toast(w.enabled ? "Endpoint disabled" : "Endpoint enabled"); } catch (e) { toast(e.message); }
      loadWebhooks().catch((e) => toast(e.message));
    } }, w.enabled ? "Disable" : "Enable");
    const log = h("button", { type: "button", "aria-label": `Deliveries of ${w.name}`, onclick: () => loadWebhookLog(w).catch((e) => toast(e.message)) }, "Deliveries");
    // A new secret, shown once; the old one signs nothing from now on.
    const rotate = h("button", { type: "button", "aria-label": `New secret for ${w.name}`, onclick: async () => {
      if (!confirm(`Make a new signing secret for ${w.name}? The old one stops signing at once: give the receiver the new one.`)) return;
      try {
        const made = await post(`/api/v1/admin/webhooks/${encodeURIComponent(w.id)}/rotate-secret`, {});
        $("webhook-secret-value").textContent = made.secret;
        $("webhook-secret").hidden = false;
        toast("New secret made");
      } catch (e) { toast(e.message); }
    } }, "New secret");
    const remove = h("button", { type: "button", "aria-label": `Delete ${w.name}`, onclick: async () => {
      if (!confirm(`Delete the endpoint ${w.name}? Nothing more is sent to it, and what waits for it is dropped.`)) return;
      try { await api(`/api/v1/admin/webhooks/${encodeURIComponent(w.id)}`, { method: "DELETE" }); toast("Endpoint deleted"); } catch (e) { toast(e.message); }
      $("webhook-log-box").hidden = true;
      loadWebhooks().catch((e) => toast(e.message));
    } }, "Delete");
    const status = w.enabled ? (w.failing_since ? `failing since ${when(w.failing_since)}` : "enabled")
      : w.disabled_reason ? `disabled ${when(w.disabled_at)}: ${w.disabled_reason}` : "disabled";
    const tr = h("tr", {}, h("td", {}, w.name), h("td", {}, h("code", {}, w.url)), h("td", {}, w.events.join(", ")),
      h("td", {}, status), h("td", {}, toggle, " ", log, " ", rotate, " ", remove));
    tr.dataset.webhook = w.id;
    return tr;
  }));
}

async function loadWebhookLog(w) {
  const list = await api(`/api/v1/admin/webhooks/${encodeURIComponent(w.id)}/deliveries`);
  $("webhook-log-title").textContent = `Delivery log of ${w.name}`;
  $("webhook-log-box").hidden = false;
  $("webhook-log").replaceChildren(...list.map((d) => {
    const state = d.status === "queued" && d.attempts > 0 ? `queued, next try ${when(d.next_at)}`
      : d.status === "sent" && d.sent_at ? `sent ${when(d.sent_at)}` : d.status;
    const again = h("button", { type: "button", onclick: async () => {
      try { await api(`/api/v1/admin/deliveries/${encodeURIComponent(d.id)}/retry`, { method: "POST" }); toast("Queued to send again"); } catch (e) { toast(e.message); }
      loadWebhookLog(w).catch((e) => toast(e.message));
    } }, "Send again");
    const what = h("td", {}, h("div", {}, d.template), d.preview ? h("div", { class: "sub" }, d.preview) : null);
    const tr = h("tr", {}, h("td", {}, when(d.created_at)), what, h("td", {}, state), h("td", {}, String(d.attempts)),
      h("td", {}, d.last_error || "—"), h("td", {}, again));
    tr.dataset.delivery = d.id;
    return tr;
  }));
}

// The site's audit log, a page at a time (every value is text; values as JSON).
async function loadAudit(before) {
  const page = await api(`/api/v1/admin/audit?limit=100${before ? "&before=" + before : ""}`);
  const value = (v) => (v == null ? "—" : typeof v === "string" ? v : JSON.stringify(v));
  const rows = page.map((e) => {
    const tr = h("tr", {}, h("td", {}, when(e.at)), h("td", {}, e.actor_name), h("td", {}, e.action), h("td", {}, e.target || "—"),
      h("td", { class: "json" }, value(e.before)), h("td", { class: "json" }, value(e.after)));
    tr.dataset.action = e.action;
    return tr;
  });
  if (before) $("audit").append(...rows); else $("audit").replaceChildren(...rows);
  const more = $("audit-more");
  more.hidden = page.length < 100;
  more.onclick = () => loadAudit(page[page.length - 1].at).catch((e) => toast(e.message));
}

// The site's outbox: queued, sent and failed deliveries (every value is text).
async function loadDeliveries() {
  const status = $("d-status").value;
  const list = await api(`/api/v1/admin/deliveries?limit=200${status ? "&status=" + status : ""}`);
  $("deliveries-empty").hidden = list.length > 0;
  $("deliveries").replaceChildren(...list.map(deliveryRow));
}

function deliveryRow(d) {
  const state = d.status === "queued" && d.attempts > 0 ? `queued, next try ${when(d.next_at)}`
    : d.status === "sent" && d.sent_at ? `sent ${when(d.sent_at)}` : d.status;
  const what = h("td", {}, h("div", {}, d.subject || d.template), d.preview ? h("div", { class: "sub" }, d.preview) : null,
    d.conversation_id ? h("button", { type: "button", class: "linkish", onclick: () => { $("chats-tab").click(); select(d.conversation_id); } }, "Open conversation") : null);
  const again = h("button", { type: "button", onclick: async () => {
    try { await api(`/api/v1/admin/deliveries/${encodeURIComponent(d.id)}/retry`, { method: "POST" }); toast("Queued to send again"); } catch (e) { toast(e.message); }
    loadDeliveries().catch((e) => toast(e.message));
  } }, "Send again");
  const tr = h("tr", {}, h("td", {}, when(d.created_at)), h("td", {}, d.recipient), what, h("td", {}, state),
    h("td", {}, String(d.attempts)), h("td", {}, d.last_error || "—"), h("td", {}, again));
  tr.dataset.delivery = d.id;
  tr.dataset.status = d.status;
  return tr;
}

// Sites of the installation: the operator's only (the server checks it).
async function loadSites() {
  const sites = await api("/api/v1/operator/sites");
  $("sites").replaceChildren(...sites.map((s) => {
    const tr = h("tr", {}, h("td", {}, s.name), h("td", {}, h("code", {}, s.widget_key)), h("td", {}, when(s.created_at)));
    tr.dataset.site = s.id;
    return tr;
  }));
}

function wireAdmin() {
  $("admin-tab").onclick = () => { showView("admin"); loadAdmin(); };
  $("chats-tab").onclick = () => showView("chat");
  $("status-tab").onclick = () => { showView("status"); loadStatus(); };
  $("reports-tab").onclick = () => { showView("reports"); loadReports(); };
  $("d-status").onchange = () => loadDeliveries().catch((e) => toast(e.message));
  $("d-reload").onclick = () => loadDeliveries().catch((e) => toast(e.message));
  $("b-reload").onclick = () => loadAdmin();
  $("w-events").append(...WEBHOOK_EVENTS.map((name) => h("label", {}, h("input", { type: "checkbox", value: name, checked: name === "conversation.closed" }), " " + name)));
  $("webhook-form").onsubmit = async (e) => {
    e.preventDefault();
    const events = [...$("w-events").querySelectorAll("input:checked")].map((i) => i.value);
    try {
      const made = await post("/api/v1/admin/webhooks", { name: $("w-name").value, url: $("w-url").value.trim(), events });
      $("webhook-secret-value").textContent = made.secret;
      $("webhook-secret").hidden = false;
      $("w-name").value = ""; $("w-url").value = "";
      loadWebhooks().catch((err) => toast(err.message));
    } catch (err) { toast(err.message); }
  };
  $("token-form").onsubmit = async (e) => {
    e.preventDefault();
    const scopes = ["read", "write", "admin"].filter((s) => $(`t-${s}`).checked);
    try {
      const made = await post("/api/v1/admin/api-tokens", { name: $("t-name").value, scopes });
      $("token-secret-value").textContent = made.secret;
      $("token-secret").hidden = false;
      $("t-name").value = "";
      loadApiTokens().catch((err) => toast(err.message));
    } catch (err) { toast(err.message); }
  };
  $("copy-snippet").onclick = () => navigator.clipboard && navigator.clipboard.writeText($("snippet").value).then(() => toast("Copied"), () => {});
  $("settings-form").onsubmit = async (e) => {
    e.preventDefault();
    const body = {
      color: $("s-color").value, position: $("s-position").value, greeting: $("s-greeting").value,
      prechat: { name: $("s-name").value, email: $("s-email").value },
      allowed_origins: $("s-origins").value.split("\n").map((x) => x.trim()).filter(Boolean),
      missed_chat_minutes: Number($("s-missed").value),
      transcript_archive: $("s-archive").value.trim(),
      reply_to: $("s-reply-to").value.trim(),
      // Saved apart (Business hours); kept as loaded.
      hours: siteHours,
      language: $("s-language").value,
      strings: Object.fromEntries($("s-strings").value.split("\n").map((x) => x.trim()).filter(Boolean).map((line) => {
        const at = line.indexOf("=");
        return at < 0 ? [line, ""] : [line.slice(0, at).trim(), line.slice(at + 1).trim()];
      })),
      time_zone: $("s-tz").value.trim(),
      retention_days: Number($("s-retention").value),
      team_name: $("s-team").value.trim(),
      logo_url: $("s-logo").value.trim(),
      reply_time: $("s-reply-time").value,
      audit_retention_days: Number($("s-audit-retention").value),
      visitor_limits: Object.fromEntries(Object.entries(LIMITS).map(([id, key]) => [key, Number($(id).value)])),
      attachments: { max_bytes: Math.round(Number($("s-att-max").value) * 1048576), types: $("s-att-types").value.split("\n").map((x) => x.trim()).filter(Boolean) },
    };
    try { await post("/api/v1/admin/site/settings", body, "PUT"); $("settings-status").textContent = "Saved"; } catch (err) { $("settings-status").textContent = err.message; }
  };
  $("greeting-form").onsubmit = async (e) => {
    e.preventDefault();
    const rule = { name: $("gr-name").value, url_pattern: $("gr-url").value, referrer_pattern: $("gr-ref").value, min_seconds: Number($("gr-seconds").value),
      min_pages: Number($("gr-pages").value), visitor: $("gr-visitor").value, from_agent_id: $("gr-from").value || null, message: $("gr-message").value };
    try { await post("/api/v1/admin/greetings", rule); e.target.reset(); toast("Rule added"); loadAdmin(); } catch (err) { toast(err.message); }
  };
  $("agent-form").onsubmit = async (e) => {
    e.preventDefault();
    try {
      const who = { name: $("n-name").value, email: $("n-email").value, role: $("n-role").value };
      const password = $("n-password").value;
      if (password) await post("/api/v1/admin/agents", { ...who, password });
      else await post("/api/v1/admin/invitations", who);
      e.target.reset();
      toast(password ? "Agent created" : `Invitation sent to ${who.email}`);
      loadAdmin();
    } catch (err) { toast(err.message); }
  };
  $("site-form").onsubmit = async (e) => {
    e.preventDefault();
    const body = { name: $("site-name").value, admin: { name: $("site-admin-name").value, email: $("site-admin-email").value, password: $("site-admin-password").value } };
    try { await post("/api/v1/operator/sites", body); e.target.reset(); toast("Site created"); loadSites().catch((err) => toast(err.message)); } catch (err) { toast(err.message); }
  };
  $("site-rename").onsubmit = async (e) => {
    e.preventDefault();
    try { await post("/api/v1/admin/site", { name: $("site-title").value }, "PATCH"); toast("Site renamed"); } catch (err) { toast(err.message); }
  };
  $("reset-form").onsubmit = async (e) => {
    e.preventDefault();
    const who = $("reset-agent").selectedOptions[0];
    try {
      await post(`/api/v1/admin/agents/${$("reset-agent").value}`, { password: $("reset-password").value }, "PATCH");
      $("reset-password").value = "";
      toast(`Password set; ${who ? who.textContent : "they"} must log in with it`);
    } catch (err) { toast(err.message); }
  };
  $("group-form").onsubmit = async (e) => {
    e.preventDefault();
    try { await post("/api/v1/admin/groups", { name: $("g-name").value }); e.target.reset(); loadAdmin(); } catch (err) { toast(err.message); }
  };
  $("canned-form").onsubmit = async (e) => {
    e.preventDefault();
    try { await post("/api/v1/admin/canned", { shortcut: $("c-shortcut").value, body: $("c-body").value }); e.target.reset(); loadCanned(); } catch (err) { toast(err.message); }
  };
}

// ----- start ---------------------------------------------------------------------------------
function startApp() {
  $("booting").hidden = true;
  $("login").hidden = true;
  $("app").hidden = false;
  $("me").textContent = `${me.name} (${me.role})`;
  $("lead-emails").checked = !!me.lead_emails;
  showView("chat");
  // The operator runs the status page from its tab; others only read it.
  $("status-link").hidden = isOperator();
  $("sites-section").hidden = !isOperator();
  if (isOperator() && !$("n-role").querySelector("option[value=operator]")) {
    $("n-role").append(h("option", { value: "operator" }, "Operator"));
  }
  connect();
  loadOffline();
  loadMissed();
  loadCanned();
  loadGroups();
  setInterval(() => !document.hidden && loadGroups(), 60000);
  api("/api/v1/attachments/limits").then((l) => { attachLimits = l; }, () => {});
  $("all-section").hidden = !isAdmin();
  if (isAdmin()) { loadAll(); setInterval(() => !document.hidden && !$("chat-view").hidden && loadAll(), 10000); }
}

// A form's POST before there is an access token (login, accepting an
// invitation): the answer's body, or its error's message shown in `errorId`.
async function postForm(path, body, errorId) {
  $(errorId).textContent = "";
  try {
    const r = await fetch(path, { method: "POST", headers: { ...CSRF, "content-type": "application/json" }, body: JSON.stringify(body) });
    const answer = await r.json().catch(() => null);
    if (r.ok) return answer;
    $(errorId).textContent = (answer && answer.error && answer.error.message) || `HTTP ${r.status}`;
  } catch {
    $(errorId).textContent = "Cannot reach the server; try again in a moment.";
  }
  return null;
}

function wire() {
  $("login-form").onsubmit = async (e) => {
    e.preventDefault();
    const body = await postForm("/api/v1/console/login", { email: $("email").value, password: $("password").value }, "login-error");
    if (!body) return;
    $("password").value = "";
    setCreds(body);
    startApp();
  };
  $("logout").onclick = async () => {
    try { await fetch("/api/v1/console/logout", { method: "POST", headers: CSRF }); } catch { /* ignore */ }
    location.reload();
  };
  $("photo-file").onchange = (e) => { if (e.target.files[0]) setOwnPhoto(e.target.files[0]); };
  $("photo-remove").onclick = () => setOwnPhoto(null);
  $("password-open").onclick = () => { $("pw-error").textContent = $("photo-error").textContent = ""; showOwnPhoto(); $("password-dialog").showModal(); };
  $("pw-cancel").onclick = () => $("password-dialog").close();
  $("password-form").onsubmit = async (e) => {
    e.preventDefault();
    try {
      await post("/api/v1/me/password", { current_password: $("pw-current").value, new_password: $("pw-new").value });
      // Every session ended, this one too: to the login page.
      location.reload();
    } catch (err) { $("pw-error").textContent = err.message; }
  };
  // Sounds, on unless turned off (kept per browser).
  $("sound").checked = localStorage.getItem("holdfast:sound") !== "off";
  $("sound").onchange = (e) => localStorage.setItem("holdfast:sound", e.target.checked ? "on" : "off");
  $("lead-emails").onchange = async (e) => {
    try {
      me = { ...me, ...(await post("/api/v1/me/lead-emails", { on: e.target.checked }, "PUT")) };
      toast(me.lead_emails ? "Leads will be emailed to you" : "No more lead emails");
    } catch (err) { toast(err.message); e.target.checked = !e.target.checked; }
  };
  // A small emoji picker: inserts at the cursor.
  const EMOJI = "🙂 😀 😉 😊 🙏 👍 👋 👌 🎉 ❤️ ✅ ❌ ⚠️ 💡 📦 🚚 💳 📧 📞 🕒 😕 😢 😅 🤔".split(" ");
  $("emoji").replaceChildren(...EMOJI.map((e) => h("button", { type: "button", "aria-label": `Insert ${e}`, onclick: () => {
    const r = $("reply"), at = r.selectionStart ?? r.value.length;
    r.value = r.value.slice(0, at) + e + r.value.slice(r.selectionEnd ?? at);
    r.selectionStart = r.selectionEnd = at + e.length;
    $("emoji").hidden = true;
    $("emoji-open").setAttribute("aria-expanded", "false");
    r.focus();
  } }, e)));
  $("emoji-open").onclick = () => {
    $("emoji").hidden = !$("emoji").hidden;
    $("emoji-open").setAttribute("aria-expanded", String(!$("emoji").hidden));
  };
  $("availability").onchange = (e) => send({ type: "set_availability", availability: e.target.value });
  $("notify").onclick = () => window.Notification && Notification.requestPermission().then((p) => { $("notify").hidden = p === "granted"; });
  if (window.Notification && Notification.permission === "granted") $("notify").hidden = true;
  $("search-form").onsubmit = search;
  for (const id of ["search-status", "search-agent", "search-group", "search-from", "search-to"]) $(id).onchange = () => search();
  $("results-more").onclick = () => search(null, true);
  // Back to the tab: what the open conversation shows is read now.
  document.addEventListener("visibilitychange", () => {
    const c = !document.hidden && convs.get(selected);
    if (c) { c.unread = 0; markRead(c); renderLists(); }
  });
  $("claim").onclick = () => selected && send({ type: "claim", conv: selected });
  $("take-over").onclick = () => selected && send({ type: "transfer", conv: selected, to_agent: me.id });
  for (const id of ["all-status", "all-agent", "all-group"]) $(id).onchange = loadAll;
  $("close").onclick = () => selected && send({ type: "close", conv: selected });
  $("transfer-go").onclick = () => {
    const [kind, id] = $("transfer").value.split(":");
    if (selected && id) send({ type: "transfer", conv: selected, [kind === "agent" ? "to_agent" : "to_group"]: id });
  };
  $("composer").onsubmit = onSend;
  $("note-mode").onchange = noteMode;
  $("attach").onclick = () => $("attach-input").click();
  $("attach-input").onchange = () => { attachAll($("attach-input").files); $("attach-input").value = ""; };
  $("reply").addEventListener("paste", (e) => attachAll(e.clipboardData && e.clipboardData.files, e));
  $("log").addEventListener("dragover", (e) => e.preventDefault());
  $("log").addEventListener("drop", (e) => attachAll(e.dataTransfer.files, e));
  $("email-reply").onsubmit = onEmailReply;
  $("reply").addEventListener("input", onReplyInput);
  $("reply").addEventListener("keydown", onReplyKey);
  wireAdmin();
}

// An invitation's link: #invite=TOKEN (a fragment, so it never reaches a
// server log). Accepting makes the account; then the console logs in.
function acceptInvitation(token) {
  $("booting").hidden = true;
  $("accept").hidden = false;
  $("accept-password").focus();
  $("accept-form").onsubmit = async (e) => {
    e.preventDefault();
    const agent = await postForm("/api/v1/invitations/accept", { token, password: $("accept-password").value }, "accept-error");
    if (!agent) return;
    history.replaceState(null, "", location.pathname);
    $("accept").hidden = true;
    $("login").hidden = false;
    $("email").value = agent.email;
    $("password").value = $("accept-password").value;
    $("accept-password").value = "";
    $("login-form").requestSubmit();
  };
}

async function boot() {
  wire();
  const invite = /^#invite=([\w.-]+)$/.exec(location.hash);
  if (invite) return acceptInvitation(invite[1]);
  for (let i = 0; ; i++) {
    const r = await refresh();
    if (r === "ok") return startApp();
    if (r === "ended") break;
    // The server is unreachable: keep the session, wait, try again.
    $("booting").textContent = "Reconnecting…";
    await new Promise((ok) => setTimeout(ok, Math.random() * Math.min(30000, 500 * 2 ** i)));
  }
  $("booting").hidden = true;
  $("login").hidden = false;
  $("email").focus();
}

boot();
