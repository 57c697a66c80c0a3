//! Fixing dead letters on their way back: a JSON merge patch (RFC 7386)
//! applied to each event, e.g. `{"v":1}` for events a misconfigured
//! producer stamped with a wire version this consumer does not read, or
//! `{"properties":{"bad":null}}` to drop a property. Pure.

use serde_json::Value;

/// A merge patch given on the command line: a JSON object.
pub fn parse(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err("a merge patch is a JSON object, e.g. '{\"v\":1}'".to_owned()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// `raw` with `patch` merged in; an event that is not a JSON object cannot
/// be patched.
pub fn apply(raw: &[u8], patch: &Value) -> Result<Vec<u8>, String> {
    let mut event: Value = serde_json::from_slice(raw)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| "not a JSON object, so it cannot be patched".to_owned())?;
    json_patch::merge(&mut event, patch);
    serde_json::to_vec(&event).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_sets_replaces_and_removes_fields_and_keeps_the_rest() {
        let raw = br#"{"v":9,"uuid":"0190","event":"buy","properties":{"plan":"pro","bad":[1]}}"#;
        let patch = parse(r#"{"v":1,"properties":{"bad":null,"fixed":true}}"#).unwrap_or_default();
        let out: Value =
            serde_json::from_slice(&apply(raw, &patch).unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            out,
            json!({"v":1,"uuid":"0190","event":"buy","properties":{"plan":"pro","fixed":true}})
        );
    }

    #[test]
    fn only_objects_patch_and_are_patched() {
        assert!(parse("[1]").is_err());
        assert!(parse("{v:1}").is_err());
        let patch = json!({"v": 1});
        assert!(apply(b"not json", &patch).is_err());
        assert!(apply(b"[1,2]", &patch).is_err());
    }
}
