//! The local classifier on a typical chat message and on a long one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_moderation::classifier::Model;

fn bench(c: &mut Criterion) {
    let m = Model::builtin();
    let typical = "Can you help me write a polite email to my landlord about the broken heating? \
                   It has been cold for a week and I have asked twice already.";
    let long = typical.repeat(40);
    let mut g = c.benchmark_group("moderation/local");
    g.throughput(Throughput::Bytes(typical.len() as u64));
    g.bench_function("typical message", |b| {
        b.iter(|| m.score(std::hint::black_box(typical)))
    });
    g.throughput(Throughput::Bytes(long.len() as u64));
    g.bench_function("6 KB message", |b| {
        b.iter(|| m.score(std::hint::black_box(&long)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
