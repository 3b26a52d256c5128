//! One governed query end to end, over one kept-alive mTLS connection: TLS, identity,
//! parsing, policy, the SQLite source, masking, a durable audit append (SQLite, FULL
//! sync) and the response signature. Compared with `GET /healthz` on the same
//! connection, which does none of the governance, to show what governance costs; and
//! the same query with `[policy] purpose_binding = "off"`, to show what binding the query
//! to its case (one case read from the store and the decision) costs.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Method;
use paotui_gateway::config::PurposeBinding;
use paotui_tests::TestApp;

/// A query body per subject; with `cases`, each names the subject's open case.
fn bodies(subjects: &[String], cases: Option<&[String]>) -> Vec<Vec<u8>> {
    subjects
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut body =
                serde_json::json!({"subject": s, "fields": ["name", "gender", "address"]});
            if let Some(cases) = cases {
                body["case_id"] = serde_json::json!(cases[i]);
            }
            body.to_string().into_bytes()
        })
        .collect()
}

fn run_queries(
    rt: &tokio::runtime::Runtime,
    conn: &mut paotui_gateway::client::Conn,
    bodies: &[Vec<u8>],
    iters: u64,
) -> Duration {
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
}

fn bench(c: &mut Criterion) {
    let Some(rt) = paotui_benches::runtime() else {
        return;
    };
    // The same world twice: purpose binding required (the default) and switched off.
    let Ok(app) = rt.block_on(TestApp::spawn()) else {
        return;
    };
    let Ok(unbound) = rt.block_on(TestApp::spawn_with(|c| {
        c.policy.purpose_binding = PurposeBinding::Off;
    })) else {
        return;
    };
    let (Ok(client), Ok(client_unbound)) =
        (app.client("RS", "shebao"), unbound.client("RS", "shebao"))
    else {
        return;
    };
    let subjects: Vec<String> = app.world.subjects.iter().take(32).cloned().collect();
    // One open 社会保障卡申领 case per subject, as a window would have accepted.
    let mut cases = Vec::new();
    for s in &subjects {
        match rt.block_on(app.open_case(&client, s, &["RS-SBK-SL"])) {
            Ok(id) => cases.push(id),
            Err(e) => {
                eprintln!("opening a case: {e}");
                return;
            }
        }
    }
    let bound_bodies = bodies(&subjects, Some(&cases));
    let unbound_bodies = bodies(&subjects, None);
    let (Ok(mut conn), Ok(mut conn_unbound)) = (
        rt.block_on(client.connect()),
        rt.block_on(client_unbound.connect()),
    ) else {
        return;
    };

    let mut g = c.benchmark_group("one_mtls_connection");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("governed_query", |b| {
        b.iter_custom(|iters| run_queries(&rt, &mut conn, &bound_bodies, iters))
    });
    g.bench_function("governed_query_without_purpose_binding", |b| {
        b.iter_custom(|iters| run_queries(&rt, &mut conn_unbound, &unbound_bodies, iters))
    });
    // A fresh connection: the first one may have idled past the server's keep-alive
    // while the unbound gateway was measured, and a closed one fails in nanoseconds.
    let Ok(mut conn) = rt.block_on(client.connect()) else {
        return;
    };
    g.bench_function("healthz_floor", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let r = conn.send(Method::GET, "/healthz", &[], vec![]).await;
                    if !matches!(&r, Ok(r) if r.status == 200) {
                        eprintln!("healthz failed: {r:?}");
                    }
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    rt.block_on(app.stop());
    rt.block_on(unbound.stop());
}

criterion_group!(benches, bench);
criterion_main!(benches);
