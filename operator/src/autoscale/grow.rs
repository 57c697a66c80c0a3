//! When to add partitions to the events topic (`autoGrowPartitions`): the
//! pure rule.
//!
//! The consumer cannot run more replicas than the topic has partitions. The
//! topic is *saturated* when lag asks for more replicas than partitions,
//! `maxReplicas` would allow more, and the topic is below its
//! `maxPartitions`. Partitions are added only when it stays saturated for
//! the whole window **and** lag kept rising: every reading of the window at
//! least the one that opened it, the last one above it. A reading below the
//! opening one (the consumers are catching up) opens a new window, so a
//! backlog being worked off never grows the topic. A failed read tells
//! nothing and changes nothing.
//!
//! The topic grows to what the lag asks for, at most doubling at once and
//! never past `min(maxPartitions, maxReplicas)`. Partitions are never
//! removed (Kafka cannot).

/// The spec's growth settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrowPolicy {
    pub max_partitions: i32,
    pub window_seconds: i64,
}

/// The open window: since unix second `since`, when the lag was `lag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saturation {
    pub since: i64,
    pub lag: i64,
}

/// What one reading says about the partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// Lag does not ask for more replicas than partitions (or `maxReplicas`
    /// or `maxPartitions` binds anyway): no window.
    Unsaturated,
    /// Saturated; add partitions once the window has passed with lag
    /// rising.
    Watching(Saturation),
    /// Add partitions up to `to` now.
    Grow { to: i32 },
}

/// The partitions to grow to now, or the window to keep, after a reading
/// of `lag` messages at unix second `now` that asks for `wanted` replicas
/// (before clamping), with the topic at `partitions` and at most
/// `max_replicas` consumers allowed. `open` is the window kept from the
/// previous reading; `lag: None` is a failed read.
pub fn growth(
    policy: &GrowPolicy,
    partitions: i32,
    max_replicas: i32,
    wanted: i32,
    lag: Option<i64>,
    open: Option<Saturation>,
    now: i64,
) -> Growth {
    let Some(lag) = lag else {
        return open.map_or(Growth::Unsaturated, Growth::Watching);
    };
    let ceiling = policy.max_partitions.min(max_replicas);
    if wanted <= partitions || partitions >= ceiling {
        return Growth::Unsaturated;
    }
    let window = match open {
        Some(w) if lag >= w.lag => w,
        // New, or the lag fell: the consumers are catching up.
        _ => return Growth::Watching(Saturation { since: now, lag }),
    };
    if now - window.since >= policy.window_seconds && lag > window.lag {
        let to = wanted.min(ceiling).min(partitions.saturating_mul(2));
        Growth::Grow { to }
    } else {
        Growth::Watching(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: GrowPolicy = GrowPolicy {
        max_partitions: 48,
        window_seconds: 600,
    };

    /// The growth after each reading of `trace` (every 60 s from t = 0),
    /// for a topic of `partitions` that grows when told to.
    fn simulate(mut partitions: i32, trace: &[Option<i64>]) -> Vec<(i64, Growth, i32)> {
        let mut open = None;
        let mut out = Vec::new();
        for (i, lag) in trace.iter().enumerate() {
            let now = i64::try_from(i).unwrap_or(0) * 60;
            let wanted = lag.map_or(0, |l| i32::try_from(l / 10_000).unwrap_or(i32::MAX));
            let g = growth(&POLICY, partitions, 100, wanted, *lag, open, now);
            open = match g {
                Growth::Watching(w) => Some(w),
                Growth::Grow { to } => {
                    partitions = to;
                    None
                }
                Growth::Unsaturated => None,
            };
            out.push((now, g, partitions));
        }
        out
    }

    fn grown_at(trace: &[(i64, Growth, i32)]) -> Vec<(i64, i32)> {
        trace
            .iter()
            .filter_map(|(t, g, _)| match g {
                Growth::Grow { to } => Some((*t, *to)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn rising_lag_at_the_partition_limit_grows_after_the_window() {
        // 12 partitions; lag asks for 20 replicas and keeps rising.
        let trace: Vec<Option<i64>> = (0..14).map(|i| Some(200_000 + i * 5_000)).collect();
        let out = simulate(12, &trace);
        assert_eq!(
            grown_at(&out),
            [(600, 24)],
            "after exactly the window, to what lag asks (capped at doubling)"
        );
    }

    #[test]
    fn a_backlog_being_worked_off_never_grows() {
        // Saturated but falling: the consumers are catching up.
        let trace: Vec<Option<i64>> = (0..30).map(|i| Some(400_000 - i * 5_000)).collect();
        let out = simulate(12, &trace);
        assert!(grown_at(&out).is_empty(), "{out:?}");
        // A plateau (not rising) does not grow either.
        let out = simulate(12, &vec![Some(300_000); 30]);
        assert!(grown_at(&out).is_empty(), "{out:?}");
    }

    #[test]
    fn a_dip_restarts_the_window() {
        let mut trace: Vec<Option<i64>> = (0..8).map(|i| Some(200_000 + i * 5_000)).collect();
        trace.push(Some(190_000));
        trace.extend((0..12).map(|i| Some(200_000 + i * 5_000)));
        let out = simulate(12, &trace);
        // The dip at t = 480 opens a new window: growth at 480 + 600.
        assert_eq!(grown_at(&out), [(1080, 24)]);
    }

    #[test]
    fn failed_reads_keep_the_window_and_never_grow() {
        let mut trace: Vec<Option<i64>> = (0..5).map(|i| Some(200_000 + i * 5_000)).collect();
        trace.extend(vec![None; 10]);
        let out = simulate(12, &trace);
        assert!(grown_at(&out).is_empty());
        assert_eq!(
            out.last().map(|(_, g, _)| *g),
            Some(Growth::Watching(Saturation {
                since: 0,
                lag: 200_000
            }))
        );
        // The next good reading past the window grows.
        let g = growth(
            &POLICY,
            12,
            100,
            30,
            Some(300_000),
            Some(Saturation {
                since: 0,
                lag: 200_000,
            }),
            900,
        );
        assert_eq!(g, Growth::Grow { to: 24 });
    }

    #[test]
    fn growth_stops_at_max_partitions_and_max_replicas() {
        let rising: Vec<Option<i64>> = (0..60).map(|i| Some(1_000_000 + i * 50_000)).collect();
        let out = simulate(12, &rising);
        let grown = grown_at(&out);
        assert_eq!(grown.first(), Some(&(600, 24)));
        assert_eq!(grown.last().map(|(_, to)| *to), Some(48), "{grown:?}");
        assert!(out.iter().all(|(_, _, p)| *p <= 48));
        // maxReplicas binds before the partitions: growing would not help.
        let g = growth(&POLICY, 12, 12, 30, Some(300_000), None, 0);
        assert_eq!(g, Growth::Unsaturated);
        let g = growth(
            &POLICY,
            12,
            16,
            30,
            Some(300_000),
            Some(Saturation { since: 0, lag: 1 }),
            600,
        );
        assert_eq!(g, Growth::Grow { to: 16 });
    }

    #[test]
    fn lag_within_the_partitions_is_not_saturated() {
        let g = growth(&POLICY, 12, 100, 12, Some(120_000), None, 0);
        assert_eq!(g, Growth::Unsaturated);
        let g = growth(
            &POLICY,
            12,
            100,
            8,
            Some(80_000),
            Some(Saturation { since: 0, lag: 1 }),
            6000,
        );
        assert_eq!(
            g,
            Growth::Unsaturated,
            "a window closes when lag falls within"
        );
    }
}
