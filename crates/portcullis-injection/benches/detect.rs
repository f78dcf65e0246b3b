//! The injection detector on a typical request and on a long document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_injection::Detector;

fn bench(c: &mut Criterion) {
    let d = Detector::builtin();
    let typical =
        "I'm planning a trip to Lisbon in March with two kids aged 6 and 9. We like museums, \
        beaches if the weather allows, and good food that isn't too spicy. Could you suggest a \
        four-day itinerary with one rainy-day alternative per day, rough costs for entry tickets, \
        and tips for getting around by public transport? We'll stay near Baixa. "
            .repeat(3);
    let long = typical.repeat(80);
    let mut g = c.benchmark_group("injection");
    g.throughput(Throughput::Bytes(typical.len() as u64));
    g.bench_function("typical 1.1 KB request", |b| {
        b.iter(|| d.score(std::hint::black_box(&typical)))
    });
    g.bench_function("typical 1.1 KB tool result (windows too)", |b| {
        b.iter(|| d.score_document(std::hint::black_box(&typical)))
    });
    g.throughput(Throughput::Bytes(long.len() as u64));
    g.sample_size(20);
    g.bench_function("90 KB document", |b| {
        b.iter(|| d.score(std::hint::black_box(&long)))
    });
    // Issue 20: a tool result is read all through by windows and lines, up to MAX_READ (64 KB);
    // beyond, an even sample worth MAX_READ plus where the rules fire.
    let page = |n: usize| {
        let mut t = String::with_capacity(n + 400);
        let mut i = 0usize;
        while t.len() < n {
            t.push_str(&typical[(i * 97) % 600..][..200]);
            t.push_str(if i % 3 == 2 { ".\n" } else { ". " });
            i += 1;
        }
        t
    };
    for (name, n) in [
        ("20 KB tool result (read all through)", 20 * 1024),
        ("1 MB tool result (sampled to 64 KB)", 1024 * 1024),
    ] {
        let doc = page(n);
        g.throughput(Throughput::Bytes(doc.len() as u64));
        g.sample_size(10);
        g.bench_function(name, |b| {
            b.iter(|| d.score_document(std::hint::black_box(&doc)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
