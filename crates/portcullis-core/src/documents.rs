//! Retrieved documents (RAG) carried in a request: the `portcullis: {"documents": [...]}`
//! extension (what the official SDKs send through `extra_body`), taken out of what goes
//! upstream and turned into messages the guards see as [`Source::Document`](crate::Source).

use crate::chat::{ChatRequest, Message, Role};
use crate::error::ApiError;
use serde_json::Value;

/// The body field clients use for the gateway's extensions.
pub const EXTENSION: &str = "portcullis";

impl ChatRequest {
    /// Removes the `portcullis` extension from what will be forwarded and returns its
    /// documents; a malformed extension is a 400 naming the field.
    pub fn take_documents(&mut self) -> Result<Vec<String>, ApiError> {
        let Some(ext) = self.extra.remove(EXTENSION) else {
            return Ok(Vec::new());
        };
        let bad = |param: &str, msg: &str| {
            ApiError::invalid_request(format!("'{param}' {msg}")).with_param(param.to_owned())
        };
        let mut obj = match ext {
            Value::Null => return Ok(Vec::new()),
            Value::Object(o) => o,
            _ => {
                return Err(bad(
                    EXTENSION,
                    "must be an object like {\"documents\": [\"…\"]}.",
                ));
            }
        };
        if let Some(k) = obj.keys().find(|k| k.as_str() != "documents") {
            return Err(bad(
                &format!("{EXTENSION}.{k}"),
                "is not a known extension; the gateway understands 'documents'.",
            ));
        }
        let docs = match obj.remove("documents") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(bad(
                    "portcullis.documents",
                    "must be an array of strings (the retrieved documents' text).",
                ));
            }
        };
        let mut out = Vec::with_capacity(docs.len());
        for (i, d) in docs.into_iter().enumerate() {
            match d {
                Value::String(s) => out.push(s),
                _ => {
                    return Err(bad(
                        &format!("portcullis.documents[{i}]"),
                        "must be a string (the document's text).",
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Hands `docs` to the model: one user message each, just before the last user message
    /// (context first, then the question), marked as documents so guards judge and spotlight
    /// them as third-party text. The originals are kept for the groundedness check.
    pub fn attach_documents(&mut self, docs: Vec<String>) {
        if docs.is_empty() {
            return;
        }
        let at = self
            .messages
            .iter()
            .rposition(|m| m.role == Role::User)
            .unwrap_or(self.messages.len());
        let msgs = docs.iter().map(|d| {
            let mut m = Message::text(Role::User, d.clone());
            m.document = true;
            m
        });
        self.messages.splice(at..at, msgs);
        self.documents = docs;
    }
}

#[cfg(test)]
mod tests {
    use crate::{ChatRequest, Source};

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }
    use serde_json::{Value, json};

    #[test]
    fn documents_become_document_messages_and_the_extension_is_not_forwarded() {
        let mut r = req(json!({"model": "m", "messages": [
            {"role": "system", "content": "Answer from the documents."},
            {"role": "user", "content": "When did he retire?"}],
            "portcullis": {"documents": ["Barker retired in 2007.", "He hosted for 35 years."]}}));
        let docs = r.take_documents().unwrap();
        r.attach_documents(docs);
        let wire = serde_json::to_value(&r).unwrap();
        assert!(wire.get("portcullis").is_none());
        assert!(
            wire["messages"][1].get("document").is_none(),
            "the marker stays home"
        );
        assert_eq!(wire["messages"][1]["content"], "Barker retired in 2007.");
        assert_eq!(wire["messages"][3]["content"], "When did he retire?");
        let sources: Vec<_> = r.segments().iter().map(|s| s.source).collect();
        assert_eq!(
            sources,
            [
                Source::System,
                Source::Document,
                Source::Document,
                Source::User
            ]
        );
        assert_eq!(r.documents.len(), 2);
    }

    #[test]
    fn malformed_extensions_name_the_field() {
        let cases = [
            (json!("docs"), "portcullis"),
            (json!({"documents": "one"}), "portcullis.documents"),
            (json!({"documents": ["ok", 3]}), "portcullis.documents[1]"),
            (json!({"docs": []}), "portcullis.docs"),
        ];
        for (ext, param) in cases {
            let mut r = req(json!({"model": "m", "messages": [], "portcullis": ext}));
            let e = r.take_documents().unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(param)));
        }
        let mut none = req(json!({"model": "m", "messages": []}));
        assert!(none.take_documents().unwrap().is_empty());
    }
}
