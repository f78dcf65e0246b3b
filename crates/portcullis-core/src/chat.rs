//! The OpenAI chat-completions request, typed where the gateway needs to look and
//! pass-through (`extra`) everywhere else, so unknown fields reach the provider untouched.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A `POST /v1/chat/completions` body; fields the gateway governs are typed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Everything else, forwarded as the client sent it.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Retrieved documents as the client sent them (the `portcullis` extension), before any
    /// guard edited their messages: what the groundedness check compares answers with.
    #[serde(skip)]
    pub documents: Vec<String>,
}

impl ChatRequest {
    /// Whether the client asked for server-sent events.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// The output-token ceiling the client asked for, whichever of the two names it used.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// A top-level parameter as JSON (`None` when absent), whichever field holds it.
    pub fn param(&self, name: &str) -> Option<Value> {
        let v = match name {
            "model" => Some(Value::String(self.model.clone())),
            "stream" => self.stream.map(Value::Bool),
            "max_tokens" => self.max_tokens.map(Value::from),
            "max_completion_tokens" => self.max_completion_tokens.map(Value::from),
            "temperature" => self.temperature.map(Value::from),
            "top_p" => self.top_p.map(Value::from),
            "n" => self.n.map(Value::from),
            "frequency_penalty" => self.frequency_penalty.map(Value::from),
            "presence_penalty" => self.presence_penalty.map(Value::from),
            "logit_bias" => self.logit_bias.clone().map(Value::Object),
            "tools" => self.tools.clone().map(Value::Array),
            "tool_choice" => self.tool_choice.clone(),
            "response_format" => self.response_format.clone(),
            "user" => self.user.clone().map(Value::String),
            "stream_options" => self
                .stream_options
                .as_ref()
                .and_then(|o| serde_json::to_value(o).ok()),
            "messages" => serde_json::to_value(&self.messages).ok(),
            other => self.extra.get(other).cloned(),
        };
        v.filter(|v| !v.is_null())
    }

    /// Sets (or, with `null`, removes) a top-level parameter; errors name what did not fit.
    pub fn set_param(&mut self, name: &str, value: Value) -> Result<(), String> {
        fn opt<T: serde::de::DeserializeOwned>(name: &str, v: Value) -> Result<Option<T>, String> {
            if v.is_null() {
                return Ok(None);
            }
            serde_json::from_value(v)
                .map(Some)
                .map_err(|e| format!("{name}: {e}"))
        }
        match name {
            "model" => {
                self.model = opt::<String>(name, value)?.ok_or("model cannot be removed")?;
            }
            "messages" => return Err("messages are edited through segments".into()),
            "stream" => self.stream = opt(name, value)?,
            "max_tokens" => self.max_tokens = opt(name, value)?,
            "max_completion_tokens" => self.max_completion_tokens = opt(name, value)?,
            "temperature" => self.temperature = opt(name, value)?,
            "top_p" => self.top_p = opt(name, value)?,
            "n" => self.n = opt(name, value)?,
            "frequency_penalty" => self.frequency_penalty = opt(name, value)?,
            "presence_penalty" => self.presence_penalty = opt(name, value)?,
            "logit_bias" => self.logit_bias = opt(name, value)?,
            "tools" => self.tools = opt(name, value)?,
            "tool_choice" => self.tool_choice = opt(name, value)?,
            "response_format" => self.response_format = opt(name, value)?,
            "user" => self.user = opt(name, value)?,
            "stream_options" => self.stream_options = opt(name, value)?,
            other => {
                if value.is_null() {
                    self.extra.remove(other);
                } else {
                    self.extra.insert(other.to_owned(), value);
                }
            }
        }
        Ok(())
    }

    /// Every piece of text in the request, with where it lives and who wrote it.
    pub fn segments(&self) -> Vec<crate::Segment> {
        crate::segment::request_segments(self)
    }
}

/// `stream_options` of a streaming request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message; `content` is a string or an array of parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// The gateway put a retrieved document here (never sent; guards see a document source).
    #[serde(skip)]
    pub document: bool,
}

impl Message {
    /// A message whose content is plain text.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(Content::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            extra: Map::new(),
            document: false,
        }
    }

    /// The message's text, parts joined by newlines (for token counting and display).
    pub fn joined_text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// Who wrote a message. Unknown roles are kept verbatim so the provider decides.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
    #[serde(untagged)]
    Other(String),
}

impl Role {
    /// The wire name of the role.
    pub fn as_str(&self) -> &str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
            Role::Other(s) => s,
        }
    }
}

/// Message content: a string, or typed parts (text, image_url, input_audio, …).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part content array; only `text` is inspected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool call an assistant message made; `arguments` is JSON text the model wrote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCall>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The function half of a tool call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionCall {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub arguments: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Token usage as the provider reports it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    /// Prompt tokens served from the provider's cache (priced lower).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Reads `usage` from a response or final stream chunk, including cached prompt tokens.
    pub fn from_json(v: &Value) -> Option<Usage> {
        let u = v.get("usage")?;
        if u.is_null() {
            return None;
        }
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        let cached = u
            .pointer("/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Some(Usage {
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
            total_tokens: n("total_tokens"),
            cached_tokens: cached,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi","x_custom":1}],
            "seed":7,"metadata":{"a":"b"},"stream":true,"stream_options":{"include_usage":true}}"#;
        let req: ChatRequest = serde_json::from_str(body).unwrap();
        assert!(req.is_stream());
        assert_eq!(req.extra["seed"], 7);
        let back: Value = serde_json::to_value(&req).unwrap();
        assert_eq!(back["metadata"]["a"], "b");
        assert_eq!(back["messages"][0]["x_custom"], 1);
        assert_eq!(back["stream_options"]["include_usage"], true);
        assert!(
            back.get("temperature").is_none(),
            "absent params stay absent"
        );
    }

    #[test]
    fn content_parts_and_unknown_roles_parse() {
        let body = r#"{"model":"m","messages":[
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}}]},
            {"role":"critic","content":"b"}]}"#;
        let req: ChatRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.messages[0].joined_text(), "a");
        assert_eq!(req.messages[1].role, Role::Other("critic".into()));
        let back = serde_json::to_value(&req).unwrap();
        assert_eq!(back["messages"][0]["content"][1]["image_url"]["url"], "x");
        assert_eq!(back["messages"][1]["role"], "critic");
    }

    #[test]
    fn params_get_and_set_by_name() {
        let mut req: ChatRequest =
            serde_json::from_str(r#"{"model":"m","messages":[],"temperature":1.2,"seed":3}"#)
                .unwrap();
        assert_eq!(req.param("temperature"), Some(Value::from(1.2)));
        assert_eq!(req.param("seed"), Some(Value::from(3)));
        assert_eq!(req.param("top_p"), None);
        req.set_param("temperature", Value::from(0.3)).unwrap();
        req.set_param("seed", Value::Null).unwrap();
        req.set_param("max_tokens", Value::from(500)).unwrap();
        assert!(req.set_param("n", Value::from("two")).is_err());
        assert_eq!(req.temperature, Some(0.3));
        assert_eq!(req.max_tokens, Some(500));
        assert!(!req.extra.contains_key("seed"));
    }

    #[test]
    fn usage_reads_cached_tokens() {
        let v: Value = serde_json::from_str(
            r#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,
            "prompt_tokens_details":{"cached_tokens":4}}}"#,
        )
        .unwrap();
        let u = Usage::from_json(&v).unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (10, 5, 4)
        );
        assert!(Usage::from_json(&serde_json::json!({"usage": null})).is_none());
    }
}
