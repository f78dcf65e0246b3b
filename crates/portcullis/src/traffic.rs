//! `portcullis eval traffic`: the whole configured input pipeline over labelled prompts, each
//! judged exactly as the gateway judges a user message — so what the policy does to ordinary
//! traffic (blocked, altered, flagged) and to harmful requests is measured as one thing.
//!
//! A row is harmful when `is_attack` is true or `label` is `jailbreak`, `injection`, `harmful`
//! or `1`; benign when `label` is `benign`, `0` or `no_pii`, or `is_attack` is false with no
//! other label; other rows are skipped. A benign row counts once, in the first of blocked,
//! altered (the text the model would see differs from what the user wrote), flagged (a guard
//! flagged it, or would have in monitor mode) and untouched.

use crate::scan::{Judgement, judge};
use portcullis_core::Pipeline;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which side of the measurement a row is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Ordinary traffic: the policy should leave it alone.
    Benign,
    /// An attack or a plainly harmful request: the policy should stop it.
    Harmful,
}

/// The group of a data row, by the label conventions of `../shared/data/SOURCES.md`.
pub fn group_of(row: &Value) -> Option<Group> {
    let label = match row.get("label") {
        Some(Value::String(s)) => Some(s.to_ascii_lowercase()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(if *b { "1" } else { "0" }.to_owned()),
        _ => None,
    };
    if row.get("is_attack") == Some(&Value::Bool(true)) {
        return Some(Group::Harmful);
    }
    match label.as_deref() {
        Some("jailbreak" | "injection" | "harmful" | "1") => Some(Group::Harmful),
        Some("benign" | "0" | "no_pii") => Some(Group::Benign),
        None if row.get("is_attack") == Some(&Value::Bool(false)) => Some(Group::Benign),
        _ => None,
    }
}

/// Counts of how the policy treated each group, per guard and per finding kind.
#[derive(Debug, Default)]
pub struct Tally {
    benign: [usize; 4],
    /// Harmful rows: blocked, flagged (not blocked), all.
    harmful: [usize; 3],
    per_guard: BTreeMap<String, [usize; 3]>,
    per_kind: BTreeMap<String, usize>,
    seconds: f64,
}

const BLOCKED: usize = 0;
const ALTERED: usize = 1;
const FLAGGED: usize = 2;
const UNTOUCHED: usize = 3;

impl Tally {
    /// Adds one judged row.
    pub fn add(&mut self, group: Group, j: &Judgement, seconds: f64) {
        self.seconds += seconds;
        match group {
            Group::Benign => self.benign[verdict_index(j)] += 1,
            Group::Harmful => {
                self.harmful[2] += 1;
                if j.blocked {
                    self.harmful[0] += 1;
                } else if j.flagged || j.altered {
                    self.harmful[1] += 1;
                }
            }
        }
        for g in &j.guards {
            let e = self.per_guard.entry(g.guard.clone()).or_default();
            if g.blocked {
                e[BLOCKED] += 1;
            }
            if g.altered {
                e[ALTERED] += 1;
            }
            if g.flagged {
                e[FLAGGED] += 1;
            }
        }
        for k in &j.kinds {
            *self.per_kind.entry(k.clone()).or_default() += 1;
        }
    }

    /// The report: shares are fractions of their group; per-guard and per-kind figures are
    /// row counts over all rows.
    pub fn report(&self) -> Value {
        let share = |k: usize, n: usize| {
            if n == 0 {
                Value::Null
            } else {
                json!(round(k as f64 / n as f64))
            }
        };
        let nb: usize = self.benign.iter().sum();
        let nh = self.harmful[2];
        let per_guard: Map<String, Value> = self
            .per_guard
            .iter()
            .map(|(g, c)| {
                (
                    g.clone(),
                    json!({"blocked": c[BLOCKED], "altered": c[ALTERED], "flagged": c[FLAGGED]}),
                )
            })
            .collect();
        let n = nb + nh;
        json!({
            "n": n,
            "benign": {
                "n": nb,
                "blocked": share(self.benign[BLOCKED], nb),
                "altered": share(self.benign[ALTERED], nb),
                "flagged": share(self.benign[FLAGGED], nb),
                "untouched": share(self.benign[UNTOUCHED], nb),
            },
            "harmful": {
                "n": nh,
                "blocked": share(self.harmful[0], nh),
                "flagged": share(self.harmful[1], nh),
            },
            "per_guard": per_guard,
            "per_kind": self.per_kind,
            "ms_per_request": if n == 0 { Value::Null } else { json!(round(self.seconds * 1e3 / n as f64)) },
        })
    }
}

fn verdict_index(j: &Judgement) -> usize {
    if j.blocked {
        BLOCKED
    } else if j.altered {
        ALTERED
    } else if j.flagged {
        FLAGGED
    } else {
        UNTOUCHED
    }
}

fn verdict_name(j: &Judgement) -> &'static str {
    ["blocked", "altered", "flagged", "untouched"][verdict_index(j)]
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Why the evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a JSON object with a 'text' string: {message}")]
    Row {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs `pipeline` over every labelled row of `files`; writes one line per row to `rows` when
/// given; returns the report.
pub async fn evaluate(
    pipeline: &Pipeline,
    files: &[PathBuf],
    rows: Option<&Path>,
) -> Result<Value, TrafficError> {
    let mut out = match rows {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p).map_err(
            |source| TrafficError::Write {
                path: p.to_owned(),
                source,
            },
        )?)),
        None => None,
    };
    let mut tally = Tally::default();
    for path in files {
        let read = |source| TrafficError::Read {
            path: path.clone(),
            source,
        };
        let file = std::io::BufReader::new(std::fs::File::open(path).map_err(read)?);
        for (index, line) in file.lines().enumerate() {
            let line = line.map_err(read)?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| TrafficError::Row {
                path: path.clone(),
                line: index + 1,
                message,
            };
            let row: Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            let Some(text) = row.get("text").and_then(Value::as_str) else {
                return Err(bad("no 'text'".into()));
            };
            let Some(group) = group_of(&row) else {
                continue;
            };
            let started = Instant::now();
            let j = judge(pipeline, text).await;
            tally.add(group, &j, started.elapsed().as_secs_f64());
            if let Some(w) = out.as_mut() {
                let line = json!({
                    "file": path.display().to_string(),
                    "index": index,
                    "group": if group == Group::Benign { "benign" } else { "harmful" },
                    "verdict": verdict_name(&j),
                    "guards": j.guards.iter().filter(|g| g.acted()).map(|g| g.guard.clone()).collect::<Vec<_>>(),
                    "kinds": j.kinds,
                });
                writeln!(w, "{line}").map_err(|source| TrafficError::Write {
                    path: rows.map(Path::to_owned).unwrap_or_default(),
                    source,
                })?;
            }
        }
    }
    if let Some(mut w) = out {
        w.flush().map_err(|source| TrafficError::Write {
            path: rows.map(Path::to_owned).unwrap_or_default(),
            source,
        })?;
    }
    Ok(tally.report())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::GuardActs;

    fn judged(blocked: bool, altered: bool, flagged: bool, guard: &str, kind: &str) -> Judgement {
        Judgement {
            blocked,
            altered,
            flagged,
            guards: vec![GuardActs {
                guard: guard.into(),
                blocked,
                altered,
                flagged,
            }],
            kinds: if kind.is_empty() {
                vec![]
            } else {
                vec![kind.into()]
            },
        }
    }

    #[test]
    fn rows_are_grouped_by_the_data_conventions() {
        let g = |v: Value| group_of(&v);
        assert_eq!(g(json!({"label": "benign"})), Some(Group::Benign));
        assert_eq!(g(json!({"label": 0})), Some(Group::Benign));
        assert_eq!(g(json!({"label": "no_pii"})), Some(Group::Benign));
        assert_eq!(g(json!({"is_attack": false})), Some(Group::Benign));
        assert_eq!(g(json!({"label": 1})), Some(Group::Harmful));
        assert_eq!(
            g(json!({"label": "harmful", "is_attack": false})),
            Some(Group::Harmful)
        );
        assert_eq!(
            g(json!({"label": "benign", "is_attack": true})),
            Some(Group::Harmful)
        );
        assert_eq!(g(json!({"label": "jailbreak"})), Some(Group::Harmful));
        assert_eq!(g(json!({"label": "questionable"})), None);
        assert_eq!(g(json!({"text": "no label"})), None);
    }

    #[test]
    fn each_benign_row_counts_once_in_the_first_verdict_that_applies() {
        let mut t = Tally::default();
        t.add(
            Group::Benign,
            &judged(true, true, true, "moderation", "illicit"),
            0.001,
        );
        t.add(
            Group::Benign,
            &judged(false, true, true, "pii", "PERSON"),
            0.001,
        );
        t.add(
            Group::Benign,
            &judged(false, false, true, "injection", "override"),
            0.001,
        );
        t.add(
            Group::Benign,
            &judged(false, false, false, "pii", ""),
            0.001,
        );
        t.add(
            Group::Harmful,
            &judged(true, false, false, "moderation", "illicit"),
            0.001,
        );
        t.add(
            Group::Harmful,
            &judged(false, false, true, "injection", "override"),
            0.001,
        );
        t.add(
            Group::Harmful,
            &judged(false, false, false, "pii", ""),
            0.001,
        );
        let r = t.report();
        assert_eq!(r["n"], 7);
        assert_eq!(r["benign"]["n"], 4);
        for k in ["blocked", "altered", "flagged", "untouched"] {
            assert_eq!(r["benign"][k], 0.25, "{k}");
        }
        assert_eq!(r["harmful"]["n"], 3);
        assert_eq!(r["harmful"]["blocked"], 0.3333);
        assert_eq!(r["harmful"]["flagged"], 0.3333);
        assert_eq!(r["per_guard"]["moderation"]["blocked"], 2);
        assert_eq!(r["per_guard"]["pii"]["altered"], 1);
        assert_eq!(r["per_guard"]["injection"]["flagged"], 2);
        assert_eq!(r["per_kind"]["illicit"], 2);
        assert_eq!(r["per_kind"]["PERSON"], 1);
        assert_eq!(r["ms_per_request"], 1.0);
    }

    #[test]
    fn an_empty_group_has_no_shares() {
        let r = Tally::default().report();
        assert_eq!(r["n"], 0);
        assert!(r["benign"]["blocked"].is_null());
        assert!(r["ms_per_request"].is_null());
    }
}
