//! Training and evaluation of the local classifier on `../shared/data/moderation/` — the code
//! behind `portcullis train moderation` and `portcullis eval moderation`.

use crate::classifier::{DIMS, HEADS, Model, features};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why a lab command failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{path}: {message}")]
    Data { path: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Licence(String),
}

/// Sets whose licences forbid shipping weights trained on them (see SOURCES.md).
pub const NOT_TRAINABLE: [&str; 2] = ["toxicchat", "ethos"];

/// One labelled text.
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    pub label: u8,
    pub categories: Vec<String>,
    pub dataset: String,
    pub source: String,
}

/// A line of either format: moderation sets (`label` 0/1) or classification sets (`label`
/// `benign` / `harmful` / attack labels, which say nothing about moderation and are skipped).
#[derive(Debug, Deserialize)]
struct Line {
    text: String,
    label: Value,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    dataset: String,
    #[serde(default)]
    source: String,
}

/// benign_prompts rows that may train shipped weights (Apache-2.0 sources; SOURCES.md).
fn trainable_benign(source: &str) -> bool {
    [
        "mt_bench",
        "vicuna_bench",
        "seed_tasks",
        "normal_instructions",
    ]
    .iter()
    .any(|s| source.contains(s))
}

/// Reads JSON-lines files of `{text, label, categories}`.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Example>, LabError> {
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p).map_err(|e| LabError::Data {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let l: Line = serde_json::from_str(line).map_err(|e| LabError::Data {
                path: p.display().to_string(),
                message: format!("line {}: {e}", i + 1),
            })?;
            let label = match &l.label {
                Value::Number(n) => n.as_u64().unwrap_or(0).min(1) as u8,
                Value::String(s) if s == "benign" => 0,
                Value::String(s) if s == "harmful" => 1,
                _ => continue,
            };
            let mut dataset = l.dataset;
            if dataset.is_empty() {
                dataset = portcullis_core::hash::dataset_name(p);
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

/// The head targets of an example: `Some(true/false)` per head, `None` where unknown.
fn targets(ex: &Example) -> Vec<Option<bool>> {
    let mut t = vec![Some(ex.label == 1)];
    for head in &HEADS[1..] {
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

/// Deterministic xorshift for shuffling.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Fits a model on `data` (AdaGrad SGD on class-balanced logistic loss, fixed seed).
pub fn fit(data: &[Example]) -> Model {
    let feats: Vec<Vec<u32>> = data.iter().map(|e| features(&e.text)).collect();
    let tg: Vec<Vec<Option<bool>>> = data.iter().map(targets).collect();
    // Each set counts about equally, so the two large hate-speech sets do not drown the rest.
    let mut per_set: std::collections::HashMap<&str, usize> = Default::default();
    for e in data {
        *per_set.entry(e.dataset.as_str()).or_default() += 1;
    }
    let mean = data.len() as f32 / per_set.len().max(1) as f32;
    let set_weight: Vec<f32> = data
        .iter()
        .map(|e| {
            (mean / per_set[e.dataset.as_str()] as f32)
                .sqrt()
                .clamp(0.25, 4.0)
        })
        .collect();
    let mut m = Model::zeros();
    const EPOCHS: usize = 8;
    const LR: f32 = 0.4;
    const L2: f32 = 1e-6;
    for h in 0..HEADS.len() {
        let pos = tg.iter().filter(|t| t[h] == Some(true)).count().max(1) as f32;
        let neg = tg.iter().filter(|t| t[h] == Some(false)).count().max(1) as f32;
        let (wp, wn) = ((pos + neg) / (2.0 * pos), (pos + neg) / (2.0 * neg));
        let mut g2 = vec![1e-6f32; DIMS];
        let mut gb = 1e-6f32;
        let mut order: Vec<usize> = (0..data.len()).filter(|i| tg[*i][h].is_some()).collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ h as u64);
        for _ in 0..EPOCHS {
            for i in (1..order.len()).rev() {
                let j = (rng.next() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            for &i in &order {
                let y = if tg[i][h] == Some(true) { 1.0 } else { 0.0 };
                let f = &feats[i];
                let p = 1.0 / (1.0 + (-m.logit(h, f)).exp());
                let g = (p - y) * if y > 0.5 { wp } else { wn } * set_weight[i];
                let norm = 1.0 / (f.len().max(1) as f32).sqrt();
                for &k in f {
                    let k = k as usize;
                    let grad = g * norm + L2 * m.weights[h][k];
                    g2[k] += grad * grad;
                    m.weights[h][k] -= LR * grad / g2[k].sqrt();
                }
                gb += g * g;
                m.bias[h] -= LR * g / gb.sqrt();
            }
        }
    }
    m
}

/// Average precision (area under the precision-recall curve).
pub fn auprc(scored: &[(f32, bool)]) -> f64 {
    let mut v = scored.to_vec();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total = v.iter().filter(|(_, y)| *y).count();
    if total == 0 {
        return 0.0;
    }
    let (mut tp, mut ap) = (0usize, 0f64);
    for (k, (_, y)) in v.iter().enumerate() {
        if *y {
            tp += 1;
            ap += tp as f64 / (k + 1) as f64;
        }
    }
    ap / total as f64
}

fn prf(tp: usize, fp: usize, fn_: usize) -> (f64, f64, f64) {
    let p = if tp + fp == 0 {
        0.0
    } else {
        tp as f64 / (tp + fp) as f64
    };
    let r = if tp + fn_ == 0 {
        0.0
    } else {
        tp as f64 / (tp + fn_) as f64
    };
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f)
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

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
    let (p, r, f) = prf(tp, fp, fn_);
    let mut per = serde_json::Map::new();
    for (h, head) in HEADS.iter().enumerate().skip(1) {
        let (mut ctp, mut cfp, mut cfn, mut support) = (0, 0, 0, 0);
        for (e, s) in data.iter().zip(&scores) {
            let Some(gold) = targets(e)[h] else { continue };
            let pred = s.flagged >= model.threshold && s.categories[h - 1].1 >= 0.5;
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
        let (cp, cr, cf) = prf(ctp, cfp, cfn);
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

/// The flagged threshold: the best F1 on out-of-fold scores, raised until safe-but-scary
/// prompts (XSTest's label 0) stay under 5 % false positives.
fn choose_threshold(oof: &[(f32, bool, bool)]) -> f32 {
    let mut best = (0.5f32, -1.0f64);
    for step in 10..=95 {
        let t = step as f32 / 100.0;
        let (mut tp, mut fp, mut fn_) = (0, 0, 0);
        for (s, y, _) in oof {
            match (*s >= t, *y) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                _ => {}
            }
        }
        let f = prf(tp, fp, fn_).2;
        if f > best.1 {
            best = (t, f);
        }
    }
    let mut t = best.0;
    let safe: Vec<f32> = oof
        .iter()
        .filter(|(_, y, x)| *x && !*y)
        .map(|(s, _, _)| *s)
        .collect();
    while !safe.is_empty() && t < 0.99 {
        let fp = safe.iter().filter(|s| **s >= t).count() as f64 / safe.len() as f64;
        if fp <= 0.04 {
            break;
        }
        t += 0.01;
    }
    t
}

/// `portcullis train moderation`: fits on `paths` (refusing non-trainable sets), reports
/// out-of-fold figures, writes the weights to `out`. Returns a summary.
pub fn train(paths: &[PathBuf], out: &Path) -> Result<Value, LabError> {
    let mut data = load(paths)?;
    data.retain(|e| e.dataset != "benign_prompts" || trainable_benign(&e.source));
    if let Some(bad) = data
        .iter()
        .find(|e| NOT_TRAINABLE.contains(&e.dataset.as_str()))
    {
        return Err(LabError::Licence(format!(
            "'{}' may not train shipped weights (see ../shared/data/moderation/SOURCES.md); leave it out",
            bad.dataset
        )));
    }
    // Out-of-fold scores (5 folds by a hash of the text) for the threshold and honest figures.
    const FOLDS: u64 = 5;
    let fold = |e: &Example| portcullis_core::hash::fnv1a(e.text.as_bytes()) % FOLDS;
    let mut oof: Vec<(f32, bool, bool)> = vec![(0.0, false, false); data.len()];
    let mut oof_by_set: std::collections::BTreeMap<String, Vec<(f32, bool)>> = Default::default();
    for k in 0..FOLDS {
        let train: Vec<Example> = data.iter().filter(|e| fold(e) != k).cloned().collect();
        let m = fit(&train);
        for (i, e) in data.iter().enumerate().filter(|(_, e)| fold(e) == k) {
            let s = m.score(&e.text).flagged;
            oof[i] = (s, e.label == 1, e.dataset == "xstest");
            oof_by_set
                .entry(e.dataset.clone())
                .or_default()
                .push((s, e.label == 1));
        }
    }
    let threshold = choose_threshold(&oof);
    let mut model = fit(&data);
    model.threshold = threshold;
    std::fs::write(out, model.to_bytes()).map_err(|source| LabError::Write {
        path: out.display().to_string(),
        source,
    })?;
    let per_set: serde_json::Map<String, Value> = oof_by_set
        .iter()
        .map(|(k, v)| {
            let neg: Vec<_> = v.iter().filter(|(_, y)| !y).collect();
            let fpr = if neg.is_empty() {
                Value::Null
            } else {
                json!(round(
                    neg.iter().filter(|(s, _)| *s >= threshold).count() as f64 / neg.len() as f64
                ))
            };
            (
                k.clone(),
                json!({"oof_auprc": round(auprc(v)), "oof_fpr": fpr, "n": v.len()}),
            )
        })
        .collect();
    Ok(
        json!({"examples": data.len(), "threshold": threshold, "out": out.display().to_string(), "out_of_fold": per_set}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str, label: u8, cats: &[&str]) -> Example {
        Example {
            text: text.into(),
            label,
            categories: cats.iter().map(|c| c.to_string()).collect(),
            dataset: "t".into(),
            source: String::new(),
        }
    }

    #[test]
    fn average_precision_matches_hand_computation() {
        // Ranking: + - + -> AP = (1/1 + 2/3) / 2
        let v = [(0.9, true), (0.8, false), (0.7, true), (0.1, false)];
        assert!((auprc(&v) - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn subcategories_count_for_their_parent_and_unknown_is_not_negative() {
        let t = targets(&ex("x", 1, &["hate/threatening", "hate"]));
        assert_eq!(t[2], Some(true)); // hate
        assert_eq!(t[1], Some(false)); // harassment
        let t = targets(&ex("x", 1, &[]));
        assert_eq!((t[0], t[2]), (Some(true), None));
    }

    #[test]
    fn fitting_learns_a_separable_toy_problem() {
        let mut data = Vec::new();
        for i in 0..40 {
            data.push(ex(
                &format!("you stupid worthless moron number {i}"),
                1,
                &["harassment"],
            ));
            data.push(ex(&format!("please bake a lovely cake number {i}"), 0, &[]));
        }
        let m = fit(&data);
        assert!(m.score("what a stupid worthless moron").flagged > 0.8);
        assert!(m.score("bake a lovely cake").flagged < 0.2);
        let report = evaluate(&m, &data);
        assert_eq!(report["recall"], 1.0);
        assert!(report["per_category"]["harassment"]["support"] == 40);
    }
}
