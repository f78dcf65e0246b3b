//! Anomaly alerts: a user whose requests keep getting flagged or blocked (probing for a
//! jailbreak, pasting one toxic text after another) is worth a human's look even when every
//! single request was handled correctly.

use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Flagged or blocked requests by one user within `window_s` that raise a
    /// `user_flag_burst` alert; 0 turns the check off.
    pub flagged_per_user: usize,
    /// The sliding window, in seconds.
    pub window_s: u64,
    /// Seconds after an alert during which the same kind about the same subject is neither
    /// posted nor stored again (it is still counted and logged).
    pub cooldown_s: u64,
    pub token_spike: crate::detect::TokenSpikeConfig,
    pub upstream_latency: crate::detect::LatencyConfig,
    pub error_rate: crate::detect::ErrorRateConfig,
    /// Read at start only: a reload that changes it is refused as needing a restart.
    pub audit_spool: crate::spool_watch::SpoolAlertConfig,
    pub webhook: crate::notify::WebhookConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            flagged_per_user: 5,
            window_s: 600,
            cooldown_s: 600,
            token_spike: Default::default(),
            upstream_latency: Default::default(),
            error_rate: Default::default(),
            audit_spool: Default::default(),
            webhook: Default::default(),
        }
    }
}

/// Users tracked at most; beyond this the quietest are forgotten first.
const MAX_USERS: usize = 100_000;

#[derive(Default)]
struct UserWindow {
    hits: VecDeque<Instant>,
    /// No second alert for this user before then.
    quiet_until: Option<Instant>,
}

/// Counts each user's flagged requests over a sliding window.
pub struct FlagWatch {
    limit: usize,
    window: Duration,
    users: Mutex<HashMap<String, UserWindow>>,
}

impl FlagWatch {
    /// A watch for `config`.
    pub fn new(config: &AlertsConfig) -> Self {
        FlagWatch {
            limit: config.flagged_per_user,
            window: Duration::from_secs(config.window_s.max(1)),
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Records one flagged request by `user` at `now`; returns the count in the window when
    /// it has just reached the limit (once per window per user).
    pub fn record(&self, user: &str, now: Instant) -> Option<usize> {
        if self.limit == 0 {
            return None;
        }
        let mut users = self.users.lock().ok()?;
        if users.len() >= MAX_USERS && !users.contains_key(user) {
            let window = self.window;
            users.retain(|_, w| w.hits.back().is_some_and(|t| now - *t < window));
            if users.len() >= MAX_USERS {
                return None;
            }
        }
        let w = users.entry(user.to_owned()).or_default();
        while w.hits.front().is_some_and(|t| now - *t >= self.window) {
            w.hits.pop_front();
        }
        w.hits.push_back(now);
        if w.hits.len() > self.limit {
            w.hits.pop_front();
        }
        let quiet = w.quiet_until.is_some_and(|q| now < q);
        if w.hits.len() >= self.limit && !quiet {
            w.quiet_until = Some(now + self.window);
            return Some(w.hits.len());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(limit: usize, window_s: u64) -> FlagWatch {
        FlagWatch::new(&AlertsConfig {
            flagged_per_user: limit,
            window_s,
            ..AlertsConfig::default()
        })
    }

    #[test]
    fn the_limit_within_the_window_alerts_once() {
        let w = watch(3, 60);
        let t = Instant::now();
        assert_eq!(w.record("mallory", t), None);
        assert_eq!(w.record("mallory", t + Duration::from_secs(1)), None);
        assert_eq!(w.record("alice", t + Duration::from_secs(1)), None);
        assert_eq!(w.record("mallory", t + Duration::from_secs(2)), Some(3));
        assert_eq!(
            w.record("mallory", t + Duration::from_secs(3)),
            None,
            "no repeat within the window"
        );
        // After the quiet period a new burst alerts again.
        let later = t + Duration::from_secs(100);
        assert_eq!(w.record("mallory", later), None);
        assert_eq!(w.record("mallory", later + Duration::from_secs(1)), None);
        assert_eq!(w.record("mallory", later + Duration::from_secs(2)), Some(3));
    }

    #[test]
    fn spread_out_flags_do_not_alert_and_zero_turns_it_off() {
        let w = watch(3, 10);
        let t = Instant::now();
        for i in 0..10 {
            assert_eq!(w.record("bob", t + Duration::from_secs(6 * i)), None);
        }
        let off = watch(0, 10);
        for _ in 0..10 {
            assert_eq!(off.record("bob", t), None);
        }
    }
}
