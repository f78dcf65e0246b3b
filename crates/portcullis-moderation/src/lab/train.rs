//! `portcullis train moderation`: out-of-fold readings, the choices made on them, the shipped
//! weights and a summary with per-set out-of-fold figures.

use super::LabError;
use super::calibrate::{best_f05_cut, choose_threshold, policy_weight, sentence_offset};
use super::data::{ANCHOR_SET, Example, NOT_TRAINABLE, is_content, load};
use super::fit::fit;
use crate::classifier::{GATES, gates, rule_logits, words};
use portcullis_lab::files::write;
use portcullis_lab::licence::{refuse_untrainable, trainable_benign};
use portcullis_lab::metrics::{auprc, round, share_at};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Sets of real users' requests and questions that may train (benign_prompts' trainable rows,
/// HaluEval's QA questions and dialogue turns): the flagged threshold keeps each set's clean
/// rows under [`super::calibrate::ORDINARY_FPR`] out of fold.
const REAL_REQUESTS: [&str; 3] = ["benign_prompts", "halueval_qa", "halueval_dialogue"];

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
    data.extend(super::ordinary::generate());
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
    let rules: Vec<[f32; GATES]> = data
        .iter()
        .map(|e| rule_logits(&e.text, &words(&e.text)))
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
    // Real users' ordinary prompts and questions among the trainable sets (the generated rows
    // are left out: they trained the gate and are easier than real traffic).
    let ordinary: Vec<Vec<f32>> = REAL_REQUESTS
        .iter()
        .map(|set| {
            data.iter()
                .zip(&oof)
                .filter(|(e, _)| e.dataset == *set && e.label == 0)
                .map(|(_, o)| o.0)
                .collect()
        })
        .collect();
    let threshold = choose_threshold(&oof, &ordinary);
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
