//! The audit log over the API: checkpoints, entries and proofs a supervisor checks with
//! the published keys alone; who may read them; every kind of bad parameter.

use http::StatusCode;
use paotui_certs::Jwks;
use paotui_certs::tlog::{self, Checkpoint, Hash, NoteVerifier};
use paotui_gateway::client::{MtlsClient, Reply};
use paotui_repository::{NewAuditEntry, Outcome};
use paotui_tests::TestApp;
use serde_json::{Value, json};

const QUERY: &str = "/v1/services/population.person/query";

fn ok_json(r: &Reply, jwks: &Jwks) -> Value {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.verify(jwks).unwrap();
    r.json().unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| tlog::hash_from_base64(h.as_str().unwrap()).unwrap())
        .collect()
}

async fn checkpoint(jc: &MtlsClient, jwks: &Jwks, origin: &str) -> Checkpoint {
    let r = jc.get("/v1/audit/checkpoint").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    r.verify(jwks).unwrap();
    // The checkpoint key is the published gateway key under the log's origin.
    let pk = jwks.keys[0].public_key().unwrap();
    let v = NoteVerifier::from_public_key(origin, &pk).unwrap();
    Checkpoint::parse(v.open(std::str::from_utf8(&r.body).unwrap()).unwrap()).unwrap()
}

async fn queries(app: &TestApp, n: usize) -> Vec<(u64, String)> {
    let rs = app.client("RS", "shebao").unwrap();
    let jwks = rs.keys().await.unwrap();
    let mut out = Vec::new();
    for s in app.world.subjects.iter().take(n) {
        let case = app.open_case(&rs, s, &["RS-SBK-SL"]).await.unwrap();
        let r = rs
            .post_json(QUERY, &json!({"subject": s, "case_id": case}))
            .await
            .unwrap();
        let (_, idx) = r.verify(&jwks).unwrap();
        out.push((
            idx,
            hex::encode(ring::digest::digest(&ring::digest::SHA256, &r.body)),
        ));
    }
    out
}

#[tokio::test]
async fn a_supervisor_proves_answers_are_in_the_log_with_the_published_keys_alone() {
    let app = TestApp::spawn().await.unwrap();
    let origin = app.config.audit.origin.clone();
    let jc = app.client("JC", "jiancha").unwrap();
    let jwks = jc.keys().await.unwrap();
    let answered = queries(&app, 5).await;
    let old = checkpoint(&jc, &jwks, &origin).await;
    assert!(old.size > answered.last().unwrap().0);
    for (index, body_sha256) in &answered {
        let e = ok_json(
            &jc.get(&format!("/v1/audit/entries/{index}")).await.unwrap(),
            &jwks,
        );
        let canonical = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            e["canonical"].as_str().unwrap(),
        )
        .unwrap();
        let entry = NewAuditEntry::from_canonical(&canonical).unwrap();
        // The readable entry is the canonical one, and it holds the answer's hash.
        assert_eq!(serde_json::to_value(&entry).unwrap(), e["entry"]);
        assert_eq!(entry.body_sha256.as_deref(), Some(body_sha256.as_str()));
        assert_eq!(entry.outcome, Outcome::Ok);
        let leaf = tlog::leaf_hash(&canonical);
        assert_eq!(e["leaf_hash"], json!(tlog::hash_to_base64(&leaf)));
        let p = ok_json(
            &jc.get(&format!(
                "/v1/audit/proof/inclusion?index={index}&size={}",
                old.size
            ))
            .await
            .unwrap(),
            &jwks,
        );
        tlog::verify_inclusion(*index, old.size, &leaf, &hashes(&p), &old.root).unwrap();
    }
    // The log only grows: a later checkpoint is consistent with the earlier one.
    queries(&app, 3).await;
    let new = checkpoint(&jc, &jwks, &origin).await;
    assert!(new.size > old.size);
    let p = ok_json(
        &jc.get(&format!(
            "/v1/audit/proof/consistency?from={}&to={}",
            old.size, new.size
        ))
        .await
        .unwrap(),
        &jwks,
    );
    tlog::verify_consistency(old.size, new.size, &hashes(&p), &old.root, &new.root).unwrap();
    // Without size/to, proofs are against the latest checkpoint.
    let p = ok_json(
        &jc.get("/v1/audit/proof/inclusion?index=0").await.unwrap(),
        &jwks,
    );
    assert!(p["tree_size"].as_u64().unwrap() >= new.size);
    app.stop().await;
}

#[tokio::test]
async fn only_auditors_read_the_log_and_bad_parameters_are_400_problems() {
    let app = TestApp::spawn().await.unwrap();
    let rs = app.client("RS", "shebao").unwrap();
    let jc = app.client("JC", "jiancha").unwrap();
    let r = rs.get("/v1/audit/checkpoint").await.unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let (_, idx) = r.verify(&rs.keys().await.unwrap()).unwrap();
    let e = app.audit_entry(idx).await.unwrap();
    assert_eq!(e.entry.outcome, Outcome::Denied);
    assert_eq!(e.entry.action, "audit.checkpoint");
    for (path, status) in [
        ("/v1/audit/entries/abc", StatusCode::BAD_REQUEST),
        ("/v1/audit/entries/-1", StatusCode::BAD_REQUEST),
        ("/v1/audit/entries/99999999", StatusCode::NOT_FOUND),
        (
            "/v1/audit/entries/99999999999999999999999",
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/audit/proof/inclusion", StatusCode::BAD_REQUEST),
        ("/v1/audit/proof/inclusion?index=x", StatusCode::BAD_REQUEST),
        (
            "/v1/audit/proof/inclusion?index=1&index=2",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/audit/proof/inclusion?index=5&size=3",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/audit/proof/inclusion?index=0&size=1000000",
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/audit/proof/inclusion?index=0&bogus=1",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/audit/proof/consistency?from=5&to=2",
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/audit/proof/consistency?to=2", StatusCode::BAD_REQUEST),
        (
            "/v1/audit/proof/consistency?from=1&to=1000000",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let r = jc.get(path).await.unwrap();
        assert_eq!(
            r.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{path}"
        );
        assert!(
            r.json().unwrap()["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    app.stop().await;
}
