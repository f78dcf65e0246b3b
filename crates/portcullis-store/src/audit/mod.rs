//! The audit log: one record per request, written off the request path, chained per replica
//! with a keyed digest (HMAC-SHA256 under a configured secret) so that edits, deletions and
//! reorderings are detectable, and journaled to local disk before anything else so that a
//! crash or a down database loses nothing.
//!
//! - [`chain`]: the keyed digest, the per-replica chain state, replica ids.
//! - [`journal`]: the write-ahead journal on disk (segments, rotation, rejected lines).
//! - [`writer`]: the [`AuditWriter`] that moves journaled records into the store and sinks.
//! - [`verify`]: proving every chain, and pruning by age behind an anchor.
//! - [`export`]: CSV and JSON-lines renderings of records.

pub mod chain;
pub mod export;
pub mod journal;
pub mod text_mac;
pub mod verify;
pub mod writer;

pub use chain::{ChainKey, chain_digest, default_replica_id};
pub use text_mac::TextMac;
pub use verify::{ChainReport, PruneReport, VerifyError, VerifyReport};
pub use writer::{AuditWriter, SpoolConfig};

use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// One request, as the audit log keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub request_id: String,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub team: Option<String>,
    pub model: Option<String>,
    pub route: Option<String>,
    /// HTTP status returned to the client.
    pub status: i32,
    /// `allowed`, `flagged`, `blocked` or `failed`.
    pub outcome: String,
    pub error_code: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_micros: i64,
    pub latency_ms: i64,
    pub upstream_ms: Option<i64>,
    pub stream: bool,
    /// Every guard's verdict: outcome, findings (types and places, never values), changes.
    pub verdicts: serde_json::Value,
    /// HMAC over the previous record's digest and this record: the tamper-evident chain.
    #[serde(default)]
    pub digest: String,
    /// Order of writing (time, writer, counter).
    #[serde(default)]
    pub seq_id: String,
    /// The token counts (and so the cost) are the gateway's estimate, not the upstream's
    /// `usage` (a stream cut short, an upstream that sent none). Left out of the serialised
    /// record when false, so digests of records written before this field existed still hold.
    #[serde(default, skip_serializing_if = "is_false")]
    pub usage_estimated: bool,
    /// The gateway replica that wrote the record: each replica keeps its own chain. Empty on
    /// records written before per-replica chains (left out of the JSON then, like `seq`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub replica: String,
    /// Position in the replica's chain, from 1, without gaps.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: i64,
    /// The model that answered, as the upstream named it in its answer (or its stream's
    /// chunks); none when no upstream answered. `model` is the one asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_served: Option<String>,
    /// HMAC-SHA256 (hex) of the text the client sent, in the canonical form of
    /// [`crate::audit::text_mac`], under the audit secret; none without a secret or input text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_hmac: Option<String>,
    /// HMAC-SHA256 (hex) of the answer text as delivered to the client (a stream's delivered
    /// deltas, concatenated); none without a secret or when no answer was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_hmac: Option<String>,
    /// The canonical input text (the one `input_hmac` covers) with every personal-data and
    /// secret finding replaced by `[TYPE]`, capped; only when `[audit] text = "redacted"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_text: Option<String>,
    /// The delivered answer text (the one `output_hmac` covers), redacted and capped like
    /// `input_text`; only when `[audit] text = "redacted"` and an answer was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_text: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Which records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub team: Option<String>,
    pub outcome: Option<String>,
    pub model: Option<String>,
    /// The model that answered (see [`AuditRecord::model_served`]).
    pub model_served: Option<String>,
    pub status: Option<i32>,
    pub limit: Option<i64>,
    /// Page forwards: the first `limit` records after this `seq_id`, oldest first (`""` for
    /// the very first page) instead of the newest `limit`.
    pub after_seq_id: Option<String>,
}

const INSERT_HEAD: &str = "INSERT INTO audit (seq_id, request_id, time_ms, key_id, user_name, team, model, route, \
    status, outcome, error_code, prompt_tokens, completion_tokens, cached_tokens, cost_micros, \
    latency_ms, upstream_ms, stream, verdicts, digest, usage_estimated, replica, seq, \
    model_served, input_hmac, output_hmac, input_text, output_text) VALUES";
const COLUMNS: usize = 28;

/// The columns every audit read selects, in [`record_from_row`]'s terms.
pub(crate) const SELECT_COLUMNS: &str = "seq_id, request_id, time_ms, key_id, user_name, team, model, route, status, outcome, \
    error_code, prompt_tokens, completion_tokens, cached_tokens, cost_micros, latency_ms, \
    upstream_ms, stream, verdicts, digest, usage_estimated, replica, seq, model_served, \
    input_hmac, output_hmac, input_text, output_text";

impl Store {
    /// Writes records in one transaction, many rows per statement (idempotent by `seq_id`).
    pub async fn audit_insert(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        // Rows per statement: their parameters stay below both backends' limits (999).
        const ROWS: usize = 999 / COLUMNS;
        let mut tx = self.pool().begin().await?;
        for chunk in records.chunks(ROWS) {
            let mut sql = String::from(INSERT_HEAD);
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 { " (" } else { ", (" });
                for c in 0..COLUMNS {
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    sql.push('$');
                    sql.push_str(&(i * COLUMNS + c + 1).to_string());
                }
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (seq_id) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.seq_id.clone())
                    .bind(r.request_id.clone())
                    .bind(r.time)
                    .bind(r.key_id.clone())
                    .bind(r.user.clone())
                    .bind(r.team.clone())
                    .bind(r.model.clone())
                    .bind(r.route.clone())
                    .bind(i64::from(r.status))
                    .bind(r.outcome.clone())
                    .bind(r.error_code.clone())
                    .bind(r.prompt_tokens)
                    .bind(r.completion_tokens)
                    .bind(r.cached_tokens)
                    .bind(r.cost_micros)
                    .bind(r.latency_ms)
                    .bind(r.upstream_ms)
                    .bind(i64::from(r.stream))
                    .bind(r.verdicts.to_string())
                    .bind(r.digest.clone())
                    .bind(i64::from(r.usage_estimated))
                    .bind((!r.replica.is_empty()).then(|| r.replica.clone()))
                    .bind((r.seq > 0).then_some(r.seq))
                    .bind(r.model_served.clone())
                    .bind(r.input_hmac.clone())
                    .bind(r.output_hmac.clone())
                    .bind(r.input_text.clone())
                    .bind(r.output_text.clone());
            }
            q.execute(&mut *tx).await?;
        }
        verify::advance_heads(&mut tx, records).await?;
        // The spend ledger gets every request that used tokens, in the same transaction
        // (idempotent: the gateway may already have booked a budgeted request directly).
        let spent: Vec<&AuditRecord> = records
            .iter()
            .filter(|r| r.prompt_tokens + r.completion_tokens > 0)
            .collect();
        for chunk in spent.chunks(ROWS) {
            let mut sql = String::from(
                "INSERT INTO spend (request_id, time_ms, key_id, user_name, team, model, cost_micros, \
                 prompt_tokens, completion_tokens, usage_estimated) VALUES",
            );
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 { " (" } else { ", (" });
                for c in 0..10 {
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    sql.push('$');
                    sql.push_str(&(i * 10 + c + 1).to_string());
                }
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (request_id) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.request_id.clone())
                    .bind(r.time)
                    .bind(r.key_id.clone())
                    .bind(r.user.clone())
                    .bind(r.team.clone())
                    .bind(r.model.clone())
                    .bind(r.cost_micros)
                    .bind(r.prompt_tokens)
                    .bind(r.completion_tokens)
                    .bind(i64::from(r.usage_estimated));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records matching `f`, oldest first (the newest `limit` of them).
    pub async fn audit_query(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut sql = format!("SELECT {SELECT_COLUMNS} FROM audit WHERE 1=1");
        let mut n = 0;
        let mut next = |col: &str, op: &str| {
            n += 1;
            format!(" AND {col} {op} ${n}")
        };
        let mut texts: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        // Bind order must match placeholder order: collect (kind, value) in sequence.
        let mut order: Vec<(bool, usize)> = Vec::new();
        for (col, op, v) in [
            ("time_ms", ">=", f.since_ms),
            ("time_ms", "<", f.until_ms),
            ("status", "=", f.status.map(i64::from)),
        ] {
            if let Some(v) = v {
                sql += &next(col, op);
                order.push((false, ints.len()));
                ints.push(v);
            }
        }
        for (col, v) in [
            ("key_id", &f.key_id),
            ("user_name", &f.user),
            ("team", &f.team),
            ("outcome", &f.outcome),
            ("model", &f.model),
            ("model_served", &f.model_served),
        ] {
            if let Some(v) = v {
                sql += &next(col, "=");
                order.push((true, texts.len()));
                texts.push(v.clone());
            }
        }
        if let Some(after) = &f.after_seq_id {
            sql += &next("seq_id", ">");
            order.push((true, texts.len()));
            texts.push(after.clone());
        }
        let limit = f.limit.unwrap_or(1000).clamp(1, 100_000);
        let forwards = f.after_seq_id.is_some();
        sql += &format!(
            " ORDER BY seq_id {} LIMIT {limit}",
            if forwards { "ASC" } else { "DESC" }
        );
        let mut q = sqlx::query(&sql);
        for (is_text, i) in order {
            q = if is_text {
                q.bind(texts[i].clone())
            } else {
                q.bind(ints[i])
            };
        }
        let rows = q.fetch_all(self.pool()).await?;
        let mut out: Vec<AuditRecord> =
            rows.iter().map(record_from_row).collect::<Result<_, _>>()?;
        if !forwards {
            out.reverse();
        }
        Ok(out)
    }
}

/// One audit row as a record (rows from before per-replica chains have no replica or seq).
pub(crate) fn record_from_row(row: &sqlx::any::AnyRow) -> Result<AuditRecord, StoreError> {
    let verdicts: String = row.try_get("verdicts")?;
    Ok(AuditRecord {
        seq_id: row.try_get("seq_id")?,
        request_id: row.try_get("request_id")?,
        time: row.try_get("time_ms")?,
        key_id: row.try_get("key_id")?,
        user: row.try_get("user_name")?,
        team: row.try_get("team")?,
        model: row.try_get("model")?,
        route: row.try_get("route")?,
        status: row.try_get::<i64, _>("status")? as i32,
        outcome: row.try_get("outcome")?,
        error_code: row.try_get("error_code")?,
        prompt_tokens: row.try_get("prompt_tokens")?,
        completion_tokens: row.try_get("completion_tokens")?,
        cached_tokens: row.try_get("cached_tokens")?,
        cost_micros: row.try_get("cost_micros")?,
        latency_ms: row.try_get("latency_ms")?,
        upstream_ms: row.try_get("upstream_ms")?,
        stream: row.try_get::<i64, _>("stream")? != 0,
        // Text that is not JSON (an edited row) stays as text: its digest then fails to verify.
        verdicts: serde_json::from_str(&verdicts).unwrap_or(serde_json::Value::String(verdicts)),
        digest: row.try_get("digest")?,
        usage_estimated: row.try_get::<i64, _>("usage_estimated")? != 0,
        replica: row
            .try_get::<Option<String>, _>("replica")?
            .unwrap_or_default(),
        seq: row.try_get::<Option<i64>, _>("seq")?.unwrap_or(0),
        model_served: row.try_get("model_served")?,
        input_hmac: row.try_get("input_hmac")?,
        output_hmac: row.try_get("output_hmac")?,
        input_text: row.try_get("input_text")?,
        output_text: row.try_get("output_text")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_from_before_usage_estimated_keep_their_digests() {
        let k = ChainKey::new(b"k");
        // Written without the field, as every record before it existed: same JSON, same digest.
        let old = AuditRecord {
            request_id: "r".into(),
            status: 200,
            ..AuditRecord::default()
        };
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("usage_estimated"), "{json}");
        // Spooled lines from older versions read back as "not estimated".
        let back: AuditRecord = serde_json::from_str(&json).unwrap();
        assert!(!back.usage_estimated);
        assert_eq!(chain_digest(&k, "", &back), chain_digest(&k, "", &old));
        // An estimated record says so, and its digest covers it.
        let est = AuditRecord {
            usage_estimated: true,
            ..old.clone()
        };
        assert!(
            serde_json::to_string(&est)
                .unwrap()
                .contains("\"usage_estimated\":true")
        );
        assert_ne!(chain_digest(&k, "", &est), chain_digest(&k, "", &old));
    }

    #[test]
    fn the_served_model_and_text_macs_are_chained_and_absent_from_older_records() {
        let k = ChainKey::new(b"k");
        let old = AuditRecord {
            request_id: "r".into(),
            model: Some("gpt-4o".into()),
            ..AuditRecord::default()
        };
        let json = serde_json::to_string(&old).unwrap();
        for field in [
            "model_served",
            "input_hmac",
            "output_hmac",
            "input_text",
            "output_text",
        ] {
            assert!(!json.contains(field), "{json}");
        }
        let back: AuditRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(chain_digest(&k, "", &back), chain_digest(&k, "", &old));
        let base = chain_digest(&k, "", &old);
        for r in [
            AuditRecord {
                model_served: Some("gpt-4o-2024-08-06".into()),
                ..old.clone()
            },
            AuditRecord {
                input_hmac: Some("ab".into()),
                ..old.clone()
            },
            AuditRecord {
                output_hmac: Some("cd".into()),
                ..old.clone()
            },
            AuditRecord {
                input_text: Some("user 7\n[EMAIL]\n".into()),
                ..old.clone()
            },
            AuditRecord {
                output_text: Some("[CREDIT_CARD]".into()),
                ..old.clone()
            },
        ] {
            assert_ne!(chain_digest(&k, "", &r), base, "covered by the digest");
        }
    }
}
