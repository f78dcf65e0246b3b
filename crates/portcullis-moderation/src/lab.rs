//! Training and evaluation of the local classifier on `../shared/data/moderation/` — the code
//! behind `portcullis train moderation` and `portcullis eval moderation`.

use crate::classifier::{
    DIMS, FIRST_CATEGORY, GATES, HEADS, Model, POLICY, features, gates, words,
};
pub use portcullis_lab::LabError;
use portcullis_lab::files::{read, rows, write};
use portcullis_lab::licence::{refuse_untrainable, trainable_benign};
use portcullis_lab::metrics::{auprc, precision_recall_f1, round, share_at};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Sets whose licences forbid shipping weights trained on them (see SOURCES.md).
pub const NOT_TRAINABLE: [&str; 2] = ["toxicchat", "ethos"];

/// The set in OpenAI's moderation style (the anchor of the goal; SOURCES.md) and its extra
/// weight: the other sets label by other policies (profanity as offensive, bare requests as
/// harmful) and at equal weight pull the `content` gate away from it.
const ANCHOR_SET: &str = "openai_moderation";
const ANCHOR_WEIGHT: f32 = 10.0;

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

/// Reads JSON-lines files of `{text, label, categories}`.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Example>, LabError> {
    let mut out = Vec::new();
    for p in paths {
        let text = read(p)?;
        for row in rows(p, &text, serde_json::from_str::<Line>) {
            let (_, l) = row?;
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
fn is_content(ex: &Example) -> bool {
    CONTENT_SETS.contains(&ex.dataset.as_str())
}

/// The head targets of an example: `Some(true/false)` per head, `None` where unknown. A clean
/// text is negative for both gates; a flagged one is positive for its own gate only. The
/// policy head learns the anchor set alone.
fn targets(ex: &Example) -> Vec<Option<bool>> {
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

/// Inverse document frequency per hashed feature over `feats` (smoothed, as in tf-idf).
fn idf(feats: &[Vec<u32>]) -> Vec<f32> {
    let mut df = vec![0u32; DIMS];
    for f in feats {
        for &k in f {
            df[k as usize] += 1;
        }
    }
    let n = feats.len() as f32;
    df.iter()
        .map(|d| ((n + 1.0) / (*d as f32 + 1.0)).ln() + 1.0)
        .collect()
}

/// Fits a model on `data`: per head, L2-regularised logistic regression on the class-balanced,
/// set-weighted log loss, solved to convergence (the heads in parallel).
pub fn fit(data: &[Example]) -> Model {
    let feats: Vec<Vec<u32>> = data.iter().map(|e| features(&e.text)).collect();
    let tg: Vec<Vec<Option<bool>>> = data.iter().map(targets).collect();
    let mut m = Model::zeros();
    m.idf = idf(&feats);
    let norms: Vec<f32> = feats.iter().map(|f| m.norm(f)).collect();
    // Each set counts about equally, so the two large hate-speech sets do not drown the rest;
    // the anchor set, whose style of text the goal is measured on, counts more.
    let mut per_set: std::collections::HashMap<&str, usize> = Default::default();
    for e in data {
        *per_set.entry(e.dataset.as_str()).or_default() += 1;
    }
    let mean = data.len() as f32 / per_set.len().max(1) as f32;
    let set_weight: Vec<f32> = data
        .iter()
        .map(|e| {
            let w = (mean / per_set[e.dataset.as_str()] as f32)
                .sqrt()
                .clamp(0.25, 4.0);
            if e.dataset == ANCHOR_SET {
                w * ANCHOR_WEIGHT
            } else {
                w
            }
        })
        .collect();
    // The inverse strength of the L2 penalty: out of fold on the anchor set, 1 and 3 tie
    // (0.803, 0.802) and 10 is worse (0.796); 3 costs the hate-speech sets less.
    const C: f64 = 3.0;
    let fitted: Vec<(Vec<f32>, f32)> = std::thread::scope(|s| {
        let jobs: Vec<_> = (0..HEADS.len())
            .map(|h| {
                let (tg, set_weight, feats, norms, idf) =
                    (&tg, &set_weight, &feats, &norms, &m.idf);
                s.spawn(move || {
                    let pos = tg.iter().filter(|t| t[h] == Some(true)).count().max(1) as f64;
                    let neg = tg.iter().filter(|t| t[h] == Some(false)).count().max(1) as f64;
                    let (wp, wn) = ((pos + neg) / (2.0 * pos), (pos + neg) / (2.0 * neg));
                    let rows: Vec<(usize, bool, f64)> = (0..tg.len())
                        .filter_map(|i| {
                            let y = tg[i][h]?;
                            // The policy head sees the anchor set alone, so its set weight
                            // (10×) would only weaken its penalty tenfold.
                            let sw = if h == POLICY {
                                1.0
                            } else {
                                f64::from(set_weight[i])
                            };
                            Some((i, y, sw * if y { wp } else { wn }))
                        })
                        .collect();
                    if h == POLICY {
                        // Naive-Bayes-weighted (NB-LR): each feature scaled by its log-count
                        // ratio, so the penalty shrinks features that do not tell the classes
                        // apart. Out of fold on the anchor set this head alone gains most from
                        // it; applied to every head it costs (see BENCHMARKS.md).
                        let r = log_count_ratio(&rows, feats);
                        let scaled: Vec<f32> =
                            idf.iter().zip(&r).map(|(i, r)| i * *r as f32).collect();
                        let (w, b) = regularised_logistic(&rows, feats, norms, &scaled, C);
                        (w.iter().zip(&r).map(|(w, r)| w * *r as f32).collect(), b)
                    } else {
                        regularised_logistic(&rows, feats, norms, idf, C)
                    }
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    for (h, (w, b)) in fitted.into_iter().enumerate() {
        m.set_head(h, &w);
        m.bias[h] = b;
    }
    m
}

/// Log-count ratio per feature (Wang & Manning's NB weighting, over the rows' weights): how
/// much more of the positive rows' weight than of the negative rows' holds it, smoothed by one.
fn log_count_ratio(rows: &[(usize, bool, f64)], feats: &[Vec<u32>]) -> Vec<f64> {
    let (mut p, mut q) = (vec![1.0f64; DIMS], vec![1.0f64; DIMS]);
    for &(i, y, wt) in rows {
        let v = if y { &mut p } else { &mut q };
        for &k in &feats[i] {
            v[k as usize] += wt;
        }
    }
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    p.iter()
        .zip(&q)
        .map(|(p, q)| ((p / sp) / (q / sq)).ln())
        .collect()
}

/// L2-regularised logistic regression fit to convergence by L-BFGS: `rows` are (example,
/// target, weight); minimises the weighted log loss plus `|w|² / 2c` (the bias is free).
fn regularised_logistic(
    rows: &[(usize, bool, f64)],
    feats: &[Vec<u32>],
    norms: &[f32],
    idf: &[f32],
    c: f64,
) -> (Vec<f32>, f32) {
    let n = DIMS + 1;
    // The loss and its gradient at `x` (weights, then the bias).
    let eval = |x: &[f64], g: &mut [f64]| -> f64 {
        let mut loss = 0.0;
        for (gk, xk) in g[..DIMS].iter_mut().zip(&x[..DIMS]) {
            *gk = xk / c;
            loss += xk * xk / (2.0 * c);
        }
        g[DIMS] = 0.0;
        for &(i, y, wt) in rows {
            let scale = 1.0 / f64::from(norms[i]);
            let z = x[DIMS]
                + feats[i]
                    .iter()
                    .map(|&k| x[k as usize] * f64::from(idf[k as usize]) * scale)
                    .sum::<f64>();
            // log(1 + e^z) - y z, computed stably.
            let softplus = if z > 0.0 {
                z + (-z).exp().ln_1p()
            } else {
                z.exp().ln_1p()
            };
            loss += wt * (softplus - if y { z } else { 0.0 });
            let p = 1.0 / (1.0 + (-z).exp());
            let d = wt * (p - f64::from(u8::from(y)));
            for &k in &feats[i] {
                g[k as usize] += d * f64::from(idf[k as usize]) * scale;
            }
            g[DIMS] += d;
        }
        loss
    };
    let x = portcullis_lab::lbfgs::minimise(n, eval, 300);
    (
        x[..DIMS].iter().map(|v| *v as f32).collect(),
        x[DIMS] as f32,
    )
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

/// The cut on a gate's logits with the best F0.5 on `scored` (the gate's own sets).
fn best_f05_cut(scored: &[(f32, bool)]) -> f32 {
    let mut v = scored.to_vec();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total = v.iter().filter(|(_, y)| *y).count();
    let (mut tp, mut best) = (0usize, (0f32, -1f64));
    for (k, (s, y)) in v.iter().enumerate() {
        tp += usize::from(*y);
        let (p, r, _) = precision_recall_f1(tp, k + 1 - tp, total - tp);
        // F0.5: precision counts twice as much as recall; a gateway default must be quiet.
        let f = if p + r == 0.0 {
            0.0
        } else {
            1.25 * p * r / (0.25 * p + r)
        };
        if f > best.1 && v.get(k + 1).is_none_or(|n| n.0 < *s) {
            let next = v.get(k + 1).map_or(*s - 1.0, |n| n.0);
            best = ((s + next) / 2.0, f);
        }
    }
    best.0
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
        let f = precision_recall_f1(tp, fp, fn_).2;
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

/// Of `start` and then each value of `grid`, the one under which `score(i, value)` (of the
/// `i`th example) ranks the anchor set best (out-of-fold AUPRC; the earliest of ties): how the
/// training command picks each weight it adds on top of the fitted heads.
fn best_on_anchor(
    data: &[Example],
    start: f32,
    grid: impl Iterator<Item = f32>,
    score: impl Fn(usize, f32) -> f32,
) -> f32 {
    let anchor: Vec<(usize, bool)> = data
        .iter()
        .enumerate()
        .filter(|(_, e)| e.dataset == ANCHOR_SET)
        .map(|(i, e)| (i, e.label == 1))
        .collect();
    let ap = |x: f32| {
        let v: Vec<(f32, bool)> = anchor.iter().map(|(i, y)| (score(*i, x), *y)).collect();
        auprc(&v)
    };
    let mut best = (start, ap(start));
    for x in grid {
        let a = ap(x);
        if a > best.1 {
            best = (x, a);
        }
    }
    best.0
}

/// The offset (a grid of quarter logits, or none) under which a text's best sentence reading
/// gives the content gate its best out-of-fold AUPRC on the anchor set.
fn sentence_offset(data: &[Example], readings: &[Vec<(f32, f32)>]) -> f32 {
    let grid = (0..=16).map(|i| i as f32 / 4.0);
    best_on_anchor(data, f32::INFINITY, grid, |i, c| {
        readings[i].first().map_or(0.0, |(w, s)| w.max(s - c))
    })
}

/// The weight (a grid of quarters up to 2) of the policy head's whole-text logit in the
/// content gate (as [`gates`] forms it, with each text's `rules` logit) that gives the gate
/// its best out-of-fold AUPRC on the anchor set.
fn policy_weight(
    data: &[Example],
    readings: &[Vec<(f32, f32)>],
    rules: &[f32],
    offset: f32,
) -> f32 {
    let grid = (1..=8).map(|i| i as f32 / 4.0);
    best_on_anchor(data, 0.0, grid, |i, a| {
        gates(&readings[i], offset, a, rules[i])[0]
    })
}

/// `portcullis train moderation`: fits on `paths` (refusing non-trainable sets), reports
/// out-of-fold figures, writes the weights to `out`. Returns a summary.
pub fn train(paths: &[PathBuf], out: &Path) -> Result<Value, LabError> {
    let mut data = load(paths)?;
    data.retain(|e| e.dataset != "benign_prompts" || trainable_benign(&e.source));
    refuse_untrainable(
        data.iter().map(|e| e.dataset.as_str()),
        &NOT_TRAINABLE,
        "../shared/data/moderation/SOURCES.md",
    )?;
    // Out-of-fold scores (5 folds by a hash of the text) for the threshold and honest figures.
    const FOLDS: u64 = 5;
    let fold = |e: &Example| portcullis_core::hash::fnv1a(e.text.as_bytes()) % FOLDS;
    let mut readings: Vec<Vec<(f32, f32)>> = vec![Vec::new(); data.len()];
    for k in 0..FOLDS {
        let train: Vec<Example> = data.iter().filter(|e| fold(e) != k).cloned().collect();
        let m = fit(&train);
        for (i, e) in data.iter().enumerate().filter(|(_, e)| fold(e) == k) {
            readings[i] = m.readings(&e.text);
        }
    }
    // The sentence offset: the best out-of-fold AUPRC of the content gate on the anchor set.
    let offset = sentence_offset(&data, &readings);
    let rules: Vec<f32> = data
        .iter()
        .map(|e| crate::rules::logit(&words(&e.text)))
        .collect();
    let policy = policy_weight(&data, &readings, &rules, offset);
    let gate_oof: Vec<[f32; GATES]> = readings
        .iter()
        .zip(&rules)
        .map(|(r, rules)| gates(r, offset, policy, *rules))
        .collect();
    // Each gate's cut is its best F0.5 on the sets that define its policy: the anchor set for
    // `content` (the sets of hate speech label much milder text, so their best cut would be
    // too harsh or too lax elsewhere), its own sets for `request`. Shifting the biases by the
    // cuts puts both gates on one scale; the flagged threshold is then chosen on the union.
    let cuts: Vec<f32> = (0..GATES)
        .map(|h| {
            let own: Vec<(f32, bool)> = data
                .iter()
                .zip(&gate_oof)
                .filter(|(e, _)| {
                    if h == 0 {
                        e.dataset == ANCHOR_SET
                    } else {
                        !is_content(e)
                    }
                })
                .map(|(e, z)| (z[h], e.label == 1))
                .collect();
            // Raised until safe-but-scary prompts (XSTest's label 0) stay under 4 % false
            // positives.
            let mut safe: Vec<f32> = data
                .iter()
                .zip(&gate_oof)
                .filter(|(e, _)| e.dataset == "xstest" && e.label == 0)
                .map(|(_, z)| z[h])
                .collect();
            safe.sort_by(|a, b| b.total_cmp(a));
            let strict = safe
                .get(safe.len() * 4 / 100)
                .map_or(f32::NEG_INFINITY, |z| z + 1e-4);
            best_f05_cut(&own).max(strict)
        })
        .collect();
    let mut oof: Vec<(f32, bool, bool)> = Vec::with_capacity(data.len());
    let mut oof_by_set: std::collections::BTreeMap<String, Vec<(f32, bool)>> = Default::default();
    for (e, z) in data.iter().zip(&gate_oof) {
        let flag = (0..GATES)
            .map(|h| z[h] - cuts[h])
            .fold(f32::NEG_INFINITY, f32::max);
        let s = 1.0 / (1.0 + (-flag).exp());
        oof.push((s, e.label == 1, e.dataset == "xstest"));
        oof_by_set
            .entry(e.dataset.clone())
            .or_default()
            .push((s, e.label == 1));
    }
    let threshold = choose_threshold(&oof);
    let mut model = fit(&data);
    model.sentence_offset = offset;
    model.policy_weight = policy;
    for (b, cut) in model.bias.iter_mut().zip(&cuts) {
        *b -= cut;
    }
    model.threshold = threshold;
    write(out, &model.to_bytes())?;
    let per_set: serde_json::Map<String, Value> = oof_by_set
        .iter()
        .map(|(k, v)| {
            let of = |y: bool| -> Vec<f32> {
                v.iter().filter(|o| o.1 == y).map(|o| o.0).collect()
            };
            let fpr = share_at(&of(false), threshold).map(round);
            let recall = share_at(&of(true), threshold).map(round);
            (
                k.clone(),
                json!({"oof_auprc": round(auprc(v)), "oof_fpr": fpr, "oof_recall": recall, "n": v.len()}),
            )
        })
        .collect();
    Ok(
        json!({"examples": data.len(), "threshold": threshold, "sentence_offset": offset, "policy_weight": policy, "out": out.display().to_string(), "out_of_fold": per_set}),
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

    /// Forty anchor-set rows, flagged and clean in turn.
    fn anchor_rows() -> Vec<Example> {
        (0..40)
            .map(|i| Example {
                dataset: ANCHOR_SET.into(),
                ..ex("x", u8::from(i % 2 == 0), &[])
            })
            .collect()
    }

    #[test]
    fn the_sentence_offset_is_kept_only_where_sentences_help() {
        let data = anchor_rows();
        // The whole text ranks flagged posts only at chance; their best sentence ranks them
        // clearly, 2.0 logits above clean posts' sentences.
        let helps: Vec<Vec<(f32, f32)>> = (0..40)
            .map(|i| {
                let whole = (i % 4) as f32 * 0.1;
                let sentence = if i % 2 == 0 { 3.0 } else { 1.0 };
                vec![(whole, sentence), (0.0, f32::NEG_INFINITY)]
            })
            .collect();
        let c = sentence_offset(&data, &helps);
        assert!(c.is_finite() && c < 3.0, "{c}");
        // Sentences that rank backwards are left out.
        let hurts: Vec<Vec<(f32, f32)>> = (0..40)
            .map(|i| {
                let whole = if i % 2 == 0 { 1.0 } else { -1.0 };
                let sentence = if i % 2 == 0 { 0.0 } else { 5.0 };
                vec![(whole, sentence)]
            })
            .collect();
        assert_eq!(sentence_offset(&data, &hurts), f32::INFINITY);
    }

    #[test]
    fn the_policy_head_weighs_in_only_where_it_ranks_better() {
        let data = anchor_rows();
        let reading = |content: f32, policy: f32| {
            let mut r = vec![(0.0, f32::NEG_INFINITY); HEADS.len()];
            r[0] = (content, f32::NEG_INFINITY);
            r[POLICY] = (policy, f32::NEG_INFINITY);
            r
        };
        // The content gate ranks at chance; the policy head separates the classes.
        let helps: Vec<_> = (0..40)
            .map(|i| reading((i % 4) as f32 * 0.1, if i % 2 == 0 { 2.0 } else { -2.0 }))
            .collect();
        assert!(policy_weight(&data, &helps, &[0.0; 40], 1.0) > 0.0);
        // A policy head that ranks backwards gets no weight.
        let hurts: Vec<_> = (0..40)
            .map(|i| {
                let y = i % 2 == 0;
                reading(if y { 1.0 } else { -1.0 }, if y { -2.0 } else { 2.0 })
            })
            .collect();
        assert_eq!(policy_weight(&data, &hurts, &[0.0; 40], 1.0), 0.0);
    }

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

    #[test]
    fn the_best_f05_cut_separates_a_clean_split_and_favours_precision() {
        let v = [(3.0, true), (2.0, true), (1.0, false), (0.0, false)];
        assert_eq!(best_f05_cut(&v), 1.5);
        // One positive among many negatives at the top: F0.5 stops above the negatives.
        let v = [
            (5.0, true),
            (4.0, false),
            (3.0, false),
            (2.0, true),
            (1.0, false),
        ];
        assert_eq!(best_f05_cut(&v), 4.5);
    }

    #[test]
    fn the_log_count_ratio_favours_what_tells_the_classes_apart() {
        // Feature 1 only in flagged rows, 2 only in clean ones, 3 in all alike.
        let feats = vec![vec![1, 3], vec![1, 3], vec![2, 3], vec![2, 3]];
        let rows = [
            (0, true, 1.0),
            (1, true, 1.0),
            (2, false, 1.0),
            (3, false, 1.0),
        ];
        let r = log_count_ratio(&rows, &feats);
        assert!(r[1] > 0.5 && r[2] < -0.5, "{} {}", r[1], r[2]);
        assert!(r[3].abs() < 1e-9 && r[0].abs() < 1e-9);
        // Row weights count: a heavier clean row holding feature 1 pulls its ratio down.
        let heavy = [(0, true, 1.0), (1, false, 5.0)];
        assert!(log_count_ratio(&heavy, &feats)[1] < r[1]);
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
