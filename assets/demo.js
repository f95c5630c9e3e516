// Minimal client of docs/protocol.md for trying Holdfast by hand: resume
// with cursors, resend with client ids, reconnect with backoff and jitter.
const key = document.body.dataset.widgetKey;
const wsUrl = (path) => (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;

function line(log, text) {
  const div = document.createElement("div");
  div.textContent = text; // never innerHTML: chat text is untrusted
  log.append(div);
  log.scrollTop = log.scrollHeight;
}

function connect(path, token, onFrame, setStatus) {
  const cursors = {};
  let ws, attempt = 0;
  const open = () => {
    ws = new WebSocket(wsUrl(path));
    ws.onopen = () => { attempt = 0; ws.send(JSON.stringify({ type: "hello", v: 1, token: token(), cursors })); };
    ws.onmessage = (m) => {
      const f = JSON.parse(m.data);
      if (f.conv && f.seq && f.type !== "ack") cursors[f.conv] = Math.max(cursors[f.conv] || 0, f.seq);
      if (f.type === "welcome") setStatus("connected");
      onFrame(f);
    };
    ws.onclose = () => {
      setStatus("reconnecting…");
      const delay = Math.random() * Math.min(30000, 500 * 2 ** attempt++);
      setTimeout(open, delay);
    };
  };
  open();
  return { send: (f) => ws && ws.readyState === 1 && ws.send(JSON.stringify(f)) };
}

// Visitor side.
(async () => {
  const stored = localStorage.getItem("holdfast-demo-visitor");
  const res = await fetch("/api/v1/visitor/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ widget_key: key, visitor_token: stored, page_url: location.href, referrer: document.referrer || null }),
  });
  const s = await res.json();
  localStorage.setItem("holdfast-demo-visitor", s.visitor_token);
  const log = document.getElementById("v-log");
  const sock = connect("/api/v1/visitor/socket", () => s.visitor_token, (f) => {
    if (f.type === "message") line(log, `${f.author.kind}: ${f.body}`);
    if (f.type === "assigned") line(log, `— ${f.agent.name} joined`);
    if (f.type === "queue_position") line(log, `— you are number ${f.position} in the queue`);
    if (f.type === "closed") line(log, "— conversation closed");
    if (f.type === "error") line(log, `! ${f.message}`);
  }, (t) => (document.getElementById("v-status").textContent = t));
  document.getElementById("v-form").onsubmit = (e) => {
    e.preventDefault();
    const input = document.getElementById("v-input");
    if (!input.value.trim()) return;
    sock.send({ type: "send", client_id: crypto.randomUUID(), body: input.value });
    input.value = "";
  };
})();

// Agent side.
let agentSock = null, agentConv = null;
document.getElementById("a-login").onsubmit = async (e) => {
  e.preventDefault();
  const res = await fetch("/api/v1/auth/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: document.getElementById("a-email").value, password: document.getElementById("a-password").value }),
  });
  const body = await res.json();
  const status = document.getElementById("a-status");
  if (!res.ok) { status.textContent = body.error.message; return; }
  const log = document.getElementById("a-log");
  agentSock = connect("/api/v1/agent/socket", () => body.access_token, (f) => {
    if (f.type === "welcome") agentSock && agentSock.send({ type: "set_availability", availability: "online" });
    if (f.type === "message") { agentConv = f.conv; line(log, `${f.author.kind}: ${f.body}`); }
    if (f.type === "assigned") { agentConv = f.conv; line(log, `— assigned ${f.conv.slice(-6)}`); }
    if (f.type === "error") line(log, `! ${f.message}`);
  }, (t) => (status.textContent = t));
  setTimeout(() => agentSock.send({ type: "set_availability", availability: "online" }), 300);
};
document.getElementById("a-form").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("a-input");
  if (!agentSock || !agentConv || !input.value.trim()) return;
  agentSock.send({ type: "send", conv: agentConv, client_id: crypto.randomUUID(), body: input.value });
  input.value = "";
};
