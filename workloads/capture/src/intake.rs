//! From a request's bytes to Kafka records, holding every buffer against
//! the byte budget: the body read with a limit and a deadline, decoded
//! ([`Input::text`]), checked and outlined in one parse ([`decoded`]), and
//! its events normalised and serialised one at a time ([`records`]). Heavy
//! work runs off the async workers ([`off_the_runtime`]).

use std::ops::Range;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

use crate::bigbuf::BigBuf;
use crate::budget::{Charge, Refused};
use crate::decode::{
    BodyHints, DecodeError, Text, checked_value, decode_query_text, decode_text, utf8,
};
use crate::error::ApiError;
use crate::normalize::{Context, Normalizer, PayloadError};
use crate::outline::{outline_of, request_key};
use crate::sink::Record;
use crate::state::AppState;
use crate::tree_cost;

/// What a request carries, owned: its body, or its `data` parameter.
pub struct Input {
    raw: Bytes,
    from_query: bool,
    hints: BodyHints,
}

impl Input {
    /// A GET's `data` parameter.
    pub fn query(data: &str) -> Self {
        Self {
            raw: Bytes::copy_from_slice(data.as_bytes()),
            from_query: true,
            hints: BodyHints::default(),
        }
    }

    /// A body, read in full.
    pub fn body(raw: Bytes, headers: &HeaderMap) -> Self {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        Self {
            raw,
            from_query: false,
            hints: BodyHints { form },
        }
    }

    /// The decoded JSON text, not yet checked (`limit` bytes at most).
    fn text(&self, limit: usize, charge: &mut Charge) -> Result<Bytes, ApiError> {
        let text = if self.from_query {
            decode_query_text(&self.raw, limit, charge)
        } else {
            decode_text(&self.raw, &self.hints, limit, charge)
        }
        .map_err(ApiError::Decode)?;
        Ok(match text {
            Text::Borrowed(b) => self.raw.slice_ref(b),
            Text::Owned(b) => b,
        })
    }
}

/// Text longer than this takes long enough to check and normalise that
/// the work leaves the async workers ([`off_the_runtime`]).
const HEAVY_TEXT_BYTES: usize = 64 * 1024;

/// Where `inner`, a slice of `outer`, lies in it.
fn span(outer: &str, inner: &str) -> Result<Range<usize>, ApiError> {
    let start = (inner.as_ptr() as usize)
        .checked_sub(outer.as_ptr() as usize)
        .filter(|start| start + inner.len() <= outer.len())
        .ok_or_else(|| ApiError::Internal("an outline left its text".into()))?;
    Ok(start..start + inner.len())
}

/// A request's payload decoded and checked.
pub struct Decoded {
    /// The JSON text.
    pub text: Bytes,
    /// Where each event's text lies in it (what [`outline_of`] found,
    /// kept as offsets: an outline borrows its text and cannot travel with
    /// it).
    pub events: Vec<Range<usize>>,
    /// Where the batch's `sent_at` lies in it.
    pub sent_at: Option<Range<usize>>,
    /// The key its events name, if any.
    pub key: Option<String>,
}

/// Decodes, checks and outlines the request: the text, its number of
/// events and the key they name. Light work (a short body that inflates
/// to little) runs here, heavy work off the runtime. Base64 or a gzip
/// trailer may hide how much a short body inflates to: those are tried
/// light, with a light limit, and decoded again heavy past it.
pub async fn decoded(
    state: &AppState,
    input: Input,
    limit: usize,
    charge: &mut Charge,
) -> Result<Decoded, ApiError> {
    let max_events = state.max_events_per_request;
    let light = input.raw.len() <= HEAVY_TEXT_BYTES
        && crate::decode::stated_gzip_size(&input.raw).unwrap_or(0) <= HEAVY_TEXT_BYTES;
    if light {
        match first_stage(&input, limit.min(HEAVY_TEXT_BYTES), max_events, charge) {
            Err(ApiError::Decode(DecodeError::TooLarge { .. })) if limit > HEAVY_TEXT_BYTES => {}
            done => return done,
        }
    }
    off_the_runtime(state, charge, move |charge| {
        first_stage(&input, limit, max_events, charge)
    })
    .await
}

fn first_stage(
    input: &Input,
    limit: usize,
    max_events: usize,
    charge: &mut Charge,
) -> Result<Decoded, ApiError> {
    let text = input.text(limit, charge)?;
    let json = utf8(&text).map_err(ApiError::Decode)?;
    // One parse checks the syntax and finds the events.
    let whole = checked_value(json).map_err(ApiError::Decode)?;
    let outline = outline_of(whole, max_events).map_err(ApiError::Payload)?;
    let key = request_key(&outline).map_err(ApiError::Payload)?;
    charge
        .take(outline.events.len() * std::mem::size_of::<Range<usize>>())
        .map_err(ApiError::Budget)?;
    let events = outline
        .events
        .iter()
        .map(|raw| span(json, raw.get()))
        .collect::<Result<_, _>>()?;
    let sent_at = outline
        .sent_at
        .map(|raw| span(json, raw.get()))
        .transpose()?;
    Ok(Decoded {
        events,
        sent_at,
        key,
        text,
    })
}

/// The request's events normalised and serialised for Kafka, off the
/// runtime if the text is heavy.
pub async fn normalised(
    state: &Arc<AppState>,
    decoded: Decoded,
    ctx: Context,
    charge: &mut Charge,
) -> Result<Vec<Record>, ApiError> {
    let heavy = decoded.text.len() > HEAVY_TEXT_BYTES;
    let normalise = {
        let state = Arc::clone(state);
        move |charge: &mut Charge| records(&state, &decoded, &ctx, charge)
    };
    if heavy {
        off_the_runtime(state, charge, normalise).await
    } else {
        normalise(charge)
    }
}

/// How long a request waits for a place for heavy work before it is told
/// to come back (503): a flood of heavy requests cannot queue without end.
const HEAVY_PLACE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs heavy work (decoding, checking, normalising a large payload) on a
/// blocking thread, holding one of [`AppState::heavy`]'s places: the async
/// workers go on serving other requests, small ordinary batches among
/// them, and heavy work never runs on more threads than there are cores.
/// (`block_in_place` was tried first: every call moved a worker to a new
/// thread, dozens of threads each kept allocator caches of their own, and
/// capture stayed resident at three times its byte budget.) The request's
/// charge goes with the work and comes back; if the request is dropped
/// meanwhile, the charge is given back when the work ends.
async fn off_the_runtime<R: Send + 'static>(
    state: &AppState,
    charge: &mut Charge,
    work: impl FnOnce(&mut Charge) -> Result<R, ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    let _place = match tokio::time::timeout(HEAVY_PLACE_WAIT, state.heavy.acquire()).await {
        Ok(Ok(place)) => place,
        _ => return Err(ApiError::Budget(Refused::Busy)),
    };
    let mut moved = std::mem::replace(charge, state.budget.charge());
    let (result, moved) = tokio::task::spawn_blocking(move || {
        let result = work(&mut moved);
        (result, moved)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    *charge = moved;
    result
}

/// Normalises the request's events one at a time and serialises each for
/// Kafka: one event's tree is in memory at once (its worst case taken from
/// the budget while it lives), and the records are charged until the
/// request ends.
fn records(
    state: &AppState,
    decoded: &Decoded,
    ctx: &Context,
    charge: &mut Charge,
) -> Result<Vec<Record>, ApiError> {
    let limit = state.max_message_bytes;
    let json = utf8(&decoded.text).map_err(ApiError::Decode)?;
    let slice = |range: &Range<usize>| {
        json.get(range.clone())
            .ok_or_else(|| ApiError::Internal("an event outside its text".into()))
    };
    let sent_at = decoded.sent_at.as_ref().map(slice).transpose()?;
    let mut normalizer = Normalizer::from_raw(sent_at, ctx).map_err(ApiError::Payload)?;
    let mut records = Vec::with_capacity(decoded.events.len());
    charge
        .take(decoded.events.len() * std::mem::size_of::<Record>())
        .map_err(ApiError::Budget)?;
    for (index, range) in decoded.events.iter().enumerate() {
        let raw = slice(range)?;
        let size = raw.len();
        if size > limit {
            return Err(ApiError::Payload(PayloadError::EventTooLarge {
                index,
                size,
                limit,
            }));
        }
        let tree = tree_cost::tree_bytes(raw.as_bytes());
        charge.take(tree).map_err(ApiError::Budget)?;
        let parsed = serde_json::from_str(raw).map_err(|e| {
            ApiError::Payload(PayloadError::Field {
                index,
                field: "event",
                problem: format!("is not a JSON object ({e})"),
            })
        });
        let record = parsed
            .and_then(|obj| normalizer.event(obj, index).map_err(ApiError::Payload))
            .and_then(|event| Record::of(&event, index, limit).map_err(ApiError::Produce));
        charge.give_back(tree);
        let record = record?;
        charge
            .take(record.payload.len() + record.key.len())
            .map_err(ApiError::Budget)?;
        records.push(record);
    }
    Ok(records)
}

/// Memory for a body could not be mapped: as a full budget, retry later.
fn no_memory(e: std::io::Error) -> DecodeError {
    tracing::warn!(error = %e, "could not map memory for a request body");
    DecodeError::Budget(Refused::Busy)
}

/// Reads the body, refusing it (413) past `limit` bytes without buffering
/// more, and taking each piece from the byte budget as it arrives.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    charge: &mut Charge,
) -> Result<Bytes, DecodeError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(DecodeError::TooLarge { limit });
    }
    let unreadable =
        |e: axum::Error| DecodeError::Form(format!("could not read the request body: {e}"));
    // Each piece is copied out at once: a piece is a slice of hyper's read
    // buffer and would keep all of it alive (a trickling client's 1 KiB
    // pieces each held an 8 KiB buffer). With a declared length the buffer
    // is made once at that size; a large one is mapped on its own
    // ([`BigBuf`]) and charged as it fills, its pages resident only as they
    // are written and given back to the system when it is dropped. Without
    // a length it grows by doubling, each growth charged before it is made.
    let mut body = body;
    let mut buf = BigBuf::with_capacity(declared.unwrap_or(0)).map_err(no_memory)?;
    let mut charged = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(unreadable)?.into_data() else {
            continue;
        };
        let needed = buf.len() + data.len();
        if needed > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        if needed > buf.capacity() {
            let grown = needed.max(buf.capacity() * 2).max(8 * 1024).min(limit);
            let resident = BigBuf::resident_of(grown, buf.len());
            charge.take(resident)?;
            buf = buf.grown(grown).map_err(no_memory)?;
            charge.give_back(charged);
            charged = resident;
        }
        let resident = buf.resident_with(data.len());
        if resident > charged {
            charge.take(resident - charged)?;
            charged = resident;
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}
