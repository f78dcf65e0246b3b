//! A small L-BFGS minimiser for the training commands: the detectors' learners are convex
//! (regularised logistic regression), and solving them to convergence ranks better than a
//! few epochs of stochastic gradient descent.

/// Minimises a smooth convex function of `n` variables from zero by L-BFGS (ten pairs of
/// history, backtracking line search), for at most `iters` steps.
pub fn minimise(n: usize, mut f: impl FnMut(&[f64], &mut [f64]) -> f64, iters: usize) -> Vec<f64> {
    const HISTORY: usize = 10;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut x = vec![0.0; n];
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    let mut hist: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = Default::default();
    let (mut xn, mut gn) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..iters {
        // The two-loop recursion: d = -H g.
        let mut d: Vec<f64> = g.iter().map(|v| -v).collect();
        let mut alphas = Vec::with_capacity(hist.len());
        for (s, y, rho) in hist.iter().rev() {
            let a = rho * dot(s, &d);
            for (di, yi) in d.iter_mut().zip(y) {
                *di -= a * yi;
            }
            alphas.push(a);
        }
        let gamma = hist
            .back()
            .map_or(1.0 / dot(&g, &g).sqrt().max(1e-12), |(s, y, _)| {
                dot(s, y) / dot(y, y)
            });
        for di in d.iter_mut() {
            *di *= gamma;
        }
        for ((s, y, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &d);
            for (di, si) in d.iter_mut().zip(s) {
                *di += (a - b) * si;
            }
        }
        let slope = dot(&g, &d);
        if slope >= 0.0 {
            break;
        }
        let mut step = 1.0;
        let fnew = loop {
            for ((xn, x), d) in xn.iter_mut().zip(&x).zip(&d) {
                *xn = x + step * d;
            }
            let v = f(&xn, &mut gn);
            if v <= fx + 1e-4 * step * slope || step < 1e-10 {
                break v;
            }
            step *= 0.5;
        };
        let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        std::mem::swap(&mut x, &mut xn);
        std::mem::swap(&mut g, &mut gn);
        let done = (fx - fnew).abs() <= 1e-9 * fx.abs().max(1.0);
        fx = fnew;
        if sy > 1e-12 {
            if hist.len() == HISTORY {
                hist.pop_front();
            }
            hist.push_back((s, y, 1.0 / sy));
        }
        if done {
            break;
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_an_ill_conditioned_quadratic() {
        // f(x, y) = (x - 1)² + 50 (y + 2)²
        let x = minimise(
            2,
            |x, g| {
                g[0] = 2.0 * (x[0] - 1.0);
                g[1] = 100.0 * (x[1] + 2.0);
                (x[0] - 1.0).powi(2) + 50.0 * (x[1] + 2.0).powi(2)
            },
            100,
        );
        assert!(
            (x[0] - 1.0).abs() < 1e-4 && (x[1] + 2.0).abs() < 1e-4,
            "{x:?}"
        );
    }

    #[test]
    fn stops_at_once_where_the_gradient_is_zero() {
        let mut calls = 0;
        let x = minimise(
            3,
            |_, g| {
                calls += 1;
                g.fill(0.0);
                0.0
            },
            100,
        );
        assert_eq!(x, vec![0.0; 3]);
        assert!(calls <= 2, "{calls}");
    }
}
