//! The two time formats the status page shows, from the store's Unix
//! milliseconds, in UTC: ISO-8601 with an explicit offset (the JSON API,
//! Atom) and RFC 2822 (RSS). Two fixed formats in one zone do not need a
//! date library; the reader's own zone is applied in the browser.

/// Days since 1970-01-01 → (year, month 1-12, day 1-31), proleptic
/// Gregorian (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    millis: i64,
    weekday: usize,
}

fn parts(ms: i64) -> Parts {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    Parts {
        year,
        month,
        day,
        hour: in_day / 3_600_000,
        minute: in_day / 60_000 % 60,
        second: in_day / 1000 % 60,
        millis: in_day % 1000,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4).rem_euclid(7) as usize,
    }
}

/// `2018-05-04T16:57:00.000+00:00`
pub fn iso8601(ms: i64) -> String {
    let p = parts(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        p.year, p.month, p.day, p.hour, p.minute, p.second, p.millis
    )
}

/// `2018-05-04`
pub fn date(ms: i64) -> String {
    let p = parts(ms);
    format!("{:04}-{:02}-{:02}", p.year, p.month, p.day)
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// `Fri, 04 May 2018 16:57:00 +0000`
pub fn rfc2822(ms: i64) -> String {
    let p = parts(ms);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[p.weekday],
        p.day,
        MONTHS[p.month as usize - 1],
        p.year,
        p.hour,
        p.minute,
        p.second
    )
}

/// `May 04, 2018 - 16:57 UTC`, the seed report's style.
pub fn human(ms: i64) -> String {
    let p = parts(ms);
    format!("{} {:02}, {:04} - {:02}:{:02} UTC", MONTHS[p.month as usize - 1], p.day, p.year, p.hour, p.minute)
}

/// `May 04`, for uptime bar labels.
pub fn short_day(day: i64) -> String {
    let p = parts(day * 86_400_000);
    format!("{} {:02}, {:04}", MONTHS[p.month as usize - 1], p.day, p.year)
}

/// Parse `2018-05-04T16:57:00Z` / `…+02:00` / `…\.123Z` into Unix ms (the
/// admin API's scheduled times). `None` when it is not such a time.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|b| b.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if s.get(4..5)? != "-" || s.get(7..8)? != "-" || !matches!(s.get(10..11)?, "T" | " ") {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let f = &frac[..digits];
        millis = format!("{:0<3}", &f[..f.len().min(3)]).parse::<i64>().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(0..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let hh: i64 = rest.get(1..3)?.parse().ok()?;
            let mm: i64 = rest.get(4..6)?.parse().ok()?;
            if rest.len() != 6 || rest.get(3..4)? != ":" {
                return None;
            }
            sign * (hh * 60 + mm)
        }
    };
    let days = days_from_civil(year, month as u32, day as u32);
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second) - offset_min * 60) * 1000 + millis)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2018-05-04T16:57:00.123Z, the seed's "Resolved" time in UTC.
    const SEED: i64 = 1_525_453_020_123;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(iso8601(SEED), "2018-05-04T16:57:00.123+00:00");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000+00:00");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999+00:00");
        assert_eq!(rfc2822(SEED), "Fri, 04 May 2018 16:57:00 +0000");
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(human(SEED), "May 04, 2018 - 16:57 UTC");
        assert_eq!(date(SEED), "2018-05-04");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for ms in [0, SEED, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse_iso8601(&iso8601(ms)), Some(ms));
        }
        assert_eq!(parse_iso8601("2018-05-04T12:57:00.123-04:00"), Some(SEED));
        assert_eq!(parse_iso8601("2018-05-04T16:57:00Z"), Some(SEED - 123));
        for bad in ["", "2018-05-04", "2018-13-01T00:00:00Z", "2018-05-04T16:57:00", "2018-05-04T16:57:00+0400", "x"] {
            assert_eq!(parse_iso8601(bad), None, "{bad:?}");
        }
    }
}
