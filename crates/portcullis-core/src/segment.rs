//! Segments: every piece of text in a request or an answer, with where it lives and who wrote
//! it, so text guards see one flat list and the pipeline can write their edits back.

use crate::chat::{ChatRequest, Content, Role};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who is speaking in a segment: guards judge a user's words differently from a tool's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The application's own instructions (system / developer messages).
    System,
    /// The end user.
    User,
    /// Earlier model turns replayed by the client.
    Assistant,
    /// Tool or function results: third-party text.
    Tool,
    /// Retrieved documents (RAG): third-party text.
    Document,
    /// The model's answer, on the way back.
    Output,
}

impl Source {
    /// Sources whose text the application did not write.
    pub fn is_untrusted(self) -> bool {
        matches!(self, Source::User | Source::Tool | Source::Document)
    }

    fn of_role(role: &Role) -> Source {
        match role {
            Role::System | Role::Developer => Source::System,
            Role::User | Role::Other(_) => Source::User,
            Role::Assistant => Source::Assistant,
            Role::Tool | Role::Function => Source::Tool,
        }
    }
}

/// Where a segment's text lives, so an edit can be written back to the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Location {
    /// `messages[message].content` as a string.
    Content { message: usize },
    /// `messages[message].content[part].text`.
    Part { message: usize, part: usize },
    /// `messages[message].name`.
    Name { message: usize },
    /// `messages[message].tool_calls[call].function.arguments`.
    ToolArguments { message: usize, call: usize },
    /// `prediction.content` as a string (Predicted Outputs: text the client expects back,
    /// often the user's own file, which the model sees).
    Prediction,
    /// `prediction.content[part].text`.
    PredictionPart { part: usize },
    /// `choices[choice].message.content` (or the delta's content, on a stream).
    Answer { choice: usize },
    /// `choices[choice].message.tool_calls[call].function.arguments`.
    AnswerToolArguments { choice: usize, call: usize },
    /// Free text handed to the scanner (`portcullis scan`, `/v1/scan` with `text`).
    Text,
}

/// One piece of text and its provenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub location: Location,
    pub source: Source,
    pub text: String,
}

impl Segment {
    /// A free-standing text, as `portcullis scan` sees it.
    pub fn free(text: impl Into<String>, source: Source) -> Self {
        Segment {
            location: Location::Text,
            source,
            text: text.into(),
        }
    }
}

pub(crate) fn request_segments(req: &ChatRequest) -> Vec<Segment> {
    let mut out = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let source = if m.document {
            Source::Document
        } else {
            Source::of_role(&m.role)
        };
        match &m.content {
            Some(Content::Text(t)) => out.push(Segment {
                location: Location::Content { message: i },
                source,
                text: t.clone(),
            }),
            Some(Content::Parts(parts)) => {
                for (j, p) in parts.iter().enumerate() {
                    if let Some(t) = &p.text {
                        out.push(Segment {
                            location: Location::Part {
                                message: i,
                                part: j,
                            },
                            source,
                            text: t.clone(),
                        });
                    }
                }
            }
            None => {}
        }
        if let Some(name) = &m.name {
            out.push(Segment {
                location: Location::Name { message: i },
                source,
                text: name.clone(),
            });
        }
        for (j, call) in m.tool_calls.iter().flatten().enumerate() {
            if let Some(f) = &call.function {
                out.push(Segment {
                    location: Location::ToolArguments {
                        message: i,
                        call: j,
                    },
                    source,
                    text: f.arguments.clone(),
                });
            }
        }
    }
    // Predicted Outputs: the model reads it as the answer it is about to give.
    match req.extra.get("prediction").and_then(|p| p.get("content")) {
        Some(Value::String(t)) => out.push(Segment {
            location: Location::Prediction,
            source: Source::Assistant,
            text: t.clone(),
        }),
        Some(Value::Array(parts)) => {
            for (part, p) in parts.iter().enumerate() {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    out.push(Segment {
                        location: Location::PredictionPart { part },
                        source: Source::Assistant,
                        text: t.to_owned(),
                    });
                }
            }
        }
        _ => {}
    }
    out
}

/// Writes a segment's (edited) text back into the request at its location.
pub fn write_request(req: &mut ChatRequest, seg: &Segment) {
    match seg.location {
        Location::Content { message } => {
            if let Some(m) = req.messages.get_mut(message) {
                m.content = Some(Content::Text(seg.text.clone()));
            }
        }
        Location::Part { message, part } => {
            if let Some(Content::Parts(parts)) = req
                .messages
                .get_mut(message)
                .and_then(|m| m.content.as_mut())
                && let Some(p) = parts.get_mut(part)
            {
                p.text = Some(seg.text.clone());
            }
        }
        Location::Name { message } => {
            if let Some(m) = req.messages.get_mut(message) {
                m.name = Some(seg.text.clone());
            }
        }
        Location::ToolArguments { message, call } => {
            if let Some(f) = req
                .messages
                .get_mut(message)
                .and_then(|m| m.tool_calls.as_mut())
                .and_then(|c| c.get_mut(call))
                .and_then(|c| c.function.as_mut())
            {
                f.arguments = seg.text.clone();
            }
        }
        Location::Prediction => {
            if let Some(c) = req
                .extra
                .get_mut("prediction")
                .and_then(|p| p.get_mut("content"))
            {
                *c = Value::String(seg.text.clone());
            }
        }
        Location::PredictionPart { part } => {
            if let Some(p) = req
                .extra
                .get_mut("prediction")
                .and_then(|p| p.pointer_mut(&format!("/content/{part}")))
            {
                p["text"] = Value::String(seg.text.clone());
            }
        }
        Location::Answer { .. } | Location::AnswerToolArguments { .. } | Location::Text => {}
    }
}

/// The text of a non-streamed chat completion's choices.
pub fn response_segments(resp: &Value) -> Vec<Segment> {
    let mut out = Vec::new();
    let Some(choices) = resp.get("choices").and_then(Value::as_array) else {
        return out;
    };
    for (i, c) in choices.iter().enumerate() {
        let choice = c
            .get("index")
            .and_then(Value::as_u64)
            .map_or(i, |n| n as usize);
        let msg = c.get("message");
        if let Some(t) = msg.and_then(|m| m.get("content")).and_then(Value::as_str) {
            out.push(Segment {
                location: Location::Answer { choice },
                source: Source::Output,
                text: t.to_owned(),
            });
        }
        let calls = msg
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array);
        for (j, call) in calls.into_iter().flatten().enumerate() {
            if let Some(a) = call.pointer("/function/arguments").and_then(Value::as_str) {
                out.push(Segment {
                    location: Location::AnswerToolArguments { choice, call: j },
                    source: Source::Output,
                    text: a.to_owned(),
                });
            }
        }
    }
    out
}

/// Writes an answer segment back into a non-streamed response.
pub fn write_response(resp: &mut Value, seg: &Segment) {
    let Some(choices) = resp.get_mut("choices").and_then(Value::as_array_mut) else {
        return;
    };
    let find = |choices: &mut Vec<Value>, choice: usize| -> Option<usize> {
        choices
            .iter()
            .position(|c| c.get("index").and_then(Value::as_u64) == Some(choice as u64))
            .or(Some(choice).filter(|i| *i < choices.len()))
    };
    match seg.location {
        Location::Answer { choice } => {
            if let Some(i) = find(choices, choice)
                && let Some(m) = choices[i].get_mut("message")
            {
                m["content"] = Value::String(seg.text.clone());
            }
        }
        Location::AnswerToolArguments { choice, call } => {
            if let Some(i) = find(choices, choice)
                && let Some(f) = choices[i]
                    .get_mut("message")
                    .and_then(|m| m.get_mut("tool_calls"))
                    .and_then(|c| c.get_mut(call))
                    .and_then(|c| c.get_mut("function"))
            {
                f["arguments"] = Value::String(seg.text.clone());
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str) -> ChatRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn every_text_place_is_a_segment_and_writes_back() {
        let mut r = req(r#"{"model":"m","messages":[
            {"role":"system","content":"be nice"},
            {"role":"user","name":"bob","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"u"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"q\":1}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"result"}]}"#);
        let segs = r.segments();
        let got: Vec<_> = segs.iter().map(|s| (s.source, s.text.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Source::System, "be nice"),
                (Source::User, "hi"),
                (Source::User, "bob"),
                (Source::Assistant, "{\"q\":1}"),
                (Source::Tool, "result"),
            ]
        );
        for mut s in segs {
            s.text = s.text.to_uppercase();
            write_request(&mut r, &s);
        }
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["messages"][1]["content"][0]["text"], "HI");
        assert_eq!(v["messages"][1]["content"][1]["image_url"]["url"], "u");
        assert_eq!(v["messages"][1]["name"], "BOB");
        assert_eq!(
            v["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"Q\":1}"
        );
        assert_eq!(v["messages"][3]["content"], "RESULT");
    }

    #[test]
    fn predicted_output_is_a_segment_and_writes_back() {
        for (prediction, path) in [
            (r#""let name = 'x';""#, "/prediction/content"),
            (
                r#"[{"type":"text","text":"let name = 'x';"}]"#,
                "/prediction/content/0/text",
            ),
        ] {
            let mut r = req(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"rename"}}],
                "prediction":{{"type":"content","content":{prediction}}}}}"#
            ));
            let segs = r.segments();
            assert_eq!(segs.len(), 2, "{prediction}");
            assert_eq!(segs[1].source, Source::Assistant);
            assert_eq!(segs[1].text, "let name = 'x';");
            let mut s = segs[1].clone();
            s.text = "EDITED".into();
            write_request(&mut r, &s);
            let v = serde_json::to_value(&r).unwrap();
            assert_eq!(
                v.pointer(path),
                Some(&Value::from("EDITED")),
                "{prediction}"
            );
            assert_eq!(v["prediction"]["type"], "content");
        }
    }

    #[test]
    fn response_segments_write_back() {
        let mut v: Value = serde_json::from_str(
            r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hello",
            "tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}}]}"#,
        )
        .unwrap();
        let mut segs = response_segments(&v);
        assert_eq!(segs.len(), 2);
        segs[0].text = "bye".into();
        segs[1].text = "{\"a\":1}".into();
        for s in &segs {
            write_response(&mut v, s);
        }
        assert_eq!(v["choices"][0]["message"]["content"], "bye");
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
    }
}
