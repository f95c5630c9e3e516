// The Reports tab: chats, waits, satisfaction and when chats come in, for
// a range of days in the site's time zone (GET /api/v1/reports; admins
// see the site, agents their own chats). Charts are inline SVG drawn
// here, no library; every table downloads as CSV. Loaded only when the
// tab opens. Names and values from the server are set as text only.

const SVG = "http://www.w3.org/2000/svg";
// Weekday names the viewer's way (their browser's locale), Monday first.
const DAYS = Array.from({ length: 7 }, (_, i) => new Intl.DateTimeFormat((navigator.languages || [])[0] || undefined, { weekday: "short", timeZone: "UTC" }).format(Date.UTC(2024, 0, 1 + i)));

/** An SVG element with attributes (never markup). */
function s(tag, attrs = {}, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...kids);
  return el;
}

/** "1 min 5 s", "45 s", "2 h 3 min"; "–" for none. */
export function duration(ms) {
  if (ms == null) return "–";
  const sec = Math.round(ms / 1000);
  if (sec < 60) return `${sec} s`;
  const min = Math.floor(sec / 60);
  if (min < 60) return sec % 60 ? `${min} min ${sec % 60} s` : `${min} min`;
  return `${Math.floor(min / 60)} h ${min % 60} min`;
}
const pct = (x) => (x == null ? "–" : `${Math.round(x * 100)}%`);
const day = (d) => d.toISOString().slice(0, 10);

/** Fill `root` with the Reports tab. */
export async function renderReports(root, ui) {
  const { h } = ui;
  const to = new Date(), from = new Date(Date.now() - 6 * 86400000);
  const fromIn = h("input", { type: "date", id: "r-from", value: day(from), required: true });
  const toIn = h("input", { type: "date", id: "r-to", value: day(to), required: true });
  const out = h("div", { id: "r-out" });
  const load = async (e) => {
    if (e) e.preventDefault();
    const q = `from=${encodeURIComponent(fromIn.value)}&to=${encodeURIComponent(toIn.value)}`;
    try {
      const r = await ui.api(`/api/v1/reports?${q}`);
      out.replaceChildren(...view(h, r, (table) => download(ui, q, table, r)));
    } catch (err) { ui.toast(err.message); }
  };
  root.replaceChildren(
    h("h2", {}, "Reports"),
    h("form", { id: "r-form", class: "grid", onsubmit: load },
      h("label", {}, "From ", fromIn), h("label", {}, "To ", toIn), h("button", { type: "submit" }, "Show")),
    out);
  await load();
}

async function download(ui, q, table, r) {
  try {
    const text = await ui.api(`/api/v1/reports?${q}&format=csv&table=${table}`, { raw: true });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    a.download = `holdfast-${table}-${r.from}-${r.to}.csv`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (err) { ui.toast(err.message); }
}

function view(h, r, csv) {
  const f = r.site;
  const card = (label, value, sub) => h("div", { class: "r-card" }, h("span", { class: "r-label" }, label), h("strong", {}, value), sub ? h("span", { class: "r-sub" }, sub) : null);
  const csvButton = (table) => h("button", { type: "button", class: "r-csv", "data-table": table, onclick: () => csv(table) }, "CSV");
  return [
    h("p", { class: "r-note" }, `${r.from} to ${r.to}, days and hours in ${r.time_zone}.`),
    h("section", { "aria-labelledby": "r-sum" }, h("h3", { id: "r-sum" }, "Summary ", csvButton("summary")),
      h("div", { class: "r-cards", id: "r-cards" },
        card("Chats", String(f.chats), `${f.answered} answered · ${f.missed} missed`),
        card("Offline messages", String(f.offline)),
        card("Wait for a reply", duration(f.wait.median_ms), `median · p90 ${duration(f.wait.p90_ms)}`),
        card("First response", duration(f.first_response.median_ms), `median · p90 ${duration(f.first_response.p90_ms)}`),
        card("Chat duration", duration(f.duration.median_ms), `median · p90 ${duration(f.duration.p90_ms)}`),
        card("Messages per chat", f.messages_per_chat == null ? "–" : String(f.messages_per_chat)),
        card("Satisfaction", pct(f.csat), `${f.rated_good} good of ${f.rated} rated`))),
    h("section", { "aria-labelledby": "r-heat" }, h("h3", { id: "r-heat" }, "When chats start ", csvButton("heatmap")), heatmap(r.heatmap)),
    h("section", { "aria-labelledby": "r-agents" }, h("h3", { id: "r-agents" }, "Agents ", csvButton("agents")), bars(r.agents), table(h, r.agents, "Agent", "r-agent-rows")),
    h("section", { "aria-labelledby": "r-groups" }, h("h3", { id: "r-groups" }, "Groups ", csvButton("groups")), table(h, r.groups, "Group", "r-group-rows")),
    (r.greetings || []).length ? h("section", { "aria-labelledby": "r-greet" }, h("h3", { id: "r-greet" }, "Proactive greetings (since each rule was made)"),
      h("table", { class: "r-table" }, h("thead", {}, h("tr", {}, h("th", {}, "Rule"), h("th", {}, "Shown"), h("th", {}, "Chats started"), h("th", {}, "Answered"))),
        h("tbody", { id: "r-greeting-rows" }, ...r.greetings.map((g) => h("tr", {}, h("td", {}, g.name), h("td", {}, String(g.shown)), h("td", {}, String(g.started)),
          h("td", {}, g.shown ? pct(g.started / g.shown) : "–")))))) : null,
  ].filter(Boolean);
}

/** Weekday × hour grid, darker for more chats, with a title per cell. */
function heatmap(grid) {
  const max = Math.max(1, ...grid.flat());
  const cw = 22, ch = 20, left = 36, top = 16;
  const svg = s("svg", { viewBox: `0 0 ${left + 24 * cw} ${top + 7 * ch}`, class: "r-heatmap", role: "img", "aria-label": "Chats by weekday and hour" });
  for (let hour = 0; hour < 24; hour += 3) svg.append(s("text", { x: left + hour * cw + 2, y: 11, class: "r-axis" }, String(hour)));
  grid.forEach((hours, d) => {
    svg.append(s("text", { x: 0, y: top + d * ch + 14, class: "r-axis" }, DAYS[d]));
    hours.forEach((n, hour) => {
      const cell = s("rect", { x: left + hour * cw, y: top + d * ch, width: cw - 2, height: ch - 2, rx: 3, fill: "#2563eb", "fill-opacity": n ? 0.15 + 0.85 * (n / max) : 0.05, "data-n": n },
        s("title", {}, `${DAYS[d]} ${hour}:00–${hour + 1}:00: ${n} chat${n === 1 ? "" : "s"}`));
      svg.append(cell);
    });
  });
  return svg;
}

/** Chats per agent as horizontal bars, with satisfaction beside them. */
function bars(rows) {
  const max = Math.max(1, ...rows.map((r) => r.chats));
  const rh = 22, label = 160, width = 300;
  const svg = s("svg", { viewBox: `0 0 ${label + width + 80} ${Math.max(1, rows.length) * rh}`, class: "r-bars", role: "img", "aria-label": "Chats per agent" });
  rows.forEach((r, i) => {
    const y = i * rh;
    svg.append(
      s("text", { x: 0, y: y + 15, class: "r-axis" }, r.name.length > 24 ? r.name.slice(0, 23) + "…" : r.name),
      s("rect", { x: label, y: y + 3, width: Math.max(1, (r.chats / max) * width), height: rh - 6, rx: 2, fill: "#2563eb" }, s("title", {}, `${r.name}: ${r.chats} chats`)),
      s("text", { x: label + width + 8, y: y + 15, class: "r-axis" }, `${r.chats} · ${pct(r.csat)}`));
  });
  return svg;
}

function table(h, rows, what, id) {
  const head = [what, "Chats", "Answered", "Missed", "Offline", "Wait (median)", "Wait (p90)", "First response", "Duration", "Msgs/chat", "Satisfaction"];
  return h("table", { class: "r-table" },
    h("thead", {}, h("tr", {}, ...head.map((x) => h("th", {}, x)))),
    h("tbody", { id }, ...rows.map((r) => h("tr", {},
      h("td", {}, r.name), h("td", {}, String(r.chats)), h("td", {}, String(r.answered)), h("td", {}, String(r.missed)),
      h("td", {}, String(r.offline)), h("td", {}, duration(r.wait.median_ms)), h("td", {}, duration(r.wait.p90_ms)),
      h("td", {}, duration(r.first_response.median_ms)), h("td", {}, duration(r.duration.median_ms)),
      h("td", {}, r.messages_per_chat == null ? "–" : String(r.messages_per_chat)),
      h("td", {}, r.rated ? `${pct(r.csat)} of ${r.rated}` : "–")))));
}
