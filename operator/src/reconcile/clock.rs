//! The time of one reconcile, read once at its start: every step (the
//! autoscaler's poll, the migration's progress, the status's transition
//! times) sees the same instant, in whole seconds, what the API server
//! keeps, so a status read back compares equal to the one written.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now(Timestamp);

impl Now {
    /// The clock, now.
    pub fn read() -> Self {
        Self::at_second(Timestamp::now().as_second())
    }

    /// `second` seconds after the epoch (tests).
    pub fn at_second(second: i64) -> Self {
        Self(Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    pub fn second(self) -> i64 {
        self.0.as_second()
    }

    pub fn timestamp(self) -> Timestamp {
        self.0
    }

    /// As a condition's or status field's time.
    pub fn time(self) -> Time {
        Time(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_so_a_status_read_back_compares_equal() {
        let now = Now::read();
        assert_eq!(now.timestamp().subsec_nanosecond(), 0);
        assert_eq!(Now::at_second(now.second()), now);
        assert_eq!(now.time(), Time(now.timestamp()));
    }
}
