//! The data-query API: rows, signatures, audit entries, and every kind of bad input.

use http::{Method, StatusCode};
use paotui_certs::Jwks;
use paotui_gateway::client::{MtlsClient, Reply};
use paotui_repository::{AuditEntry, Outcome};
use paotui_tests::{TestApp, logs};
use serde_json::{Value, json};

const QUERY: &str = "/v1/services/population.person/query";

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// Verifies the reply's signature and returns its audit entry, checking it is the one
/// entry for this request and that it holds the body's hash.
async fn audited(app: &TestApp, jwks: &Jwks, r: &Reply) -> AuditEntry {
    let (_, index) = r.verify(jwks).expect("response signature verifies");
    let store = app.store().await.unwrap();
    let entry = store
        .audit_entry(index)
        .await
        .unwrap()
        .expect("audit entry exists");
    assert_eq!(
        entry.entry.body_sha256.as_deref(),
        Some(sha256_hex(&r.body).as_str())
    );
    let request_id = r.header("x-request-id").unwrap();
    assert_eq!(entry.entry.request_id, request_id);
    let all = store.audit_range(0, u64::MAX).await.unwrap();
    assert_eq!(
        all.iter()
            .filter(|e| e.entry.request_id == request_id)
            .count(),
        1
    );
    entry
}

fn problem(r: &Reply, status: StatusCode) -> Value {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let p = r.json().unwrap();
    assert_eq!(p["status"], json!(status.as_u16()));
    assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    p
}

async fn setup() -> (TestApp, MtlsClient, Jwks) {
    let app = TestApp::spawn().await.unwrap();
    let rs = app.client("RS", "shebao").unwrap();
    let jwks = rs.keys().await.unwrap();
    (app, rs, jwks)
}

#[tokio::test]
async fn valid_query_returns_masked_rows_signed_and_audited_once() {
    let (app, rs, jwks) = setup().await;
    let subject = app.world.subjects[0].clone();
    // 社会保障卡申领 (RS) lists the population service: RS may query it for the case.
    let case = app.open_case(&rs, &subject, &["RS-SBK-SL"]).await.unwrap();
    let before = app.store().await.unwrap().audit_len().await.unwrap();
    let r = rs
        .send(
            Method::POST,
            QUERY,
            &[
                ("content-type", "application/json"),
                ("paotui-operator", "clerk-007"),
            ],
            serde_json::to_vec(
                &json!({"subject": subject, "case_id": case, "fields": ["id_number", "name", "gender"]}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json().unwrap();
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    // RS is a consumer without a personal grant: ID number and name leave masked.
    let id = rows[0]["id_number"].as_str().unwrap();
    assert_eq!(&id[..6], &subject[..6]);
    assert!(id.contains("********"));
    assert!(rows[0]["name"].as_str().unwrap().ends_with('*'));
    assert!(rows[0]["gender"].as_str().is_some());

    let e = audited(&app, &jwks, &r).await;
    assert_eq!(
        app.store().await.unwrap().audit_len().await.unwrap(),
        before + 1
    );
    assert_eq!(e.entry.outcome, Outcome::Ok);
    assert_eq!(e.entry.caller_dept.as_deref(), Some("RS"));
    assert_eq!(e.entry.caller_system.as_deref(), Some("shebao"));
    assert_eq!(e.entry.operator.as_deref(), Some("clerk-007"));
    assert_eq!(e.entry.service.as_deref(), Some("population.person"));
    assert_eq!(e.entry.fields, vec!["id_number", "name", "gender"]);
    assert_eq!(e.entry.case_id.as_deref(), Some(case.as_str()));
    assert_eq!(e.entry.matter.as_deref(), Some("RS-SBK-SL"));
    let hmac = e.entry.subject_hmac.clone().unwrap();
    assert_eq!(hmac.len(), 64);
    assert_ne!(hmac, subject);

    // The same subject queried again hashes to the same key (who-read-my-data works).
    let r2 = rs
        .post_json(QUERY, &json!({"subject": subject, "case_id": case}))
        .await
        .unwrap();
    let e2 = audited(&app, &jwks, &r2).await;
    assert_eq!(e2.entry.subject_hmac.as_deref(), Some(hmac.as_str()));

    // Invariant 6: the identifier is in no log line and not in the gateway's store file.
    assert!(
        !logs().contents().contains(&subject),
        "subject ID found in logs"
    );
    let store_bytes = std::fs::read(app.store_file()).unwrap();
    let wal = std::fs::read(app.store_file().with_extension("db-wal")).unwrap_or_default();
    for bytes in [store_bytes, wal] {
        assert!(
            !bytes
                .windows(subject.len())
                .any(|w| w == subject.as_bytes()),
            "subject ID stored in clear"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn granted_department_sees_personal_fields_and_secret_is_withheld() {
    let (app, _, jwks) = setup().await;
    let mz = app.client("MZ", "dibao").unwrap();
    let subject = app.world.subjects[1].clone();
    let case = app.open_case(&mz, &subject, &["MZ-DB-SQ"]).await.unwrap();
    let r = mz
        .post_json(
            QUERY,
            &json!({"subject": subject, "case_id": case, "fields": ["id_number", "phone"]}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json().unwrap();
    assert_eq!(body["rows"][0]["id_number"], json!(subject));
    assert!(body["rows"][0].get("phone").is_none());
    assert_eq!(body["withheld"], json!(["phone"]));
    let e = audited(&app, &jwks, &r).await;
    assert_eq!(e.entry.fields, vec!["id_number"]);
    app.stop().await;
}

#[tokio::test]
async fn a_query_outside_its_case_is_denied_audited_and_gets_no_data() {
    let (app, rs, jwks) = setup().await;
    let subject = app.world.subjects[0].clone();
    let case = app.open_case(&rs, &subject, &["RS-SBK-SL"]).await.unwrap();
    // SC may query population data, but handles no matter of this case.
    let sc = app.client("SC", "dengji").unwrap();
    let r = sc
        .post_json(QUERY, &json!({"subject": subject, "case_id": case}))
        .await
        .unwrap();
    let p = problem(&r, StatusCode::FORBIDDEN);
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("neither accepted nor handles"), "{detail}");
    assert!(p.get("rows").is_none());
    let e = audited(&app, &jwks, &r).await;
    assert_eq!(e.entry.outcome, Outcome::Denied);
    assert_eq!(e.entry.caller_dept.as_deref(), Some("SC"));
    assert_eq!(e.entry.case_id.as_deref(), Some(case.as_str()));
    assert_eq!(e.entry.reason.as_deref(), Some(detail));
    assert!(e.entry.fields.is_empty());
    // Without a case there is no query at all.
    let r = rs
        .post_json(QUERY, &json!({"subject": subject}))
        .await
        .unwrap();
    let p = problem(&r, StatusCode::BAD_REQUEST);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("case_id is required")
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_service_is_a_404_problem() {
    let (app, rs, jwks) = setup().await;
    let r = rs
        .post_json("/v1/services/no.such/query", &json!({"subject": "x"}))
        .await
        .unwrap();
    problem(&r, StatusCode::NOT_FOUND);
    let e = audited(&app, &jwks, &r).await;
    assert_eq!(e.entry.outcome, Outcome::Error);
    let r = rs
        .post_json("/v1/services/BAD!ID/query", &json!({}))
        .await
        .unwrap();
    problem(&r, StatusCode::NOT_FOUND);
    let r = rs.get("/v1/nothing-here").await.unwrap();
    problem(&r, StatusCode::NOT_FOUND);
    audited(&app, &jwks, &r).await;
    let r = rs.get(QUERY).await.unwrap();
    problem(&r, StatusCode::METHOD_NOT_ALLOWED);
    audited(&app, &jwks, &r).await;
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_4xx_problems_and_each_refusal_is_audited() {
    let (app, rs, jwks) = setup().await;
    let subject = app.world.subjects[0].clone();
    let json_ct = [("content-type", "application/json")];
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            json_ct.to_vec(),
            b"{\"subject\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        ),
        (
            "wrong type",
            json_ct.to_vec(),
            br#"{"subject": 110105194912310020}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            "unknown member",
            json_ct.to_vec(),
            serde_json::to_vec(&json!({"subject": subject, "sql": "x"})).unwrap(),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "bad check digit",
            json_ct.to_vec(),
            br#"{"subject": "110105194912310021"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "check digit",
        ),
        (
            "unknown field",
            json_ct.to_vec(),
            serde_json::to_vec(&json!({"subject": subject, "fields": ["salary"]})).unwrap(),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "unknown param",
            json_ct.to_vec(),
            serde_json::to_vec(&json!({"subject": subject, "params": {"x": 1}})).unwrap(),
            StatusCode::BAD_REQUEST,
            "unknown parameter",
        ),
        (
            "bad case id",
            json_ct.to_vec(),
            serde_json::to_vec(&json!({"subject": subject, "case_id": "a b"})).unwrap(),
            StatusCode::BAD_REQUEST,
            "case_id",
        ),
        (
            "not JSON",
            vec![("content-type", "text/plain")],
            b"subject".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            "oversize",
            json_ct.to_vec(),
            vec![b' '; 200 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger",
        ),
        (
            "operator is an ID",
            vec![
                ("content-type", "application/json"),
                ("paotui-operator", "11010519491231002X"),
            ],
            serde_json::to_vec(&json!({"subject": subject})).unwrap(),
            StatusCode::BAD_REQUEST,
            "staff id",
        ),
    ];
    for (name, headers, body, status, needle) in cases {
        let r = rs.send(Method::POST, QUERY, &headers, body).await.unwrap();
        let p = problem(&r, status);
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{name}: {detail}");
        // Problems never echo an identifier back.
        assert!(!detail.contains("1101051949"), "{name}: {detail}");
        let e = audited(&app, &jwks, &r).await;
        assert_eq!(e.entry.outcome, Outcome::Error, "{name}");
        assert_eq!(e.entry.status, status.as_u16(), "{name}");
        assert_eq!(e.entry.reason.as_deref(), Some(detail), "{name}");
        assert!(e.entry.fields.is_empty(), "{name}");
    }
    assert!(!logs().contents().contains("110105194912310020"));
    app.stop().await;
}

#[tokio::test]
async fn unwritable_audit_log_means_503_and_no_data() {
    let (app, rs, _) = setup().await;
    let subject = app.world.subjects[0].clone();
    let case = app.open_case(&rs, &subject, &["RS-SBK-SL"]).await.unwrap();
    // Break the store behind the gateway's back: the table the log appends to is gone.
    let url = format!("sqlite://{}", app.store_file().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("ALTER TABLE audit_entries RENAME TO audit_entries_moved")
        .execute(&pool)
        .await
        .unwrap();
    let r = rs
        .post_json(
            QUERY,
            &json!({"subject": subject, "case_id": case, "fields": ["gender"]}),
        )
        .await
        .unwrap();
    let p = problem(&r, StatusCode::SERVICE_UNAVAILABLE);
    assert!(p["detail"].as_str().unwrap().contains("audit"));
    assert!(r.header("paotui-audit-index").is_none());
    assert!(p.get("rows").is_none());
    // Restored, the gateway carries on by itself.
    sqlx::query("ALTER TABLE audit_entries_moved RENAME TO audit_entries")
        .execute(&pool)
        .await
        .unwrap();
    let r = rs
        .post_json(
            QUERY,
            &json!({"subject": subject, "case_id": case, "fields": ["gender"]}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn service_list_health_and_readiness() {
    let (app, rs, jwks) = setup().await;
    let r = rs.get("/v1/services").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let e = audited(&app, &jwks, &r).await;
    assert_eq!(e.entry.action, "service.list");
    let body = r.json().unwrap();
    let svc = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == json!("population.person"))
        .unwrap();
    let name = svc["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == json!("name"))
        .unwrap();
    assert_eq!(name["masked"], json!(true));
    // A department sees only the services it owns or may query.
    let zw = app.client("ZW", "chuangkou").unwrap();
    let body = zw.get("/v1/services").await.unwrap().json().unwrap();
    let ids: Vec<&Value> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["id"])
        .collect();
    assert!(
        ids.is_empty(),
        "the window consumes no data service: {ids:?}"
    );
    assert_eq!(rs.get("/healthz").await.unwrap().status, StatusCode::OK);
    let ready = rs.get("/readyz").await.unwrap();
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json().unwrap()["store"], json!("sqlite"));
    app.stop().await;
}

#[tokio::test]
async fn keep_alive_connection_serves_many_signed_answers() {
    let (app, rs, jwks) = setup().await;
    let subject = app.world.subjects[0].clone();
    let case = app.open_case(&rs, &subject, &["RS-SBK-SL"]).await.unwrap();
    let mut conn = rs.connect().await.unwrap();
    let mut last = None;
    for _ in 0..20 {
        let body =
            serde_json::to_vec(&json!({"subject": subject, "case_id": case, "fields": ["gender"]}))
                .unwrap();
        let r = conn
            .send(
                Method::POST,
                QUERY,
                &[("content-type", "application/json")],
                body,
            )
            .await
            .unwrap();
        let (_, idx) = r.verify(&jwks).unwrap();
        if let Some(prev) = last {
            assert!(idx > prev);
        }
        last = Some(idx);
    }
    app.stop().await;
}

#[tokio::test]
async fn arrow_ipc_answer_is_signed_audited_and_masked() {
    use paotui_adapters::arrow::array::AsArray;
    use paotui_adapters::arrow::ipc::reader::StreamReader;

    let (app, rs, jwks) = setup().await;
    let subject = app.world.subjects[0].clone();
    let case = app.open_case(&rs, &subject, &["RS-SBK-SL"]).await.unwrap();
    let body = serde_json::to_vec(
        &json!({"subject": subject, "case_id": case, "fields": ["name", "gender", "birth_date"]}),
    )
    .unwrap();
    let r = rs
        .send(
            Method::POST,
            QUERY,
            &[
                ("content-type", "application/json"),
                ("accept", "application/vnd.apache.arrow.stream"),
            ],
            body,
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apache.arrow.stream")
    );
    let e = audited(&app, &jwks, &r).await;
    assert_eq!(e.entry.fields, vec!["name", "gender", "birth_date"]);
    let reader = StreamReader::try_new(std::io::Cursor::new(r.body.to_vec()), None).unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    let schema = b.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["name", "gender", "birth_date"]);
    assert_eq!(
        schema
            .field(0)
            .metadata()
            .get("paotui.masked")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        schema
            .field(1)
            .metadata()
            .get("paotui.masked")
            .map(String::as_str),
        Some("false")
    );
    assert!(b.column(0).as_string::<i32>().value(0).ends_with('*'));
    assert!(b.column(2).as_string::<i32>().value(0).ends_with("-**-**"));
    app.stop().await;
}
