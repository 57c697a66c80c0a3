//! Date ranges, timezones and buckets (pure: "now" is passed in).
//!
//! - `date_from` / `date_to`: RFC 3339 (`2026-11-01T08:00:00Z`), a local time
//!   in the query's timezone (`2026-11-01T08:00:00`), a local date
//!   (`2026-11-01`: midnight; as `date_to` the end of that day), or relative
//!   to now: `-6h`, `-7d`, `-2w`, `-3m` (months), `-1y`. A relative `date_from`
//!   starts at the beginning of its bucket, so `-7d` by day gives 8 whole days
//!   up to now. `date_to` defaults to now. The range is `[from, to)`.
//! - Buckets are aligned in the query's timezone (IANA name, default `UTC`);
//!   weeks start on Monday.
//! - Conversion windows: `90s`, `30m` (minutes), `6h`, `14d`, `2w`.

use chrono::{
    DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;

use crate::request::{Interval, RequestError};

/// At most this many buckets in one answer.
pub const MAX_BUCKETS: usize = 1000;

/// ClickHouse `DateTime` covers 1970 to 2106.
const MAX_EPOCH: i64 = u32::MAX as i64;

/// A resolved range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl TimeRange {
    pub fn from_epoch(&self) -> i64 {
        self.from.timestamp()
    }
    /// The end as a second, for the second-precision `timestamp` column: a
    /// `to` within a second (`now` by default) takes that whole second in,
    /// or events of the current second would not show until it is over.
    pub fn to_epoch(&self) -> i64 {
        self.to.timestamp() + i64::from(self.to.timestamp_subsec_nanos() > 0)
    }
}

/// The query's timezone (`timezone`, default UTC).
pub fn parse_timezone(name: Option<&str>) -> Result<Tz, RequestError> {
    match name {
        None => Ok(Tz::UTC),
        Some(n) => n.parse::<Tz>().map_err(|_| {
            RequestError::new(
                "timezone",
                format!("unknown timezone {n:?}; use an IANA name such as Europe/Berlin"),
            )
        }),
    }
}

/// Resolves `date_from`/`date_to`. A relative `date_from` is truncated to the
/// start of its `align` bucket.
pub fn resolve(
    date_from: &str,
    date_to: Option<&str>,
    align: Interval,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<TimeRange, RequestError> {
    let from = match parse_bound(date_from, tz, now, false, "date_from")? {
        Bound::Relative(t) => bucket_start(t, align, tz),
        Bound::Absolute(t) => t,
    };
    let to = match date_to {
        None => now,
        Some(text) => match parse_bound(text, tz, now, true, "date_to")? {
            Bound::Relative(t) | Bound::Absolute(t) => t,
        },
    };
    if from.timestamp() < 0 || to.timestamp() > MAX_EPOCH {
        return Err(RequestError::new(
            "date_from",
            "dates must lie between 1970 and 2106",
        ));
    }
    if from >= to {
        return Err(RequestError::new(
            "date_from",
            format!("must be before date_to ({from} is not before {to})"),
        ));
    }
    Ok(TimeRange { from, to })
}

/// Reads a start that is always truncated to its bucket (retention cohorts).
pub fn resolve_start(
    text: &str,
    align: Interval,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, RequestError> {
    let t = match parse_bound(text, tz, now, false, "date_from")? {
        Bound::Relative(t) | Bound::Absolute(t) => t,
    };
    let t = bucket_start(t, align, tz);
    if t.timestamp() < 0 || t.timestamp() > MAX_EPOCH {
        return Err(RequestError::new(
            "date_from",
            "dates must lie between 1970 and 2106",
        ));
    }
    Ok(t)
}

enum Bound {
    Relative(DateTime<Utc>),
    Absolute(DateTime<Utc>),
}

fn parse_bound(
    text: &str,
    tz: Tz,
    now: DateTime<Utc>,
    is_end: bool,
    field: &str,
) -> Result<Bound, RequestError> {
    let text = text.trim();
    let bad = || {
        RequestError::new(
            field,
            format!(
                "cannot read {text:?}: use -7d (h, d, w, m, y), YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or RFC 3339"
            ),
        )
    };
    if text == "now" {
        return Ok(Bound::Absolute(now));
    }
    if let Some(rel) = text.strip_prefix('-') {
        let unit = rel.chars().last().ok_or_else(bad)?;
        let n: u32 = rel[..rel.len() - unit.len_utf8()]
            .parse()
            .map_err(|_| bad())?;
        let t = match unit {
            'h' => now.checked_sub_signed(chrono::Duration::hours(i64::from(n))),
            'd' => now.checked_sub_signed(chrono::Duration::days(i64::from(n))),
            'w' => now.checked_sub_signed(chrono::Duration::weeks(i64::from(n))),
            'm' => now.checked_sub_months(Months::new(n)),
            'y' => n
                .checked_mul(12)
                .and_then(|m| now.checked_sub_months(Months::new(m))),
            _ => return Err(bad()),
        };
        return t.map(Bound::Relative).ok_or_else(bad);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Bound::Absolute(t.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Bound::Absolute(local_instant(naive, tz)));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let date = if is_end {
            date.checked_add_days(Days::new(1)).ok_or_else(bad)?
        } else {
            date
        };
        return Ok(Bound::Absolute(local_midnight(date, tz)));
    }
    Err(bad())
}

/// The instant of a local time; in a DST gap, the first instant after it.
fn local_instant(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    let mut probe = naive;
    for _ in 0..4 {
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
        probe += chrono::Duration::minutes(30);
    }
    // No zone has gaps of two hours; fall back to reading it as UTC.
    Utc.from_utc_datetime(&naive)
}

/// The first instant of a local date.
pub fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    local_instant(date.and_time(NaiveTime::MIN), tz)
}

/// The local calendar date of an instant.
pub fn local_date(t: DateTime<Utc>, tz: Tz) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

/// Start of the bucket holding `t`.
pub fn bucket_start(t: DateTime<Utc>, interval: Interval, tz: Tz) -> DateTime<Utc> {
    match interval {
        Interval::Hour => {
            let offset = i64::from(t.with_timezone(&tz).offset().fix().local_minus_utc());
            let secs = t.timestamp();
            let start = secs - (secs + offset).rem_euclid(3600);
            DateTime::from_timestamp(start, 0).unwrap_or(t)
        }
        _ => local_midnight(bucket_date(local_date(t, tz), interval), tz),
    }
}

/// The first date of the day/week/month bucket holding `date`.
pub fn bucket_date(date: NaiveDate, interval: Interval) -> NaiveDate {
    match interval {
        Interval::Hour | Interval::Day => date,
        Interval::Week => date - Days::new(u64::from(date.weekday().num_days_from_monday())),
        Interval::Month => date.with_day(1).unwrap_or(date),
    }
}

/// One bucket: its start and the key SQL groups it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    /// Epoch seconds for hours, the local `YYYY-MM-DD` of the first day for
    /// days, weeks and months (what [`crate::sql::bucket_key`] produces).
    pub key: String,
}

/// Every bucket that overlaps the range, in order.
pub fn buckets(
    range: &TimeRange,
    interval: Interval,
    tz: Tz,
    field: &str,
) -> Result<Vec<Bucket>, RequestError> {
    let too_many = |n: usize| {
        RequestError::new(
            field,
            format!(
                "the range holds more than {n} {interval:?} buckets; use a wider interval or a shorter range"
            )
            .to_lowercase(),
        )
    };
    let mut out = Vec::new();
    match interval {
        Interval::Hour => {
            let mut t = bucket_start(range.from, interval, tz).timestamp();
            while t < range.to_epoch() {
                if out.len() == MAX_BUCKETS {
                    return Err(too_many(MAX_BUCKETS));
                }
                out.push(Bucket {
                    start: DateTime::from_timestamp(t, 0).unwrap_or(range.from),
                    key: t.to_string(),
                });
                t += 3600;
            }
        }
        _ => {
            let mut date = bucket_date(local_date(range.from, tz), interval);
            let last = local_date(range.to - chrono::Duration::seconds(1), tz);
            while date <= last {
                if out.len() == MAX_BUCKETS {
                    return Err(too_many(MAX_BUCKETS));
                }
                out.push(Bucket {
                    start: local_midnight(date, tz),
                    key: date.format("%Y-%m-%d").to_string(),
                });
                date = match next_date(date, interval) {
                    Some(d) => d,
                    None => break,
                };
            }
        }
    }
    Ok(out)
}

/// The first date of the next bucket.
pub fn next_date(date: NaiveDate, interval: Interval) -> Option<NaiveDate> {
    match interval {
        Interval::Hour | Interval::Day => date.checked_add_days(Days::new(1)),
        Interval::Week => date.checked_add_days(Days::new(7)),
        Interval::Month => date.checked_add_months(Months::new(1)),
    }
}

/// Reads a conversion window such as `14d` into milliseconds.
pub fn parse_window(text: &str, field: &str) -> Result<u64, RequestError> {
    let bad = || {
        RequestError::new(
            field,
            format!("cannot read {text:?}: use a number and s, m (minutes), h, d or w, e.g. 14d"),
        )
    };
    let text = text.trim();
    let unit = text.chars().last().ok_or_else(bad)?;
    let n: u64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Err(bad()),
    };
    let ms = n
        .checked_mul(secs * 1000)
        .filter(|ms| *ms > 0 && *ms <= 366 * 86_400 * 1000)
        .ok_or_else(|| RequestError::new(field, "must be between 1 second and 366 days"))?;
    Ok(ms)
}

/// The fixed "now" of the planning unit tests.
#[cfg(test)]
pub(crate) fn test_now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_end_within_a_second_takes_that_second_in() {
        let at = |ms: i64| TimeRange {
            from: DateTime::from_timestamp_millis(0).unwrap_or_default(),
            to: DateTime::from_timestamp_millis(ms).unwrap_or_default(),
        };
        assert_eq!(at(1_000_500).to_epoch(), 1_001);
        assert_eq!(
            at(1_000_000).to_epoch(),
            1_000,
            "a whole second stays as it is"
        );
    }
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn relative_from_is_aligned_to_its_bucket() {
        let now = utc("2026-11-23T14:23:00Z");
        let r = resolve("-7d", None, Interval::Day, Tz::UTC, now).unwrap();
        assert_eq!(r.from, utc("2026-11-16T00:00:00Z"));
        assert_eq!(r.to, now);
        let b = buckets(&r, Interval::Day, Tz::UTC, "date_from").unwrap();
        assert_eq!(b.len(), 8);
        assert_eq!(b[0].key, "2026-11-16");
        assert_eq!(b[7].key, "2026-11-23");

        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let r = resolve("-1d", None, Interval::Day, berlin, now).unwrap();
        assert_eq!(r.from, utc("2026-11-21T23:00:00Z"));
    }

    #[test]
    fn absolute_dates_are_local_and_date_to_is_inclusive() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let now = utc("2030-01-01T00:00:00Z");
        let r = resolve("2026-11-01", Some("2026-11-02"), Interval::Day, ny, now).unwrap();
        assert_eq!(r.from, utc("2026-11-01T04:00:00Z"));
        // DST ended on 2026-11-01: the 3rd starts at 05:00 UTC.
        assert_eq!(r.to, utc("2026-11-03T05:00:00Z"));
        let b = buckets(&r, Interval::Day, ny, "date_from").unwrap();
        assert_eq!(
            b.iter().map(|b| b.key.as_str()).collect::<Vec<_>>(),
            ["2026-11-01", "2026-11-02"]
        );
        let r = resolve(
            "2026-11-01T10:00:00Z",
            Some("2026-11-01T12:30:00+01:00"),
            Interval::Hour,
            Tz::UTC,
            now,
        )
        .unwrap();
        assert_eq!(buckets(&r, Interval::Hour, Tz::UTC, "f").unwrap().len(), 2);
    }

    #[test]
    fn hours_follow_half_hour_offsets() {
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let t = utc("2026-11-01T10:10:00Z"); // 15:40 local
        assert_eq!(
            bucket_start(t, Interval::Hour, kolkata),
            utc("2026-11-01T09:30:00Z")
        );
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let t = utc("2026-11-26T12:00:00Z"); // a Thursday
        assert_eq!(
            bucket_start(t, Interval::Week, Tz::UTC),
            utc("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            bucket_start(t, Interval::Month, Tz::UTC),
            utc("2026-11-01T00:00:00Z")
        );
    }

    #[test]
    fn bad_ranges_name_their_field() {
        let now = utc("2026-11-23T00:00:00Z");
        for (from, to, field) in [
            ("yesterday", None, "date_from"),
            ("-7x", None, "date_from"),
            ("2026-11-20", Some("2026-13-01"), "date_to"),
            ("2026-11-20", Some("2026-11-10"), "date_from"),
            ("1960-01-01", None, "date_from"),
        ] {
            let e = resolve(from, to, Interval::Day, Tz::UTC, now).unwrap_err();
            assert_eq!(e.field, field, "{from} {to:?}: {e}");
        }
        let r = resolve("-1y", None, Interval::Hour, Tz::UTC, now).unwrap();
        let e = buckets(&r, Interval::Hour, Tz::UTC, "date_from").unwrap_err();
        assert!(e.message.contains("more than 1000"), "{e}");
        assert!(parse_timezone(Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn windows() {
        assert_eq!(parse_window("14d", "w").unwrap(), 14 * 86_400_000);
        assert_eq!(parse_window("30m", "w").unwrap(), 1_800_000);
        assert!(parse_window("0d", "w").is_err());
        assert!(parse_window("2y", "w").is_err());
        assert!(parse_window("d", "w").is_err());
    }
}
