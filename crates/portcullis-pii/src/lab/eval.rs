//! `portcullis eval pii`: the shipped scanner scored on labelled sets, and how often it flags
//! prose with no personal data in it.
//!
//! The figures score the detector: every name it finds counts, as the guard's `names = "all"`
//! sees them. The span sets label every person, including those a text only talks about, so
//! the report adds `names`: of the labelled names, how many were found and how many carry a
//! personal cue — the share the default policy (`names = "personal"`) pseudonymises.

use super::LabError;
use super::data::{Example, load};
use super::scoring::{Scorer, predictions};
use crate::ner::Tagger;
use crate::{ScanOptions, scan_with};
use portcullis_lab::metrics::round;
use portcullis_lab::throughput::steady_mb_per_s;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;

/// `portcullis eval pii`: the shipped scanner on `paths`, as the contract's JSON.
pub fn eval(paths: &[PathBuf]) -> Result<Value, LabError> {
    let examples = load(paths, true)?;
    let (scorer, mbs) = score(&examples, &Tagger::builtin());
    let mut report = scorer.report(mbs);
    report["names"] = names(&examples);
    // Prose with no personal data in it (benign prompts): how often the scanner cries wolf.
    // Only rows the tagger never trained on count.
    let prose: Vec<&Example> = examples
        .iter()
        .filter(|e| e.plain && !e.trainable)
        .collect();
    if !prose.is_empty() {
        let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut flagged = 0u64;
        for e in &prose {
            let dets = crate::scan(&e.text, &ScanOptions::default());
            flagged += u64::from(!dets.is_empty());
            for d in dets {
                *kinds.entry(d.entity.name()).or_default() += 1;
            }
        }
        report["prose"] = json!({
            "texts": prose.len(),
            "with_findings": flagged,
            "rate": round(flagged as f64 / prose.len() as f64),
            "findings_by_type": kinds,
        });
    }
    Ok(report)
}

/// Of the labelled names (`PERSON`), how many the scan finds as names, and how many of those
/// it finds personal (see [`crate::personal`]).
fn names(examples: &[Example]) -> Value {
    let (mut labelled, mut found, mut personal) = (0u64, 0u64, 0u64);
    for ex in examples.iter().filter(|e| !e.plain) {
        let gold: Vec<&std::ops::Range<usize>> = ex
            .spans
            .iter()
            .filter(|(t, _)| t == "PERSON")
            .map(|(_, r)| r)
            .collect();
        if gold.is_empty() {
            continue;
        }
        let dets = crate::scan(&ex.text, &ScanOptions::default());
        for g in gold {
            labelled += 1;
            let hit = dets.iter().find(|d| {
                d.entity == crate::EntityType::Person
                    && d.span.start < g.end
                    && g.start < d.span.end
            });
            found += u64::from(hit.is_some());
            personal += u64::from(hit.is_some_and(|d| d.personal.is_some()));
        }
    }
    json!({
        "labelled": labelled,
        "found": found,
        "personal": personal,
        "personal_share": round(personal as f64 / labelled.max(1) as f64),
    })
}

fn score(examples: &[Example], tagger: &Tagger<'_>) -> (Scorer, f64) {
    let mut scorer = Scorer::new(examples);
    let opts = ScanOptions::default();
    let texts: Vec<&Example> = examples.iter().filter(|e| !e.plain).collect();
    for ex in &texts {
        let dets = scan_with(&ex.text, &opts, Some(tagger));
        scorer.add(ex, &predictions(&ex.text, dets));
    }
    // Timed after that first pass, which warmed the regex engines up as the gateway's
    // warm-up does.
    let mb_per_s = steady_mb_per_s(|| {
        texts
            .iter()
            .map(|ex| {
                black_box(scan_with(&ex.text, &opts, Some(tagger)));
                ex.text.len()
            })
            .sum()
    });
    (scorer, mb_per_s)
}
