// Holdfast under the shared load generator (bench.js), over the wire protocol of docs/protocol.md.
//
// pair(url, i, onDeliver) makes one conversation with its own visitor and its own agent:
//   agent i logs in (POST /api/v1/auth/login; one login per agent, its access token kept),
//   opens /api/v1/agent/socket and says hello; a new visitor gets a session
//   (POST /api/v1/visitor/session with the site's widget key), opens /api/v1/visitor/socket and
//   says hello; the visitor's first `send` (no `conv`) starts the conversation, and routing
//   (least busy first) gives it to agent i, the one online agent without a chat. Should it not,
//   agent i claims it. The agent answers once, and the pair is ready. Each side's send(m) is a
//   `send` frame with a client_id and the message {id, t} as JSON in its body, resolved by the
//   server's `ack` for that client_id (sent once the message is stored). The other side's
//   `message` event hands the same {id, t} to onDeliver.
//
// The server is expected to hold agents provisioned as `holdfast storm provision` makes them
// (online, chat_limit 100): emails HOLDFAST_AGENT_EMAIL with {i} for the pair's number
// (default storm-agent-{i}@storm.test), password HOLDFAST_AGENT_PASSWORD (default
// storm-password-1), and the site's widget key in HOLDFAST_WIDGET_KEY.
//
// A benchmark does not ride out failures: a socket the server closes, a refused frame or a
// duplicate ack ends the run with a message and exit status 3, so no figure hides one.
const WebSocket = require("ws");

const PASSWORD = process.env.HOLDFAST_AGENT_PASSWORD || "storm-password-1";
const EMAIL = process.env.HOLDFAST_AGENT_EMAIL || "storm-agent-{i}@storm.test";
const WIDGET_KEY = process.env.HOLDFAST_WIDGET_KEY;
// Logins run this many pairs ahead (each is a password hash on the server; setup only).
const LOGIN_AHEAD = 4;
const PING_MS = 25_000; // §3.2, §9.1: a ping every ~25 s keeps an idle socket from the 75 s close
const SETUP_MS = 15_000;

const conns = [];
const logins = new Map();
const runNonce = Math.random().toString(36).slice(2, 8);
let closing = false;

function fail(what) {
  if (closing) return;
  closing = true;
  console.error(`holdfast adapter: ${what}`);
  process.exit(3);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function within(ms, promise, what) {
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

// POST a JSON body; a 429 or 503 is waited out per its Retry-After (§2.1, §9.1), anything else not 2xx throws.
async function post(base, path, body) {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(base + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const text = await res.text();
    if (res.ok) return JSON.parse(text);
    if ((res.status === 429 || res.status === 503) && attempt < 20) {
      await sleep(1000 * Number(res.headers.get("retry-after") || 1));
      continue;
    }
    throw new Error(`POST ${path}: ${res.status} ${text}`);
  }
}

function login(base, i) {
  if (!logins.has(i)) {
    const p = post(base, "/api/v1/auth/login", { email: EMAIL.replace("{i}", String(i)), password: PASSWORD });
    p.catch(() => {}); // a login fetched ahead may fail unseen (no such agent); it throws when its pair awaits it
    logins.set(i, p);
  }
  return logins.get(i);
}

// One socket, after its hello: frames in, acks matched to sends by client_id.
class Conn {
  constructor(name) {
    this.name = name;
    this.pending = new Map(); // client_id -> {resolve, reject}
    this.waiters = []; // {test, resolve}
    this.onMessage = () => {};
  }

  open(url, token) {
    return within(SETUP_MS, new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      this.ws = ws;
      conns.push(this);
      ws.on("open", () => ws.send(JSON.stringify({ type: "hello", v: 1, token })));
      ws.on("error", (e) => (this.welcome ? fail(`${this.name}: ${e.message}`) : reject(e)));
      ws.on("close", (code, reason) => {
        clearInterval(this.pinger);
        const why = `${this.name}: socket closed (${code} ${String(reason) || "no reason"})`;
        if (!this.welcome) reject(new Error(why));
        else fail(why);
      });
      ws.on("message", (data) => {
        const f = JSON.parse(data.toString());
        if (!this.welcome) {
          if (f.type === "welcome") {
            this.welcome = f;
            this.id = f.id;
            this.pinger = setInterval(() => this.frame({ type: "ping" }), PING_MS);
            this.pinger.unref();
            resolve(f);
          } else if (f.type === "error") reject(new Error(`${this.name}: hello refused: ${f.code} ${f.message}`));
          return;
        }
        this.frameIn(f);
      });
    }), `${this.name}: hello`);
  }

  frameIn(f) {
    switch (f.type) {
      case "ack": {
        const p = this.pending.get(f.client_id);
        if (!p) return;
        this.pending.delete(f.client_id);
        if (f.duplicate) fail(`${this.name}: duplicate ack for ${f.client_id} (a client_id was reused)`);
        p.resolve(f);
        return;
      }
      case "error":
        if (f.ref && this.pending.has(f.ref)) {
          this.pending.get(f.ref).reject(new Error(`${this.name}: send ${f.ref} refused: ${f.code} ${f.message}`));
          this.pending.delete(f.ref);
        }
        fail(`${this.name}: error frame ${JSON.stringify(f)}`);
        return;
      case "reconnect":
        fail(`${this.name}: the server asked to reconnect (${f.reason})`);
        return;
      case "message":
        if (f.author && f.author.id !== this.id) this.onMessage(f);
        break;
    }
    this.waiters = this.waiters.filter((w) => !(w.test(f) && (w.resolve(f), true)));
  }

  frame(f) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(f));
  }

  // Resolves with the first frame from now on that passes test.
  next(test) {
    return new Promise((resolve) => this.waiters.push({ test, resolve }));
  }

  // A `send` frame (§6.2); resolves with its ack (§7.3).
  send(conv, clientId, body) {
    return new Promise((resolve, reject) => {
      this.pending.set(clientId, { resolve, reject });
      const f = { type: "send", client_id: clientId, body };
      if (conv) f.conv = conv;
      this.ws.send(JSON.stringify(f));
    });
  }
}

// client_id: 1-64 bytes, unique per message in the conversation (§5); bench.js's ids are unique per run.
let fallbackIds = 0;
const clientIdOf = (m) => (Buffer.byteLength(m.id) <= 64 ? m.id : `m-${runNonce}-${fallbackIds++}`);

function side(conn, conv, onDeliver) {
  conn.onMessage = (f) => {
    if (f.conv !== conv) return;
    let m;
    try { m = JSON.parse(f.body); } catch { return; } // the setup message is plain text
    if (m && typeof m.id === "string" && typeof m.t === "number") onDeliver({ id: m.id, t: m.t });
  };
  return { send: (m) => conn.send(conv, clientIdOf(m), JSON.stringify({ id: m.id, t: m.t })) };
}

async function pair(url, i, onDeliver) {
  if (!WIDGET_KEY) throw new Error("holdfast adapter: set HOLDFAST_WIDGET_KEY to the site's widget key");
  const base = url.replace(/\/+$/, "");
  const wsBase = base.replace(/^http/, "ws");
  for (let k = i; k <= i + LOGIN_AHEAD; k++) login(base, k);
  const session = await login(base, i);
  logins.delete(i);

  const agent = new Conn(`agent ${i}`);
  const welcome = await agent.open(`${wsBase}/api/v1/agent/socket`, session.access_token);
  if (welcome.availability !== "online") agent.frame({ type: "set_availability", availability: "online" });

  const visit = await post(base, "/api/v1/visitor/session", { widget_key: WIDGET_KEY });
  const visitor = new Conn(`visitor ${i}`);
  await visitor.open(`${wsBase}/api/v1/visitor/socket`, visit.visitor_token);

  // The first message starts the conversation; watch for its assignment before sending it.
  const assigned = new Map();
  const mine = (f) => f.type === "assigned" && f.agent && f.agent.id === agent.id;
  const watch = (f) => { if (mine(f)) assigned.set(f.conv, f); return false; };
  agent.waiters.push({ test: watch, resolve: () => {} });
  const ack = await within(SETUP_MS, visitor.send(undefined, `setup-${runNonce}-${i}`, `bench pair ${i}`), `visitor ${i}: first send`);
  const conv = ack.conv;
  const toMe = agent.next((f) => mine(f) && f.conv === conv);
  if (!assigned.has(conv)) {
    const routed = await Promise.race([toMe, sleep(3000).then(() => null)]);
    if (!routed) {
      console.error(`holdfast adapter: pair ${i}: routing did not give the conversation to agent ${i}; it claims it`);
      agent.frame({ type: "claim", conv });
      await within(SETUP_MS, toMe, `agent ${i}: claim`);
    }
  }
  agent.waiters = agent.waiters.filter((w) => w.test !== watch);
  // The agent answers once during setup: its send path is checked before the measured window, and
  // a long setup (thousands of pairs) does not leave early chats to be judged missed (§7.13).
  await within(SETUP_MS, agent.send(conv, `setup-${runNonce}-${i}`, `bench pair ${i}: agent here`), `agent ${i}: first send`);
  return [side(visitor, conv, onDeliver), side(agent, conv, onDeliver)];
}

async function close() {
  closing = true;
  for (const c of conns) {
    clearInterval(c.pinger);
    c.ws.close();
  }
}

module.exports = { pair, close };
