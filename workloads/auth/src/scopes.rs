//! Key scopes. `capture` keys send events; `query` keys read answers;
//! `dashboards` keys read answers too and also save insights and dashboards
//! (the query service asks for that scope on its writing routes). Pure.

/// The scopes a key may be made with.
pub const SCOPES: [&str; 3] = ["capture", "query", "dashboards"];

/// What a bad scope is told.
pub const SCOPE_RULE: &str = "scope must be \"capture\", \"query\" or \"dashboards\"";

/// The key scopes that grant `asked`, or `None` for an unknown scope: a
/// `dashboards` key may do what a `query` key may.
pub fn granting(asked: &str) -> Option<&'static [&'static str]> {
    match asked {
        "capture" => Some(&["capture"]),
        "query" => Some(&["query", "dashboards"]),
        "dashboards" => Some(&["dashboards"]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboards_keys_read_and_nothing_else_crosses_over() {
        assert_eq!(granting("query"), Some(&["query", "dashboards"][..]));
        assert_eq!(granting("dashboards"), Some(&["dashboards"][..]));
        assert_eq!(granting("capture"), Some(&["capture"][..]));
        assert_eq!(granting("admin"), None);
        assert_eq!(granting("Query"), None, "exact names only");
        for scope in SCOPES {
            let granted = granting(scope).unwrap();
            assert!(granted.contains(&scope), "{scope} grants itself");
            assert!(!granted.contains(&"capture") || scope == "capture");
        }
    }
}
