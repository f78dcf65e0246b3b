//! What is fit on out-of-fold judgements rather than on rows: the stacking layer over each
//! text's readings, the Platt layer over its scores, and the logistic regression both use.

use crate::detector::{RULE_WEIGHT, SHAPE, Stack};

/// Class-balanced logistic regression by Newton's method on a few dense inputs (the last
/// coefficient returned is the intercept); `l2` keeps rare inputs' weights finite.
fn logistic(xs: &[Vec<f64>], offsets: &[f64], ys: &[bool], l2: f64) -> Vec<f64> {
    let d = xs.first().map_or(0, Vec::len) + 1;
    let pos = ys.iter().filter(|y| **y).count().max(1) as f64;
    let neg = ys.iter().filter(|y| !**y).count().max(1) as f64;
    let mut w = vec![0.0f64; d];
    for _ in 0..50 {
        let mut g = vec![0.0f64; d];
        let mut h = vec![vec![0.0f64; d]; d];
        for (i, (x, &y)) in xs.iter().zip(ys).enumerate() {
            let row = x.iter().copied().chain([1.0]);
            let z: f64 = offsets.get(i).copied().unwrap_or(0.0)
                + row.clone().zip(&w).map(|(a, b)| a * b).sum::<f64>();
            let p = 1.0 / (1.0 + (-z).exp());
            let c = if y { 0.5 / pos } else { 0.5 / neg };
            let (dz, hz) = (c * (p - f64::from(u8::from(y))), c * p * (1.0 - p));
            for (i, a) in row.clone().enumerate() {
                g[i] += dz * a;
                for (j, b) in row.clone().enumerate() {
                    h[i][j] += hz * a * b;
                }
            }
        }
        for i in 0..d {
            let reg = if i + 1 < d { l2 } else { 0.0 };
            g[i] += reg * w[i];
            h[i][i] += reg + 1e-9;
        }
        let Some(step) = solve(h, g) else { break };
        let mut moved = 0f64;
        for (wi, si) in w.iter_mut().zip(&step) {
            *wi -= si;
            moved = moved.max(si.abs());
        }
        if moved < 1e-9 {
            break;
        }
    }
    w
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting; `None` when singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n).max_by(|i, j| a[*i][c].abs().total_cmp(&a[*j][c].abs()))?;
        if a[p][c].abs() < 1e-15 {
            return None;
        }
        a.swap(c, p);
        b.swap(c, p);
        let (top, rest) = a.split_at_mut(c + 1);
        let pivot = &top[c];
        for (r, row) in rest.iter_mut().enumerate() {
            let f = row[c] / pivot[c];
            for (x, p) in row[c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
            b[c + 1 + r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for c in (0..n).rev() {
        let s: f64 = (c + 1..n).map(|k| a[c][k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c][c];
    }
    Some(x)
}

/// Fits `p = sigmoid(a z + b)` to labelled raw scores (class-balanced).
pub(super) fn platt(scores: &[(f32, bool)]) -> (f32, f32) {
    let xs: Vec<Vec<f64>> = scores.iter().map(|s| vec![f64::from(s.0)]).collect();
    let ys: Vec<bool> = scores.iter().map(|s| s.1).collect();
    let w = logistic(&xs, &[], &ys, 0.0);
    (w[0] as f32, w[1] as f32)
}

/// Fits the stacking layer on each text's out-of-fold readings. A text is judged by its
/// highest reading, so each round refits on the readings that currently decide (multiple-
/// instance learning), starting from the default layer.
pub(super) fn stack(readings: &[Vec<(f32, [f32; SHAPE])>], labels: &[bool]) -> Stack {
    let mut s = Stack::default();
    for _ in 0..6 {
        let (mut xs, mut offsets, mut ys) = (Vec::new(), Vec::new(), Vec::new());
        for (r, y) in readings.iter().zip(labels) {
            let Some((z, x)) = r
                .iter()
                .max_by(|p, q| s.logit(p.0, &p.1).total_cmp(&s.logit(q.0, &q.1)))
            else {
                continue;
            };
            // The rules' weight stays fixed (see RULE_WEIGHT).
            offsets.push(f64::from(RULE_WEIGHT * x[0]));
            xs.push(
                std::iter::once(*z)
                    .chain(x[1..].iter().copied())
                    .map(f64::from)
                    .collect::<Vec<f64>>(),
            );
            ys.push(*y);
        }
        let c = logistic(&xs, &offsets, &ys, 1e-3);
        s.ngram = c[0] as f32;
        for (o, w) in s.shape[1..].iter_mut().zip(&c[1..SHAPE]) {
            *o = *w as f32;
        }
        s.bias = c[SHAPE] as f32;
    }
    s
}

/// The smallest f32 above `x` (a threshold that excludes `x` itself).
pub(super) fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    let bits = x.to_bits();
    f32::from_bits(if x >= 0.0 { bits + 1 } else { bits - 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_orders_and_separates() {
        let s: Vec<(f32, bool)> = (0..40).map(|i| (i as f32 / 4.0 - 5.0, i >= 20)).collect();
        let (a, b) = platt(&s);
        assert!(a > 0.0);
        let p = |z: f32| 1.0 / (1.0 + (-(a * z + b)).exp());
        assert!(p(4.0) > 0.9 && p(-4.0) < 0.1);
    }

    #[test]
    fn logistic_regression_finds_the_informative_input() {
        // Input 0 decides the label, input 1 is noise.
        let xs: Vec<Vec<f64>> = (0..200)
            .map(|i| vec![f64::from(i % 2), f64::from((i / 2) % 3)])
            .collect();
        let ys: Vec<bool> = (0..200).map(|i| i % 2 == 1 || i % 10 == 0).collect();
        let w = logistic(&xs, &[], &ys, 1e-3);
        assert_eq!(w.len(), 3);
        assert!(w[0] > 2.0 && w[1].abs() < 0.3, "{w:?}");
        assert_eq!(
            solve(vec![vec![0.0, 0.0], vec![0.0, 0.0]], vec![1.0, 1.0]),
            None
        );
        assert_eq!(
            solve(vec![vec![2.0, 1.0], vec![1.0, 3.0]], vec![3.0, 5.0]),
            Some(vec![0.8, 1.4])
        );
    }

    #[test]
    fn the_stacking_layer_learns_a_signal_the_ngrams_miss() {
        // Every text has a dull reading; attacks also have one with a gibberish tail, whose
        // n-gram logit says nothing.
        let mut readings = Vec::new();
        let mut labels = Vec::new();
        for i in 0..100 {
            let attack = i % 2 == 0;
            let mut r = vec![(-1.0 + (i % 7) as f32 / 7.0, [0.0; SHAPE])];
            let mut x = [0.0; SHAPE];
            x[2] = if attack { 0.5 } else { 0.0 };
            r.push((-0.5, x));
            readings.push(r);
            labels.push(attack);
        }
        let s = stack(&readings, &labels);
        assert!(s.shape[2] > 1.0, "{s:?}");
        let best = |r: &Vec<(f32, [f32; SHAPE])>| {
            r.iter()
                .map(|(z, x)| s.logit(*z, x))
                .fold(f32::NEG_INFINITY, f32::max)
        };
        assert!(best(&readings[0]) > best(&readings[1]));
    }
}
