//! Cost of one admission plus its settlement (three scopes, every limit set), memory and Redis
//! (127.0.0.1:6379 under a unique prefix, removed afterwards); and of pricing one call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use portcullis_limits::{
    Admission, Decision, FailMode, Limiter, Limits, MemoryLimiter, Pricing, RedisLimiter, Scope,
};

const SHARED: &str = "redis://127.0.0.1:6379/0";

fn admission(i: u64) -> Admission {
    let l = Limits {
        rpm: Some(1 << 40),
        tpm: Some(1 << 50),
        tph: Some(1 << 50),
        tpd: Some(1 << 50),
        max_parallel: Some(1 << 40),
    };
    Admission::new(600)
        .scope(&Scope::Key(format!("k{}", i % 64)), l)
        .scope(&Scope::User(format!("u{}", i % 256)), l)
        .scope(&Scope::Team("t".into()), l)
}

async fn cycle(l: &dyn Limiter, i: u64) {
    match l.admit(&admission(i)).await.unwrap() {
        Decision::Admitted(r, _) => l.settle(&r, 420).await.unwrap(),
        Decision::Refused(f) => panic!("refused: {}", f.message()),
    }
}

async fn cleanup(prefix: &str) {
    let client = redis::Client::open(SHARED).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut con)
                .await
                .unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mem = MemoryLimiter::default();
    let mut i = 0u64;
    c.bench_function("admit+settle/memory/3 scopes x 5 limits", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(cycle(&mem, i))
        })
    });
    let prefix = format!("portcullis-bench-{}-{}", std::process::id(), rand_suffix());
    let _in_runtime = rt.enter();
    let redis = RedisLimiter::new(SHARED, &prefix, FailMode::FailClosed).unwrap();
    rt.block_on(redis.ping()).expect("Redis on 127.0.0.1:6379");
    c.bench_function("admit+settle/redis/3 scopes x 5 limits", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(cycle(&redis, i))
        })
    });
    // Sixteen callers at once on one connection (what a busy replica does): per admission.
    let redis = std::sync::Arc::new(redis);
    c.bench_function("admit+settle/redis/16 concurrent, per request", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            rt.block_on(async {
                let per = iters.div_ceil(16);
                let tasks: Vec<_> = (0..16)
                    .map(|t| {
                        let r = redis.clone();
                        tokio::spawn(async move {
                            for j in 0..per {
                                cycle(&*r, t * 1_000_003 + j).await;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
            start.elapsed()
        })
    });
    rt.block_on(cleanup(&prefix));

    let pricing = Pricing::builtin();
    c.bench_function("pricing/cost of a dated snapshot", |b| {
        b.iter(|| pricing.cost(black_box("gpt-4o-mini-2024-07-18"), 1_234, 512, 321))
    });
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

criterion_group!(benches, bench);
criterion_main!(benches);
