//! What training chooses on out-of-fold scores rather than fits: the sentence offset, the
//! policy head's weight in the `content` gate, each gate's cut and the flagged threshold.

use super::data::{ANCHOR_SET, Example};
use crate::classifier::gates;
use portcullis_lab::metrics::{auprc, precision_recall_f1};

/// The cut on a gate's logits with the best F0.5 on `scored` (the gate's own sets).
pub(super) fn best_f05_cut(scored: &[(f32, bool)]) -> f32 {
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
/// prompts (XSTest's label 0) stay under 4 % false positives and the out-of-fold scores of
/// each set of ordinary requests (`ordinary`) under [`ORDINARY_FPR`].
pub(super) fn choose_threshold(oof: &[(f32, bool, bool)], ordinary: &[Vec<f32>]) -> f32 {
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
    let fp_at = |v: &[f32], t: f32| v.iter().filter(|s| **s >= t).count() as f64 / v.len() as f64;
    while !safe.is_empty() && t < 0.99 && fp_at(&safe, t) > 0.04 {
        t += 0.01;
    }
    // Then until each set of ordinary requests (`ordinary`: real users' trainable prompts and
    // questions, one list per set) stays under 0.5 %: the default policy refuses what it
    // flags, and a refusal of an ordinary prompt costs more than a missed borderline one.
    let over = |t: f32| {
        ordinary
            .iter()
            .any(|v| !v.is_empty() && fp_at(v, t) > ORDINARY_FPR)
    };
    while t < 0.99 && over(t) {
        t += 0.01;
    }
    t
}

/// The share of ordinary requests the flagged threshold may flag, out of fold.
pub(super) const ORDINARY_FPR: f64 = 0.005;

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
pub(super) fn sentence_offset(data: &[Example], readings: &[Vec<(f32, f32)>]) -> f32 {
    let grid = (0..=16).map(|i| i as f32 / 4.0);
    best_on_anchor(data, f32::INFINITY, grid, |i, c| {
        readings[i].first().map_or(0.0, |(w, s)| w.max(s - c))
    })
}

/// The weight (a grid of quarters up to 2) of the policy head's whole-text logit in the
/// content gate (as [`gates`] forms it, with each text's `rules` logit) that gives the gate
/// its best out-of-fold AUPRC on the anchor set.
pub(super) fn policy_weight(
    data: &[Example],
    readings: &[Vec<(f32, f32)>],
    rules: &[[f32; crate::classifier::GATES]],
    offset: f32,
) -> f32 {
    let grid = (1..=8).map(|i| i as f32 / 4.0);
    best_on_anchor(data, 0.0, grid, |i, a| {
        gates(&readings[i], offset, a, rules[i])[0]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::{HEADS, POLICY};
    use crate::lab::ex;

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
        assert!(policy_weight(&data, &helps, &[[0.0; 2]; 40], 1.0) > 0.0);
        // A policy head that ranks backwards gets no weight.
        let hurts: Vec<_> = (0..40)
            .map(|i| {
                let y = i % 2 == 0;
                reading(if y { 1.0 } else { -1.0 }, if y { -2.0 } else { 2.0 })
            })
            .collect();
        assert_eq!(policy_weight(&data, &hurts, &[[0.0; 2]; 40], 1.0), 0.0);
    }

    #[test]
    fn the_threshold_rises_until_every_set_of_ordinary_requests_is_spared() {
        // Flagged rows score 0.9, clean ones 0.1: the best F1 cut is low.
        let oof: Vec<(f32, bool, bool)> = (0..100)
            .map(|i| {
                if i % 2 == 0 {
                    (0.9, true, false)
                } else {
                    (0.1, false, false)
                }
            })
            .collect();
        let free = choose_threshold(&oof, &[]);
        assert!(free <= 0.2, "{free}");
        // One set of ordinary requests is spared already; in the other, 2 of 100 score 0.6.
        let spared = vec![0.05; 1000];
        let mut some = vec![0.05; 98];
        some.extend([0.6, 0.6]);
        let t = choose_threshold(&oof, &[spared, some]);
        assert!(t > 0.6 && t <= 0.62, "{t}");
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
}
