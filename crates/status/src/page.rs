//! The public page, rendered on the server: it works without JavaScript
//! (the script only shows times in the reader's zone). Every value from the
//! store is escaped; postmortems are Markdown rendered and then sanitized.

use std::collections::HashMap;
use std::fmt::Write;

use super::Status;
use super::api::{Summary, status_words};
use super::time::{human, iso8601, short_day};
use crate::store::{Component, ComponentStatus, Incident, IncidentKind, IncidentStatus, UptimeDay};

/// Days of uptime history shown per component.
pub const UPTIME_DAYS: i64 = 90;

pub const STYLESHEET: &str = include_str!("../../../assets/status.css");
pub const SCRIPT: &str = include_str!("../../../assets/status.js");

/// Escape text for HTML element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Markdown to HTML that is safe to embed: no scripts, no event handlers,
/// no `javascript:` links, no styles; links get `rel="noopener noreferrer"`.
pub fn markdown(md: &str) -> String {
    let parser = pulldown_cmark::Parser::new_ext(md, pulldown_cmark::Options::ENABLE_TABLES);
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, parser);
    ammonia::clean(&html)
}

/// Plain text with line breaks kept.
fn paragraphs(text: &str) -> String {
    escape(text).replace("\r\n", "\n").replace('\n', "<br>")
}

pub fn status_label(s: IncidentStatus) -> &'static str {
    match s {
        IncidentStatus::Investigating => "Investigating",
        IncidentStatus::Identified => "Identified",
        IncidentStatus::Monitoring => "Monitoring",
        IncidentStatus::Resolved => "Resolved",
        IncidentStatus::Postmortem => "Postmortem",
        IncidentStatus::Scheduled => "Scheduled",
        IncidentStatus::InProgress => "In progress",
        IncidentStatus::Verifying => "Verifying",
        IncidentStatus::Completed => "Completed",
    }
}

/// A time in UTC that the script rewrites into the reader's zone.
fn time_tag(ms: i64) -> String {
    format!("<time datetime=\"{}\">{}</time>", iso8601(ms), human(ms))
}

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/status/status.css\">\
         <link rel=\"alternate\" type=\"application/atom+xml\" title=\"Incident history (Atom)\" href=\"/status/history.atom\">\
         <link rel=\"alternate\" type=\"application/rss+xml\" title=\"Incident history (RSS)\" href=\"/status/history.rss\">\
         <script src=\"/status/status.js\" defer></script></head><body><main>",
        escape(title)
    );
}

fn foot(out: &mut String) {
    out.push_str(
        "<footer><a href=\"/status/history.atom\">Atom</a> · <a href=\"/status/history.rss\">RSS</a> · \
         <a href=\"/api/v2/summary.json\">JSON API</a> · Powered by Holdfast</footer></main></body></html>",
    );
}

fn component_class(s: ComponentStatus) -> &'static str {
    s.as_str()
}

/// One component's 90 daily bars, oldest first, and its uptime over the
/// days that have probe results.
fn uptime_bars(out: &mut String, days: &HashMap<i64, (i64, i64)>, today: i64) {
    let (mut ok_sum, mut total_sum) = (0, 0);
    out.push_str("<div class=\"bars\" aria-hidden=\"true\">");
    for day in today - UPTIME_DAYS + 1..=today {
        let (class, title) = match days.get(&day) {
            None | Some((_, 0)) => ("none", format!("{}: no data", short_day(day))),
            Some(&(ok, total)) => {
                ok_sum += ok;
                total_sum += total;
                let pct = ok as f64 * 100.0 / total as f64;
                let class = if pct >= 99.9 {
                    "up"
                } else if pct >= 99.0 {
                    "dip"
                } else if pct >= 90.0 {
                    "partial"
                } else {
                    "down"
                };
                (class, format!("{}: {pct:.2}% of {total} checks passed", short_day(day)))
            }
        };
        let _ = write!(out, "<span class=\"bar {class}\" title=\"{}\"></span>", escape(&title));
    }
    out.push_str("</div>");
    let summary = if total_sum == 0 {
        "no checks yet".to_owned()
    } else {
        format!("{:.2}% uptime", ok_sum as f64 * 100.0 / total_sum as f64)
    };
    let _ = write!(
        out,
        "<div class=\"uptime\"><span>{UPTIME_DAYS} days ago</span><span>{summary}</span><span>Today</span></div>"
    );
}

fn incident_summary(out: &mut String, incident: &Incident) {
    let _ = write!(
        out,
        "<article class=\"incident impact-{}\"><h3><a href=\"/status/incidents/{}\">{}</a></h3>",
        incident.impact.as_str(),
        escape(&incident.id),
        escape(&incident.name)
    );
    if let Some(u) = incident.updates.last() {
        let _ = write!(
            out,
            "<p><strong>{}</strong> – {}</p><p class=\"when\">{}</p>",
            status_label(u.status),
            paragraphs(&u.body),
            time_tag(u.created_at)
        );
    }
    if let (Some(f), Some(u)) = (incident.scheduled_for, incident.scheduled_until) {
        let _ = write!(out, "<p class=\"when\">Scheduled for {} to {}</p>", time_tag(f), time_tag(u));
    }
    out.push_str("</article>");
}

/// The page at `/status`.
pub fn render_status(
    status: &Status,
    summary: &Summary,
    history: &[Incident],
    uptime: &[UptimeDay],
    today: i64,
) -> String {
    let mut out = String::with_capacity(32 * 1024);
    head(&mut out, &format!("{} Status", status.config.page_name));
    let _ = write!(
        out,
        "<header><h1>{} Status</h1></header><section class=\"overall indicator-{}\"><h2>{}</h2></section>",
        escape(&status.config.page_name),
        summary.status.indicator,
        escape(summary.status.description)
    );
    if !summary.incidents.is_empty() {
        out.push_str("<section class=\"active\"><h2>Active incidents</h2>");
        for i in &summary.incidents {
            incident_summary(&mut out, i);
        }
        out.push_str("</section>");
    }
    if !summary.maintenances.is_empty() {
        out.push_str("<section class=\"maintenance\"><h2>Scheduled maintenance</h2>");
        for m in &summary.maintenances {
            incident_summary(&mut out, m);
        }
        out.push_str("</section>");
    }

    let mut by_component: HashMap<&str, HashMap<i64, (i64, i64)>> = HashMap::new();
    for d in uptime {
        by_component.entry(d.component_id.as_str()).or_default().insert(d.day, (d.ok, d.total));
    }
    out.push_str("<section class=\"components\"><h2>Components</h2>");
    let shown: Vec<&Component> = summary
        .components
        .iter()
        .filter(|c| !c.only_show_if_degraded || c.status != ComponentStatus::Operational)
        .collect();
    let mut current_group: Option<&str> = None;
    for c in shown {
        if c.group.as_deref() != current_group {
            current_group = c.group.as_deref();
            if let Some(g) = current_group {
                let _ = write!(out, "<h3 class=\"group\">{}</h3>", escape(g));
            }
        }
        let _ = write!(
            out,
            "<div class=\"component\"><div class=\"row\"><span class=\"name\">{}</span>\
             <span class=\"state {}\">{}</span></div>",
            escape(&c.name),
            component_class(c.status),
            status_words(c.status)
        );
        if let Some(d) = &c.description {
            let _ = write!(out, "<p class=\"description\">{}</p>", escape(d));
        }
        let empty = HashMap::new();
        uptime_bars(&mut out, by_component.get(c.id.as_str()).unwrap_or(&empty), today);
        out.push_str("</div>");
    }
    out.push_str("</section>");

    out.push_str("<section class=\"history\"><h2>Incident history</h2>");
    if history.is_empty() {
        out.push_str("<p>No incidents reported.</p>");
    }
    for i in history {
        let _ = write!(
            out,
            "<article class=\"incident impact-{}\"><h3><a href=\"/status/incidents/{}\">{}</a></h3>\
             <p class=\"when\">{} · {}</p></article>",
            i.impact.as_str(),
            escape(&i.id),
            escape(&i.name),
            status_label(i.status),
            time_tag(i.created_at)
        );
    }
    out.push_str("</section>");
    subscribe_form(&mut out, status);
    foot(&mut out);
    out
}

fn subscribe_form(out: &mut String, status: &Status) {
    out.push_str(
        "<section class=\"subscribe\"><h2>Get updates</h2><form method=\"post\" action=\"/status/subscribe\">",
    );
    if status.config.smtp.is_some() {
        out.push_str(
            "<label>Email <input type=\"email\" name=\"email\" maxlength=\"254\" placeholder=\"you@example.com\"></label>",
        );
    }
    out.push_str(
        "<label>Webhook URL <input type=\"url\" name=\"endpoint\" maxlength=\"2048\" placeholder=\"https://…\"></label>\
         <button type=\"submit\">Subscribe</button></form></section>",
    );
}

/// The page of one incident, laid out like a classic incident report: the
/// postmortem, then the updates newest first, then what it affected.
pub fn render_incident(status: &Status, incident: &Incident, components: &[Component]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    head(&mut out, &format!("{} – {}", incident.name, status.config.page_name));
    let kind = if incident.kind == IncidentKind::Maintenance { "Maintenance" } else { "Incident Report" };
    let _ = write!(
        out,
        "<p class=\"back\"><a href=\"/status\">← {} Status</a></p><header><h1>{}</h1>\
         <p class=\"subtitle\">{kind} for {}</p></header>",
        escape(&status.config.page_name),
        escape(&incident.name),
        escape(&status.config.page_name)
    );
    if let Some(pm) = &incident.postmortem {
        let _ = write!(
            out,
            "<section class=\"postmortem\"><h2>Postmortem</h2><div class=\"markdown\">{}</div>",
            markdown(pm)
        );
        if let Some(at) = incident.postmortem_at {
            let _ = write!(out, "<p class=\"when\">Posted {}</p>", time_tag(at));
        }
        out.push_str("</section>");
    }
    out.push_str("<section class=\"updates\">");
    for u in incident.updates.iter().rev() {
        let _ = write!(
            out,
            "<article class=\"update\"><h3>{}</h3><p>{}</p><p class=\"when\">Posted {}</p></article>",
            status_label(u.status),
            paragraphs(&u.body),
            time_tag(u.created_at)
        );
    }
    out.push_str("</section>");
    let names: Vec<String> = incident
        .components
        .iter()
        .filter_map(|id| components.iter().find(|c| &c.id == id))
        .map(|c| escape(&c.name))
        .collect();
    if !names.is_empty() {
        let _ = write!(out, "<p class=\"affected\">This incident affected: {}.</p>", names.join(", "));
    }
    foot(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_keeps_formatting_and_drops_scripts() {
        let html = markdown("# Summary\n\n**bold** and [a link](https://example.com)");
        assert!(html.contains("<h1>Summary</h1>") && html.contains("<strong>bold</strong>"), "{html}");
        assert!(html.contains("rel=\"noopener noreferrer\""), "{html}");
        for payload in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "[click](javascript:alert(1))",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<iframe src=\"https://evil.example\"></iframe>",
            "<svg onload=alert(1)>",
            "<div style=\"background:url(javascript:alert(1))\">x</div>",
        ] {
            let html = markdown(payload).to_lowercase();
            for bad in ["<script", "onerror", "onload", "javascript:", "<iframe", "style="] {
                assert!(!html.contains(bad), "{payload:?} left {bad:?} in {html:?}");
            }
        }
    }

    #[test]
    fn escape_covers_attribute_and_element_context() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
