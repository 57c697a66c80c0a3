//! The demo's answers as a person reads them, and how they differ from
//! what was sent.

use std::fmt::Write;

use chrono::NaiveDate;

use super::dataset::{Expected, FUNNEL};

/// What the query API answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    /// Per day: page views and users with a page view.
    pub days: Vec<(NaiveDate, u64, u64)>,
    /// Users reaching each step of the funnel.
    pub funnel: [u64; 3],
}

/// Each place the answers differ from `expected`, in words.
pub fn differences(answers: &Answers, expected: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    if answers.days.len() != expected.days.len() {
        out.push(format!(
            "the trend has {} days, the data {}",
            answers.days.len(),
            expected.days.len()
        ));
    }
    for (got, want) in answers.days.iter().zip(&expected.days) {
        if got != want {
            out.push(format!(
                "{}: query says {} page views by {} users, the demo sent {} by {} (on {})",
                got.0, got.1, got.2, want.1, want.2, want.0
            ));
        }
    }
    for (step, (got, want)) in FUNNEL
        .iter()
        .zip(answers.funnel.iter().zip(&expected.funnel))
    {
        if got != want {
            out.push(format!(
                "funnel step {step}: query says {got} users, the demo sent {want}"
            ));
        }
    }
    out
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// The trend and the funnel as two tables.
pub fn render(answers: &Answers) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Trend: page views per day (UTC)");
    let _ = writeln!(
        out,
        "  {:<12}{:>12}{:>14}",
        "day", "page views", "unique users"
    );
    for (day, views, users) in &answers.days {
        let _ = writeln!(out, "  {:<12}{views:>12}{users:>14}", day.to_string());
    }
    let total: u64 = answers.days.iter().map(|d| d.1).sum();
    let _ = writeln!(out, "  {:<12}{total:>12}", "total");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Funnel: {} (ordered, within 14 days)",
        FUNNEL.join(" -> ")
    );
    let _ = writeln!(
        out,
        "  {:<12}{:>8}{:>16}{:>16}",
        "step", "users", "of first step", "of previous"
    );
    let first = answers.funnel[0];
    for (i, (step, users)) in FUNNEL.iter().zip(answers.funnel).enumerate() {
        let previous = if i == 0 { users } else { answers.funnel[i - 1] };
        let _ = writeln!(
            out,
            "  {step:<12}{users:>8}{:>16}{:>16}",
            percent(users, first),
            percent(users, previous)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap_or_default()
    }

    fn answers() -> Answers {
        Answers {
            days: vec![(day(29), 10, 4), (day(30), 6, 3)],
            funnel: [7, 3, 1],
        }
    }

    #[test]
    fn the_tables_show_every_number() {
        let text = render(&answers());
        assert!(
            text.contains("  2026-11-29            10             4\n"),
            "{text}"
        );
        assert!(text.contains("  total                 16\n"), "{text}");
        assert!(
            text.contains("  sign_up            3           42.9%           42.9%\n"),
            "{text}"
        );
        assert!(
            text.contains("  purchase           1           14.3%           33.3%\n"),
            "{text}"
        );
    }

    #[test]
    fn differences_name_the_day_and_the_step() {
        let expected = Expected {
            days: vec![(day(29), 10, 4), (day(30), 7, 3)],
            funnel: [7, 3, 2],
            totals: [17, 3, 2],
        };
        let found = differences(&answers(), &expected);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("2026-11-30: query says 6 page views"),
            "{found:?}"
        );
        assert!(found[1].contains("purchase: query says 1 users, the demo sent 2"));
        let same = Expected {
            days: answers().days,
            funnel: [7, 3, 1],
            totals: [16, 3, 1],
        };
        assert!(differences(&answers(), &same).is_empty());
    }
}
