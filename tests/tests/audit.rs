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

/// Who read my data: a portal (the window system, `[audit] portals` in the demo) asks for
/// one subject and gets exactly the accesses made about them — answered or refused —
/// newest first and paged, never the identifier itself; the auditors may ask too, other
/// departments may not; bad parameters are 400 problems.
#[tokio::test]
async fn a_portal_lists_exactly_who_read_a_subjects_data() {
    let app = TestApp::spawn().await.unwrap();
    let zw = app.client("ZW", "chuangkou").unwrap();
    let rs = app.client("RS", "shebao").unwrap();
    let jc = app.client("JC", "jiancha").unwrap();
    let jwks = zw.keys().await.unwrap();
    let me = app.world.subjects[0].clone();
    let other = app.world.subjects[1].clone();
    let idx = |r: &Reply| r.verify(&jwks).unwrap().1;
    let mut mine = Vec::new();

    // The window opens a case for me (社保卡申领, handled by RS) ...
    let r = zw
        .post_json(
            "/v1/cases",
            &json!({"applicant": me, "matters": ["RS-SBK-SL"]}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::CREATED);
    mine.push(idx(&r));
    let case = r.json().unwrap()["id"].as_str().unwrap().to_owned();
    // ... RS reads my data for it; a read for no real case is refused, and listed too.
    let r = rs
        .post_json(QUERY, &json!({"subject": me, "case_id": case}))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    mine.push(idx(&r));
    let r = rs
        .post_json(QUERY, &json!({"subject": me, "case_id": "CASE-NONE"}))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    mine.push(idx(&r));
    // Someone else's reads are not mine.
    let other_case = app.open_case(&zw, &other, &["RS-SBK-SL"]).await.unwrap();
    let r = rs
        .post_json(QUERY, &json!({"subject": other, "case_id": other_case}))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);

    mine.reverse();
    let indices = |v: &Value| -> Vec<u64> {
        v["accesses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["index"].as_u64().unwrap())
            .collect()
    };
    let r = zw.get(&format!("/v1/audit/subject?id={me}")).await.unwrap();
    let v = ok_json(&r, &jwks);
    assert!(!String::from_utf8_lossy(&r.body).contains(me.as_str()));
    assert_eq!(v["subject_kind"], "person");
    assert_eq!(indices(&v), mine);
    assert!(v.get("next_before").is_none(), "{v}");
    let opened = &v["accesses"][2];
    assert_eq!(opened["dept"], "ZW");
    assert_eq!(opened["action"], "case.open");
    assert_eq!(opened["case_id"], case.as_str());
    let read = &v["accesses"][1];
    assert_eq!(read["dept"], "RS");
    assert_eq!(read["system"], "shebao");
    assert_eq!(read["service"], "population.person");
    assert_eq!(read["case_id"], case.as_str());
    assert_eq!(read["outcome"], "ok");
    assert!(!read["fields"].as_array().unwrap().is_empty());
    assert!(read["at"].as_str().unwrap().starts_with("20"));
    assert_eq!(v["accesses"][0]["outcome"], "denied");

    // The lookup is itself an access about me, under my HMAC: the next one lists it.
    let lookup = idx(&r);
    let e = app.audit_entry(lookup).await.unwrap().entry;
    assert_eq!(e.action, "audit.subject");
    assert_eq!(
        e.subject_hmac,
        app.audit_entry(mine[0]).await.unwrap().entry.subject_hmac
    );
    let r = zw
        .get(&format!("/v1/audit/subject?id={me}&limit=2"))
        .await
        .unwrap();
    let v = ok_json(&r, &jwks);
    assert_eq!(indices(&v), [lookup, mine[0]]);
    let next = v["next_before"].as_u64().unwrap();
    assert_eq!(next, mine[0]);
    let r = zw
        .get(&format!("/v1/audit/subject?id={me}&limit=2&before={next}"))
        .await
        .unwrap();
    assert_eq!(indices(&ok_json(&r, &jwks)), [mine[1], mine[2]]);

    // The auditors may ask; RS, neither a portal nor an auditor, may not (audited).
    let r = jc
        .get(&format!("/v1/audit/subject?id={other}"))
        .await
        .unwrap();
    assert_eq!(indices(&ok_json(&r, &jwks)).len(), 2);
    let r = rs.get(&format!("/v1/audit/subject?id={me}")).await.unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let e = app.audit_entry(idx(&r)).await.unwrap().entry;
    assert_eq!(e.outcome, Outcome::Denied);
    assert!(!e.decision.unwrap().allowed);

    for (query, needle) in [
        (String::new(), "id is required"),
        ("?id=123".to_owned(), "id:"),
        (format!("?id={me}&limit=0"), "limit must be 1-500"),
        (format!("?id={me}&limit=501"), "limit must be 1-500"),
        (format!("?id={me}&before=x"), "before"),
        (format!("?id={me}&kind=person"), "kind"),
    ] {
        let r = zw.get(&format!("/v1/audit/subject{query}")).await.unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let detail = r.json().unwrap()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(needle), "{query}: {detail}");
    }
    app.stop().await;
}

/// Auditor SQL over the API: the auditors' figures match the requests made; answers come
/// as JSON, CSV or Arrow; other departments are refused (audited); anything but one
/// read-only query is a 400 naming why; the row cap truncates; a runaway query is a 422
/// and the server keeps serving.
#[tokio::test]
async fn auditors_query_the_log_in_sql_within_limits() {
    let app = TestApp::spawn_with(|c| {
        c.sql.max_rows = 5;
        c.sql.timeout_ms = 500;
    })
    .await
    .unwrap();
    let jc = app.client("JC", "jiancha").unwrap();
    let rs = app.client("RS", "shebao").unwrap();
    let jwks = jc.keys().await.unwrap();
    let made: Vec<i64> = queries(&app, 3)
        .await
        .into_iter()
        .map(|(i, _)| i as i64)
        .collect();
    let sql = |q: &str| json!({ "sql": q });

    let r = jc
        .post_json(
            "/v1/audit/sql",
            &sql(
                "SELECT idx FROM audit WHERE caller_dept = 'RS' AND action = 'service.query' \
                  AND outcome = 'ok' AND allowed ORDER BY idx",
            ),
        )
        .await
        .unwrap();
    let v = ok_json(&r, &jwks);
    let got: Vec<i64> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["idx"].as_i64().unwrap())
        .collect();
    assert_eq!(got, made);
    assert_eq!(v["columns"], json!([{"name": "idx", "type": "Int64"}]));
    assert_eq!(v["truncated"], false);
    let (_, idx) = r.verify(&jwks).unwrap();
    assert_eq!(
        app.audit_entry(idx).await.unwrap().entry.action,
        "audit.sql"
    );

    // The other tables: the cases the queries were made for, joined with their entries.
    let r = jc
        .post_json(
            "/v1/audit/sql",
            &sql("SELECT count(DISTINCT c.id) AS n FROM audit a JOIN cases c ON a.case_id = c.id \
                  WHERE a.action = 'service.query' AND c.site_dept = 'RS' AND c.status = 'accepted'"),
        )
        .await
        .unwrap();
    assert_eq!(ok_json(&r, &jwks)["rows"][0]["n"], 3);

    // The row cap: five rows of many, flagged.
    let r = jc
        .post_json("/v1/audit/sql", &sql("SELECT idx FROM audit ORDER BY idx"))
        .await
        .unwrap();
    let v = ok_json(&r, &jwks);
    assert_eq!(
        (v["row_count"].as_u64(), v["truncated"].as_bool()),
        (Some(5), Some(true))
    );

    // CSV and Arrow IPC by Accept.
    let body = serde_json::to_vec(&sql(
        "SELECT caller_dept, count(*) AS n FROM audit WHERE action = 'service.query' GROUP BY 1",
    ))
    .unwrap();
    let r = jc
        .send(
            http::Method::POST,
            "/v1/audit/sql",
            &[("content-type", "application/json"), ("accept", "text/csv")],
            body.clone(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    assert_eq!(String::from_utf8_lossy(&r.body), "caller_dept,n\nRS,3\n");
    let r = jc
        .send(
            http::Method::POST,
            "/v1/audit/sql",
            &[
                ("content-type", "application/json"),
                ("accept", "application/vnd.apache.arrow.stream"),
            ],
            body,
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let batches: Vec<_> = paotui_adapters::arrow::ipc::reader::StreamReader::try_new(
        std::io::Cursor::new(r.body.to_vec()),
        None,
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(batches[0].num_rows(), 1);

    // Not an auditor: refused and audited.
    let r = rs
        .post_json("/v1/audit/sql", &sql("SELECT 1"))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (_, idx) = r.verify(&jwks).unwrap();
    assert_eq!(
        app.audit_entry(idx).await.unwrap().entry.outcome,
        Outcome::Denied
    );

    for (body, status, needle) in [
        (sql("DELETE FROM audit"), 400, "found DELETE"),
        (sql("COPY audit TO '/tmp/leak.csv'"), 400, "found COPY"),
        (
            sql("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'"),
            400,
            "found CREATE EXTERNAL TABLE",
        ),
        (sql("SELECT 1; DROP TABLE audit"), 400, "single statement"),
        (sql("SELECT * FROM audit WHERE idx = = 1"), 400, "Column"),
        (sql("SELECT nope FROM audit"), 400, "No field named nope"),
        (json!({"sql": 1}), 400, "invalid type"),
        (json!({"query": "SELECT 1"}), 400, "unknown field"),
        (
            sql("SELECT sum(value) FROM generate_series(1, 100000000000)"),
            422,
            "limit of 500 ms",
        ),
    ] {
        let r = jc.post_json("/v1/audit/sql", &body).await.unwrap();
        assert_eq!(
            r.status.as_u16(),
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let detail = r.json().unwrap()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(needle), "{body}: {detail}");
    }
    assert!(!std::path::Path::new("/tmp/leak.csv").exists());

    // The supervision figures: the auditors read them; the three RS cases are open.
    let r = jc.get("/v1/stats").await.unwrap();
    assert_eq!(ok_json(&r, &jwks)["figures"].as_array().unwrap().len(), 8);
    let r = jc.get("/v1/stats/cases?site=RS").await.unwrap();
    let v = ok_json(&r, &jwks);
    assert_eq!(
        v["rows"],
        json!([{"accepted": 3, "completed": 0, "rejected": 0, "open": 3}])
    );
    assert_eq!(v["filters"]["site"], "RS");
    let r = jc.get("/v1/stats/calls").await.unwrap();
    assert_eq!(
        ok_json(&r, &jwks)["rows"],
        json!([{"consumer": "RS", "provider": "GA", "calls": 3}])
    );
    for (path, status) in [
        ("/v1/stats/nope", StatusCode::NOT_FOUND),
        ("/v1/stats/cases?from=2026-13-01", StatusCode::BAD_REQUEST),
        ("/v1/stats/cases?dept=a%20b", StatusCode::BAD_REQUEST),
        ("/v1/stats/cases?when=today", StatusCode::BAD_REQUEST),
    ] {
        let r = jc.get(path).await.unwrap();
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let r = rs.get("/v1/stats/cases").await.unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = jc.get("/healthz").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    app.stop().await;
}

/// Alerts over the API: the auditors run the rules on demand, list what they raised (with
/// the audit index behind each), acknowledge one with a note, once; others may not.
#[tokio::test]
async fn auditors_run_rules_and_acknowledge_alerts() {
    let app = TestApp::spawn_with(|c| {
        c.policy.purpose_binding = paotui_gateway::config::PurposeBinding::Off;
        c.alerts.interval_s = 0;
    })
    .await
    .unwrap();
    let jc = app.client("JC", "jiancha").unwrap();
    let rs = app.client("RS", "shebao").unwrap();
    let jwks = jc.keys().await.unwrap();
    let subject = app.world.subjects[0].clone();
    // Data without a case (binding is off), then refusals for a case that does not exist:
    // ten, so that five fall within one clock hour whenever the test runs.
    let r = rs
        .post_json(QUERY, &json!({"subject": subject}))
        .await
        .unwrap();
    let (_, no_case) = r.verify(&jwks).unwrap();
    for _ in 0..10 {
        let r = rs
            .post_json(QUERY, &json!({"subject": subject, "case_id": "CASE-NONE"}))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    let r = rs
        .post_json("/v1/alerts/evaluate", &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = jc
        .post_json("/v1/alerts/evaluate", &json!({}))
        .await
        .unwrap();
    let v = ok_json(&r, &jwks);
    let flagged = |rule: &str| {
        v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == rule)
            .unwrap()["flagged"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(flagged("access_without_case"), 1);
    assert_eq!(flagged("repeated_denials"), 1);

    let r = jc.get("/v1/alerts").await.unwrap();
    let v = ok_json(&r, &jwks);
    let alerts = v["alerts"].as_array().unwrap().clone();
    let without = alerts
        .iter()
        .find(|a| a["rule"] == "access_without_case")
        .unwrap();
    assert_eq!(without["audit_index"], no_case);
    assert_eq!(without["severity"], "high");
    assert!(
        without["detail"]
            .as_str()
            .unwrap()
            .contains("RS/shebao read population.person with no case")
    );
    let id = without["id"].as_i64().unwrap();
    let ack = format!("/v1/alerts/{id}/ack");
    let r = jc
        .post_json_with(
            &ack,
            &json!({"note": "binding was off for the migration"}),
            &[("paotui-operator", "auditor-1")],
        )
        .await
        .unwrap();
    let v = ok_json(&r, &jwks);
    assert_eq!(v["acked_by"], "JC/jiancha (auditor-1)");
    let r = jc.post_json(&ack, &json!({"note": "again"})).await.unwrap();
    assert_eq!(r.status, StatusCode::CONFLICT);
    for (path, body, status) in [
        (
            "/v1/alerts/999999/ack",
            json!({"note": "x"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/alerts/abc/ack",
            json!({"note": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (ack.as_str(), json!({"note": ""}), StatusCode::BAD_REQUEST),
        (
            ack.as_str(),
            json!({"remark": "x"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = jc.post_json(path, &body).await.unwrap();
        assert_eq!(r.status, status, "{path} {body}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    // Open alerts no longer list it; all alerts do, with the note.
    let open = ok_json(&jc.get("/v1/alerts").await.unwrap(), &jwks);
    assert!(
        open["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["id"] != id)
    );
    let all = ok_json(&jc.get("/v1/alerts?open=false").await.unwrap(), &jwks);
    let acked = all["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(acked["note"], "binding was off for the migration");
    assert!(acked["acked_at"].is_string());
    let r = rs.get("/v1/alerts").await.unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    app.stop().await;
}
