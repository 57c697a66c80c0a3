//! One condition's new value, before it meets the previous one. Pure.

/// A condition's status: `Unknown` when it was not observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    pub(super) fn of(ok: bool) -> Self {
        if ok { Truth::True } else { Truth::False }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Truth::True => "True",
            Truth::False => "False",
            Truth::Unknown => "Unknown",
        }
    }
}

/// One condition's new value.
pub(super) struct Verdict {
    pub(super) type_: &'static str,
    pub(super) truth: Truth,
    pub(super) reason: &'static str,
    pub(super) message: String,
    /// Not observed this time: the previous condition stands, if any.
    pub(super) keep: bool,
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

pub(super) fn verdict(
    type_: &'static str,
    ok: bool,
    reason: &'static str,
    message: String,
) -> Verdict {
    Verdict {
        type_,
        truth: Truth::of(ok),
        reason,
        message,
        keep: false,
    }
}

pub(super) fn unknown(type_: &'static str, reason: &'static str, message: &str) -> Verdict {
    Verdict {
        type_,
        truth: Truth::Unknown,
        reason,
        message: message.to_owned(),
        keep: false,
    }
}
