//! The audit trail of one request: what is known about it, filled in along the path, and the
//! record it becomes when the request ends (see [`crate::lifecycle`]).

use crate::audit_text::TextCopy;
use crate::auth::Caller;
use portcullis_core::{ChatRequest, Context, Message, Outcome, Principal, Usage};
use portcullis_store::audit::text_mac::canonical_input;
use portcullis_store::{AuditRecord, TextMac};
use serde_json::Value;
use std::time::Instant;

/// What is known about a request so far.
#[derive(Debug)]
pub struct Trail {
    pub request_id: String,
    pub route: &'static str,
    pub started: Instant,
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub team: Option<String>,
    pub model: Option<String>,
    pub stream: bool,
    pub upstream_ms: Option<u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost_micros: i64,
    /// The usage is the gateway's count, not the provider's report.
    pub usage_estimated: bool,
    /// The model the upstream said answered.
    pub model_served: Option<String>,
    /// A fresh MAC under the audit secret, to start the input's and the output's from (none
    /// without a secret: then the record carries no text MACs).
    mac: Option<TextMac>,
    input_hmac: Option<String>,
    /// The MAC of the answer text delivered so far (none until some answer was delivered).
    output: Option<TextMac>,
    /// A fresh copy to start the input's and the output's text from, when records keep text
    /// (`[audit] text = "redacted"`); redacted only when the record is built.
    copy: Option<TextCopy>,
    input_copy: Option<TextCopy>,
    output_copy: Option<TextCopy>,
}

/// How a request ended, as the audit record says it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// HTTP status sent (499 when the client hung up first).
    pub status: u16,
    /// `allowed`, `flagged`, `blocked`, `failed` or `client_closed`.
    pub outcome: &'static str,
    pub error_code: Option<String>,
}

impl Trail {
    /// A trail for a request that just arrived.
    pub fn new(request_id: String, route: &'static str) -> Self {
        Trail {
            request_id,
            route,
            started: Instant::now(),
            key_id: None,
            user: None,
            team: None,
            model: None,
            stream: false,
            upstream_ms: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cost_micros: 0,
            usage_estimated: false,
            model_served: None,
            mac: None,
            input_hmac: None,
            output: None,
            copy: None,
            input_copy: None,
            output_copy: None,
        }
    }

    /// Keeps a copy of the trail's texts for the record (`[audit] text`), or none.
    pub fn copied(mut self, copy: Option<TextCopy>) -> Self {
        self.copy = copy;
        self
    }

    /// Keys the trail's text MACs (the audit secret's, or none).
    pub fn keyed(mut self, mac: Option<TextMac>) -> Self {
        self.mac = mac;
        self
    }

    /// Records the text the client sent, in its canonical form.
    pub fn input_text(&mut self, canonical: &str) {
        self.input_hmac = self.mac.clone().map(|mut m| {
            m.update(canonical);
            m.hex()
        });
        self.input_copy = self.copy.clone().map(|mut c| {
            c.push(canonical);
            c
        });
    }

    /// Records a chat request's messages as the client sent them (see [`chat_input`]).
    pub fn chat_input(&mut self, req: &ChatRequest) {
        if self.mac.is_some() || self.copy.is_some() {
            self.input_text(&chat_input(req));
        }
    }

    /// Adds answer text that was delivered to the client.
    pub fn output_text(&mut self, text: &str) {
        if self.output.is_none() {
            self.output = self.mac.clone();
        }
        if let Some(m) = &mut self.output {
            m.update(text);
        }
        if self.output_copy.is_none() {
            self.output_copy = self.copy.clone();
        }
        if let Some(c) = &mut self.output_copy {
            c.push(text);
        }
    }

    /// Forgets the answer text: the client was gone before it could be delivered.
    pub fn undelivered(&mut self) {
        self.output = None;
        self.output_copy = None;
    }

    /// Records the model the upstream named (the first name it gave wins).
    pub fn served(&mut self, model: Option<&str>) {
        if self.model_served.is_none()
            && let Some(m) = model.filter(|m| !m.is_empty())
        {
            self.model_served = Some(m.chars().take(256).collect());
        }
    }

    /// Records a complete chat answer as delivered: the model that answered, and each
    /// choice's content in order.
    pub fn chat_answer(&mut self, answer: &Value) {
        self.served(answer["model"].as_str());
        self.output_text("");
        for c in answer["choices"].as_array().into_iter().flatten() {
            if let Some(t) = c["message"]["content"].as_str() {
                self.output_text(t);
            }
        }
    }

    /// Records who is calling.
    pub fn caller(&mut self, c: &Caller) {
        self.key_id = Some(c.key_id.clone());
        self.user = Some(c.user.clone());
        self.team = c.team.clone();
    }

    /// Records whom the request is charged to (the end user of a service key).
    pub fn principal(&mut self, p: &Principal) {
        self.user = Some(p.end_user.clone().unwrap_or_else(|| p.user.clone()));
    }

    /// Records the usage booked and its cost.
    pub fn usage(&mut self, u: &Usage, cost_micros: i64, estimated: bool) {
        self.prompt_tokens = u.prompt_tokens;
        self.completion_tokens = u.completion_tokens;
        self.cached_tokens = u.cached_tokens;
        self.cost_micros = cost_micros;
        self.usage_estimated = estimated;
    }

    /// Whether some guard flagged the request (or would have acted, in monitor mode).
    pub fn flagged(ctx: &Context) -> bool {
        ctx.outcomes().any(|o| {
            matches!(
                o,
                Outcome::Flag | Outcome::WouldBlock | Outcome::WouldTransform
            )
        })
    }

    /// The record to store (with `[audit] text = "redacted"`, the texts are scanned and
    /// redacted here, once, as the request ends).
    pub fn into_record(self, ctx: &Context, verdict: Verdict) -> AuditRecord {
        AuditRecord {
            request_id: self.request_id,
            time: portcullis_store::now_ms(),
            key_id: self.key_id,
            user: self.user,
            team: self.team,
            model: self.model,
            route: Some(self.route.to_owned()),
            status: i32::from(verdict.status),
            outcome: verdict.outcome.to_owned(),
            error_code: verdict.error_code,
            prompt_tokens: self.prompt_tokens as i64,
            completion_tokens: self.completion_tokens as i64,
            cached_tokens: self.cached_tokens as i64,
            cost_micros: self.cost_micros,
            latency_ms: self.started.elapsed().as_millis() as i64,
            upstream_ms: self.upstream_ms.map(|v| v as i64),
            stream: self.stream,
            verdicts: serde_json::to_value(&ctx.trace).unwrap_or_default(),
            usage_estimated: self.usage_estimated,
            model_served: self.model_served,
            input_hmac: self.input_hmac,
            output_hmac: self.output.map(|m| m.hex()),
            input_text: self.input_copy.map(|c| c.redacted()),
            output_text: self.output_copy.map(|c| c.redacted()),
            ..AuditRecord::default()
        }
    }
}

/// The canonical input of a chat request (see `portcullis_store::audit::text_mac`): each
/// message as the client sent it, then each retrieved document (the `portcullis.documents`
/// extension) under the role `document`.
pub fn chat_input(req: &ChatRequest) -> String {
    messages_input(&req.messages, &req.documents)
}

/// The canonical input of `messages` followed by `documents` (see [`chat_input`]).
pub fn messages_input(messages: &[Message], documents: &[String]) -> String {
    let texts: Vec<(String, String)> = messages
        .iter()
        .filter(|m| !m.document)
        .map(|m| {
            let role = serde_json::to_value(&m.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            (role, m.joined_text())
        })
        .chain(documents.iter().map(|d| ("document".into(), d.clone())))
        .collect();
    canonical_input(texts.iter().map(|(r, t)| (r.as_str(), t.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_store::ChainKey;

    fn trail(key: &ChainKey) -> Trail {
        Trail::new("r".into(), "chat").keyed(TextMac::new(key))
    }

    #[test]
    fn the_same_input_gets_the_same_mac_and_none_without_a_key() {
        let key = ChainKey::new(b"0123456789abcdef0123456789abcdef");
        let req: ChatRequest = serde_json::from_value(serde_json::json!({"model": "m",
            "messages": [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "there"}]}]}))
        .unwrap();
        assert_eq!(chat_input(&req), "system 8\nbe brief\nuser 8\nhi\nthere\n");
        let (mut a, mut b) = (trail(&key), trail(&key));
        a.chat_input(&req);
        b.chat_input(&req);
        let mac = a.input_hmac.clone().unwrap();
        assert_eq!(Some(mac.clone()), b.input_hmac, "same input, same MAC");
        assert_eq!(
            Some(mac),
            portcullis_store::audit::text_mac::mac_hex(&key, &chat_input(&req)),
            "a verifier with the key recomputes it from the text"
        );
        let mut none = trail(&ChainKey::none());
        none.chat_input(&req);
        none.chat_answer(&serde_json::json!({"model": "m-1", "choices": []}));
        let r = none.into_record(&Context::new("r", Principal::default()), verdict());
        assert_eq!(
            (r.input_hmac, r.output_hmac),
            (None, None),
            "no key, no MAC"
        );
        assert_eq!(r.model_served.as_deref(), Some("m-1"));
    }

    #[test]
    fn the_output_mac_covers_the_delivered_text_however_it_was_split() {
        let key = ChainKey::new(b"0123456789abcdef0123456789abcdef");
        let mut whole = trail(&key);
        whole.chat_answer(&serde_json::json!({"model": "m",
            "choices": [{"message": {"content": "Hello, world."}}]}));
        let mut streamed = trail(&key);
        for d in ["Hel", "lo, w", "", "orld."] {
            streamed.output_text(d);
        }
        let ctx = Context::new("r", Principal::default());
        let (w, s) = (
            whole.into_record(&ctx, verdict()),
            streamed.into_record(&ctx, verdict()),
        );
        assert_eq!(w.output_hmac, s.output_hmac);
        assert_eq!(
            w.output_hmac,
            portcullis_store::audit::text_mac::mac_hex(&key, "Hello, world.")
        );
        // Nothing delivered: no output MAC.
        let r = trail(&key).into_record(&ctx, verdict());
        assert_eq!(r.output_hmac, None);
    }

    #[test]
    fn texts_are_kept_redacted_only_when_policy_says_so() {
        let req: ChatRequest = serde_json::from_value(serde_json::json!({"model": "m",
            "messages": [{"role": "user", "content": "mail jane.doe@example.com"}]}))
        .unwrap();
        let answer = serde_json::json!({"model": "m",
            "choices": [{"message": {"content": "card 4111 1111 1111 1111 noted"}}]});
        let ctx = Context::new("r", Principal::default());
        // Policy "none" (no copy): no text, with or without a key.
        for key in [
            ChainKey::none(),
            ChainKey::new(b"0123456789abcdef0123456789abcdef"),
        ] {
            let mut t = trail(&key);
            t.chat_input(&req);
            t.chat_answer(&answer);
            let r = t.into_record(&ctx, verdict());
            assert_eq!((r.input_text, r.output_text), (None, None));
        }
        // Policy "redacted", even without a key: the canonical texts, findings replaced.
        let mut t = trail(&ChainKey::none()).copied(Some(TextCopy::new(1024)));
        t.chat_input(&req);
        t.chat_answer(&answer);
        let r = t.into_record(&ctx, verdict());
        assert_eq!(r.input_text.as_deref(), Some("user 25\nmail [EMAIL]\n"));
        assert_eq!(r.output_text.as_deref(), Some("card [CREDIT_CARD] noted"));
        // An answer the client never got is not kept.
        let mut t = trail(&ChainKey::none()).copied(Some(TextCopy::new(1024)));
        t.output_text("partial");
        t.undelivered();
        assert_eq!(t.into_record(&ctx, verdict()).output_text, None);
    }

    fn verdict() -> Verdict {
        Verdict {
            status: 200,
            outcome: "allowed",
            error_code: None,
        }
    }
}
