//! How dead letters are shown: a list, one message in full, and counts by
//! error kind over a window. Pure.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use tributary_consumer::dlq::{DeadLetter, NotARecord};

use super::select::Locator;

/// One message of the DLQ topic, read back.
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: Locator,
    /// The message's key (the original event's key).
    pub key: Option<Vec<u8>>,
    pub letter: Result<DeadLetter, NotARecord>,
}

/// `event name / distinct_id / uuid` of a raw event, or its first bytes.
pub fn summary(raw: &[u8]) -> String {
    match serde_json::from_slice::<Value>(raw) {
        Ok(v) if v.is_object() => {
            let field = |name: &str| v[name].as_str().map_or("-".to_owned(), str::to_owned);
            format!(
                "{} / {} / {}",
                field("event"),
                field("distinct_id"),
                field("uuid")
            )
        }
        _ => {
            let text = String::from_utf8_lossy(raw);
            let mut short: String = text.chars().take(48).collect();
            if text.chars().count() > 48 {
                short.push('…');
            }
            format!("{short:?}")
        }
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A table of `entries`, one line each.
pub fn list(entries: &[&Entry]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<20} {:<20} {:<14} event / distinct_id / uuid",
        "at", "dead-lettered", "kind", "from"
    );
    for e in entries {
        match &e.letter {
            Ok(l) => {
                let from = format!("{}:{}", l.partition, l.offset);
                let _ = writeln!(
                    out,
                    "{:<10} {:<20} {:<20} {:<14} {}",
                    e.at.to_string(),
                    time(&l.dlq_ts),
                    l.error_kind,
                    from,
                    summary(&l.raw)
                );
            }
            Err(why) => {
                let _ = writeln!(out, "{:<10} {why}", e.at.to_string());
            }
        }
    }
    let _ = writeln!(out, "{} message(s)", entries.len());
    out
}

/// One message in full: the record's fields and the raw event, pretty when
/// it is JSON.
pub fn inspect(entry: &Entry) -> String {
    let l = match &entry.letter {
        Ok(l) => l,
        Err(why) => return format!("DLQ message {}: {why}\n", entry.at),
    };
    let mut out = String::new();
    let _ = writeln!(out, "DLQ message    {}", entry.at);
    let _ = writeln!(out, "dead-lettered  {}", time(&l.dlq_ts));
    let _ = writeln!(out, "error kind     {}", l.error_kind);
    let _ = writeln!(out, "error message  {}", l.error_message);
    let _ = writeln!(
        out,
        "original       topic {} partition {} offset {}",
        l.topic, l.partition, l.offset
    );
    if l.truncated {
        let _ = writeln!(
            out,
            "raw            truncated: only its first {} bytes are here; the original stays in the topic until retention removes it",
            l.raw.len()
        );
    }
    let raw = match serde_json::from_slice::<Value>(&l.raw) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&l.raw).into_owned(),
    };
    let _ = writeln!(out, "raw:\n{raw}");
    out
}

/// Counts by error kind of the messages dead-lettered since `since`.
pub fn report(entries: &[Entry], since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    #[derive(Default)]
    struct Kind {
        count: u64,
        first: Option<DateTime<Utc>>,
        last: Option<DateTime<Utc>>,
    }
    let mut kinds: BTreeMap<&str, Kind> = BTreeMap::new();
    let mut unreadable = 0;
    for e in entries {
        match &e.letter {
            Ok(l) if l.dlq_ts >= since => {
                let k = kinds.entry(&l.error_kind).or_default();
                k.count += 1;
                k.first = Some(k.first.map_or(l.dlq_ts, |t| t.min(l.dlq_ts)));
                k.last = Some(k.last.map_or(l.dlq_ts, |t| t.max(l.dlq_ts)));
            }
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
    }
    let total: u64 = kinds.values().map(|k| k.count).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Dead letters from {} to {}: {total}",
        time(&since),
        time(&now)
    );
    if total > 0 {
        let _ = writeln!(
            out,
            "  {:<22}{:>8}{:>8}  {:<20}  {:<20}",
            "error kind", "count", "share", "first", "last"
        );
        let mut sorted: Vec<_> = kinds.iter().collect();
        sorted.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        for (kind, k) in sorted {
            let share = format!("{:.1}%", k.count as f64 * 100.0 / total as f64);
            let _ = writeln!(
                out,
                "  {kind:<22}{:>8}{share:>8}  {:<20}  {:<20}",
                k.count,
                k.first.as_ref().map(time).unwrap_or_default(),
                k.last.as_ref().map(time).unwrap_or_default()
            );
        }
    }
    if unreadable > 0 {
        let _ = writeln!(
            out,
            "  and {unreadable} message(s) that are not dead-letter records (see `tributary dlq list`)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn entry(offset: i64, kind: &str, raw: &[u8], minutes_ago: i64) -> Entry {
        Entry {
            at: Locator {
                partition: 0,
                offset,
            },
            key: None,
            letter: Ok(DeadLetter {
                raw: raw.to_vec(),
                truncated: false,
                error_kind: kind.into(),
                error_message: "why".into(),
                dlq_ts: Utc::now() - Duration::minutes(minutes_ago),
                topic: "events".into(),
                partition: 4,
                offset: 100 + offset,
            }),
        }
    }

    #[test]
    fn the_list_names_place_kind_origin_and_event() {
        let e = entry(
            7,
            "clickhouse_rejected",
            br#"{"event":"buy","distinct_id":"u1","uuid":"0190"}"#,
            0,
        );
        let text = list(&[&e]);
        let line = text.lines().nth(1).unwrap_or_default();
        assert!(line.starts_with("0:7 "), "{line}");
        assert!(
            line.contains("clickhouse_rejected") && line.contains("4:107"),
            "{line}"
        );
        assert!(line.ends_with("buy / u1 / 0190"), "{line}");
        assert!(text.ends_with("1 message(s)\n"));
        assert_eq!(summary(b"\xff\x00garbage"), "\"\u{fffd}\\0garbage\"");
    }

    #[test]
    fn the_report_counts_by_kind_within_the_window() {
        let entries = [
            entry(0, "invalid_event", b"{", 10),
            entry(1, "clickhouse_rejected", b"{}", 5),
            entry(2, "clickhouse_rejected", b"{}", 1),
            entry(3, "clickhouse_rejected", b"{}", 120),
            Entry {
                at: Locator {
                    partition: 0,
                    offset: 4,
                },
                key: None,
                letter: tributary_consumer::dlq::parse(b"junk"),
            },
        ];
        let now = Utc::now();
        let text = report(&entries, now - Duration::hours(1), now);
        assert!(
            text.lines().next().unwrap_or_default().ends_with(": 3"),
            "{text}"
        );
        let rows: Vec<&str> = text.lines().skip(2).collect();
        assert!(
            rows[0].trim_start().starts_with("clickhouse_rejected"),
            "{text}"
        );
        assert!(rows[0].contains("       2   66.7%"), "{text}");
        assert!(rows[1].contains("       1   33.3%"), "{text}");
        assert!(
            rows[2].contains("1 message(s) that are not dead-letter records"),
            "{text}"
        );
    }

    #[test]
    fn inspect_shows_the_raw_event_pretty() {
        let e = entry(
            1,
            "invalid_timestamp",
            br#"{"event":"x","timestamp":"2200-01-01"}"#,
            0,
        );
        let text = inspect(&e);
        assert!(text.contains("error kind     invalid_timestamp"), "{text}");
        assert!(
            text.contains("original       topic events partition 4 offset 101"),
            "{text}"
        );
        assert!(text.contains("  \"timestamp\": \"2200-01-01\""), "{text}");
    }
}
