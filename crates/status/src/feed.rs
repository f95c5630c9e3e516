//! Atom and RSS feeds of the incident history (newest first), each entry
//! carrying the incident's updates as escaped HTML.

use std::fmt::Write;

use super::Status;
use super::page::{escape, status_label};
use super::time::{human, iso8601, rfc2822};
use crate::store::Incident;

/// The updates of an incident as HTML (escaped again by the feed's XML).
fn content(incident: &Incident) -> String {
    let mut html = String::new();
    for u in incident.updates.iter().rev() {
        let _ = write!(
            html,
            "<p><small>{}</small><br><strong>{}</strong> - {}</p>",
            human(u.created_at),
            status_label(u.status),
            escape(&u.body)
        );
    }
    html
}

pub fn atom(status: &Status, incidents: &[Incident]) -> String {
    let base = &status.base_url;
    let updated = incidents.iter().map(|i| i.updated_at).max().unwrap_or(0);
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"en\">\
         <id>{base_e}/status</id><link rel=\"alternate\" type=\"text/html\" href=\"{base_e}/status\"/>\
         <link rel=\"self\" type=\"application/atom+xml\" href=\"{base_e}/status/history.atom\"/>\
         <title>{} Status - Incident History</title><updated>{}</updated>",
        escape(&status.config.page_name),
        iso8601(updated),
        base_e = escape(base)
    );
    for i in incidents {
        let _ = write!(
            out,
            "<entry><id>{base_e}/status/incidents/{id}</id><published>{}</published><updated>{}</updated>\
             <link rel=\"alternate\" type=\"text/html\" href=\"{base_e}/status/incidents/{id}\"/>\
             <title>{}</title><content type=\"html\">{}</content></entry>",
            iso8601(i.created_at),
            iso8601(i.updated_at),
            escape(&i.name),
            escape(&content(i)),
            base_e = escape(base),
            id = escape(&i.id)
        );
    }
    out.push_str("</feed>\n");
    out
}

pub fn rss(status: &Status, incidents: &[Incident]) -> String {
    let base = escape(&status.base_url);
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\"><channel>\
         <title>{} Status - Incident History</title><link>{base}/status</link>\
         <description>Statuspage</description>",
        escape(&status.config.page_name)
    );
    for i in incidents {
        let _ = write!(
            out,
            "<item><title>{}</title><description>{}</description><pubDate>{}</pubDate>\
             <link>{base}/status/incidents/{id}</link><guid>{base}/status/incidents/{id}</guid></item>",
            escape(&i.name),
            escape(&content(i)),
            rfc2822(i.created_at),
            id = escape(&i.id)
        );
    }
    out.push_str("</channel></rss>\n");
    out
}
