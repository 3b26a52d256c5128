//! Purpose binding end to end, over mTLS, as in the demo: a window opens a case on behalf
//! of another department, which queries the applicant's data for it; everything outside
//! the case is refused with an audited reason; access ends with the case.

use http::StatusCode;
use paotui_certs::Jwks;
use paotui_gateway::client::Reply;
use paotui_gateway::config::PurposeBinding;
use paotui_repository::{AuditEntry, Outcome, PolicyDecision};
use paotui_tests::TestApp;
use serde_json::{Value, json};

const PERSON: &str = "/v1/services/population.person/query";
const PROPERTY: &str = "/v1/services/property.by_owner/query";
/// The member of staff at SC who decides cases (a decision names its operator).
const OFFICER: &[(&str, &str)] = &[("paotui-operator", "sc-officer-01")];

async fn entry(app: &TestApp, jwks: &Jwks, r: &Reply) -> AuditEntry {
    let (_, idx) = r.verify(jwks).unwrap();
    app.audit_entry(idx).await.unwrap()
}

/// A 403 whose detail contains `needle`, audited as denied with that reason and the case.
async fn refused(app: &TestApp, jwks: &Jwks, r: &Reply, needle: &str, case: Option<&str>) {
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let p: Value = r.json().unwrap();
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains(needle), "{detail} lacks {needle:?}");
    assert!(p.get("rows").is_none());
    let e = entry(app, jwks, r).await.entry;
    assert_eq!(e.outcome, Outcome::Denied);
    assert_eq!(e.reason.as_deref(), Some(detail));
    assert_eq!(e.case_id.as_deref(), case);
    assert!(e.fields.is_empty());
    // The entry carries the policy decision, and the reason names its determining policies.
    let d = e
        .decision
        .expect("a refusal by policy records the decision");
    assert!(!d.allowed);
    if d.policies.is_empty() {
        assert!(detail.contains("no policy permits"), "{detail}");
    }
    for id in &d.policies {
        assert!(detail.contains(id.as_str()), "{detail} lacks {id}");
    }
}

#[tokio::test]
async fn data_leaves_only_for_an_open_case_of_its_subject_to_its_handler() {
    let app = TestApp::spawn().await.unwrap();
    let zw = app.client("ZW", "chuangkou").unwrap();
    let sc = app.client("SC", "dengji").unwrap();
    let rs = app.client("RS", "shebao").unwrap();
    let jwks = zw.keys().await.unwrap();
    let owner = app.world.samples.property[0].clone();
    let stranger = app
        .world
        .subjects
        .iter()
        .find(|s| **s != owner)
        .unwrap()
        .clone();

    // The window accepts 个体工商户设立登记 for SC; the resolver promises SC the data.
    let case = app.open_case(&zw, &owner, &["SC-GTGSH-SL"]).await.unwrap();
    let view = zw
        .get(&format!("/v1/cases/{case}"))
        .await
        .unwrap()
        .json()
        .unwrap();
    let by: Vec<(&str, &str)> = view["materials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["by"].as_str().unwrap(),
                m["service"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        by,
        [
            ("data", "population.person"),
            ("data", "property.by_owner"),
            ("collect", "")
        ]
    );

    // SC, the handling department, reads both for the case; the entries name case and matter.
    for path in [PERSON, PROPERTY] {
        let r = sc
            .post_json(path, &json!({"subject": owner, "case_id": case}))
            .await
            .unwrap();
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(!r.json().unwrap()["rows"].as_array().unwrap().is_empty());
        let e = entry(&app, &jwks, &r).await.entry;
        assert_eq!(e.outcome, Outcome::Ok);
        assert_eq!(e.case_id.as_deref(), Some(case.as_str()));
        assert_eq!(e.matter.as_deref(), Some("SC-GTGSH-SL"));
        assert_eq!(
            e.decision,
            Some(PolicyDecision {
                allowed: true,
                policies: vec!["query-owner-or-consumer".into()]
            })
        );
    }
    // Naming the matter works; naming one the case is not for does not.
    let r = sc
        .post_json(
            PERSON,
            &json!({"subject": owner, "case_id": case, "matter": "SC-GTGSH-SL"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let r = sc
        .post_json(
            PERSON,
            &json!({"subject": owner, "case_id": case, "matter": "SC-QY-SL"}),
        )
        .await
        .unwrap();
    refused(&app, &jwks, &r, "is not for matter SC-QY-SL", Some(&case)).await;

    // An unrelated person under the same case.
    let r = sc
        .post_json(PERSON, &json!({"subject": stranger, "case_id": case}))
        .await
        .unwrap();
    refused(&app, &jwks, &r, "not the applicant", Some(&case)).await;
    // The case store's finding is the policies' context; the forbid decides.
    let p: Value = r.json().unwrap();
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("forbidden by policy query-needs-its-case"),
        "{p}"
    );
    // A service the matter does not list.
    let r = sc
        .post_json(
            "/v1/services/social.insurance/query",
            &json!({"subject": owner, "case_id": case}),
        )
        .await
        .unwrap();
    refused(
        &app,
        &jwks,
        &r,
        "lists service social.insurance",
        Some(&case),
    )
    .await;
    // A department with no part in the case, and the window that accepted it (it checks
    // licences at the counter but does not decide, so it gets no data).
    let r = rs
        .post_json(PERSON, &json!({"subject": owner, "case_id": case}))
        .await
        .unwrap();
    refused(&app, &jwks, &r, "neither accepted nor handles", Some(&case)).await;
    let r = zw
        .post_json(PERSON, &json!({"subject": owner, "case_id": case}))
        .await
        .unwrap();
    refused(&app, &jwks, &r, "handled by ZW lists service", Some(&case)).await;
    // A case that does not exist.
    let r = sc
        .post_json(
            PERSON,
            &json!({"subject": owner, "case_id": "CASE-20250101-NOSUCH"}),
        )
        .await
        .unwrap();
    refused(
        &app,
        &jwks,
        &r,
        "there is no case",
        Some("CASE-20250101-NOSUCH"),
    )
    .await;

    // Approved, the case is still open; completed, access ends.
    for event in ["approved", "completed"] {
        let r = sc
            .post_json_with(
                &format!("/v1/cases/{case}/events"),
                &json!({"event": event}),
                OFFICER,
            )
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{event}");
        if event == "approved" {
            let r = sc
                .post_json(PERSON, &json!({"subject": owner, "case_id": case}))
                .await
                .unwrap();
            assert_eq!(r.status, StatusCode::OK);
        }
    }
    let r = sc
        .post_json(PERSON, &json!({"subject": owner, "case_id": case}))
        .await
        .unwrap();
    refused(
        &app,
        &jwks,
        &r,
        "is completed; access for it has ended",
        Some(&case),
    )
    .await;

    // Rejected: the same.
    let other = app.open_case(&zw, &owner, &["SC-GTGSH-SL"]).await.unwrap();
    let r = sc
        .post_json_with(
            &format!("/v1/cases/{other}/events"),
            &json!({"event": "rejected", "note": "材料不符"}),
            OFFICER,
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let r = sc
        .post_json(PROPERTY, &json!({"subject": owner, "case_id": other}))
        .await
        .unwrap();
    refused(&app, &jwks, &r, "is rejected", Some(&other)).await;

    // Bad input is a 400, never a silent pass.
    for (body, needle) in [
        (json!({"subject": owner}), "case_id is required"),
        (json!({"subject": owner, "case_id": "x y"}), "case_id"),
        (
            json!({"subject": owner, "case_id": case, "matter": "sc-lower"}),
            "matter must be a matter code",
        ),
        (json!({"subject": owner, "case_id": 7}), "invalid type"),
    ] {
        let r = sc.post_json(PERSON, &body).await.unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        let detail = r.json().unwrap()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(needle), "{detail}");
    }

    // Every answer of the story that left was allowed by a recorded policy decision, and
    // every refusal on policy grounds records the decision that refused it.
    let store = app.store().await.unwrap();
    let all = store
        .audit_range(0, store.audit_len().await.unwrap())
        .await
        .unwrap();
    assert!(all.len() > 20, "{}", all.len());
    for e in &all {
        let d = e.entry.decision.as_ref();
        match e.entry.outcome {
            Outcome::Ok => assert!(d.is_some_and(|d| d.allowed), "{e:?}"),
            Outcome::Denied => assert!(d.is_some_and(|d| !d.allowed), "{e:?}"),
            Outcome::Error => {}
        }
    }
    app.stop().await;
}

/// 有限责任公司设立登记 names the legal representative (法定代表人): the window gives the
/// representative as a party of the case, and SC reads the person's data for it — but
/// not another person's, and not under a matter that names no such role.
#[tokio::test]
async fn a_party_the_matter_names_is_read_for_its_case() {
    let app = TestApp::spawn().await.unwrap();
    let zw = app.client("ZW", "chuangkou").unwrap();
    let sc = app.client("SC", "dengji").unwrap();
    let jwks = zw.keys().await.unwrap();
    let applicant = app.world.subjects[1].clone();
    let rep = app.world.subjects[2].clone();
    let stranger = app.world.subjects[3].clone();
    let open = |body: Value| {
        let zw = &zw;
        async move { zw.post_json("/v1/cases", &body).await.unwrap() }
    };

    let r = open(json!({
        "applicant": applicant,
        "matters": ["SC-QY-SL"],
        "parties": [{"role": "legal_rep", "id": rep}],
    }))
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let view = r.json().unwrap();
    assert_eq!(
        view["parties"],
        json!([{"role": "legal_rep", "kind": "person"}])
    );
    assert!(
        !String::from_utf8_lossy(&r.body).contains(rep.as_str()),
        "identifiers never come back"
    );
    let case = view["id"].as_str().unwrap().to_owned();

    let r = sc
        .post_json(PERSON, &json!({"subject": rep, "case_id": case}))
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let e = entry(&app, &jwks, &r).await.entry;
    assert_eq!(e.outcome, Outcome::Ok);
    assert_eq!(e.matter.as_deref(), Some("SC-QY-SL"));
    let r = sc
        .post_json(PERSON, &json!({"subject": stranger, "case_id": case}))
        .await
        .unwrap();
    refused(&app, &jwks, &r, "nor a party it names", Some(&case)).await;
    // Only what a material about the representative lists: the premises proof is the
    // applicant's.
    let r = sc
        .post_json(PROPERTY, &json!({"subject": rep, "case_id": case}))
        .await
        .unwrap();
    refused(
        &app,
        &jwks,
        &r,
        "lists service property.by_owner for the subject's role (legal_rep)",
        Some(&case),
    )
    .await;

    // Bad parties: a role no matter of the case names, an invalid ID, the applicant.
    for (parties, needle) in [
        (
            json!([{"role": "other_parent", "id": rep}]),
            "names the role \"other_parent\" (named: legal_rep)",
        ),
        (
            json!([{"role": "legal_rep", "id": "110105194912310020"}]),
            "parties[0] (legal_rep)",
        ),
        (
            json!([{"role": "legal_rep", "id": applicant}]),
            "is the applicant",
        ),
        (json!([{"role": "legal_rep"}]), "missing field"),
    ] {
        let r = open(json!({
            "applicant": applicant,
            "matters": ["SC-QY-SL"],
            "parties": parties,
        }))
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{parties}");
        let detail = r.json().unwrap()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(needle), "{detail} lacks {needle:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn with_binding_off_queries_need_no_case_but_a_named_case_is_still_checked() {
    let app = TestApp::spawn_with(|c| c.policy.purpose_binding = PurposeBinding::Off)
        .await
        .unwrap();
    let rs = app.client("RS", "shebao").unwrap();
    let jc = app.client("JC", "jiancha").unwrap();
    let jwks = rs.keys().await.unwrap();
    let subject = app.world.subjects[0].clone();
    let r = rs
        .post_json(PERSON, &json!({"subject": subject}))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(entry(&app, &jwks, &r).await.entry.case_id, None);
    // The policies (owner and consumers) still decide who may query at all.
    let r = jc
        .post_json(PERSON, &json!({"subject": subject}))
        .await
        .unwrap();
    refused(
        &app,
        &jwks,
        &r,
        "no policy permits a query of population.person by JC",
        None,
    )
    .await;
    // A case that is named is checked as when binding is required.
    let r = rs
        .post_json(PERSON, &json!({"subject": subject, "case_id": "CASE-X"}))
        .await
        .unwrap();
    refused(&app, &jwks, &r, "there is no case", Some("CASE-X")).await;
    let r = rs
        .post_json(PERSON, &json!({"subject": subject, "matter": "RS-SBK-SL"}))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    app.stop().await;
}
