//! The audit log: one record per request, written off the request path in batches, chained
//! with a keyed digest so that edits and deletions are detectable, and spooled to local disk
//! (then replayed in order) whenever the database cannot take them — never dropped.

use crate::{Store, StoreError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::Row;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

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
}

fn is_false(b: &bool) -> bool {
    !*b
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
    pub limit: Option<i64>,
}

/// Where records wait when the store is down, and how the chain is keyed.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Records per database transaction.
    pub batch: usize,
    /// Records queued in memory before the writer spools directly.
    pub queue: usize,
    /// HMAC key of the digest chain; set it from a secret in production.
    pub chain_key: Vec<u8>,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("portcullis-spool"),
            batch: 256,
            queue: 16_384,
            chain_key: b"portcullis-audit-chain".to_vec(),
        }
    }
}

const SPOOL_FILE: &str = "audit-spool.jsonl";

const INSERT_HEAD: &str = "INSERT INTO audit (seq_id, request_id, time_ms, key_id, user_name, team, model, route, \
    status, outcome, error_code, prompt_tokens, completion_tokens, cached_tokens, cost_micros, \
    latency_ms, upstream_ms, stream, verdicts, digest, usage_estimated) VALUES";
const COLUMNS: usize = 21;

impl Store {
    /// Writes records in one transaction, many rows per statement (idempotent by `seq_id`).
    pub async fn audit_insert(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        const ROWS: usize = 40; // 40 × 21 parameters stays below both backends' limits (999)
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
                    .bind(i64::from(r.usage_estimated));
            }
            q.execute(&mut *tx).await?;
        }
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
        let mut sql = String::from(
            "SELECT seq_id, request_id, time_ms, key_id, user_name, team, model, route, status, outcome, \
             error_code, prompt_tokens, completion_tokens, cached_tokens, cost_micros, latency_ms, \
             upstream_ms, stream, verdicts, digest, usage_estimated FROM audit WHERE 1=1",
        );
        let mut n = 0;
        let mut next = |col: &str, op: &str| {
            n += 1;
            format!(" AND {col} {op} ${n}")
        };
        let mut texts: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        // Bind order must match placeholder order: collect (kind, value) in sequence.
        let mut order: Vec<(bool, usize)> = Vec::new();
        for (col, op, v) in [("time_ms", ">=", f.since_ms), ("time_ms", "<", f.until_ms)] {
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
        ] {
            if let Some(v) = v {
                sql += &next(col, "=");
                order.push((true, texts.len()));
                texts.push(v.clone());
            }
        }
        sql += &format!(
            " ORDER BY seq_id DESC LIMIT {}",
            f.limit.unwrap_or(1000).clamp(1, 100_000)
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
        let mut out = Vec::with_capacity(rows.len());
        for row in rows.iter().rev() {
            let verdicts: String = row.try_get("verdicts")?;
            out.push(AuditRecord {
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
                verdicts: serde_json::from_str(&verdicts).unwrap_or(serde_json::Value::Null),
                digest: row.try_get("digest")?,
                usage_estimated: row.try_get::<i64, _>("usage_estimated")? != 0,
            });
        }
        Ok(out)
    }
}

/// The digest of `r` chained after `prev`.
pub fn chain_digest(key: &[u8], prev: &str, r: &AuditRecord) -> String {
    let mut body = r.clone();
    body.digest = String::new();
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(prev.as_bytes());
    mac.update(serde_json::to_string(&body).unwrap_or_default().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

enum Msg {
    Record(Box<AuditRecord>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Writes audit records in the background: `submit` never waits on the database.
pub struct AuditWriter {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    spool: PathBuf,
}

struct Chain {
    key: Vec<u8>,
    prev: String,
    writer: String,
    counter: u64,
}

impl Chain {
    fn seal(&mut self, r: &mut AuditRecord) {
        self.counter += 1;
        r.seq_id = format!("{:013}-{}-{:010}", r.time.max(0), self.writer, self.counter);
        r.digest = chain_digest(&self.key, &self.prev, r);
        self.prev = r.digest.clone();
    }
}

fn append_spool(path: &PathBuf, records: &[AuditRecord]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    f.write_all(&buf)?;
    f.sync_data()
}

async fn replay(store: &Store, path: &PathBuf) -> Result<usize, StoreError> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let records: Vec<AuditRecord> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for chunk in records.chunks(512) {
        store.audit_insert(chunk).await?;
    }
    tokio::fs::remove_file(path).await?;
    Ok(records.len())
}

impl AuditWriter {
    /// Starts the writer task on the current runtime.
    pub fn spawn(store: Store, config: SpoolConfig) -> AuditWriter {
        let (tx, mut rx) = mpsc::channel::<Msg>(config.queue.max(1));
        let spool = config.dir.join(SPOOL_FILE);
        let path = spool.clone();
        let batch = config.batch.max(1);
        let mut chain = Chain {
            key: config.chain_key.clone(),
            prev: String::new(),
            writer: crate::unique_tag::<4>(),
            counter: 0,
        };
        let task = tokio::spawn(async move {
            let mut pending = path.exists();
            let mut waiters = Vec::new();
            loop {
                let first = if pending {
                    match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
                        Ok(m) => m,
                        Err(_) => {
                            pending = try_replay(&store, &path).await;
                            continue;
                        }
                    }
                } else {
                    rx.recv().await
                };
                let Some(first) = first else { break };
                let mut records = Vec::new();
                let mut take = |m: Msg, records: &mut Vec<AuditRecord>| match m {
                    Msg::Record(r) => records.push(*r),
                    Msg::Flush(w) => waiters.push(w),
                };
                take(first, &mut records);
                while records.len() < batch {
                    match rx.try_recv() {
                        Ok(m) => take(m, &mut records),
                        Err(_) => break,
                    }
                }
                for r in &mut records {
                    chain.seal(r);
                }
                if pending {
                    pending = try_replay(&store, &path).await;
                }
                if !records.is_empty() {
                    if pending {
                        spool_or_log(&path, &records);
                    } else if let Err(e) = store.audit_insert(&records).await {
                        tracing::warn!(alert = "audit_store_down", error = %e, n = records.len(), "audit store unavailable; spooling to disk");
                        spool_or_log(&path, &records);
                        pending = true;
                    }
                }
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            if pending {
                try_replay(&store, &path).await;
            }
        });
        AuditWriter {
            tx: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
            spool,
        }
    }

    /// Queues a record; never blocks. If the queue is full the record goes straight to the spool.
    pub fn submit(&self, record: AuditRecord) {
        let tx = self.tx.lock().ok().and_then(|g| g.clone());
        let record = match tx {
            Some(tx) => match tx.try_send(Msg::Record(Box::new(record))) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(Msg::Record(r)))
                | Err(mpsc::error::TrySendError::Closed(Msg::Record(r))) => *r,
                Err(_) => return,
            },
            None => record,
        };
        // Unchained, but kept: replay inserts it; its empty digest marks it as out of chain.
        let mut r = record;
        r.seq_id = format!(
            "{:013}-overflow-{}",
            r.time.max(0),
            crate::unique_tag::<6>()
        );
        spool_or_log(&self.spool, &[r]);
    }

    /// Waits until everything submitted so far has been written or spooled.
    pub async fn flush(&self) {
        let tx = self.tx.lock().ok().and_then(|g| g.clone());
        if let Some(tx) = tx {
            let (w, r) = tokio::sync::oneshot::channel();
            if tx.send(Msg::Flush(w)).await.is_ok() {
                let _ = r.await;
            }
        }
    }

    /// Drains the queue and stops the writer.
    pub async fn close(&self) {
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
        let task = self.task.lock().ok().and_then(|mut g| g.take());
        if let Some(t) = task {
            let _ = t.await;
        }
    }

    /// Records waiting on disk (0 when the store has them all).
    pub fn spooled(&self) -> usize {
        std::fs::read_to_string(&self.spool)
            .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
            .unwrap_or(0)
    }
}

async fn try_replay(store: &Store, path: &PathBuf) -> bool {
    match replay(store, path).await {
        Ok(n) => {
            if n > 0 {
                tracing::info!(n, "replayed spooled audit records");
            }
            false
        }
        Err(_) => true,
    }
}

fn spool_or_log(path: &PathBuf, records: &[AuditRecord]) {
    if let Err(e) = append_spool(path, records) {
        // Last resort: the log line carries the records so they still exist somewhere.
        tracing::error!(alert = "audit_spool_failed", error = %e, records = %serde_json::to_string(records).unwrap_or_default(), "cannot spool audit records");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_from_before_usage_estimated_keep_their_digests() {
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
        assert_eq!(chain_digest(b"k", "", &back), chain_digest(b"k", "", &old));
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
        assert_ne!(chain_digest(b"k", "", &est), chain_digest(b"k", "", &old));
    }
}
