//! One governed query end to end, over one kept-alive mTLS connection: TLS, identity,
//! parsing, policy, the SQLite source, masking, a durable audit append (SQLite, FULL
//! sync) and the response signature. Compared with `GET /healthz` on the same
//! connection, which does none of the governance, to show what governance costs.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Method;
use paotui_tests::TestApp;

fn bench(c: &mut Criterion) {
    let Some(rt) = paotui_benches::runtime() else {
        return;
    };
    let Ok(app) = rt.block_on(TestApp::spawn()) else {
        return;
    };
    let Ok(client) = app.client("RS", "shebao") else {
        return;
    };
    let Ok(mut conn) = rt.block_on(client.connect()) else {
        return;
    };
    let subjects = app.world.subjects.clone();
    let bodies: Vec<Vec<u8>> = subjects
        .iter()
        .map(|s| {
            serde_json::json!({"subject": s, "fields": ["name", "gender", "address"]})
                .to_string()
                .into_bytes()
        })
        .collect();

    let mut g = c.benchmark_group("one_mtls_connection");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("governed_query", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let body = bodies[i as usize % bodies.len()].clone();
                    let r = conn
                        .send(
                            Method::POST,
                            "/v1/services/population.person/query",
                            &[("content-type", "application/json")],
                            body,
                        )
                        .await;
                    if !matches!(&r, Ok(r) if r.status == 200) {
                        eprintln!("query failed: {r:?}");
                    }
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("healthz_floor", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let _ = conn.send(Method::GET, "/healthz", &[], vec![]).await;
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    rt.block_on(app.stop());
}

criterion_group!(benches, bench);
criterion_main!(benches);
