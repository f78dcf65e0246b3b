//! How the `eval` commands time a detector: the steady state of a running gateway, not the
//! first call's lazy-DFA warm-up and not timer noise.

use std::time::Instant;

/// Timed passes at most.
const MAX_PASSES: usize = 20;
/// Passes stop once this much time has been timed (seconds).
const ENOUGH_SECS: f64 = 0.5;

/// MB/s over whole passes of `pass` (which returns the bytes it judged), repeated until half a
/// second has been timed. Call it after one untimed pass has warmed the detector up.
pub fn steady_mb_per_s(mut pass: impl FnMut() -> usize) -> f64 {
    let (mut bytes, mut secs) = (0usize, 0f64);
    for _ in 0..MAX_PASSES {
        let t = Instant::now();
        let judged = pass();
        secs += t.elapsed().as_secs_f64();
        bytes += judged;
        if secs >= ENOUGH_SECS || judged == 0 {
            break;
        }
    }
    bytes as f64 / 1e6 / secs.max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_pass_stops_at_once_and_reports_nothing() {
        let mut calls = 0;
        let r = steady_mb_per_s(|| {
            calls += 1;
            0
        });
        assert_eq!((calls, r), (1, 0.0));
    }

    #[test]
    fn passes_repeat_until_enough_time_or_the_cap() {
        let mut calls = 0;
        let r = steady_mb_per_s(|| {
            calls += 1;
            1_000
        });
        assert!(calls > 1 && calls <= MAX_PASSES, "{calls}");
        assert!(r > 0.0);
    }
}
