//! Proving the chains: `verify` walks every replica's records in sequence order and names the
//! first one that is missing, out of order, unkeyed or altered; `prune` cuts records older than
//! a time and leaves an anchor (the last cut record's place and digest, itself MACed) so that
//! what remains still verifies. A head per replica (the last record written) makes a deleted
//! tail visible too.

use super::chain::{ChainHead, ChainKey, chain_digest};
use super::{AuditRecord, SELECT_COLUMNS, record_from_row};
use crate::{Store, StoreError};
use sqlx::Row;

/// Records read per query while verifying.
const PAGE: i64 = 2_000;

/// The first record where a chain stops proving anything.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "replica {replica}: record seq {expected} is missing (next present: seq {found}, request {request_id})"
    )]
    Missing {
        replica: String,
        expected: i64,
        found: i64,
        request_id: String,
    },
    #[error(
        "replica {replica}: record seq {found} (request {request_id}) is out of order or duplicated; seq {expected} was expected"
    )]
    Reordered {
        replica: String,
        expected: i64,
        found: i64,
        request_id: String,
    },
    #[error(
        "replica {replica}: record seq {seq} (request {request_id}) was altered: its digest does not match"
    )]
    Altered {
        replica: String,
        seq: i64,
        request_id: String,
    },
    #[error(
        "replica {replica}: record seq {seq} (request {request_id}) has no digest (written without a key); verify from a later --since"
    )]
    Unkeyed {
        replica: String,
        seq: i64,
        request_id: String,
    },
    #[error(
        "replica {replica}: records after seq {last} are missing (the replica wrote up to seq {head})"
    )]
    TailMissing {
        replica: String,
        last: i64,
        head: i64,
    },
    #[error(
        "replica {replica}: the anchor at seq {seq} does not match its MAC (forged or from another key)"
    )]
    BadAnchor { replica: String, seq: i64 },
}

/// What was proven of one replica's chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainReport {
    pub replica: String,
    /// Sequence numbers checked (first, last); none when the range was empty.
    pub range: Option<(i64, i64)>,
    pub records: u64,
    /// The first failure, if any.
    pub error: Option<VerifyError>,
}

/// What `verify` found, per replica.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VerifyReport {
    pub chains: Vec<ChainReport>,
    /// Records from before per-replica chains (no replica, no sequence): not provable.
    pub legacy: u64,
}

impl VerifyReport {
    /// Whether every chain verified.
    pub fn ok(&self) -> bool {
        self.chains.iter().all(|c| c.error.is_none())
    }
}

/// What `prune` cut.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PruneReport {
    pub deleted: u64,
    /// The anchors written: (replica, seq).
    pub anchors: Vec<(String, i64)>,
}

fn anchor_mac(key: &ChainKey, replica: &str, seq: i64, digest: &str) -> String {
    key.mac(&[
        b"portcullis-audit-anchor\n",
        replica.as_bytes(),
        b"\n",
        seq.to_string().as_bytes(),
        b"\n",
        digest.as_bytes(),
    ])
}

/// Moves each replica's head to the last of `records`, in the insert's transaction.
pub(crate) async fn advance_heads(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    records: &[AuditRecord],
) -> Result<(), StoreError> {
    let mut heads: Vec<(&str, &AuditRecord)> = Vec::new();
    for r in records.iter().filter(|r| r.seq > 0) {
        match heads.iter_mut().find(|(rep, _)| *rep == r.replica) {
            Some(h) if h.1.seq < r.seq => h.1 = r,
            Some(_) => {}
            None => heads.push((&r.replica, r)),
        }
    }
    for (replica, r) in heads {
        sqlx::query(
            "INSERT INTO audit_heads (replica, seq, digest, time_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (replica) DO UPDATE SET seq = excluded.seq, digest = excluded.digest, \
             time_ms = excluded.time_ms WHERE audit_heads.seq < excluded.seq",
        )
        .bind(replica.to_owned())
        .bind(r.seq)
        .bind(r.digest.clone())
        .bind(r.time)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Replica ids that have written chained records, or an anchor or head.
    async fn audit_replicas(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT replica FROM audit WHERE replica IS NOT NULL \
             UNION SELECT replica FROM audit_heads UNION SELECT replica FROM audit_anchors \
             ORDER BY 1",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    async fn anchor(&self, replica: &str) -> Result<Option<(ChainHead, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, digest, mac FROM audit_anchors WHERE replica = $1")
            .bind(replica.to_owned())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok((
                ChainHead {
                    seq: r.try_get("seq")?,
                    digest: r.try_get("digest")?,
                },
                r.try_get("mac")?,
            ))
        })
        .transpose()
    }

    async fn chain_page(
        &self,
        replica: &str,
        from_seq: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM audit WHERE replica = $1 AND seq >= $2 \
             ORDER BY seq, seq_id LIMIT {PAGE}"
        );
        let rows = sqlx::query(&sql)
            .bind(replica.to_owned())
            .bind(from_seq)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Proves every replica's chain under `key`, from `since_ms` (the first record at or after
    /// it, linked to the record before) or from the start (or the retention anchor).
    pub async fn audit_verify(
        &self,
        key: &ChainKey,
        since_ms: Option<i64>,
    ) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport {
            legacy: sqlx::query("SELECT COUNT(*) FROM audit WHERE replica IS NULL")
                .fetch_one(self.pool())
                .await?
                .try_get::<i64, _>(0)? as u64,
            ..VerifyReport::default()
        };
        for replica in self.audit_replicas().await? {
            report
                .chains
                .push(self.verify_chain(key, &replica, since_ms).await?);
        }
        Ok(report)
    }

    async fn verify_chain(
        &self,
        key: &ChainKey,
        replica: &str,
        since_ms: Option<i64>,
    ) -> Result<ChainReport, StoreError> {
        let mut out = ChainReport {
            replica: replica.to_owned(),
            range: None,
            records: 0,
            error: None,
        };
        let anchor = self.anchor(replica).await?;
        if let Some((a, mac)) = &anchor
            && anchor_mac(key, replica, a.seq, &a.digest) != *mac
        {
            out.error = Some(VerifyError::BadAnchor {
                replica: replica.to_owned(),
                seq: a.seq,
            });
            return Ok(out);
        }
        // Where the walk starts, and the digest it must link to.
        let (mut expected, mut prev) = match &anchor {
            Some((a, _)) => (a.seq + 1, a.digest.clone()),
            None => (1, String::new()),
        };
        if let Some(since) = since_ms {
            let first: Option<i64> =
                sqlx::query("SELECT MIN(seq) FROM audit WHERE replica = $1 AND time_ms >= $2")
                    .bind(replica.to_owned())
                    .bind(since)
                    .fetch_one(self.pool())
                    .await?
                    .try_get(0)?;
            if let Some(first) = first.filter(|f| *f > expected) {
                // Linked to the record before it, which must be there.
                let before = self.chain_page(replica, first - 1).await?;
                match before.first() {
                    Some(b) if b.seq == first - 1 => {
                        expected = first;
                        prev = b.digest.clone();
                    }
                    _ => {}
                }
            }
        }
        loop {
            let page = self.chain_page(replica, expected).await?;
            let full = page.len() as i64 == PAGE;
            for r in page {
                if let Some(e) = check(key, replica, expected, &prev, &r) {
                    out.error = Some(e);
                    return Ok(out);
                }
                out.range = Some((out.range.map_or(r.seq, |(f, _)| f), r.seq));
                out.records += 1;
                prev = r.digest;
                expected += 1;
            }
            if !full {
                break;
            }
        }
        let head = self.audit_head(replica).await?;
        if head.seq >= expected {
            out.error = Some(VerifyError::TailMissing {
                replica: replica.to_owned(),
                last: expected - 1,
                head: head.seq,
            });
        }
        Ok(out)
    }

    /// Deletes chained records older than `before_ms` (a prefix of each chain) and legacy
    /// records older than it, leaving per replica an anchor MACed with `key`.
    pub async fn audit_prune(
        &self,
        key: &ChainKey,
        before_ms: i64,
    ) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        for replica in self.audit_replicas().await? {
            let mut tx = self.pool().begin().await?;
            // The cut is a prefix: everything before the first record at or after the time.
            let first_kept: Option<i64> =
                sqlx::query("SELECT MIN(seq) FROM audit WHERE replica = $1 AND time_ms >= $2")
                    .bind(replica.clone())
                    .bind(before_ms)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
            let cut: Option<i64> = match first_kept {
                Some(k) => Some(k - 1),
                None => sqlx::query("SELECT MAX(seq) FROM audit WHERE replica = $1")
                    .bind(replica.clone())
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?,
            };
            let Some(cut) = cut else { continue };
            let last = sqlx::query("SELECT digest FROM audit WHERE replica = $1 AND seq = $2")
                .bind(replica.clone())
                .bind(cut)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(last) = last else { continue };
            let digest: String = last.try_get(0)?;
            let mac = anchor_mac(key, &replica, cut, &digest);
            sqlx::query(
                "INSERT INTO audit_anchors (replica, seq, digest, mac, time_ms) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (replica) DO UPDATE SET seq = excluded.seq, digest = excluded.digest, \
                 mac = excluded.mac, time_ms = excluded.time_ms",
            )
            .bind(replica.clone())
            .bind(cut)
            .bind(digest)
            .bind(mac)
            .bind(crate::now_ms())
            .execute(&mut *tx)
            .await?;
            let gone = sqlx::query("DELETE FROM audit WHERE replica = $1 AND seq <= $2")
                .bind(replica.clone())
                .bind(cut)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            report.deleted += gone.rows_affected();
            report.anchors.push((replica, cut));
        }
        let legacy = sqlx::query("DELETE FROM audit WHERE replica IS NULL AND time_ms < $1")
            .bind(before_ms)
            .execute(self.pool())
            .await?;
        report.deleted += legacy.rows_affected();
        Ok(report)
    }
}

/// The failure of record `r` where seq `expected` linked to `prev` should be, if any.
fn check(
    key: &ChainKey,
    replica: &str,
    expected: i64,
    prev: &str,
    r: &AuditRecord,
) -> Option<VerifyError> {
    let replica = replica.to_owned();
    if r.seq > expected {
        return Some(VerifyError::Missing {
            replica,
            expected,
            found: r.seq,
            request_id: r.request_id.clone(),
        });
    }
    if r.seq < expected {
        return Some(VerifyError::Reordered {
            replica,
            expected,
            found: r.seq,
            request_id: r.request_id.clone(),
        });
    }
    if r.digest.is_empty() {
        return Some(VerifyError::Unkeyed {
            replica,
            seq: r.seq,
            request_id: r.request_id.clone(),
        });
    }
    if chain_digest(key, prev, r) != r.digest {
        return Some(VerifyError::Altered {
            replica,
            seq: r.seq,
            request_id: r.request_id.clone(),
        });
    }
    None
}
