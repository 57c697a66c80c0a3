//! The rule over simulated lag traces: spikes, plateaus, noise, failed
//! reads and a restart mid-window; and properties over random traces.

use proptest::prelude::*;

use super::*;

const POLL: i64 = 15;

fn policy() -> Policy {
    Policy {
        min_replicas: 1,
        max_replicas: 20,
        lag_per_replica: 10_000,
        window_seconds: 300,
    }
}

/// Replicas after each poll of `trace` (one poll every 15 s from t = 0),
/// starting from `start` replicas and `history`.
fn simulate(
    policy: &Policy,
    partitions: i32,
    start: i32,
    history: History,
    t0: i64,
    trace: &[Option<i64>],
) -> (Vec<i32>, History) {
    let mut current = start;
    let mut history = history;
    let mut out = Vec::with_capacity(trace.len());
    for (i, lag) in trace.iter().enumerate() {
        let now = t0 + i64::try_from(i).unwrap_or(0) * POLL;
        let d = decide(policy, current, partitions, *lag, &history, now);
        current = d.replicas;
        history = d.history;
        out.push(current);
    }
    (out, history)
}

fn direction_changes(series: &[i32]) -> usize {
    let moves: Vec<i32> = series
        .windows(2)
        .map(|w| (w[1] - w[0]).signum())
        .filter(|s| *s != 0)
        .collect();
    moves.windows(2).filter(|w| w[0] != w[1]).count()
}

#[test]
fn a_spike_is_answered_at_the_first_poll_and_capped_at_the_partitions() {
    let mut trace = vec![Some(0); 4];
    trace.extend(vec![Some(400_000); 6]);
    let (series, _) = simulate(&policy(), 12, 1, History::default(), 0, &trace);
    assert_eq!(series[3], 1);
    assert!(
        series[4] > 1,
        "the first poll that sees the spike scales up: {series:?}"
    );
    assert_eq!(series[4], 5, "at most doubling or +4 per poll");
    assert_eq!(
        &series[5..],
        [10, 12, 12, 12, 12],
        "then up to P = 12, never beyond"
    );
}

#[test]
fn scaling_down_waits_for_the_whole_window() {
    let mut trace = vec![Some(120_000); 3];
    trace.extend(vec![Some(0); 30]);
    let (series, _) = simulate(&policy(), 12, 12, History::default(), 0, &trace);
    // The last high recommendation was at t = 30 s; it expires at 330 s,
    // the poll at index 22.
    assert!(series[..22].iter().all(|r| *r == 12), "{series:?}");
    assert_eq!(series[22], 1, "{series:?}");
    assert_eq!(direction_changes(&series), 0);
}

#[test]
fn noise_within_the_band_does_not_move_the_replicas() {
    let trace: Vec<Option<i64>> = (0..40)
        .map(|i| Some(50_000 + if i % 2 == 0 { 4_000 } else { -4_000 }))
        .collect();
    let (series, _) = simulate(&policy(), 12, 5, History::default(), 0, &trace);
    assert!(series.iter().all(|r| *r == 5), "{series:?}");
}

#[test]
fn a_failed_read_changes_nothing_and_never_scales_down() {
    let d = decide(&policy(), 8, 12, None, &History::default(), 100);
    assert_eq!((d.replicas, d.reason), (8, Reason::NoReading));
    assert_eq!(d.history, History::default(), "nothing recorded");
    // Failed reads after the window expired still do not scale down.
    let trace = [vec![Some(80_000)], vec![None; 40]].concat();
    let (series, _) = simulate(&policy(), 12, 1, History::default(), 0, &trace);
    assert!(series.iter().all(|r| *r == 5), "{series:?}");
    // Beyond the partitions (P shrank in the spec's view) is corrected.
    let d = decide(&policy(), 20, 12, None, &History::default(), 100);
    assert_eq!((d.replicas, d.reason), (12, Reason::Bounded));
}

#[test]
fn a_restart_mid_window_keeps_the_history() {
    let trace = [vec![Some(120_000); 2], vec![Some(0); 30]].concat();
    let (whole, _) = simulate(&policy(), 12, 1, History::default(), 0, &trace);
    let (first, kept) = simulate(&policy(), 12, 1, History::default(), 0, &trace[..10]);
    let resumed_at = 10 * POLL;
    let (rest, _) = simulate(&policy(), 12, first[9], kept, resumed_at, &trace[10..]);
    assert_eq!([first, rest].concat(), whole);
    let (forgetful, _) = simulate(
        &policy(),
        12,
        12,
        History::default(),
        resumed_at,
        &trace[10..],
    );
    assert_ne!(
        forgetful,
        whole[10..],
        "without the history the restart would scale down early (the test can fail)"
    );
}

#[test]
fn bounds_never_exceed_the_partitions_and_hold_at_least_one() {
    let p = policy();
    assert_eq!(bounds(&p, 12), (1, 12));
    assert_eq!(bounds(&p, 40), (1, 20));
    let high_min = Policy {
        min_replicas: 8,
        ..p
    };
    assert_eq!(bounds(&high_min, 4), (4, 4), "the partitions win over min");
    assert_eq!(bounds(&p, 0), (1, 1));
    assert_eq!(raw_recommendation(&p, 0, 0), 0);
    assert_eq!(raw_recommendation(&p, 1, 10_001), 1, "within 10 %");
    assert_eq!(raw_recommendation(&p, 1, 12_000), 2);
    assert_eq!(raw_recommendation(&p, 3, i64::MAX), i32::MAX);
}

fn trace_strategy() -> impl Strategy<Value = Vec<Option<i64>>> {
    prop::collection::vec(
        prop_oneof![
            8 => (0i64..400_000).prop_map(Some),
            1 => Just(None),
        ],
        1..120,
    )
}

fn policy_strategy() -> impl Strategy<Value = (Policy, i32)> {
    (1i32..10, 1i32..40, 1_000i64..50_000, 0i64..900, 1i32..64).prop_map(
        |(min, extra, lag_per_replica, window, partitions)| {
            (
                Policy {
                    min_replicas: min,
                    max_replicas: min + extra,
                    lag_per_replica,
                    window_seconds: window,
                },
                partitions,
            )
        },
    )
}

proptest! {
    #[test]
    fn replicas_stay_within_bounds_and_down_moves_wait_a_window_after_up_moves(
        (policy, partitions) in policy_strategy(),
        trace in trace_strategy(),
        start in 1i32..80,
    ) {
        let (lower, upper) = bounds(&policy, partitions);
        let mut current = start;
        let mut history = History::default();
        let mut last_up: Option<i64> = None;
        for (i, lag) in trace.iter().enumerate() {
            let now = i64::try_from(i).unwrap_or(0) * POLL;
            let d = decide(&policy, current, partitions, *lag, &history, now);
            let in_bounds_before = (lower..=upper).contains(&current);
            prop_assert!(d.replicas <= upper, "never above min(max, P)");
            if lag.is_some() {
                prop_assert!(d.replicas >= lower);
            }
            if lag.is_none() && in_bounds_before {
                prop_assert_eq!(d.replicas, current, "no reading, no change");
            }
            if d.replicas > current {
                last_up = Some(now);
            }
            if d.replicas < current
                && in_bounds_before
                && let Some(up) = last_up
            {
                prop_assert!(
                    now - up >= policy.window_seconds,
                    "down at {} only {} s after up at {}",
                    now,
                    now - up,
                    up
                );
            }
            prop_assert!(history.recommendations.len() <= usize::try_from(upper).unwrap_or(0) + 1);
            current = d.replicas;
            history = d.history;
        }
    }
}

#[test]
fn a_count_below_the_minimum_rises_at_least_to_it_whatever_the_rate_limit() {
    let p = Policy {
        min_replicas: 7,
        max_replicas: 8,
        lag_per_replica: 1000,
        window_seconds: 0,
    };
    // The lag asks for 8; the rate limit from 1 would give only 5: the
    // minimum wins, the rest waits for the next poll.
    let d = decide(&p, 1, 12, Some(8_000), &History::default(), 0);
    assert_eq!((d.replicas, d.reason), (7, Reason::ScaleUpLimited));
    let d = decide(&p, 1, 12, Some(0), &History::default(), 0);
    assert_eq!((d.replicas, d.reason), (7, Reason::Bounded));
}
