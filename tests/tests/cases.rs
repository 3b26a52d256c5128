//! Cases end to end: a window accepts a case, the resolver covers materials with the
//! vault's licenses, data services and deferrals, the handling department decides, the
//! applicant rates it once.

use http::StatusCode;
use paotui_gateway::client::Reply;
use paotui_repository::Outcome;
use paotui_tests::TestApp;
use serde_json::{Value, json};

fn problem(r: &Reply, status: StatusCode) -> Value {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    r.json().unwrap()
}

#[tokio::test]
async fn a_window_case_resolves_materials_and_follows_its_lifecycle() {
    let app = TestApp::spawn().await.unwrap();
    let zw = app.client("ZW", "chuangkou").unwrap();
    let sc = app.client("SC", "dengji").unwrap();
    let rs = app.client("RS", "shebao").unwrap();
    let jc = app.client("JC", "jiancha").unwrap();
    let jwks = zw.keys().await.unwrap();

    let r = zw.get("/v1/matters").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let matters = r.json().unwrap();
    assert!(
        matters["matters"].as_array().unwrap().len() >= 20,
        "{matters}"
    );

    // The sample business holds an imported 营业执照 in the vault.
    let business = app.world.samples.business[0].clone();
    let r = zw
        .post_json(
            "/v1/cases",
            &json!({"applicant": business, "matters": ["SC-SPJY-XK"], "note": "窗口受理"}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let (_, idx) = r.verify(&jwks).unwrap();
    let case = r.json().unwrap();
    let id = case["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("CASE-"), "{id}");
    assert_eq!(case["status"], "accepted");
    assert_eq!(case["site_dept"], "ZW");
    let entry = app.audit_entry(idx).await.unwrap().entry;
    assert_eq!(entry.action, "case.open");
    assert_eq!(entry.case_id.as_deref(), Some(id.as_str()));
    assert_eq!(entry.matter.as_deref(), Some("SC-SPJY-XK"));

    // Deadline: 10 working days after today by the configured calendar.
    let today = chrono::Utc::now().date_naive();
    let cal = app.config.calendar().unwrap();
    let due = cal.add_working_days(today, 10).unwrap().to_string();
    assert_eq!(case["matters"][0]["deadline"], due.as_str());
    assert_eq!(case["matters"][0]["owner"], "SC");
    assert_eq!(case["overdue"], false);

    let by: Vec<(&str, &str)> = case["materials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        by,
        [
            ("营业执照", "license"),
            ("企业登记状态（存续）核验", "data"),
            // The property register is keyed by ID number: it cannot vouch for an enterprise.
            ("经营场所证明", "collect"),
            ("食品安全管理制度", "deferred")
        ]
    );
    assert!(
        case["materials"][0]["license_id"]
            .as_str()
            .unwrap()
            .starts_with("YYZZ-SC-")
    );
    assert_eq!(case["materials"][1]["service"], "business.entity");
    assert!(case["materials"][2].get("service").is_none());
    assert_eq!(
        case["materials"][3]["due"],
        cal.add_working_days(today, 10)
            .unwrap()
            .to_string()
            .as_str()
    );
    assert_eq!(case["papers_avoided"], 2);

    // A person with no household register in the vault: that paper must be collected.
    let person = paotui_policies::ids::IdNumber::from_parts(
        440604,
        chrono::NaiveDate::from_ymd_opt(1990, 5, 17).unwrap(),
        777,
    )
    .unwrap();
    let r = zw
        .post_json(
            "/v1/cases",
            &json!({"applicant": person.as_str(), "matters": ["GA-XSE-LH"]}),
        )
        .await
        .unwrap();
    let other = r.json().unwrap();
    assert_eq!(other["materials"][0]["by"], "collect", "{other}");
    assert_eq!(
        other["materials"][2]["by"], "collect",
        "no other parent given"
    );
    assert_eq!(other["materials"][2]["about"], "other_parent");
    assert_eq!(other["materials"][5]["name"], "父母结婚证");
    assert_eq!(
        other["materials"][5]["by"], "collect",
        "no marriage certificate in the vault"
    );
    assert_eq!(other["papers_avoided"], 1);
    assert!(
        other["matters"][0]["deadline"].is_null(),
        "an immediate matter"
    );

    // Who may read it: the site, the handling department, the auditors.
    let path = format!("/v1/cases/{id}");
    assert_eq!(sc.get(&path).await.unwrap().status, StatusCode::OK);
    assert_eq!(jc.get(&path).await.unwrap().status, StatusCode::OK);
    let r = rs.get(&path).await.unwrap();
    problem(&r, StatusCode::FORBIDDEN);
    let (_, idx) = r.verify(&jwks).unwrap();
    let entry = app.audit_entry(idx).await.unwrap().entry;
    assert_eq!(
        (entry.outcome, entry.case_id.as_deref()),
        (Outcome::Denied, Some(id.as_str()))
    );

    // Lifecycle: the window may not decide; the handler approves and completes.
    let ev = format!("/v1/cases/{id}/events");
    let eval = format!("/v1/cases/{id}/evaluation");
    problem(
        &zw.post_json(&ev, &json!({"event": "approved"}))
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
    );
    problem(
        &sc.post_json(&ev, &json!({"event": "archived"}))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    );
    problem(
        &sc.post_json(&ev, &json!({"event": "completed"}))
            .await
            .unwrap(),
        StatusCode::CONFLICT,
    );
    problem(
        &zw.post_json(&eval, &json!({"score": 5})).await.unwrap(),
        StatusCode::CONFLICT,
    );
    let r = zw
        .post_json(
            &ev,
            &json!({"event": "supplemented", "note": "补齐管理制度"}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // A decision names the member of staff who took it.
    let p = problem(
        &sc.post_json(&ev, &json!({"event": "approved"}))
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
    );
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("case-decisions-name-an-operator"),
        "{detail}"
    );
    for e in ["approved", "completed"] {
        let r = sc
            .post_json_with(
                &ev,
                &json!({ "event": e }),
                &[("paotui-operator", "sc-officer-01")],
            )
            .await
            .unwrap();
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json().unwrap()["status"], e);
    }
    let p = problem(
        &sc.post_json(&ev, &json!({"event": "rejected", "note": "x"}))
            .await
            .unwrap(),
        StatusCode::CONFLICT,
    );
    assert!(p["detail"].as_str().unwrap().contains("closed"), "{p}");

    // 一事一评: by the window, 1-5, once.
    problem(
        &sc.post_json(&eval, &json!({"score": 4})).await.unwrap(),
        StatusCode::FORBIDDEN,
    );
    problem(
        &zw.post_json(&eval, &json!({"score": 9})).await.unwrap(),
        StatusCode::BAD_REQUEST,
    );
    let r = zw
        .post_json(&eval, &json!({"score": 5, "comment": "一次办成"}))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    problem(
        &zw.post_json(&eval, &json!({"score": 1})).await.unwrap(),
        StatusCode::CONFLICT,
    );

    let done = zw.get(&path).await.unwrap().json().unwrap();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["evaluation"]["score"], 5);
    let events: Vec<&str> = done["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["accepted", "supplemented", "approved", "completed"]
    );
    assert_eq!(done["events"][0]["note"], "窗口受理");
    assert_eq!(done["events"][2]["operator"], "sc-officer-01");
    assert!(
        done["events"][1]["operator"].is_null(),
        "a supplement may name none"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_case_requests_are_clear_4xx() {
    let app = TestApp::spawn().await.unwrap();
    let zw = app.client("ZW", "chuangkou").unwrap();
    let business = app.world.samples.business[0].clone();
    for (body, want) in [
        (
            json!({"applicant": business, "matters": ["NO-SUCH"]}),
            "unknown matter",
        ),
        (json!({"applicant": business, "matters": []}), "1-10"),
        (
            json!({"applicant": business, "matters": ["SC-QY-ZX", "SC-QY-ZX"]}),
            "twice",
        ),
        (
            json!({"applicant": "12345", "matters": ["SC-QY-ZX"]}),
            "check character",
        ),
        (json!({"applicant": business}), "matters"),
    ] {
        let r = zw.post_json("/v1/cases", &body).await.unwrap();
        let p = problem(&r, StatusCode::BAD_REQUEST);
        assert!(p["detail"].as_str().unwrap().contains(want), "{want}: {p}");
    }
    problem(
        &zw.get("/v1/cases/CASE-NONE").await.unwrap(),
        StatusCode::NOT_FOUND,
    );
    problem(
        &zw.post_json("/v1/cases/CASE-NONE/events", &json!({"event": "approved"}))
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    );
    app.stop().await;
}

/// 新生儿出生登记落户 names the other parent: given as a party of the case, the other
/// parent's 户口簿 comes from the vault and their identity from data, and the window may
/// fetch that 户口簿 for the case; without the party, both are collected on paper.
#[tokio::test]
async fn materials_about_a_party_are_resolved_by_the_party() {
    let app = TestApp::spawn().await.unwrap();
    let zw = app.client("ZW", "chuangkou").unwrap();
    // A person whose 户口簿 the world imported into the vault.
    let csv = std::fs::read_to_string(app.world.dir.join("data").join("licenses-GA.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "holder_id").unwrap();
    let parent = lines
        .next()
        .unwrap()
        .split(',')
        .nth(col)
        .unwrap()
        .to_owned();
    let applicant = paotui_policies::ids::IdNumber::from_parts(
        440604,
        chrono::NaiveDate::from_ymd_opt(1991, 2, 3).unwrap(),
        778,
    )
    .unwrap();
    let open = |parties: Value| {
        let zw = &zw;
        let body =
            json!({"applicant": applicant.as_str(), "matters": ["GA-XSE-LH"], "parties": parties});
        async move {
            let r = zw.post_json("/v1/cases", &body).await.unwrap();
            assert_eq!(
                r.status,
                StatusCode::CREATED,
                "{}",
                String::from_utf8_lossy(&r.body)
            );
            r.json().unwrap()
        }
    };
    let resolved = |case: &Value| -> Vec<(String, String, Option<String>)> {
        case["materials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["by"].as_str().unwrap().to_owned(),
                    m["about"].as_str().map(str::to_owned),
                )
            })
            .collect()
    };
    let row = |name: &str, by: &str, about: bool| {
        (
            name.to_owned(),
            by.to_owned(),
            about.then(|| "other_parent".to_owned()),
        )
    };

    let with = open(json!([{"role": "other_parent", "id": parent}])).await;
    assert_eq!(
        resolved(&with),
        [
            row("申报人户口簿", "collect", false),
            row("申报人身份证明", "data", false),
            row("另一方户口簿", "license", true),
            row("另一方身份证明", "data", true),
            row("出生医学证明", "collect", false),
            row("父母结婚证", "collect", false),
        ]
    );
    assert_eq!(with["papers_avoided"], 3);
    let license = with["materials"][2]["license_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(license.starts_with("HKB-GA-"), "{license}");
    let case = with["id"].as_str().unwrap();
    let r = zw
        .get(&format!("/v1/licenses/{license}?case_id={case}"))
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    let without = open(json!([])).await;
    assert_eq!(resolved(&without)[2], row("另一方户口簿", "collect", true));
    assert_eq!(
        resolved(&without)[3],
        row("另一方身份证明", "collect", true)
    );
    assert_eq!(without["papers_avoided"], 1);
    // Nor may the other parent's 户口簿 be fetched for a case that does not name them.
    let case = without["id"].as_str().unwrap();
    let r = zw
        .get(&format!("/v1/licenses/{license}?case_id={case}"))
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    app.stop().await;
}
