//! What each fuzz target checks, as plain functions: the binaries in `fuzz_targets/` hand
//! them libFuzzer's inputs. Each function panics — which libFuzzer reports as a crash, with the
//! input saved — when the code under test panics or breaks a property stated below; libFuzzer's
//! `-timeout` and `-rss_limit_mb` catch unbounded time and memory.

use portcullis_core::ChatRequest;
use portcullis_core::text::normalize as core_normalize;
use portcullis_core::tokens::{self, Encoding};

/// The gateway's SSE splitter, compiled from its own source file: it needs only `bytes` and
/// `thiserror`, so the fuzz build does not carry the whole gateway.
#[path = "../../crates/portcullis/src/upstream/sse.rs"]
pub mod sse;

/// Inputs are bytes; the text detectors get them as the gateway would after `from_utf8`, with
/// invalid sequences replaced so that every input reaches them.
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// A chat request body, parsed as the gateway parses it (serde with the failing path named),
/// then everything the gateway computes from it before the upstream call: the prompt's token
/// count, the output ceiling, every governed parameter, and the body re-serialised for the
/// upstream — which must parse back to the same request.
pub fn chat_request(data: &[u8]) {
    let de = &mut serde_json::Deserializer::from_slice(data);
    let req: ChatRequest = match serde_path_to_error::deserialize(de) {
        Ok(r) => r,
        Err(e) => {
            let _ = e.path().to_string();
            let _ = e.into_inner().to_string();
            return;
        }
    };
    let _ = tokens::count_prompt(&req);
    let _ = req.max_output_tokens();
    let _ = req.is_stream();
    for name in [
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "tools",
        "tool_choice",
        "response_format",
        "user",
        "seed",
    ] {
        let _ = req.param(name);
    }
    let _ = Encoding::for_model(&req.model);
    let sent = serde_json::to_vec(&req).expect("a parsed request serialises");
    let again: ChatRequest =
        serde_json::from_slice(&sent).expect("what the gateway sends upstream parses");
    let (a, b) = (
        serde_json::to_value(&again).expect("serialises"),
        serde_json::to_value(&req).expect("serialises"),
    );
    assert!(
        same(&a, &b),
        "the request sent upstream is not the request received:\n{a}\n{b}"
    );
}

/// Equal JSON, except that floats may differ in their last bits: serde_json's default float
/// parser is not correctly rounded, so it can read its own output back a unit or two off
/// (`fuzz/corpus/chat_request/float_reparse`: -2.3333333333333335e73 comes back as
/// ...338e73). Its `float_roundtrip` feature would make this exact.
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::{Array, Number, Object};
    match (a, b) {
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Object(x), Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The SSE splitter over an upstream's bytes, cut into chunks as TCP might cut them (the first
/// input byte seeds the cut points). Properties: the events and the remainder do not depend on
/// where the chunks were cut; no event contains a CR; `data_of` never panics.
pub fn sse(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut whole = sse::EventSplitter::default();
    let Ok(mut expected) = whole.push(stream) else {
        return; // an oversized event: the gateway ends the stream
    };
    expected.extend(whole.finish());

    let mut cut = sse::EventSplitter::default();
    let mut got = Vec::new();
    let mut rest = stream;
    let mut step = u64::from(seed) | 1;
    while !rest.is_empty() {
        step = step
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = ((step >> 33) as usize % 7).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        // Empty chunks happen too (a body frame with no bytes).
        match cut.push(chunk) {
            Ok(evs) => got.extend(evs),
            Err(_) => return,
        }
        rest = tail;
    }
    got.extend(cut.finish());
    assert_eq!(got, expected, "events depend on how the bytes were chunked");
    for ev in &got {
        assert!(!ev.contains(&b'\r'), "a CR survived normalisation");
        let _ = sse::data_of(ev);
    }
}

/// The shared text normaliser (offset map included), the injection detector's folding and
/// payload decoding, and the tokenizer's encode/decode round trip.
pub fn normalize(data: &[u8]) {
    let s = text(data);
    let n = core_normalize(&s);
    let len = n.text.len();
    // Map every normalised range that starts and ends on character boundaries back: the
    // original range must lie inside the original text, on its character boundaries.
    let bounds: Vec<usize> = n
        .text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(len))
        .collect();
    let step = (bounds.len() / 16).max(1);
    for a in bounds.iter().step_by(step) {
        for b in bounds.iter().filter(|b| *b >= a).step_by(step) {
            let o = n.original_range(*a..*b);
            assert!(
                o.start <= o.end && o.end <= s.len(),
                "{o:?} outside the text"
            );
            assert!(
                s.is_char_boundary(o.start) && s.is_char_boundary(o.end),
                "{o:?} splits a character"
            );
            let _ = n.range_was_altered(*a..*b, &s);
        }
    }

    let folded = portcullis_injection::normalize::fold(&s);
    let _ = portcullis_injection::normalize::rot13(&folded);
    let _ = portcullis_injection::normalize::reversed(&folded);
    let readings = portcullis_injection::normalize::readings(&s, 3);
    assert!(readings.len() <= 12, "readings are bounded");

    for enc in [Encoding::O200k, Encoding::Cl100k] {
        let ids = enc.encode(&s);
        assert_eq!(
            enc.decode(&ids).as_deref(),
            Some(&*s),
            "decode(encode(s)) == s"
        );
        // Arbitrary ids, as an embeddings client may send them: refused or decoded, no panic.
        let raw: Vec<u32> = data
            .chunks(4)
            .map(|c| c.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)))
            .collect();
        let _ = enc.decode(&raw);
    }
}

/// PII: findings lie inside the text, on character boundaries, in order, without overlap,
/// with scores in [0, 1].
pub fn pii(data: &[u8]) {
    let s = text(data);
    let found = portcullis_pii::scan(&s, &portcullis_pii::ScanOptions::default());
    let mut end = 0;
    for d in &found {
        let r = &d.span;
        assert!(
            r.start <= r.end && r.end <= s.len(),
            "{r:?} outside the text"
        );
        assert!(
            s.is_char_boundary(r.start) && s.is_char_boundary(r.end),
            "{r:?} splits a character"
        );
        assert!(
            r.start >= end,
            "findings overlap or are out of order: {found:?}"
        );
        assert!(
            (0.0..=1.0).contains(&d.score),
            "score {} outside [0, 1]",
            d.score
        );
        end = r.end;
    }
}

/// Injection: message and document scores are probabilities.
pub fn injection(data: &[u8]) {
    let s = text(data);
    let d = portcullis_injection::Detector::builtin();
    for score in [d.score(&s), d.score_document(&s)] {
        assert!(
            (0.0..=1.0).contains(&score.value),
            "score {} outside [0, 1]",
            score.value
        );
    }
}

/// Moderation: the local classifier's scores are probabilities.
pub fn moderation(data: &[u8]) {
    let s = text(data);
    let scores = portcullis_moderation::classifier::Model::builtin().score(&s);
    assert!(
        (0.0..=1.0).contains(&scores.flagged),
        "flagged {} outside [0, 1]",
        scores.flagged
    );
    for (name, v) in &scores.categories {
        assert!((0.0..=1.0).contains(v), "{name} {v} outside [0, 1]");
    }
}
