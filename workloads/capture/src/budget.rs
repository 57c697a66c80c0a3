//! The bytes capture holds for requests in flight, bounded across all of
//! them. Pure: a lock and counters, no I/O.
//!
//! Every buffer a request makes (the body as it arrives, the decoded
//! payload, each event's JSON tree while it is normalised, the serialised
//! events until Kafka acknowledges them) is taken from one budget first.
//! When the budget cannot give it, the request ends with 503 at once, before
//! the memory is used: capture's memory follows the budget, not the number or
//! the shape of the requests.
//!
//! Small requests are not starved by large ones: a request becomes large
//! once it has taken more than [`SMALL_REQUEST_BYTES`], and from then on
//! everything it holds counts against the large share (three quarters of
//! the budget) too. However many large or hostile requests run, a quarter
//! of the budget stays for the ordinary small ones.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::gauge::Gauge;

/// Why bytes were not given; nothing was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The budget is spent for now (503: retry shortly).
    #[error(
        "capture is holding as many bytes as it may (CAPTURE_MAX_BYTES_IN_FLIGHT); retry shortly"
    )]
    Busy,
    /// The request alone needs more than any request is given (413: a
    /// retry would fail the same way).
    #[error(
        "this request needs more than the {0} bytes capture gives one request (three quarters of CAPTURE_MAX_BYTES_IN_FLIGHT): send smaller batches"
    )]
    TooLarge(usize),
}

#[derive(Debug)]
pub struct ByteBudget {
    total: usize,
    large_share: usize,
    small_request: usize,
    held: Mutex<Held>,
    /// `capture_bytes_in_flight`: what every request holds, as it changes.
    in_flight: Gauge,
}

#[derive(Debug, Default, Clone, Copy)]
struct Held {
    /// By every request.
    all: usize,
    /// By large requests.
    large: usize,
}

/// Bytes of a request that count as small.
pub const SMALL_REQUEST_BYTES: usize = 256 * 1024;

impl ByteBudget {
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            large_share: total / 4 * 3,
            small_request: SMALL_REQUEST_BYTES.min(total / 4),
            held: Mutex::new(Held::default()),
            in_flight: Gauge::default(),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes held now, by every request.
    /// `CAPTURE_MAX_BYTES_IN_FLIGHT`.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn used(&self) -> usize {
        self.held().all
    }

    /// The gauge following [`used`](Self::used), to register.
    pub fn gauge(&self) -> Gauge {
        self.in_flight.clone()
    }

    /// The most one request may hold.
    pub fn per_request(&self) -> usize {
        self.large_share
    }

    /// A request's account, empty; what it holds is given back when it is
    /// dropped.
    pub fn charge(self: &Arc<Self>) -> Charge {
        Charge {
            budget: Arc::clone(self),
            held: 0,
            taken: 0,
            large: false,
        }
    }
}

/// One request's share of the budget.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<ByteBudget>,
    /// Held now.
    held: usize,
    /// Taken over the request's life (what makes it large).
    taken: usize,
    /// Counted against the large share.
    large: bool,
}

impl Charge {
    /// Takes `n` more bytes for this request, or refuses (taking nothing).
    pub fn take(&mut self, n: usize) -> Result<(), Refused> {
        let b = &self.budget;
        if self.held.saturating_add(n) > b.large_share {
            return Err(Refused::TooLarge(b.large_share));
        }
        let becomes_large = !self.large && self.taken.saturating_add(n) > b.small_request;
        let mut held = b.held();
        if held.all + n > b.total {
            return Err(Refused::Busy);
        }
        if self.large || becomes_large {
            // Turning large moves what the request already holds into the
            // large share.
            let moved = if becomes_large { self.held } else { 0 };
            if held.large + moved + n > b.large_share {
                return Err(Refused::Busy);
            }
            held.large += moved + n;
        }
        held.all += n;
        self.budget.in_flight.set(gauge_value(held.all));
        drop(held);
        self.large |= becomes_large;
        self.held += n;
        self.taken = self.taken.saturating_add(n);
        Ok(())
    }

    /// Gives back `n` bytes this request no longer holds.
    pub fn give_back(&mut self, n: usize) {
        let n = n.min(self.held);
        self.held -= n;
        let mut held = self.budget.held();
        held.all -= n;
        if self.large {
            held.large -= n;
        }
        self.budget.in_flight.set(gauge_value(held.all));
    }

    /// Bytes this request holds now.
    pub fn held(&self) -> usize {
        self.held
    }
}

fn gauge_value(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

impl Drop for Charge {
    fn drop(&mut self) {
        let n = self.held;
        self.give_back(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn a_request_takes_until_the_budget_is_spent_and_gives_back_on_drop() {
        let budget = ByteBudget::new(8 * MIB);
        let mut a = budget.charge();
        a.take(4 * MIB).unwrap();
        a.take(2 * MIB).unwrap();
        assert_eq!(
            a.take(MIB),
            Err(Refused::TooLarge(6 * MIB)),
            "no request holds more than the large share"
        );
        let mut b = budget.charge();
        b.take(SMALL_REQUEST_BYTES).unwrap();
        assert_eq!(b.take(1), Err(Refused::Busy), "the large share is held");
        drop(b);
        assert_eq!(budget.used(), 6 * MIB);
        a.give_back(MIB);
        assert_eq!((a.held(), budget.used()), (5 * MIB, 5 * MIB));
        assert_eq!(budget.gauge().get(), 5 * MIB as i64, "the gauge follows");
        drop(a);
        assert_eq!((budget.used(), budget.gauge().get()), (0, 0));
    }

    #[test]
    fn large_requests_leave_a_quarter_for_small_ones() {
        let budget = ByteBudget::new(8 * MIB);
        let mut large = Vec::new();
        // Large requests take what they can: six of the eight MiB.
        loop {
            let mut c = budget.charge();
            if c.take(MIB).is_err() {
                break;
            }
            large.push(c);
        }
        assert_eq!(budget.used(), 6 * MIB);
        // Small requests still get in, up to the whole budget.
        let mut small = Vec::new();
        for _ in 0..8 {
            let mut c = budget.charge();
            c.take(SMALL_REQUEST_BYTES).unwrap();
            small.push(c);
        }
        assert_eq!(budget.used(), 8 * MIB);
        let mut late = budget.charge();
        assert_eq!(late.take(1), Err(Refused::Busy), "the whole budget is held");
        drop(small);
        // A small request that grows large is held to the large share.
        let mut growing = budget.charge();
        growing.take(SMALL_REQUEST_BYTES).unwrap();
        assert_eq!(growing.take(1), Err(Refused::Busy));
        drop(large);
        growing.take(MIB).unwrap();
    }

    #[test]
    fn requests_that_start_small_cannot_take_the_small_quarter_by_growing() {
        let budget = ByteBudget::new(8 * MIB);
        // Many requests each hold a little, then grow: together they stop at
        // the large share, and what they held while small moved there too.
        let mut growing = Vec::new();
        for _ in 0..32 {
            let mut c = budget.charge();
            c.take(SMALL_REQUEST_BYTES / 2).unwrap();
            growing.push(c);
        }
        // Those refused end (503), giving back what they held.
        growing.retain_mut(|c| c.take(SMALL_REQUEST_BYTES).is_ok());
        let grown = growing.len();
        assert!(grown > 0 && grown < 32, "{grown}");
        assert_eq!(budget.held().large, grown * (SMALL_REQUEST_BYTES * 3 / 2));
        assert!(budget.held().large <= 6 * MIB);
        // A small request still fits.
        let mut small = budget.charge();
        small.take(SMALL_REQUEST_BYTES).unwrap();
        drop((growing, small));
        let held = *budget.held();
        assert_eq!((held.all, held.large), (0, 0));
    }

    #[test]
    fn many_threads_never_overdraw() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let budget = ByteBudget::new(4 * MIB);
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let budget = Arc::clone(&budget);
                let peak = Arc::clone(&peak);
                s.spawn(move || {
                    for _ in 0..2000 {
                        let mut c = budget.charge();
                        if c.take(100 * 1024).is_ok() {
                            peak.fetch_max(budget.used(), Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 4 * MIB);
        assert_eq!(budget.used(), 0);
    }
}
