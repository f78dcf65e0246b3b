//! Scoring: predictions against gold spans, per data type, as precision, recall and F1.

use super::data::{Example, ours};
use crate::{Detection, EntityType};
use portcullis_lab::metrics::{f1, fraction, round};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// The type a detection is scored as (a date of birth is a date to the data).
fn scored_as(t: EntityType) -> EntityType {
    match t {
        EntityType::DateOfBirth => EntityType::Date,
        t => t,
    }
}

/// Counts for one data type.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    tp_pred: u64,
    fp: u64,
    matched_gold: u64,
    support: u64,
}

/// Precision over predictions, recall over gold spans (a prediction and a gold span are
/// counted apart, so the two totals differ), and their F1; each 0 where undefined.
fn prf(c: Counts) -> (f64, f64, f64) {
    let p = fraction(c.tp_pred as usize, (c.tp_pred + c.fp) as usize).unwrap_or(0.0);
    let r = fraction(c.matched_gold as usize, c.support as usize).unwrap_or(0.0);
    (p, r, f1(p, r))
}

/// Scores predictions against gold, per data type, with each data set's own vocabulary.
#[derive(Debug, Default)]
pub struct Scorer {
    per: BTreeMap<String, Counts>,
    vocab: BTreeMap<String, BTreeSet<String>>,
}

impl Scorer {
    /// A scorer knowing which data types each data set annotates.
    pub fn new(examples: &[Example]) -> Self {
        let mut vocab: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in examples {
            let v = vocab.entry(e.dataset.clone()).or_default();
            for (t, _) in &e.spans {
                if ours(t).is_some() {
                    v.insert(t.clone());
                }
            }
        }
        Scorer {
            per: BTreeMap::new(),
            vocab,
        }
    }

    /// Adds one example's predictions.
    pub fn add(&mut self, ex: &Example, pred: &[(EntityType, Range<usize>)]) {
        let overlaps = |a: &Range<usize>, b: &Range<usize>| a.start < b.end && b.start < a.end;
        let empty = BTreeSet::new();
        let vocab = self.vocab.get(&ex.dataset).unwrap_or(&empty);
        for (dt, g) in &ex.spans {
            let Some(t) = ours(dt) else { continue };
            let c = self.per.entry(dt.clone()).or_default();
            c.support += 1;
            if pred
                .iter()
                .any(|(p, r)| scored_as(*p) == t && overlaps(r, g))
            {
                c.matched_gold += 1;
            }
        }
        for (p, r) in pred {
            let t = scored_as(*p);
            let hit = ex
                .spans
                .iter()
                .find(|(dt, g)| ours(dt) == Some(t) && overlaps(r, g));
            match hit {
                Some((dt, _)) => self.per.entry(dt.clone()).or_default().tp_pred += 1,
                None => {
                    let Some(dt) = vocab.iter().find(|dt| ours(dt) == Some(t)) else {
                        continue;
                    };
                    self.per.entry(dt.clone()).or_default().fp += 1;
                }
            }
        }
    }

    /// The contract's JSON: overall and per-type precision/recall/F1 (+ support).
    pub fn report(&self, mb_per_s: f64) -> Value {
        let mut all = Counts::default();
        let mut per = serde_json::Map::new();
        for (t, c) in &self.per {
            all.tp_pred += c.tp_pred;
            all.fp += c.fp;
            all.matched_gold += c.matched_gold;
            all.support += c.support;
            let (p, r, f) = prf(*c);
            per.insert(
                t.clone(),
                json!({"precision": round(p), "recall": round(r), "f1": round(f), "support": c.support}),
            );
        }
        let (p, r, f) = prf(all);
        json!({
            "overall": {"precision": round(p), "recall": round(r), "f1": round(f)},
            "per_type": per,
            "mb_per_s": round(mb_per_s),
        })
    }
}

pub(super) fn predictions(text: &str, dets: Vec<Detection>) -> Vec<(EntityType, Range<usize>)> {
    let _ = text;
    dets.into_iter().map(|d| (d.entity, d.span)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str, spans: &[(&str, Range<usize>)]) -> Example {
        Example {
            text: text.into(),
            spans: spans
                .iter()
                .map(|(t, r)| (t.to_string(), r.clone()))
                .collect(),
            dataset: "d".into(),
            group: "g".into(),
            plain: false,
            trainable: true,
        }
    }

    #[test]
    fn overlap_counts_and_unannotated_types_are_not_scored() {
        let e = ex(
            "Call Ann at 555",
            &[("PERSON", 5..8), ("PHONE_NUMBER", 12..15)],
        );
        let mut s = Scorer::new(std::slice::from_ref(&e));
        s.add(
            &e,
            &[
                (EntityType::Person, 5..7),
                (EntityType::Email, 0..4),
                (EntityType::Phone, 0..4),
            ],
        );
        let r = s.report(1.0);
        assert_eq!(r["per_type"]["PERSON"]["recall"], 1.0);
        assert_eq!(r["per_type"]["PERSON"]["precision"], 1.0);
        assert_eq!(r["per_type"]["PHONE_NUMBER"]["recall"], 0.0);
        assert_eq!(r["per_type"]["PHONE_NUMBER"]["precision"], 0.0);
        assert!(r["per_type"].get("EMAIL_ADDRESS").is_none());
        assert_eq!(r["overall"]["precision"], 0.5);
    }
}
