//! One condition's new value, before it meets the previous one. Pure.

use super::reason::{ConditionType, Reason};

/// A condition's status: `Unknown` when it was not observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    pub(super) fn of(ok: bool) -> Self {
        if ok { Truth::True } else { Truth::False }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Truth::True => "True",
            Truth::False => "False",
            Truth::Unknown => "Unknown",
        }
    }
}

/// One condition's new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub type_: ConditionType,
    pub truth: Truth,
    pub reason: Reason,
    pub message: String,
    /// Not observed this time: the previous condition stands, if any.
    pub keep: bool,
}

impl Verdict {
    pub(super) fn ok(&self) -> bool {
        self.truth == Truth::True
    }

    /// This verdict only where there is no previous condition.
    pub(super) fn unless_known(mut self) -> Self {
        self.keep = true;
        self
    }
}

pub(super) fn verdict(type_: ConditionType, ok: bool, reason: Reason, message: String) -> Verdict {
    Verdict {
        type_,
        truth: Truth::of(ok),
        reason,
        message,
        keep: false,
    }
}

pub(super) fn unknown(type_: ConditionType, reason: Reason, message: &str) -> Verdict {
    Verdict {
        type_,
        truth: Truth::Unknown,
        reason,
        message: message.to_owned(),
        keep: false,
    }
}
