//! Which dead letters a command acts on: by error kind, by DLQ offsets, by
//! age. Pure, so the rules are tested without a broker.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use tributary_consumer::dlq::DeadLetter;

/// A DLQ message's place: `partition:offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locator {
    pub partition: i32,
    pub offset: i64,
}

impl FromStr for Locator {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let range: OffsetRange = s.parse()?;
        if range.from != range.to {
            return Err(format!("{s:?}: one message, as partition:offset"));
        }
        Ok(Self {
            partition: range.partition,
            offset: range.from,
        })
    }
}

impl std::fmt::Display for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

/// DLQ offsets `from..=to` of one partition: `partition:from-to`, or
/// `partition:offset` for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

impl FromStr for OffsetRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            |why: &str| format!("{s:?}: {why} (expected partition:offset or partition:from-to)");
        let (partition, offsets) = s.split_once(':').ok_or_else(|| bad("no ':'"))?;
        let partition: i32 = partition.trim().parse().map_err(|_| bad("bad partition"))?;
        let (from, to) = offsets.split_once('-').unwrap_or((offsets, offsets));
        let from: i64 = from.trim().parse().map_err(|_| bad("bad offset"))?;
        let to: i64 = to.trim().parse().map_err(|_| bad("bad offset"))?;
        if partition < 0 || from < 0 || to < from {
            return Err(bad("negative, or the range ends before it starts"));
        }
        Ok(Self {
            partition,
            from,
            to,
        })
    }
}

impl OffsetRange {
    fn contains(&self, at: Locator) -> bool {
        at.partition == self.partition && (self.from..=self.to).contains(&at.offset)
    }
}

/// An age such as `30m`, `24h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age(pub Duration);

impl FromStr for Age {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: expected a number and m, h or d (30m, 24h, 7d)");
        let unit = s.chars().last().ok_or_else(bad)?;
        let n: i64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
        if n <= 0 {
            return Err(bad());
        }
        let age = match unit {
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            _ => return Err(bad()),
        };
        // At most ten years back: further is no window, just a typo.
        age.filter(|a| *a <= Duration::days(3653))
            .map(Self)
            .ok_or_else(|| format!("{s:?}: more than ten years"))
    }
}

/// What a command selects. Criteria given together must all hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub kinds: Vec<String>,
    pub ranges: Vec<OffsetRange>,
    /// Dead-lettered at or after this time.
    pub since: Option<DateTime<Utc>>,
}

impl Selection {
    pub fn matches(&self, at: Locator, letter: &DeadLetter) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&letter.error_kind))
            && (self.ranges.is_empty() || self.ranges.iter().any(|r| r.contains(at)))
            && self.since.is_none_or(|t| letter.dlq_ts >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(kind: &str, minutes_ago: i64) -> DeadLetter {
        DeadLetter {
            raw: b"{}".to_vec(),
            truncated: false,
            error_kind: kind.into(),
            error_message: "m".into(),
            dlq_ts: Utc::now() - Duration::minutes(minutes_ago),
            topic: "events".into(),
            partition: 0,
            offset: 0,
        }
    }

    fn at(partition: i32, offset: i64) -> Locator {
        Locator { partition, offset }
    }

    #[test]
    fn locations_and_ranges_parse_and_refuse_nonsense() {
        assert_eq!("2:17".parse(), Ok(at(2, 17)));
        assert_eq!(
            "1:40-45".parse(),
            Ok(OffsetRange {
                partition: 1,
                from: 40,
                to: 45
            })
        );
        for bad in ["17", "a:1", "1:x", "1:5-3", "-1:2", "1:2-"] {
            assert!(bad.parse::<OffsetRange>().is_err(), "{bad}");
        }
        assert!("1:40-45".parse::<Locator>().is_err());
        assert_eq!(at(3, 9).to_string(), "3:9");
    }

    #[test]
    fn ages_are_minutes_hours_or_days() {
        assert_eq!("30m".parse(), Ok(Age(Duration::minutes(30))));
        assert_eq!("24h".parse(), Ok(Age(Duration::hours(24))));
        assert_eq!("7d".parse(), Ok(Age(Duration::days(7))));
        for bad in [
            "",
            "7",
            "7w",
            "-1h",
            "0d",
            "h",
            "100000000d",
            "9223372036854775807m",
        ] {
            assert!(bad.parse::<Age>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_given_criterion_must_hold() {
        let all = Selection::default();
        assert!(all.matches(at(0, 5), &letter("invalid_event", 0)));

        let kind = Selection {
            kinds: vec!["clickhouse_rejected".into()],
            ..Selection::default()
        };
        assert!(kind.matches(at(0, 5), &letter("clickhouse_rejected", 0)));
        assert!(!kind.matches(at(0, 5), &letter("invalid_event", 0)));

        let range = Selection {
            ranges: vec!["1:10-20".parse().unwrap_or(OffsetRange {
                partition: 9,
                from: 0,
                to: 0,
            })],
            ..kind.clone()
        };
        assert!(range.matches(at(1, 10), &letter("clickhouse_rejected", 0)));
        assert!(range.matches(at(1, 20), &letter("clickhouse_rejected", 0)));
        assert!(!range.matches(at(1, 21), &letter("clickhouse_rejected", 0)));
        assert!(!range.matches(at(0, 15), &letter("clickhouse_rejected", 0)));
        assert!(!range.matches(at(1, 15), &letter("invalid_event", 0)));

        let recent = Selection {
            since: Some(Utc::now() - Duration::hours(1)),
            ..Selection::default()
        };
        assert!(recent.matches(at(0, 0), &letter("x", 30)));
        assert!(!recent.matches(at(0, 0), &letter("x", 90)));
    }
}
