// Holdfast visitor widget. Embed with one tag:
//   <script async src="https://HOST/widget.js" data-site="WIDGET_KEY"></script>
// Everything lives in one shadow root (no CSS leaks either way) and one
// global, `Holdfast`. Chat text is only ever set as text, never as HTML.
// The connection resumes by cursor, resends unacknowledged messages with
// their client ids, and backs off with full jitter (docs/protocol.md).
(() => {
  "use strict";
  const me = document.currentScript;
  if (!me || window.Holdfast) return;
  const key = me.dataset.site;
  const base = new URL(me.src, location.href).origin;
  const wsBase = base.replace(/^http/, "ws");
  const storeKey = "holdfast:" + key;
  const load = () => {
    try { return JSON.parse(localStorage.getItem(storeKey)) || {}; } catch { return {}; }
  };
  const saved = load();
  saved.outbox = Array.isArray(saved.outbox) ? saved.outbox : [];
  const save = () => { try { localStorage.setItem(storeKey, JSON.stringify(saved)); } catch { /* private mode */ } };

  let site = null, agentsOnline = true, conv = null, agentName = "", sock = null, welcomed = false;
  // Agents' photos by agent id, from the `assigned` events (a path of the
  // server's own, loaded from it), and the photo of the agent in the chat.
  const faces = {};
  let agentFace = "";
  let attempt = 0, timer = 0, pinger = 0, laterMs = null, open = false, typingTimer = 0;
  let myTyping = false, myTypingTimer = 0, audio = null, downSince = 0, transcripts = false;
  // Business hours: whether the team is in, and when that changes (ms).
  let hours = { open: true }, hoursTimer = 0;
  // Read receipts: the newest agent message shown, and how far our own
  // `read` events (replayed after a reload too) say we have read.
  let lastAgentSeq = 0, readUpTo = 0, unreadSeqs = [];
  // After a welcome, the outbox waits until the replay of the open
  // conversation reaches this { conv, seq }: a message stored before the
  // cut shows up there and leaves the outbox instead of being resent.
  let replayTo = null;
  // Never resend past the server's idempotency window (docs/protocol.md §5).
  const RESEND_WITHIN_MS = 24 * 60 * 60 * 1000;
  const cursors = {};
  // ----- words -------------------------------------------------------------
  // English is built in; the other languages are files of the server's
  // (/widget-i18n/LANG.json), fetched when the panel first opens, so what a
  // page loads before that stays small. A site may force a language and
  // override any string (its settings' `language` and `strings`).
  // Keep the keys in step with assets/widget-i18n/*.json.
  const EN = {open: "Open chat", close: "Close chat", open_unread: "Open chat, {0} unread", chat: "Chat", messages: "Messages", before_start: "Before we start", your_name: "Your name", your_email: "Your email", required: "required", optional: "optional", start: "Start chat", intro_required: "Tell us who you are, then start the chat.", intro_optional: "Tell us who you are if you like, or start the chat right away.", leave: "Leave a message", message: "Message", away: "We're away right now.", closed_until: "We're closed right now; we're back {0}.", closed_until_today: "We're closed right now; we're back at {0}.", closed_now: "we're closed right now", leave_intro: "Leave a message and we'll get back to you by email.", thanks: "Thanks! Your message was sent; we'll reply by email.", unavailable: "Chat is unavailable.", type_here: "Type a message…", send: "Send", email_me: "Email me this conversation", sending: "Sending…", will_email: "We'll email this conversation to {0}.", no_server: "Could not reach the server; please try again.", comment: "Comment (optional)", anything: "Anything to add? (optional)", how_was: "How was this chat?", good: "Good", bad: "Bad", rate: "Rate this chat", rated: "Thanks for your rating!", sending_msg: "Sending: {0}", not_sent: "Not sent: {0}", too_long_wait: "it waited too long", reconnecting: "Reconnecting…", joined: "{0} joined the chat", an_agent: "An agent", transferring: "You're being transferred to another agent…", ended: "The chat has ended. Write again any time.", queue: "You are number {0} in the queue", typing: "{0} is typing…", agent: "Agent", erased: "(message erased)", greeting: "Hi! How can we help?", attach: "Attach a file", replies_minutes: "Typically replies in a few minutes", replies_hours: "Typically replies in a few hours", replies_day: "Typically replies within a day", too_large: "it is larger than {0}", type_refused: "this type of file is not allowed"};
  const LANGS = "ar de es fr he it ja nl pl pt sv tr zh".split(" ");
  let words = EN, langReady = null;
  const t = (key, ...args) => String(words[key] != null ? words[key] : EN[key]).replace(/\{(\d)\}/g, (_, i) => args[i]);
  // Elements whose text (or an attribute) is a string of the table.
  const worded = [];
  const say = (el, key, attr) => { worded.push([el, key, attr]); return el; };
  const pending = new Map(); // client_id -> message element
  const rateForms = {}; // conv -> its rating form, until rated

  // ----- DOM helpers (text only) ------------------------------------------
  const h = (tag, props = {}, ...kids) => {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k in el && typeof v !== "string") el[k] = v;
      else el.setAttribute(k, v);
    }
    el.append(...kids);
    return el;
  };
  // Text with http(s) links made clickable; everything else stays text.
  const rich = (el, text) => {
    const re = /\bhttps?:\/\/[^\s<>"']+/gi;
    let last = 0, m;
    while ((m = re.exec(text))) {
      const url = m[0].replace(/[.,;:!?)\]]+$/, "");
      el.append(text.slice(last, m.index));
      let u = null;
      try { u = new URL(url); } catch { /* not a URL */ }
      if (u && (u.protocol === "http:" || u.protocol === "https:")) {
        el.append(h("a", { href: u.href, target: "_blank", rel: "noopener noreferrer" }, url));
      } else el.append(url);
      last = m.index + url.length;
      re.lastIndex = last;
    }
    el.append(text.slice(last));
    return el;
  };

  // Text on the site's colour: white or near-black, whichever contrasts
  // more (WCAG 2 relative luminance), so a yellow stays readable.
  function ink(hex) {
    const lum = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
      .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4))
      .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
    return (1.05 / (lum + 0.05) >= (lum + 0.05) / (0.0095 + 0.05)) ? "#fff" : "#111827";
  }

  const css = `
:host{all:initial}
*{box-sizing:border-box;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:14px;line-height:1.4}
.launcher{position:fixed;bottom:16px;right:16px;width:56px;height:56px;border-radius:50%;border:0;background:var(--a);color:var(--t);cursor:pointer;box-shadow:0 4px 12px rgba(0,0,0,.25);z-index:2147483000;display:grid;place-items:center}
:host(.left) .launcher,:host(.left) .panel,:host(.left) .bubble{right:auto;left:16px}
.bubble{position:fixed;bottom:84px;right:16px;max-width:min(280px,calc(100vw - 32px));padding:10px 32px 10px 12px;background:#fff;color:#111;border-radius:12px;box-shadow:0 6px 20px rgba(0,0,0,.25);z-index:2147483000;cursor:pointer;white-space:pre-wrap;overflow-wrap:anywhere}
.bubble strong{display:block;font-size:12px;color:#475569}
.bx{position:absolute;top:2px;right:2px;background:none;border:0;font-size:18px;cursor:pointer;color:#475569;width:28px;height:28px}
@media (max-width:480px){.bubble{display:none!important}}
.badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 5px;border-radius:10px;background:#dc2626;color:#fff;font-size:12px;line-height:20px}
.panel{position:fixed;bottom:84px;right:16px;width:min(360px,calc(100vw - 16px));height:min(540px,calc(100vh - 100px));display:flex;flex-direction:column;background:#fff;color:#111;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.3);overflow:hidden;z-index:2147483000;animation:pop .15s ease-out}
@keyframes pop{from{opacity:0;transform:translateY(8px)}}
@media (max-width:480px){.panel,:host(.left) .panel{inset:0;width:auto;height:auto;border-radius:0;animation:none}:host(.open) .launcher{display:none}}
[hidden]{display:none!important}
header{background:var(--a);color:var(--t);padding:10px 12px;display:flex;align-items:center;gap:10px}
.avatar{flex:none;width:32px;height:32px;border-radius:50%;background:rgba(127,127,127,.3);display:grid;place-items:center;font-weight:600;overflow:hidden}.avatar img{width:100%;height:100%;object-fit:cover}
.title{font-weight:600}.sub{font-size:12px;opacity:.9}
.x{margin-inline-start:auto;background:none;border:0;color:var(--t);font-size:22px;cursor:pointer;width:36px;height:36px}
.log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:6px;background:#f8fafc}
.msg{max-width:80%;padding:8px 10px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere}
.them{background:#e2e8f0;align-self:flex-start}
.from{display:block;font-size:11px;opacity:.75}
.me{background:var(--a);color:var(--t);align-self:flex-end}
.me a{color:var(--t)}
.pending{opacity:.6}.failed{outline:2px solid #dc2626}
.sys{align-self:center;font-size:12px;color:#475569;text-align:center}
.typing{font-size:12px;color:#475569;padding:0 12px;min-height:18px}
form{padding:10px;border-top:1px solid #e2e8f0;display:flex;flex-direction:column;gap:6px;background:#fff}
form.row{flex-direction:row;align-items:flex-end}
label{font-size:12px;color:#334155;display:flex;flex-direction:column;gap:2px}
input,textarea{font:inherit;font-size:16px;padding:8px;border:1px solid #94a3b8;border-radius:8px;width:100%;color:#111;background:#fff}
textarea{resize:none}
.send{background:var(--a);color:var(--t);border:0;border-radius:8px;padding:8px 14px;cursor:pointer;font-weight:600}
.btns{display:flex;gap:6px}.btns .send{flex:1}
.file{display:block}.msg img{display:block;max-width:100%;max-height:180px;border-radius:6px}.msg img.face{display:inline-block;width:20px;height:20px;border-radius:50%;object-fit:cover;vertical-align:middle;margin-inline-end:6px}.clip{background:none;border:0;font-size:20px;cursor:pointer;padding:6px}
:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
@media (prefers-reduced-motion:reduce){*{transition:none!important;animation:none!important}}`;

  // ----- the UI ------------------------------------------------------------
  const host = h("div", { id: "holdfast-chat" });
  const root = host.attachShadow({ mode: "open" });
  const badge = h("span", { class: "badge", hidden: true });
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "28");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  const launcher = h("button", { class: "launcher", type: "button", "aria-expanded": "false", "aria-controls": "hf-panel", onclick: () => toggle(!open) }, svg, badge);
  const avatar = h("span", { class: "avatar", "aria-hidden": "true" });
  const title = h("div", { class: "title" });
  const sub = h("div", { class: "sub", role: "status" });
  const log = say(h("div", { class: "log", role: "log", "aria-live": "polite" }), "messages", "aria-label");
  const typing = h("div", { class: "typing", "aria-live": "polite" });
  const field = (key, props) => h("label", {}, say(h("span"), key), h(props.rows ? "textarea" : "input", props));
  const preIntro = h("div", { class: "sys" });
  const prechat = say(h("form", { class: "prechat", onsubmit: onPrechat }, preIntro), "before_start", "aria-label");
  const preName = field("your_name", { name: "name", autocomplete: "name", maxLength: 200 });
  const preEmail = field("your_email", { name: "email", type: "email", autocomplete: "email", maxLength: 254 });
  prechat.append(preName, preEmail, say(h("button", { class: "send", type: "submit" }), "start"));
  const offIntro = h("div", { class: "sys" });
  const offline = say(h("form", { class: "offline", onsubmit: onLeave },
    offIntro,
    field("your_name", { name: "name", autocomplete: "name", maxLength: 200 }),
    field("your_email", { name: "email", type: "email", autocomplete: "email", required: true, maxLength: 254 }),
    field("message", { name: "body", rows: 3, required: true, maxLength: 5000 }),
    say(h("button", { class: "send", type: "submit" }), "leave")), "leave", "aria-label");
  const thanks = say(h("div", { class: "sys thanks", hidden: true }), "thanks");
  // A banned visitor (or address) is told this and nothing more.
  const unavailable = say(h("div", { class: "sys unavailable", hidden: true }), "unavailable");
  let banned = false;
  const input = say(say(h("textarea", { rows: 2, maxLength: 5000, onkeydown: onKey, oninput: onTyping }), "message", "aria-label"), "type_here", "placeholder");
  // Files: a picker, a paste into the message, or a drop on the panel.
  const many = (list, e) => { if (list && list.length) { if (e) e.preventDefault(); [...list].forEach(attach); } };
  input.addEventListener("paste", (e) => many(e.clipboardData && e.clipboardData.files, e));
  const picker = h("input", { type: "file", multiple: true, hidden: true, onchange: () => { many(picker.files); picker.value = ""; } });
  const clip = say(h("button", { class: "clip", type: "button", onclick: () => picker.click() }, "📎"), "attach", "aria-label");
  const composer = h("form", { class: "row composer", onsubmit: onSend }, picker, clip, input, say(h("button", { class: "send", type: "submit" }), "send"));
  const panel = say(h("section", { class: "panel", id: "hf-panel", role: "dialog", hidden: true, ondragover: (e) => e.preventDefault(), ondrop: (e) => many(e.dataTransfer.files, e), onkeydown: (e) => e.key === "Escape" && toggle(false) },
    h("header", {}, avatar, h("div", {}, title, sub), say(h("button", { class: "x", type: "button", onclick: () => toggle(false) }, "×"), "close", "aria-label")),
    log, typing, prechat, offline, thanks, unavailable, composer), "chat", "aria-label");

  /** Put the table's words on the page, in its direction. */
  function reword() {
    for (const [el, key, attr] of worded) {
      if (attr) el.setAttribute(attr, t(key));
      else el.textContent = t(key);
    }
    panel.dir = words._dir === "rtl" ? "rtl" : "ltr";
    panel.lang = words._lang || "en";
    if (site) { header(); view(); showUnread(); }
  }
  /** The site's forced language, else the browser's, if we ship it. */
  function language() {
    const s = (site && site.settings) || {};
    const wanted = s.language || (navigator.languages && navigator.languages[0]) || navigator.language || "en";
    const code = String(wanted).toLowerCase().split("-")[0];
    return LANGS.includes(code) ? code : "en";
  }
  /** Fetch the visitor's language once (a second at most), then reword. */
  function loadWords() {
    const code = language();
    const overrides = (site && site.settings && site.settings.strings) || {};
    langReady = langReady || (code === "en" ? Promise.resolve({}) : Promise.race([
      fetch(`${base}/widget-i18n/${code}.json`).then((r) => (r.ok ? r.json() : {})).catch(() => ({})),
      new Promise((ok) => setTimeout(() => ok({}), 1000)),
    ])).then((table) => {
      words = { ...EN, ...table, ...overrides, _lang: table._dir ? code : "en", _dir: table._dir };
      reword();
    });
    return langReady;
  }

  // ----- proactive greetings ------------------------------------------------
  // This visit (this tab, until it closes): pages seen, and whether a
  // greeting showed (once a visit at most). A visit that is not this
  // browser's first is a returning visitor's.
  const visitKey = storeKey + ":visit";
  let visit = null;
  try { visit = JSON.parse(sessionStorage.getItem(visitKey)); } catch { /* none */ }
  if (!visit || !visit.pages) { visit = { pages: 0 }; saved.visits = (saved.visits || 0) + 1; save(); }
  visit.pages++;
  const saveVisit = () => { try { sessionStorage.setItem(visitKey, JSON.stringify(visit)); } catch { /* private mode */ } };
  saveVisit();
  const pageStart = Date.now();
  let greeting = null, greetTimer = 0;
  // `*` stands for anything; an empty pattern matches everything.
  const glob = (pattern, text) => !pattern || new RegExp("^" + pattern.split("*").map((x) => x.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$", "i").test(text || "");
  const bubble = h("div", { class: "bubble", role: "status", hidden: true, onclick: () => toggle(true) });
  function armGreetings(rules) {
    clearTimeout(greetTimer);
    if (visit.greeted || !Array.isArray(rules)) return;
    const returning = (saved.visits || 1) > 1;
    const rule = rules.find((r) => glob(r.url_pattern, location.href) && glob(r.referrer_pattern, document.referrer)
      && visit.pages >= r.min_pages && (r.visitor === "any" || (r.visitor === "returning") === returning));
    if (rule) greetTimer = setTimeout(() => greet(rule), Math.max(0, rule.min_seconds * 1000 - (Date.now() - pageStart)));
  }
  // Only when someone could answer, and never over an open panel or chat.
  function greet(rule) {
    if (visit.greeted || conv || open || banned || !agentsOnline || !hours.open) return;
    visit.greeted = rule.id;
    saveVisit();
    greeting = rule;
    fetch(`${base}/api/v1/visitor/greetings/${encodeURIComponent(rule.id)}/shown`, { method: "POST", headers: { authorization: "Bearer " + saved.token } }).catch(() => {});
    const from = rule.from || (site && site.name) || "";
    log.append(h("div", { class: "sys" }, from), h("div", { class: "msg them proactive", dir: "auto" }, rule.message));
    // A bubble beside the launcher; on a small screen only the badge.
    const shut = h("button", { class: "bx", type: "button", "aria-label": t("close"), onclick: (e) => { e.stopPropagation(); bubble.hidden = true; } }, "×");
    bubble.replaceChildren(h("strong", {}, from), h("div", { dir: "auto" }, rule.message), shut);
    bubble.hidden = false;
    unreadSeqs.push(0);
    showUnread();
  }

  function mount() {
    const sheet = new CSSStyleSheet();
    if (sheet.replaceSync && root.adoptedStyleSheets) {
      sheet.replaceSync(css);
      root.adoptedStyleSheets = [sheet];
    } else root.append(h("style", {}, css));
    root.append(launcher, bubble, panel);
    const s = site.settings || {};
    const accent = /^#[0-9a-f]{6}$/i.test(s.color || "") ? s.color : "#2563eb";
    host.style.setProperty("--a", accent);
    host.style.setProperty("--t", ink(accent));
    if (s.position === "left") host.classList.add("left");
    (document.body || document.documentElement).append(host);
    // The default greeting speaks the visitor's language; the site's own is its own.
    if (s.greeting === EN.greeting) log.append(say(h("div", { class: "msg them greeting", dir: "auto" }), "greeting"));
    else if (s.greeting) log.append(h("div", { class: "msg them greeting", dir: "auto" }, s.greeting));
    // English and the site's own words until the panel opens.
    words = { ...EN, ...(s.strings || {}) };
    reword();
  }

  // Before an agent joins, the team: its name, its picture, how soon it
  // typically replies (the site's settings).
  function header() {
    const s = (site && site.settings) || {};
    const name = agentName || s.team_name || (site && site.name) || t("chat");
    title.textContent = name;
    if (agentName && agentFace) avatar.replaceChildren(h("img", { src: base + agentFace, alt: "" }));
    else if (!agentName && s.logo_url) avatar.replaceChildren(h("img", { src: s.logo_url, alt: "" }));
    else avatar.textContent = (name || "?").trim().charAt(0).toUpperCase();
    if (!sub.textContent || sub.dataset.idle) status("");
  }
  function status(text) {
    const reply = site && site.settings && site.settings.reply_time;
    const idle = !text && !agentName && reply && reply !== "none";
    sub.textContent = idle ? t("replies_" + reply) : text;
    sub.dataset.idle = idle ? "1" : "";
  }

  // Which form the visitor sees: chat, pre-chat details, or leave a message.
  function view() {
    if (banned) {
      offline.hidden = thanks.hidden = prechat.hidden = composer.hidden = true;
      unavailable.hidden = false;
      return;
    }
    const p = (site && site.settings && site.settings.prechat) || {};
    const needPrechat = !conv && !saved.prechat && (p.name !== "off" || p.email !== "off");
    const isOffline = !conv && (!agentsOnline || !hours.open) && !saved.outbox.some((o) => o.type === "send");
    offIntro.textContent = (!hours.open && hours.reopens_at ? backAt(hours.reopens_at) : t("away")) + " " + t("leave_intro");
    offline.hidden = !isOffline || !!saved.left;
    thanks.hidden = !isOffline || !saved.left;
    prechat.hidden = isOffline || !needPrechat;
    composer.hidden = isOffline || needPrechat;
    preName.hidden = p.name === "off";
    preEmail.hidden = p.email === "off";
    // Each field says whether it is needed; with none needed, the form
    // says it can be skipped (Start chat with both empty).
    for (const [el, mode, key] of [[preName, p.name, "your_name"], [preEmail, p.email, "your_email"]]) {
      el.lastChild.required = mode === "required";
      el.firstChild.textContent = `${t(key)} (${t(mode === "required" ? "required" : "optional")})`;
    }
    preIntro.textContent = t(p.name === "required" || p.email === "required" ? "intro_required" : "intro_optional");
  }

  // When the team is back, in the visitor's language and their clock.
  function backAt(ms) {
    const d = new Date(ms), soon = ms - Date.now() < 6 * 864e5;
    const today = d.toDateString() === new Date().toDateString();
    const opts = today ? { hour: "numeric", minute: "2-digit" } : soon ? { weekday: "long", hour: "numeric", minute: "2-digit" } : { dateStyle: "medium", timeStyle: "short" };
    let when;
    try { when = new Intl.DateTimeFormat(words._lang || "en", opts).format(d); } catch { when = d.toLocaleString(); }
    return t(today ? "closed_until_today" : "closed_until", when);
  }
  // Take the hours the server sent, and ask again when they change.
  function setHours(next) {
    hours = next || { open: true };
    clearTimeout(hoursTimer);
    const at = hours.open ? hours.closes_at : hours.reopens_at;
    if (at) hoursTimer = setTimeout(() => start(true), Math.min(Math.max(at - Date.now(), 0) + 1000, 2 ** 31 - 1));
  }

  function toggle(show) {
    // The first opening waits (a second at most) for the visitor's words.
    if (show && !open && langReady === null) { loadWords().then(() => toggle(true)); return; }
    open = show;
    panel.hidden = !show;
    if (show) bubble.hidden = true;
    host.classList.toggle("open", show);
    launcher.setAttribute("aria-expanded", String(show));
    launcher.setAttribute("aria-label", t(show ? "close" : "open"));
    if (show) {
      unreadSeqs = [];
      showUnread();
      markRead();
      const f = [composer, prechat, offline].find((x) => !x.hidden);
      const target = f && f.querySelector("input:not([hidden]),textarea");
      if (target) target.focus();
      log.scrollTop = log.scrollHeight;
    } else launcher.focus();
  }

  function line(cls, text) {
    // Each message in its own direction (an English line in an Arabic panel).
    const el = rich(h("div", { class: cls, dir: "auto" }), text);
    // Messages still being sent stay last, after what the server confirmed.
    log.insertBefore(el, cls.includes("pending") ? null : log.querySelector(".pending"));
    log.scrollTop = log.scrollHeight;
    return el;
  }

  function beep() {
    try {
      audio = audio || new AudioContext();
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = 880;
      g.gain.value = 0.05;
      o.connect(g).connect(audio.destination);
      o.start();
      o.stop(audio.currentTime + 0.15);
    } catch { /* no sound, no harm */ }
  }

  // ----- forms -------------------------------------------------------------
  function onPrechat(e) {
    e.preventDefault();
    const name = preName.lastChild.value.trim(), email = preEmail.lastChild.value.trim();
    saved.prechat = { name, email };
    save();
    frame({ type: "identify", name: name || null, email: email || null, page_url: location.href });
    view();
    input.focus();
  }
  function onLeave(e) {
    e.preventDefault();
    const d = new FormData(offline);
    const item = { type: "leave_message", client_id: newId(), name: d.get("name").trim() || null, email: d.get("email").trim() || null, body: d.get("body"), at: Date.now() };
    saved.outbox.push(item);
    saved.left = true;
    save();
    offline.reset();
    view();
    flush();
  }
  // "Email me this conversation", once a chat has ended (the server
  // allows one per state of the conversation).
  function offerTranscript(id) {
    const to = h("input", { type: "email", name: "email", required: true, maxLength: 254, autocomplete: "email", "aria-label": t("your_email") });
    to.value = (saved.prechat && saved.prechat.email) || "";
    const note = h("div", { class: "sys", role: "status" });
    const form = h("form", { class: "row transcript", "aria-label": t("email_me"), onsubmit: async (e) => {
      e.preventDefault();
      note.textContent = t("sending");
      try {
        const res = await fetch(base + "/api/v1/visitor/transcript", { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer " + saved.token }, body: JSON.stringify({ conv: id, to: to.value.trim(), lang: words._lang || "en" }) });
        const body = await res.json().catch(() => null);
        note.textContent = res.ok ? t("will_email", to.value.trim()) : (body && body.error && body.error.message) || "HTTP " + res.status;
        if (res.ok) form.remove();
      } catch { note.textContent = t("no_server"); }
    } }, to, h("button", { class: "send", type: "submit" }, t("email_me")));
    log.append(form, note);
    log.scrollTop = log.scrollHeight;
  }
  // Olark's two-point scale: one tap on good or bad, after an optional
  // comment. Sent through the outbox, so a blip loses no rating.
  function offerRating(id) {
    const comment = h("textarea", { rows: 2, maxLength: 1000, "aria-label": t("comment"), placeholder: t("anything") });
    const rate = (rating) => {
      const item = { type: "rate", conv: id, client_id: newId(), rating, at: Date.now() };
      if (comment.value.trim()) item.comment = comment.value.trim();
      saved.outbox.push(item);
      save();
      rated(id);
      flush();
    };
    const b = (rating, text) => h("button", { class: "send", type: "button", onclick: () => rate(rating) }, text);
    rateForms[id] = h("form", { class: "rate", "aria-label": t("rate"), onsubmit: (e) => e.preventDefault() },
      h("div", { class: "sys" }, t("how_was")), comment, h("div", { class: "btns" }, b("good", "👍 " + t("good")), b("bad", "👎 " + t("bad"))));
    log.append(rateForms[id]);
    log.scrollTop = log.scrollHeight;
  }
  function rated(id) {
    if (rateForms[id]) rateForms[id].replaceWith(h("div", { class: "sys", role: "status" }, t("rated")));
    delete rateForms[id];
  }
  function onKey(e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); composer.requestSubmit(); }
  }
  function onSend(e) {
    e.preventDefault();
    const body = input.value;
    if (!body.trim()) return;
    input.value = "";
    setTyping(false);
    const item = { type: "send", client_id: newId(), body, at: Date.now() };
    // The first answer to a greeting says which rule greeted.
    if (greeting && !conv) item.greeting = greeting.id;
    saved.outbox.push(item);
    save();
    showPending(item);
    view();
    flush();
  }
  const mb = (n) => (n < 1048576 ? Math.ceil(n / 1024) + " KB" : (n / 1048576).toFixed(1) + " MB");
  // Refused before upload where the browser can tell (size, declared
  // type); the server decides the type from the bytes and says why.
  async function attach(file) {
    const lim = site.settings.attachments || {}, max = lim.max_bytes || 10485760, types = lim.types || [];
    const why = file.size > max ? t("too_large", mb(max))
      : types.length && file.type && !types.some((k) => k === file.type || (k.endsWith("/*") && file.type.startsWith(k.slice(0, -1)))) ? t("type_refused") : "";
    if (why) return line("sys", t("not_sent", `${file.name}: ${why}`));
    const el = line("msg me pending", "📎 " + file.name);
    try {
      const res = await fetch(base + "/api/v1/visitor/attachments?name=" + encodeURIComponent(file.name), { method: "POST", headers: { authorization: "Bearer " + saved.token }, body: file });
      const body = await res.json().catch(() => null);
      if (!res.ok) throw new Error((body && body.error && body.error.message) || "HTTP " + res.status);
      const item = { type: "send", client_id: newId(), body: "", attachments: [body.id], at: Date.now(), file: file.name };
      saved.outbox.push(item);
      save();
      el.remove();
      showPending(item);
      view();
      flush();
    } catch (err) { el.remove(); line("sys", t("not_sent", `${file.name}: ${err.message}`)); }
  }
  /** Attachments under a message: images as thumbnails, files as links, through short-lived signed links fetched when shown and refreshed on use. */
  function files(el, list) {
    for (const a of list || []) {
      const link = h("a", { class: "file", target: "_blank", rel: "noopener noreferrer" }, a.inline ? h("img", { alt: a.name }) : `📎 ${a.name} (${mb(a.size)})`);
      let at = 0;
      const fresh = async () => {
        if (Date.now() - at < 240000) return;
        at = Date.now();
        try {
          const res = await fetch(`${base}/api/v1/visitor/attachments/${encodeURIComponent(a.id)}/link`, { method: "POST", headers: { authorization: "Bearer " + saved.token } });
          if (res.ok) link.href = base + (await res.json()).url;
          if (a.inline) link.firstChild.src = link.href;
        } catch { at = 0; }
      };
      link.addEventListener("pointerenter", fresh);
      link.addEventListener("focus", fresh);
      fresh();
      el.append(link);
    }
  }
  function onTyping() {
    if (!conv) return;
    if (!myTyping) setTyping(true);
    clearTimeout(myTypingTimer);
    myTypingTimer = setTimeout(() => setTyping(false), 3000);
  }
  function setTyping(on) {
    if (myTyping === on || !conv) return;
    myTyping = on;
    frame({ type: "typing", conv, on });
  }
  const newId = () => (crypto.randomUUID ? crypto.randomUUID() : Date.now() + "-" + Math.random().toString(36).slice(2));

  function showPending(item) {
    if (pending.has(item.client_id)) return;
    const text = item.file ? "📎 " + item.file : item.body;
    const el = line("msg me pending", text);
    el.setAttribute("aria-label", t("sending_msg", text));
    pending.set(item.client_id, el);
  }

  /** The badge, from the agent messages not yet read (`unreadSeqs`). */
  function showUnread() {
    const n = unreadSeqs.length;
    badge.textContent = String(n);
    badge.hidden = !n;
    launcher.setAttribute("aria-label", open ? t("close") : n ? t("open_unread", n) : t("open"));
  }
  /** Tell the server what the open panel has shown, once per new message. */
  function markRead() {
    if (open && conv && lastAgentSeq > readUpTo && !document.hidden) frame({ type: "read", conv, seq: lastAgentSeq });
  }

  // ----- the connection ----------------------------------------------------
  function frame(f) {
    if (sock && welcomed && sock.readyState === 1) sock.send(JSON.stringify(f));
  }
  function flush() {
    if (replayTo) return;
    const expired = saved.outbox.filter((o) => o.at && Date.now() - o.at > RESEND_WITHIN_MS);
    for (const item of expired) failed(item.client_id, t("too_long_wait"));
    // `at` is ours, not the protocol's: the server refuses unknown fields.
    for (const item of saved.outbox) frame({ ...item, at: undefined, file: undefined });
  }
  /** Take a frame out of the outbox and show it as not sent. */
  function failed(clientId, why) {
    const i = saved.outbox.findIndex((o) => o.client_id === clientId);
    if (i < 0) return;
    saved.outbox.splice(i, 1);
    save();
    const el = pending.get(clientId);
    if (el) { el.classList.replace("pending", "failed"); el.title = why; }
    line("sys", t("not_sent", why));
  }
  /** Refused with `banned`: stop connecting, keep nothing to resend, say so. */
  function refusedForGood() {
    banned = true;
    clearTimeout(timer);
    clearInterval(pinger);
    saved.outbox = [];
    save();
    if (!site) { site = { name: "Chat", settings: {} }; mount(); }
    status("");
    view();
  }
  function schedule(fn, minMs) {
    clearTimeout(timer);
    // Full jitter: anywhere between 0 and the capped exponential step.
    const jitter = Math.random() * Math.min(30000, 500 * 2 ** attempt++);
    const delay = laterMs != null ? laterMs : Math.max(minMs || 0, jitter);
    laterMs = null;
    timer = setTimeout(fn, delay);
  }
  function down() {
    if (!downSince) downSince = Date.now();
    // Quiet: say nothing for a blip, then a calm note instead of an error.
    setTimeout(() => { if (downSince && Date.now() - downSince >= 900) status(t("reconnecting")); }, 1000);
  }

  // `again`: only the hours are wanted (they changed); the socket stays.
  async function start(again) {
    try {
      const res = await fetch(base + "/api/v1/visitor/session", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ widget_key: key, visitor_token: saved.token || null, page_url: location.href.slice(0, 2048), referrer: document.referrer.slice(0, 2048) || null }),
      });
      const body = await res.json().catch(() => null);
      if (again && !res.ok) return;
      if (!res.ok) {
        if (body && body.error && body.error.code === "banned") return refusedForGood();
        const message = (body && body.error && body.error.message) || "HTTP " + res.status;
        if (res.status === 403 || res.status === 404 || res.status === 400) {
          console.warn("Holdfast chat is not available here: " + message);
          return;
        }
        return schedule(start, (+res.headers.get("retry-after") || 0) * 1000);
      }
      saved.token = body.visitor_token;
      save();
      setHours(body.hours);
      if (again) return site && view();
      agentsOnline = body.agents_online;
      transcripts = !!body.transcripts;
      if (!site) { site = body.site; mount(); }
      armGreetings(body.greetings);
      connect();
    } catch {
      if (again) return;
      down();
      schedule(start);
    }
  }

  function connect() {
    clearTimeout(timer);
    const ws = new WebSocket(wsBase + "/api/v1/visitor/socket");
    let refused = false;
    sock = ws;
    welcomed = false;
    ws.onopen = () => ws.send(JSON.stringify({ type: "hello", v: 1, token: saved.token, cursors }));
    ws.onmessage = (m) => {
      let f;
      try { f = JSON.parse(m.data); } catch { return; }
      if (f.type === "error" && f.code === "banned") { banned = true; sock = null; ws.close(); return refusedForGood(); }
      // Only a token the server no longer knows is refused for good; a busy
      // or storeless node ("unavailable") keeps the visitor and their chat.
      if (f.type === "error" && !welcomed && (f.code === "unauthorized" || f.code === "token_expired")) refused = true;
      onFrame(f);
    };
    ws.onclose = () => {
      if (sock !== ws) return;
      sock = null;
      welcomed = false;
      clearInterval(pinger);
      down();
      if (refused) { saved.token = null; save(); schedule(start); } else schedule(connect);
    };
  }

  function onFrame(f) {
    // Durable events (they have an author; an ack has none) advance cursors.
    if (f.conv && f.seq && f.author) {
      if (f.seq <= (cursors[f.conv] || 0)) return; // already shown
      cursors[f.conv] = f.seq;
      if ((f.type === "message" || f.type === "rating") && f.author.kind === "visitor" && f.client_id) {
        // Stored, its ack lost with a connection: never resend it.
        const i = saved.outbox.findIndex((o) => o.client_id === f.client_id);
        if (i >= 0) { saved.outbox.splice(i, 1); save(); }
      }
      if (replayTo && f.conv === replayTo.conv && f.seq >= replayTo.seq) {
        replayTo = null;
        setTimeout(flush); // after this event is shown
      }
    }
    switch (f.type) {
      case "replayed":
        // The replay ended before `last_seq` (what follows is not for us).
        if (replayTo && f.conv === replayTo.conv) { replayTo = null; setTimeout(flush); }
        break;
      case "welcome": {
        welcomed = true;
        attempt = 0;
        downSince = 0;
        status("");
        agentsOnline = f.agents_online;
        const c = f.conversations[0];
        conv = c ? c.id : null;
        replayTo = c && (cursors[c.id] || 0) < c.last_seq ? { conv: c.id, seq: c.last_seq } : null;
        clearInterval(pinger);
        pinger = setInterval(() => frame({ type: "ping" }), 25000);
        for (const item of saved.outbox) if (item.type === "send") showPending(item);
        if (saved.prechat) frame({ type: "identify", name: saved.prechat.name || null, email: saved.prechat.email || null, page_url: location.href.slice(0, 2048) });
        view();
        flush();
        break;
      }
      case "message": {
        const mine = f.author.kind === "visitor";
        let el;
        if (mine && f.client_id && pending.has(f.client_id)) {
          el = pending.get(f.client_id);
          pending.delete(f.client_id);
          el.classList.remove("pending");
          el.removeAttribute("aria-label");
          if (f.attachments) el.textContent = f.body;
          log.insertBefore(el, log.querySelector(".pending")); // server order
        } else el = line(mine ? "msg me" : "msg them", f.erased ? t("erased") : f.body);
        // An integration's message (REST API) says whose it is.
        if (f.integration) el.prepend(h("span", { class: "from" }, f.integration));
        files(el, f.attachments);
        if (mine && !conv) conv = f.conv;
        if (f.author.kind === "agent") {
          if (faces[f.author.id] && !f.erased) el.prepend(h("img", { class: "face", src: base + faces[f.author.id], alt: "" }));
          typing.textContent = "";
          lastAgentSeq = Math.max(lastAgentSeq, f.seq);
          if (open) markRead();
          else if (f.seq > readUpTo) {
            unreadSeqs.push(f.seq);
            showUnread();
            // A replay after a reload brings old ones back: only new ones ring.
            if (Date.now() - f.at < 60000) beep();
          }
        }
        break;
      }
      case "read":
        if (f.author.kind === "visitor" && f.up_to > readUpTo) {
          readUpTo = f.up_to;
          // Read on another tab or before the reload: not unread here.
          unreadSeqs = unreadSeqs.filter((seq) => seq > readUpTo);
          showUnread();
        }
        break;
      case "assigned":
        agentName = (f.agent && f.agent.name) || "";
        // Only a path of the server's own is loaded (it gives no other).
        agentFace = f.agent && typeof f.agent.photo_url === "string" && f.agent.photo_url.startsWith("/api/v1/agents/") ? f.agent.photo_url : "";
        if (f.agent && f.agent.id) faces[f.agent.id] = agentFace;
        header();
        status("");
        line("sys", t("joined", agentName || t("an_agent")));
        break;
      case "transferred":
        line("sys", t("transferring"));
        break;
      case "closed":
        line("sys", t("ended"));
        if (agentName) offerRating(f.conv);
        if (transcripts) offerTranscript(f.conv);
        if (conv === f.conv) { conv = null; lastAgentSeq = readUpTo = 0; unreadSeqs = []; showUnread(); }
        agentName = agentFace = "";
        header();
        view();
        break;
      case "rating":
        rated(f.conv);
        break;
      case "queue_position":
        status(t("queue", f.position));
        break;
      case "typing":
        if (f.from.kind === "agent") {
          typing.textContent = f.on ? t("typing", agentName || t("agent")) : "";
          clearTimeout(typingTimer);
          if (f.on) typingTimer = setTimeout(() => (typing.textContent = ""), 8000);
        }
        break;
      case "agents_online":
        agentsOnline = f.online;
        view();
        break;
      case "ack": {
        const i = saved.outbox.findIndex((o) => o.client_id === f.client_id);
        if (i >= 0) {
          if (saved.outbox[i].type === "send") { conv = f.conv; greeting = null; }
          saved.outbox.splice(i, 1);
          save();
        }
        view();
        break;
      }
      case "error": {
        // Refused for good (too long, empty…): stop resending it.
        if (f.code !== "internal" && f.code !== "unavailable") failed(f.ref, f.code === "closed" ? t("closed_now") : f.message);
        // Outside business hours: the offline form, saying when we're back.
        if (f.code === "closed") { hours = { open: false }; view(); start(true); }
        break;
      }
      case "reconnect":
        laterMs = f.after_ms;
        break;
    }
  }

  window.addEventListener("storage", (e) => {
    if (e.key !== storeKey) return;
    const other = load();
    saved.prechat = other.prechat;
    saved.left = other.left;
    if (site) view();
  });
  document.addEventListener("visibilitychange", markRead);
  window.Holdfast = Object.freeze({ open: () => site && toggle(true), close: () => site && toggle(false) });
  start();
})();
