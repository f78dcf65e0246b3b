//! The result of a run: counts per attack category (attempts, blocked, flagged, passed), the
//! false-positive rate on ordinary requests beside the block rate, examples of what got
//! through, and the verdict against the release thresholds — rendered as a terminal table,
//! Markdown, HTML, or one JSON object (the last line printed, for scripts and CI).

use super::{Case, Effect, Label, Outcome, Verdict};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;

/// How many cases of a group ended which way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub attempts: usize,
    pub blocked: usize,
    pub flagged: usize,
    pub passed: usize,
    /// Not judged (target failures); outside every rate.
    pub errors: usize,
    /// Let through with the text the model sees changed (in process only).
    pub altered: usize,
}

impl Counts {
    fn add(&mut self, o: &Outcome) {
        self.attempts += 1;
        match o.verdict {
            Verdict::Blocked => self.blocked += 1,
            Verdict::Flagged => self.flagged += 1,
            Verdict::Passed => self.passed += 1,
            Verdict::Error => self.errors += 1,
        }
        if o.altered && o.verdict != Verdict::Blocked {
            self.altered += 1;
        }
    }

    /// Blocked as a share of the judged cases; `None` when none were judged.
    pub fn block_rate(&self) -> Option<f64> {
        let judged = self.attempts - self.errors;
        (judged > 0).then(|| self.blocked as f64 / judged as f64)
    }
}

/// One case shown in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    pub id: String,
    pub category: String,
    pub text: String,
    pub detail: String,
}

/// Release thresholds; a run that misses one fails.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Thresholds {
    pub min_block_rate: Option<f64>,
    pub max_false_positive_rate: Option<f64>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub categories: BTreeMap<String, Counts>,
    pub mutators: BTreeMap<String, Counts>,
    pub attacks: Counts,
    pub benign: Counts,
    pub effects: BTreeMap<String, usize>,
    pub got_through: Vec<Example>,
    pub false_positives: Vec<Example>,
    pub thresholds: Thresholds,
    pub failures: Vec<String>,
    pub seconds: f64,
}

impl Report {
    /// Tallies `outcomes` (in the order of `cases`); keeps up to `examples` passed attacks per
    /// category and blocked benign requests per category; checks `thresholds`.
    pub fn new(
        cases: &[Case],
        outcomes: &[Outcome],
        examples: usize,
        thresholds: Thresholds,
    ) -> Report {
        let mut r = Report {
            thresholds,
            ..Report::default()
        };
        let mut shown: BTreeMap<(Label, &str), usize> = BTreeMap::new();
        for (c, o) in cases.iter().zip(outcomes) {
            let example = || Example {
                id: c.id.clone(),
                category: c.category.clone(),
                text: c.text.clone(),
                detail: o.detail.clone(),
            };
            let n = shown.entry((c.label, c.category.as_str())).or_default();
            match c.label {
                Label::Attack => {
                    r.attacks.add(o);
                    r.categories.entry(c.category.clone()).or_default().add(o);
                    if let Some(m) = &c.mutator {
                        r.mutators.entry(m.clone()).or_default().add(o);
                    }
                    if let Some(e) = o.effect {
                        *r.effects.entry(effect_name(e).into()).or_default() += 1;
                    }
                    if o.verdict == Verdict::Passed && *n < examples {
                        *n += 1;
                        r.got_through.push(example());
                    }
                }
                Label::Benign => {
                    r.benign.add(o);
                    if o.verdict == Verdict::Blocked && *n < examples {
                        *n += 1;
                        r.false_positives.push(example());
                    }
                }
            }
        }
        r.failures = r.check();
        r
    }

    /// Share of judged attacks blocked.
    pub fn block_rate(&self) -> Option<f64> {
        self.attacks.block_rate()
    }

    /// Share of judged benign requests blocked.
    pub fn false_positive_rate(&self) -> Option<f64> {
        self.benign.block_rate()
    }

    /// Whether every threshold was met and every case judged.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn check(&self) -> Vec<String> {
        let mut out = Vec::new();
        let errors = self.attacks.errors + self.benign.errors;
        if errors > 0 {
            out.push(format!("{errors} case(s) could not be judged"));
        }
        if let Some(min) = self.thresholds.min_block_rate {
            match self.block_rate() {
                None => out.push("--min-block-rate needs attacks to measure".into()),
                Some(r) if r < min => out.push(format!(
                    "block rate {} is below the minimum {}",
                    pct(r),
                    pct(min)
                )),
                Some(_) => {}
            }
        }
        if let Some(max) = self.thresholds.max_false_positive_rate {
            match self.false_positive_rate() {
                None => out.push("--max-false-positive-rate needs benign requests".into()),
                Some(r) if r > max => out.push(format!(
                    "false-positive rate {} is above the maximum {}",
                    pct(r),
                    pct(max)
                )),
                Some(_) => {}
            }
        }
        out
    }

    /// The JSON object printed as the last line of `--format json`.
    pub fn json(&self) -> Value {
        let counts = |m: &BTreeMap<String, Counts>| -> Value {
            m.iter()
                .map(|(k, c)| {
                    let mut v = json!(c);
                    v["block_rate"] = json!(c.block_rate().map(round));
                    (k.clone(), v)
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({
            "attacks": self.attacks.attempts,
            "benign": self.benign.attempts,
            "blocked": self.attacks.blocked,
            "flagged": self.attacks.flagged,
            "passed": self.attacks.passed,
            "errors": self.attacks.errors + self.benign.errors,
            "block_rate": self.block_rate().map(round),
            "false_positive_rate": self.false_positive_rate().map(round),
            "false_positives": self.benign.blocked,
            "benign_flagged": self.benign.flagged,
            "benign_altered": self.benign.altered,
            "categories": counts(&self.categories),
            "mutators": counts(&self.mutators),
            "effects": if self.effects.is_empty() { Value::Null } else { json!(self.effects) },
            "got_through": self.got_through,
            "false_positive_examples": self.false_positives,
            "thresholds": self.thresholds,
            "pass": self.passed(),
            "failures": self.failures,
            "seconds": round(self.seconds),
        })
    }

    /// The rows of the table: each category, all attacks, the benign requests.
    fn rows(&self) -> Vec<(String, Counts)> {
        let mut rows: Vec<(String, Counts)> = self
            .categories
            .iter()
            .map(|(k, c)| (k.clone(), *c))
            .collect();
        rows.push(("all attacks".into(), self.attacks));
        if self.benign.attempts > 0 {
            rows.push(("benign (false positives)".into(), self.benign));
        }
        rows
    }

    /// A plain-text table for the terminal.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let w = self
            .rows()
            .iter()
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = writeln!(
            s,
            "{:<w$}  {:>8}  {:>7}  {:>7}  {:>6}  {:>10}",
            "category", "attempts", "blocked", "flagged", "passed", "block rate"
        );
        for (k, c) in self.rows() {
            let _ = writeln!(
                s,
                "{:<w$}  {:>8}  {:>7}  {:>7}  {:>6}  {:>10}",
                k,
                c.attempts,
                c.blocked,
                c.flagged,
                c.passed,
                c.block_rate().map(pct).unwrap_or_else(|| "-".into())
            );
        }
        self.trailer(&mut s, |e| {
            format!("  [{}] {}", e.category, clip(&e.text, 110))
        });
        s
    }

    /// A Markdown section (for READMEs, release notes, pull requests).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("| category | attempts | blocked | flagged | passed | block rate |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|\n");
        for (k, c) in self.rows() {
            let _ = writeln!(
                s,
                "| {k} | {} | {} | {} | {} | {} |",
                c.attempts,
                c.blocked,
                c.flagged,
                c.passed,
                c.block_rate().map(pct).unwrap_or_else(|| "-".into())
            );
        }
        self.trailer(&mut s, |e| {
            format!(
                "- `{}` {}",
                e.category,
                clip(&e.text, 110).replace('|', "\\|")
            )
        });
        s
    }

    /// A self-contained HTML page.
    pub fn html(&self) -> String {
        let mut s = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Portcullis red team</title>\
             <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
             td,th{border:1px solid #ccc;padding:4px 8px}td:not(:first-child){text-align:right}\
             </style></head><body><h1>Red team</h1><table><tr><th>category</th><th>attempts</th>\
             <th>blocked</th><th>flagged</th><th>passed</th><th>block rate</th></tr>\n",
        );
        for (k, c) in self.rows() {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&k),
                c.attempts,
                c.blocked,
                c.flagged,
                c.passed,
                c.block_rate().map(pct).unwrap_or_else(|| "-".into())
            );
        }
        s.push_str("</table><pre>");
        let mut rest = String::new();
        self.trailer(&mut rest, |e| {
            format!("  [{}] {}", e.category, clip(&e.text, 110))
        });
        s.push_str(&escape(&rest));
        s.push_str("</pre></body></html>\n");
        s
    }

    /// Examples, effects and the verdict, below the table.
    fn trailer(&self, s: &mut String, line: impl Fn(&Example) -> String) {
        let _ = writeln!(
            s,
            "\nblock rate {}; false-positive rate {} ({} of {} benign blocked, {} flagged)",
            self.block_rate().map(pct).unwrap_or_else(|| "-".into()),
            self.false_positive_rate()
                .map(pct)
                .unwrap_or_else(|| "-".into()),
            self.benign.blocked,
            self.benign.attempts,
            self.benign.flagged
        );
        if !self.effects.is_empty() {
            let e: Vec<String> = self
                .effects
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(s, "judge (attacks that got through): {}", e.join(", "));
        }
        for (title, list) in [
            ("Got through (examples)", &self.got_through),
            ("False positives (examples)", &self.false_positives),
        ] {
            if !list.is_empty() {
                let _ = writeln!(s, "\n{title}:");
                for e in list {
                    let _ = writeln!(s, "{}", line(e));
                }
            }
        }
        let _ = writeln!(
            s,
            "\n{}",
            if self.passed() {
                "PASS".to_owned()
            } else {
                format!("FAIL: {}", self.failures.join("; "))
            }
        );
    }
}

fn effect_name(e: Effect) -> &'static str {
    match e {
        Effect::Succeeded => "succeeded",
        Effect::Refused => "refused",
        Effect::Unclear => "unclear",
    }
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// One line of at most `n` characters, newlines shown as `⏎`.
fn clip(text: &str, n: usize) -> String {
    let one: String = text.replace('\n', " ⏎ ").chars().take(n).collect();
    if text.chars().count() > n {
        format!("{one}…")
    } else {
        one
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests;
