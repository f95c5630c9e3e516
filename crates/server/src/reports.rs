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

use std::any::Any;
use std::collections::BTreeMap;

// Hashed for every chat of a report (its group, agent, pair and quarter
// hour): with SipHash, std's default, hashing was a third of a report's
// tally on PostgreSQL (`docs/benchmarks.md`). No key here is chosen by
// whoever could flood it: ids are the site's, times are whole quarters.
use foldhash::HashMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::greetings::GreetingFigures;
use crate::store::reports::{ChatFacts, FactSink};
use crate::store::{Agent, Group, Store};

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
    /// Each rank is selected, not sorted for: a month of a busy site is
    /// some 75,000 values per figure, and sorting them all was most of
    /// building its report.
    fn of(mut values: Vec<i64>) -> Spread {
        let n = values.len();
        // The 1-based nearest rank of `p`, as an index.
        let rank = |p: f64| ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
        if n == 0 {
            return Spread::default();
        }
        let (p50, p90) = (rank(0.5), rank(0.9));
        // Everything before the 90th percentile's place is no larger than
        // it, so the median (at or before it) is selected among those.
        let (below, &mut p90_ms, _) = values.select_nth_unstable(p90);
        let median_ms = if p50 == p90 { p90_ms } else { *below.select_nth_unstable(p50).1 };
        Spread { count: n, median_ms: Some(median_ms), p90_ms: Some(p90_ms) }
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
    /// The figures of the chats of some (group, agent) pairs.
    fn of<'a>(pairs: impl Iterator<Item = &'a PairTally> + Clone) -> Figures {
        let gather = |values: fn(&PairTally) -> &[i64]| {
            let all: Vec<i64> = pairs.clone().flat_map(|p| values(p).iter().copied()).collect();
            Spread::of(all)
        };
        let mut all = PairTally::default();
        pairs.clone().for_each(|p| all.add_counts(p));
        let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
        Figures {
            chats: all.chats,
            answered: all.answered,
            missed: all.missed,
            offline: all.offline,
            wait: gather(|p| &p.waits),
            first_response: gather(|p| &p.responses),
            duration: gather(|p| &p.durations),
            messages_per_chat: (all.chats > 0).then(|| round(all.messages as f64 / all.chats as f64, 2)),
            rated: all.rated,
            rated_good: all.rated_good,
            csat: (all.rated > 0).then(|| round(all.rated_good as f64 / all.rated as f64, 3)),
        }
    }
}

/// What a report keeps of the chats of one (group, agent) pair: counts,
/// and the durations its medians and percentiles are taken from.
#[derive(Debug, Default)]
struct PairTally {
    chats: usize,
    answered: usize,
    missed: usize,
    offline: usize,
    messages: i64,
    rated: usize,
    rated_good: usize,
    waits: Vec<i64>,
    responses: Vec<i64>,
    durations: Vec<i64>,
}

impl PairTally {
    /// Add `other`'s counts (not its durations).
    fn add_counts(&mut self, other: &PairTally) {
        self.chats += other.chats;
        self.answered += other.answered;
        self.missed += other.missed;
        self.offline += other.offline;
        self.messages += other.messages;
        self.rated += other.rated;
        self.rated_good += other.rated_good;
    }
}

/// A quarter hour, the finest step of any time zone's offset in use, so
/// nearly always all in one local hour.
const QUARTER_MS: i64 = 15 * 60 * 1000;

/// A report's facts as the store reads them, kept per (group, agent) pair
/// (a few dozen), so the rows themselves are never held: a year's report
/// is every chat of the year, with no cap.
pub struct Tally {
    tz: TimeZone,
    /// `tz`'s name: a day's share (`FactSink::share`) depends on it.
    tz_name: String,
    /// Ids seen, numbered in order of appearance.
    groups: HashMap<String, usize>,
    agents: HashMap<String, usize>,
    /// By (group number, agent number + 1, or 0 without an agent).
    pairs: HashMap<(usize, usize), PairTally>,
    /// Chats started, by weekday (0 = Monday) and hour, in `tz`.
    heatmap: Vec<[u32; 24]>,
    /// A quarter hour's weekday and hour in `tz`, when the whole quarter
    /// is in one local hour; `None` when it is not (an offset of odd
    /// minutes, as in some zones before 1980): its chats are placed one
    /// by one.
    quarters: HashMap<i64, Option<(usize, usize)>>,
    /// The numbers of the ids of the summary being read
    /// (`FactSink::day_ids`), as groups and as agents, once looked up:
    /// hashing each chat's ids was a fifth of a report's tally.
    day_groups: Vec<Option<usize>>,
    day_agents: Vec<Option<usize>>,
}

impl Tally {
    pub fn new(range: &DayRange) -> Tally {
        Tally::in_zone(&range.tz, &range.tz_name)
    }

    fn in_zone(tz: &TimeZone, tz_name: &str) -> Tally {
        Tally {
            tz: tz.clone(),
            tz_name: tz_name.to_owned(),
            groups: HashMap::default(),
            agents: HashMap::default(),
            pairs: HashMap::default(),
            heatmap: vec![[0u32; 24]; 7],
            quarters: HashMap::default(),
            day_groups: Vec::new(),
            day_agents: Vec::new(),
        }
    }

    /// Whether a chat in a group with this id was counted.
    pub fn saw_group(&self, id: &str) -> bool {
        self.groups.contains_key(id)
    }

    /// The number of `id`, at `position` among the summary's ids if
    /// given: looked up in `ids` once a summary.
    fn number_at(
        ids: &mut HashMap<String, usize>,
        day: &mut [Option<usize>],
        position: Option<u32>,
        id: &str,
    ) -> usize {
        match position.and_then(|p| day.get_mut(p as usize)) {
            Some(slot) => *slot.get_or_insert_with(|| Tally::number(ids, id)),
            None => Tally::number(ids, id),
        }
    }

    fn number(ids: &mut HashMap<String, usize>, id: &str) -> usize {
        match ids.get(id) {
            Some(&n) => n,
            None => {
                let n = ids.len();
                ids.insert(id.to_owned(), n);
                n
            }
        }
    }

    /// Count a chat started at `at` (ms) in its local weekday and hour.
    fn place(&mut self, at: i64) {
        let tz = &self.tz;
        let quarter = at.div_euclid(QUARTER_MS);
        let whole = *self.quarters.entry(quarter).or_insert_with(|| {
            let start = quarter * QUARTER_MS;
            let (first, last) = (local(tz, start)?, local(tz, start + QUARTER_MS - 1)?);
            (first == last).then_some((first.0, first.1))
        });
        if let Some((day, hour)) = whole.or_else(|| local(tz, at).map(|(day, hour, _)| (day, hour))) {
            self.heatmap[day][hour] += 1;
        }
    }
}

/// Weekday (0 = Monday), hour and UTC offset (s) of an instant in `tz`.
fn local(tz: &TimeZone, at: i64) -> Option<(usize, usize, i32)> {
    let local = jiff::Timestamp::from_millisecond(at).ok()?.to_zoned(tz.clone());
    Some((local.weekday().to_monday_zero_offset() as usize, local.hour() as usize, local.offset().seconds()))
}

impl FactSink for Tally {
    fn add(&mut self, c: &ChatFacts<'_>) {
        let (group_at, agent_at) = c.named.map_or((None, None), |(g, a)| (Some(g), a));
        let group = Tally::number_at(&mut self.groups, &mut self.day_groups, group_at, c.group_id);
        let agent = c.agent_id.map_or(0, |a| Tally::number_at(&mut self.agents, &mut self.day_agents, agent_at, a) + 1);
        let p = self.pairs.entry((group, agent)).or_default();
        if c.offline {
            p.offline += 1;
            return;
        }
        p.chats += 1;
        p.messages += c.messages;
        p.missed += usize::from(c.missed);
        if let Some(reply) = c.first_agent_at {
            p.answered += 1;
            p.waits.push((reply - c.first_visitor_at.unwrap_or(c.created_at)).max(0));
            if let Some(assigned) = c.first_assigned_at {
                p.responses.push((reply - assigned).max(0));
            }
        }
        if let Some(closed) = c.closed_at {
            p.durations.push((closed - c.created_at).max(0));
        }
        if let Some(score) = c.score {
            p.rated += 1;
            p.rated_good += usize::from(score >= 4);
        }
        self.place(c.created_at);
    }

    fn day_ids(&mut self, ids: &[&str]) {
        for day in [&mut self.day_groups, &mut self.day_agents] {
            day.clear();
            day.resize(ids.len(), None);
        }
    }

    fn share(&self) -> Option<(String, Box<dyn FactSink>)> {
        Some((self.tz_name.clone(), Box::new(Tally::in_zone(&self.tz, &self.tz_name))))
    }

    fn add_share(&mut self, share: &dyn FactSink) -> bool {
        let Some(share) = (share as &dyn Any).downcast_ref::<Tally>().filter(|s| s.tz_name == self.tz_name) else {
            return false;
        };
        // The share's numbers of its ids, as this tally's.
        let numbers = |seen: &HashMap<String, usize>, ours: &mut HashMap<String, usize>| {
            let mut numbers = vec![0; seen.len()];
            for (id, &n) in seen {
                numbers[n] = Tally::number(ours, id);
            }
            numbers
        };
        let groups = numbers(&share.groups, &mut self.groups);
        let agents = numbers(&share.agents, &mut self.agents);
        for (&(group, agent), theirs) in &share.pairs {
            let agent = agent.checked_sub(1).map_or(0, |a| agents[a] + 1);
            let p = self.pairs.entry((groups[group], agent)).or_default();
            p.add_counts(theirs);
            p.waits.extend_from_slice(&theirs.waits);
            p.responses.extend_from_slice(&theirs.responses);
            p.durations.extend_from_slice(&theirs.durations);
        }
        for (ours, theirs) in self.heatmap.iter_mut().zip(&share.heatmap) {
            for (ours, theirs) in ours.iter_mut().zip(theirs) {
                *ours += theirs;
            }
        }
        true
    }

    fn keep(&mut self) -> usize {
        // What only tallying needed.
        self.quarters = HashMap::default();
        self.day_groups = Vec::new();
        self.day_agents = Vec::new();
        let ids: usize = self.groups.keys().chain(self.agents.keys()).map(|id| id.len() + 32).sum();
        let pairs: usize = self
            .pairs
            .values_mut()
            .map(|p| {
                for values in [&mut p.waits, &mut p.responses, &mut p.durations] {
                    values.shrink_to_fit();
                }
                std::mem::size_of::<PairTally>() + 16 + 8 * (p.waits.len() + p.responses.len() + p.durations.len())
            })
            .sum();
        std::mem::size_of::<Tally>() + ids + pairs + 7 * 24 * 4
    }
}

/// Every fact of a report's range (an agent's own if `agent_id`), as the
/// store reads them.
pub async fn tally(store: &dyn Store, site_id: &str, range: &DayRange, agent_id: Option<&str>) -> Result<Tally> {
    let sink = Box::new(Tally::new(range));
    let sink: Box<dyn Any> = store.report_facts(site_id, range.start_ms, range.end_ms, agent_id, sink).await?;
    sink.downcast::<Tally>()
        .map(|t| *t)
        .map_err(|_| Error::internal(anyhow::anyhow!("the store gave back another sink")))
}

/// How often the lead keeps the store's report summaries: a round every
/// `every` (`keep_summaries`). A summary is made within a round of its
/// day settling, or of a late change emptying it.
#[derive(Debug, Clone)]
pub struct SummariesConfig {
    pub every: std::time::Duration,
}

impl Default for SummariesConfig {
    fn default() -> Self {
        SummariesConfig { every: std::time::Duration::from_secs(300) }
    }
}

/// The pause before the next round when a report cut one short.
const ROUND_AGAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Keep the store's summaries of settled days (`Store::keep_report_summaries`),
/// on the node that holds the lead, a round every `config.every`, until
/// dropped (the first `every` after taking the lead): reports then find
/// a settled day's summary made and answer from it alone.
pub async fn keep_summaries(store: std::sync::Arc<dyn Store>, config: SummariesConfig) {
    let mut pause = config.every;
    loop {
        tokio::time::sleep(pause).await;
        pause = match store.keep_report_summaries(crate::store::now_ms()).await {
            Ok(kept) => {
                metrics::counter!("holdfast_report_summaries_made_total").increment(kept.made);
                metrics::gauge!("holdfast_report_summaries_missing").set(kept.left as f64);
                metrics::counter!("holdfast_report_summary_rounds_total").increment(1);
                if kept.left > 0 { ROUND_AGAIN } else { config.every }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep the reports' summaries; trying again later");
                config.every
            }
        };
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

/// The report of `tally` (the store's facts, for `range`), named with the
/// site's groups and agents. Agents without chats are listed too (with
/// zeros) when given; facts naming an unknown one show its id.
pub fn build(range: &DayRange, tally: &Tally, groups: &[Group], agents: &[Agent]) -> Report {
    let slices =
        |seen: &HashMap<String, usize>, of: &dyn Fn(&(usize, usize)) -> Option<usize>, names: Vec<(String, String)>| {
            let mut ids: BTreeMap<String, Option<usize>> = names.iter().map(|(id, _)| (id.clone(), None)).collect();
            ids.extend(seen.iter().map(|(id, n)| (id.clone(), Some(*n))));
            let mut out: Vec<Slice> = ids
                .into_iter()
                .map(|(id, n)| {
                    let name = names.iter().find(|(i, _)| *i == id).map_or_else(|| id.clone(), |(_, n)| n.clone());
                    let pairs = tally.pairs.iter().filter(|(k, _)| n.is_some() && of(k) == n).map(|(_, p)| p);
                    Slice { id, name, figures: Figures::of(pairs) }
                })
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
            out
        };
    Report {
        from: range.from.to_string(),
        to: range.to.to_string(),
        time_zone: range.tz_name.clone(),
        site: Figures::of(tally.pairs.values()),
        groups: slices(
            &tally.groups,
            &|(g, _)| Some(*g),
            groups.iter().map(|g| (g.id.clone(), g.name.clone())).collect(),
        ),
        agents: slices(
            &tally.agents,
            &|(_, a)| a.checked_sub(1),
            agents.iter().map(|a| (a.id.clone(), a.name.clone())).collect(),
        ),
        heatmap: tally.heatmap.clone(),
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
        // Selected as sorting would give, whatever the order and repeats.
        for n in 1..60usize {
            let values: Vec<i64> = (0..n).map(|i| ((i * 7919 + n * 31) % 13) as i64).collect();
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let at = |p: f64| sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
            let s = Spread::of(values);
            assert_eq!((s.count, s.median_ms, s.p90_ms), (n, Some(at(0.5)), Some(at(0.9))), "{n} values");
        }
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
    fn the_heatmap_puts_each_chat_in_its_local_hour() {
        // Quarter-hour offsets, both daylight-saving changes, and offsets
        // of odd seconds (Monrovia until 7 January 1972: -00:44:30;
        // Amsterdam in 1937: +00:19:32, then +00:20).
        for (zone, day) in [
            ("Asia/Kathmandu", "2026-03-10"),
            ("Europe/Oslo", "2026-03-29"),
            ("Europe/Oslo", "2026-10-25"),
            ("Africa/Monrovia", "1972-01-06"),
            ("Africa/Monrovia", "1972-01-07"),
            ("Europe/Amsterdam", "1937-07-01"),
        ] {
            let range = DayRange::parse(day, day, zone).unwrap();
            let mut tally = Tally::new(&range);
            let mut expected = vec![[0u32; 24]; 7];
            let mut at = range.start_ms;
            while at < range.end_ms {
                tally.place(at);
                let local = jiff::Timestamp::from_millisecond(at).unwrap().to_zoned(range.tz.clone());
                expected[local.weekday().to_monday_zero_offset() as usize][local.hour() as usize] += 1;
                at += 53_311;
            }
            assert_eq!(tally.heatmap, expected, "{zone} {day}");
        }
    }

    /// Days' shares added to a tally make the report that the days'
    /// chats given one by one make, whatever ids each day names first.
    #[test]
    fn a_report_of_shares_is_the_report_of_their_chats() {
        let range = DayRange::parse("2026-03-28", "2026-03-31", "Europe/Oslo").unwrap();
        let (groups, agents) = (["general", "sales", "vip"], [Some("ann"), None, Some("bob"), Some("cy")]);
        let chat = |i: i64| {
            let created_at = range.start_ms + i * 1_234_567;
            let answered = i % 5 != 0;
            ChatFacts {
                group_id: groups[(i % 3) as usize],
                agent_id: agents[(i % 4) as usize],
                offline: i % 11 == 0,
                created_at,
                closed_at: (i % 7 != 0).then_some(created_at + 600_000 + i * 1_000),
                first_visitor_at: Some(created_at + i % 13),
                first_assigned_at: answered.then_some(created_at + 5_000 + i * 17),
                first_agent_at: answered.then_some(created_at + 9_000 + i * 31),
                messages: i % 9,
                score: (i % 4 == 1).then_some(1 + i % 5),
                missed: !answered,
                named: None,
            }
        };
        let chats: Vec<ChatFacts> = (0..250).map(chat).collect();
        let mut whole = Tally::new(&range);
        chats.iter().for_each(|c| whole.add(c));

        let mut of_shares = Tally::new(&range);
        // Days in turn, the later ones first: each names its ids anew.
        for day in chats.chunks(60).rev() {
            let (_, mut share) = of_shares.share().unwrap();
            day.iter().for_each(|c| share.add(c));
            assert!(share.keep() > 0);
            assert!(of_shares.add_share(share.as_ref()));
        }
        let report = |t: &Tally| serde_json::to_value(build(&range, t, &[], &[])).unwrap();
        assert_eq!(report(&of_shares), report(&whole));
        assert_eq!(report(&whole)["site"]["offline"], 23, "the history has a bit of everything");

        // A share of another time zone is not added.
        let utc = DayRange::parse("2026-03-28", "2026-03-31", "UTC").unwrap();
        let (key, other) = Tally::new(&utc).share().unwrap();
        assert_ne!(Some(key), of_shares.share().map(|(key, _)| key));
        assert!(!of_shares.add_share(other.as_ref()));
        assert_eq!(report(&of_shares), report(&whole));
    }

    #[test]
    fn csv_cells_stay_text() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("Ann, Bob"), "\"Ann, Bob\"");
        assert_eq!(cell("plain"), "plain");
    }
}
