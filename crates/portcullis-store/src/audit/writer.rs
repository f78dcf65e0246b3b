//! The [`AuditWriter`]: `submit` journals a record on local disk (see [`super::journal`]) and
//! returns; a background task moves journaled records, in order and in batches, into the
//! store and the JSON-lines sink. When the store fails, a circuit opens: records simply stay
//! in the journal, and the store is probed again after a backoff (250 ms doubling to 30 s)
//! instead of every batch waiting on a dead database. Nothing is kept only in memory.

use super::AuditRecord;
use super::chain::{Chain, ChainHead, ChainKey, default_replica_id};
use super::journal::{self, DirLock, Journal, REJECTED_FILE};
use crate::{Store, StoreError};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

/// Where records are journaled, how they are chained, and where else they go.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The spool directory: each replica journals in its own subdirectory.
    pub dir: PathBuf,
    /// Records per database transaction.
    pub batch: usize,
    /// The chain's secret; without one records are not tamper-evident (and say so).
    pub key: ChainKey,
    /// This replica's id (its journal is `dir/<replica>`); empty for [`default_replica_id`]
    /// of `dir` alone.
    pub replica: String,
    /// A JSON-lines sink besides the store: a file path, or `-` for stdout.
    pub jsonl: Option<String>,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("portcullis-spool"),
            batch: 256,
            key: ChainKey::none(),
            replica: String::new(),
            jsonl: None,
        }
    }
}

enum Ctl {
    Flush(oneshot::Sender<()>),
    Close,
}

/// Writes audit records durably: `submit` never waits on the database.
pub struct AuditWriter {
    /// This replica's journal directory, held until the writer is closed.
    lock: Mutex<Option<DirLock>>,
    journal: Arc<Journal>,
    wake: Arc<Notify>,
    ctl: mpsc::UnboundedSender<Ctl>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    counts: Arc<Counts>,
    replica: String,
    /// The audit secret's MAC, ready to start a request's text MACs from.
    mac: Option<super::TextMac>,
}

/// What the writer has done, for `spooled` and tests.
#[derive(Default)]
struct Counts {
    /// Records found in the journal at start.
    backlog: AtomicU64,
    /// Records committed to the store since start.
    committed: AtomicU64,
    /// Journal lines rejected since start.
    rejected: AtomicU64,
    /// Bytes of the journal files from before this start still on disk.
    backlog_bytes: AtomicU64,
}

impl AuditWriter {
    /// Claims this replica's journal (`config.dir/<replica>`), continues its chain from the
    /// later of the store's and the journal's last record, and starts the writer task on the
    /// current runtime. The task first replays what a previous run left: this replica's
    /// journal, an older version's spool, and the journals of replicas that are not running
    /// (no live lock) — so a crashed replica's records land even if it never comes back.
    pub async fn spawn(store: Store, config: SpoolConfig) -> Result<AuditWriter, StoreError> {
        let replica = if config.replica.is_empty() {
            default_replica_id(&config.dir, "")
        } else {
            config.replica.clone()
        };
        let own = config.dir.join(&replica);
        let lock = claim(&own).await?;
        journal::adopt_legacy(&config.dir, &own);
        let mine = journal::backlog(&own)?;
        let on_disk = journal::last_of(&mine, &replica);
        let stored = store.audit_head(&replica).await?;
        let head = if on_disk.seq > stored.seq {
            on_disk
        } else {
            stored
        };
        let journal = Arc::new(Journal::create(
            &own,
            &mine,
            Chain {
                key: config.key.clone(),
                replica: replica.clone(),
                head,
            },
        )?);
        let mut backlog: VecDeque<Backlogged> = VecDeque::new();
        for dir in journal::other_dirs(&config.dir, &own)? {
            // A replica that is running holds its own lock; only orphans are claimed.
            if let Some(l) = journal::try_lock_dir(&dir)? {
                let l = Arc::new(l);
                for path in journal::backlog(&dir)? {
                    backlog.push_back(Backlogged {
                        path,
                        _claim: Some(l.clone()),
                    });
                }
            }
        }
        backlog.extend(
            mine.into_iter()
                .map(|path| Backlogged { path, _claim: None }),
        );
        let waiting: u64 = backlog.iter().map(|b| count_lines(&b.path)).sum();
        let sink = match &config.jsonl {
            Some(target) => Some(JsonlSink::open(target)?),
            None => None,
        };
        let counts = Arc::new(Counts::default());
        counts.backlog.store(waiting, Ordering::Relaxed);
        let bytes: u64 = backlog.iter().map(|b| file_len(&b.path)).sum();
        counts.backlog_bytes.store(bytes, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let (ctl, rx) = mpsc::unbounded_channel();
        let mover = Mover {
            store,
            journal: journal.clone(),
            rejected_file: own.join(REJECTED_FILE),
            backlog,
            offset: 0,
            batch: config.batch.max(1),
            sink,
            breaker: Breaker::default(),
            counts: counts.clone(),
        };
        let task = tokio::spawn(mover.run(wake.clone(), rx));
        Ok(AuditWriter {
            lock: Mutex::new(Some(lock)),
            journal,
            wake,
            ctl,
            task: Mutex::new(Some(task)),
            counts,
            replica,
            mac: super::TextMac::new(&config.key),
        })
    }

    /// A fresh HMAC-SHA256 under the audit secret for a request's input or output text; none
    /// when the log has no secret.
    pub fn text_mac(&self) -> Option<super::TextMac> {
        self.mac.clone()
    }

    /// Seals the record into the chain and journals it on disk; never waits on the database.
    /// Only if the disk refuses is the record logged instead (at ERROR, whole).
    pub fn submit(&self, record: AuditRecord) {
        match self.journal.append(record) {
            Ok(()) => self.wake.notify_one(),
            Err(e) => tracing::error!(
                alert = "audit_spool_failed",
                error = %e.error,
                record = %serde_json::to_string(&e.record).unwrap_or_default(),
                "cannot journal an audit record; it is only in this log line"
            ),
        }
    }

    /// Waits until everything submitted so far is in the store, or is waiting in the journal
    /// because the store is down.
    pub async fn flush(&self) {
        let (w, r) = oneshot::channel();
        if self.ctl.send(Ctl::Flush(w)).is_ok() {
            let _ = r.await;
        }
    }

    /// Moves what it can into the store (one more try if the store was down) and stops the
    /// writer; what the store does not take stays in the journal for the next start.
    pub async fn close(&self) {
        let _ = self.ctl.send(Ctl::Close);
        let task = self.task.lock().ok().and_then(|mut g| g.take());
        if let Some(t) = task {
            let _ = t.await;
        }
        // The journal is free for the next writer of this replica.
        if let Ok(mut g) = self.lock.lock() {
            g.take();
        }
    }

    /// Records journaled but not yet in the store (0 when the store has them all).
    pub fn spooled(&self) -> usize {
        let c = &self.counts;
        let total = c.backlog.load(Ordering::Relaxed) + self.journal.appended();
        let done = c.committed.load(Ordering::Relaxed) + c.rejected.load(Ordering::Relaxed);
        usize::try_from(total.saturating_sub(done)).unwrap_or(usize::MAX)
    }

    /// Bytes of journal on disk: files left from before this start and the segment being
    /// written (read from counters: cheap enough for every scrape).
    pub fn journal_bytes(&self) -> u64 {
        let active = self.journal.active().map_or(0, |(_, _, len)| len);
        self.counts.backlog_bytes.load(Ordering::Relaxed) + active
    }

    /// Journal lines moved to `audit-spool.rejected` since start.
    pub fn rejected(&self) -> u64 {
        self.counts.rejected.load(Ordering::Relaxed)
    }

    /// The replica id this writer chains under.
    pub fn replica(&self) -> &str {
        &self.replica
    }
}

/// Claims `dir`, waiting a little for a process that is replaying it to finish.
async fn claim(dir: &Path) -> Result<DirLock, StoreError> {
    for _ in 0..50 {
        if let Some(l) = journal::try_lock_dir(dir)? {
            return Ok(l);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(StoreError::Data(format!(
        "the audit journal {} is in use by another running gateway: give each gateway its own \
         [audit] replica_id (or [store] spool_dir)",
        dir.display()
    )))
}

/// A journal file from before this start, and the claim on another replica's directory that
/// it came from (released once its last file is replayed).
struct Backlogged {
    path: PathBuf,
    _claim: Option<Arc<DirLock>>,
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn count_lines(p: &Path) -> u64 {
    std::fs::read(p)
        .map(|b| {
            b.split(|c| *c == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count() as u64
        })
        .unwrap_or(0)
}

/// The circuit to the store: closed (try), or open until a probe time with a growing backoff.
#[derive(Default)]
struct Breaker {
    open_until: Option<Instant>,
    backoff: Duration,
}

impl Breaker {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    fn allows(&self) -> bool {
        self.open_until.is_none_or(|t| Instant::now() >= t)
    }

    fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    fn trip(&mut self) {
        self.backoff = if self.backoff.is_zero() {
            Self::FIRST
        } else {
            (self.backoff * 2).min(Self::MAX)
        };
        self.open_until = Some(Instant::now() + self.backoff);
    }

    fn reset(&mut self) {
        self.open_until = None;
        self.backoff = Duration::ZERO;
    }
}

/// A JSON-lines copy of every record, for log shippers (at least once: after a crash, records
/// still in the journal are written again; `seq_id` tells copies apart).
enum JsonlSink {
    Stdout,
    File(std::fs::File),
}

impl JsonlSink {
    fn open(target: &str) -> std::io::Result<JsonlSink> {
        if target == "-" {
            return Ok(JsonlSink::Stdout);
        }
        if let Some(dir) = Path::new(target)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)?;
        }
        Ok(JsonlSink::File(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(target)?,
        ))
    }

    fn write(&mut self, records: &[AuditRecord]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        match self {
            JsonlSink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&buf)?;
                out.flush()
            }
            JsonlSink::File(f) => f.write_all(&buf),
        }
    }
}

/// The writer task's state: which journal file it is reading, and how far it got.
struct Mover {
    store: Store,
    journal: Arc<Journal>,
    rejected_file: PathBuf,
    /// Closed files from before this start, oldest first; then the active segment.
    backlog: VecDeque<Backlogged>,
    /// Bytes of the current file committed.
    offset: u64,
    batch: usize,
    sink: Option<JsonlSink>,
    breaker: Breaker,
    counts: Arc<Counts>,
}

/// A batch read from the journal, not yet in the store.
struct Pending {
    records: Vec<AuditRecord>,
    next_offset: u64,
}

impl Mover {
    async fn run(mut self, wake: Arc<Notify>, mut ctl: mpsc::UnboundedReceiver<Ctl>) {
        let mut pending: Option<Pending> = None;
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let mut closing = false;
        loop {
            if pending.is_none() {
                pending = self.read_next();
            }
            match &mut pending {
                Some(p) if self.breaker.allows() => match self.store.audit_insert(&p.records).await
                {
                    Ok(()) => {
                        self.committed(p);
                        pending = None;
                        continue;
                    }
                    // The database refused the data, not the connection: one record it will
                    // never take must not hold back every record behind it.
                    Err(StoreError::Db(sqlx::Error::Database(_)))
                        if self.insert_singly(p).await =>
                    {
                        self.committed(p);
                        pending = None;
                        continue;
                    }
                    Err(e) => {
                        if !self.breaker.is_open() {
                            tracing::warn!(alert = "audit_store_down", error = %e, "audit store unavailable; records wait in the journal on disk");
                        }
                        self.breaker.trip();
                    }
                },
                Some(_) => {}
                None => {
                    // Nothing left to read: everything journaled is in the store.
                    self.rotate();
                    for w in waiters.drain(..) {
                        let _ = w.send(());
                    }
                    if closing {
                        return;
                    }
                }
            }
            if self.breaker.is_open() {
                // Everything submitted is on disk: a flush has nothing more to wait for.
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
                if closing {
                    return;
                }
            }
            let probe = self.breaker.open_until;
            tokio::select! {
                () = wake.notified() => {}
                m = ctl.recv() => match m {
                    Some(Ctl::Flush(w)) => waiters.push(w),
                    Some(Ctl::Close) | None => {
                        closing = true;
                        // One more try at the store before stopping, whatever the backoff.
                        self.breaker.open_until = None;
                    }
                },
                () = async {
                    match probe {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// Marks batch `p` as in the store: its file offset moves past it.
    fn committed(&mut self, p: &Pending) {
        if self.breaker.is_open() {
            tracing::info!("audit store is back; replaying the journal");
        }
        self.breaker.reset();
        self.offset = p.next_offset;
        self.counts
            .committed
            .fetch_add(p.records.len() as u64, Ordering::Relaxed);
    }

    /// Inserts `p`'s records one by one after the database refused the batch: a record it
    /// refuses is moved to the rejected file (logged and counted), the rest go in. False when
    /// the store fails otherwise (what is left stays pending; inserts are idempotent).
    async fn insert_singly(&mut self, p: &mut Pending) -> bool {
        while let Some(r) = p.records.first() {
            match self.store.audit_insert(std::slice::from_ref(r)).await {
                Ok(()) => {
                    self.counts.committed.fetch_add(1, Ordering::Relaxed);
                }
                Err(StoreError::Db(sqlx::Error::Database(e))) => {
                    let line = serde_json::to_vec(r).unwrap_or_default();
                    let path = self.journal_path_for_rejects();
                    if let Err(io) = journal::reject_records(
                        &self.rejected_file,
                        &path,
                        &[&line],
                        &e.to_string(),
                    ) {
                        tracing::error!(alert = "audit_spool_failed", error = %io, record = %String::from_utf8_lossy(&line), "cannot set aside a record the store refused");
                    }
                    self.counts.rejected.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => return false,
            }
            p.records.remove(0);
        }
        true
    }

    /// The file the current batch came from, for messages.
    fn journal_path_for_rejects(&self) -> PathBuf {
        match self.backlog.front() {
            Some(b) => b.path.clone(),
            None => self.journal.active().map(|(_, p, _)| p).unwrap_or_default(),
        }
    }

    /// The next batch from the oldest journal file that has one; deletes backlog files that
    /// are done. None when there is nothing to move.
    fn read_next(&mut self) -> Option<Pending> {
        loop {
            let (path, closed) = match self.backlog.front() {
                Some(b) => (b.path.clone(), true),
                None => {
                    let (_, p, _) = self.journal.active()?;
                    (p, false)
                }
            };
            let chunk = match journal::read_chunk(
                &path,
                self.offset,
                self.batch,
                closed,
                &self.rejected_file,
            ) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(alert = "audit_spool_failed", error = %e, file = %path.display(), "cannot read the audit journal");
                    return None;
                }
            };
            self.counts
                .rejected
                .fetch_add(chunk.rejected as u64, Ordering::Relaxed);
            if chunk.records.is_empty() {
                self.offset = chunk.next_offset;
                if !closed {
                    return None;
                }
                // A backlog file fully moved: only now is it deleted.
                let len = file_len(&path);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(error = %e, file = %path.display(), "cannot delete a replayed audit journal file");
                }
                self.backlog.pop_front();
                let c = &self.counts.backlog_bytes;
                let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some(b.saturating_sub(len))
                });
                self.offset = 0;
                if self.backlog.is_empty() {
                    tracing::info!("audit journal from the previous run replayed");
                }
                continue;
            }
            if let Some(sink) = &mut self.sink
                && let Err(e) = sink.write(&chunk.records)
            {
                tracing::warn!(alert = "audit_sink_failed", error = %e, "cannot write audit records to the JSON-lines sink");
            }
            return Some(Pending {
                records: chunk.records,
                next_offset: chunk.next_offset,
            });
        }
    }

    /// Starts a new active segment when every record of this one is committed.
    fn rotate(&mut self) {
        if !self.backlog.is_empty() {
            return;
        }
        let Some((number, _, _)) = self.journal.active() else {
            return;
        };
        match self.journal.rotate_if_consumed(number, self.offset) {
            Ok(true) => self.offset = 0,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot rotate the audit journal"),
        }
    }
}

impl Store {
    /// The last sequence number and digest of `replica`'s chain in the store.
    pub async fn audit_head(&self, replica: &str) -> Result<ChainHead, StoreError> {
        use sqlx::Row;
        let row = sqlx::query("SELECT seq, digest FROM audit_heads WHERE replica = $1")
            .bind(replica.to_owned())
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => ChainHead {
                seq: r.try_get("seq")?,
                digest: r.try_get("digest")?,
            },
            None => ChainHead::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_circuit_backs_off_to_a_bound_and_closes_on_success() {
        let mut b = Breaker::default();
        assert!(b.allows() && !b.is_open());
        b.trip();
        assert!(b.is_open());
        assert!(!b.allows(), "no attempt right after a failure");
        assert_eq!(b.backoff, Breaker::FIRST);
        for _ in 0..20 {
            b.trip();
        }
        assert_eq!(b.backoff, Breaker::MAX);
        b.reset();
        assert!(b.allows() && !b.is_open());
        assert_eq!(b.backoff, Duration::ZERO);
    }
}
