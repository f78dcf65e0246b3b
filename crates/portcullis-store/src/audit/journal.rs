//! The write-ahead journal: every record is sealed into its replica's chain and appended to a
//! segment file on local disk before [`super::AuditWriter::submit`] returns, so a crash of the
//! process (even `kill -9`) loses nothing that was submitted. The writer task reads segments
//! in order, moves their records into the store, and deletes a segment only once every record
//! in it is committed: appends never go to a segment being replayed (the active segment is
//! swapped for a new one first, under the same lock as appends). Lines that cannot be parsed
//! are moved to `audit-spool.rejected` and counted, never dropped silently.
//!
//! Durability: appends are written to the OS at once (they survive the process dying); the
//! writer `fsync`s a segment before each batch it inserts, so a power loss can lose at most
//! the records appended since the last batch.

use super::AuditRecord;
use super::chain::{Chain, ChainHead};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Segment files are `audit-journal-<number>.jsonl`, replayed in number order.
const SEGMENT_PREFIX: &str = "audit-journal-";
const SEGMENT_SUFFIX: &str = ".jsonl";
/// The spool file of versions before the journal; replayed first, then deleted.
const LEGACY_SPOOL: &str = "audit-spool.jsonl";
/// Where lines that are not records go (with the segment they came from).
pub const REJECTED_FILE: &str = "audit-spool.rejected";
/// Most bytes read from a segment at once.
const READ_CHUNK: usize = 4 << 20;

/// An exclusive claim on one replica's journal directory, held while it lives (an OS file
/// lock: released by the OS when the process dies, so a crashed replica's journal can be
/// claimed and replayed by the next process).
pub(crate) struct DirLock {
    _file: std::fs::File,
}

/// Claims `dir` (creating it), or `None` when another live process holds it.
pub(crate) fn try_lock_dir(dir: &Path) -> std::io::Result<Option<DirLock>> {
    std::fs::create_dir_all(dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    #[cfg(unix)]
    {
        use rustix::fs::{FlockOperation, flock};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(DirLock { _file: file }))
}

/// Moves the spool file of versions before the journal from `root` into `dir` (a rename:
/// exactly one process gets it).
pub(crate) fn adopt_legacy(root: &Path, dir: &Path) {
    let from = root.join(LEGACY_SPOOL);
    if from.exists()
        && let Err(e) = std::fs::rename(&from, dir.join(LEGACY_SPOOL))
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, file = %from.display(), "cannot adopt the old audit spool");
    }
}

/// Other replicas' journal directories under `root` (every subdirectory but `own`).
pub(crate) fn other_dirs(root: &Path, own: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() && entry.path() != own {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Journal segments (and a legacy spool) waiting in `dir`, oldest first.
pub fn backlog(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut numbered = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if let Some(n) = segment_number(&path) {
            numbered.push((n, path));
        }
    }
    numbered.sort();
    let mut out = Vec::new();
    let legacy = dir.join(LEGACY_SPOOL);
    if legacy.exists() {
        out.push(legacy);
    }
    out.extend(numbered.into_iter().map(|(_, p)| p));
    Ok(out)
}

fn segment_number(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?
        .parse()
        .ok()
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{number:012}{SEGMENT_SUFFIX}"))
}

/// The last record of `replica` in the journal files `paths` (its chain may be ahead of the
/// store's after a crash).
pub fn last_of(paths: &[PathBuf], replica: &str) -> ChainHead {
    let mut head = ChainHead::default();
    for p in paths {
        let Ok(text) = std::fs::read_to_string(p) else {
            continue;
        };
        for line in text.lines() {
            if let Ok(r) = serde_json::from_str::<AuditRecord>(line)
                && r.replica == replica
                && r.seq > head.seq
            {
                head = ChainHead {
                    seq: r.seq,
                    digest: r.digest,
                };
            }
        }
    }
    head
}

/// The segment being appended to, and the chain it extends.
struct Active {
    file: std::fs::File,
    number: u64,
    len: u64,
    chain: Chain,
}

/// The append side of the journal, shared by every request.
pub(crate) struct Journal {
    dir: PathBuf,
    active: Mutex<Active>,
    /// Records appended since start.
    appended: AtomicU64,
}

/// A record that could not be journaled, with why.
pub(crate) struct AppendError {
    pub error: std::io::Error,
    pub record: AuditRecord,
}

impl Journal {
    /// A new active segment in `dir`, numbered after every segment in `backlog`.
    pub fn create(dir: &Path, backlog: &[PathBuf], chain: Chain) -> std::io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let number = backlog
            .iter()
            .filter_map(|p| segment_number(p))
            .max()
            .map_or(1, |n| n + 1);
        let file = open_append(&segment_path(dir, number))?;
        sync_dir(dir);
        Ok(Journal {
            dir: dir.to_owned(),
            active: Mutex::new(Active {
                file,
                number,
                len: 0,
                chain,
            }),
            appended: AtomicU64::new(0),
        })
    }

    /// Seals `record` into the chain and appends it. On failure the chain does not move (no
    /// gap is left) and the record is handed back.
    pub fn append(&self, mut record: AuditRecord) -> Result<(), AppendError> {
        let Ok(mut a) = self.active.lock() else {
            return Err(AppendError {
                error: std::io::Error::other("audit journal lock poisoned"),
                record,
            });
        };
        let before = a.chain.head.clone();
        a.chain.seal(&mut record);
        let mut line = match serde_json::to_vec(&record) {
            Ok(l) => l,
            Err(e) => {
                a.chain.head = before;
                return Err(AppendError {
                    error: std::io::Error::other(e),
                    record,
                });
            }
        };
        line.push(b'\n');
        if let Err(error) = a.file.write_all(&line) {
            a.chain.head = before;
            // A partial line may be on disk; the reader rejects it (visibly) rather than guess.
            return Err(AppendError { error, record });
        }
        a.len += line.len() as u64;
        self.appended.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The active segment: its number, path and length written so far.
    pub fn active(&self) -> Option<(u64, PathBuf, u64)> {
        let a = self.active.lock().ok()?;
        Some((a.number, segment_path(&self.dir, a.number), a.len))
    }

    /// When the reader has consumed all `offset` bytes of active segment `number`, starts a
    /// new segment and deletes that one (every record in it is committed). False when records
    /// arrived meanwhile.
    pub fn rotate_if_consumed(&self, number: u64, offset: u64) -> std::io::Result<bool> {
        let Ok(mut a) = self.active.lock() else {
            return Ok(false);
        };
        if a.number != number || a.len != offset || a.len == 0 {
            return Ok(false);
        }
        let next = open_append(&segment_path(&self.dir, number + 1))?;
        sync_dir(&self.dir);
        a.file = next;
        a.number = number + 1;
        a.len = 0;
        drop(a);
        std::fs::remove_file(segment_path(&self.dir, number))?;
        Ok(true)
    }

    /// Records appended since start.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }
}

/// Makes a new segment's directory entry durable (a power cut must not lose the file itself).
/// Best effort: not every platform can open a directory for syncing.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// What one read of a segment gave.
pub(crate) struct Chunk {
    pub records: Vec<AuditRecord>,
    /// Where the next read starts once these records are committed.
    pub next_offset: u64,
    /// Lines moved to the rejected file.
    pub rejected: usize,
}

/// Reads up to `max` records of `path` from `offset`. A line without its newline is left for
/// the next read, unless `closed` (nothing more will be appended): then it is a torn write
/// and is rejected. The segment is `fsync`ed first, so what is read is on disk.
pub(crate) fn read_chunk(
    path: &Path,
    offset: u64,
    max: usize,
    closed: bool,
    rejected_file: &Path,
) -> std::io::Result<Chunk> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Chunk {
                records: Vec::new(),
                next_offset: offset,
                rejected: 0,
            });
        }
        Err(e) => return Err(e),
    };
    f.sync_data()?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(READ_CHUNK as u64).read_to_end(&mut buf)?;
    let mut records = Vec::new();
    let mut bad: Vec<&[u8]> = Vec::new();
    let mut consumed = 0usize;
    while records.len() < max && consumed < buf.len() {
        let rest = &buf[consumed..];
        let (line, used) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], i + 1),
            None if closed && buf.len() < READ_CHUNK => (rest, rest.len()),
            // A line longer than a whole read is no record the writer makes: moved aside in
            // pieces (kept, not parsed) rather than blocking every record behind it.
            None if consumed == 0 && buf.len() == READ_CHUNK => (rest, rest.len()),
            None => break,
        };
        consumed += used;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<AuditRecord>(line) {
            Ok(r) => records.push(r),
            Err(_) => bad.push(line),
        }
    }
    if !bad.is_empty() {
        reject(rejected_file, path, &bad)?;
    }
    Ok(Chunk {
        records,
        next_offset: offset + consumed as u64,
        rejected: bad.len(),
    })
}

/// Appends unparsable `lines` of `from` to the rejected file and says so in the log.
fn reject(rejected_file: &Path, from: &Path, lines: &[&[u8]]) -> std::io::Result<()> {
    reject_records(rejected_file, from, lines, "not an audit record")
}

/// Appends `lines` of `from` to the rejected file and logs why they were set aside.
pub(crate) fn reject_records(
    rejected_file: &Path,
    from: &Path,
    lines: &[&[u8]],
    why: &str,
) -> std::io::Result<()> {
    let mut f = open_append(rejected_file)?;
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l);
        buf.push(b'\n');
    }
    f.write_all(&buf)?;
    f.sync_data()?;
    tracing::error!(
        alert = "audit_spool_rejected",
        n = lines.len(),
        from = %from.display(),
        to = %rejected_file.display(),
        why,
        "audit journal lines were moved aside; inspect them"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::ChainKey;

    fn chain() -> Chain {
        Chain {
            key: ChainKey::new(b"0123456789abcdef0123456789abcdef"),
            replica: "r".into(),
            head: ChainHead::default(),
        }
    }

    fn rec(id: &str) -> AuditRecord {
        AuditRecord {
            request_id: id.into(),
            status: 200,
            ..AuditRecord::default()
        }
    }

    #[test]
    fn appends_are_read_back_in_order_and_rotation_keeps_later_appends() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::create(d.path(), &[], chain()).unwrap();
        for i in 0..3 {
            assert!(j.append(rec(&format!("a{i}"))).is_ok());
        }
        let (n, path, len) = j.active().unwrap();
        let rej = d.path().join(REJECTED_FILE);
        let c = read_chunk(&path, 0, 2, false, &rej).unwrap();
        assert_eq!(c.records.len(), 2);
        assert_eq!(c.records[1].seq, 2);
        // Not everything read: no rotation.
        assert!(!j.rotate_if_consumed(n, c.next_offset).unwrap());
        let c2 = read_chunk(&path, c.next_offset, 10, false, &rej).unwrap();
        assert_eq!(c2.records[0].request_id, "a2");
        assert_eq!(c2.next_offset, len);
        // A record appended after the read lands before the rotation: the segment stays.
        assert!(j.append(rec("late")).is_ok());
        assert!(!j.rotate_if_consumed(n, c2.next_offset).unwrap());
        let c3 = read_chunk(&path, c2.next_offset, 10, false, &rej).unwrap();
        assert_eq!(c3.records[0].request_id, "late");
        assert!(j.rotate_if_consumed(n, c3.next_offset).unwrap());
        assert!(!path.exists(), "a consumed segment is deleted");
        // Appends go on in the next segment, continuing the chain.
        assert!(j.append(rec("next")).is_ok());
        let (n2, path2, _) = j.active().unwrap();
        assert_eq!(n2, n + 1);
        let c4 = read_chunk(&path2, 0, 10, false, &rej).unwrap();
        assert_eq!(c4.records[0].seq, 5);
        assert_eq!(j.appended(), 5);
        assert_eq!(backlog(d.path()).unwrap(), vec![path2.clone()]);
        assert_eq!(last_of(&[path2], "r").seq, 5);
    }

    #[test]
    fn unparsable_lines_are_moved_aside_and_counted() {
        let d = tempfile::tempdir().unwrap();
        let seg = segment_path(d.path(), 3);
        let good = serde_json::to_string(&rec("ok")).unwrap();
        std::fs::write(&seg, format!("{good}\nnot json\n{good}\n{{\"torn\":")).unwrap();
        let rej = d.path().join(REJECTED_FILE);
        // While the segment may still grow, a line without its newline waits.
        let open = read_chunk(&seg, 0, 10, false, &rej).unwrap();
        assert_eq!((open.records.len(), open.rejected), (2, 1));
        // Closed, the torn tail is a rejected line too.
        let _ = std::fs::remove_file(&rej);
        let closed = read_chunk(&seg, 0, 10, true, &rej).unwrap();
        assert_eq!((closed.records.len(), closed.rejected), (2, 2));
        assert_eq!(
            std::fs::read_to_string(&rej).unwrap(),
            "not json\n{\"torn\":\n"
        );
        assert_eq!(closed.next_offset, std::fs::metadata(&seg).unwrap().len());
        // New segments are numbered after the backlog.
        let j = Journal::create(d.path(), &backlog(d.path()).unwrap(), chain()).unwrap();
        assert_eq!(j.active().unwrap().0, 4);
    }
}
