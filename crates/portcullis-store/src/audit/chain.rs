//! The per-replica digest chain: each record carries its replica id and a gap-free sequence
//! number, and an HMAC-SHA256 (under the operator's secret) over the previous record's digest
//! and its own JSON. Without a secret nothing is claimed: records are written with an empty
//! digest and `audit verify` says there is no key.

use super::AuditRecord;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The secret the chain is keyed with, or none (records are then not tamper-evident).
#[derive(Clone, Default)]
pub struct ChainKey(Option<Vec<u8>>);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ChainKey(<set>)"
        } else {
            "ChainKey(none)"
        })
    }
}

/// Why a secret cannot key the chain.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the audit HMAC key in ${0} is {1} bytes; use at least 32 random bytes (e.g. `openssl rand -hex 32`)"
    )]
    TooShort(String, usize),
}

impl ChainKey {
    /// A chain keyed with `secret`.
    pub fn new(secret: &[u8]) -> ChainKey {
        ChainKey(Some(secret.to_vec()))
    }

    /// No key: records get no digest and nothing claims they are tamper-evident.
    pub fn none() -> ChainKey {
        ChainKey(None)
    }

    /// The key in environment variable `var`; none when it is unset or empty, an error when
    /// it is too short to be a secret.
    pub fn from_env(var: &str) -> Result<ChainKey, KeyError> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => {
                if v.len() < 32 {
                    return Err(KeyError::TooShort(var.to_owned(), v.len()));
                }
                Ok(ChainKey::new(v.as_bytes()))
            }
            _ => Ok(ChainKey::none()),
        }
    }

    /// Whether there is a key.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// The secret itself, for the other MACs the audit log keys with it.
    pub(crate) fn secret(&self) -> Option<&[u8]> {
        self.0.as_deref()
    }

    /// HMAC-SHA256 of `parts` (hex), or empty without a key.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> String {
        let Some(key) = &self.0 else {
            return String::new();
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return String::new();
        };
        for p in parts {
            mac.update(p);
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The digest of `r` chained after `prev` under `key` (empty without a key).
pub fn chain_digest(key: &ChainKey, prev: &str, r: &AuditRecord) -> String {
    let mut body = r.clone();
    body.digest = String::new();
    let json = serde_json::to_string(&body).unwrap_or_default();
    key.mac(&[prev.as_bytes(), json.as_bytes()])
}

/// A replica's position in its chain: the last sequence number and digest written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainHead {
    /// The last sequence number written (0: none yet).
    pub seq: i64,
    /// That record's digest, which the next one is chained to.
    pub digest: String,
}

/// The chain a writer extends: one replica, one key, the head so far.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub key: ChainKey,
    pub replica: String,
    pub head: ChainHead,
}

impl Chain {
    /// Gives `r` the next sequence number and its digest, and moves the head to it.
    pub fn seal(&mut self, r: &mut AuditRecord) {
        r.replica = self.replica.clone();
        r.seq = self.head.seq + 1;
        r.seq_id = format!("{:013}-{}-{:012}", r.time.max(0), self.replica, r.seq);
        r.digest = chain_digest(&self.key, &self.head.digest, r);
        self.head = ChainHead {
            seq: r.seq,
            digest: r.digest.clone(),
        };
    }
}

/// A replica id stable across restarts of the same deployment: the host name and a short hash
/// of the absolute spool directory and `instance` (the listen address: two gateways on one
/// host sharing a config still get two ids).
pub fn default_replica_id(spool_dir: &Path, instance: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let dir = std::path::absolute(spool_dir).unwrap_or_else(|_| spool_dir.to_owned());
    let h = Sha256::digest(format!("{}\n{instance}", dir.to_string_lossy()).as_bytes());
    format!("{host}-{}", hex::encode(&h[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_numbers_and_links_records_under_its_key() {
        let key = ChainKey::new(b"0123456789abcdef0123456789abcdef");
        let mut chain = Chain {
            key: key.clone(),
            replica: "r1".into(),
            head: ChainHead::default(),
        };
        let mut a = AuditRecord {
            request_id: "a".into(),
            time: 5,
            ..AuditRecord::default()
        };
        let mut b = AuditRecord {
            request_id: "b".into(),
            time: 6,
            ..AuditRecord::default()
        };
        chain.seal(&mut a);
        chain.seal(&mut b);
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(a.seq_id, "0000000000005-r1-000000000001");
        assert_eq!(b.digest, chain_digest(&key, &a.digest, &b));
        assert_eq!(b.digest.len(), 64);
        // Another key, another digest; no key, no digest (nothing is claimed).
        let other = ChainKey::new(b"another key of thirty-two bytes!");
        assert_ne!(chain_digest(&other, &a.digest, &b), b.digest);
        assert_eq!(chain_digest(&ChainKey::none(), &a.digest, &b), "");
        // Moving a record to another place in the chain breaks its digest.
        let mut moved = b.clone();
        moved.seq = 1;
        assert_ne!(chain_digest(&key, "", &moved), b.digest);
    }

    #[test]
    fn replica_ids_are_stable_and_differ_by_directory() {
        let a = default_replica_id(Path::new("/srv/a"), "0.0.0.0:8787");
        assert_eq!(a, default_replica_id(Path::new("/srv/a"), "0.0.0.0:8787"));
        assert_ne!(a, default_replica_id(Path::new("/srv/b"), "0.0.0.0:8787"));
        assert_ne!(a, default_replica_id(Path::new("/srv/a"), "0.0.0.0:8788"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        );
    }
}
