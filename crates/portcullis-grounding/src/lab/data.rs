//! The RAG sets' rows: `{"context": [..], "question", "response", "label": "grounded" |
//! "hallucinated", "spans"}`; `questionable` and other labels are left out.

use portcullis_lab::LabError;
use portcullis_lab::files::{read, rows};
use serde::Deserialize;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One labelled answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The file as given on the command line.
    pub file: String,
    /// The record's line number in its file, from 0.
    pub index: usize,
    pub context: Vec<String>,
    pub question: Option<String>,
    pub response: String,
    pub hallucinated: bool,
    /// Annotated hallucinated byte ranges of `response`; `None` where the set has none.
    pub spans: Option<Vec<Range<usize>>>,
}

#[derive(Deserialize)]
struct Row {
    #[serde(default)]
    context: Vec<String>,
    #[serde(default)]
    question: Option<String>,
    response: String,
    label: String,
    #[serde(default)]
    spans: Option<Vec<Span>>,
}

#[derive(Deserialize)]
struct Span {
    start: usize,
    end: usize,
}

/// The grounded and hallucinated records of `paths`, in file and line order.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Record>, LabError> {
    let mut out = Vec::new();
    for path in paths {
        let text = read(path)?;
        for row in rows(path, &text, serde_json::from_str::<Row>) {
            let (index, row) = row?;
            let hallucinated = match row.label.as_str() {
                "hallucinated" => true,
                "grounded" => false,
                _ => continue,
            };
            let spans = match row.spans {
                Some(s) => Some(byte_spans(path, index, &row.response, &s)?),
                None => None,
            };
            out.push(Record {
                file: path.display().to_string(),
                index,
                context: row.context,
                question: row.question,
                response: row.response,
                hallucinated,
                spans,
            });
        }
    }
    if out.is_empty() {
        return Err(LabError::Empty(
            "no grounded or hallucinated records; pass the RAG sets, e.g. \
             ../shared/data/halueval_qa/data.jsonl",
        ));
    }
    Ok(out)
}

/// Python character offsets as byte ranges of `text`.
fn byte_spans(
    path: &Path,
    index: usize,
    text: &str,
    spans: &[Span],
) -> Result<Vec<Range<usize>>, LabError> {
    let mut bytes: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
    bytes.push(text.len());
    spans
        .iter()
        .map(|s| match (bytes.get(s.start), bytes.get(s.end)) {
            (Some(&a), Some(&b)) if a <= b => Ok(a..b),
            _ => Err(LabError::data(
                path,
                format!(
                    "line {}: span {}..{} is outside the response",
                    index + 1,
                    s.start,
                    s.end
                ),
            )),
        })
        .collect()
}
