//! What the audit log costs a request: `AuditWriter::submit` (seal into the keyed chain, append
//! to the journal) on the request path, and the background move into SQLite per record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_store::{AuditRecord, AuditWriter, ChainKey, SpoolConfig};
use std::time::{Duration, Instant};

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        request_id: format!("req_{i:016x}"),
        time: 1_800_000_000_000 + i as i64,
        key_id: Some("key_0123456789abcdef".into()),
        user: Some("alice".into()),
        team: Some("research".into()),
        model: Some("gpt-4o-mini".into()),
        route: Some("chat".into()),
        status: 200,
        outcome: "allowed".into(),
        prompt_tokens: 42,
        completion_tokens: 17,
        cost_micros: 31,
        latency_ms: 3,
        upstream_ms: Some(2),
        verdicts: serde_json::json!([
            {"guard": "size", "outcome": "allow"},
            {"guard": "pii", "outcome": "allow", "findings": []},
            {"guard": "injection", "outcome": "allow", "score": 0.02},
            {"guard": "moderation", "outcome": "allow", "score": 0.01}
        ]),
        ..AuditRecord::default()
    }
}

fn audit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let store = rt.block_on(portcullis_store::open(&url)).unwrap();
    let writer = rt
        .block_on(AuditWriter::spawn(
            store.clone(),
            SpoolConfig {
                dir: dir.path().join("spool"),
                key: ChainKey::new(b"bench-key-0123456789abcdef0123456789"),
                replica: "bench".into(),
                ..SpoolConfig::default()
            },
        ))
        .unwrap();
    let mut i = 0u64;
    c.bench_function("submit (seal + journal append)", |b| {
        b.iter(|| {
            i += 1;
            writer.submit(record(i));
        })
    });
    rt.block_on(writer.flush());
    // Into the store: records per second the writer moves (journal read, fsync, insert).
    let n = 20_000u64;
    let start = Instant::now();
    for _ in 0..n {
        i += 1;
        writer.submit(record(i));
    }
    rt.block_on(writer.flush());
    let took = start.elapsed().max(Duration::from_micros(1));
    println!(
        "submit + commit to SQLite: {n} records in {:.2} s = {:.1} µs per record ({:.0} records/s)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / n as f64,
        n as f64 / took.as_secs_f64()
    );
    rt.block_on(writer.close());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = audit
}
criterion_main!(benches);
