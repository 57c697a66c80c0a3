//! Request body → JSON value, for every encoding PostHog SDKs use.
//!
//! Pure and I/O-free. Order of recognition:
//! 1. form data (`application/x-www-form-urlencoded`, or a body with a `data=`
//!    field): its `data` field is the payload (`compression` may come in the
//!    form too); a body that is plainly gzip or JSON is taken as such even under
//!    a form Content-Type, as `curl -d` sends it;
//! 2. gzip, recognised by its magic bytes whatever the query says: the body
//!    decides, not the hint, as PostHog's capture does (posthog-js 1.78
//!    sends `?compression=gzip-js` with a form `data=` of base64 JSON);
//! 3. JSON when the text starts with `{` or `[`, otherwise base64 (standard or
//!    URL-safe alphabet, padding optional), which may itself hold gzip.
//!
//! Every stage is bounded by `limit` bytes of output, so a small gzip bomb
//! cannot expand into memory, and takes what it makes from an
//! [`Allowance`] first (capture's byte budget), so many requests together
//! cannot either. The result is JSON text, checked (UTF-8, syntax, integers
//! within 64 bits, nesting within 128 levels) but not parsed into a tree:
//! [`crate::outline`] takes it from there.

use std::io::Read;
use std::ops::Deref;

use bytes::Bytes;

use crate::bigbuf::BigBuf;

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use serde_json::Value;
use serde_json::value::RawValue;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Why a body could not be turned into JSON. The message is shown to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("request body is empty")]
    Empty,
    #[error("payload is larger than {limit} bytes once decoded")]
    TooLarge { limit: usize },
    #[error("invalid gzip: {0}")]
    Gzip(String),
    #[error("invalid base64: {0}")]
    Base64(String),
    #[error("invalid form data: {0}")]
    Form(String),
    #[error("payload is not valid UTF-8 (first invalid byte at offset {offset})")]
    Utf8 { offset: usize },
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error(
        "the integer at byte {offset} is beyond 64 bits, where JSON numbers lose digits: send it as a string"
    )]
    IntegerTooLarge { offset: usize },
    #[error("JSON nested deeper than {MAX_DEPTH} levels (at byte {offset})")]
    TooDeep { offset: usize },
    /// Capture's byte budget cannot give what decoding would make.
    #[error(transparent)]
    Budget(#[from] crate::budget::Refused),
}

/// Decoded JSON text: the body itself when it was plain JSON, or what
/// decoding made of it.
#[derive(Debug, Clone)]
pub enum Text<'b> {
    Borrowed(&'b [u8]),
    Owned(Bytes),
}

impl Deref for Text<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Borrowed(b) => b,
            Self::Owned(b) => b,
        }
    }
}

/// Deepest nesting of arrays and objects accepted (what serde_json parses).
pub const MAX_DEPTH: usize = 128;

/// Where decoding takes the memory of each buffer it makes, before making
/// it.
pub trait Allowance {
    fn take(&mut self, bytes: usize) -> Result<(), DecodeError>;
    /// Gives back what a freed buffer held.
    fn give_back(&mut self, _bytes: usize) {}
}

/// No bound but `limit` (tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl Allowance for Unlimited {
    fn take(&mut self, _: usize) -> Result<(), DecodeError> {
        Ok(())
    }
}

impl Allowance for crate::budget::Charge {
    fn take(&mut self, bytes: usize) -> Result<(), DecodeError> {
        crate::budget::Charge::take(self, bytes).map_err(DecodeError::Budget)
    }
    fn give_back(&mut self, bytes: usize) {
        crate::budget::Charge::give_back(self, bytes);
    }
}

impl DecodeError {
    /// Short machine-readable kind, used as a metric label and error code.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty_body",
            Self::TooLarge { .. } => "too_large",
            Self::Gzip(_) => "invalid_gzip",
            Self::Base64(_) => "invalid_base64",
            Self::Form(_) => "invalid_form",
            Self::Utf8 { .. } => "invalid_utf8",
            Self::Json(_) => "malformed_json",
            Self::IntegerTooLarge { .. } => "integer_too_large",
            Self::TooDeep { .. } => "too_deep",
            Self::Budget(crate::budget::Refused::Busy) => "overloaded",
            Self::Budget(crate::budget::Refused::TooLarge(_)) => "too_large",
        }
    }
}

/// What the request says about the body besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyHints {
    /// The `Content-Type` was `application/x-www-form-urlencoded`. (A
    /// `compression` hint, in the query or the form, is not one: SDKs send
    /// hints that do not match their bodies.)
    pub form: bool,
}

/// Decodes `body` into a JSON value; see the module docs. (The service
/// uses [`decode_text`] and [`checked_value`], which build no tree.)
pub fn decode_body(body: &[u8], hints: &BodyHints, limit: usize) -> Result<Value, DecodeError> {
    let text = decode_text(body, hints, limit, &mut Unlimited)?;
    let json = checked_json(&text)?;
    serde_json::from_str(json).map_err(|e| DecodeError::Json(e.to_string()))
}

/// Decodes `body` into JSON text (not yet checked), borrowing it when the
/// body is plain JSON; every buffer made is taken from `allowance` first.
pub fn decode_text<'b>(
    body: &'b [u8],
    hints: &BodyHints,
    limit: usize,
    allowance: &mut dyn Allowance,
) -> Result<Text<'b>, DecodeError> {
    if body.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    // Bytes that are plainly gzip or JSON are taken as such whatever the
    // Content-Type says: curl -d and many HTTP clients label every body
    // `application/x-www-form-urlencoded`.
    let first = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .and_then(|i| body.get(i));
    let plainly_raw = body.starts_with(&GZIP_MAGIC) || matches!(first, Some(b'{') | Some(b'['));
    if !plainly_raw && (hints.form || body.starts_with(b"data=") || contains(body, b"&data=")) {
        allowance.take(body.len())?;
        let data = form_data(body)?;
        return decode_payload(
            Text::Owned(Bytes::from(data.into_bytes())),
            limit,
            allowance,
        );
    }
    decode_payload(Text::Borrowed(body), limit, allowance)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Decodes the `data` query parameter of a GET request (old SDKs, pixels)
/// into JSON text, as [`decode_text`] does a body.
pub fn decode_query_text<'d>(
    data: &'d [u8],
    limit: usize,
    allowance: &mut dyn Allowance,
) -> Result<Text<'d>, DecodeError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    decode_payload(Text::Borrowed(data), limit, allowance)
}

/// Decodes the `data` query parameter into a JSON value (tests, tools).
pub fn decode_query_data(data: &str, limit: usize) -> Result<Value, DecodeError> {
    let text = decode_query_text(data.as_bytes(), limit, &mut Unlimited)?;
    let json = checked_json(&text)?;
    serde_json::from_str(json).map_err(|e| DecodeError::Json(e.to_string()))
}

/// Every `name=value` of a form body or a query string, percent-decoded,
/// refusing bytes that are not UTF-8 once decoded (a lenient decoder would
/// turn them into U+FFFD and store what the client never sent).
pub fn strict_pairs(raw: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    let text = |part: &[u8]| -> Result<String, DecodeError> {
        let plus_as_space: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        let bytes: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
        String::from_utf8(bytes).map_err(|e| DecodeError::Utf8 {
            offset: e.utf8_error().valid_up_to(),
        })
    };
    raw.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            Ok((text(name)?, text(value)?))
        })
        .collect()
}

fn form_data(body: &[u8]) -> Result<String, DecodeError> {
    let data = strict_pairs(body)?
        .into_iter()
        .find(|(k, _)| k == "data")
        .map(|(_, v)| v);
    match data {
        Some(d) if !d.trim().is_empty() => Ok(d),
        Some(_) => Err(DecodeError::Form("field `data` is empty".into())),
        None => Err(DecodeError::Form("no `data` field".into())),
    }
}

fn decode_payload<'b>(
    bytes: Text<'b>,
    limit: usize,
    allowance: &mut dyn Allowance,
) -> Result<Text<'b>, DecodeError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        return gunzip(&bytes, limit, allowance).map(Text::Owned);
    }
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    match bytes.get(start) {
        Some(b'{') | Some(b'[') => Ok(bytes),
        _ => {
            let decoded = base64_decode(&bytes, limit, allowance)?;
            if decoded.starts_with(&GZIP_MAGIC) {
                gunzip(&decoded, limit, allowance).map(Text::Owned)
            } else {
                Ok(Text::Owned(decoded))
            }
        }
    }
}

/// The size a gzip body's trailer states (its last member's, mod 2^32), if
/// the body is gzip.
pub fn stated_gzip_size(bytes: &[u8]) -> Option<usize> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return None;
    }
    let tail = bytes.get(bytes.len().checked_sub(4)?..)?;
    Some(u32::from_le_bytes(<[u8; 4]>::try_from(tail).ok()?) as usize)
}

/// Gunzips at most `limit` bytes, taking the output's memory from
/// `allowance` before it grows (a bomb is stopped before it expands).
///
/// The trailer's size field (the last member's size, mod 2^32) sizes the
/// output at once; a trailer that lies only makes the output grow by
/// doubling, or fails the gzip check at the end.
fn gunzip(bytes: &[u8], limit: usize, allowance: &mut dyn Allowance) -> Result<Bytes, DecodeError> {
    const CHUNK: usize = 64 * 1024;
    // A size past the limit is no use as a guess (a truncated body's
    // "trailer" is compressed data): the limit stops the output anyway.
    let stated = stated_gzip_size(bytes).filter(|n| *n <= limit).unwrap_or(0);
    let mut decoder = flate2::read::MultiGzDecoder::new(bytes);
    allowance.take(CHUNK)?;
    let mut chunk = vec![0u8; CHUNK];
    let mut out = BigBuf::with_capacity(stated).map_err(no_memory)?;
    let mut charged = 0usize;
    loop {
        let n = decoder
            .read(&mut chunk)
            .map_err(|e| DecodeError::Gzip(e.to_string()))?;
        if n == 0 {
            return Ok(out.freeze());
        }
        let needed = out.len() + n;
        if needed > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        if needed > out.capacity() {
            // The old and the new buffer both live while one is copied.
            let grown = (out.capacity() * 2).max(needed).max(CHUNK).min(limit);
            let resident = BigBuf::resident_of(grown, out.len());
            allowance.take(resident)?;
            out = out.grown(grown).map_err(no_memory)?;
            allowance.give_back(charged);
            charged = resident;
        }
        let resident = out.resident_with(n);
        if resident > charged {
            allowance.take(resident - charged)?;
            charged = resident;
        }
        out.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Memory could not be mapped: as a full budget, retry later.
fn no_memory(_: std::io::Error) -> DecodeError {
    DecodeError::Budget(crate::budget::Refused::Busy)
}

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

fn base64_decode(
    bytes: &[u8],
    limit: usize,
    allowance: &mut dyn Allowance,
) -> Result<Bytes, DecodeError> {
    // The cleaned copy, then what it decodes to.
    let most = bytes.len() / 4 * 3 + 3;
    allowance
        .take(BigBuf::resident_of(bytes.len(), bytes.len()) + BigBuf::resident_of(most, most))?;
    // Form decoding turns '+' into ' ': undo that, and drop line breaks.
    let mut cleaned = BigBuf::with_capacity(bytes.len()).map_err(no_memory)?;
    for piece in bytes.split(|b| matches!(b, b'\n' | b'\r' | b'\t')) {
        if piece.contains(&b' ') {
            let plus: Vec<u8> = piece
                .iter()
                .map(|&b| if b == b' ' { b'+' } else { b })
                .collect();
            cleaned.extend_from_slice(&plus);
        } else {
            cleaned.extend_from_slice(piece);
        }
    }
    let cleaned = cleaned.as_slice();
    if cleaned.len() / 4 * 3 > limit + 3 {
        return Err(DecodeError::TooLarge { limit });
    }
    let url_safe = cleaned.iter().any(|b| matches!(b, b'-' | b'_'));
    let engine = if url_safe {
        &URL_SAFE_LENIENT
    } else {
        &STANDARD_LENIENT
    };
    let mut decoded = BigBuf::with_capacity(most).map_err(no_memory)?;
    decoded
        .fill(most, |room| {
            engine
                .decode_slice(cleaned, room)
                .or_else(|_| general_purpose::STANDARD.decode_slice(cleaned, room))
        })
        .map_err(|e| DecodeError::Base64(format!("body is neither JSON, gzip nor base64 ({e})")))?;
    if decoded.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(decoded.freeze())
}

/// Checks decoded JSON text without building a tree: UTF-8, syntax,
/// integers within 64 bits, nesting within [`MAX_DEPTH`].
pub fn checked_json(bytes: &[u8]) -> Result<&str, DecodeError> {
    let text = utf8(bytes)?;
    checked_value(text)?;
    Ok(text)
}

/// The bytes as text, or where they stop being UTF-8.
pub fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|e| DecodeError::Utf8 {
        offset: e.valid_up_to(),
    })
}

/// Checks JSON text as [`checked_json`] does, and returns it as one raw
/// value: the one parse that checks its syntax is also the start of its
/// outline (`crate::outline::outline_of`).
pub fn checked_value(text: &str) -> Result<&RawValue, DecodeError> {
    let found = scan(text.as_bytes());
    // Depth first: the syntax check keeps a byte per open level.
    if let Some(offset) = found.too_deep {
        return Err(DecodeError::TooDeep { offset });
    }
    let value: &RawValue =
        serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
    // Valid JSON: now no integer may be rounded into a float.
    match found.oversized_integer {
        Some(offset) => Err(DecodeError::IntegerTooLarge { offset }),
        None => Ok(value),
    }
}

/// What one pass over JSON text finds outside its strings.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    /// Where the text opens its `MAX_DEPTH + 1`th level (the scan stops
    /// there).
    too_deep: Option<usize>,
    /// Where the first integer literal (no fraction, no exponent) that fits
    /// neither `i64` nor `u64` starts: serde would keep it as the nearest
    /// `f64`, losing digits.
    oversized_integer: Option<usize>,
}

/// Scans JSON text once, outside its strings (skipped to their next quote
/// or backslash at a time), for nesting and integer literals.
fn scan(json: &[u8]) -> Scan {
    let mut found = Scan::default();
    let mut depth = 0usize;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                // To the closing quote, past escaped characters; an
                // unclosed string runs to the end.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &json[i..]) {
                        None => return found,
                        Some(at) if json[i + at] == b'"' => {
                            i += at + 1;
                            break;
                        }
                        Some(at) => i = (i + at + 2).min(json.len()),
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    found.too_deep = Some(i);
                    return found;
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len()
                    && matches!(json[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                if found.oversized_integer.is_none() && !fits_64_bits(&json[start..i]) {
                    found.oversized_integer = Some(start);
                }
            }
            _ => i += 1,
        }
    }
    found
}

/// Whether a number literal is a fraction, has an exponent, or is an
/// integer within `i64` or `u64`.
fn fits_64_bits(literal: &[u8]) -> bool {
    if literal.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
        return true;
    }
    let text = std::str::from_utf8(literal).unwrap_or("");
    text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok()
}

/// The offset of the first integer literal of a JSON text that fits
/// neither `i64` nor `u64`, outside strings.
pub fn oversized_integer(json: &[u8]) -> Option<usize> {
    scan(json).oversized_integer
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use proptest::prelude::*;
    use serde_json::json;
    use std::io::Write;

    const LIMIT: usize = 1024 * 1024;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        general_purpose::STANDARD.encode(bytes)
    }

    fn payload() -> Value {
        json!({"api_key": "phc_x", "event": "$pageview", "distinct_id": "u+1/2", "properties": {"a": "é"}})
    }

    fn plain() -> BodyHints {
        BodyHints::default()
    }

    #[test]
    fn plain_json_object_and_array() {
        let body = payload().to_string();
        assert_eq!(
            decode_body(body.as_bytes(), &plain(), LIMIT).unwrap(),
            payload()
        );
        let arr = json!([payload(), payload()]).to_string();
        assert_eq!(
            decode_body(format!("  \n{arr}").as_bytes(), &plain(), LIMIT).unwrap(),
            json!([payload(), payload()])
        );
    }

    #[test]
    fn gzip_is_recognised_by_magic_with_or_without_the_hint() {
        let body = gzip(payload().to_string().as_bytes());
        assert_eq!(decode_body(&body, &plain(), LIMIT).unwrap(), payload());
        // With ?compression=gzip-js or without: the bytes say gzip.
        assert_eq!(decode_body(&body, &plain(), LIMIT).unwrap(), payload());
    }

    #[test]
    fn a_form_of_base64_json_decodes_whatever_compression_it_claims() {
        // posthog-js 1.78: ?compression=gzip-js, a form `data=` of base64
        // JSON (not gzip); the hint is not read.
        let form = BodyHints { form: true };
        let body = format!(
            "data={}",
            form_urlencoded::byte_serialize(b64(payload().to_string().as_bytes()).as_bytes())
                .collect::<String>()
        );
        assert_eq!(
            decode_body(body.as_bytes(), &form, LIMIT).unwrap(),
            payload()
        );
    }

    #[test]
    fn truncated_gzip_is_refused() {
        let body = gzip(payload().to_string().as_bytes());
        let err = decode_body(&body[..body.len() - 6], &plain(), LIMIT).unwrap_err();
        assert_eq!(err.kind(), "invalid_gzip");
    }

    #[test]
    fn base64_bodies_standard_and_url_safe() {
        let text = payload().to_string();
        assert_eq!(
            decode_body(b64(text.as_bytes()).as_bytes(), &plain(), LIMIT).unwrap(),
            payload()
        );
        let url = general_purpose::URL_SAFE_NO_PAD.encode(text.as_bytes());
        assert_eq!(
            decode_body(url.as_bytes(), &plain(), LIMIT).unwrap(),
            payload()
        );
        let gz = b64(&gzip(text.as_bytes()));
        assert_eq!(
            decode_body(gz.as_bytes(), &plain(), LIMIT).unwrap(),
            payload()
        );
    }

    #[test]
    fn form_encoded_data_in_every_inner_encoding() {
        let text = payload().to_string();
        let form = |data: &str, extra: &str| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            s.append_pair("data", data);
            if !extra.is_empty() {
                s.append_pair("compression", extra);
            }
            s.finish()
        };
        let hints = BodyHints { form: true };
        // base64 inside a form (posthog-js `compression=base64`)
        assert_eq!(
            decode_body(
                form(&b64(text.as_bytes()), "base64").as_bytes(),
                &hints,
                LIMIT
            )
            .unwrap(),
            payload()
        );
        // URL-encoded JSON (old SDKs), recognised by `data=` even without the header
        assert_eq!(
            decode_body(form(&text, "").as_bytes(), &plain(), LIMIT).unwrap(),
            payload()
        );
        // A raw '+' from a form turned into ' ' is repaired.
        let raw = format!("data={}", b64(text.as_bytes()));
        assert_eq!(
            decode_body(raw.as_bytes(), &hints, LIMIT).unwrap(),
            payload()
        );
    }

    #[test]
    fn json_and_gzip_under_a_form_content_type_are_still_recognised() {
        let hints = BodyHints { form: true };
        let text = payload().to_string();
        assert_eq!(
            decode_body(text.as_bytes(), &hints, LIMIT).unwrap(),
            payload()
        );
        assert_eq!(
            decode_body(&gzip(text.as_bytes()), &hints, LIMIT).unwrap(),
            payload()
        );
        // fields in any order
        let form = format!(
            "compression=base64&data={}",
            b64(text.as_bytes())
                .replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D")
        );
        assert_eq!(
            decode_body(form.as_bytes(), &plain(), LIMIT).unwrap(),
            payload()
        );
    }

    #[test]
    fn form_without_data_is_refused() {
        let hints = BodyHints { form: true };
        assert_eq!(
            decode_body(b"x=1", &hints, LIMIT).unwrap_err(),
            DecodeError::Form("no `data` field".into())
        );
        assert_eq!(
            decode_body(b"data=", &hints, LIMIT).unwrap_err().kind(),
            "invalid_form"
        );
    }

    #[test]
    fn query_data_is_decoded_like_a_form_field() {
        let text = payload().to_string();
        assert_eq!(
            decode_query_data(&b64(text.as_bytes()), LIMIT).unwrap(),
            payload()
        );
        assert_eq!(
            decode_query_data(" ", LIMIT).unwrap_err(),
            DecodeError::Empty
        );
    }

    #[test]
    fn gzip_bombs_stop_at_the_limit() {
        let bomb = gzip(&vec![b' '; 10 * LIMIT]);
        assert!(bomb.len() < LIMIT / 10, "bomb is {} bytes", bomb.len());
        assert_eq!(
            decode_body(&bomb, &plain(), LIMIT).unwrap_err(),
            DecodeError::TooLarge { limit: LIMIT }
        );
        // Exactly at the limit is fine (and then fails as JSON, not as size).
        let at = gzip(&[b' '; 100]);
        assert_eq!(
            decode_body(&at, &plain(), 100).unwrap_err().kind(),
            "malformed_json"
        );
    }

    #[test]
    fn oversized_raw_and_base64_bodies_are_refused() {
        let big = vec![b'{'; 2000];
        assert_eq!(
            decode_body(&big, &plain(), 1000).unwrap_err(),
            DecodeError::TooLarge { limit: 1000 }
        );
        let b = b64(&vec![b'x'; 900]);
        assert_eq!(
            decode_body(b.as_bytes(), &plain(), 1000).unwrap_err(),
            DecodeError::TooLarge { limit: 1000 }
        );
    }

    #[test]
    fn each_bad_input_class_has_its_kind() {
        assert_eq!(
            decode_body(b"", &plain(), LIMIT).unwrap_err(),
            DecodeError::Empty
        );
        assert_eq!(
            decode_body(b" \n", &plain(), LIMIT).unwrap_err(),
            DecodeError::Empty
        );
        assert_eq!(
            decode_body(b"{\"event\": ", &plain(), LIMIT)
                .unwrap_err()
                .kind(),
            "malformed_json"
        );
        assert_eq!(
            decode_body(b"not json!", &plain(), LIMIT)
                .unwrap_err()
                .kind(),
            "invalid_base64"
        );
        assert_eq!(
            decode_body(b"{\"event\": \"\xff\"}", &plain(), LIMIT).unwrap_err(),
            DecodeError::Utf8 { offset: 11 }
        );
    }

    #[test]
    fn malformed_json_message_says_where() {
        let err = decode_body(b"{\"a\": 1,}", &plain(), LIMIT).unwrap_err();
        assert!(err.to_string().contains("line 1 column"), "{err}");
    }

    #[test]
    fn integers_beyond_64_bits_are_found_outside_strings_only() {
        for ok in [
            r#"{"a": 18446744073709551615}"#,
            r#"{"a": -9223372036854775808}"#,
            r#"{"a": 1.5e300, "b": 123456789012345678901234567890.0}"#,
            r#"{"a": "123456789012345678901234567890"}"#,
            r#"{"a\"": "\"99999999999999999999999"}"#,
        ] {
            assert_eq!(oversized_integer(ok.as_bytes()), None, "{ok}");
        }
        assert_eq!(
            oversized_integer(br#"{"a": 18446744073709551616}"#),
            Some(6)
        );
        assert_eq!(oversized_integer(br#"[1, -9223372036854775809]"#), Some(4));
        let err = decode_body(br#"{"n": 99999999999999999999}"#, &plain(), LIMIT).unwrap_err();
        assert_eq!(err.kind(), "integer_too_large");
    }

    #[test]
    fn forms_and_queries_refuse_escapes_that_are_not_utf8() {
        assert_eq!(
            strict_pairs(b"data=caf%C3%A9+au+lait&x").unwrap(),
            [
                ("data".to_owned(), "caf\u{e9} au lait".to_owned()),
                ("x".to_owned(), String::new())
            ]
        );
        assert_eq!(
            strict_pairs(b"data=%FF").unwrap_err().kind(),
            "invalid_utf8"
        );
        let form = BodyHints { form: true };
        assert_eq!(
            decode_body(b"data=%7B%22e%22%3A%22%FF%22%7D", &form, LIMIT)
                .unwrap_err()
                .kind(),
            "invalid_utf8"
        );
    }

    mod fuzz {
        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), form in any::<bool>()) {
                let hints = BodyHints { form };
                let _ = decode_body(&body, &hints, 4096);
            }

            #[test]
            fn corrupted_gzip_never_panics(flip in 0usize..200, byte in any::<u8>()) {
                let mut body = gzip(payload().to_string().as_bytes());
                let i = flip % body.len();
                body[i] = byte;
                let _ = decode_body(&body, &plain(), 4096);
            }

            #[test]
            fn any_json_survives_every_encoding(s in "\\PC{0,64}") {
                let v = json!({"event": s, "distinct_id": "d"});
                let text = v.to_string();
                prop_assert_eq!(&decode_body(text.as_bytes(), &plain(), LIMIT).unwrap(), &v);
                prop_assert_eq!(&decode_body(&gzip(text.as_bytes()), &plain(), LIMIT).unwrap(), &v);
                prop_assert_eq!(&decode_body(b64(text.as_bytes()).as_bytes(), &plain(), LIMIT).unwrap(), &v);
            }
        }
    }

    /// The two scans [`scan`] replaced, byte by byte, as references.
    fn reference(json: &[u8]) -> Scan {
        let mut depth = 0usize;
        let (mut in_string, mut escaped) = (false, false);
        let mut too_deep = None;
        for (i, &b) in json.iter().enumerate() {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        too_deep = Some(i);
                        break;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        let mut oversized = None;
        let (mut i, mut in_string) = (0, false);
        while i < json.len() {
            let b = json[i];
            if in_string {
                match b {
                    b'\\' => i += 1,
                    b'"' => in_string = false,
                    _ => {}
                }
                i += 1;
                continue;
            }
            match b {
                b'"' => {
                    in_string = true;
                    i += 1;
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    while i < json.len()
                        && matches!(json[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    {
                        i += 1;
                    }
                    if !fits_64_bits(&json[start..i]) {
                        oversized = Some(start);
                        break;
                    }
                }
                _ => i += 1,
            }
        }
        match too_deep {
            // The one scan stops at the level too deep: integers past it
            // are not looked at.
            Some(at) => Scan {
                too_deep: Some(at),
                oversized_integer: oversized.filter(|o| *o < at),
            },
            None => Scan {
                too_deep: None,
                oversized_integer: oversized,
            },
        }
    }

    proptest! {
        #[test]
        fn one_scan_finds_what_the_two_found(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("\"".to_owned()), Just("\\".to_owned()), Just("[".to_owned()),
                    Just("{".to_owned()), Just("]".to_owned()), Just("}".to_owned()),
                    Just(",".to_owned()), Just(":".to_owned()), Just("-".to_owned()),
                    Just("1e5".to_owned()), Just("0.5".to_owned()),
                    Just("18446744073709551616".to_owned()),
                    Just("-9223372036854775809".to_owned()), "[0-9]{1,20}", "[a-z \"]{0,4}",
                    Just("[".repeat(MAX_DEPTH)),
                ],
                0..40,
            )
        ) {
            let text = parts.concat();
            prop_assert_eq!(scan(text.as_bytes()), reference(text.as_bytes()), "{}", text);
        }
    }
}
