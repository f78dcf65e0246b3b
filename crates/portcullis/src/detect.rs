//! Detectors over finished requests that need a human even when every request was handled
//! correctly: a principal using far more tokens than its own baseline (a leaked key, a runaway
//! agent), the upstream slower than it usually is, too many requests failing.

use portcullis_store::AuditRecord;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `[alerts.token_spike]`: tokens per principal per window against that principal's EWMA.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSpikeConfig {
    pub enabled: bool,
    /// Length of one window, in seconds.
    pub window_s: u64,
    /// Weight of the newest window in the moving mean and deviation (0 < alpha ≤ 1).
    pub alpha: f64,
    /// Fires above mean + k · standard deviation…
    pub k: f64,
    /// …and above this many tokens in the window, whatever the baseline.
    pub floor_tokens: u64,
    /// Windows a principal must have been seen for before its baseline is trusted.
    pub min_windows: u32,
}

impl Default for TokenSpikeConfig {
    fn default() -> Self {
        TokenSpikeConfig {
            enabled: true,
            window_s: 60,
            alpha: 0.2,
            k: 4.0,
            floor_tokens: 20_000,
            min_windows: 10,
        }
    }
}

/// `[alerts.upstream_latency]`: each window's upstream p95 against the EWMA of earlier ones.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    pub enabled: bool,
    pub window_s: u64,
    /// Fires when the window's p95 exceeds the baseline times this…
    pub factor: f64,
    /// …and this many milliseconds.
    pub floor_ms: u64,
    /// Upstream calls a window needs to be judged.
    pub min_samples: usize,
    pub alpha: f64,
    /// Judged windows before the baseline is trusted.
    pub min_windows: u32,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            enabled: true,
            window_s: 300,
            factor: 2.0,
            floor_ms: 2_000,
            min_samples: 20,
            alpha: 0.2,
            min_windows: 3,
        }
    }
}

/// `[alerts.error_rate]`: the share of requests answered with a 5xx within a window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorRateConfig {
    pub enabled: bool,
    pub window_s: u64,
    /// Fires above this share (0–1)…
    pub threshold: f64,
    /// …once the window has seen this many requests.
    pub min_requests: u64,
}

impl Default for ErrorRateConfig {
    fn default() -> Self {
        ErrorRateConfig {
            enabled: true,
            window_s: 300,
            threshold: 0.2,
            min_requests: 20,
        }
    }
}

/// What a detector found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: &'static str,
    pub subject: String,
    pub message: String,
    pub details: serde_json::Value,
}

/// A mean and variance that forget old values geometrically.
#[derive(Debug, Clone, Copy, Default)]
struct Ewma {
    mean: f64,
    var: f64,
    seen: u32,
}

impl Ewma {
    fn push(&mut self, x: f64, alpha: f64) {
        if self.seen == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let diff = x - self.mean;
            let incr = alpha * diff;
            self.mean += incr;
            self.var = (1.0 - alpha) * (self.var + diff * incr);
        }
        self.seen = self.seen.saturating_add(1);
    }

    fn sd(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }
}

/// Whole windows between `start` and `now`.
fn windows_since(start: Instant, now: Instant, window: Duration) -> u32 {
    let elapsed = now.saturating_duration_since(start).as_millis();
    u32::try_from(elapsed / window.as_millis().max(1)).unwrap_or(u32::MAX)
}

/// Idle windows folded in at most (after that the baseline is all zeros anyway).
const MAX_IDLE_WINDOWS: u32 = 64;

/// Principals tracked at most; beyond this the idle are forgotten first.
const MAX_PRINCIPALS: usize = 100_000;

#[derive(Debug)]
struct Usage {
    start: Instant,
    tokens: u64,
    baseline: Ewma,
    alerted: bool,
}

/// Per-principal token spikes.
pub struct TokenSpike {
    config: TokenSpikeConfig,
    window: Duration,
    principals: Mutex<HashMap<String, Usage>>,
}

impl TokenSpike {
    /// A detector for `config`.
    pub fn new(config: &TokenSpikeConfig) -> Self {
        TokenSpike {
            config: config.clone(),
            window: Duration::from_secs(config.window_s.max(1)),
            principals: Mutex::new(HashMap::new()),
        }
    }

    /// Counts `tokens` used by `who` at `now`; a finding the first time in a window the
    /// principal's usage crosses its threshold.
    pub fn observe(&self, who: &str, tokens: u64, now: Instant) -> Option<Finding> {
        if !self.config.enabled || who.is_empty() {
            return None;
        }
        let mut all = self.principals.lock().ok()?;
        if all.len() >= MAX_PRINCIPALS && !all.contains_key(who) {
            let stale = self.window * 2;
            all.retain(|_, u| now.saturating_duration_since(u.start) < stale);
            if all.len() >= MAX_PRINCIPALS {
                return None;
            }
        }
        let u = all.entry(who.to_owned()).or_insert(Usage {
            start: now,
            tokens: 0,
            baseline: Ewma::default(),
            alerted: false,
        });
        let passed = windows_since(u.start, now, self.window);
        if passed > 0 {
            u.baseline.push(u.tokens as f64, self.config.alpha);
            for _ in 1..passed.min(MAX_IDLE_WINDOWS) {
                u.baseline.push(0.0, self.config.alpha);
            }
            u.start += self.window * passed;
            u.tokens = 0;
            u.alerted = false;
        }
        u.tokens = u.tokens.saturating_add(tokens);
        if u.alerted || u.baseline.seen < self.config.min_windows {
            return None;
        }
        let threshold = (u.baseline.mean + self.config.k * u.baseline.sd())
            .max(self.config.floor_tokens as f64);
        if (u.tokens as f64) <= threshold {
            return None;
        }
        u.alerted = true;
        Some(Finding {
            kind: "token_spike",
            subject: who.to_owned(),
            message: format!(
                "'{who}' used {} tokens within {} s; its baseline is {:.0} ± {:.0} per window (threshold {:.0})",
                u.tokens,
                self.window.as_secs(),
                u.baseline.mean,
                u.baseline.sd(),
                threshold
            ),
            details: json!({
                "tokens": u.tokens,
                "window_s": self.window.as_secs(),
                "baseline_mean": u.baseline.mean,
                "baseline_sd": u.baseline.sd(),
                "threshold": threshold,
            }),
        })
    }
}

#[derive(Debug)]
struct LatencyWindow {
    start: Option<Instant>,
    samples: Vec<u64>,
    baseline: Ewma,
}

/// Upstream latencies (milliseconds) kept per window at most.
const MAX_SAMPLES: usize = 50_000;

/// The upstream's p95 against its own history.
pub struct UpstreamLatency {
    config: LatencyConfig,
    window: Duration,
    state: Mutex<LatencyWindow>,
}

impl UpstreamLatency {
    /// A detector for `config`.
    pub fn new(config: &LatencyConfig) -> Self {
        UpstreamLatency {
            config: config.clone(),
            window: Duration::from_secs(config.window_s.max(1)),
            state: Mutex::new(LatencyWindow {
                start: None,
                samples: Vec::new(),
                baseline: Ewma::default(),
            }),
        }
    }

    /// Records one upstream call of `ms`; when a window closes, judges its p95.
    pub fn observe(&self, ms: u64, now: Instant) -> Option<Finding> {
        if !self.config.enabled {
            return None;
        }
        let mut s = self.state.lock().ok()?;
        let start = *s.start.get_or_insert(now);
        let passed = windows_since(start, now, self.window);
        let mut finding = None;
        if passed > 0 {
            s.start = Some(start + self.window * passed);
            let mut closed = std::mem::take(&mut s.samples);
            if closed.len() >= self.config.min_samples.max(1) {
                closed.sort_unstable();
                let idx = (closed.len() * 95).div_ceil(100).saturating_sub(1);
                let p95 = closed.get(idx).copied().unwrap_or(0) as f64;
                let limit = (s.baseline.mean * self.config.factor).max(self.config.floor_ms as f64);
                if s.baseline.seen >= self.config.min_windows && p95 > limit {
                    finding = Some(Finding {
                        kind: "upstream_latency",
                        subject: "upstream".into(),
                        message: format!(
                            "upstream p95 was {p95:.0} ms over the last {} s, against a baseline of {:.0} ms (limit {limit:.0} ms)",
                            self.window.as_secs(),
                            s.baseline.mean
                        ),
                        details: json!({"p95_ms": p95, "baseline_ms": s.baseline.mean, "limit_ms": limit, "samples": closed.len()}),
                    });
                }
                s.baseline.push(p95, self.config.alpha);
            }
        }
        if s.samples.len() < MAX_SAMPLES {
            s.samples.push(ms);
        }
        finding
    }
}

#[derive(Debug, Default)]
struct ErrorWindow {
    start: Option<Instant>,
    total: u64,
    errors: u64,
    alerted: bool,
}

/// The share of failed requests.
pub struct ErrorRate {
    config: ErrorRateConfig,
    window: Duration,
    state: Mutex<ErrorWindow>,
}

impl ErrorRate {
    /// A detector for `config`.
    pub fn new(config: &ErrorRateConfig) -> Self {
        ErrorRate {
            config: config.clone(),
            window: Duration::from_secs(config.window_s.max(1)),
            state: Mutex::new(ErrorWindow::default()),
        }
    }

    /// Counts one request that ended with `status`.
    pub fn observe(&self, status: i32, now: Instant) -> Option<Finding> {
        if !self.config.enabled {
            return None;
        }
        let mut s = self.state.lock().ok()?;
        let start = *s.start.get_or_insert(now);
        let passed = windows_since(start, now, self.window);
        if passed > 0 {
            *s = ErrorWindow {
                start: Some(start + self.window * passed),
                ..ErrorWindow::default()
            };
        }
        s.total += 1;
        if status >= 500 {
            s.errors += 1;
        }
        let rate = s.errors as f64 / s.total as f64;
        if s.alerted || s.total < self.config.min_requests || rate <= self.config.threshold {
            return None;
        }
        s.alerted = true;
        Some(Finding {
            kind: "error_rate",
            subject: "gateway".into(),
            message: format!(
                "{} of {} requests ({:.0} %) failed with a 5xx within {} s (threshold {:.0} %)",
                s.errors,
                s.total,
                rate * 100.0,
                self.window.as_secs(),
                self.config.threshold * 100.0
            ),
            details: json!({"errors": s.errors, "requests": s.total, "rate": rate, "threshold": self.config.threshold}),
        })
    }
}

/// Every detector, fed each finished request.
pub struct Detectors {
    pub tokens: TokenSpike,
    pub latency: UpstreamLatency,
    pub errors: ErrorRate,
}

impl Detectors {
    /// The detectors `[alerts]` configures.
    pub fn new(config: &crate::anomaly::AlertsConfig) -> Self {
        Detectors {
            tokens: TokenSpike::new(&config.token_spike),
            latency: UpstreamLatency::new(&config.upstream_latency),
            errors: ErrorRate::new(&config.error_rate),
        }
    }

    /// What the request `r` finished at `now` reveals.
    pub fn observe(&self, r: &AuditRecord, now: Instant) -> Vec<Finding> {
        let tokens = (r.prompt_tokens + r.completion_tokens)
            .max(0)
            .unsigned_abs();
        let who = r.user.as_deref().unwrap_or_default();
        [
            self.tokens.observe(who, tokens, now),
            r.upstream_ms
                .and_then(|ms| self.latency.observe(ms.max(0).unsigned_abs(), now)),
            self.errors.observe(r.status, now),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(t: Instant, s: u64) -> Instant {
        t + Duration::from_secs(s)
    }

    #[test]
    fn a_spike_against_the_principals_own_baseline_fires_once_per_window() {
        let d = TokenSpike::new(&TokenSpikeConfig {
            window_s: 10,
            k: 3.0,
            floor_tokens: 500,
            min_windows: 3,
            ..TokenSpikeConfig::default()
        });
        let t = Instant::now();
        // A heavy but steady user and a light one, for four windows.
        for w in 0..4 {
            for i in 0..5 {
                assert_eq!(d.observe("steady", 400, secs(t, w * 10 + i)), None);
                assert_eq!(d.observe("light", 20, secs(t, w * 10 + i)), None);
            }
        }
        // 2,000 per window is normal for `steady`: no alert.
        for i in 0..5 {
            assert_eq!(d.observe("steady", 400, secs(t, 40 + i)), None);
        }
        // The light user (100 a window) jumps to 600: above its own baseline and the floor.
        assert_eq!(
            d.observe("light", 400, secs(t, 41)),
            None,
            "under the floor"
        );
        let f = d.observe("light", 200, secs(t, 42)).unwrap();
        assert_eq!((f.kind, f.subject.as_str()), ("token_spike", "light"));
        assert_eq!(f.details["tokens"], 600);
        assert_eq!(
            d.observe("light", 5_000, secs(t, 43)),
            None,
            "once per window"
        );
    }

    #[test]
    fn no_baseline_no_alert_and_off_means_off() {
        let cfg = TokenSpikeConfig {
            window_s: 10,
            floor_tokens: 1,
            min_windows: 2,
            ..TokenSpikeConfig::default()
        };
        let d = TokenSpike::new(&cfg);
        let t = Instant::now();
        assert_eq!(
            d.observe("new", 1_000_000, t),
            None,
            "first window: no baseline yet"
        );
        let off = TokenSpike::new(&TokenSpikeConfig {
            enabled: false,
            ..cfg
        });
        for w in 0..5 {
            assert_eq!(
                off.observe("u", 10 * 10u64.pow(w), secs(t, u64::from(w) * 10)),
                None
            );
        }
    }

    #[test]
    fn upstream_p95_above_its_baseline_fires_when_the_window_closes() {
        let d = UpstreamLatency::new(&LatencyConfig {
            window_s: 10,
            floor_ms: 100,
            min_samples: 5,
            min_windows: 2,
            ..LatencyConfig::default()
        });
        let t = Instant::now();
        for w in 0..3 {
            for i in 0..10 {
                assert_eq!(d.observe(50 + i, secs(t, w * 10 + i)), None);
            }
        }
        // Window 3 is slow; it is judged when the next call closes it.
        for i in 0..10 {
            assert_eq!(d.observe(900, secs(t, 30 + i)), None);
        }
        let f = d.observe(50, secs(t, 41)).unwrap();
        assert_eq!(f.kind, "upstream_latency");
        assert_eq!(f.details["p95_ms"], 900.0);
    }

    #[test]
    fn error_rate_above_threshold_fires_once_enough_requests_were_seen() {
        let d = ErrorRate::new(&ErrorRateConfig {
            window_s: 60,
            threshold: 0.5,
            min_requests: 4,
            ..ErrorRateConfig::default()
        });
        let t = Instant::now();
        assert_eq!(d.observe(502, t), None, "too few requests to judge");
        assert_eq!(d.observe(502, t), None);
        assert_eq!(d.observe(200, t), None);
        let f = d.observe(503, t).unwrap();
        assert_eq!(f.details["errors"], 3);
        assert_eq!(d.observe(500, t), None, "once per window");
        // A new window starts clean.
        assert_eq!(d.observe(200, secs(t, 61)), None);
    }
}
