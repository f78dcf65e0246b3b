//! A Responses-API request seen as the [`ChatRequest`] the pipeline judges, and the guards'
//! edits written back into the Responses body at the places they came from.
//!
//! The pipeline, its guards and the books all speak chat completions; rather than teach each
//! of them a second request shape, the request is mapped once: `instructions` becomes a system
//! message, each input item with text becomes a message whose role gives its text the right
//! source (a `function_call_output` is a tool result, a replayed `function_call` an assistant
//! turn), and `prompt.variables` become user messages. Every mapped message carries its
//! origin, so after the pipeline the edited texts go back into the very fields they came
//! from, and only those: the body the provider receives is the client's, byte for byte
//! where no guard changed it. Items without text (images, files, reasoning, references to
//! stored items) pass through untouched and unjudged; images count at their floor for
//! admission. Messages a guard inserted (a spotlight preamble, a canary line) go into
//! `instructions` when they precede the conversation, else into `input` where they stand.
//! Parameters a guard set are written back under their Responses names (`max_tokens` →
//! `max_output_tokens`); chat-only ones the Responses API has no place for are dropped.

use portcullis_core::chat::{ContentPart, FunctionCall, ToolCall};
use portcullis_core::{ApiError, ChatRequest, Content, Message, Role};
use serde_json::{Map, Value, json};

/// The `extra` key a mapped message carries its origin under (never sent anywhere).
const ORIGIN: &str = "__portcullis_origin";

/// Top-level fields that are not parameters: the text the mapping turns into messages.
const TEXT_FIELDS: [&str; 2] = ["input", "instructions"];

/// Chat parameters typed in [`ChatRequest`], and what the Responses API calls them (`None`:
/// it has no such parameter).
#[rustfmt::skip]
const TYPED: [(&str, Option<&str>); 15] = [
    ("model", Some("model")), ("stream", Some("stream")),
    ("stream_options", Some("stream_options")), ("temperature", Some("temperature")),
    ("top_p", Some("top_p")), ("tools", Some("tools")), ("tool_choice", Some("tool_choice")),
    ("user", Some("user")), ("max_tokens", Some("max_output_tokens")),
    ("max_completion_tokens", Some("max_output_tokens")), ("n", None),
    ("frequency_penalty", None), ("presence_penalty", None), ("logit_bias", None),
    ("response_format", None),
];

/// Where a mapped message's text lives in the Responses body.
#[derive(Debug, Clone, PartialEq)]
enum Origin {
    /// `instructions`.
    Instructions,
    /// `input` itself, a string.
    Input,
    /// `input[i]`: its `content` (a message), `output` (a tool result), `arguments` (a
    /// replayed function call) or `input` (a replayed custom tool call).
    Item(usize),
    /// `prompt.variables[name]`, a string or an `input_text` part.
    Variable(String),
}

/// A Responses request mapped for the pipeline.
#[derive(Debug)]
pub struct Mapped {
    /// What the guards judge and the books count.
    pub req: ChatRequest,
    origins: Vec<Origin>,
    /// Every parameter as it was before the guards, to see which they changed.
    params: Vec<(String, Option<Value>)>,
}

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message).with_param(param)
}

/// The field of an item that holds its text, and the role that text speaks with.
fn text_field(item: &Map<String, Value>) -> Option<(&'static str, Role)> {
    let kind = item.get("type").and_then(Value::as_str);
    match kind {
        None | Some("message") if item.contains_key("role") => {
            let role = serde_json::from_value(item["role"].clone()).unwrap_or(Role::User);
            Some(("content", role))
        }
        Some(
            "function_call_output"
            | "custom_tool_call_output"
            | "local_shell_call_output"
            | "mcp_call",
        ) => Some(("output", Role::Tool)),
        Some("function_call") => Some(("arguments", Role::Assistant)),
        Some("custom_tool_call") => Some(("input", Role::Assistant)),
        _ => None,
    }
}

/// The text-bearing field of a content part (`text`, or `refusal` for a refusal part).
fn part_field(part: &Value) -> Option<&'static str> {
    if part.get("text").is_some_and(Value::is_string) {
        Some("text")
    } else if part.get("refusal").is_some_and(Value::is_string) {
        Some("refusal")
    } else {
        None
    }
}

/// A content field (a string, or an array of parts) as chat content.
fn content_of(v: &Value, param: &str) -> Result<Option<Content>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(Content::Text(s.clone()))),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
                if !p.is_object() {
                    return Err(bad(param, format!("'{param}[{j}]' must be an object.")));
                }
                let field = part_field(p);
                let kind = match (kind, field) {
                    (_, Some(_)) => "text",
                    // Counted by the tokenizer at an image's floor.
                    ("input_image", None) => "image_url",
                    (k, None) => k,
                };
                out.push(ContentPart {
                    kind: kind.to_owned(),
                    text: field.and_then(|f| p[f].as_str()).map(str::to_owned),
                    extra: Map::new(),
                });
            }
            Ok(Some(Content::Parts(out)))
        }
        _ => Err(bad(
            param,
            format!("'{param}' must be a string or an array of content parts."),
        )),
    }
}

fn tagged(mut m: Message, origin: usize) -> Message {
    m.extra.insert(ORIGIN.to_owned(), Value::from(origin));
    m
}

fn origin_of(m: &Message) -> Option<usize> {
    m.extra
        .get(ORIGIN)
        .and_then(Value::as_u64)
        .map(|n| n as usize)
}

/// Maps a Responses body onto a chat request; errors name the field at fault.
pub fn map(raw: &Map<String, Value>) -> Result<Mapped, ApiError> {
    if raw
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(|m| m.trim().is_empty())
    {
        return Err(bad("model", "'model' is required and must be a string."));
    }
    // A chat body sent here would pass its messages upstream unjudged.
    if raw.contains_key("messages") {
        return Err(bad(
            "messages",
            "'messages' is not a Responses API parameter; send the conversation in 'input'.",
        ));
    }
    // The documents extension is read on chat completions only; forwarded, the provider
    // would refuse the unknown field, and the documents would go unjudged.
    if raw.contains_key(portcullis_core::documents::EXTENSION) {
        return Err(bad(
            portcullis_core::documents::EXTENSION,
            "The 'portcullis' documents extension is supported on /v1/chat/completions; on the \
             Responses API send retrieved documents as input items (a function_call_output is \
             judged as a tool result).",
        ));
    }
    let mut chat = Map::new();
    for (k, v) in raw {
        match k.as_str() {
            k if TEXT_FIELDS.contains(&k) => {}
            "max_output_tokens" => {
                chat.insert("max_completion_tokens".into(), v.clone());
            }
            _ => {
                chat.insert(k.clone(), v.clone());
            }
        }
    }
    chat.insert("messages".into(), Value::Array(Vec::new()));
    let mut req: ChatRequest =
        serde_path_to_error::deserialize(Value::Object(chat)).map_err(|e| {
            let path = e.path().to_string();
            let param = match path.split(['.', '[']).next().unwrap_or("") {
                "max_completion_tokens" => "max_output_tokens".to_owned(),
                p => p.to_owned(),
            };
            bad(
                &param,
                format!("Invalid value for '{param}': {}", e.into_inner()),
            )
        })?;
    let mut origins = Vec::new();
    let mut push = |req: &mut ChatRequest, m: Message, o: Origin| {
        origins.push(o);
        req.messages.push(tagged(m, origins.len() - 1));
    };
    match raw.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => push(
            &mut req,
            Message::text(Role::System, s.clone()),
            Origin::Instructions,
        ),
        Some(_) => return Err(bad("instructions", "'instructions' must be a string.")),
    }
    if let Some(vars) = raw
        .get("prompt")
        .and_then(|p| p.get("variables"))
        .and_then(Value::as_object)
    {
        for (name, v) in vars {
            let text = v.as_str().or_else(|| v.get("text").and_then(Value::as_str));
            if let Some(t) = text {
                let m = Message::text(Role::User, t.to_owned());
                push(&mut req, m, Origin::Variable(name.clone()));
            }
        }
    }
    match raw.get("input") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => push(
            &mut req,
            Message::text(Role::User, s.clone()),
            Origin::Input,
        ),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let param = format!("input[{i}]");
                let Some(obj) = item.as_object() else {
                    return Err(bad("input", format!("'{param}' must be an object.")));
                };
                let Some((field, role)) = text_field(obj) else {
                    continue;
                };
                let v = obj.get(field).unwrap_or(&Value::Null);
                let m = match field {
                    "content" | "output" => {
                        let content = match (field, v) {
                            // An MCP call's output may be absent or not text: nothing to judge.
                            ("output", v) if !v.is_string() && !v.is_array() => continue,
                            _ => content_of(v, &format!("{param}.{field}"))
                                .map_err(|e| e.with_param("input"))?,
                        };
                        Message {
                            role,
                            content,
                            name: None,
                            tool_calls: None,
                            tool_call_id: obj
                                .get("call_id")
                                .and_then(Value::as_str)
                                .map(str::to_owned),
                            extra: Map::new(),
                            document: false,
                        }
                    }
                    _ => {
                        let Some(args) = v.as_str() else {
                            return Err(bad(
                                "input",
                                format!("'{param}.{field}' must be a string."),
                            ));
                        };
                        let call = ToolCall {
                            id: obj
                                .get("call_id")
                                .and_then(Value::as_str)
                                .map(str::to_owned),
                            kind: Some("function".into()),
                            function: Some(FunctionCall {
                                name: obj["name"].as_str().unwrap_or_default().to_owned(),
                                arguments: args.to_owned(),
                                extra: Map::new(),
                            }),
                            extra: Map::new(),
                        };
                        Message {
                            role,
                            content: None,
                            name: None,
                            tool_calls: Some(vec![call]),
                            tool_call_id: None,
                            extra: Map::new(),
                            document: false,
                        }
                    }
                };
                push(&mut req, m, Origin::Item(i));
            }
        }
        Some(_) => {
            return Err(bad(
                "input",
                "'input' must be a string or an array of items.",
            ));
        }
    }
    let params = param_names(&req)
        .into_iter()
        .map(|n| {
            let v = req.param(&n);
            (n, v)
        })
        .collect();
    Ok(Mapped {
        req,
        origins,
        params,
    })
}

/// Every parameter name the request has or a guard may set.
fn param_names(req: &ChatRequest) -> Vec<String> {
    let mut names: Vec<String> = TYPED.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.extend(req.extra.keys().cloned());
    names
}

/// Writes a judged content (a string, or parts' texts by index) back into `slot`.
fn write_content(slot: &mut Value, judged: Option<&Content>) {
    match (slot, judged) {
        (slot @ Value::String(_), Some(Content::Text(t))) if slot.as_str() != Some(t.as_str()) => {
            *slot = Value::String(t.clone());
        }
        (Value::Array(parts), Some(Content::Parts(judged))) => {
            for (p, j) in parts.iter_mut().zip(judged) {
                if let (Some(field), Some(t)) = (part_field(p), &j.text)
                    && p[field].as_str() != Some(t.as_str())
                {
                    p[field] = Value::String(t.clone());
                }
            }
        }
        _ => {}
    }
}

/// An input item for a message a guard inserted.
fn item_of(m: &Message) -> Value {
    json!({"role": m.role.as_str(), "content": m.joined_text()})
}

impl Mapped {
    /// Writes what the guards did — edited texts, inserted messages, changed parameters —
    /// back into the Responses body `raw`.
    pub fn write_back(&self, raw: &mut Map<String, Value>) {
        self.write_params(raw);
        let mut instructions: Vec<String> = Vec::new();
        let mut seen_input = false;
        // Inserted messages inside the conversation: (before input item i, or at the end).
        let mut inserts: Vec<(Option<usize>, Value)> = Vec::new();
        let mut waiting: Vec<Value> = Vec::new();
        for m in &self.req.messages {
            let origin = origin_of(m).and_then(|i| self.origins.get(i));
            match origin {
                Some(Origin::Instructions) => instructions.push(m.joined_text()),
                Some(Origin::Variable(name)) => {
                    if let Some(v) = raw
                        .get_mut("prompt")
                        .and_then(|p| p.get_mut("variables"))
                        .and_then(|v| v.get_mut(name))
                    {
                        let text = m.joined_text();
                        match v {
                            Value::String(s) if *s != text => *s = text,
                            Value::Object(o)
                                if o.get("text").and_then(Value::as_str) != Some(text.as_str()) =>
                            {
                                o.insert("text".into(), Value::String(text));
                            }
                            _ => {}
                        }
                    }
                }
                Some(Origin::Input) => {
                    seen_input = true;
                    // A string input becomes the array's first item if anything is inserted.
                    inserts.extend(waiting.drain(..).map(|v| (Some(0), v)));
                    if let Some(slot) = raw.get_mut("input") {
                        write_content(slot, m.content.as_ref());
                    }
                }
                Some(Origin::Item(i)) => {
                    seen_input = true;
                    inserts.extend(waiting.drain(..).map(|v| (Some(*i), v)));
                    self.write_item(raw, *i, m);
                }
                None => {
                    let system = matches!(m.role, Role::System | Role::Developer);
                    if system && !seen_input {
                        instructions.push(m.joined_text());
                    } else {
                        waiting.push(item_of(m));
                    }
                }
            }
        }
        inserts.extend(waiting.into_iter().map(|v| (None, v)));
        let joined = instructions.join("\n\n");
        let before = raw.get("instructions").and_then(Value::as_str);
        if !instructions.is_empty() && before != Some(joined.as_str()) {
            raw.insert("instructions".into(), Value::String(joined));
        }
        if !inserts.is_empty() {
            insert_items(raw, inserts);
        }
    }

    /// Writes message `m`'s judged text into `input[i]`.
    fn write_item(&self, raw: &mut Map<String, Value>, i: usize, m: &Message) {
        let Some(item) = raw
            .get_mut("input")
            .and_then(Value::as_array_mut)
            .and_then(|items| items.get_mut(i))
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        let Some((field, _)) = text_field(item) else {
            return;
        };
        match field {
            "content" | "output" => {
                if let Some(slot) = item.get_mut(field) {
                    write_content(slot, m.content.as_ref());
                }
            }
            _ => {
                let args = m
                    .tool_calls
                    .as_ref()
                    .and_then(|c| c.first())
                    .and_then(|c| c.function.as_ref())
                    .map(|f| f.arguments.clone());
                if let Some(a) = args
                    && item.get(field).and_then(Value::as_str) != Some(a.as_str())
                {
                    item.insert(field.to_owned(), Value::String(a));
                }
            }
        }
    }

    /// Writes the parameters the guards changed under their Responses names.
    fn write_params(&self, raw: &mut Map<String, Value>) {
        let req = &self.req;
        let mut names = param_names(req);
        names.extend(self.params.iter().map(|(n, _)| n.clone()));
        names.sort();
        names.dedup();
        let mut ceiling_changed = false;
        for name in names {
            let before = self
                .params
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.clone());
            let after = req.param(&name);
            if before == after || name == "messages" {
                continue;
            }
            let target = match TYPED.iter().find(|(n, _)| *n == name) {
                Some((_, None)) => continue,
                Some((_, Some("max_output_tokens"))) => {
                    ceiling_changed = true;
                    continue;
                }
                Some((_, Some(t))) => (*t).to_owned(),
                None if TEXT_FIELDS.contains(&name.as_str()) => continue,
                None => name.clone(),
            };
            match after {
                Some(v) => raw.insert(target, v),
                None => raw.remove(&target),
            };
        }
        if ceiling_changed {
            match req.max_tokens.max(req.max_completion_tokens) {
                Some(n) => raw.insert("max_output_tokens".into(), Value::from(n)),
                None => raw.remove("max_output_tokens"),
            };
        }
    }
}

/// Puts inserted messages into `input` (made an array if it was a string).
fn insert_items(raw: &mut Map<String, Value>, inserts: Vec<(Option<usize>, Value)>) {
    let items = match raw.remove("input") {
        Some(Value::Array(a)) => a,
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        _ => Vec::new(),
    };
    let mut out = Vec::with_capacity(items.len() + inserts.len());
    for (i, item) in items.into_iter().enumerate() {
        out.extend(
            inserts
                .iter()
                .filter(|(at, _)| *at == Some(i))
                .map(|(_, v)| v.clone()),
        );
        out.push(item);
    }
    out.extend(
        inserts
            .iter()
            .filter(|(at, _)| at.is_none())
            .map(|(_, v)| v.clone()),
    );
    raw.insert("input".into(), Value::Array(out));
}
