//! Watching the audit journal: how many records wait for the store and how many bytes the
//! journal holds, as gauges, and the `audit_spool_growing` alert when the backlog keeps growing
//! (the store is down or too slow, and the disk fills while nobody looks). Read from the
//! writer's counters every few seconds — no store is pinged to know it.

use crate::detect::Finding;
use portcullis_store::AuditWriter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// `[alerts.audit_spool]`: when a growing audit backlog raises `audit_spool_growing`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolAlertConfig {
    pub enabled: bool,
    /// Seconds between two looks at the journal (also how fresh the gauges are between
    /// scrapes).
    pub check_s: u64,
    /// Fires when the backlog has not fallen for this many seconds…
    pub window_s: u64,
    /// …and grew by at least this many records meanwhile…
    pub min_growth: u64,
    /// …or at once when this many records wait.
    pub max_pending: u64,
}

impl Default for SpoolAlertConfig {
    fn default() -> Self {
        SpoolAlertConfig {
            enabled: true,
            check_s: 5,
            window_s: 60,
            min_growth: 10,
            max_pending: 10_000,
        }
    }
}

/// The audit log's gauges in the gateway's registry.
#[derive(Debug, Clone, Default)]
pub struct AuditGauges {
    /// `portcullis_audit_pending_records`.
    pub pending: Gauge,
    /// `portcullis_audit_journal_bytes`.
    pub journal_bytes: Gauge,
}

impl AuditGauges {
    /// Registers the gauges in `r` (prefixed `portcullis_`).
    pub fn register(r: &mut Registry) -> AuditGauges {
        let g = AuditGauges::default();
        r.register(
            "audit_pending_records",
            "Audit records accepted and journaled but not yet in every sink (the store down or behind)",
            g.pending.clone(),
        );
        r.register_with_unit(
            "audit_journal",
            "Size of the audit journal on local disk (records waiting, and the segment being written)",
            Unit::Bytes,
            g.journal_bytes.clone(),
        );
        g
    }

    /// Reads the writer's counters into the gauges; returns (pending, bytes).
    pub fn update(&self, w: &AuditWriter) -> (u64, u64) {
        let pending = w.spooled() as u64;
        let bytes = w.journal_bytes();
        self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.journal_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        (pending, bytes)
    }
}

/// The backlog's course since it last fell.
#[derive(Debug, Default)]
struct Course {
    /// When the backlog last stopped falling, and its size then.
    since: Option<(Instant, u64)>,
    last: u64,
    /// Fired for this backlog: quiet until it drains to zero.
    fired: bool,
}

/// Decides when a growing backlog is worth a human's look: once per backlog.
#[derive(Debug)]
pub struct SpoolGrowth {
    config: SpoolAlertConfig,
    course: Mutex<Course>,
}

impl SpoolGrowth {
    /// A detector for `config`.
    pub fn new(config: &SpoolAlertConfig) -> Self {
        SpoolGrowth {
            config: config.clone(),
            course: Mutex::new(Course::default()),
        }
    }

    /// One look at the backlog of `replica`: `pending` records, `bytes` on disk, at `now`.
    pub fn observe(
        &self,
        replica: &str,
        pending: u64,
        bytes: u64,
        now: Instant,
    ) -> Option<Finding> {
        if !self.config.enabled {
            return None;
        }
        let mut c = self.course.lock().ok()?;
        if pending == 0 {
            *c = Course::default();
            return None;
        }
        if c.fired {
            return None;
        }
        let start = match c.since {
            Some(s) if pending >= c.last => s,
            _ => (now, pending),
        };
        c.since = Some(start);
        c.last = pending;
        let grew = pending - start.1;
        let lasted = now.duration_since(start.0);
        let window = Duration::from_secs(self.config.window_s);
        let full = pending >= self.config.max_pending;
        if !full && (lasted < window || grew < self.config.min_growth) {
            return None;
        }
        c.fired = true;
        Some(Finding {
            kind: "audit_spool_growing",
            subject: replica.to_owned(),
            message: format!(
                "{pending} audit records ({bytes} bytes) wait in the journal of replica \
                 '{replica}' and the backlog grew by {grew} in {} s: is the audit store down?",
                lasted.as_secs()
            ),
            details: json!({"pending": pending, "journal_bytes": bytes, "grew": grew,
                "seconds": lasted.as_secs(), "max_pending": self.config.max_pending}),
        })
    }
}

/// Looks at the writer every `check_s` seconds: refreshes the gauges and raises the alert.
/// Stops when the writer is gone.
pub fn spawn(
    writer: Weak<AuditWriter>,
    metrics: Weak<crate::metrics::Metrics>,
    config: &SpoolAlertConfig,
) {
    let every = Duration::from_secs(config.check_s.max(1));
    let growth = SpoolGrowth::new(config);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (Some(w), Some(m)) = (writer.upgrade(), metrics.upgrade()) else {
                return;
            };
            let (pending, bytes) = m.audit.update(&w);
            if let Some(f) = growth.observe(w.replica(), pending, bytes, Instant::now()) {
                m.alert_about(f.kind, &f.subject, &f.message, f.details);
            }
        }
    });
}

/// Refreshes the gauges now (each scrape), from counters in memory.
pub fn refresh(writer: &Arc<AuditWriter>, metrics: &crate::metrics::Metrics) {
    metrics.audit.update(writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: Instant, s: u64) -> Instant {
        t + Duration::from_secs(s)
    }

    #[test]
    fn a_backlog_that_keeps_growing_fires_once_until_it_drains() {
        let g = SpoolGrowth::new(&SpoolAlertConfig {
            window_s: 10,
            min_growth: 5,
            ..SpoolAlertConfig::default()
        });
        let t = Instant::now();
        // An ordinary backlog comes and goes: no alert.
        for s in 0..30 {
            assert_eq!(
                g.observe("r", [0, 3, 1][s as usize % 3], 100, at(t, s)),
                None
            );
        }
        // The store is down: the backlog grows and never falls.
        let mut fired = Vec::new();
        for s in 30..60 {
            fired.extend(g.observe("r", s - 29, 100 * s, at(t, s)));
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].kind, "audit_spool_growing");
        assert_eq!(fired[0].subject, "r");
        // The backlog stopped falling at 29 s (1 record): 10 s later, 10 records.
        assert_eq!(fired[0].details["pending"], 10, "{}", fired[0].details);
        // Drained, then growing again: a new alert.
        assert_eq!(g.observe("r", 0, 0, at(t, 61)), None);
        let again: Vec<_> = (62..80)
            .filter_map(|s| g.observe("r", s - 61, 10, at(t, s)))
            .collect();
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn a_flat_backlog_waits_a_full_one_fires_at_once_and_off_is_off() {
        let g = SpoolGrowth::new(&SpoolAlertConfig {
            window_s: 10,
            min_growth: 5,
            max_pending: 1000,
            ..SpoolAlertConfig::default()
        });
        let t = Instant::now();
        for s in 0..100 {
            assert_eq!(
                g.observe("r", 7, 1, at(t, s)),
                None,
                "stuck but not growing"
            );
        }
        assert!(
            g.observe("r", 1000, 1, at(t, 100)).is_some(),
            "over the ceiling"
        );
        let off = SpoolGrowth::new(&SpoolAlertConfig {
            enabled: false,
            max_pending: 1,
            ..SpoolAlertConfig::default()
        });
        assert_eq!(off.observe("r", 50, 1, t), None);
    }
}
