//! Per-guard shadow counters over a period of audit records: how often the guard would have
//! blocked, what share of all traffic that is, and — from reviewers' labels — how often it
//! would have been right, with a Wilson score interval so twelve labels are not read as proof.

use portcullis_store::{JudgedRecord, Label, ReviewLabel};
use serde::Serialize;
use std::collections::BTreeMap;

/// z for a two-sided 95 % interval.
pub const Z95: f64 = 1.959_964;

/// The Wilson score interval for `successes` out of `n` at `z`; `None` with no trials.
/// Unlike the normal approximation it stays inside [0, 1] and is honest for small `n`.
pub fn wilson(successes: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let n = n as f64;
    let p = successes.min(n as u64) as f64 / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let denom = 1.0 + z2 / n;
    Some((
        ((centre - margin) / denom).max(0.0),
        ((centre + margin) / denom).min(1.0),
    ))
}

/// One guard's counters for the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GuardStats {
    pub guard: String,
    /// Records in the period (all traffic, whatever the guard did).
    pub total: u64,
    /// Records the guard judged.
    pub judged: u64,
    /// Records the guard judged in monitor mode (configured, or outside a rollout's share).
    pub monitored: u64,
    /// Records where the guard would have blocked (monitor mode).
    pub would_block: u64,
    /// Labelled would-blocks the reviewer called right.
    pub right: u64,
    /// Labelled would-blocks the reviewer called wrong (false positives).
    pub wrong: u64,
}

impl GuardStats {
    /// Would-blocks per monitored request.
    pub fn would_block_rate(&self) -> Option<f64> {
        ratio(self.would_block, self.monitored)
    }

    /// Would-blocks per request of all traffic: the share enforcing would have refused.
    pub fn traffic_share(&self) -> Option<f64> {
        ratio(self.would_block, self.total)
    }

    /// Labels given.
    pub fn labelled(&self) -> u64 {
        self.right + self.wrong
    }

    /// Right / labelled.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.right, self.labelled())
    }

    /// The 95 % Wilson interval on [`precision`](Self::precision).
    pub fn precision_interval(&self) -> Option<(f64, f64)> {
        wilson(self.right, self.labelled(), Z95)
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Counts every guard's verdicts in `records` (all the period's traffic) and the `labels`
/// given on them. A guard's verdicts on several stream windows of one request count once.
pub fn tally(records: &[JudgedRecord], labels: &[ReviewLabel]) -> BTreeMap<String, GuardStats> {
    let mut out: BTreeMap<String, GuardStats> = BTreeMap::new();
    for r in records {
        let mut seen: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
        for v in r.verdicts.as_array().into_iter().flatten() {
            let Some(guard) = v["guard"].as_str() else {
                continue;
            };
            let outcome = v["outcome"].as_str().unwrap_or_default();
            let monitored = v["mode"] == "monitor" || outcome.starts_with("would_");
            let e = seen.entry(guard).or_default();
            e.0 |= monitored;
            e.1 |= outcome == "would_block";
        }
        for (guard, (monitored, would_block)) in seen {
            let s = out.entry(guard.to_owned()).or_insert_with(|| GuardStats {
                guard: guard.to_owned(),
                ..GuardStats::default()
            });
            s.judged += 1;
            s.monitored += u64::from(monitored);
            s.would_block += u64::from(would_block);
        }
    }
    for s in out.values_mut() {
        s.total = records.len() as u64;
    }
    for l in labels {
        if let Some(s) = out.get_mut(&l.guard) {
            match l.label {
                Label::Right => s.right += 1,
                Label::Wrong => s.wrong += 1,
            }
        }
    }
    out
}

/// One guard's counters as JSON, its rates and interval included (`review stats --json`,
/// `GET /admin/review/stats`).
pub fn to_json(s: &GuardStats) -> serde_json::Value {
    let interval = s.precision_interval();
    serde_json::json!({
        "guard": s.guard,
        "total": s.total,
        "judged": s.judged,
        "monitored": s.monitored,
        "would_block": s.would_block,
        "would_block_rate": s.would_block_rate(),
        "traffic_share": s.traffic_share(),
        "labelled": s.labelled(),
        "right": s.right,
        "wrong": s.wrong,
        "precision": s.precision(),
        "precision_low": interval.map(|i| i.0),
        "precision_high": interval.map(|i| i.1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wilson_matches_published_values_and_stays_in_bounds() {
        // 8 of 10 at 95 %: (0.4902, 0.9433) — Wilson (1927) as tabulated by Newcombe (1998).
        let (lo, hi) = wilson(8, 10, Z95).unwrap();
        assert!(
            (lo - 0.4902).abs() < 1e-3 && (hi - 0.9433).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 5, Z95).unwrap();
        assert_eq!(lo, 0.0);
        assert!((hi - 0.4345).abs() < 1e-3, "{hi}");
        let (lo, hi) = wilson(5, 5, Z95).unwrap();
        assert!((lo - 0.5655).abs() < 1e-3 && hi == 1.0, "{lo} {hi}");
        assert_eq!(wilson(0, 0, Z95), None);
        // More labels, narrower interval around the same precision.
        let (a, b) = wilson(90, 100, Z95).unwrap();
        let (c, d) = wilson(900, 1000, Z95).unwrap();
        assert!(a < c && d < b && a < 0.9 && b > 0.9);
    }

    fn rec(id: &str, verdicts: serde_json::Value) -> JudgedRecord {
        JudgedRecord {
            seq_id: id.into(),
            time_ms: 0,
            verdicts,
        }
    }

    fn label(id: &str, guard: &str, label: Label) -> ReviewLabel {
        ReviewLabel {
            seq_id: id.into(),
            guard: guard.into(),
            label,
            time_ms: 0,
        }
    }

    #[test]
    fn counters_from_verdicts_and_labels() {
        let wb = json!({"guard": "injection", "outcome": "would_block", "mode": "monitor"});
        let quiet = json!({"guard": "injection", "outcome": "allow", "mode": "monitor"});
        let enforced = json!({"guard": "injection", "outcome": "block", "mode": "enforce"});
        let pii = json!({"guard": "pii", "outcome": "allow", "mode": "enforce"});
        let records = vec![
            rec("1", json!([pii, wb])),
            rec("2", json!([pii, wb, wb])), // two stream windows: one request
            rec("3", json!([pii, quiet])),
            rec("4", json!([pii, enforced])),
            rec("5", json!([])), // refused before any guard ran
        ];
        let labels = vec![
            label("1", "injection", Label::Right),
            label("2", "injection", Label::Wrong),
            label("9", "nosuch", Label::Right),
        ];
        let t = tally(&records, &labels);
        let inj = &t["injection"];
        assert_eq!(
            (inj.total, inj.judged, inj.monitored, inj.would_block),
            (5, 4, 3, 2)
        );
        assert_eq!(inj.would_block_rate(), Some(2.0 / 3.0));
        assert_eq!(inj.traffic_share(), Some(2.0 / 5.0));
        assert_eq!((inj.right, inj.wrong, inj.precision()), (1, 1, Some(0.5)));
        let (lo, hi) = inj.precision_interval().unwrap();
        assert!(lo < 0.5 && hi > 0.5);
        let pii = &t["pii"];
        assert_eq!((pii.monitored, pii.would_block), (0, 0));
        assert_eq!(pii.would_block_rate(), None);
        assert_eq!(pii.precision(), None);
        assert!(!t.contains_key("nosuch"));
    }
}
