//! `train OUT FILE…` / `eval FILE…`: what `portcullis train|eval injection` do, without
//! building the gateway; `oof FILE…` (each text's out-of-fold score), `explain FILE…`, `patterns FILE…`, `rules FILE…`, `as-documents FILE…` and `rag-documents FILE…` are
//! diagnostics.
//! `cargo run --release -p portcullis-injection --example lab -- eval F`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

fn main() {
    let mut args = std::env::args_os().skip(1);
    let cmd = args
        .next()
        .and_then(|a| a.into_string().ok())
        .unwrap_or_default();
    let rest: Vec<std::path::PathBuf> = args.map(Into::into).collect();
    let out = match cmd.as_str() {
        "train" => portcullis_injection::lab::train(&rest[1..], &rest[0]).unwrap(),
        "eval" => portcullis_injection::lab::eval(&rest).unwrap(),
        "oof" => {
            // Each labelled text's out-of-fold score, one JSON line each.
            for v in portcullis_injection::lab::out_of_fold_scores(&rest).unwrap() {
                println!("{v}");
            }
            return;
        }
        "explain" => {
            // Each row's explanation (read as the gateway reads its kind), one JSON line each,
            // with the row's index and label as the file gives them.
            // INJ_MODEL=FILE explains with weights from FILE instead of the shipped ones.
            let own = std::env::var_os("INJ_MODEL").map(|f| {
                portcullis_injection::detector::Model::from_bytes(&std::fs::read(f).unwrap())
                    .unwrap()
            });
            let builtin = portcullis_injection::detector::Model::builtin();
            let d = own.as_ref().unwrap_or(builtin);
            for p in &rest {
                for (i, line) in std::fs::read_to_string(p).unwrap().lines().enumerate() {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    let Some(text) = v["text"].as_str() else {
                        continue;
                    };
                    let document = matches!(
                        v["category"].as_str(),
                        Some("indirect_injection" | "clean_context")
                    );
                    let e = d.explain(text, document, 8);
                    println!(
                        "{}",
                        serde_json::json!({"file": p, "index": i, "label": v["label"],
                                           "explanation": e})
                    );
                }
            }
            return;
        }
        "patterns" => {
            // Per rule pattern (index into RULES) and file: rows matched, by label.
            let re = portcullis_injection::rules::regex().unwrap();
            let mut counts = std::collections::BTreeMap::<String, usize>::new();
            for p in &rest {
                let name = p
                    .parent()
                    .and_then(|d| d.file_name())
                    .unwrap()
                    .to_string_lossy();
                let name = if name == "moderation" {
                    p.file_stem().unwrap().to_string_lossy()
                } else {
                    name
                };
                for line in std::fs::read_to_string(p).unwrap().lines() {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    let Some(text) = v["text"].as_str() else {
                        continue;
                    };
                    let folded = portcullis_injection::normalize::fold(text);
                    let mut seen: Vec<usize> = re
                        .find_iter(&folded)
                        .map(|m| m.pattern().as_usize())
                        .collect();
                    seen.sort_unstable();
                    seen.dedup();
                    for k in seen {
                        *counts
                            .entry(format!("{k:02} {name} {}", v["label"]))
                            .or_default() += 1;
                    }
                }
            }
            serde_json::json!(counts)
        }
        "rules" => {
            // How often the rules fire on attacks and on benign texts.
            let data = portcullis_injection::lab::load(&rest).unwrap();
            let mut counts = std::collections::BTreeMap::<String, (usize, usize)>::new();
            for e in &data {
                let Some(y) = e.attack else { continue };
                let hits = portcullis_injection::rules::matches(
                    &portcullis_injection::normalize::fold(&e.text),
                    e.document,
                );
                for h in
                    hits.iter()
                        .map(|h| h.to_string())
                        .chain(std::iter::once(if hits.is_empty() {
                            "(none)".to_string()
                        } else {
                            "(any)".to_string()
                        }))
                {
                    let c = counts.entry(h).or_default();
                    if y { c.0 += 1 } else { c.1 += 1 }
                }
            }
            serde_json::json!(counts)
        }
        "as-documents" => {
            // How often benign texts are flagged when read as documents (windows and
            // lines): prompts full of instructions stand in for such tool results.
            let data = portcullis_injection::lab::load(&rest).unwrap();
            let m = portcullis_injection::detector::Model::builtin();
            let benign: Vec<&str> = data
                .iter()
                .filter(|e| e.attack == Some(false))
                .map(|e| e.text.as_str())
                .collect();
            let flagged = benign
                .iter()
                .filter(|t| m.score_document(t).value >= m.threshold)
                .count();
            serde_json::json!({"n_benign": benign.len(), "flagged": flagged,
                                   "fpr": flagged as f64 / benign.len().max(1) as f64})
        }
        "rag-documents" => {
            // How often ordinary documents are flagged: the RAG sets' passages, and their
            // answers of two lines or more (lists, poems, code: what tool results look like).
            let m = portcullis_injection::detector::Model::builtin();
            let mut seen = std::collections::HashSet::new();
            let mut per_file = serde_json::Map::new();
            for p in &rest {
                let (mut n, mut flagged, mut answers, mut answers_flagged) = (0, 0, 0, 0);
                for line in std::fs::read_to_string(p).unwrap().lines() {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    let passages = v["context"].as_array().into_iter().flatten();
                    for t in passages.filter_map(|c| c.as_str()) {
                        if t.trim().len() >= 40 && seen.insert(t.to_owned()) {
                            n += 1;
                            flagged += usize::from(m.score_document(t).value >= m.threshold);
                        }
                    }
                    let answer = v["response"].as_str().unwrap_or_default();
                    let lines = answer.lines().filter(|l| !l.trim().is_empty()).count();
                    if lines >= 2 && seen.insert(answer.to_owned()) {
                        answers += 1;
                        answers_flagged +=
                            usize::from(m.score_document(answer).value >= m.threshold);
                    }
                }
                per_file.insert(
                    p.display().to_string(),
                    serde_json::json!({"passages": n, "passages_flagged": flagged,
                                       "answers": answers, "answers_flagged": answers_flagged}),
                );
            }
            serde_json::Value::Object(per_file)
        }
        _ => panic!(
            "usage: lab train OUT FILE… | eval FILE… | oof FILE… | explain FILE… | patterns FILE… | rules FILE… | as-documents FILE… | rag-documents FILE…"
        ),
    };
    println!("{out}");
}
