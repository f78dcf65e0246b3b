//! The review queue: would-have-blocked verdicts no reviewer has labelled yet, in a stable
//! pseudo-random order (a hash of the record and guard), so labelling the queue's head is a
//! uniform sample of the period rather than its oldest corner.

use portcullis_core::hash::fnv1a_parts;
use portcullis_store::{JudgedRecord, ReviewLabel};
use serde::Serialize;
use std::collections::BTreeSet;

/// One would-have-blocked verdict waiting for a label. It carries what the audit stores:
/// finding kinds and scores, never the request's text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pending {
    /// The audit record's id (what `review label` takes).
    pub id: String,
    pub guard: String,
    pub time_ms: i64,
    /// Finding kinds behind the verdict, each once, in order.
    pub kinds: Vec<String>,
    /// The highest finding score.
    pub score: f64,
}

/// The guards that would have blocked in `record`, each once, in order.
pub fn would_block_guards(record: &JudgedRecord) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in record.verdicts.as_array().into_iter().flatten() {
        if v["outcome"] == "would_block"
            && let Some(g) = v["guard"].as_str()
            && !out.iter().any(|o| o == g)
        {
            out.push(g.to_owned());
        }
    }
    out
}

/// The guard a label on `record` is for: `guard` when it would have blocked there, else the
/// one guard that would have; an error naming the choices otherwise.
pub fn resolve_guard(record: &JudgedRecord, guard: Option<&str>) -> Result<String, String> {
    let guards = would_block_guards(record);
    let id = &record.seq_id;
    match (guard, guards.as_slice()) {
        (Some(g), _) if guards.iter().any(|x| x == g) => Ok(g.to_owned()),
        (Some(g), []) => Err(format!(
            "'{g}' would not have blocked record {id}; no guard would have"
        )),
        (Some(g), _) => Err(format!(
            "'{g}' would not have blocked record {id}; would have: {}",
            guards.join(", ")
        )),
        (None, [one]) => Ok(one.clone()),
        (None, []) => Err(format!("record {id} has no would-have-blocked verdict")),
        (None, _) => Err(format!(
            "several guards would have blocked record {id} ({}); say which with --guard",
            guards.join(", ")
        )),
    }
}

/// The unlabelled would-block verdicts in `records` (of `guard` only, when given), in the
/// queue's order.
pub fn pending(
    records: &[JudgedRecord],
    labels: &[ReviewLabel],
    guard: Option<&str>,
) -> Vec<Pending> {
    let done: BTreeSet<(&str, &str)> = labels
        .iter()
        .map(|l| (l.seq_id.as_str(), l.guard.as_str()))
        .collect();
    let mut out = Vec::new();
    for r in records {
        for g in would_block_guards(r) {
            if guard.is_some_and(|want| want != g) || done.contains(&(r.seq_id.as_str(), &g)) {
                continue;
            }
            out.push(describe(r, g));
        }
    }
    out.sort_by_key(|p| {
        (
            fnv1a_parts(&[p.id.as_bytes(), p.guard.as_bytes()]),
            p.id.clone(),
        )
    });
    out
}

fn describe(r: &JudgedRecord, guard: String) -> Pending {
    let mut kinds: Vec<String> = Vec::new();
    let mut score = 0.0f64;
    let verdicts = r.verdicts.as_array().into_iter().flatten();
    for v in verdicts.filter(|v| v["guard"] == guard.as_str() && v["outcome"] == "would_block") {
        for f in v["findings"].as_array().into_iter().flatten() {
            if let Some(k) = f["kind"].as_str()
                && !kinds.iter().any(|x| x == k)
            {
                kinds.push(k.to_owned());
            }
            score = score.max(f["score"].as_f64().unwrap_or(0.0));
        }
    }
    Pending {
        id: r.seq_id.clone(),
        guard,
        time_ms: r.time_ms,
        kinds,
        score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_store::Label;
    use serde_json::json;

    fn rec(id: &str, verdicts: serde_json::Value) -> JudgedRecord {
        JudgedRecord {
            seq_id: id.into(),
            time_ms: 7,
            verdicts,
        }
    }

    #[test]
    fn the_queue_skips_labelled_verdicts_filters_by_guard_and_keeps_its_order() {
        let inj = |kind: &str, score: f64| {
            json!({"guard": "injection", "outcome": "would_block", "mode": "monitor",
                   "findings": [{"kind": kind, "detector": "d", "score": score}]})
        };
        let pii = json!({"guard": "pii", "outcome": "would_block", "findings": []});
        let records: Vec<JudgedRecord> = (0..30)
            .map(|i| {
                rec(
                    &format!("{i:04}"),
                    json!([inj("override", 0.5), inj("exfil", 0.75)]),
                )
            })
            .chain([rec(
                "9999",
                json!([pii, {"guard": "size", "outcome": "allow"}]),
            )])
            .collect();
        let all = pending(&records, &[], None);
        assert_eq!(all.len(), 31);
        let only = pending(&records, &[], Some("injection"));
        assert_eq!(only.len(), 30);
        assert!(only.iter().all(|p| p.guard == "injection"));
        let head = &only[0];
        assert_eq!(head.kinds, ["override", "exfil"]);
        assert_eq!(head.score, 0.75);
        let ids: Vec<&str> = only.iter().map(|p| p.id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_ne!(ids, sorted, "a sample, not oldest first");
        let labels = vec![ReviewLabel {
            seq_id: head.id.clone(),
            guard: "injection".into(),
            label: Label::Right,
            time_ms: 0,
        }];
        let after = pending(&records, &labels, Some("injection"));
        assert_eq!(after.len(), 29);
        assert_eq!(after[0], only[1], "labelling the head moves the queue on");
        assert_eq!(would_block_guards(&records[30]), ["pii"]);
        assert_eq!(resolve_guard(&records[30], None).unwrap(), "pii");
        assert!(
            resolve_guard(&records[30], Some("size"))
                .unwrap_err()
                .contains("would have: pii")
        );
        let two = rec(
            "x",
            json!([inj("override", 0.5), {"guard": "pii", "outcome": "would_block"}]),
        );
        assert!(resolve_guard(&two, None).unwrap_err().contains("--guard"));
        assert_eq!(resolve_guard(&two, Some("injection")).unwrap(), "injection");
    }
}
