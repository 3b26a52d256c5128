//! The four demo departments through the mTLS gateway, each from its own kind of source,
//! and what happens when a department database goes away or is slow.

use std::net::SocketAddr;

use http::StatusCode;
use paotui_certs::Jwks;
use paotui_gateway::client::Reply;
use paotui_gateway::config::SourceConfig;
use paotui_repository::Outcome;
use paotui_tests::{TcpProxy, TestApp};
use serde_json::{Value, json};

fn rows(r: &Reply) -> Vec<Value> {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json().unwrap()["rows"].as_array().cloned().unwrap()
}

async fn outcome(app: &TestApp, jwks: &Jwks, r: &Reply) -> (Outcome, u16, Option<String>) {
    let (_, index) = r.verify(jwks).unwrap();
    let e = app.audit_entry(index).await.unwrap();
    (e.entry.outcome, e.entry.status, e.entry.reason)
}

#[tokio::test]
async fn every_department_answers_through_the_gateway() {
    let app = TestApp::spawn().await.unwrap();
    let mz = app.client("MZ", "dibao").unwrap();
    let rs = app.client("RS", "shebao").unwrap();
    let sc = app.client("SC", "dengji").unwrap();
    let jwks = mz.keys().await.unwrap();
    let s = app.world.samples.clone();

    // 不动产 (SQLite): MZ is granted personal fields, SC sees them masked — each for a
    // case of the owner that lists the property service (最低生活保障, 个体工商户设立).
    let fields = [
        "owner_id",
        "area",
        "registered_at",
        "mortgaged",
        "floor_count",
    ];
    let dibao = app
        .open_case(&mz, &s.property[0], &["MZ-DB-SQ"])
        .await
        .unwrap();
    let body = json!({"subject": s.property[0], "case_id": dibao, "fields": fields});
    let r = mz
        .post_json("/v1/services/property.by_owner/query", &body)
        .await
        .unwrap();
    let got = rows(&r);
    assert!(!got.is_empty());
    assert_eq!(got[0]["owner_id"], json!(s.property[0]));
    // SQLite has no decimal type: its DECIMAL columns are REAL, so a JSON number.
    assert!(got[0]["area"].is_f64(), "{}", got[0]);
    assert!(got[0]["mortgaged"].is_boolean());
    assert!(got[0]["floor_count"].is_i64());
    assert_eq!(outcome(&app, &jwks, &r).await.0, Outcome::Ok);
    let gtgsh = app
        .open_case(&sc, &s.property[0], &["SC-GTGSH-SL"])
        .await
        .unwrap();
    let r = sc
        .post_json(
            "/v1/services/property.by_owner/query",
            &json!({"subject": s.property[0], "case_id": gtgsh, "fields": fields}),
        )
        .await
        .unwrap();
    let masked = rows(&r);
    assert_ne!(masked[0]["owner_id"], json!(s.property[0]));
    assert!(masked[0]["owner_id"].as_str().unwrap().contains("********"));

    // 市场监管 (SQLite), by USCC, for a 食品经营许可 case of the business.
    let spjy = app
        .open_case(&sc, &s.business[0], &["SC-SPJY-XK"])
        .await
        .unwrap();
    let r = sc
        .post_json(
            "/v1/services/business.entity/query",
            &json!({"subject": s.business[0], "case_id": spjy, "fields": ["uscc", "status", "established"]}),
        )
        .await
        .unwrap();
    let got = rows(&r);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["uscc"], json!(s.business[0]));
    // A USCC with a wrong check character never reaches the source.
    let mut bad = s.business[0].clone();
    let last = bad.pop().unwrap();
    bad.push(if last == '0' { '1' } else { '0' });
    let r = sc
        .post_json(
            "/v1/services/business.entity/query",
            &json!({"subject": bad, "case_id": spjy}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // 人社 (Parquet export): one row per insurance type; the secret base never leaves.
    let insured = app
        .open_case(&mz, &s.social[0], &["MZ-DB-SQ"])
        .await
        .unwrap();
    let r = mz
        .post_json("/v1/services/social.insurance/query", &json!({"subject": s.social[0], "case_id": insured, "fields": ["insured_id", "insurance_type", "months", "contribution_base"]}))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let got = rows(&r);
    assert!(!got.is_empty());
    assert!(got.iter().all(
        |row| row["insured_id"] == json!(s.social[0]) && row.get("contribution_base").is_none()
    ));

    // 公安 (SQLite) for completeness, and the list names all four services.
    let sbk = app
        .open_case(&rs, &s.population[0], &["RS-SBK-SL"])
        .await
        .unwrap();
    let r = rs
        .post_json(
            "/v1/services/population.person/query",
            &json!({"subject": s.population[0], "case_id": sbk, "fields": ["gender"]}),
        )
        .await
        .unwrap();
    assert_eq!(rows(&r).len(), 1);
    let list = mz.get("/v1/services").await.unwrap().json().unwrap();
    let ids: Vec<&str> = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    for id in [
        "population.person",
        "property.by_owner",
        "social.insurance",
        "business.entity",
    ] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    app.stop().await;
}

/// A fresh PostgreSQL database holding the demo's property registry (same seed and size as
/// the test world, so the world's samples are in it).
async fn property_in_postgres() -> Option<(String, String)> {
    let (name, url) = paotui_tests::fresh_pg_database("paotui_e2e")
        .await
        .unwrap()?;
    let dir = tempfile::tempdir().unwrap();
    paotui_adapters::demo::generate(&paotui_adapters::demo::Options {
        dir: dir.path().to_owned(),
        people: 200,
        seed: paotui_gateway::demo::SEED,
        postgres: Some(url),
        mysql: None,
        progress: false,
    })
    .await
    .unwrap();
    Some((name.clone(), name))
}

#[tokio::test]
async fn postgres_department_down_is_503_slow_is_504_and_it_recovers() {
    let Some((db, _)) = property_in_postgres().await else {
        return;
    };
    let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], 5432)))
        .await
        .unwrap();
    let proxied = format!("postgres://postgres@{}/{db}", proxy.addr);
    // A second catalog adds a service whose query is slow on purpose.
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.toml");
    let slow = r#"
[[services]]
id = "property.slow"
owner = "BDC"
name = "slow"
source = "property"
subject = "id_number"
query = "SELECT owner_id, pg_sleep(5)::text AS slept FROM property WHERE owner_id = :subject"
consumers = ["MZ"]
[[services.fields]]
name = "owner_id"
sensitivity = "internal"
[[services.fields]]
name = "slept"
sensitivity = "public"

[[matters]]
code = "MZ-SLOW"
name = "slow"
owner = "MZ"
kind = "immediate"
[[matters.materials]]
name = "slow"
source = "service:property.slow"
"#;
    std::fs::write(&catalog, format!("{}{slow}", paotui_gateway::demo::CATALOG)).unwrap();
    let app = TestApp::spawn_with(|c| {
        c.sources.insert(
            "property".into(),
            SourceConfig::Postgres {
                url_env: None,
                url: Some(proxied.clone()),
            },
        );
        c.catalog = catalog.clone();
        c.limits.statement_timeout_ms = 1000;
    })
    .await
    .unwrap();
    let mz = app.client("MZ", "dibao").unwrap();
    let jwks = mz.keys().await.unwrap();
    let owner = app.world.samples.property[0].clone();
    let case = app
        .open_case(&mz, &owner, &["MZ-DB-SQ", "MZ-SLOW"])
        .await
        .unwrap();
    let path = "/v1/services/property.by_owner/query";
    let body =
        json!({"subject": owner, "case_id": case, "fields": ["owner_id", "area", "registered_at"]});

    let r = mz.post_json(path, &body).await.unwrap();
    let got = rows(&r);
    assert_eq!(got[0]["owner_id"], json!(owner));
    // PostgreSQL NUMERIC is exact, and travels as a decimal string in JSON.
    let area = got[0]["area"].as_str().unwrap();
    assert_eq!(area.split('.').nth(1).map(str::len), Some(2), "{area}");

    proxy.set_up(false);
    let r = mz.post_json(path, &body).await.unwrap();
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(
        r.json().unwrap()["detail"]
            .as_str()
            .unwrap()
            .contains("unavailable")
    );
    let (o, status, _) = outcome(&app, &jwks, &r).await;
    assert_eq!((o, status), (Outcome::Error, 503));

    // Back up: the pool reconnects by itself; no restart.
    proxy.set_up(true);
    let mut ok = false;
    for _ in 0..20 {
        let r = mz.post_json(path, &body).await.unwrap();
        if r.status == StatusCode::OK {
            assert_eq!(rows(&r)[0]["owner_id"], json!(owner));
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "the gateway recovered once the database came back");

    let r = mz
        .post_json(
            "/v1/services/property.slow/query",
            &json!({"subject": owner, "case_id": case}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let (o, status, _) = outcome(&app, &jwks, &r).await;
    assert_eq!((o, status), (Outcome::Error, 504));
    app.stop().await;
    drop(proxy);
    paotui_tests::drop_pg_database(&db).await.unwrap();
}
