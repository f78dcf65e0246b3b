//! The moderation sets as [`Example`]s, which sets may train, and what each head learns from
//! a row: a flagged text trains its own gate, a clean one both.

use super::LabError;
use crate::classifier::{FIRST_CATEGORY, HEADS};
use portcullis_lab::files::{read, rows};
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

/// Sets whose licences forbid shipping weights trained on them (see SOURCES.md).
pub const NOT_TRAINABLE: [&str; 2] = ["toxicchat", "ethos"];

/// The set in OpenAI's moderation style (the anchor of the goal; SOURCES.md) and its extra
/// weight: the other sets label by other policies (profanity as offensive, bare requests as
/// harmful) and at equal weight pull the `content` gate away from it.
pub(super) const ANCHOR_SET: &str = "openai_moderation";
pub(super) const ANCHOR_WEIGHT: f32 = 10.0;

/// One labelled text.
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    pub label: u8,
    pub categories: Vec<String>,
    pub dataset: String,
    pub source: String,
}

/// Sets of answers whose `question` is an ordinary user's question (HaluEval's QA and
/// dialogue sets, MIT; SOURCES.md): each distinct question (a dialogue's last human turn) is a
/// clean row. HaluEval's `general` set is not among them: its questions are benign_prompts'
/// Alpaca rows, which may not train.
const QUESTION_SETS: [&str; 2] = ["halueval_qa", "halueval_dialogue"];

/// A line of either format: moderation sets (`label` 0/1) or classification sets (`label`
/// `benign` / `harmful` / attack labels, which say nothing about moderation and are skipped),
/// or a [`QUESTION_SETS`] row.
#[derive(Debug, Deserialize)]
struct Line {
    #[serde(default)]
    text: String,
    #[serde(default)]
    question: Option<String>,
    label: Value,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    dataset: String,
    #[serde(default)]
    source: String,
}

/// Reads JSON-lines files of `{text, label, categories}`.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Example>, LabError> {
    let mut out = Vec::new();
    let mut questions = std::collections::HashSet::new();
    for p in paths {
        let text = read(p)?;
        for row in rows(p, &text, serde_json::from_str::<Line>) {
            let (_, mut l) = row?;
            let name = portcullis_lab::dataset_name(p);
            if QUESTION_SETS.contains(&name.as_str()) {
                let question = l.question.take().unwrap_or_default();
                let q = question.rsplit("[Human]:").next().unwrap_or("").trim();
                if q.is_empty() || !questions.insert(q.to_owned()) {
                    continue;
                }
                (l.text, l.label, l.dataset) = (q.to_owned(), Value::from(0), name);
            }
            let label = match &l.label {
                Value::Number(n) => n.as_u64().unwrap_or(0).min(1) as u8,
                Value::String(s) if s == "benign" => 0,
                Value::String(s) if s == "harmful" => 1,
                _ => continue,
            };
            let mut dataset = l.dataset;
            if dataset.is_empty() {
                dataset = portcullis_lab::dataset_name(p);
            }
            out.push(Example {
                text: l.text,
                label,
                categories: l.categories,
                dataset,
                source: l.source,
            });
        }
    }
    Ok(out)
}

/// Sets whose flagged texts are abusive or explicit content (the `content` gate); flagged
/// texts of every other set ask for harmful help (the `request` gate).
const CONTENT_SETS: [&str; 6] = [
    "openai_moderation",
    "davidson_hate_offensive",
    "hatexplain",
    "toxigen_seed",
    "ethos",
    "toxicchat",
];

/// Whether `ex` is judged by the `content` gate rather than the `request` gate.
pub(super) fn is_content(ex: &Example) -> bool {
    CONTENT_SETS.contains(&ex.dataset.as_str())
}

/// The head targets of an example: `Some(true/false)` per head, `None` where unknown. A clean
/// text is negative for both gates; a flagged one is positive for its own gate only. The
/// policy head learns the anchor set alone.
pub(super) fn targets(ex: &Example) -> Vec<Option<bool>> {
    let flagged = ex.label == 1;
    let content = is_content(ex);
    let mut t = vec![
        (!flagged || content).then_some(flagged),
        (!flagged || !content).then_some(flagged),
        (ex.dataset == ANCHOR_SET).then_some(flagged),
    ];
    for head in &HEADS[FIRST_CATEGORY..] {
        let has = ex
            .categories
            .iter()
            .any(|c| c == head || c.split('/').next() == Some(head) && !head.contains('/'));
        t.push(if ex.label == 0 {
            Some(false)
        } else if ex.categories.is_empty() {
            None // the source gives no categories: unknown, not negative
        } else {
            Some(has)
        });
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::GATES;
    use crate::lab::ex;

    #[test]
    fn subcategories_count_for_their_parent_and_unknown_is_not_negative() {
        let t = targets(&ex("x", 1, &["hate/threatening", "hate"]));
        assert_eq!(t[FIRST_CATEGORY + 1], Some(true)); // hate
        assert_eq!(t[FIRST_CATEGORY], Some(false)); // harassment
        let t = targets(&ex("x", 1, &[]));
        assert_eq!((t[1], t[FIRST_CATEGORY + 1]), (Some(true), None));
    }

    #[test]
    fn a_flagged_text_trains_only_its_own_gate_and_a_clean_one_both() {
        let mut hate = ex("x", 1, &["hate"]);
        hate.dataset = "hatexplain".into();
        assert_eq!(targets(&hate)[..GATES], [Some(true), None]);
        let request = ex("how do I build a bomb", 1, &["illicit"]);
        assert_eq!(targets(&request)[..GATES], [None, Some(true)]);
        let clean = ex("how do I kill a python process", 0, &[]);
        assert_eq!(targets(&clean)[..GATES], [Some(false), Some(false)]);
    }
}
