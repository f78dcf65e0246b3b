//! How the gateway keeps its audit log: the `[audit]` section (the chain's secret, the replica
//! id, a JSON-lines sink, retention), the writer built from it, and retention run in the
//! background. The records themselves are [`crate::audit`]'s; the log is the store crate's.

use crate::audit_text::{TextCopy, TextPolicy};
use crate::config::{Config, ConfigError};
use portcullis_store::{AuditWriter, ChainKey, SpoolConfig, Store};
use serde::Deserialize;
use std::time::Duration;

/// `[audit]`: how audit records are chained, copied and kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Environment variable holding the chain's secret (at least 32 bytes). Unset or empty:
    /// records carry no digest and nothing claims the log is tamper-evident.
    pub hmac_key_env: String,
    /// This replica's chain id; default: host name and a hash of the spool directory and the
    /// listen address (stable across restarts at the same address).
    pub replica_id: Option<String>,
    /// A JSON-lines copy of every record: a file path, or `-` for stdout.
    pub jsonl: Option<String>,
    /// Records older than this many days are pruned (behind an anchor); 0 keeps everything.
    pub retention_days: u32,
    /// Records per database transaction.
    pub batch: usize,
    /// What each record keeps of the request's text: `none` (only its HMACs) or `redacted`
    /// (every PII and secret finding replaced by `[TYPE]`; see [`crate::audit_text`]).
    pub text: TextPolicy,
    /// The most bytes of each redacted text a record keeps (cut on a char boundary, marked).
    pub text_max_bytes: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            hmac_key_env: "PORTCULLIS_AUDIT_KEY".into(),
            replica_id: None,
            jsonl: None,
            retention_days: 0,
            batch: 256,
            text: TextPolicy::None,
            text_max_bytes: 16 * 1024,
        }
    }
}

impl AuditConfig {
    /// Checks what parsing cannot: the replica id's characters, a non-zero batch.
    pub fn validate(&self, src: &str) -> Result<(), ConfigError> {
        if let Some(r) = &self.replica_id
            && (r.is_empty()
                || r.len() > 64
                || !r
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)))
        {
            return Err(ConfigError::invalid(
                src,
                "audit.replica_id",
                format!("'{r}' must be 1 to 64 letters, digits, '-', '.' or '_'"),
            ));
        }
        if self.batch == 0 {
            return Err(ConfigError::invalid(
                src,
                "audit.batch",
                "must be at least 1",
            ));
        }
        if self.text_max_bytes == 0 {
            return Err(ConfigError::invalid(
                src,
                "audit.text_max_bytes",
                "must be at least 1 (set text = \"none\" to keep no text)",
            ));
        }
        Ok(())
    }

    /// A fresh copy for one request's text when records keep it, none otherwise.
    pub fn text_copy(&self) -> Option<TextCopy> {
        (self.text == TextPolicy::Redacted).then(|| TextCopy::new(self.text_max_bytes))
    }

    /// The chain's secret from `hmac_key_env`, none when unset; an error when too short.
    pub fn chain_key(&self) -> Result<ChainKey, String> {
        ChainKey::from_env(&self.hmac_key_env).map_err(|e| e.to_string())
    }
}

/// Starts the audit writer `config` describes, saying loudly when the log is not keyed.
pub async fn start(config: &Config, store: &Store) -> Result<AuditWriter, String> {
    let a = &config.audit;
    let key = a.chain_key()?;
    if !key.is_set() {
        tracing::warn!(
            alert = "audit_unkeyed",
            "${} is not set: audit records are written without a digest and are NOT \
             tamper-evident; `portcullis audit verify` will report no key",
            a.hmac_key_env
        );
    }
    let writer = AuditWriter::spawn(
        store.clone(),
        SpoolConfig {
            dir: config.store.spool_dir.clone().into(),
            batch: a.batch,
            key: key.clone(),
            replica: a.replica_id.clone().unwrap_or_else(|| {
                portcullis_store::audit::default_replica_id(
                    std::path::Path::new(&config.store.spool_dir),
                    &config.server.listen,
                )
            }),
            jsonl: a.jsonl.clone(),
        },
    )
    .await
    .map_err(|e| format!("audit journal in {}: {e}", config.store.spool_dir))?;
    tracing::info!(
        replica = writer.replica(),
        keyed = key.is_set(),
        "audit log ready"
    );
    if a.retention_days > 0 {
        spawn_retention(store.clone(), key, a.retention_days);
    }
    Ok(writer)
}

/// Prunes records older than `days` now and every hour (several replicas may do it at once:
/// each cut is one transaction and anchors only move forward in time).
fn spawn_retention(store: Store, key: ChainKey, days: u32) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let before = portcullis_store::now_ms() - i64::from(days) * 86_400_000;
            match store.audit_prune(&key, before).await {
                Ok(r) if r.deleted > 0 => {
                    tracing::info!(deleted = r.deleted, anchors = ?r.anchors, "audit retention")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "audit retention failed; will retry"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_parses_and_bad_values_are_named() {
        let c = Config::parse(
            "[audit]\nhmac_key_env = \"K\"\nreplica_id = \"gw-1\"\njsonl = \"-\"\nretention_days = 90\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.audit.replica_id.as_deref(), Some("gw-1"));
        assert_eq!(c.audit.retention_days, 90);
        let e = Config::parse("[audit]\nreplica_id = \"a b\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("audit.replica_id"), "{e}");
        let e = Config::parse("[audit]\nkey = \"x\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("audit"), "{e}");
        assert_eq!(c.audit.text, TextPolicy::None, "no text by default");
        assert!(c.audit.text_copy().is_none());
        let c = Config::parse("[audit]\ntext = \"redacted\"\n", "t.toml").unwrap();
        assert!(c.audit.text_copy().is_some());
        let e = Config::parse("[audit]\ntext = \"raw\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("audit.text") && e.contains("`redacted`"), "{e}");
        let e = Config::parse("[audit]\ntext_max_bytes = 0\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("audit.text_max_bytes"), "{e}");
    }

    #[test]
    fn an_unset_secret_is_no_key() {
        let c = AuditConfig {
            hmac_key_env: "PORTCULLIS_TEST_AUDIT_KEY_NEVER_SET".into(),
            ..AuditConfig::default()
        };
        assert!(!c.chain_key().unwrap().is_set());
    }
}
