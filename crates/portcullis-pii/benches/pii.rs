//! The whole input scan (structured + secret recognisers, with and without the tagger) on a
//! typical 2 KB chat request, 1 KB and 1 MB of mixed prose.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_pii::{ScanOptions, scan};
use std::hint::black_box;

/// Mixed prose with a little PII, the way chat requests look.
fn prose(bytes: usize) -> String {
    let para = "Hi team, following up on yesterday's call with Maria Gonzalez from Northwind \
        Traders in Seattle. She asked us to update the shipping address on order 5521 and to \
        resend the invoice to maria.gonzalez@northwind.example before Friday. Her direct line \
        is (206) 555-0143. Could you also summarise the contract terms below in plain English, \
        list the open risks, and suggest three follow-up questions for the next meeting? The \
        renewal is due in March and the budget owner wants a short written brief first. ";
    let mut s = String::with_capacity(bytes + para.len());
    while s.len() < bytes {
        s.push_str(para);
    }
    s.truncate(bytes);
    while !s.is_char_boundary(s.len()) {
        s.pop();
    }
    s
}

fn bench(c: &mut Criterion) {
    let all = ScanOptions::default();
    let structured = ScanOptions {
        ner: false,
        ..ScanOptions::default()
    };
    let _ = scan("warm up 4111 1111 1111 1111", &all);
    let mut g = c.benchmark_group("pii_scan");
    for (name, n) in [("2KB", 2048), ("1KB", 1024), ("1MB", 1 << 20)] {
        let text = prose(n);
        g.throughput(Throughput::Bytes(text.len() as u64));
        if n > 4096 {
            g.sample_size(10);
        }
        g.bench_function(format!("all_{name}"), |b| {
            b.iter(|| scan(black_box(&text), &all))
        });
        g.bench_function(format!("structured_{name}"), |b| {
            b.iter(|| scan(black_box(&text), &structured))
        });
    }
    // A short chat message: fixed per-call costs dominate here.
    let short = "Please send the report to Dana Whitfield at dana.w@example.com by Friday.";
    g.throughput(Throughput::Bytes(short.len() as u64));
    g.bench_function("all_short", |b| b.iter(|| scan(black_box(short), &all)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
