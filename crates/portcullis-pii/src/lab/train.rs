//! `portcullis train pii`: template-grouped out-of-fold figures, then the tagger fitted on
//! everything and written out.

use super::LabError;
use super::data::{Example, load, ours};
use super::scoring::{Scorer, predictions};
use crate::ner::{Model, Tagger, Trainer, gold_tags, lexicon, tokenize};
use crate::{EntityType, ScanOptions, scan_with};
use portcullis_core::hash::fnv1a;
use portcullis_lab::files::write;
use serde_json::{Value, json};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Training epochs.
const EPOCHS: usize = 5;
/// Features kept in the shipped model.
const KEEP: usize = 200_000;
/// Folds for the out-of-fold estimate.
const FOLDS: u64 = 5;

/// Tokens of unannotated prose tagged all-`O` in training.
const PROSE_TOKENS: usize = 15_000;
/// Sub-folds for the lexicon: each training text sees a lexicon built without its own group.
const LEXICON_FOLDS: u64 = 4;

fn fit(examples: &[&Example]) -> Model {
    let prepared: Vec<_> = examples
        .iter()
        .map(|e| {
            let toks = tokenize(&e.text);
            let spans: Vec<(EntityType, Range<usize>)> = e
                .spans
                .iter()
                .filter_map(|(t, r)| ours(t).map(|o| (o, r.clone())))
                .collect();
            let gold = gold_tags(&toks, &spans);
            let part = fnv1a(format!("lexicon:{}", e.group).as_bytes()) % LEXICON_FOLDS;
            (e.text.as_str(), toks, gold, part, e.plain)
        })
        .collect();
    let lexicon_without = |part: Option<u64>| {
        lexicon(
            prepared
                .iter()
                .filter(|p| Some(p.3) != part || p.4)
                .map(|(t, k, g, ..)| (*t, k.as_slice(), g.as_slice())),
        )
    };
    let partial: Vec<_> = (0..LEXICON_FOLDS)
        .map(|k| lexicon_without(Some(k)))
        .collect();
    let mut tr = Trainer::new(lexicon_without(None));
    // All prose feeds the lexicon; a fixed sample of it (by hash) is also tagged all-`O`,
    // enough to teach sentence-initial ordinary words without drowning the annotated data.
    let mut prose: Vec<usize> = (0..prepared.len()).filter(|i| prepared[*i].4).collect();
    prose.sort_by_key(|i| fnv1a(prepared[*i].0.as_bytes()));
    let mut budget = PROSE_TOKENS;
    let prose_budget: std::collections::HashSet<usize> = prose
        .into_iter()
        .take_while(|i| {
            budget = budget.saturating_sub(prepared[*i].1.len());
            budget > 0
        })
        .collect();
    let mut order: Vec<usize> = (0..prepared.len()).collect();
    for epoch in 0..EPOCHS {
        // Deterministic shuffle: sort by a hash of (epoch, index).
        order.sort_by_key(|i| fnv1a(format!("{epoch}:{i}").as_bytes()));
        for &i in &order {
            let (text, toks, gold, part, plain) = &prepared[i];
            let lexicon = &partial[*part as usize];
            if *plain {
                if prose_budget.contains(&i) {
                    tr.learn_prose(text, toks, lexicon);
                }
            } else {
                tr.learn(text, toks, gold, lexicon);
            }
        }
    }
    tr.finish(KEEP)
}

fn fold_of(e: &Example) -> u64 {
    fnv1a(e.group.as_bytes()) % FOLDS
}

/// `portcullis train pii`: out-of-fold figures, then the shipped model written to `out`.
pub fn train(paths: &[PathBuf], out: &Path) -> Result<Value, LabError> {
    let examples = load(paths, false)?;
    let mut oof = Scorer::new(&examples);
    // Development aid: every out-of-fold prediction next to its gold spans, one JSON per line.
    let mut errors = std::env::var_os("PORTCULLIS_PII_OOF")
        .and_then(|p| std::fs::File::create(p).ok())
        .map(std::io::BufWriter::new);
    let mut bytes = 0usize;
    let mut secs = 0f64;
    for k in 0..FOLDS {
        let train: Vec<&Example> = examples.iter().filter(|e| fold_of(e) != k).collect();
        let test: Vec<Example> = examples
            .iter()
            .filter(|e| fold_of(e) == k && !e.plain)
            .cloned()
            .collect();
        let model = fit(&train);
        let tagger = Tagger::new(&model);
        for ex in &test {
            let t = Instant::now();
            let dets = scan_with(&ex.text, &ScanOptions::default(), Some(&tagger));
            secs += t.elapsed().as_secs_f64();
            bytes += ex.text.len();
            let pred = predictions(&ex.text, dets);
            if let Some(w) = errors.as_mut() {
                let show = |v: Vec<(String, &str)>| serde_json::to_value(v).unwrap_or_default();
                let gold = ex
                    .spans
                    .iter()
                    .map(|(t, r)| (t.clone(), &ex.text[r.clone()]))
                    .collect();
                let got = pred
                    .iter()
                    .map(|(t, r)| (t.name().to_owned(), &ex.text[r.clone()]))
                    .collect();
                let line = json!({"text": ex.text, "gold": show(gold), "pred": show(got)});
                let _ = writeln!(w, "{line}");
            }
            oof.add(ex, &pred);
        }
    }
    let all: Vec<&Example> = examples.iter().collect();
    let model = fit(&all);
    let blob = model.to_bytes();
    write(out, &blob)?;
    Ok(json!({
        "out_of_fold": oof.report(bytes as f64 / 1e6 / secs.max(1e-9)),
        "folds": FOLDS,
        "texts": examples.len(),
        "model": out.display().to_string(),
        "features": model.len(),
        "bytes": blob.len(),
    }))
}
