//! The mock's text endpoints: the model list, deterministic embeddings (token-id input
//! included) and a moderation classifier with one trigger word per category.

use super::{Seen, error, knob};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use portcullis_core::tokens;
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn models() -> Json<Value> {
    let list: Vec<Value> = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small", "omni-moderation-latest"]
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1_700_000_000u64, "owned_by": "portcullis-mock"}))
        .collect();
    Json(json!({"object": "list", "data": list}))
}

/// A deterministic unit vector for `text`.
fn embed(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0f32; dims];
    for (i, b) in text.bytes().enumerate() {
        let h = (b as usize)
            .wrapping_mul(2_654_435_761)
            .wrapping_add(i * 40_503);
        v[h % dims] += if h & 1 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

pub async fn embeddings(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("invalid JSON: {e}")),
    };
    seen.push("/v1/embeddings", &headers, raw.clone());
    let inputs: Vec<String> = match &raw["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        _ => return error(400, "'input' must be a string or an array"),
    };
    let dims = raw["dimensions"].as_u64().unwrap_or(16).clamp(1, 3072) as usize;
    let base64 = raw["encoding_format"].as_str() == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = embed(t, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(b64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens: usize = inputs
        .iter()
        .map(|t| tokens::Encoding::Cl100k.count(t))
        .sum();
    Json(
        json!({"object": "list", "data": data, "model": raw["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
    .into_response()
}

/// Standard base64 with padding (what the SDKs decode embeddings with).
fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= c.len() {
                out.push(A[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The categories OpenAI's moderation endpoint reports.
pub const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// The mock's moderation: a fixed trigger word per category, so tests know what is flagged.
fn moderate(text: &str) -> Value {
    let lower = text.to_lowercase();
    let triggers = [
        ("violence", "mock_violence"),
        ("harassment", "mock_harassment"),
        ("hate", "mock_hate"),
        ("self-harm", "mock_self_harm"),
        ("sexual", "mock_sexual"),
        ("illicit", "mock_illicit"),
    ];
    let mut categories = serde_json::Map::new();
    let mut scores = serde_json::Map::new();
    let mut flagged = false;
    for c in CATEGORIES {
        let hit = triggers
            .iter()
            .any(|(cat, word)| *cat == c && lower.contains(word));
        flagged |= hit;
        categories.insert(c.into(), Value::Bool(hit));
        scores.insert(c.into(), json!(if hit { 0.97 } else { 0.001 }));
    }
    json!({"flagged": flagged, "categories": categories, "category_scores": scores})
}

pub async fn moderations(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("invalid JSON: {e}")),
    };
    seen.push("/v1/moderations", &headers, raw.clone());
    if let Some(status) = raw["model"].as_str().and_then(|m| knob(m, "mock-error-")) {
        return error(status as u16, "the mock upstream was asked to fail");
    }
    let inputs: Vec<String> = match &raw["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other["text"].as_str().unwrap_or("").to_owned(),
            })
            .collect(),
        _ => return error(400, "'input' must be a string or an array"),
    };
    let results: Vec<Value> = inputs.iter().map(|t| moderate(t)).collect();
    Json(json!({"id": "modr-mock", "model": raw["model"].as_str().unwrap_or("omni-moderation-latest"),
                "results": results}))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn moderation_flags_only_its_triggers() {
        assert_eq!(
            moderate("a MOCK_VIOLENCE text")["categories"]["violence"],
            json!(true)
        );
        assert_eq!(moderate("a calm text")["flagged"], json!(false));
    }
}
