//! Per-request context: who is calling, the request's secret nonce, the pseudonym vault,
//! and the trace of every guard's verdict that the audit record is built from.

use crate::finding::Finding;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::time::Instant;

/// The authenticated caller a request is charged to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Gateway key id (never the key itself).
    pub key_id: String,
    /// The user the key belongs to, or the end user a service key named.
    pub user: String,
    /// The team, when the key has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The named policy the key is bound to, when not the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Set when a service key named this end user in the request's `user` field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_user: Option<String>,
}

/// Which way text is flowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Input,
    Output,
}

/// How a stage's verdict turned out, as recorded for audit and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allow,
    Flag,
    Transform,
    Block,
    /// Monitor mode: the guard would have transformed; nothing was changed.
    WouldTransform,
    /// Monitor mode: the guard would have blocked; the request went on.
    WouldBlock,
    /// The guard could not decide and failed open.
    ErrorOpen,
    /// The guard could not decide and failed closed.
    ErrorClosed,
}

/// One guard's verdict on one request (or stream window), for the audit record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardRecord {
    pub guard: String,
    pub direction: Direction,
    /// The mode the stage ran in for this request (a rollout narrows enforce to monitor).
    pub mode: crate::pipeline::Mode,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// Parameters changed, as `name: before -> after`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time the guard took; over a stream, the total of every window.
    pub micros: u64,
    /// Stream windows this verdict sums up (0: the verdict is on a whole request or answer).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub windows: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Outcome {
    /// How bad the outcome is, for keeping the worst of several: a refusal over a change over
    /// a flag, a guard that could not decide above what it would have done.
    pub fn severity(self) -> u8 {
        match self {
            Outcome::Allow => 0,
            Outcome::Flag => 1,
            Outcome::WouldTransform => 2,
            Outcome::Transform => 3,
            Outcome::ErrorOpen => 4,
            Outcome::WouldBlock => 5,
            Outcome::Block => 6,
            Outcome::ErrorClosed => 7,
        }
    }
}

impl GuardRecord {
    /// Folds the verdict on one more stream window into this guard's verdict on the stream:
    /// the worst outcome, every finding once (a finding seen again in the already-sent
    /// context of a later window is the same finding), every change, the first error, and
    /// the total time.
    fn absorb(&mut self, w: GuardRecord) {
        if w.outcome.severity() > self.outcome.severity() {
            self.outcome = w.outcome;
        }
        for f in w.findings {
            match self.findings.iter_mut().find(|g| g.same_place(&f)) {
                Some(g) => g.score = g.score.max(f.score),
                None => self.findings.push(f),
            }
        }
        for c in w.changes {
            if !self.changes.contains(&c) {
                self.changes.push(c);
            }
        }
        if self.error.is_none() {
            self.error = w.error;
        }
        self.micros = self.micros.saturating_add(w.micros);
        self.windows = self.windows.saturating_add(w.windows.max(1));
    }
}

/// Placeholders handed to the provider and the originals they stand for, for this request only.
#[derive(Debug, Clone, Default)]
pub struct Vault {
    entries: Vec<(String, String)>,
}

impl Vault {
    /// Records a placeholder (idempotent for the same placeholder).
    pub fn remember(&mut self, placeholder: String, original: String) {
        if !self.entries.iter().any(|(p, _)| *p == placeholder) {
            self.entries.push((placeholder, original));
        }
    }

    /// Whether anything needs restoring.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The placeholder already given to this original, so the same value keeps one name.
    pub fn placeholder_for(&self, original: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, o)| o == original)
            .map(|(p, _)| p.as_str())
    }

    /// Whether `placeholder` was issued for this request (only those are restored, and only
    /// those may be skipped when scanning text the model sends back).
    pub fn issued(&self, placeholder: &str) -> bool {
        self.entries.iter().any(|(p, _)| p == placeholder)
    }

    /// How many placeholders start with `prefix` (`[EMAIL_`), for numbering the next one.
    pub fn count_prefix(&self, prefix: &str) -> usize {
        self.entries
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .count()
    }

    /// Number of placeholders.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Puts the originals back into text the model wrote.
    pub fn restore(&self, text: &str) -> String {
        if self.entries.is_empty() || !text.contains('[') {
            return text.to_owned();
        }
        let mut out = text.to_owned();
        // Longest placeholders first so `[EMAIL_1]` never eats part of `[EMAIL_12]`.
        let mut entries: Vec<&(String, String)> = self.entries.iter().collect();
        entries.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        for (p, o) in entries {
            if out.contains(p.as_str()) {
                out = out.replace(p.as_str(), o);
            }
        }
        out
    }

    /// How many leading bytes of streamed text can be restored and sent now without cutting a
    /// placeholder in half; the rest waits for the next chunk.
    pub fn safe_prefix(&self, text: &str) -> usize {
        const LONGEST: usize = 48;
        if self.entries.is_empty() {
            return text.len();
        }
        if let Some(open) = text.rfind('[') {
            let tail = &text[open..];
            if !tail.contains(']') && tail.len() < LONGEST {
                let could_be = self.entries.iter().any(|(p, _)| p.starts_with(tail));
                if could_be {
                    return open;
                }
            }
        }
        text.len()
    }
}

/// Everything a guard may know about the request it judges, plus what the pipeline records.
#[derive(Debug, Clone)]
pub struct Context {
    pub request_id: String,
    pub principal: Principal,
    /// Named route or policy the request is served under (e.g. `rag`), when any.
    pub route: Option<String>,
    /// Per-request secret: boundaries and canaries derive from it, so clients cannot guess them.
    nonce: [u8; 32],
    pub vault: Vault,
    pub trace: Vec<GuardRecord>,
    pub started: Instant,
}

impl Context {
    /// A fresh context with a random nonce.
    pub fn new(request_id: impl Into<String>, principal: Principal) -> Self {
        let mut nonce = [0u8; 32];
        fill_random(&mut nonce);
        Context {
            request_id: request_id.into(),
            principal,
            route: None,
            nonce,
            vault: Vault::default(),
            trace: Vec::new(),
            started: Instant::now(),
        }
    }

    /// A per-request secret token for `purpose` (boundary, canary, …): hex, `len` chars.
    pub fn secret(&self, purpose: &str, len: usize) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.nonce) else {
            return String::new();
        };
        mac.update(purpose.as_bytes());
        let mut s = hex::encode(mac.finalize().into_bytes());
        s.truncate(len.min(64));
        s
    }

    /// Records a guard's verdict on one window of a streamed answer (`lane`, starting at byte
    /// `offset` of that lane's text): the stream keeps one verdict per guard, into which each
    /// window's is folded, with findings placed in the lane's whole text.
    pub fn record_window(&mut self, mut record: GuardRecord, lane: usize, offset: usize) {
        for f in &mut record.findings {
            f.segment = Some(lane);
            if let Some(span) = &mut f.span {
                *span = span.start + offset..span.end + offset;
            }
        }
        record.windows = 1;
        let same = |r: &&mut GuardRecord| {
            r.windows > 0 && r.guard == record.guard && r.direction == record.direction
        };
        match self.trace.iter_mut().find(same) {
            Some(r) => r.absorb(record),
            None => self.trace.push(record),
        }
    }

    /// Every finding recorded so far, across guards.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.trace.iter().flat_map(|r| r.findings.iter())
    }

    /// Whether any stage blocked (or would have, in monitor mode).
    pub fn outcomes(&self) -> impl Iterator<Item = Outcome> + '_ {
        self.trace.iter().map(|r| r.outcome)
    }
}

/// A 32-byte secret drawn from the OS once, the seed of the fallback generator below.
static SEED: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();

/// Draws the process's random seed from the OS; the gateway calls this at start-up and refuses
/// to start when it fails — a request's boundaries and canaries must never be guessable.
pub fn init_random() -> Result<(), getrandom::Error> {
    if SEED.get().is_some() {
        return Ok(());
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    let _ = SEED.set(seed);
    Ok(())
}

/// Fills `buf` from the OS generator. Should a draw fail after start-up (it does not on Linux),
/// the bytes come from HMAC-SHA256 over the start-up seed and a counter: still unpredictable,
/// never derived from the clock, and no panic on the request path.
fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_ok() {
        return;
    }
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = SEED.get().copied().unwrap_or_default();
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&seed) else {
        return;
    };
    mac.update(&n.to_le_bytes());
    let d = mac.finalize().into_bytes();
    for (b, x) in buf.iter_mut().zip(d.iter().cycle()) {
        *b = *x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_restores_longest_first() {
        let mut v = Vault::default();
        v.remember("[EMAIL_1]".into(), "a@x.io".into());
        v.remember("[EMAIL_12]".into(), "b@x.io".into());
        assert_eq!(
            v.restore("mail [EMAIL_12] and [EMAIL_1]."),
            "mail b@x.io and a@x.io."
        );
        assert_eq!(v.placeholder_for("a@x.io"), Some("[EMAIL_1]"));
        assert!(v.issued("[EMAIL_12]") && !v.issued("[EMAIL_2]") && !v.issued("[EMAIL_1"));
        assert_eq!(
            v.restore("[PERSON_1] wrote to [EMAIL_1]"),
            "[PERSON_1] wrote to a@x.io",
            "only issued placeholders are restored"
        );
    }

    #[test]
    fn safe_prefix_holds_back_a_split_placeholder() {
        let mut v = Vault::default();
        v.remember("[PERSON_1]".into(), "Ada".into());
        assert_eq!(v.safe_prefix("Hello [PERS"), 6);
        assert_eq!(v.safe_prefix("Hello [PERSON_1] ok"), 19);
        assert_eq!(
            v.safe_prefix("array [0"),
            8,
            "brackets that cannot be placeholders pass"
        );
    }

    #[test]
    fn secrets_differ_per_request_and_purpose() {
        let a = Context::new("r1", Principal::default());
        let b = Context::new("r2", Principal::default());
        assert_eq!(a.secret("boundary", 16).len(), 16);
        assert_ne!(a.secret("boundary", 16), b.secret("boundary", 16));
        assert_ne!(a.secret("boundary", 16), a.secret("canary", 16));
        assert_eq!(a.secret("canary", 16), a.secret("canary", 16));
    }
}
