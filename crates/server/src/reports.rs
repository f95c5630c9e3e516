//! Reports a support lead reads on Monday: how many chats, how long
//! visitors waited, whether they were happy, and when chats come in. Built
//! from the store's per-conversation facts (`store::reports`) for a range
//! of days in the site's IANA time zone (`WidgetSettings::time_zone`), so
//! days and hours are the site's own across daylight-saving changes. No
//! HTTP here; `http/reports` serves it as JSON and CSV.
//!
//! Definitions (docs/protocol.md §2.14):
//! - a *chat* is a conversation that did not begin as an offline message;
//!   it belongs to the range of the day it started on, in the time zone;
//! - *answered*: an agent wrote in it; *missed*: marked by `outbox::missed`;
//! - *wait*: from the visitor's first message (or the start) to the first
//!   agent message; *first response*: from the first assignment to it;
//! - *duration*: start to close, for closed chats;
//! - medians and 90th percentiles are nearest-rank;
//! - *CSAT*: the share of rated chats rated good (score ≥ 4).

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::greetings::GreetingFigures;
use crate::store::reports::ChatFacts;
use crate::store::{Agent, Group};

/// Longest range one report covers, in days.
pub const MAX_DAYS: i64 = 366;

/// A range of whole days in a time zone, as the store's instants.
#[derive(Debug, Clone)]
pub struct DayRange {
    pub from: Date,
    /// Inclusive.
    pub to: Date,
    pub tz: TimeZone,
    pub tz_name: String,
    /// The first day's start, in ms.
    pub start_ms: i64,
    /// The day after `to`'s start, in ms (exclusive).
    pub end_ms: i64,
}

impl DayRange {
    /// `from` and `to` as `YYYY-MM-DD`, both included, in time zone `tz`.
    pub fn parse(from: &str, to: &str, tz_name: &str) -> Result<DayRange> {
        let day = |s: &str, what: &str| {
            s.parse::<Date>().map_err(|_| Error::bad_request(format!("{what} must be a date like 2026-03-29")))
        };
        let (from, to) = (day(from, "from")?, day(to, "to")?);
        if to < from {
            return Err(Error::bad_request("to must not be before from"));
        }
        let days = from.until(to).map(|span| span.get_days() as i64).unwrap_or(i64::MAX);
        if days >= MAX_DAYS {
            return Err(Error::bad_request(format!("a report covers at most {MAX_DAYS} days")));
        }
        let tz = TimeZone::get(tz_name).map_err(|_| Error::bad_request("the site's time zone is unknown"))?;
        let start = |d: Date| {
            d.to_zoned(tz.clone())
                .and_then(|z| z.start_of_day())
                .map(|z| z.timestamp().as_millisecond())
                .map_err(|e| Error::bad_request(format!("date out of range: {e}")))
        };
        let next = to.tomorrow().map_err(|_| Error::bad_request("to is out of range"))?;
        Ok(DayRange { from, to, start_ms: start(from)?, end_ms: start(next)?, tz, tz_name: tz_name.to_owned() })
    }
}

/// Median and 90th percentile (nearest rank) of some durations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Spread {
    pub count: usize,
    pub median_ms: Option<i64>,
    pub p90_ms: Option<i64>,
}

impl Spread {
    fn of(mut values: Vec<i64>) -> Spread {
        values.sort_unstable();
        let rank = |p: f64| {
            let n = values.len();
            (n > 0).then(|| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
        Spread { count: values.len(), median_ms: rank(0.5), p90_ms: rank(0.9) }
    }
}

/// The figures of one slice (the site, a group, an agent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub chats: usize,
    pub answered: usize,
    pub missed: usize,
    pub offline: usize,
    pub wait: Spread,
    pub first_response: Spread,
    pub duration: Spread,
    /// Messages (anyone's) per chat, to two decimals; `None` without chats.
    pub messages_per_chat: Option<f64>,
    pub rated: usize,
    pub rated_good: usize,
    /// `rated_good / rated`, to three decimals; `None` when nothing was rated.
    pub csat: Option<f64>,
}

impl Figures {
    fn of<'a>(facts: impl Iterator<Item = &'a ChatFacts>) -> Figures {
        let mut f = Figures::default();
        let (mut waits, mut responses, mut durations, mut messages) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for c in facts {
            if c.offline {
                f.offline += 1;
                continue;
            }
            f.chats += 1;
            messages += c.messages;
            f.missed += usize::from(c.missed);
            if let Some(reply) = c.first_agent_at {
                f.answered += 1;
                waits.push((reply - c.first_visitor_at.unwrap_or(c.created_at)).max(0));
                if let Some(assigned) = c.first_assigned_at {
                    responses.push((reply - assigned).max(0));
                }
            }
            if let Some(closed) = c.closed_at {
                durations.push((closed - c.created_at).max(0));
            }
            if let Some(score) = c.score {
                f.rated += 1;
                f.rated_good += usize::from(score >= 4);
            }
        }
        f.wait = Spread::of(waits);
        f.first_response = Spread::of(responses);
        f.duration = Spread::of(durations);
        let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
        f.messages_per_chat = (f.chats > 0).then(|| round(messages as f64 / f.chats as f64, 2));
        f.csat = (f.rated > 0).then(|| round(f.rated_good as f64 / f.rated as f64, 3));
        f
    }
}

/// A named slice: a group or an agent.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Slice {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub time_zone: String,
    pub site: Figures,
    pub groups: Vec<Slice>,
    pub agents: Vec<Slice>,
    /// Chats started, by weekday (0 = Monday) and hour (0–23), in the
    /// site's time zone.
    pub heatmap: Vec<[u32; 24]>,
    /// Each proactive greeting rule's greetings shown and chats started
    /// over the report's days (admins only).
    pub greetings: Vec<GreetingFigures>,
}

/// The report of `facts` (the store's, for `range`), named with the
/// site's groups and agents. Agents without chats are listed too (with
/// zeros) when given; facts naming an unknown one show its id.
pub fn build(range: &DayRange, facts: &[ChatFacts], groups: &[Group], agents: &[Agent]) -> Report {
    let mut heatmap = vec![[0u32; 24]; 7];
    for c in facts.iter().filter(|c| !c.offline) {
        if let Ok(ts) = jiff::Timestamp::from_millisecond(c.created_at) {
            let local = ts.to_zoned(range.tz.clone());
            let day = local.weekday().to_monday_zero_offset() as usize;
            heatmap[day][local.hour() as usize] += 1;
        }
    }
    let slices = |key: &dyn Fn(&ChatFacts) -> Option<&str>, names: Vec<(String, String)>| {
        let mut by: BTreeMap<String, Vec<&ChatFacts>> = names.iter().map(|(id, _)| (id.clone(), Vec::new())).collect();
        for c in facts {
            if let Some(k) = key(c) {
                by.entry(k.to_owned()).or_default().push(c);
            }
        }
        let mut out: Vec<Slice> = by
            .into_iter()
            .map(|(id, list)| {
                let name = names.iter().find(|(i, _)| *i == id).map_or_else(|| id.clone(), |(_, n)| n.clone());
                Slice { id, name, figures: Figures::of(list.into_iter()) }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        out
    };
    Report {
        from: range.from.to_string(),
        to: range.to.to_string(),
        time_zone: range.tz_name.clone(),
        site: Figures::of(facts.iter()),
        groups: slices(&|c| Some(&c.group_id), groups.iter().map(|g| (g.id.clone(), g.name.clone())).collect()),
        agents: slices(&|c| c.agent_id.as_deref(), agents.iter().map(|a| (a.id.clone(), a.name.clone())).collect()),
        heatmap,
        greetings: Vec::new(),
    }
}

/// The tables of a report, as CSV (RFC 4180, CRLF). A cell a spreadsheet
/// would read as a formula (`=`, `+`, `-`, `@`, tab, CR) is prefixed with
/// `'`, so a hostile agent or group name stays text.
pub fn csv(report: &Report, table: &str) -> Result<String> {
    const FIGURES: &str = "chats,answered,missed,offline,wait_median_ms,wait_p90_ms,first_response_median_ms,\
first_response_p90_ms,duration_median_ms,duration_p90_ms,messages_per_chat,rated,rated_good,csat";
    let figures = |f: &Figures| {
        let n = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let x = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        [
            f.chats.to_string(),
            f.answered.to_string(),
            f.missed.to_string(),
            f.offline.to_string(),
            n(f.wait.median_ms),
            n(f.wait.p90_ms),
            n(f.first_response.median_ms),
            n(f.first_response.p90_ms),
            n(f.duration.median_ms),
            n(f.duration.p90_ms),
            x(f.messages_per_chat),
            f.rated.to_string(),
            f.rated_good.to_string(),
            x(f.csat),
        ]
        .join(",")
    };
    let mut out = String::new();
    match table {
        "summary" => {
            out += &format!("from,to,time_zone,{FIGURES}\r\n");
            out += &format!("{},{},{},{}\r\n", report.from, report.to, cell(&report.time_zone), figures(&report.site));
        }
        "groups" | "agents" => {
            let key = if table == "groups" { "group" } else { "agent" };
            out += &format!("{key}_id,{key},{FIGURES}\r\n");
            let rows = if table == "groups" { &report.groups } else { &report.agents };
            for s in rows {
                out += &format!("{},{},{}\r\n", cell(&s.id), cell(&s.name), figures(&s.figures));
            }
        }
        "heatmap" => {
            out += "weekday,hour,chats\r\n";
            const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
            for (day, hours) in report.heatmap.iter().enumerate() {
                for (hour, n) in hours.iter().enumerate() {
                    out += &format!("{},{hour},{n}\r\n", DAYS[day]);
                }
            }
        }
        _ => return Err(Error::bad_request("table must be summary, groups, agents or heatmap")),
    }
    Ok(out)
}

/// One CSV cell: quoted when needed, formula starts neutralised.
fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\r', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Spread::of(vec![40, 10, 30, 20]);
        assert_eq!((s.count, s.median_ms, s.p90_ms), (4, Some(20), Some(40)));
        assert_eq!(Spread::of(vec![]), Spread { count: 0, median_ms: None, p90_ms: None });
        let s = Spread::of((1..=10).collect());
        assert_eq!((s.median_ms, s.p90_ms), (Some(5), Some(9)));
    }

    #[test]
    fn days_are_the_time_zones_across_daylight_saving() {
        // Oslo springs forward on 2026-03-29: that day has 23 hours.
        let r = DayRange::parse("2026-03-29", "2026-03-29", "Europe/Oslo").unwrap();
        assert_eq!(r.end_ms - r.start_ms, 23 * 3_600_000);
        assert_eq!(r.start_ms, 1_774_738_800_000); // 2026-03-28T23:00:00Z
        let r = DayRange::parse("2026-10-25", "2026-10-25", "Europe/Oslo").unwrap();
        assert_eq!(r.end_ms - r.start_ms, 25 * 3_600_000);
        assert!(DayRange::parse("2026-03-30", "2026-03-29", "UTC").is_err());
        assert!(DayRange::parse("2026-02-30", "2026-03-29", "UTC").is_err());
        assert!(DayRange::parse("2025-01-01", "2026-12-31", "UTC").is_err());
        assert!(DayRange::parse("2026-01-01", "2026-01-02", "Mars/Olympus").is_err());
    }

    #[test]
    fn csv_cells_stay_text() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("Ann, Bob"), "\"Ann, Bob\"");
        assert_eq!(cell("plain"), "plain");
    }
}
