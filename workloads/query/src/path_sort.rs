//! Puts a user's path (as ClickHouse grouped it, in no particular order)
//! into the order matching uses: by time, step mask, exclusion mask, then
//! label. Sorting dominates the funnel's matching time, so each event is
//! packed into one integer that sorts in that order: a `u64` when the path
//! has no labels and its times fit 32 bits (relative times, the common
//! case), otherwise a `u128` that also carries the event's index in the row
//! so ties can be broken by label.

use crate::funnel_match::PathEvent;
use crate::rows::PathRow;

/// Buffers reused from one path to the next.
#[derive(Debug, Default)]
pub struct PathSorter {
    narrow: Vec<u64>,
    wide: Vec<u128>,
    /// The last path sorted, in matching order.
    events: Vec<PathEvent>,
    /// Row index of each of `events`; filled only for paths with labels.
    rows: Vec<usize>,
}

impl PathSorter {
    /// Sorts `row`'s events; answers whether two of them that match a step
    /// cannot be told apart (same time, masks and label): copies of one
    /// event, perhaps. Copies of an event that matches no step never change
    /// a match (no attempt starts or continues there, a strict attempt stops
    /// at the first of them as at the only one, and an exclusion needs one).
    /// Paths hold far fewer than 2^32 events (the decoder takes arrays of at
    /// most 2^30, the service's budget at most 10^9 events), so indices fit
    /// 32 bits.
    pub fn sort(&mut self, row: &PathRow) -> bool {
        self.rows.clear();
        if row.labels.is_empty() && row.times.iter().all(|&t| t <= u64::from(u32::MAX)) {
            self.sort_narrow(row)
        } else {
            self.sort_wide(row)
        }
    }

    /// The last path sorted.
    pub fn events(&self) -> &[PathEvent] {
        &self.events
    }

    /// The label of the `i`-th sorted event of `row` ("" when it has none).
    pub fn label<'r>(&self, row: &'r PathRow, i: usize) -> &'r str {
        self.rows
            .get(i)
            .and_then(|&r| row.labels.get(r))
            .map_or("", String::as_str)
    }

    fn sort_narrow(&mut self, row: &PathRow) -> bool {
        self.narrow.clear();
        self.narrow
            .extend(
                row.times
                    .iter()
                    .zip(&row.steps)
                    .enumerate()
                    .map(|(i, (&ts_ms, &steps))| {
                        (ts_ms << 32) | (u64::from(steps) << 16) | u64::from(exclusion(row, i))
                    }),
            );
        self.narrow.sort_unstable();
        self.events.clear();
        self.events.extend(self.narrow.iter().map(|&key| PathEvent {
            ts_ms: key >> 32,
            steps: (key >> 16) as u16,
            exclusions: key as u16,
        }));
        self.narrow
            .windows(2)
            .any(|w| w[0] == w[1] && (w[0] >> 16) & 0xffff != 0)
    }

    fn sort_wide(&mut self, row: &PathRow) -> bool {
        self.wide.clear();
        self.wide
            .extend(
                row.times
                    .iter()
                    .zip(&row.steps)
                    .zip(0u32..)
                    .map(|((&ts_ms, &steps), i)| {
                        (u128::from(ts_ms) << 64)
                            | (u128::from(steps) << 48)
                            | (u128::from(exclusion(row, i as usize)) << 32)
                            | u128::from(i)
                    }),
            );
        self.wide.sort_unstable();
        let event = |key: u128| key >> 32;
        let label = |key: u128| {
            row.labels
                .get((key & u128::from(u32::MAX)) as usize)
                .map_or("", String::as_str)
        };
        if !row.labels.is_empty() {
            for run in self.wide.chunk_by_mut(|a, b| event(*a) == event(*b)) {
                if run.len() > 1 {
                    run.sort_by(|a, b| label(*a).cmp(label(*b)));
                }
            }
            self.rows.extend(
                self.wide
                    .iter()
                    .map(|&key| (key & u128::from(u32::MAX)) as usize),
            );
        }
        self.events.clear();
        self.events.extend(self.wide.iter().map(|&key| PathEvent {
            ts_ms: (key >> 64) as u64,
            steps: (key >> 48) as u16,
            exclusions: (key >> 32) as u16,
        }));
        self.wide.windows(2).any(|w| {
            event(w[0]) == event(w[1]) && (w[0] >> 48) & 0xffff != 0 && label(w[0]) == label(w[1])
        })
    }
}

/// Exclusion mask of event `i` (the array comes empty when the funnel has none).
fn exclusion(row: &PathRow, i: usize) -> u16 {
    row.exclusions.get(i).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(times: &[u64], steps: &[u16], exclusions: &[u16], labels: &[&str]) -> PathRow {
        PathRow {
            distinct_id: "u".to_owned(),
            times: times.to_vec(),
            steps: steps.to_vec(),
            exclusions: exclusions.to_vec(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    fn event(ts_ms: u64, steps: u16, exclusions: u16) -> PathEvent {
        PathEvent {
            ts_ms,
            steps,
            exclusions,
        }
    }

    /// The order spelled out: a plain sort of tuples.
    fn expected(row: &PathRow) -> Vec<(PathEvent, String)> {
        let mut all: Vec<(u64, u16, u16, String)> = (0..row.times.len())
            .map(|i| {
                (
                    row.times[i],
                    row.steps[i],
                    exclusion(row, i),
                    row.labels.get(i).cloned().unwrap_or_default(),
                )
            })
            .collect();
        all.sort();
        all.into_iter()
            .map(|(t, s, x, l)| (event(t, s, x), l))
            .collect()
    }

    fn sorted(sorter: &PathSorter, row: &PathRow) -> Vec<(PathEvent, String)> {
        (0..sorter.events().len())
            .map(|i| (sorter.events()[i], sorter.label(row, i).to_owned()))
            .collect()
    }

    #[test]
    fn narrow_and_wide_paths_sort_like_tuples() {
        let big = u64::from(u32::MAX) + 5;
        let cases = [
            row(&[30, 10, 20, 10], &[1, 2, 4, 1], &[], &[]),
            row(&[30, 10, 10], &[1, 2, 2], &[0, 1, 0], &[]),
            row(&[big, 10, big - 1], &[1, 2, 4], &[], &[]),
            row(&[5, 5, 5, 1], &[1, 1, 1, 2], &[], &["b", "a", "c", "z"]),
            row(&[big, 7, 7], &[2, 2, 2], &[1, 1, 1], &["y", "x", ""]),
        ];
        let mut sorter = PathSorter::default();
        for case in &cases {
            let twins = sorter.sort(case);
            let want = expected(case);
            assert_eq!(sorted(&sorter, case), want, "{case:?}");
            let copies = want.windows(2).any(|w| w[0] == w[1] && w[0].0.steps != 0);
            assert_eq!(twins, copies, "{case:?}");
        }
    }

    #[test]
    fn twins_need_equal_time_masks_and_label() {
        let mut sorter = PathSorter::default();
        assert!(sorter.sort(&row(&[3, 1, 3], &[1, 1, 1], &[], &[])));
        assert!(!sorter.sort(&row(&[3, 1, 3], &[1, 1, 2], &[], &[])));
        assert!(!sorter.sort(&row(&[3, 3], &[1, 1], &[1, 2], &[])));
        assert!(!sorter.sort(&row(&[3, 3], &[1, 1], &[], &["a", "b"])));
        assert!(sorter.sort(&row(&[3, 3], &[1, 1], &[], &["a", "a"])));
        // Copies of an event matching no step do not count.
        assert!(!sorter.sort(&row(&[3, 3], &[0, 0], &[], &[])));
        assert!(!sorter.sort(&row(&[3, 3], &[0, 0], &[2, 2], &["a", "a"])));
    }

    #[test]
    fn a_wide_path_after_a_labelled_one_keeps_no_stale_labels() {
        let mut sorter = PathSorter::default();
        sorter.sort(&row(&[2, 1], &[1, 1], &[], &["b", "a"]));
        assert_eq!(
            sorter.label(&row(&[2, 1], &[1, 1], &[], &["b", "a"]), 0),
            "a"
        );
        let plain = row(&[2, 1], &[1, 1], &[], &[]);
        sorter.sort(&plain);
        assert_eq!(sorter.label(&plain, 0), "");
        assert_eq!(sorter.events(), &[event(1, 1, 0), event(2, 1, 0)]);
    }
}
