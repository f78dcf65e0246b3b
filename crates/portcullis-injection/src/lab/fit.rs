//! The n-gram layer's training: each example's rows (a document's windows and lines as well),
//! the vocabulary of natural prose, and the weights (AdaGrad on a class-balanced loss).

use super::data::Example;
use crate::detector::{DIMS, Model, Shape, View, Vocabulary, dedup, features, lines, windows};
use crate::normalize::fold;
use crate::rules;
use portcullis_core::hash::fnv1a;

/// One training row: features and label.
pub(super) struct Row {
    feats: Vec<u32>,
    shape: Shape,
    attack: bool,
    /// Index of the example it came from.
    pub(super) example: usize,
}

impl Row {
    /// The row of folded text `t` judged as `view` (`document`: third-party content).
    fn new(
        t: &str,
        view: View,
        document: bool,
        attack: bool,
        example: usize,
        vocabulary: &Vocabulary,
    ) -> Row {
        let hits = rules::matches(t, document);
        let mut feats = Vec::new();
        let shape = features(t, &hits, None, view, vocabulary, &mut feats);
        Row {
            feats,
            shape,
            attack,
            example,
        }
    }
}

pub(super) fn dedup_rows(rows: &mut [Row]) {
    let mut seen = vec![0u64; DIMS / 64];
    for r in rows {
        dedup(&mut r.feats, &mut seen);
    }
}

/// The rows an example contributes: itself, and for documents each window (a window is an
/// attack only when it holds the planted instruction).
pub(super) fn rows_of(i: usize, e: &Example, vocabulary: &Vocabulary, out: &mut Vec<Row>) {
    let Some(attack) = e.attack else { return };
    let folded = fold(&e.text);
    let windowed = e.document && folded.len() > crate::detector::WINDOW;
    // A long document with a planted line is an attack only where the line is: the whole
    // text would teach the model its (benign) context. A long clean document's whole text does
    // train, though the detector reads a long document whole only when the rules fire: it is
    // the benign evidence for users' prompts that paste an e-mail or an article (dropping it
    // cost 3 points of recall at 1 % FPR out of fold; BENCHMARKS.md).
    if !(windowed && attack) {
        out.push(Row::new(
            &folded,
            View::Whole,
            e.document,
            attack,
            i,
            vocabulary,
        ));
    }
    if !windowed {
        return;
    }
    let planted = e.planted.as_deref().map(fold);
    for w in windows(&folded) {
        let hit = planted.as_deref().is_some_and(|p| w.contains(p.trim()));
        out.push(Row::new(w, View::Window, true, hit, i, vocabulary));
    }
    // Lines: the planted instruction's first line is the attack; the rest of a planted block
    // (code that follows it) is neither.
    let first = planted
        .as_deref()
        .and_then(|p| p.lines().map(str::trim).find(|l| !l.is_empty()));
    for (l, overlap) in lines(&folded) {
        let hit = first.is_some_and(|f| l.contains(f) || f.contains(l) && f.len() < 2 * l.len());
        if !hit && planted.as_deref().is_some_and(|p| p.contains(l)) {
            continue;
        }
        let mut row = Row::new(l, View::Line, true, hit, i, vocabulary);
        row.shape.overlap = Some(overlap);
        out.push(row);
    }
}

/// Fits weights and bias (AdaGrad SGD on a class-balanced logistic loss, fixed seed).
pub(super) fn fit(rows: &[&Row]) -> Model {
    let pos = rows.iter().filter(|r| r.attack).count().max(1) as f32;
    let neg = rows.iter().filter(|r| !r.attack).count().max(1) as f32;
    let (wp, wn) = ((pos + neg) / (2.0 * pos), (pos + neg) / (2.0 * neg));
    let mut m = Model::zeros();
    let mut g2 = vec![1e-6f32; DIMS];
    let mut gb = 1e-6f32;
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let (epochs, lr, l2) = (8, 0.15, 1e-5);
    for _ in 0..epochs {
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            let r = rows[i];
            let p = 1.0 / (1.0 + (-m.logit(&r.feats)).exp());
            let y = if r.attack { 1.0 } else { 0.0 };
            let g = (p - y) * if r.attack { wp } else { wn };
            let norm = 1.0 / (r.feats.len().max(1) as f32).sqrt();
            for &k in &r.feats {
                let k = k as usize;
                let grad = g * norm + l2 * m.weights[k];
                g2[k] += grad * grad;
                m.weights[k] -= lr * grad / g2[k].sqrt();
            }
            gb += g * g;
            m.bias -= lr * g / gb.sqrt();
        }
    }
    m
}

/// The words (lower-case ASCII, as [`features`] splits them) found at least twice in `prose`.
pub(super) fn vocabulary<'a>(prose: impl Iterator<Item = &'a str>) -> Vocabulary {
    let mut seen: std::collections::HashMap<u64, u8> = Default::default();
    for t in prose {
        let folded = fold(t);
        for part in folded
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        {
            let n = seen.entry(fnv1a(part.as_bytes())).or_default();
            *n = n.saturating_add(1);
        }
    }
    let mut v = Vocabulary::empty();
    let mut known: Vec<u64> = seen
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|(h, _)| h)
        .collect();
    known.sort_unstable();
    for h in known {
        v.insert(h);
    }
    v
}
