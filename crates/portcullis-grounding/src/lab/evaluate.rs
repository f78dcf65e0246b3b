//! `portcullis eval grounding`: response-level precision, recall, F1 and balanced accuracy
//! (hallucinated = positive), span F1 where the set has spans, time per answer — and, per set,
//! balanced accuracy within quartiles of answer length, because on some sets length alone
//! separates the classes and a raw figure there proves nothing.

use super::data::{Record, load};
use crate::guard::DEFAULT_THRESHOLD;
use crate::support::{Documents, check};
use portcullis_lab::LabError;
use portcullis_lab::metrics::{precision_recall_f1, round};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What an evaluation prints: one line per set, then the contract's summary (last).
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub per_set: Vec<Value>,
    pub summary: Value,
    /// `{"file", "index", "score", "predicted"}` per record, in input order.
    pub predictions: Vec<Value>,
}

/// One scored record.
struct Scored {
    score: f32,
    predicted: bool,
    gold: bool,
    spans: Vec<Range<usize>>,
}

/// Scores `records` with the shipped check at the default threshold.
pub fn evaluate(records: &[Record]) -> Evaluation {
    let started = Instant::now();
    let scored: Vec<Scored> = records
        .iter()
        .map(|r| {
            let mut docs = Documents::new(&r.context);
            if let Some(q) = &r.question {
                docs.add_question(q);
            }
            let report = check(&r.response, &docs);
            let spans = report
                .unsupported(DEFAULT_THRESHOLD)
                .map(|c| c.span.clone())
                .collect();
            Scored {
                score: report.hallucination(),
                predicted: report.support < DEFAULT_THRESHOLD,
                gold: r.hallucinated,
                spans,
            }
        })
        .collect();
    let ms = started.elapsed().as_secs_f64() * 1e3 / records.len().max(1) as f64;
    let pairs: Vec<(bool, bool)> = scored.iter().map(|s| (s.predicted, s.gold)).collect();
    let (p, r, f) = prf(&pairs);
    let summary = json!({
        "precision": round(p),
        "recall": round(r),
        "f1": round(f),
        "balanced_accuracy": balanced_accuracy(&pairs).map(round),
        "span_f1": span_f1(records, &scored).map(round),
        "n": records.len(),
        "ms_per_answer": (ms * 1e4).round() / 1e4,
    });
    let predictions = records
        .iter()
        .zip(&scored)
        .map(|(r, s)| {
            json!({"file": r.file, "index": r.index, "score": round(f64::from(s.score)),
                   "predicted": s.predicted})
        })
        .collect();
    Evaluation {
        per_set: per_set(records, &scored),
        summary,
        predictions,
    }
}

/// `portcullis eval grounding`: the check on `paths`; `predictions` also gets one JSON line
/// per record.
pub fn eval(paths: &[PathBuf], predictions: Option<&Path>) -> Result<Evaluation, LabError> {
    let e = evaluate(&load(paths)?);
    if let Some(out) = predictions {
        let mut text = String::new();
        for p in &e.predictions {
            text.push_str(&p.to_string());
            text.push('\n');
        }
        portcullis_lab::files::write(out, text.as_bytes())?;
    }
    Ok(e)
}

fn prf(pairs: &[(bool, bool)]) -> (f64, f64, f64) {
    let count = |pred: bool, gold: bool| pairs.iter().filter(|p| **p == (pred, gold)).count();
    precision_recall_f1(count(true, true), count(true, false), count(false, true))
}

/// Mean of the recall on each class; `None` when a class is absent.
fn balanced_accuracy(pairs: &[(bool, bool)]) -> Option<f64> {
    let recall = |gold: bool| {
        let of: Vec<_> = pairs.iter().filter(|p| p.1 == gold).collect();
        (!of.is_empty()).then(|| of.iter().filter(|p| p.0 == gold).count() as f64 / of.len() as f64)
    };
    Some((recall(true)? + recall(false)?) / 2.0)
}

/// Byte-level F1 of the unsupported claims' spans against the annotated spans, over the
/// records that carry span annotations; `None` when no record has an annotated span (sets that
/// label whole responses give grounded answers `[]` and hallucinated ones `null`: nothing to
/// match there).
fn span_f1(records: &[Record], scored: &[Scored]) -> Option<f64> {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    let mut any = false;
    for (r, s) in records.iter().zip(scored) {
        let Some(gold) = &r.spans else { continue };
        any |= !gold.is_empty();
        let mark = |ranges: &[Range<usize>]| {
            let mut m = vec![false; r.response.len()];
            for g in ranges {
                for b in m.iter_mut().take(g.end).skip(g.start) {
                    *b = true;
                }
            }
            m
        };
        let (g, p) = (mark(gold), mark(&s.spans));
        for (g, p) in g.iter().zip(&p) {
            match (*p, *g) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                _ => {}
            }
        }
    }
    any.then(|| precision_recall_f1(tp, fp, fn_).2)
}

/// Per set: its figures and balanced accuracy within each quartile of answer length (words).
fn per_set(records: &[Record], scored: &[Scored]) -> Vec<Value> {
    let mut sets: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        sets.entry(r.file.as_str()).or_default().push(i);
    }
    sets.into_iter()
        .map(|(file, idx)| {
            let len = |i: usize| records[i].response.split_whitespace().count();
            let mut lengths: Vec<usize> = idx.iter().map(|&i| len(i)).collect();
            lengths.sort_unstable();
            let cut = |q: usize| lengths[(lengths.len() * q / 4).min(lengths.len() - 1)];
            let bounds = [0, cut(1), cut(2), cut(3), usize::MAX];
            let mut bands = Vec::new();
            for b in 0..4 {
                let (lo, hi) = (bounds[b], bounds[b + 1]);
                let members: Vec<(bool, bool)> = idx
                    .iter()
                    .filter(|&&i| len(i) > lo || (b == 0 && len(i) >= lo))
                    .filter(|&&i| len(i) <= hi)
                    .map(|&i| (scored[i].predicted, scored[i].gold))
                    .collect();
                if members.is_empty() {
                    continue;
                }
                let hallucinated = members.iter().filter(|m| m.1).count();
                bands.push(json!({
                    "words": if hi == usize::MAX { format!(">{lo}") } else { format!("{}-{hi}", if b == 0 { lo } else { lo + 1 }) },
                    "n": members.len(),
                    "hallucinated": hallucinated,
                    "balanced_accuracy": balanced_accuracy(&members).map(round),
                }));
            }
            let pairs: Vec<(bool, bool)> =
                idx.iter().map(|&i| (scored[i].predicted, scored[i].gold)).collect();
            let (p, r, f) = prf(&pairs);
            json!({
                "set": portcullis_lab::dataset_name(Path::new(file)),
                "n": idx.len(),
                "precision": round(p), "recall": round(r), "f1": round(f),
                "balanced_accuracy": balanced_accuracy(&pairs).map(round),
                "length_bands": bands,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        index: usize,
        response: &str,
        hallucinated: bool,
        spans: Option<Vec<Range<usize>>>,
    ) -> Record {
        Record {
            file: "t/data.jsonl".into(),
            index,
            context: vec!["Bob Barker hosted the show until he retired in 2007.".into()],
            question: Some("When did Barker retire?".into()),
            response: response.into(),
            hallucinated,
            spans,
        }
    }

    #[test]
    fn the_contract_keys_predictions_in_order_and_span_f1() {
        let bad = "He retired in 2009.";
        let records = [
            rec(0, "He retired in 2007.", false, Some(vec![])),
            rec(3, bad, true, Some(std::iter::once(14..18).collect())),
            rec(5, "Barker hosted the show.", false, None),
        ];
        let e = evaluate(&records);
        let keys: Vec<&String> = e.summary.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "balanced_accuracy",
                "f1",
                "ms_per_answer",
                "n",
                "precision",
                "recall",
                "span_f1"
            ]
        );
        assert_eq!(e.summary["balanced_accuracy"], 1.0);
        assert_eq!(e.summary["n"], 3);
        // The whole claim is marked, the gold span is the number: 4 of 19 bytes.
        let f1 = e.summary["span_f1"].as_f64().unwrap();
        assert!((f1 - 2.0 * 4.0 / (19.0 + 4.0)).abs() < 1e-3, "{f1}");
        let idx: Vec<_> = e.predictions.iter().map(|p| p["index"].clone()).collect();
        assert_eq!(idx, [0, 3, 5]);
        assert_eq!(e.predictions[1]["predicted"], true);
        assert_eq!(e.per_set[0]["set"], "t");
        assert!(
            e.per_set[0]["length_bands"]
                .as_array()
                .is_some_and(|b| !b.is_empty())
        );
    }

    #[test]
    fn span_f1_is_null_without_spans_and_ba_needs_both_classes() {
        let e = evaluate(&[
            rec(0, "He retired in 2007.", false, None),
            rec(1, "He retired in 2007.", false, Some(vec![])),
        ]);
        assert!(e.summary["span_f1"].is_null());
        assert!(e.summary["balanced_accuracy"].is_null());
    }
}
