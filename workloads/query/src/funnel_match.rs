//! Funnel matching for one user.
//!
//! The SQL side hands us, per user, the user's events as [`PathEvent`]s:
//! a timestamp in milliseconds, a bitmask of the funnel steps the event
//! matches (bit `k` = step `k`, 0-based) and a bitmask of the exclusion rules
//! it matches (bit `r` = rule `r` of [`FunnelSpec::exclusions`]). Paths are
//! sorted with [`sort_path`] (by `(ts_ms, steps, exclusions)` ascending) and
//! then matched with [`match_user`].
//!
//! # Semantics
//!
//! The window end of an attempt starting at event `s` is
//! `path[s].ts_ms + window_ms` (saturating); it is inclusive, so an event with
//! `ts_ms <= window end` is inside the window. Only the lowest `spec.steps`
//! bits of a step mask are considered (at most 16).
//!
//! * **Ordered**: candidate starts are every index `s` whose event matches
//!   step 0. Step 0 is event `s`; step `k + 1` is the *first* event at an
//!   index after step `k`'s index that matches step `k + 1` and is inside the
//!   window. The attempt stops when no such event exists. Its level is the
//!   number of steps matched.
//! * **Strict**: like Ordered, but step `k + 1` must be the event at exactly
//!   the index after step `k`'s, match step `k + 1` and be inside the window;
//!   otherwise the attempt stops. The path contains all of the user's events
//!   (non-step events have `steps == 0`).
//! * **Unordered**: candidate starts are every index `s` whose event matches
//!   any step. For each step `j`, `T_j` is the time of the first event at an
//!   index `>= s`, inside the window, that matches step `j` (one event may
//!   satisfy several steps). The level is the number of steps with a `T_j`,
//!   and the step times are the found `T_j` sorted ascending. Exclusions are
//!   ignored.
//! * **Exclusions** (Ordered and Strict): an attempt is invalid if, for some
//!   rule `r` whose `from_step` and `to_step` were both matched, an event with
//!   bit `r` set in its exclusion mask lies at an index strictly between the
//!   matched `from_step` event and the matched `to_step` event. Invalid
//!   attempts are discarded; rules whose `to_step` was not reached do nothing.
//! * **Choice**: among valid attempts, the highest level wins; ties go to the
//!   earliest start index. There is no result when no valid attempt exists.
//!   Matching stops as soon as a valid attempt reaches the full level, since
//!   no later start can beat it.

/// Most steps a bitmask can describe.
const MAX_STEPS: usize = u16::BITS as usize;

/// How steps must follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunnelOrder {
    /// Steps in order, other events may come in between.
    Ordered,
    /// Steps in order, each step the very next event after the previous one.
    Strict,
    /// Steps in any order within the window.
    Unordered,
}

/// One event of a user's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathEvent {
    /// Event time in milliseconds.
    pub ts_ms: u64,
    /// Bitmask of the funnel steps this event matches (bit `k` = step `k`).
    pub steps: u16,
    /// Bitmask of the exclusion rules this event matches (bit `r` = rule `r`).
    pub exclusions: u16,
}

/// An exclusion rule: an event matching it strictly between the attempt's matched
/// step `from_step` and matched step `to_step` (0-based, `from_step < to_step`) invalidates the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exclusion {
    /// Step after whose matched event the exclusion span begins.
    pub from_step: usize,
    /// Step before whose matched event the exclusion span ends.
    pub to_step: usize,
}

/// What to match: the number of steps, the window, the order and the exclusion rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunnelSpec<'a> {
    /// Number of funnel steps (up to 10 in practice, at most 16 considered).
    pub steps: usize,
    /// Conversion window in milliseconds, measured from the starting event.
    pub window_ms: u64,
    /// How steps must follow each other.
    pub order: FunnelOrder,
    /// Exclusion rules; rule `r` is bit `r` of [`PathEvent::exclusions`].
    pub exclusions: &'a [Exclusion],
}

/// How far one user got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFunnel {
    /// Index in the path of the event that started the chosen attempt.
    pub start: usize,
    /// Time of each step reached, in the order steps were completed; its length is the level reached (1..=steps).
    pub step_times: Vec<u64>,
}

/// Sorts a path into the order matching uses: by `(ts_ms, steps, exclusions)` ascending. Callers sort before calling [`match_user`].
pub fn sort_path(path: &mut [PathEvent]) {
    path.sort_unstable_by_key(|e| (e.ts_ms, e.steps, e.exclusions));
}

/// The chosen attempt of a user, or `None` when no valid attempt starts. `path` must be sorted by [`sort_path`].
#[must_use]
pub fn match_user(path: &[PathEvent], spec: &FunnelSpec<'_>) -> Option<UserFunnel> {
    let steps = spec.steps.min(MAX_STEPS);
    if steps == 0 {
        return None;
    }
    match spec.order {
        FunnelOrder::Ordered | FunnelOrder::Strict => match_sequential(path, spec, steps),
        FunnelOrder::Unordered => match_unordered(path, spec, steps),
    }
}

/// Bit of step or rule `k`, or 0 when `k` does not fit in a mask.
fn bit(k: usize) -> u16 {
    u32::try_from(k)
        .ok()
        .and_then(|k| 1u16.checked_shl(k))
        .unwrap_or(0)
}

/// Mask of the lowest `steps` bits.
fn steps_mask(steps: usize) -> u16 {
    (0..steps).fold(0, |mask, k| mask | bit(k))
}

/// Inclusive window end of an attempt starting at `start`.
fn window_end(path: &[PathEvent], start: usize, window_ms: u64) -> u64 {
    path[start].ts_ms.saturating_add(window_ms)
}

/// Ordered and Strict matching: best valid attempt over all step-0 starts.
fn match_sequential(path: &[PathEvent], spec: &FunnelSpec<'_>, steps: usize) -> Option<UserFunnel> {
    let strict = spec.order == FunnelOrder::Strict;
    let mut indices: Vec<usize> = Vec::with_capacity(steps);
    let mut best: Option<(usize, Vec<usize>)> = None;
    for start in 0..path.len() {
        if path[start].steps & bit(0) == 0 {
            continue;
        }
        follow_steps(path, start, spec.window_ms, steps, strict, &mut indices);
        let best_level = best.as_ref().map_or(0, |(_, b)| b.len());
        if indices.len() <= best_level || !attempt_valid(path, &indices, spec.exclusions) {
            continue;
        }
        match best.as_mut() {
            Some((best_start, best_indices)) => {
                *best_start = start;
                best_indices.clone_from(&indices);
            }
            None => best = Some((start, indices.clone())),
        }
        if indices.len() == steps {
            break;
        }
    }
    best.map(|(start, indices)| UserFunnel {
        start,
        step_times: indices.iter().map(|&i| path[i].ts_ms).collect(),
    })
}

/// Fills `indices` with the greedy step indices of the attempt starting at `start`.
fn follow_steps(
    path: &[PathEvent],
    start: usize,
    window_ms: u64,
    steps: usize,
    strict: bool,
    indices: &mut Vec<usize>,
) {
    let end = window_end(path, start, window_ms);
    indices.clear();
    indices.push(start);
    let mut prev = start;
    for step in 1..steps {
        let found = if strict {
            next_strict(path, prev, end, bit(step))
        } else {
            next_ordered(path, prev, end, bit(step))
        };
        match found {
            Some(i) => {
                indices.push(i);
                prev = i;
            }
            None => break,
        }
    }
}

/// First index after `prev`, inside the window, whose event matches `mask`.
fn next_ordered(path: &[PathEvent], prev: usize, end: u64, mask: u16) -> Option<usize> {
    path.iter()
        .enumerate()
        .skip(prev + 1)
        .take_while(|(_, e)| e.ts_ms <= end)
        .find(|(_, e)| e.steps & mask != 0)
        .map(|(i, _)| i)
}

/// The index right after `prev`, if its event is inside the window and matches `mask`.
fn next_strict(path: &[PathEvent], prev: usize, end: u64, mask: u16) -> Option<usize> {
    let i = prev + 1;
    path.get(i)
        .filter(|e| e.ts_ms <= end && e.steps & mask != 0)
        .map(|_| i)
}

/// Whether no exclusion rule is violated by the attempt with matched step `indices`.
fn attempt_valid(path: &[PathEvent], indices: &[usize], exclusions: &[Exclusion]) -> bool {
    exclusions.iter().enumerate().all(|(rule, exclusion)| {
        let (Some(&from), Some(&to)) = (
            indices.get(exclusion.from_step),
            indices.get(exclusion.to_step),
        ) else {
            return true;
        };
        if exclusion.from_step >= exclusion.to_step || to <= from {
            return true;
        }
        let mask = bit(rule);
        !path[from + 1..to].iter().any(|e| e.exclusions & mask != 0)
    })
}

/// Step times found by one Unordered attempt: `times[j]` is valid when bit j of `found` is set.
struct UnorderedAttempt {
    found: u16,
    times: [u64; MAX_STEPS],
}

impl UnorderedAttempt {
    /// Number of steps reached.
    fn level(&self) -> usize {
        self.found.count_ones() as usize
    }

    /// Times of the steps reached, sorted ascending.
    fn sorted_times(&self) -> Vec<u64> {
        let mut times: Vec<u64> = (0..MAX_STEPS)
            .filter(|&j| self.found & bit(j) != 0)
            .map(|j| self.times[j])
            .collect();
        times.sort_unstable();
        times
    }
}

/// Unordered matching: best attempt over all starts matching any step.
fn match_unordered(path: &[PathEvent], spec: &FunnelSpec<'_>, steps: usize) -> Option<UserFunnel> {
    let all = steps_mask(steps);
    let mut best: Option<(usize, UnorderedAttempt)> = None;
    for start in 0..path.len() {
        if path[start].steps & all == 0 {
            continue;
        }
        let attempt = unordered_attempt(path, start, spec.window_ms, all);
        let best_level = best.as_ref().map_or(0, |(_, b)| b.level());
        if attempt.level() <= best_level {
            continue;
        }
        let full = attempt.found == all;
        best = Some((start, attempt));
        if full {
            break;
        }
    }
    best.map(|(start, attempt)| UserFunnel {
        start,
        step_times: attempt.sorted_times(),
    })
}

/// First time of each step in `all` at or after `start` inside the window.
fn unordered_attempt(
    path: &[PathEvent],
    start: usize,
    window_ms: u64,
    all: u16,
) -> UnorderedAttempt {
    let end = window_end(path, start, window_ms);
    let mut attempt = UnorderedAttempt {
        found: 0,
        times: [0; MAX_STEPS],
    };
    for event in path[start..].iter().take_while(|e| e.ts_ms <= end) {
        let new = event.steps & all & !attempt.found;
        for (j, time) in attempt.times.iter_mut().enumerate() {
            if new & bit(j) != 0 {
                *time = event.ts_ms;
            }
        }
        attempt.found |= new;
        if attempt.found == all {
            break;
        }
    }
    attempt
}

/// Median of values (ms) in seconds: middle value, or mean of the two middle values for an even count; `None` when empty.
pub fn median_seconds(values: &mut [u64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    let ms = if values.len() % 2 == 1 {
        values[mid] as f64
    } else {
        f64::midpoint(values[mid - 1] as f64, values[mid] as f64)
    };
    Some(ms / 1000.0)
}

/// Mean in seconds; `None` when empty.
#[must_use]
pub fn mean_seconds(values: &[u64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let sum: u128 = values.iter().map(|&v| u128::from(v)).sum();
    Some(sum as f64 / values.len() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u16 = 0b001;
    const B: u16 = 0b010;
    const C: u16 = 0b100;

    fn ev(ts_ms: u64, steps: u16) -> PathEvent {
        PathEvent {
            ts_ms,
            steps,
            exclusions: 0,
        }
    }

    fn ex(ts_ms: u64, exclusions: u16) -> PathEvent {
        PathEvent {
            ts_ms,
            steps: 0,
            exclusions,
        }
    }

    fn spec(steps: usize, window_ms: u64, order: FunnelOrder) -> FunnelSpec<'static> {
        FunnelSpec {
            steps,
            window_ms,
            order,
            exclusions: &[],
        }
    }

    fn funnel(start: usize, step_times: &[u64]) -> Option<UserFunnel> {
        Some(UserFunnel {
            start,
            step_times: step_times.to_vec(),
        })
    }

    #[test]
    fn ordered_simple_conversion() {
        let path = [ev(10, A), ev(20, B), ev(30, C)];
        let got = match_user(&path, &spec(3, 100, FunnelOrder::Ordered));
        assert_eq!(got, funnel(0, &[10, 20, 30]));
    }

    #[test]
    fn ordered_skips_other_events() {
        let path = [ev(10, A), ev(15, 0), ev(20, C), ev(25, B), ev(30, C)];
        let got = match_user(&path, &spec(3, 100, FunnelOrder::Ordered));
        assert_eq!(got, funnel(0, &[10, 25, 30]));
    }

    #[test]
    fn ordered_window_exceeded() {
        let path = [ev(0, A), ev(50, B), ev(101, C)];
        let got = match_user(&path, &spec(3, 100, FunnelOrder::Ordered));
        assert_eq!(got, funnel(0, &[0, 50]));
    }

    #[test]
    fn window_end_is_inclusive() {
        let path = [ev(0, A), ev(50, B), ev(100, C)];
        let got = match_user(&path, &spec(3, 100, FunnelOrder::Ordered));
        assert_eq!(got, funnel(0, &[0, 50, 100]));
    }

    #[test]
    fn out_of_order_input_is_sorted() {
        let mut path = [ev(30, C), ev(10, A), ev(20, B)];
        sort_path(&mut path);
        assert_eq!(path, [ev(10, A), ev(20, B), ev(30, C)]);
        let got = match_user(&path, &spec(3, 100, FunnelOrder::Ordered));
        assert_eq!(got, funnel(0, &[10, 20, 30]));
    }

    #[test]
    fn same_ms_events_follow_sort_order() {
        // Ties on ts_ms sort by step mask, so A (bit 0) comes before B (bit 1).
        let mut path = [ev(10, C), ev(10, B), ev(10, A)];
        sort_path(&mut path);
        assert_eq!(path, [ev(10, A), ev(10, B), ev(10, C)]);
        let got = match_user(&path, &spec(3, 0, FunnelOrder::Ordered));
        assert_eq!(got, funnel(0, &[10, 10, 10]));
        // A step-0 event that also matches C (mask 5) sorts after B (mask 2),
        // so at equal times the sort order runs against the funnel.
        let mut path = [ev(10, A | C), ev(10, B)];
        sort_path(&mut path);
        assert_eq!(path, [ev(10, B), ev(10, A | C)]);
        let got = match_user(&path, &spec(3, 0, FunnelOrder::Ordered));
        assert_eq!(got, funnel(1, &[10]));
    }

    #[test]
    fn later_start_goes_further() {
        let path = [ev(0, A), ev(100, A), ev(150, B), ev(200, C)];
        let got = match_user(&path, &spec(3, 150, FunnelOrder::Ordered));
        assert_eq!(got, funnel(1, &[100, 150, 200]));
    }

    #[test]
    fn ties_go_to_earliest_start() {
        let path = [ev(0, A), ev(10, A), ev(20, B)];
        let got = match_user(&path, &spec(3, 100, FunnelOrder::Ordered));
        assert_eq!(got, funnel(0, &[0, 20]));
    }

    #[test]
    fn strict_broken_by_intervening_event() {
        let path = [ev(0, A), ev(10, 0), ev(20, B), ev(30, C)];
        let got = match_user(&path, &spec(3, 100, FunnelOrder::Strict));
        assert_eq!(got, funnel(0, &[0]));
        let got = match_user(&path, &spec(3, 100, FunnelOrder::Ordered));
        assert_eq!(got, funnel(0, &[0, 20, 30]));
    }

    #[test]
    fn strict_a_a_b_starts_at_second_a() {
        let path = [ev(0, A), ev(10, A), ev(20, B)];
        let got = match_user(&path, &spec(2, 100, FunnelOrder::Strict));
        assert_eq!(got, funnel(1, &[10, 20]));
    }

    #[test]
    fn strict_respects_window() {
        let path = [ev(0, A), ev(200, B)];
        let got = match_user(&path, &spec(2, 100, FunnelOrder::Strict));
        assert_eq!(got, funnel(0, &[0]));
    }

    #[test]
    fn unordered_reverse_order() {
        let path = [ev(10, C), ev(20, B), ev(30, A)];
        let got = match_user(&path, &spec(3, 100, FunnelOrder::Unordered));
        assert_eq!(got, funnel(0, &[10, 20, 30]));
    }

    #[test]
    fn unordered_event_matching_two_steps() {
        let path = [ev(10, A | B), ev(20, C)];
        let got = match_user(&path, &spec(3, 100, FunnelOrder::Unordered));
        assert_eq!(got, funnel(0, &[10, 10, 20]));
    }

    #[test]
    fn unordered_later_start_goes_further() {
        let path = [ev(0, B), ev(150, C), ev(160, A)];
        let got = match_user(&path, &spec(3, 100, FunnelOrder::Unordered));
        assert_eq!(got, funnel(1, &[150, 160]));
    }

    #[test]
    fn unordered_ignores_bits_beyond_steps() {
        let path = [ev(0, C), ev(10, B)];
        let got = match_user(&path, &spec(2, 100, FunnelOrder::Unordered));
        assert_eq!(got, funnel(1, &[10]));
    }

    #[test]
    fn exclusion_between_steps_invalidates() {
        let rules = [Exclusion {
            from_step: 0,
            to_step: 1,
        }];
        let path = [ev(0, A), ex(5, 1), ev(10, B)];
        let spec = FunnelSpec {
            exclusions: &rules,
            ..spec(2, 100, FunnelOrder::Ordered)
        };
        assert_eq!(match_user(&path, &spec), None);
    }

    #[test]
    fn exclusion_outside_span_does_not_invalidate() {
        let rules = [Exclusion {
            from_step: 0,
            to_step: 1,
        }];
        let path = [ex(0, 1), ev(1, A), ev(10, B), ex(12, 1), ev(20, C)];
        let spec = FunnelSpec {
            exclusions: &rules,
            ..spec(3, 100, FunnelOrder::Ordered)
        };
        assert_eq!(match_user(&path, &spec), funnel(1, &[1, 10, 20]));
    }

    #[test]
    fn exclusion_with_unreached_to_step_does_nothing() {
        let rules = [Exclusion {
            from_step: 0,
            to_step: 2,
        }];
        let path = [ev(0, A), ex(5, 1), ev(10, B)];
        let spec = FunnelSpec {
            exclusions: &rules,
            ..spec(3, 100, FunnelOrder::Ordered)
        };
        assert_eq!(match_user(&path, &spec), funnel(0, &[0, 10]));
    }

    #[test]
    fn exclusion_only_uses_its_own_bit() {
        let rules = [
            Exclusion {
                from_step: 0,
                to_step: 1,
            },
            Exclusion {
                from_step: 1,
                to_step: 2,
            },
        ];
        let path = [ev(0, A), ex(5, 0b10), ev(10, B), ev(20, C)];
        let spec = FunnelSpec {
            exclusions: &rules,
            ..spec(3, 100, FunnelOrder::Ordered)
        };
        assert_eq!(match_user(&path, &spec), funnel(0, &[0, 10, 20]));
    }

    #[test]
    fn later_valid_start_chosen_when_earlier_invalid() {
        let rules = [Exclusion {
            from_step: 0,
            to_step: 1,
        }];
        let path = [ev(0, A), ex(5, 1), ev(10, A), ev(20, B)];
        let spec = FunnelSpec {
            exclusions: &rules,
            ..spec(2, 100, FunnelOrder::Ordered)
        };
        assert_eq!(match_user(&path, &spec), funnel(2, &[10, 20]));
    }

    #[test]
    fn invalid_full_attempt_does_not_stop_search() {
        let rules = [Exclusion {
            from_step: 1,
            to_step: 2,
        }];
        let path = [ev(0, A), ev(1, B), ex(2, 1), ev(3, A), ev(4, B), ev(5, C)];
        let spec = FunnelSpec {
            exclusions: &rules,
            ..spec(3, 100, FunnelOrder::Ordered)
        };
        assert_eq!(match_user(&path, &spec), funnel(3, &[3, 4, 5]));
    }

    #[test]
    fn no_step_zero_event_is_none() {
        let path = [ev(0, B), ev(10, C)];
        assert_eq!(match_user(&path, &spec(3, 100, FunnelOrder::Ordered)), None);
        assert_eq!(match_user(&path, &spec(3, 100, FunnelOrder::Strict)), None);
        assert_eq!(match_user(&[], &spec(3, 100, FunnelOrder::Unordered)), None);
    }

    #[test]
    fn median_and_mean() {
        assert_eq!(median_seconds(&mut []), None);
        assert_eq!(median_seconds(&mut [3000, 1000, 2000]), Some(2.0));
        assert_eq!(median_seconds(&mut [4000, 1000, 2000, 3000]), Some(2.5));
        assert_eq!(mean_seconds(&[]), None);
        assert_eq!(mean_seconds(&[1000, 2000, 6000]), Some(3.0));
        assert_eq!(
            mean_seconds(&[u64::MAX, u64::MAX]),
            Some(u64::MAX as f64 / 1000.0)
        );
    }

    /// Tiny xorshift64 PRNG.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Naive Ordered/Strict attempt: step indices, straight from the semantics.
    fn naive_sequential(path: &[PathEvent], s: usize, spec: &FunnelSpec<'_>) -> Option<Vec<usize>> {
        let end = path[s].ts_ms + spec.window_ms;
        let mut idx = vec![s];
        for k in 1..spec.steps {
            let prev = idx[k - 1];
            let matches = |i: usize| path[i].ts_ms <= end && (path[i].steps >> k) & 1 == 1;
            let next = match spec.order {
                FunnelOrder::Strict => Some(prev + 1).filter(|&i| i < path.len() && matches(i)),
                _ => (prev + 1..path.len()).find(|&i| matches(i)),
            };
            match next {
                Some(i) => idx.push(i),
                None => break,
            }
        }
        for (r, rule) in spec.exclusions.iter().enumerate() {
            if rule.to_step < idx.len() {
                let (from, to) = (idx[rule.from_step], idx[rule.to_step]);
                let hit = (0..path.len())
                    .any(|i| from < i && i < to && (path[i].exclusions >> r) & 1 == 1);
                if hit {
                    return None;
                }
            }
        }
        Some(idx)
    }

    /// Naive Unordered attempt: step times, straight from the semantics.
    fn naive_unordered(path: &[PathEvent], s: usize, spec: &FunnelSpec<'_>) -> Vec<u64> {
        let end = path[s].ts_ms + spec.window_ms;
        let mut times: Vec<u64> = (0..spec.steps)
            .filter_map(|j| {
                (s..path.len())
                    .filter(|&i| path[i].ts_ms <= end)
                    .find(|&i| (path[i].steps >> j) & 1 == 1)
                    .map(|i| path[i].ts_ms)
            })
            .collect();
        times.sort();
        times
    }

    /// Naive matcher: every attempt, no early stop, then the best by (level, -start).
    fn naive_match(path: &[PathEvent], spec: &FunnelSpec<'_>) -> Option<UserFunnel> {
        let step_mask = (1u16 << spec.steps) - 1;
        let mut attempts = Vec::new();
        for s in 0..path.len() {
            match spec.order {
                FunnelOrder::Unordered => {
                    if path[s].steps & step_mask != 0 {
                        attempts.push((s, naive_unordered(path, s, spec)));
                    }
                }
                _ => {
                    if path[s].steps & 1 == 1
                        && let Some(idx) = naive_sequential(path, s, spec)
                    {
                        let times = idx.iter().map(|&i| path[i].ts_ms).collect();
                        attempts.push((s, times));
                    }
                }
            }
        }
        let mut best: Option<(usize, Vec<u64>)> = None;
        for (s, times) in attempts {
            if best.as_ref().is_none_or(|(_, b)| times.len() > b.len()) {
                best = Some((s, times));
            }
        }
        best.map(|(start, step_times)| UserFunnel { start, step_times })
    }

    #[test]
    fn randomized_against_naive() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let spans = [(0, 1), (0, 2), (1, 2)];
        for round in 0..2000 {
            let len = rng.below(13) as usize;
            let mut path: Vec<PathEvent> = (0..len)
                .map(|_| PathEvent {
                    ts_ms: rng.below(20),
                    steps: rng.below(8) as u16,
                    exclusions: u16::from(rng.below(4) == 0),
                })
                .collect();
            sort_path(&mut path);
            let (from_step, to_step) = spans[rng.below(3) as usize];
            let rules = [Exclusion { from_step, to_step }];
            let window_ms = rng.below(12);
            for order in [
                FunnelOrder::Ordered,
                FunnelOrder::Strict,
                FunnelOrder::Unordered,
            ] {
                let exclusions: &[Exclusion] = match order {
                    FunnelOrder::Unordered => &[],
                    _ => &rules,
                };
                let spec = FunnelSpec {
                    steps: 3,
                    window_ms,
                    order,
                    exclusions,
                };
                assert_eq!(
                    match_user(&path, &spec),
                    naive_match(&path, &spec),
                    "round {round}, {order:?}, window {window_ms}, rules {exclusions:?}, path {path:?}"
                );
            }
        }
    }
}
