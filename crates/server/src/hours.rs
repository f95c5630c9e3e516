//! Business hours: a weekly schedule in an IANA time zone plus exceptions
//! (a holiday closed, a special day's hours), and the one question asked of
//! it — is the team at work at instant T, and when does that change?
//!
//! Pure: no store, no clock of its own. A site keeps its schedule in its
//! widget settings (`WidgetSettings::hours`), a group may keep one of its
//! own (`Group::hours`, a column); a group without one keeps the site's,
//! and a site without one is always open. Times are wall-clock times of
//! the schedule's zone, turned into instants day by day with `jiff`, so a
//! day whose clocks change keeps its wall-clock hours: on the night clocks
//! spring forward a time that does not exist (02:30 in Berlin) means the
//! same time after the jump (03:30), and on the night they fall back a time
//! that occurs twice means the first.

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How many intervals one day may have.
const MAX_INTERVALS: usize = 6;
/// How many exceptions a schedule may have (a year of days).
const MAX_EXCEPTIONS: usize = 366;
/// How far ahead "when do we open next" looks: a schedule closed longer
/// than this has no next opening.
const HORIZON_DAYS: i32 = 400;

/// A schedule as admins write it and the store keeps it (JSON):
///
/// ```json
/// {"time_zone": "Europe/Berlin",
///  "weekly": {"mon": ["09:00-17:00"], "sat": ["10:00-12:00", "13:00-15:00"]},
///  "exceptions": [{"date": "2026-12-25", "hours": []},
///                 {"date": "2026-12-24", "hours": ["09:00-12:00"]}]}
/// ```
///
/// A day not named in `weekly` is closed. An interval is `HH:MM-HH:MM` with
/// the end after the start (`24:00` ends at midnight); a night shift is two
/// intervals, `22:00-24:00` one day and `00:00-06:00` the next, which count
/// as one stretch open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The IANA zone the wall-clock times are in.
    pub time_zone: String,
    #[serde(default)]
    pub weekly: Weekly,
    /// Days that differ from their weekday: an empty `hours` is closed.
    #[serde(default)]
    pub exceptions: Vec<Exception>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Weekly {
    pub mon: Vec<String>,
    pub tue: Vec<String>,
    pub wed: Vec<String>,
    pub thu: Vec<String>,
    pub fri: Vec<String>,
    pub sat: Vec<String>,
    pub sun: Vec<String>,
}

impl Weekly {
    fn days_mut(&mut self) -> [(&'static str, &mut Vec<String>); 7] {
        [
            ("mon", &mut self.mon),
            ("tue", &mut self.tue),
            ("wed", &mut self.wed),
            ("thu", &mut self.thu),
            ("fri", &mut self.fri),
            ("sat", &mut self.sat),
            ("sun", &mut self.sun),
        ]
    }

    fn days(&self) -> [&Vec<String>; 7] {
        [&self.mon, &self.tue, &self.wed, &self.thu, &self.fri, &self.sat, &self.sun]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// `YYYY-MM-DD`, a day of the schedule's zone.
    pub date: String,
    #[serde(default)]
    pub hours: Vec<String>,
}

/// Whether a schedule is open at an instant, and when that changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HoursState {
    pub open: bool,
    /// While open: when it closes (Unix ms), if it ever does.
    pub closes_at: Option<i64>,
    /// While closed: when it opens next (Unix ms), if within the horizon.
    pub reopens_at: Option<i64>,
}

impl HoursState {
    /// No schedule: always open.
    pub const ALWAYS: HoursState = HoursState { open: true, closes_at: None, reopens_at: None };
}

/// `(start, end)` in minutes of the day, `end` up to 1440.
type Interval = (u16, u16);

fn parse_clock(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

fn parse_interval(text: &str) -> Option<Interval> {
    let (a, b) = text.trim().split_once('-')?;
    let (start, end) = (parse_clock(a.trim())?, parse_clock(b.trim())?);
    (start < end && start < 1440).then_some((start, end))
}

fn show_interval((start, end): Interval) -> String {
    format!("{:02}:{:02}-{:02}:{:02}", start / 60, start % 60, end / 60, end % 60)
}

/// A day's intervals, parsed, sorted and checked not to overlap.
fn parse_day(list: &[String], what: &str) -> Result<Vec<Interval>> {
    if list.len() > MAX_INTERVALS {
        return Err(Error::bad_request(format!("{what}: at most {MAX_INTERVALS} intervals a day")));
    }
    let mut out = Vec::with_capacity(list.len());
    for text in list {
        let interval = parse_interval(text).ok_or_else(|| {
            Error::bad_request(format!("{what}: {text:?} is not an interval like 09:00-17:00 (end after start)"))
        })?;
        out.push(interval);
    }
    out.sort_unstable();
    if out.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(Error::bad_request(format!("{what}: intervals overlap")));
    }
    Ok(out)
}

fn parse_date(text: &str) -> Option<Date> {
    let text = text.trim();
    (text.len() == 10).then_some(())?;
    text.parse::<Date>().ok()
}

impl Schedule {
    /// Check and normalise a schedule an admin sent (intervals sorted and
    /// written `HH:MM-HH:MM`, exceptions by date).
    pub fn validated(mut self) -> Result<Schedule> {
        self.time_zone = self.time_zone.trim().to_owned();
        if self.time_zone.len() > 64 || TimeZone::get(&self.time_zone).is_err() {
            return Err(Error::bad_request("hours.time_zone must be an IANA time zone name like Europe/Berlin"));
        }
        for (name, day) in self.weekly.days_mut() {
            *day = parse_day(day, &format!("hours.weekly.{name}"))?.into_iter().map(show_interval).collect();
        }
        if self.exceptions.len() > MAX_EXCEPTIONS {
            return Err(Error::bad_request(format!("hours.exceptions: at most {MAX_EXCEPTIONS}")));
        }
        let mut seen = BTreeMap::new();
        for e in &self.exceptions {
            let date = parse_date(&e.date).ok_or_else(|| {
                Error::bad_request(format!("hours.exceptions: {:?} is not a date like 2026-12-25", e.date))
            })?;
            let hours = parse_day(&e.hours, &format!("hours.exceptions {date}"))?;
            if seen.insert(date, hours.into_iter().map(show_interval).collect::<Vec<_>>()).is_some() {
                return Err(Error::bad_request(format!("hours.exceptions: {date} is given twice")));
            }
        }
        self.exceptions = seen.into_iter().map(|(d, hours)| Exception { date: d.to_string(), hours }).collect();
        Ok(self)
    }

    /// The schedule ready to answer questions; `None` if it does not parse
    /// (a stored value from elsewhere), which callers treat as no schedule.
    pub fn compile(&self) -> Option<Compiled> {
        let tz = TimeZone::get(self.time_zone.trim()).ok()?;
        let mut weekly: [Vec<Interval>; 7] = Default::default();
        for (i, day) in self.weekly.days().into_iter().enumerate() {
            weekly[i] = parse_day(day, "").ok()?;
        }
        let mut exceptions = BTreeMap::new();
        for e in &self.exceptions {
            exceptions.insert(parse_date(&e.date)?, parse_day(&e.hours, "").ok()?);
        }
        Some(Compiled { tz, weekly, exceptions })
    }

    /// Open or closed at `now_ms`, and until when. A schedule that does not
    /// parse counts as always open.
    pub fn state_at(&self, now_ms: i64) -> HoursState {
        self.compile().map_or(HoursState::ALWAYS, |c| c.state_at(now_ms))
    }
}

/// The effective hours of a group: its own, else its site's, else none.
pub fn effective<'a>(group: Option<&'a Schedule>, site: Option<&'a Schedule>) -> Option<&'a Schedule> {
    group.or(site)
}

/// The state of optional hours at `now_ms`: no schedule is always open.
pub fn state_of(hours: Option<&Schedule>, now_ms: i64) -> HoursState {
    hours.map_or(HoursState::ALWAYS, |s| s.state_at(now_ms))
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Compiled {
    tz: TimeZone,
    /// Monday first.
    weekly: [Vec<Interval>; 7],
    exceptions: BTreeMap<Date, Vec<Interval>>,
}

impl Compiled {
    fn intervals_on(&self, date: Date) -> &[Interval] {
        match self.exceptions.get(&date) {
            Some(hours) => hours,
            None => &self.weekly[date.weekday().to_monday_zero_offset() as usize],
        }
    }

    /// The instant a wall-clock minute of `date` is, in the zone. A time in
    /// a gap is read as after the jump, a time that occurs twice as the
    /// first (jiff's "compatible" rule, as RFC 5545 reads them).
    fn instant(&self, date: Date, minute: u16) -> Option<Timestamp> {
        let (date, minute) = if minute >= 1440 { (date.tomorrow().ok()?, 0) } else { (date, minute) };
        let civil = date.at((minute / 60) as i8, (minute % 60) as i8, 0, 0);
        self.tz.to_ambiguous_zoned(civil).compatible().ok().map(|z| z.timestamp())
    }

    /// Each open stretch of `date` as instants, in order.
    fn stretches(&self, date: Date) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        self.intervals_on(date).iter().filter_map(move |&(s, e)| {
            let (s, e) = (self.instant(date, s)?, self.instant(date, e)?);
            (s < e).then_some((s, e))
        })
    }

    pub fn state_at(&self, now_ms: i64) -> HoursState {
        let Ok(now) = Timestamp::from_millisecond(now_ms) else { return HoursState::ALWAYS };
        let today = now.to_zoned(self.tz.clone()).date();
        // From yesterday: a stretch ending at midnight may end in today's
        // first hours of instants when the clocks moved.
        let Ok(mut date) = today.checked_sub(1.day()) else { return HoursState::ALWAYS };
        let mut current: Option<(Timestamp, Timestamp)> = None;
        for _ in 0..=HORIZON_DAYS {
            for (s, e) in self.stretches(date) {
                match current {
                    // Open now: extend through stretches that touch.
                    Some((cs, ce)) => {
                        if s <= ce {
                            current = Some((cs, ce.max(e)));
                        } else {
                            return open_until(ce);
                        }
                    }
                    None if e <= now => {}
                    None if s <= now => current = Some((s, e)),
                    None => {
                        return HoursState { open: false, closes_at: None, reopens_at: Some(s.as_millisecond()) };
                    }
                }
            }
            let Ok(next) = date.tomorrow() else { break };
            date = next;
        }
        match current {
            // Open through the whole horizon (24/7 with no closed day).
            Some(_) => HoursState::ALWAYS,
            None => HoursState { open: false, closes_at: None, reopens_at: None },
        }
    }
}

fn open_until(end: Timestamp) -> HoursState {
    HoursState { open: true, closes_at: Some(end.as_millisecond()), reopens_at: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(zoned: &str) -> i64 {
        zoned.parse::<jiff::Zoned>().unwrap().timestamp().as_millisecond()
    }

    fn nine_to_five(tz: &str) -> Schedule {
        let day = vec!["09:00-17:00".to_owned()];
        Schedule {
            time_zone: tz.into(),
            weekly: Weekly {
                mon: day.clone(),
                tue: day.clone(),
                wed: day.clone(),
                thu: day.clone(),
                fri: day,
                ..Default::default()
            },
            exceptions: Vec::new(),
        }
        .validated()
        .unwrap()
    }

    #[test]
    fn open_within_hours_and_closed_outside() {
        let s = nine_to_five("Europe/Berlin");
        // Wednesday 2026-06-10, 10:00 in Berlin (CEST, UTC+2).
        let st = s.state_at(ms("2026-06-10T10:00[Europe/Berlin]"));
        assert!(st.open);
        assert_eq!(st.closes_at, Some(ms("2026-06-10T17:00[Europe/Berlin]")));
        // 08:59 the same day: opens at 09:00.
        let st = s.state_at(ms("2026-06-10T08:59[Europe/Berlin]"));
        assert!(!st.open);
        assert_eq!(st.reopens_at, Some(ms("2026-06-10T09:00[Europe/Berlin]")));
        // 17:00 exactly is closed (the end is not included).
        assert!(!s.state_at(ms("2026-06-10T17:00[Europe/Berlin]")).open);
        // Friday evening: back on Monday.
        let st = s.state_at(ms("2026-06-12T18:00[Europe/Berlin]"));
        assert!(!st.open);
        assert_eq!(st.reopens_at, Some(ms("2026-06-15T09:00[Europe/Berlin]")));
    }

    #[test]
    fn the_zone_decides_not_utc() {
        let s = nine_to_five("America/New_York");
        // 14:00 UTC on a Wednesday in June is 10:00 in New York (EDT).
        assert!(s.state_at(ms("2026-06-10T14:00[UTC]")).open);
        // 22:00 UTC is 18:00 there: closed.
        assert!(!s.state_at(ms("2026-06-10T22:00[UTC]")).open);
    }

    #[test]
    fn berlin_spring_forward_keeps_wall_clock_hours() {
        // Clocks go from 02:00 to 03:00 on Sunday 2026-03-29 in Berlin.
        let mut s = nine_to_five("Europe/Berlin");
        s.weekly.sun = vec!["01:00-04:00".into()];
        let s = s.validated().unwrap();
        // Saturday 2026-03-28, 09:00 CET (UTC+1), then Monday 09:00 CEST (UTC+2).
        let st = s.state_at(ms("2026-03-28T12:00[Europe/Berlin]"));
        assert_eq!(st.reopens_at, Some(ms("2026-03-29T01:00[Europe/Berlin]")));
        // The Sunday stretch is 2 real hours (01:00 CET to 04:00 CEST).
        let st = s.state_at(ms("2026-03-29T01:30[Europe/Berlin]"));
        assert!(st.open);
        assert_eq!(st.closes_at, Some(ms("2026-03-29T04:00[Europe/Berlin]")));
        assert_eq!(st.closes_at.unwrap() - ms("2026-03-29T01:00[Europe/Berlin]"), 2 * 3_600_000);
        // Monday opens at 09:00 summer time: 07:00 UTC, no longer 08:00.
        let st = s.state_at(ms("2026-03-29T05:00[Europe/Berlin]"));
        assert_eq!(st.reopens_at, Some(ms("2026-03-30T07:00[UTC]")));
        // A time in the gap (02:30 does not exist) opens after the jump, at 03:30.
        let mut gap = nine_to_five("Europe/Berlin");
        gap.weekly.sun = vec!["02:30-05:00".into()];
        let st = gap.state_at(ms("2026-03-29T00:30[Europe/Berlin]"));
        assert_eq!(st.reopens_at, Some(ms("2026-03-29T03:30[Europe/Berlin]")));
        assert_eq!(st.reopens_at, Some(ms("2026-03-29T01:30[UTC]")));
    }

    #[test]
    fn berlin_fall_back_keeps_wall_clock_hours() {
        // Clocks go from 03:00 back to 02:00 on Sunday 2026-10-25 in Berlin.
        let mut s = nine_to_five("Europe/Berlin");
        s.weekly.sun = vec!["01:00-04:00".into()];
        let s = s.validated().unwrap();
        let st = s.state_at(ms("2026-10-25T01:30[Europe/Berlin]"));
        assert!(st.open);
        // Four real hours: 01:00 CEST (23:00 UTC) to 04:00 CET (03:00 UTC).
        assert_eq!(st.closes_at, Some(ms("2026-10-25T03:00[UTC]")));
        // The second 02:30 (CET, 01:30 UTC) is still open.
        assert!(s.state_at(ms("2026-10-25T01:30[UTC]")).open);
        // Monday 09:00 is winter time now: 08:00 UTC.
        let st = s.state_at(ms("2026-10-25T05:00[Europe/Berlin]"));
        assert_eq!(st.reopens_at, Some(ms("2026-10-26T08:00[UTC]")));
    }

    #[test]
    fn new_york_changes_on_its_own_dates() {
        // 2026: New York springs forward on 8 March, Berlin on 29 March.
        let s = nine_to_five("America/New_York");
        // Friday 6 March 17:30 (EST): back Monday 9 March 09:00 EDT = 13:00 UTC.
        let st = s.state_at(ms("2026-03-06T17:30[America/New_York]"));
        assert_eq!(st.reopens_at, Some(ms("2026-03-09T13:00[UTC]")));
        // The Friday before: 09:00 EST = 14:00 UTC.
        assert!(s.state_at(ms("2026-03-06T14:00[UTC]")).open);
        assert!(!s.state_at(ms("2026-03-06T13:59[UTC]")).open);
        // Falls back on 1 November: Monday 2 November 09:00 EST = 14:00 UTC.
        let st = s.state_at(ms("2026-10-30T18:00[America/New_York]"));
        assert_eq!(st.reopens_at, Some(ms("2026-11-02T14:00[UTC]")));
    }

    #[test]
    fn holidays_close_and_special_days_have_their_own_hours() {
        let mut s = nine_to_five("Europe/Berlin");
        s.exceptions = vec![
            Exception { date: "2026-12-25".into(), hours: vec![] },
            Exception { date: "2026-12-24".into(), hours: vec!["09:00-12:00".into()] },
            Exception { date: "2026-12-26".into(), hours: vec![] },
            // A Sunday opened for a sale.
            Exception { date: "2026-12-27".into(), hours: vec!["10:00-14:00".into()] },
        ];
        let s = s.validated().unwrap();
        // Thursday the 24th: a half day.
        let st = s.state_at(ms("2026-12-24T11:00[Europe/Berlin]"));
        assert_eq!(st.closes_at, Some(ms("2026-12-24T12:00[Europe/Berlin]")));
        assert!(!s.state_at(ms("2026-12-24T13:00[Europe/Berlin]")).open);
        // Friday the 25th is closed all day, Saturday too; Sunday opens at 10.
        let st = s.state_at(ms("2026-12-25T10:00[Europe/Berlin]"));
        assert!(!st.open);
        assert_eq!(st.reopens_at, Some(ms("2026-12-27T10:00[Europe/Berlin]")));
        assert!(s.state_at(ms("2026-12-27T13:59[Europe/Berlin]")).open);
    }

    #[test]
    fn touching_stretches_are_one_and_a_night_shift_crosses_midnight() {
        let s = Schedule {
            time_zone: "UTC".into(),
            weekly: Weekly {
                mon: vec!["22:00-24:00".into()],
                tue: vec!["00:00-06:00".into(), "06:00-08:00".into()],
                ..Default::default()
            },
            exceptions: vec![],
        }
        .validated()
        .unwrap();
        // Monday 2026-06-08 23:00 UTC: open until Tuesday 08:00.
        let st = s.state_at(ms("2026-06-08T23:00[UTC]"));
        assert!(st.open);
        assert_eq!(st.closes_at, Some(ms("2026-06-09T08:00[UTC]")));
        assert!(s.state_at(ms("2026-06-09T03:00[UTC]")).open);
    }

    #[test]
    fn always_open_and_never_open() {
        let all = vec!["00:00-24:00".to_owned()];
        let w = Weekly {
            mon: all.clone(),
            tue: all.clone(),
            wed: all.clone(),
            thu: all.clone(),
            fri: all.clone(),
            sat: all.clone(),
            sun: all,
        };
        let s = Schedule { time_zone: "UTC".into(), weekly: w, exceptions: vec![] };
        assert_eq!(s.state_at(ms("2026-06-08T23:00[UTC]")), HoursState::ALWAYS);
        let never = Schedule { time_zone: "UTC".into(), weekly: Weekly::default(), exceptions: vec![] };
        assert_eq!(never.state_at(0), HoursState { open: false, closes_at: None, reopens_at: None });
        assert_eq!(state_of(None, 0), HoursState::ALWAYS);
    }

    #[test]
    fn bad_schedules_are_refused() {
        let bad = |f: fn(&mut Schedule)| {
            let mut s = nine_to_five("UTC");
            f(&mut s);
            s.validated().unwrap_err().to_string()
        };
        assert!(bad(|s| s.time_zone = "Mars/Olympus".into()).contains("time_zone"));
        assert!(bad(|s| s.weekly.mon = vec!["17:00-09:00".into()]).contains("hours.weekly.mon"));
        assert!(bad(|s| s.weekly.mon = vec!["9-17".into()]).contains("not an interval"));
        assert!(bad(|s| s.weekly.mon = vec!["09:00-24:30".into()]).contains("not an interval"));
        assert!(bad(|s| s.weekly.tue = vec!["09:00-12:00".into(), "11:00-13:00".into()]).contains("overlap"));
        assert!(bad(|s| s.exceptions = vec![Exception { date: "2026-02-30".into(), hours: vec![] }]).contains("date"));
        let twice = |s: &mut Schedule| {
            let e = Exception { date: "2026-12-25".into(), hours: vec![] };
            s.exceptions = vec![e.clone(), e];
        };
        assert!(bad(twice).contains("twice"));
        let s = nine_to_five("UTC");
        assert_eq!(s.weekly.mon, vec!["09:00-17:00".to_owned()]);
        let tidy = Schedule {
            time_zone: " UTC ".into(),
            weekly: Weekly { sat: vec![" 13:00 - 15:00".into(), "10:00-12:00".into()], ..Default::default() },
            exceptions: vec![],
        };
        let tidy = tidy.validated().unwrap();
        assert_eq!(tidy.time_zone, "UTC");
        assert_eq!(tidy.weekly.sat, vec!["10:00-12:00".to_owned(), "13:00-15:00".to_owned()]);
    }
}
