//! A payload's outline: its events as raw JSON text, the batch's key and
//! `sent_at`, found without building a JSON tree of the payload. Pure.
//!
//! A JSON tree costs many times its text (`[0,0,...]`: a 32-byte value for
//! every two bytes; `[{"":0},...]`: a B-tree node for every seven), so a
//! 20 MiB batch parsed whole could take gigabytes. The outline borrows the events from the text instead, and
//! only their number is bounded here; each event becomes a tree of its own,
//! one at a time, when it is normalised, after its cost
//! (`crate::tree_cost`) was taken from the byte budget.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::normalize::PayloadError;

/// The events of a payload, not yet parsed.
#[derive(Debug)]
pub struct Outline<'a> {
    /// The batch-level key (`api_key`, `token` or `$token` beside `batch`).
    pub batch_key: Option<String>,
    /// The batch-level `sent_at`, if any.
    pub sent_at: Option<&'a RawValue>,
    pub events: Vec<&'a RawValue>,
    /// For a payload that is one event object, the key that event names,
    /// found while it was outlined (see [`request_key`]).
    single_key: Option<Option<String>>,
}

/// Outlines `text` (valid JSON): one event object, an array of events, or
/// `{"batch": [...], ...}`, with at most `max_events` events.
pub fn outline(text: &str, max_events: usize) -> Result<Outline<'_>, PayloadError> {
    let whole: &RawValue = serde_json::from_str(text).map_err(|_| PayloadError::Shape)?;
    outline_of(whole, max_events)
}

/// Like [`outline`], for text already read as one JSON value (which
/// checked its syntax).
pub fn outline_of(whole: &RawValue, max_events: usize) -> Result<Outline<'_>, PayloadError> {
    match first_byte(whole) {
        Some(b'[') => Ok(Outline {
            batch_key: None,
            sent_at: None,
            events: events_of(whole, max_events)?,
            single_key: None,
        }),
        Some(b'{') => {
            let top = whole_object(whole)?;
            match top.batch {
                Some(batch) if first_byte(batch) == Some(b'[') => Ok(Outline {
                    batch_key: top.keys.key(),
                    sent_at: top.sent_at,
                    events: events_of(batch, max_events)?,
                    single_key: None,
                }),
                Some(_) => Err(PayloadError::BatchNotArray),
                None => Ok(Outline {
                    batch_key: None,
                    sent_at: None,
                    events: vec![whole],
                    // As `probe_event` would find it, without a second parse.
                    single_key: Some(top.keys.key().or(top.in_properties)),
                }),
            }
        }
        _ => Err(PayloadError::Shape),
    }
    .and_then(|o| {
        if o.events.is_empty() {
            Err(PayloadError::NoEvents)
        } else {
            Ok(o)
        }
    })
}

/// The key the request's events are sent with: the batch's, else the first
/// event's that names one (`api_key`, `token`, `$token`, or one of those in
/// its `properties`). Every event must be an object, and every key named
/// must be that one.
pub fn request_key(outline: &Outline<'_>) -> Result<Option<String>, PayloadError> {
    if let Some(found) = &outline.single_key {
        return Ok(found.clone());
    }
    let mut key = outline.batch_key.clone();
    let mut mixed = None;
    for (index, raw) in outline.events.iter().enumerate() {
        let probe = probe_event(raw).ok_or(PayloadError::NotAnObject { index })?;
        match (&key, probe) {
            (None, found) => key = found,
            (Some(k), Some(found)) if *k != found => {
                mixed.get_or_insert(index);
            }
            _ => {}
        }
    }
    match mixed {
        Some(index) => Err(PayloadError::MixedKeys { index }),
        None => Ok(key),
    }
}

fn first_byte(raw: &RawValue) -> Option<u8> {
    raw.get().bytes().find(|b| !b.is_ascii_whitespace())
}

/// The elements of an array, at most `max`.
fn events_of(array: &RawValue, max: usize) -> Result<Vec<&RawValue>, PayloadError> {
    let too_many = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(array.get());
    let seed = Capped {
        max,
        too_many: &too_many,
    };
    match seed.deserialize(&mut de) {
        Ok(events) => Ok(events),
        Err(_) if too_many.get() => Err(PayloadError::TooManyEvents { max }),
        Err(_) => Err(PayloadError::Shape),
    }
}

struct Capped<'c> {
    max: usize,
    too_many: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Capped<'_> {
    type Value = Vec<&'de RawValue>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Capped<'_> {
    type Value = Vec<&'de RawValue>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if out.len() == self.max {
                self.too_many.set(true);
                return Err(de::Error::custom("too many events"));
            }
            out.push(raw);
        }
        Ok(out)
    }
}

/// The key fields of one object, as a map with repeated names keeps them:
/// the last one. `Some(None)`: present but not a string.
#[derive(Debug, Default)]
struct KeyFields {
    api_key: Option<Option<String>>,
    token: Option<Option<String>>,
    dollar_token: Option<Option<String>>,
}

impl KeyFields {
    /// The first of `api_key`, `token`, `$token` that is a string, unless
    /// it is empty.
    fn key(&self) -> Option<String> {
        [&self.api_key, &self.token, &self.dollar_token]
            .into_iter()
            .find_map(|slot| slot.clone().flatten())
            .filter(|k| !k.is_empty())
    }

    /// Takes the value of `name` if it is a key field; false otherwise.
    fn read<'de, A: MapAccess<'de>>(&mut self, name: Field, map: &mut A) -> Result<bool, A::Error> {
        let slot = match name {
            Field::ApiKey => &mut self.api_key,
            Field::Token => &mut self.token,
            Field::DollarToken => &mut self.dollar_token,
            _ => return Ok(false),
        };
        *slot = Some(map.next_value::<MaybeString>()?.0);
        Ok(true)
    }
}

/// The fields an outline looks at; every other name is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Batch,
    SentAt,
    ApiKey,
    Token,
    DollarToken,
    Properties,
    Other,
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "batch" => Field::Batch,
                    "sent_at" => Field::SentAt,
                    "api_key" => Field::ApiKey,
                    "token" => Field::Token,
                    "$token" => Field::DollarToken,
                    "properties" => Field::Properties,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A value that is kept if it is a string and skipped (without being built)
/// otherwise.
struct MaybeString(Option<String>);

impl<'de> serde::Deserialize<'de> for MaybeString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MaybeStringVisitor)
    }
}

struct MaybeStringVisitor;

impl<'de> Visitor<'de> for MaybeStringVisitor {
    type Value = MaybeString;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<MaybeString, E> {
        Ok(MaybeString(Some(v.to_owned())))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<MaybeString, E> {
        Ok(MaybeString(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<MaybeString, E> {
        Ok(MaybeString(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<MaybeString, E> {
        Ok(MaybeString(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<MaybeString, E> {
        Ok(MaybeString(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<MaybeString, E> {
        Ok(MaybeString(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeString, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeString(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeString, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(MaybeString(None))
    }
}

/// What the top-level object holds for an outline.
#[derive(Debug, Default)]
struct Top<'a> {
    batch: Option<&'a RawValue>,
    sent_at: Option<&'a RawValue>,
    keys: KeyFields,
    /// The key its `properties` name, if it is one event.
    in_properties: Option<String>,
}

fn whole_object(raw: &RawValue) -> Result<Top<'_>, PayloadError> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Top<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
            let mut top = Top::default();
            while let Some(name) = map.next_key::<Field>()? {
                match name {
                    Field::Batch => top.batch = Some(map.next_value()?),
                    Field::SentAt => top.sent_at = Some(map.next_value()?),
                    Field::Properties => top.in_properties = map.next_value::<Props>()?.0,
                    other => {
                        if !top.keys.read(other, &mut map)? {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
            }
            Ok(top)
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_map(V).map_err(|_| PayloadError::Shape)
}

/// The key an event's `properties` name; `None` for anything else.
struct Props(Option<String>);
impl<'de> serde::Deserialize<'de> for Props {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Props;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Props, A::Error> {
                let mut keys = KeyFields::default();
                while let Some(name) = map.next_key::<Field>()? {
                    if !keys.read(name, &mut map)? {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Props(keys.key()))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Props, E> {
                Ok(Props(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Props, E> {
                Ok(Props(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Props, E> {
                Ok(Props(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Props, E> {
                Ok(Props(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Props, E> {
                Ok(Props(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Props, E> {
                Ok(Props(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Props, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Props(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// The key one event names (its own fields first, then its properties'),
/// or `None` when the event is not an object.
fn probe_event(raw: &RawValue) -> Option<Option<String>> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an event object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
            let mut keys = KeyFields::default();
            let mut in_properties = None;
            while let Some(name) = map.next_key::<Field>()? {
                if name == Field::Properties {
                    in_properties = map.next_value::<Props>()?.0;
                } else if !keys.read(name, &mut map)? {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(keys.key().or(in_properties))
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_map(V).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys_of(v: serde_json::Value) -> Result<Option<String>, PayloadError> {
        let text = v.to_string();
        let o = outline(&text, 100)?;
        request_key(&o)
    }

    #[test]
    fn the_three_shapes() {
        let e = r#"{"event": "a", "distinct_id": "d"}"#;
        assert_eq!(outline(e, 10).unwrap().events.len(), 1);
        let arr = format!("[{e}, {e}, {e}]");
        assert_eq!(outline(&arr, 10).unwrap().events.len(), 3);
        let batch = format!(
            r#"{{"api_key": "k", "batch": [{e}, {e}], "sent_at": "2023-11-14T22:13:30Z"}}"#
        );
        let o = outline(&batch, 10).unwrap();
        assert_eq!(o.events.len(), 2);
        assert_eq!(o.batch_key.as_deref(), Some("k"));
        assert_eq!(o.sent_at.unwrap().get(), r#""2023-11-14T22:13:30Z""#);
        assert_eq!(o.events[1].get(), e);
    }

    #[test]
    fn a_single_event_names_the_key_a_probe_of_it_finds() {
        for event in [
            r#"{"event": "a"}"#,
            r#"{"event": "a", "api_key": "k"}"#,
            r#"{"token": "t", "event": "a", "api_key": "k"}"#,
            r#"{"$token": "d", "token": 7, "event": "a"}"#,
            r#"{"token": "", "properties": {"token": "p"}}"#,
            r#"{"properties": {"$token": "p", "api_key": "q"}, "token": "t"}"#,
            r#"{"properties": {"token": "p"}, "properties": {"token": "q"}}"#,
            r#"{"properties": {"token": "p"}, "properties": 3}"#,
            r#"{"properties": ["token", "p"], "api_key": null}"#,
            r#"{"token": "x", "token": "y", "sent_at": "now"}"#,
        ] {
            let o = outline(event, 10).unwrap();
            assert!(o.single_key.is_some(), "{event}");
            let probed = Outline {
                single_key: None,
                ..outline(event, 10).unwrap()
            };
            assert_eq!(request_key(&o), request_key(&probed), "{event}");
        }
    }

    #[test]
    fn bad_shapes_and_counts() {
        assert_eq!(outline(r#""x""#, 10).unwrap_err(), PayloadError::Shape);
        assert_eq!(outline("3", 10).unwrap_err(), PayloadError::Shape);
        assert_eq!(outline("[]", 10).unwrap_err(), PayloadError::NoEvents);
        assert_eq!(
            outline(r#"{"batch": []}"#, 10).unwrap_err(),
            PayloadError::NoEvents
        );
        for batch in [r#"{"batch": {"event": "a"}}"#, r#"{"batch": null}"#] {
            assert_eq!(outline(batch, 10).unwrap_err(), PayloadError::BatchNotArray);
        }
        let eleven = format!("[{}]", ["{}"; 11].join(","));
        assert_eq!(
            outline(&eleven, 10).unwrap_err(),
            PayloadError::TooManyEvents { max: 10 }
        );
        assert_eq!(outline(&eleven, 11).unwrap().events.len(), 11);
    }

    #[test]
    fn keys_are_found_where_sdks_put_them() {
        assert_eq!(
            keys_of(json!({"api_key": "a", "event": "e"})),
            Ok(Some("a".into()))
        );
        assert_eq!(keys_of(json!({"token": "t"})), Ok(Some("t".into())));
        assert_eq!(keys_of(json!({"$token": "t"})), Ok(Some("t".into())));
        assert_eq!(
            keys_of(json!({"properties": {"token": "p"}})),
            Ok(Some("p".into()))
        );
        assert_eq!(
            keys_of(json!({"token": "own", "properties": {"token": "own"}})),
            Ok(Some("own".into()))
        );
        // Not a string: skipped for the next field; empty: no key.
        assert_eq!(
            keys_of(json!({"api_key": 5, "token": "t"})),
            Ok(Some("t".into()))
        );
        assert_eq!(keys_of(json!({"api_key": "", "token": "t"})), Ok(None));
        assert_eq!(keys_of(json!({"event": "e"})), Ok(None));
        // Repeated names: the last one, as a JSON map keeps it.
        let o = outline(r#"{"token": "x", "token": "y"}"#, 10).unwrap();
        assert_eq!(request_key(&o), Ok(Some("y".into())));
        assert_eq!(
            keys_of(json!({"batch": [{"event": "a"}, {"token": "t"}]})),
            Ok(Some("t".into()))
        );
        assert_eq!(
            keys_of(json!({"token": "b", "batch": [{"event": "a", "properties": {"token": "b"}}]})),
            Ok(Some("b".into()))
        );
    }

    #[test]
    fn every_event_is_an_object_and_names_the_same_key() {
        assert_eq!(
            keys_of(json!([{"event": "a"}, 5])),
            Err(PayloadError::NotAnObject { index: 1 })
        );
        assert_eq!(
            keys_of(json!([{"token": "a"}, {"token": "a"}, {"properties": {"token": "b"}}])),
            Err(PayloadError::MixedKeys { index: 2 })
        );
        assert_eq!(
            keys_of(json!({"token": "a", "batch": [{"token": "b"}]})),
            Err(PayloadError::MixedKeys { index: 0 })
        );
        // A non-object is named before a mixed key, wherever it is.
        assert_eq!(
            keys_of(json!([{"token": "a"}, {"token": "b"}, "x"])),
            Err(PayloadError::NotAnObject { index: 2 })
        );
    }

    #[test]
    fn a_huge_array_of_small_values_is_refused_by_count_without_a_tree() {
        let text = format!("[{}0]", "0,".repeat(5_000_000));
        assert_eq!(
            outline(&text, 10_000).unwrap_err(),
            PayloadError::TooManyEvents { max: 10_000 }
        );
    }
}
