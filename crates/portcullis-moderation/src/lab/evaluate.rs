//! `portcullis eval moderation`: the contract's metrics (overall and per category) for a
//! model on labelled sets.

use super::LabError;
use super::data::{Example, load, targets};
use crate::classifier::{FIRST_CATEGORY, HEADS, Model};
use portcullis_lab::metrics::{auprc, precision_recall_f1, round};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Instant;

/// Scores `data` with `model` and returns the contract's metrics.
pub fn evaluate(model: &Model, data: &[Example]) -> Value {
    let started = Instant::now();
    let scores: Vec<_> = data.iter().map(|e| model.score(&e.text)).collect();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let bytes: usize = data.iter().map(|e| e.text.len()).sum();
    let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
    let mut scored = Vec::with_capacity(data.len());
    for (e, s) in data.iter().zip(&scores) {
        let pred = s.flagged >= model.threshold;
        let gold = e.label == 1;
        scored.push((s.flagged, gold));
        match (pred, gold) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    let (p, r, f) = precision_recall_f1(tp, fp, fn_);
    let mut per = serde_json::Map::new();
    for (h, head) in HEADS.iter().enumerate().skip(FIRST_CATEGORY) {
        let (mut ctp, mut cfp, mut cfn, mut support) = (0, 0, 0, 0);
        for (e, s) in data.iter().zip(&scores) {
            let Some(gold) = targets(e)[h] else { continue };
            let pred = s.flagged >= model.threshold && s.categories[h - FIRST_CATEGORY].1 >= 0.5;
            support += usize::from(gold);
            match (pred, gold) {
                (true, true) => ctp += 1,
                (true, false) => cfp += 1,
                (false, true) => cfn += 1,
                _ => {}
            }
        }
        if support == 0 {
            continue;
        }
        let (cp, cr, cf) = precision_recall_f1(ctp, cfp, cfn);
        per.insert(
            (*head).to_owned(),
            json!({"precision": round(cp), "recall": round(cr), "f1": round(cf), "support": support}),
        );
    }
    json!({
        "precision": round(p),
        "recall": round(r),
        "f1": round(f),
        "fpr": round(if fp + tn == 0 { 0.0 } else { fp as f64 / (fp + tn) as f64 }),
        "auprc": round(auprc(&scored)),
        "per_category": per,
        "n": data.len(),
        "mb_per_s": round(bytes as f64 / 1e6 / secs),
    })
}

/// `portcullis eval moderation`: the shipped classifier on `paths`.
pub fn eval(paths: &[PathBuf]) -> Result<Value, LabError> {
    Ok(evaluate(Model::builtin(), &load(paths)?))
}
