//! Structured output: the JSON Schema (draft 2020-12) an answer must satisfy — the policy's for
//! the request's route or model (`[output.schema]`), else the request's own
//! `response_format: {type: "json_schema", …}` when `from_request` is on — and the check of an
//! answer against it. The re-ask loop that uses it is [`crate::routes::structured`].
//!
//! Schemas never load anything: `$ref` resolves inside the schema only (the crate is built
//! without its file and HTTP resolvers), so a client cannot make the gateway fetch a URL.

use crate::config::ConfigError;
use portcullis_core::{ApiError, ChatRequest};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// `[output.schema]`: which answers must match a JSON Schema, and how often to re-ask.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaConfig {
    /// Validate answers against the schema a request carries in
    /// `response_format: {type: "json_schema", json_schema: {schema}}`.
    pub from_request: bool,
    /// Re-asks after an invalid answer (0: none); the first valid answer is returned.
    pub retries: u32,
    /// Schema files (JSON) required on a route (`x-portcullis-route`), by route name.
    pub routes: BTreeMap<String, String>,
    /// Schema files (JSON) required for a model, by model name.
    pub models: BTreeMap<String, String>,
}

impl Default for SchemaConfig {
    fn default() -> Self {
        SchemaConfig {
            from_request: false,
            retries: 1,
            routes: BTreeMap::new(),
            models: BTreeMap::new(),
        }
    }
}

/// The most re-asks a config may ask for: each one is a whole model call, held in the budget.
pub const MAX_RETRIES: u32 = 5;
/// Validation errors listed in a re-ask or an error message.
const MAX_ERRORS: usize = 8;
/// Longest re-ask message (bytes): it is reserved in tokens before the call (a token is at
/// least a byte).
pub const MAX_REASK_BYTES: usize = 2048;

/// A compiled schema and the document it came from.
pub struct Schema {
    validator: jsonschema::Validator,
    /// The schema document (sent upstream as `response_format` when the client sent none).
    pub document: Value,
    /// Where it came from, for messages: `route 'x'`, `model 'y'`, `the request`.
    pub origin: String,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("origin", &self.origin)
            .finish()
    }
}

/// Why an answer does not satisfy its schema: one line per problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// `path: message` lines, for the model and the client.
    pub errors: Vec<String>,
    /// `path: keyword` lines without the answer's values, for the audit record.
    pub masked: Vec<String>,
}

impl Schema {
    /// Compiles `document` as a draft 2020-12 schema.
    pub fn compile(document: Value, origin: impl Into<String>) -> Result<Schema, String> {
        let validator = jsonschema::draft202012::new(&document).map_err(|e| e.to_string())?;
        Ok(Schema {
            validator,
            document,
            origin: origin.into(),
        })
    }

    /// Checks an answer's text: it must parse as JSON and satisfy the schema.
    pub fn check(&self, text: &str) -> Result<(), Invalid> {
        let value: Value = match serde_json::from_str(text.trim()) {
            Ok(v) => v,
            Err(e) => {
                let line = format!("(root): the answer is not JSON ({e})");
                return Err(Invalid {
                    errors: vec![line],
                    masked: vec!["(root): not JSON".into()],
                });
            }
        };
        let mut errors = Vec::new();
        let mut masked = Vec::new();
        for e in self.validator.iter_errors(&value).take(MAX_ERRORS) {
            let path = match e.instance_path().as_str() {
                "" => "(root)".to_owned(),
                p => p.to_owned(),
            };
            errors.push(format!("{path}: {e}"));
            masked.push(format!("{path}: {}", e.kind().keyword()));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Invalid { errors, masked })
        }
    }
}

/// The policy's schemas, compiled at start-up.
#[derive(Debug, Default)]
pub struct Schemas {
    routes: BTreeMap<String, Arc<Schema>>,
    models: BTreeMap<String, Arc<Schema>>,
    from_request: bool,
    retries: u32,
}

impl Schemas {
    /// Reads and compiles every schema file `config` names; relative paths are relative to
    /// the config file's directory. Errors name the key and the problem.
    pub fn load(config: &SchemaConfig, source: &str) -> Result<Schemas, ConfigError> {
        let base = Path::new(source).parent().unwrap_or(Path::new("."));
        let load = |kind: &str, name: &str, file: &str| -> Result<Arc<Schema>, ConfigError> {
            let key = format!("output.schema.{kind}.{name}");
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid(source, &key, format!("cannot read {}: {e}", path.display()))
            })?;
            let doc: Value = serde_json::from_str(&text).map_err(|e| {
                ConfigError::invalid(source, &key, format!("{} is not JSON: {e}", path.display()))
            })?;
            Schema::compile(doc, format!("{kind} '{name}'"))
                .map(Arc::new)
                .map_err(|e| {
                    ConfigError::invalid(
                        source,
                        &key,
                        format!("{} is not a draft 2020-12 schema: {e}", path.display()),
                    )
                })
        };
        if config.retries > MAX_RETRIES {
            return Err(ConfigError::invalid(
                source,
                "output.schema.retries",
                format!("at most {MAX_RETRIES} (each re-ask is a whole model call)"),
            ));
        }
        let mut s = Schemas {
            from_request: config.from_request,
            retries: config.retries,
            ..Schemas::default()
        };
        for (name, file) in &config.routes {
            s.routes.insert(name.clone(), load("routes", name, file)?);
        }
        for (name, file) in &config.models {
            s.models.insert(name.clone(), load("models", name, file)?);
        }
        Ok(s)
    }

    /// Re-asks allowed after an invalid answer.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The schema `req` must satisfy on `route`: the route's, else the model's, else — when
    /// `from_request` is on — the request's own. A request schema that does not compile is
    /// the client's error (400 naming `response_format`).
    pub fn required(
        &self,
        req: &ChatRequest,
        route: Option<&str>,
    ) -> Result<Option<Arc<Schema>>, ApiError> {
        if let Some(s) = route.and_then(|r| self.routes.get(r)) {
            return Ok(Some(s.clone()));
        }
        if let Some(s) = self.models.get(&req.model) {
            return Ok(Some(s.clone()));
        }
        if !self.from_request {
            return Ok(None);
        }
        let Some(doc) = request_schema(req) else {
            return Ok(None);
        };
        Schema::compile(doc.clone(), "the request")
            .map(|s| Some(Arc::new(s)))
            .map_err(|e| {
                ApiError::invalid_request(format!(
                    "response_format.json_schema.schema is not a valid draft 2020-12 JSON Schema: {e}"
                ))
                .with_param("response_format")
            })
    }
}

/// The schema in a request's `response_format: {type: "json_schema", json_schema: {schema}}`.
pub fn request_schema(req: &ChatRequest) -> Option<&Value> {
    let rf = req.response_format.as_ref()?;
    if rf["type"].as_str() != Some("json_schema") {
        return None;
    }
    rf["json_schema"].get("schema")
}

/// Tells the model about a policy schema when the client asked for no format of its own.
pub fn announce(req: &mut ChatRequest, schema: &Schema) {
    if req.response_format.is_none() {
        req.response_format = Some(json!({"type": "json_schema", "json_schema": {
            "name": "required_output", "schema": schema.document, "strict": false}}));
    }
}

/// The user message that re-asks the model after `invalid`, at most [`MAX_REASK_BYTES`].
pub fn reask_message(invalid: &Invalid) -> String {
    let head = "Your previous answer does not match the required JSON Schema:\n";
    let tail = "\nAnswer again with only the corrected JSON value, nothing else.";
    let mut body = String::new();
    for e in &invalid.errors {
        let line = format!("- {e}\n");
        if head.len() + body.len() + line.len() + tail.len() > MAX_REASK_BYTES {
            break;
        }
        body.push_str(&line);
    }
    if body.is_empty() {
        body.push_str("- (the errors are too long to list)\n");
    }
    format!("{head}{}{tail}", body.trim_end())
}

/// The tokens a request whose answer may be re-asked `retries` times can use at most, for
/// admission: every call's prompt (each re-ask's prompt grows by an answer and a re-ask
/// message) and every call's output. Returns `(prompt, output)`.
pub fn reask_claim(prompt: u64, output: u64, retries: u32) -> (u64, u64) {
    let r = u64::from(retries);
    let calls = r + 1;
    let growth = output.saturating_add(MAX_REASK_BYTES as u64 + 16);
    // Call k (0-based) carries k earlier answers and re-ask messages: sum of k for k < calls.
    let carried = growth.saturating_mul(r.saturating_mul(calls) / 2);
    (
        prompt.saturating_mul(calls).saturating_add(carried),
        output.saturating_mul(calls),
    )
}

/// The 502 for an answer still invalid when the re-asks ran out.
pub fn exhausted(schema: &Schema, calls: u32, invalid: &Invalid) -> ApiError {
    ApiError::bad_gateway(format!(
        "The model's answer does not match the JSON Schema required by {} after {calls} attempt{}: {}",
        schema.origin,
        if calls == 1 { "" } else { "s" },
        invalid.errors.join("; ")
    ))
    .with_code("invalid_model_output")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::compile(
            json!({"type": "object", "properties": {"name": {"type": "string"},
                "age": {"type": "integer", "minimum": 0}}, "required": ["name", "age"],
                "additionalProperties": false}),
            "the request",
        )
        .unwrap()
    }

    #[test]
    fn answers_are_parsed_then_validated_with_paths() {
        let s = schema();
        assert!(s.check(r#"{"name": "Ann", "age": 3}"#).is_ok());
        assert!(s.check("  {\"name\": \"Ann\", \"age\": 3}\n").is_ok());
        let e = s.check(r#"{"name": 7, "age": -1}"#).unwrap_err();
        assert_eq!(e.errors.len(), 2, "{e:?}");
        assert!(e.errors.iter().any(|l| l.starts_with("/name:")), "{e:?}");
        assert!(e.masked.contains(&"/age: minimum".to_owned()), "{e:?}");
        assert!(
            e.masked.iter().all(|m| !m.contains('7')),
            "the audit form names no values"
        );
        let e = s.check("Sure! {\"name\":").unwrap_err();
        assert!(e.errors[0].contains("not JSON"));
    }

    #[test]
    fn draft_2020_12_keywords_apply_and_remote_refs_are_refused() {
        let s = Schema::compile(
            json!({"type": "array", "prefixItems": [{"type": "string"}], "items": false}),
            "t",
        )
        .unwrap();
        assert!(s.check(r#"["a"]"#).is_ok());
        assert!(
            s.check(r#"["a", 1]"#).is_err(),
            "items: false after prefixItems"
        );
        assert!(Schema::compile(json!({"$ref": "https://example.com/s.json"}), "t").is_err());
        assert!(Schema::compile(json!({"type": 5}), "t").is_err());
    }

    #[test]
    fn the_route_then_the_model_then_the_request_decides() {
        let mut s = Schemas {
            from_request: true,
            retries: 1,
            ..Schemas::default()
        };
        let mut route = schema();
        route.origin = "route 'r'".into();
        s.routes.insert("r".into(), Arc::new(route));
        let mut model = schema();
        model.origin = "model 'm2'".into();
        s.models.insert("m2".into(), Arc::new(model));
        let req = |v: Value| serde_json::from_value::<ChatRequest>(v).unwrap();
        let with_format = req(json!({"model": "m", "messages": [], "response_format":
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}}));
        let got = s.required(&with_format, Some("r")).unwrap().unwrap();
        assert_eq!(got.origin, "route 'r'", "the policy wins over the request");
        let mut for_m2 = with_format.clone();
        for_m2.model = "m2".into();
        assert_eq!(
            s.required(&for_m2, None).unwrap().unwrap().origin,
            "model 'm2'"
        );
        let got = s.required(&with_format, None).unwrap().unwrap();
        assert_eq!(got.origin, "the request");
        assert!(got.check("[]").is_ok());
        let plain = req(json!({"model": "m", "messages": []}));
        assert!(s.required(&plain, None).unwrap().is_none());
        let bad = req(json!({"model": "m", "messages": [], "response_format":
            {"type": "json_schema", "json_schema": {"schema": {"type": 5}}}}));
        let e = s.required(&bad, None).unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("response_format"))
        );
        s.from_request = false;
        assert!(s.required(&with_format, None).unwrap().is_none());
    }

    #[test]
    fn reask_messages_are_bounded_and_claims_cover_every_call() {
        let many = Invalid {
            errors: (0..500)
                .map(|i| format!("/x/{i}: {}", "y".repeat(40)))
                .collect(),
            masked: vec![],
        };
        let m = reask_message(&many);
        assert!(m.len() <= MAX_REASK_BYTES, "{}", m.len());
        assert!(m.starts_with("Your previous answer") && m.ends_with("nothing else."));
        assert_eq!(reask_claim(100, 50, 0), (100, 50));
        let (p, o) = reask_claim(100, 50, 1);
        assert_eq!(o, 100);
        assert_eq!(p, 200 + 50 + MAX_REASK_BYTES as u64 + 16);
        let (p, _) = reask_claim(100, 50, 2);
        assert_eq!(p, 300 + 3 * (50 + MAX_REASK_BYTES as u64 + 16));
        assert_eq!(reask_claim(u64::MAX, u64::MAX, 5).0, u64::MAX, "saturates");
    }
}
