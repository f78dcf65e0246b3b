//! `POST /v1/embeddings` and `POST /v1/moderations`: text sent to the provider without a chat
//! around it. Nothing goes around the guards here either: the same door and audit record, the
//! same admission and books (embeddings are priced per input token), and the guards that
//! decide what text may leave for the provider ([`crate::guards::TEXT_GUARDS`]). Embedding
//! input sent as token ids (LangChain's default) is decoded with the model's tokenizer first,
//! so it is judged like text.

use crate::books::{Claim, Spend};
use crate::http::{WithHeaders, error_response};
use crate::lifecycle::{Ending, Exchange, Slot};
use crate::upstream::{self, pass_error};
use axum::Extension;
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use portcullis_core::{ApiError, ChatRequest, Message, Role, Usage, tokens};
use serde_json::Value;
use std::time::Instant;

/// Which endpoint a text request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Embeddings,
    Moderations,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Moderations => "/moderations",
        }
    }
}

/// `POST /v1/embeddings`.
pub async fn embeddings(Extension(slot): Extension<Slot>, body: Body) -> Response {
    serve(slot, body, Endpoint::Embeddings).await
}

/// `POST /v1/moderations`.
pub async fn moderations(Extension(slot): Extension<Slot>, body: Body) -> Response {
    serve(slot, body, Endpoint::Moderations).await
}

/// Where the texts of a request live, so edited texts can be written back in place.
#[derive(Debug, Clone, PartialEq)]
enum Place {
    /// `input` is one string.
    Whole,
    /// `input[i]` is a string.
    Item(usize),
    /// `input[i]` is token ids (or `input` itself is, with `i = None`).
    Ids(Option<usize>),
    /// `input[i].text` of a moderation content part.
    Part(usize),
}

/// The texts of a request's `input`, decoded, with their places.
fn texts_of(input: &Value, enc: tokens::Encoding) -> Result<Vec<(Place, String)>, ApiError> {
    let bad = |m: &str| ApiError::invalid_request(m.to_owned()).with_param("input");
    let ids = |v: &Value| -> Option<Vec<u32>> {
        v.as_array()?
            .iter()
            .map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect()
    };
    let decode = |ids: &[u32]| {
        enc.decode(ids)
            .ok_or_else(|| bad("'input' holds token ids this model's tokenizer does not know."))
    };
    match input {
        Value::String(s) => Ok(vec![(Place::Whole, s.clone())]),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_u64) => {
            let ids = ids(input).ok_or_else(|| bad("'input' token ids must be 32-bit."))?;
            Ok(vec![(Place::Ids(None), decode(&ids)?)])
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok((Place::Item(i), s.clone())),
                Value::Array(_) => {
                    let ids = ids(item).ok_or_else(|| bad("'input' token ids must be 32-bit."))?;
                    Ok((Place::Ids(Some(i)), decode(&ids)?))
                }
                Value::Object(o) => match o.get("text").and_then(Value::as_str) {
                    Some(t) => Ok((Place::Part(i), t.to_owned())),
                    // Image parts carry no text to judge; the provider gets them as sent.
                    None => Ok((Place::Part(i), String::new())),
                },
                _ => Err(bad(
                    "'input' items must be strings, token-id arrays or content parts.",
                )),
            })
            .collect(),
        _ => Err(bad("'input' must be a string or an array.")),
    }
}

/// Writes judged texts back; a text the guards left alone keeps its original form (token ids
/// stay token ids), an edited one is sent as text.
fn write_back(input: &mut Value, texts: &[(Place, String)], judged: &[String]) {
    for ((place, before), after) in texts.iter().zip(judged) {
        if before == after {
            continue;
        }
        match place {
            Place::Whole | Place::Ids(None) => *input = Value::String(after.clone()),
            Place::Item(i) | Place::Ids(Some(i)) => input[*i] = Value::String(after.clone()),
            Place::Part(i) => input[*i]["text"] = Value::String(after.clone()),
        }
    }
}

async fn serve(slot: Slot, body: Body, endpoint: Endpoint) -> Response {
    let Some(mut ex) = slot.take() else {
        return error_response(&ApiError::internal("The request lost its context."));
    };
    let app = ex.app().clone();
    let bytes = match super::read_body(&app, body).await {
        Ok(b) => b,
        Err(e) => return ex.refuse(e),
    };
    let mut raw: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return ex.refuse(ApiError::invalid_request(
                "We could not parse the JSON body of your request. Send a JSON object.",
            ));
        }
    };
    let model = match (raw["model"].as_str(), endpoint) {
        (Some(m), _) if !m.trim().is_empty() => m.to_owned(),
        (_, Endpoint::Moderations) => "omni-moderation-latest".to_owned(),
        _ => {
            return ex
                .refuse(ApiError::invalid_request("'model' is required.").with_param("model"));
        }
    };
    ex.trail.model = Some(model.clone());
    let Some(caller) = ex.authenticated().cloned() else {
        return ex.refuse(ApiError::internal("The request lost its caller."));
    };
    match caller.principal(raw["user"].as_str()) {
        Ok(p) => ex.principal(p),
        Err(e) => return ex.refuse(e),
    }
    let enc = tokens::Encoding::for_model(&model);
    let texts = match texts_of(&raw["input"], enc) {
        Ok(t) => t,
        Err(e) => return ex.refuse(e),
    };
    ex.trail
        .input_text(&portcullis_store::audit::text_mac::canonical_input(
            texts.iter().map(|(_, t)| ("input", t.as_str())),
        ));
    // The texts go through the guards as user messages of a request for this model.
    let req = ChatRequest {
        model: model.clone(),
        messages: texts
            .iter()
            .map(|(_, t)| Message::text(Role::User, t.clone()))
            .collect(),
        ..ChatRequest::default()
    };
    let s = &app.config.server;
    let (req, judged) = crate::guards::run_input(
        &app.text_pipeline,
        &app.heavy,
        s.offload_bytes,
        req,
        &mut ex.ctx,
    )
    .await;
    if let Err(e) = judged {
        return ex.refuse(e);
    }
    let judged: Vec<String> = req.messages.iter().map(Message::joined_text).collect();
    write_back(&mut raw["input"], &texts, &judged);
    let prompt = judged
        .iter()
        .fold(0u64, |n, t| n.saturating_add(enc.count(t) as u64));
    let claim = Claim {
        model: &model,
        request_id: &ex.trail.request_id.clone(),
        prompt_tokens: prompt,
        output_tokens: 0,
    };
    match app.books.admit(&caller, &ex.ctx.principal, claim).await {
        Ok(t) => ex.admitted(t),
        Err(r) => return ex.refuse(r.error).with_headers(r.headers),
    }
    let body = match serde_json::to_vec(&raw) {
        Ok(b) => b,
        Err(e) => return ex.fail(ApiError::internal(e.to_string())),
    };
    let sent = Instant::now();
    let resp = app
        .upstream
        .send(reqwest::Method::POST, endpoint.path(), Some(body))
        .await;
    ex.trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            ex.spent(Spend::of_failure(&e));
            return ex.fail(e);
        }
    };
    let status = resp.status();
    if !status.is_success() {
        let r = pass_error(resp).await.with_headers(ex.rate_headers());
        let code = r.status().as_u16();
        ex.finish(Ending::Answered(code));
        return r;
    }
    let answer = match upstream::read_limited(resp, app.config.upstream.max_answer_bytes).await {
        Ok(b) => b,
        Err(e) => {
            ex.spent(Spend::Unknown);
            return ex.fail(e);
        }
    };
    let parsed = serde_json::from_slice::<Value>(&answer).ok();
    ex.trail
        .served(parsed.as_ref().and_then(|v| v["model"].as_str()));
    let reported = parsed.as_ref().and_then(Usage::from_json);
    ex.spent(match reported {
        Some(u) => Spend::Reported(u),
        None => Spend::Estimated(Usage {
            prompt_tokens: prompt,
            total_tokens: prompt,
            ..Usage::default()
        }),
    });
    let mut r = Response::new(Body::from(answer));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let r = r.with_headers(ex.rate_headers());
    finish(ex, r)
}

fn finish(ex: Exchange, r: Response) -> Response {
    ex.finish(Ending::Answered(200));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_input_shape_yields_its_texts_and_edits_go_back_in_place() {
        let enc = tokens::Encoding::Cl100k;
        let ids = enc.encode("call me at 555");
        let mut input = json!(["plain", ids.clone(), {"type": "text", "text": "part"}]);
        let texts = texts_of(&input, enc).unwrap();
        assert_eq!(texts[0], (Place::Item(0), "plain".into()));
        assert_eq!(texts[1], (Place::Ids(Some(1)), "call me at 555".into()));
        assert_eq!(texts[2], (Place::Part(2), "part".into()));
        let judged = vec!["plain".into(), "call me at [PHONE_1]".into(), "part".into()];
        write_back(&mut input, &texts, &judged);
        assert_eq!(input[0], "plain");
        assert_eq!(
            input[1], "call me at [PHONE_1]",
            "an edited text goes as text"
        );
        assert_eq!(input[2]["text"], "part");
        let whole = json!(ids);
        let texts = texts_of(&whole, enc).unwrap();
        assert_eq!(texts, vec![(Place::Ids(None), "call me at 555".into())]);
        assert!(texts_of(&json!(5), enc).is_err());
        assert!(texts_of(&json!([[u64::MAX]]), enc).is_err());
        assert!(
            texts_of(&json!([99_999_999]), enc).is_err(),
            "unknown ids are refused"
        );
    }
}
