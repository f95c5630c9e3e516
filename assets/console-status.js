// The status page run from the console by the installation's operator (the
// server checks the role on every call): components and their state,
// incidents from first notice to resolved, maintenances, and the monitors
// that open incidents by themselves. Loaded only when the Status tab opens,
// so the console's first screen stays small. Everything that came from the
// server is set as text, never as HTML.

const COMPONENT_STATES = [
  ["operational", "Operational"],
  ["degraded_performance", "Degraded performance"],
  ["partial_outage", "Partial outage"],
  ["major_outage", "Major outage"],
  ["under_maintenance", "Under maintenance"],
];
const INCIDENT_STATES = [
  ["investigating", "Investigating"],
  ["identified", "Identified"],
  ["monitoring", "Monitoring"],
  ["resolved", "Resolved"],
];
const label = (pairs, value) => (pairs.find(([v]) => v === value) || [value, value])[1];

/** Fill `root` with the status page's administration. What was typed in
 * its forms stays through the render after an action, but in the form
 * `sent`, which starts empty again. */
export async function renderStatus(root, ui, sent = null) {
  const { api, h } = ui;
  const [{ components }, { incidents, scheduled_maintenances: maintenances }, { monitors }] = await Promise.all([
    api("/api/v1/status/components"),
    api("/api/v1/status/incidents"),
    api("/api/v1/status/monitors"),
  ]);
  // Whether the page was shown again (a failure is said in the toast).
  const reload = (form) => renderStatus(root, ui, form).then(() => true, (e) => (ui.toast(e.message), false));
  const ctx = { ...ui, components, reload };
  const open = incidents.filter((i) => i.status !== "resolved");
  const upcoming = maintenances.filter((m) => m.status !== "completed");
  const typed = typedFields(root, sent);
  root.replaceChildren(
    h("p", {}, "What visitors read at ", h("a", { href: "/status", target: "_blank", rel: "noopener" }, "/status"), "."),
    section(h, "s-components", "Components", componentTable(ctx), componentForm(ctx)),
    section(h, "s-incidents", "Open incidents", open.length ? h("ul", { id: "s-open" }, ...open.map((i) => incidentItem(ctx, i))) : h("p", {}, "None."), incidentForm(ctx)),
    section(h, "s-maint", "Maintenances", upcoming.length ? h("ul", { id: "s-upcoming" }, ...upcoming.map((m) => maintenanceItem(ctx, m))) : h("p", {}, "None scheduled."), maintenanceForm(ctx)),
    section(h, "s-monitors", "Monitors", monitorTable(ctx, monitors), monitorForm(ctx)),
  );
  putBack(root, typed);
}

/** The fields of `root`'s forms, keyed by their label (and its count, for
 * a label met twice). The tables' own controls show the server's state,
 * not what someone typed, so they are not among them. */
function formFields(root) {
  const seen = new Map();
  return [...root.querySelectorAll("form [aria-label]")].map((field) => {
    const label = field.getAttribute("aria-label");
    seen.set(label, (seen.get(label) || 0) + 1);
    return [`${label}#${seen.get(label)}`, field];
  });
}

/** What was typed or ticked in `root`'s forms, but in `sent`'s. */
function typedFields(root, sent) {
  const kept = formFields(root).filter(([, field]) => !sent || !sent.contains(field));
  return new Map(kept.map(([key, field]) => [key, field.type === "checkbox" ? field.checked : field.value]));
}

/** Put `typed` (from `typedFields`) back into `root`'s new forms; a choice
 * whose option is gone stays as the server made it. */
function putBack(root, typed) {
  for (const [key, field] of formFields(root)) {
    if (!typed.has(key)) continue;
    const kept = typed.get(key);
    if (field.type === "checkbox") field.checked = kept;
    else if (field.tagName !== "SELECT" || [...field.options].some((o) => o.value === kept)) field.value = kept;
  }
}

function section(h, id, title, ...body) {
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...body);
}

/** A `<select>` of `pairs`, `value` chosen. */
function choice(h, pairs, value, props = {}) {
  const select = h("select", props, ...pairs.map(([v, text]) => h("option", { value: v }, text)));
  if (value != null) select.value = value;
  return select;
}

/** Run `call`, show the page again, then say so: what the toast confirms
 * is on screen. Errors are shown, not thrown. */
async function act(ctx, call, done, sent = null) {
  try {
    await call();
  } catch (e) {
    ctx.toast(e.message);
    return;
  }
  if (await ctx.reload(sent)) ctx.toast(done);
}

function componentTable(ctx) {
  const { h } = ctx;
  const rows = ctx.components.map((c) => {
    const state = choice(h, COMPONENT_STATES, c.status, {
      "aria-label": `State of ${c.name}`,
      onchange: (e) => act(ctx, () => ctx.post(`/api/v1/status/components/${c.id}`, { status: e.target.value }, "PATCH"), "Saved"),
    });
    const tr = h("tr", {}, h("td", {}, c.name), h("td", {}, c.group || ""), h("td", {}, state));
    tr.dataset.component = c.id;
    return tr;
  });
  return h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Component"), h("th", {}, "Group"), h("th", {}, "State"))), h("tbody", { id: "s-component-rows" }, ...rows));
}

function componentForm(ctx) {
  const { h } = ctx;
  const name = h("input", { required: true, maxlength: "200", "aria-label": "New component's name" });
  const group = h("input", { maxlength: "200", "aria-label": "New component's group" });
  return h("form", { class: "grid", onsubmit: (e) => {
    e.preventDefault();
    const body = { name: name.value, group: group.value.trim() || null };
    act(ctx, () => ctx.post("/api/v1/status/components", body), "Component added", e.target);
  } }, h("label", {}, "Name ", name), h("label", {}, "Group ", group), h("button", { type: "submit" }, "Add component"));
}

/** A checkbox per component, each with the state it is put in. */
function affected(ctx, what, initial, states) {
  const { h } = ctx;
  const picks = ctx.components.map((c) => {
    const on = h("input", { type: "checkbox", "aria-label": `${what} affects ${c.name}` });
    const state = choice(h, states, initial, { "aria-label": `${c.name} becomes, during the ${what.toLowerCase()}` });
    return { c, on, state, el: h("li", {}, h("label", {}, on, " ", c.name), " ", state) };
  });
  const value = () => Object.fromEntries(picks.filter((p) => p.on.checked).map((p) => [p.c.id, p.state.value]));
  return { el: h("ul", { class: "picks" }, ...picks.map((p) => p.el)), value };
}

function incidentForm(ctx) {
  const { h } = ctx;
  const name = h("input", { id: "s-inc-name", required: true, maxlength: "200", "aria-label": "Incident name" });
  const status = choice(h, INCIDENT_STATES.slice(0, 3), "investigating", { "aria-label": "Incident state" });
  const message = h("textarea", { id: "s-inc-message", rows: 2, maxlength: "5000", required: true, "aria-label": "What visitors are told" });
  const picks = affected(ctx, "Incident", "partial_outage", COMPONENT_STATES.slice(1, 4));
  return h("form", { id: "s-incident-form", onsubmit: (e) => {
    e.preventDefault();
    const body = { name: name.value, status: status.value, message: message.value, components: picks.value() };
    act(ctx, () => ctx.post("/api/v1/status/incidents", body), "Incident opened", e.target);
  } }, h("h3", {}, "Open an incident"), h("div", { class: "grid" }, h("label", {}, "Name ", name), h("label", {}, "State ", status)),
  h("label", {}, "Message ", message), picks.el, h("button", { type: "submit" }, "Open incident"));
}

function updates(h, incident) {
  return h("ol", { class: "updates" }, ...incident.incident_updates.map((u) =>
    h("li", {}, h("strong", {}, label(INCIDENT_STATES, u.status) + " "), h("time", { datetime: u.created_at }, new Date(u.created_at).toLocaleString()), " — ", u.body)));
}

function incidentItem(ctx, incident) {
  const { h } = ctx;
  const status = choice(h, INCIDENT_STATES.slice(0, 3), incident.status, { "aria-label": `New state of ${incident.name}` });
  const message = h("input", { required: true, maxlength: "5000", "aria-label": `Update to ${incident.name}` });
  const post = h("form", { class: "inline", onsubmit: (e) => {
    e.preventDefault();
    act(ctx, () => ctx.post(`/api/v1/status/incidents/${incident.id}/updates`, { status: status.value, message: message.value }), "Update posted", e.target);
  } }, status, " ", message, " ", h("button", { type: "submit" }, "Post update"));
  const resolve = h("button", { type: "button", onclick: () => {
    const words = message.value.trim() || "This incident has been resolved.";
    act(ctx, () => ctx.post(`/api/v1/status/incidents/${incident.id}/resolve`, { message: words }), "Resolved");
  } }, "Resolve");
  const li = h("li", { class: "incident" }, h("strong", {}, incident.name), ` (${label(INCIDENT_STATES, incident.status)}) `,
    h("a", { href: incident.shortlink, target: "_blank", rel: "noopener" }, "page"), updates(h, incident), post, " ", resolve);
  li.dataset.incident = incident.id;
  return li;
}

function maintenanceItem(ctx, m) {
  const { h } = ctx;
  const span = [m.scheduled_for, m.scheduled_until].map((t) => (t ? new Date(t).toLocaleString() : "?")).join(" – ");
  const complete = h("button", { type: "button", onclick: () =>
    act(ctx, () => ctx.post(`/api/v1/status/incidents/${m.id}/updates`, { status: "completed", message: "The maintenance is complete." }), "Completed") }, "Complete");
  const li = h("li", {}, h("strong", {}, m.name), ` ${span} (${m.status.replace("_", " ")}) `, complete, updates(h, m));
  li.dataset.maintenance = m.id;
  return li;
}

function maintenanceForm(ctx) {
  const { h } = ctx;
  const name = h("input", { required: true, maxlength: "200", "aria-label": "Maintenance name" });
  const from = h("input", { type: "datetime-local", required: true, "aria-label": "Starts" });
  const until = h("input", { type: "datetime-local", required: true, "aria-label": "Ends" });
  const message = h("textarea", { rows: 2, maxlength: "5000", required: true, "aria-label": "What visitors are told about the maintenance" });
  const picks = affected(ctx, "Maintenance", "under_maintenance", COMPONENT_STATES.slice(4));
  return h("form", { id: "s-maint-form", onsubmit: (e) => {
    e.preventDefault();
    // The browser's local time, sent as UTC.
    const body = { name: name.value, message: message.value, components: picks.value(),
      scheduled_for: new Date(from.value).toISOString(), scheduled_until: new Date(until.value).toISOString() };
    act(ctx, () => ctx.post("/api/v1/status/maintenances", body), "Maintenance scheduled", e.target);
  } }, h("h3", {}, "Schedule a maintenance"), h("div", { class: "grid" }, h("label", {}, "Name ", name), h("label", {}, "Starts ", from), h("label", {}, "Ends ", until)),
  h("label", {}, "Message ", message), picks.el, h("button", { type: "submit" }, "Schedule"));
}

function monitorTable(ctx, monitors) {
  const { h } = ctx;
  const componentName = (id) => (ctx.components.find((c) => c.id === id) || {}).name || "";
  const rows = monitors.map((m) => {
    const health = m.failures > 0 ? `failing (${m.failures}): ${m.last_error || ""}` : m.last_check_at ? "passing" : "not checked yet";
    const remove = m.builtin ? h("span", { class: "sub" }, "built in") : h("button", { type: "button", "aria-label": `Delete monitor ${m.name}`, onclick: () => {
      if (confirm(`Delete the monitor ${m.name}?`)) act(ctx, () => ctx.api(`/api/v1/status/monitors/${m.id}`, { method: "DELETE" }), "Monitor deleted");
    } }, "Delete");
    const tr = h("tr", {}, h("td", {}, m.name), h("td", {}, h("code", {}, m.target)), h("td", {}, componentName(m.component_id)),
      h("td", {}, `${Math.round(m.interval_ms / 1000)} s`), h("td", {}, health), h("td", {}, remove));
    tr.dataset.monitor = m.id;
    return tr;
  });
  return h("table", {}, h("thead", {}, h("tr", {}, ...["Monitor", "Target", "Component", "Every", "Last check", ""].map((t) => h("th", {}, t)))), h("tbody", { id: "s-monitor-rows" }, ...rows));
}

function monitorForm(ctx) {
  const { h } = ctx;
  const name = h("input", { required: true, maxlength: "200", "aria-label": "Monitor name" });
  const url = h("input", { required: true, maxlength: "2000", placeholder: "https://… or tcp://host:port", "aria-label": "Monitor target" });
  const component = choice(h, ctx.components.map((c) => [c.id, c.name]), null, { "aria-label": "Component it speaks for" });
  const every = h("input", { type: "number", min: "5", value: "30", "aria-label": "Seconds between checks" });
  return h("form", { id: "s-monitor-form", class: "grid", onsubmit: (e) => {
    e.preventDefault();
    const body = { name: name.value, url: url.value, component: component.value, interval_ms: Number(every.value) * 1000 };
    act(ctx, () => ctx.post("/api/v1/status/monitors", body), "Monitor added", e.target);
  } }, h("label", {}, "Name ", name), h("label", {}, "Target ", url), h("label", {}, "Component ", component), h("label", {}, "Every (s) ", every), h("button", { type: "submit" }, "Add monitor"));
}
