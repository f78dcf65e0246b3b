//! Fitting the heads: per head, L2-regularised logistic regression over IDF-weighted features
//! on a class-balanced, set-weighted loss, solved to convergence by L-BFGS.

use super::data::{ANCHOR_SET, ANCHOR_WEIGHT, Example, targets};
use crate::classifier::{DIMS, HEADS, Model, POLICY, features};

/// Inverse document frequency per hashed feature over `feats` (smoothed, as in tf-idf).
fn idf(feats: &[Vec<u32>]) -> Vec<f32> {
    let mut df = vec![0u32; DIMS];
    for f in feats {
        for &k in f {
            df[k as usize] += 1;
        }
    }
    let n = feats.len() as f32;
    df.iter()
        .map(|d| ((n + 1.0) / (*d as f32 + 1.0)).ln() + 1.0)
        .collect()
}

/// Fits a model on `data`: per head, L2-regularised logistic regression on the class-balanced,
/// set-weighted log loss, solved to convergence (the heads in parallel).
pub fn fit(data: &[Example]) -> Model {
    let feats: Vec<Vec<u32>> = data.iter().map(|e| features(&e.text)).collect();
    let tg: Vec<Vec<Option<bool>>> = data.iter().map(targets).collect();
    let mut m = Model::zeros();
    m.idf = idf(&feats);
    let norms: Vec<f32> = feats.iter().map(|f| m.norm(f)).collect();
    // Each set counts about equally, so the two large hate-speech sets do not drown the rest;
    // the anchor set, whose style of text the goal is measured on, counts more.
    let mut per_set: std::collections::HashMap<&str, usize> = Default::default();
    for e in data {
        *per_set.entry(e.dataset.as_str()).or_default() += 1;
    }
    let mean = data.len() as f32 / per_set.len().max(1) as f32;
    let set_weight: Vec<f32> = data
        .iter()
        .map(|e| {
            let w = (mean / per_set[e.dataset.as_str()] as f32)
                .sqrt()
                .clamp(0.25, 4.0);
            if e.dataset == ANCHOR_SET {
                w * ANCHOR_WEIGHT
            } else {
                w
            }
        })
        .collect();
    // The inverse strength of the L2 penalty: out of fold on the anchor set, 1 and 3 tie
    // (0.803, 0.802) and 10 is worse (0.796); 3 costs the hate-speech sets less.
    const C: f64 = 3.0;
    let fitted: Vec<(Vec<f32>, f32)> = std::thread::scope(|s| {
        let jobs: Vec<_> = (0..HEADS.len())
            .map(|h| {
                let (tg, set_weight, feats, norms, idf) =
                    (&tg, &set_weight, &feats, &norms, &m.idf);
                s.spawn(move || {
                    let pos = tg.iter().filter(|t| t[h] == Some(true)).count().max(1) as f64;
                    let neg = tg.iter().filter(|t| t[h] == Some(false)).count().max(1) as f64;
                    let (wp, wn) = ((pos + neg) / (2.0 * pos), (pos + neg) / (2.0 * neg));
                    let rows: Vec<(usize, bool, f64)> = (0..tg.len())
                        .filter_map(|i| {
                            let y = tg[i][h]?;
                            // The policy head sees the anchor set alone, so its set weight
                            // (10×) would only weaken its penalty tenfold.
                            let sw = if h == POLICY {
                                1.0
                            } else {
                                f64::from(set_weight[i])
                            };
                            Some((i, y, sw * if y { wp } else { wn }))
                        })
                        .collect();
                    if h == POLICY {
                        // Naive-Bayes-weighted (NB-LR): each feature scaled by its log-count
                        // ratio, so the penalty shrinks features that do not tell the classes
                        // apart. Out of fold on the anchor set this head alone gains most from
                        // it; applied to every head it costs (see BENCHMARKS.md).
                        let r = log_count_ratio(&rows, feats);
                        let scaled: Vec<f32> =
                            idf.iter().zip(&r).map(|(i, r)| i * *r as f32).collect();
                        let (w, b) = regularised_logistic(&rows, feats, norms, &scaled, C);
                        (w.iter().zip(&r).map(|(w, r)| w * *r as f32).collect(), b)
                    } else {
                        regularised_logistic(&rows, feats, norms, idf, C)
                    }
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    for (h, (w, b)) in fitted.into_iter().enumerate() {
        m.set_head(h, &w);
        m.bias[h] = b;
    }
    m
}

/// Log-count ratio per feature (Wang & Manning's NB weighting, over the rows' weights): how
/// much more of the positive rows' weight than of the negative rows' holds it, smoothed by one.
fn log_count_ratio(rows: &[(usize, bool, f64)], feats: &[Vec<u32>]) -> Vec<f64> {
    let (mut p, mut q) = (vec![1.0f64; DIMS], vec![1.0f64; DIMS]);
    for &(i, y, wt) in rows {
        let v = if y { &mut p } else { &mut q };
        for &k in &feats[i] {
            v[k as usize] += wt;
        }
    }
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    p.iter()
        .zip(&q)
        .map(|(p, q)| ((p / sp) / (q / sq)).ln())
        .collect()
}

/// L2-regularised logistic regression fit to convergence by L-BFGS: `rows` are (example,
/// target, weight); minimises the weighted log loss plus `|w|² / 2c` (the bias is free).
fn regularised_logistic(
    rows: &[(usize, bool, f64)],
    feats: &[Vec<u32>],
    norms: &[f32],
    idf: &[f32],
    c: f64,
) -> (Vec<f32>, f32) {
    let n = DIMS + 1;
    // The loss and its gradient at `x` (weights, then the bias).
    let eval = |x: &[f64], g: &mut [f64]| -> f64 {
        let mut loss = 0.0;
        for (gk, xk) in g[..DIMS].iter_mut().zip(&x[..DIMS]) {
            *gk = xk / c;
            loss += xk * xk / (2.0 * c);
        }
        g[DIMS] = 0.0;
        for &(i, y, wt) in rows {
            let scale = 1.0 / f64::from(norms[i]);
            let z = x[DIMS]
                + feats[i]
                    .iter()
                    .map(|&k| x[k as usize] * f64::from(idf[k as usize]) * scale)
                    .sum::<f64>();
            // log(1 + e^z) - y z, computed stably.
            let softplus = if z > 0.0 {
                z + (-z).exp().ln_1p()
            } else {
                z.exp().ln_1p()
            };
            loss += wt * (softplus - if y { z } else { 0.0 });
            let p = 1.0 / (1.0 + (-z).exp());
            let d = wt * (p - f64::from(u8::from(y)));
            for &k in &feats[i] {
                g[k as usize] += d * f64::from(idf[k as usize]) * scale;
            }
            g[DIMS] += d;
        }
        loss
    };
    let x = portcullis_lab::lbfgs::minimise(n, eval, 300);
    (
        x[..DIMS].iter().map(|v| *v as f32).collect(),
        x[DIMS] as f32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{evaluate, ex};

    #[test]
    fn the_log_count_ratio_favours_what_tells_the_classes_apart() {
        // Feature 1 only in flagged rows, 2 only in clean ones, 3 in all alike.
        let feats = vec![vec![1, 3], vec![1, 3], vec![2, 3], vec![2, 3]];
        let rows = [
            (0, true, 1.0),
            (1, true, 1.0),
            (2, false, 1.0),
            (3, false, 1.0),
        ];
        let r = log_count_ratio(&rows, &feats);
        assert!(r[1] > 0.5 && r[2] < -0.5, "{} {}", r[1], r[2]);
        assert!(r[3].abs() < 1e-9 && r[0].abs() < 1e-9);
        // Row weights count: a heavier clean row holding feature 1 pulls its ratio down.
        let heavy = [(0, true, 1.0), (1, false, 5.0)];
        assert!(log_count_ratio(&heavy, &feats)[1] < r[1]);
    }

    #[test]
    fn fitting_learns_a_separable_toy_problem() {
        let mut data = Vec::new();
        for i in 0..40 {
            data.push(ex(
                &format!("you stupid worthless moron number {i}"),
                1,
                &["harassment"],
            ));
            data.push(ex(&format!("please bake a lovely cake number {i}"), 0, &[]));
        }
        let m = fit(&data);
        assert!(m.score("what a stupid worthless moron").flagged > 0.8);
        assert!(m.score("bake a lovely cake").flagged < 0.2);
        let report = evaluate(&m, &data);
        assert_eq!(report["recall"], 1.0);
        assert!(report["per_category"]["harassment"]["support"] == 40);
    }
}
