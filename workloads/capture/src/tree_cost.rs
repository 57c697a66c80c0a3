//! What parsing one event's JSON text into a tree (`serde_json::Value`) and
//! normalising it may allocate, read from the text before anything is
//! parsed. Pure.
//!
//! A tree is not proportional to its text. `[0,0,...]` costs a 32-byte
//! `Value` (in a vector that may have doubled) for every two bytes of text,
//! and `{"":0}` a whole B-tree node, over 600 bytes, for six. So the text is
//! scanned once, outside its strings, counting what the tree will hold, and
//! each thing is priced at its worst:
//!
//! - every value a slot of two `Value`s (a vector grows by doubling) and the
//!   smallest allocation a one-byte string makes;
//! - every object with an entry a B-tree node of the largest kind (an empty
//!   one allocates none), and every entry its share of the further nodes a
//!   map grows (each holds at least five);
//! - the text four times more: a string is parsed into a scratch buffer and
//!   copied into the tree, and the Kafka payload is written while the tree
//!   lives (the properties' text, once written out whole to be hashed for
//!   the event's uuid, is now hashed as it is written: a share to spare);
//! - a quarter on top for the allocator's rounding, which counting
//!   requested bytes cannot see.
//!
//! `tests/tree_cost.rs` measures the bytes actually requested for hostile
//! shapes and checks them against this estimate.

use std::mem::size_of;

use serde_json::Value;

/// One value's slot: two `Value`s (vectors double), and the 8 bytes a
/// one-character string's heap buffer takes at least.
const PER_VALUE: usize = 2 * size_of::<Value>() + 8;

/// The largest node of a `serde_json::Map` (a `BTreeMap<String, Value>`):
/// 11 keys, 11 values, 12 child pointers and the header.
const PER_OBJECT: usize = 11 * (size_of::<String>() + size_of::<Value>()) + 12 * 8 + 16;

/// A map's further nodes, shared among the at least five entries each holds.
const PER_ENTRY: usize = PER_OBJECT / 5 + 8;

/// An upper bound on the bytes parsing `json` into a tree and normalising
/// it requests from the allocator.
pub fn tree_bytes(json: &[u8]) -> usize {
    let (mut values, mut entries, mut objects) = (1usize, 0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    // An object was opened and its first entry not yet seen.
    let mut opened = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' | b'[' => values += 1,
            b':' => {
                values += 1;
                entries += 1;
                if opened {
                    objects += 1;
                    opened = false;
                }
            }
            b'{' => {
                values += 1;
                opened = true;
            }
            b'}' => opened = false,
            _ => {}
        }
    }
    let tree = values
        .saturating_mul(PER_VALUE)
        .saturating_add(entries.saturating_mul(PER_ENTRY))
        .saturating_add(objects.saturating_mul(PER_OBJECT));
    let bytes = tree.saturating_add(json.len().saturating_mul(5));
    bytes.saturating_add(bytes / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_is_the_b_tree_the_prices_assume() {
        // With serde_json's `preserve_order` a map is an IndexMap and a
        // Value is larger: the prices above would be wrong.
        assert_eq!(size_of::<Value>(), 32);
    }

    #[test]
    fn structure_costs_more_than_text() {
        let zeros = format!("[{}0]", "0,".repeat(1000));
        let objects = format!("[{}{{}}]", r#"{"":0},"#.repeat(1000));
        let empty = format!("[{}{{}}]", "{},".repeat(1000));
        let string = format!(r#""{}""#, "x".repeat(2000));
        assert!(tree_bytes(zeros.as_bytes()) > 32 * zeros.len());
        assert!(tree_bytes(objects.as_bytes()) > 100 * objects.len());
        // An empty object allocates no node.
        assert!(4 * tree_bytes(empty.as_bytes()) < tree_bytes(objects.as_bytes()));
        // A long string is mostly its own bytes.
        assert!(tree_bytes(string.as_bytes()) < 8 * string.len());
    }

    #[test]
    fn structure_inside_strings_is_text() {
        let plain = format!(r#""{}""#, "a".repeat(3500));
        let quoted = format!(r#""{}""#, r#"{\":0,["#.repeat(500));
        assert_eq!(plain.len(), quoted.len());
        assert_eq!(tree_bytes(plain.as_bytes()), tree_bytes(quoted.as_bytes()));
    }

    #[test]
    fn huge_counts_saturate() {
        assert!(tree_bytes(&[b'{'; 1000]) > 0);
    }
}
