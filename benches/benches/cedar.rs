//! Cedar authorization per request: the `query` decision and the field plan of a governed
//! query, with the shipped policy set and with 1,000 policies. Each is timed twice:
//! *decided* (a new operator name every time, so the policy set's memo never has the
//! answer and Cedar evaluates) and *remembered* (the same request again, answered from
//! the memo, as a caller's repeated queries are). Besides criterion's means, prints
//! p50/p99 of single decisions (10,000 timed one by one).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use paotui_certs::{DeptCode, SystemId, SystemIdentity};
use paotui_policies::access::{AccessPolicy, Binding};
use paotui_policies::catalog::Catalog;
use paotui_policies::cedar::{Policies, SCHEMA, SHIPPED, Who, generated_policies};
use paotui_policies::ids::ServiceId;

const CATALOG: &str = include_str!("../../examples/catalog.toml");

fn percentiles(mut f: impl FnMut()) -> (Duration, Duration) {
    let mut t: Vec<Duration> = (0..10_000)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    (t[t.len() / 2], t[t.len() * 99 / 100])
}

fn bench(c: &mut Criterion) {
    let Ok(catalog) = Catalog::parse("examples/catalog.toml", CATALOG) else {
        eprintln!("catalog does not parse");
        return;
    };
    let Some(service) = ServiceId::parse("population.person")
        .ok()
        .and_then(|id| catalog.services.get(&id))
    else {
        return;
    };
    let (Ok(dept), Ok(system)) = (DeptCode::parse("SC"), SystemId::parse("dengji")) else {
        return;
    };
    let caller = SystemIdentity {
        dept,
        system,
        serial: "01".into(),
    };
    let fields: Vec<String> = ["name", "gender", "address"].map(String::from).to_vec();
    let binding = Binding {
        required: true,
        granted: true,
    };
    let mut files: Vec<(String, String)> = SHIPPED
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    let Ok(shipped) = Policies::from_sources(("schema", SCHEMA), &files, BTreeSet::new()) else {
        return;
    };
    files.push((
        "generated.cedar".into(),
        generated_policies(1000 - shipped.len()),
    ));
    let Ok(large) = Policies::from_sources(("schema", SCHEMA), &files, BTreeSet::new()) else {
        return;
    };

    // Distinct operators: every decision is a memo miss (the memo empties itself when
    // full, so this also pays for that now and then, as a real miss stream would).
    let operators: Vec<String> = (0..10_000).map(|i| format!("op-{i}")).collect();
    let who = |i: usize| Who {
        system: &caller,
        operator: Some(operators[i % operators.len()].as_str()),
    };
    let same = Who {
        system: &caller,
        operator: Some("op-same"),
    };
    let mut g = c.benchmark_group("cedar");
    for (name, p) in [("shipped", &shipped), ("1000_policies", &large)] {
        let governed = |w: Who<'_>| {
            let _ = p.query(w, service, binding);
            let _ = p.field_plan(w, service, &fields);
        };
        let mut i = 0;
        g.bench_function(format!("query_decision/{name}/decided"), |b| {
            b.iter(|| {
                i += 1;
                p.query(who(i), service, binding)
            })
        });
        g.bench_function(format!("query_decision/{name}/remembered"), |b| {
            b.iter(|| p.query(same, service, binding))
        });
        g.bench_function(format!("governed_query_policy/{name}/decided"), |b| {
            b.iter(|| {
                i += 1;
                governed(who(i))
            })
        });
        g.bench_function(format!("governed_query_policy/{name}/remembered"), |b| {
            b.iter(|| governed(same))
        });
        // The trait path the listing uses (no operator): remembered after the first.
        g.bench_function(format!("decide_query/{name}/remembered"), |b| {
            b.iter(|| p.decide_query(&caller, service, &fields, binding))
        });
        let (p50, p99) = percentiles(|| {
            i += 1;
            let _ = p.query(who(i), service, binding);
        });
        let (q50, q99) = percentiles(|| {
            i += 1;
            governed(who(i));
        });
        let (r50, r99) = percentiles(|| governed(same));
        eprintln!(
            "cedar {name} ({} policies): query decision p50 {p50:?} p99 {p99:?}; \
             query + 3-field plan decided p50 {q50:?} p99 {q99:?}, \
             remembered p50 {r50:?} p99 {r99:?}",
            p.len()
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
