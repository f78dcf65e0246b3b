//! The figures the `eval` and `train` commands report — precision, recall, F1, ROC AUC, recall
//! at a false-positive rate, average precision — and how they are rounded.

/// Rounds a reported figure to four decimals.
pub fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// `n` of `of` as a share; `None` when `of` is 0.
pub fn fraction(n: usize, of: usize) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

/// The harmonic mean of a precision and a recall (0 when both are 0).
pub fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

/// Precision, recall and F1 from true positives, false positives and false negatives, each 0
/// where it is undefined.
pub fn precision_recall_f1(tp: usize, fp: usize, fn_: usize) -> (f64, f64, f64) {
    let p = fraction(tp, tp + fp).unwrap_or(0.0);
    let r = fraction(tp, tp + fn_).unwrap_or(0.0);
    (p, r, f1(p, r))
}

/// The share of `scores` at or above `threshold` (`None` without scores).
pub fn share_at(scores: &[f32], threshold: f32) -> Option<f64> {
    fraction(
        scores.iter().filter(|x| **x >= threshold).count(),
        scores.len(),
    )
}

/// ROC AUC by the rank statistic (ties count half); `None` without both classes.
pub fn roc_auc(attacks: &[f32], benign: &[f32]) -> Option<f64> {
    if attacks.is_empty() || benign.is_empty() {
        return None;
    }
    let mut b = benign.to_vec();
    b.sort_by(f32::total_cmp);
    let mut total = 0f64;
    for a in attacks {
        let below = b.partition_point(|x| x < a);
        let equal = b[below..].partition_point(|x| x <= a);
        total += below as f64 + equal as f64 / 2.0;
    }
    Some(total / (attacks.len() as f64 * benign.len() as f64))
}

/// Recall of attacks at the strictest cut that lets at most `fpr` of benign texts through as
/// attacks; `None` without both classes.
pub fn recall_at_fpr(attacks: &[f32], benign: &[f32], fpr: f64) -> Option<f64> {
    if attacks.is_empty() || benign.is_empty() {
        return None;
    }
    let mut b = benign.to_vec();
    b.sort_by(|x, y| y.total_cmp(x));
    let allowed = (benign.len() as f64 * fpr).floor() as usize;
    // Flag strictly above the (allowed+1)-th highest benign score.
    let cut = b.get(allowed).copied().unwrap_or(f32::NEG_INFINITY);
    Some(attacks.iter().filter(|a| **a > cut).count() as f64 / attacks.len() as f64)
}

/// Average precision (area under the precision-recall curve).
pub fn auprc(scored: &[(f32, bool)]) -> f64 {
    let mut v = scored.to_vec();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total = v.iter().filter(|(_, y)| *y).count();
    if total == 0 {
        return 0.0;
    }
    let (mut tp, mut ap) = (0usize, 0f64);
    for (k, (_, y)) in v.iter().enumerate() {
        if *y {
            tp += 1;
            ap += tp as f64 / (k + 1) as f64;
        }
    }
    ap / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_recall_at_fpr_by_hand() {
        assert_eq!(roc_auc(&[0.9, 0.8], &[0.1, 0.2]), Some(1.0));
        assert_eq!(roc_auc(&[0.5], &[0.5]), Some(0.5));
        assert_eq!(roc_auc(&[0.5], &[]), None);
        let benign: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        // 1 % of 100 benign may be above the cut: the cut is the 2nd highest (0.98).
        assert_eq!(
            recall_at_fpr(&[0.985, 0.5, 0.995], &benign, 0.01),
            Some(2.0 / 3.0)
        );
    }

    #[test]
    fn average_precision_matches_hand_computation() {
        // Ranking: + - + -> AP = (1/1 + 2/3) / 2
        let v = [(0.9, true), (0.8, false), (0.7, true), (0.1, false)];
        assert!((auprc(&v) - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
    }
}
