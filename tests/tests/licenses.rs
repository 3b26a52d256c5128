//! The electronic-license vault end to end: issue, reuse for a case, status, verify,
//! import — over mTLS, against the real store, with an independent JOSE check.

use std::path::Path;

use http::StatusCode;
use paotui_certs::{GatewayKey, Jwks};
use paotui_gateway::client::{MtlsClient, Reply};
use paotui_repository::Outcome;
use paotui_tests::{TestApp, logs};
use serde_json::{Value, json};

/// A valid credit code no demo business has.
fn fresh_uscc(n: u64) -> String {
    paotui_adapters::demo::uscc('1', 440604, 90_000_000 + n)
        .unwrap()
        .as_str()
        .to_owned()
}

const NAME: &str = "佛山市测试样本甲乙丙有限公司";

fn yyzz(holder: &str) -> Value {
    json!({
        "type": "YYZZ",
        "holder_id": holder,
        "holder_name": NAME,
        "data": {
            "legal_rep": "欧阳测试",
            "entity_kind": "有限责任公司",
            "scope": "日用百货批发零售",
            "established": "2024-03-01",
            "address": "广东省佛山市禅城区测试路1号"
        }
    })
}

fn problem(r: &Reply, status: StatusCode) -> Value {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    r.json().unwrap()
}

async fn audit_of(app: &TestApp, jwks: &Jwks, r: &Reply) -> paotui_repository::AuditEntry {
    let (_, index) = r.verify(jwks).expect("response signature verifies");
    app.audit_entry(index).await.unwrap()
}

struct Ctx {
    app: TestApp,
    sc: MtlsClient,
    zw: MtlsClient,
    jwks: Jwks,
}

async fn setup() -> Ctx {
    let app = TestApp::spawn().await.unwrap();
    let sc = app.client("SC", "dengji").unwrap();
    let zw = app.client("ZW", "chuangkou").unwrap();
    let jwks = sc.keys().await.unwrap();
    Ctx { app, sc, zw, jwks }
}

/// Opens a case at the window for `holder` and one matter; returns its id.
async fn case_for(c: &Ctx, holder: &str, matter: &str) -> String {
    let r =
        c.zw.post_json(
            "/v1/cases",
            &json!({"applicant": holder, "matters": [matter]}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json().unwrap()["id"].as_str().unwrap().to_owned()
}

/// A matter whose materials include the 营业执照 (handled by SC).
const YYZZ_MATTER: &str = "SC-QY-BG-JYFW";

async fn issue(c: &Ctx, holder: &str) -> Value {
    let r = c.sc.post_json("/v1/licenses", &yyzz(holder)).await.unwrap();
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json().unwrap()
}

#[tokio::test]
async fn issue_fetch_and_verify_round_trip_over_mtls() {
    let c = setup().await;
    let holder = fresh_uscc(1);
    let r =
        c.sc.post_json("/v1/licenses", &yyzz(&holder))
            .await
            .unwrap();
    assert_eq!(r.status, StatusCode::CREATED);
    let e = audit_of(&c.app, &c.jwks, &r).await;
    let issued = r.json().unwrap();
    let id = issued["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("YYZZ-SC-") && id.len() == "YYZZ-SC-00000000".len(),
        "{id}"
    );
    assert_eq!(issued["status"], "valid");
    assert_eq!(issued["document"]["holder"]["id"], holder.as_str());
    assert_eq!(issued["document"]["issuer"]["dept"], "SC");
    assert_eq!(issued["document"]["number"], id.as_str());
    assert!(
        issued["document"]["valid_until"].is_null(),
        "YYZZ is long-term"
    );
    assert_eq!(e.entry.action, "license.issue");
    assert_eq!(e.entry.service.as_deref(), Some("license:YYZZ"));
    assert_eq!(e.entry.fields, vec![id.clone()]);
    let holder_hmac = e
        .entry
        .subject_hmac
        .clone()
        .expect("holder hmac in the audit entry");
    assert_eq!(holder_hmac.len(), 64);

    // The signed document verifies with the SC key from /v1/keys, and says what was issued.
    let token = issued["jws"].as_str().unwrap();
    let today = chrono::Utc::now().date_naive();
    let offline = paotui_policies::licenses::verify_offline(token, &c.jwks, today);
    assert!(offline.valid, "{:?}", offline.reasons);
    let sc_key = c
        .jwks
        .keys
        .iter()
        .find(|k| k.issuer.as_deref() == Some("SC"))
        .expect("SC's issuer key is published");
    assert_eq!(offline.kid.as_deref(), Some(sc_key.kid.as_str()));

    // A window fetches it for a case: the same JWS, and a usage record naming the case.
    let case = case_for(&c, &holder, YYZZ_MATTER).await;
    let r =
        c.zw.get(&format!(
            "/v1/licenses/{id}?case_id={case}&matter={YYZZ_MATTER}"
        ))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let e = audit_of(&c.app, &c.jwks, &r).await;
    let got = r.json().unwrap();
    assert_eq!(got["jws"], issued["jws"]);
    assert_eq!(got["status"], "valid");
    assert_eq!(e.entry.action, "license.read");
    assert_eq!(e.entry.case_id.as_deref(), Some(case.as_str()));
    assert_eq!(e.entry.matter.as_deref(), Some(YYZZ_MATTER));
    assert_eq!(e.entry.subject_hmac.as_deref(), Some(holder_hmac.as_str()));
    let store = c.app.store().await.unwrap();
    let uses = store.license_uses(&id).await.unwrap();
    assert_eq!(uses.len(), 1);
    assert_eq!(
        (uses[0].caller_dept.as_str(), uses[0].caller_system.as_str()),
        ("ZW", "chuangkou")
    );
    assert_eq!(uses[0].case_id, case);
    assert_eq!(uses[0].matter.as_deref(), Some(YYZZ_MATTER));

    // By holder (the window knows the applicant, not the license id).
    let r =
        c.zw.get(&format!(
            "/v1/holders/{holder}/licenses?type=YYZZ&case_id={case}"
        ))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json().unwrap();
    let ids: Vec<&str> = list["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    assert_eq!(store.license_uses(&id).await.unwrap().len(), 2);

    // Online verification: valid.
    let r =
        c.zw.post_json("/v1/licenses/verify", &json!({ "jws": token }))
            .await
            .unwrap();
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json().unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["license_status"], "valid");
    let e = audit_of(&c.app, &c.jwks, &r).await;
    assert_eq!(e.entry.action, "license.verify");

    // A fetch must name its case; an unknown license is 404; both audited.
    let r = c.zw.get(&format!("/v1/licenses/{id}")).await.unwrap();
    let p = problem(&r, StatusCode::BAD_REQUEST);
    assert!(p["detail"].as_str().unwrap().contains("case_id"), "{p}");
    assert_eq!(audit_of(&c.app, &c.jwks, &r).await.entry.status, 400);
    let r =
        c.zw.get(&format!("/v1/licenses/YYZZ-SC-99999999?case_id={case}"))
            .await
            .unwrap();
    problem(&r, StatusCode::NOT_FOUND);
    assert_eq!(audit_of(&c.app, &c.jwks, &r).await.entry.status, 404);
    assert_eq!(store.license_uses(&id).await.unwrap().len(), 2);
    c.app.stop().await;
}

/// Purpose binding: a license leaves only for an open case of its holder, to a department
/// that accepted or handles it, for a matter that lists the license's type.
#[tokio::test]
async fn license_fetches_are_bound_to_an_open_matching_case() {
    let c = setup().await;
    let holder = fresh_uscc(40);
    let other = fresh_uscc(41);
    let id = issue(&c, &holder).await["id"].as_str().unwrap().to_owned();
    issue(&c, &other).await;
    let good = case_for(&c, &holder, YYZZ_MATTER).await;
    let fetch = |client: &MtlsClient, query: String| {
        let client = client.clone();
        let id = id.clone();
        async move {
            client
                .get(&format!("/v1/licenses/{id}?{query}"))
                .await
                .unwrap()
        }
    };
    assert_eq!(
        fetch(&c.zw, format!("case_id={good}")).await.status,
        StatusCode::OK
    );
    // The handling department may fetch for the case too.
    assert_eq!(
        fetch(&c.sc, format!("case_id={good}")).await.status,
        StatusCode::OK
    );

    let not_applicant = case_for(&c, &other, YYZZ_MATTER).await;
    let no_yyzz = case_for(&c, &holder, "SC-GTGSH-SL").await;
    let rs = c.app.client("RS", "shebao").unwrap();
    for (client, query, why) in [
        (&c.zw, "case_id=CASE-NO-SUCH".to_owned(), "there is no case"),
        (
            &c.zw,
            format!("case_id={not_applicant}"),
            "not the applicant",
        ),
        (&c.zw, format!("case_id={no_yyzz}"), "lists YYZZ"),
        (
            &rs,
            format!("case_id={good}"),
            "neither accepted nor handles",
        ),
        (
            &c.zw,
            format!("case_id={good}&matter=SC-QY-ZX"),
            "not for matter",
        ),
    ] {
        let r = fetch(client, query.clone()).await;
        let p = problem(&r, StatusCode::FORBIDDEN);
        assert!(p["detail"].as_str().unwrap().contains(why), "{query}: {p}");
        let e = audit_of(&c.app, &c.jwks, &r).await;
        assert_eq!(e.entry.outcome, Outcome::Denied, "{query}");
    }
    // Listing a holder's licenses needs a case whose matters list some license type.
    let r =
        c.zw.get(&format!("/v1/holders/{holder}/licenses?case_id={no_yyzz}"))
            .await
            .unwrap();
    let p = problem(&r, StatusCode::FORBIDDEN);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("lists a license type"),
        "{p}"
    );
    let r =
        c.zw.get(&format!(
            "/v1/holders/{holder}/licenses?case_id={no_yyzz}&type=YYZZ"
        ))
        .await
        .unwrap();
    problem(&r, StatusCode::FORBIDDEN);

    // Once the case is completed, access for it ends.
    for e in ["approved", "completed"] {
        let r =
            c.sc.post_json_with(
                &format!("/v1/cases/{good}/events"),
                &json!({ "event": e }),
                &[("paotui-operator", "sc-officer-01")],
            )
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
    }
    let p = problem(
        &fetch(&c.zw, format!("case_id={good}")).await,
        StatusCode::FORBIDDEN,
    );
    assert!(p["detail"].as_str().unwrap().contains("has ended"), "{p}");
    let store = c.app.store().await.unwrap();
    assert_eq!(
        store.license_uses(&id).await.unwrap().len(),
        2,
        "only the permitted fetches"
    );
    c.app.stop().await;
}

#[tokio::test]
async fn only_the_issuing_department_issues_or_changes_status() {
    let c = setup().await;
    let rs = c.app.client("RS", "shebao").unwrap();
    let holder = fresh_uscc(2);
    let r = rs.post_json("/v1/licenses", &yyzz(&holder)).await.unwrap();
    let p = problem(&r, StatusCode::FORBIDDEN);
    assert!(
        p["detail"].as_str().unwrap().contains("whose issuer is SC"),
        "{p}"
    );
    let e = audit_of(&c.app, &c.jwks, &r).await;
    assert_eq!(e.entry.outcome, Outcome::Denied);
    assert_eq!(e.entry.action, "license.issue");
    // Nothing permits it: denied by default, with no determining policy.
    assert_eq!(
        e.entry.decision,
        Some(paotui_repository::PolicyDecision {
            allowed: false,
            policies: vec![]
        })
    );
    let store = c.app.store().await.unwrap();
    assert!(
        store
            .licenses_of_holder(&e.entry.subject_hmac.unwrap(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let id = issue(&c, &holder).await["id"].as_str().unwrap().to_owned();
    let r =
        c.zw.post_json(
            &format!("/v1/licenses/{id}/status"),
            &json!({"action": "revoke", "reason": "window tries"}),
        )
        .await
        .unwrap();
    problem(&r, StatusCode::FORBIDDEN);
    assert_eq!(
        audit_of(&c.app, &c.jwks, &r).await.entry.outcome,
        Outcome::Denied
    );
    assert_eq!(store.license(&id).await.unwrap().unwrap().status, "valid");
    c.app.stop().await;
}

#[tokio::test]
async fn status_transitions_allowed_refused_and_kept_as_history() {
    let c = setup().await;
    let holder = fresh_uscc(3);
    let case = case_for(&c, &holder, YYZZ_MATTER).await;
    let id = issue(&c, &holder).await["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/licenses/{id}/status");
    let step = |action: &'static str| {
        let sc = &c.sc;
        let path = path.clone();
        async move {
            sc.post_json(
                &path,
                &json!({"action": action, "reason": format!("{action} for test")}),
            )
            .await
            .unwrap()
        }
    };
    let r = step("suspend").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json().unwrap()["status"], "suspended");
    let p = problem(&step("suspend").await, StatusCode::CONFLICT);
    assert!(
        p["detail"].as_str().unwrap().contains("already suspended"),
        "{p}"
    );
    assert_eq!(step("restore").await.json().unwrap()["status"], "valid");
    problem(&step("restore").await, StatusCode::CONFLICT);
    assert_eq!(step("revoke").await.json().unwrap()["status"], "revoked");
    let r = step("restore").await;
    let p = problem(&r, StatusCode::CONFLICT);
    assert!(p["detail"].as_str().unwrap().contains("final"), "{p}");
    assert_eq!(
        audit_of(&c.app, &c.jwks, &r).await.entry.action,
        "license.status"
    );

    // Bad bodies: unknown action, empty reason.
    let r =
        c.sc.post_json(&path, &json!({"action": "delete", "reason": "x"}))
            .await
            .unwrap();
    problem(&r, StatusCode::BAD_REQUEST);
    let r =
        c.sc.post_json(&path, &json!({"action": "suspend", "reason": " "}))
            .await
            .unwrap();
    problem(&r, StatusCode::BAD_REQUEST);

    let store = c.app.store().await.unwrap();
    let history: Vec<(Option<String>, String)> = store
        .license_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.from_status, e.to_status))
        .collect();
    let s = |x: &str| x.to_owned();
    assert_eq!(
        history,
        [
            (None, s("valid")),
            (Some(s("valid")), s("suspended")),
            (Some(s("suspended")), s("valid")),
            (Some(s("valid")), s("revoked")),
        ]
    );

    // The history over the API: for the issuer and the auditors, not for the window.
    let r =
        c.sc.get(&format!("/v1/licenses/{id}/events"))
            .await
            .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let ev = r.json().unwrap();
    let tos: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(tos, ["valid", "suspended", "valid", "revoked"]);
    assert_eq!(ev["events"][1]["reason"], "suspend for test");
    assert_eq!(ev["events"][1]["by_system"], "dengji");
    let jc = c.app.client("JC", "jiancha").unwrap();
    assert_eq!(
        jc.get(&format!("/v1/licenses/{id}/events"))
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
    let r =
        c.zw.get(&format!("/v1/licenses/{id}/events"))
            .await
            .unwrap();
    problem(&r, StatusCode::FORBIDDEN);
    assert_eq!(
        audit_of(&c.app, &c.jwks, &r).await.entry.outcome,
        Outcome::Denied
    );

    // A revoked license no longer verifies, and the reader sees it revoked.
    let got =
        c.zw.get(&format!("/v1/licenses/{id}?case_id={case}"))
            .await
            .unwrap()
            .json()
            .unwrap();
    assert_eq!(got["status"], "revoked");
    let r =
        c.zw.post_json("/v1/licenses/verify", &json!({"jws": got["jws"]}))
            .await
            .unwrap();
    let p = problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["valid"], false);
    assert!(
        p["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "the license is revoked"),
        "{p}"
    );
    // The problem's own members stay standard; the vault's status has its own name.
    assert_eq!(p["status"], 422);
    assert_eq!(p["type"], "urn:paotui:problem:unprocessable");
    assert_eq!(p["license_status"], "revoked");
    // The raw body has one "status" member, not two.
    assert_eq!(
        String::from_utf8_lossy(&r.body)
            .matches("\"status\"")
            .count(),
        1
    );
    c.app.stop().await;
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test]
async fn verify_refuses_forged_altered_and_wrong_key_licenses() {
    let c = setup().await;
    let issued = issue(&c, &fresh_uscc(4)).await;
    let token = issued["jws"].as_str().unwrap().to_owned();
    let verify = |jws: String| {
        let zw = &c.zw;
        async move {
            zw.post_json("/v1/licenses/verify", &json!({ "jws": jws }))
                .await
                .unwrap()
        }
    };
    let reasons = |r: &Reply| -> String {
        let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(p["valid"], false, "{p}");
        p["reasons"].to_string()
    };

    // Altered: the payload's holder name changed, the signature kept.
    let parts: Vec<&str> = token.split('.').collect();
    let mut doc: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap(),
    )
    .unwrap();
    doc["holder"]["name"] = json!("另一家公司");
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&serde_json::to_vec(&doc).unwrap()),
        parts[2]
    );
    let r = verify(altered).await;
    assert!(reasons(&r).contains("signature"), "{}", reasons(&r));
    let e = audit_of(&c.app, &c.jwks, &r).await;
    assert_eq!(
        (e.entry.action.as_str(), e.entry.status),
        ("license.verify", 422)
    );

    // Forged: a well-formed license signed by a key nobody published.
    let (stranger, _) = GatewayKey::generate().unwrap();
    let forged = paotui_certs::jws::sign_json(&stranger, "paotui-license+jws", &doc).unwrap();
    let r = verify(forged).await;
    assert!(reasons(&r).contains("key"), "{}", reasons(&r));

    // Wrong issuer key: GA's real key signing a license that names SC as issuer.
    let ga_path = c.app.world.dir.join("keys/issuers/GA-ed25519.pem");
    let (ga, _) = GatewayKey::load_or_generate(&ga_path).unwrap();
    let wrong =
        paotui_certs::jws::sign_json(&ga, "paotui-license+jws", &issued["document"]).unwrap();
    let r = verify(wrong).await;
    assert!(reasons(&r).contains("names issuer SC"), "{}", reasons(&r));

    // Not in the vault: the SC key itself, but a document the vault never issued.
    let sc_path = c.app.world.dir.join("keys/issuers/SC-ed25519.pem");
    let (sc, _) = GatewayKey::load_or_generate(&sc_path).unwrap();
    let mut other = issued["document"].clone();
    other["id"] = json!("YYZZ-SC-77777777");
    let unknown = paotui_certs::jws::sign_json(&sc, "paotui-license+jws", &other).unwrap();
    let r = verify(unknown).await;
    assert!(reasons(&r).contains("not in the vault"), "{}", reasons(&r));

    // Not a JWS at all; and a body that is not the verify shape.
    let r = verify("not-a-jws".into()).await;
    reasons(&r);
    let r =
        c.zw.post_json("/v1/licenses/verify", &json!({"token": "x"}))
            .await
            .unwrap();
    problem(&r, StatusCode::BAD_REQUEST);

    // Expired: a genuine, stored, unrevoked license whose term has ended.
    let mut past = yyzz(&fresh_uscc(42));
    past["valid_from"] = json!("2015-01-01");
    past["valid_until"] = json!("2019-12-31");
    let r = c.sc.post_json("/v1/licenses", &past).await.unwrap();
    assert_eq!(r.status, StatusCode::CREATED);
    let expired = r.json().unwrap();
    assert_eq!(expired["status"], "expired");
    let r = verify(expired["jws"].as_str().unwrap().to_owned()).await;
    let why = reasons(&r);
    assert!(why.contains("expired"), "{why}");
    assert_eq!(problem(&r, StatusCode::UNPROCESSABLE_ENTITY)["status"], 422);

    // The genuine one still verifies.
    let r = verify(token).await;
    assert_eq!(r.status, StatusCode::OK);
    c.app.stop().await;
}

#[tokio::test]
async fn bad_issue_requests_are_clear_4xx_and_audited() {
    let c = setup().await;
    let holder = fresh_uscc(5);
    let mut wrong_check = holder.clone().into_bytes();
    let last = wrong_check.last_mut().unwrap();
    *last = if *last == b'0' { b'1' } else { b'0' };
    let wrong_check = String::from_utf8(wrong_check).unwrap();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut b = yyzz(&holder);
        edit(&mut b);
        b
    };
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            with(&|b: &mut Value| {
                b["type"] = json!("NOPE");
            }),
            StatusCode::BAD_REQUEST,
            "unknown license type",
        ),
        (
            with(&|b: &mut Value| {
                b["holder_id"] = json!(wrong_check);
            }),
            StatusCode::BAD_REQUEST,
            "holder_id",
        ),
        (
            with(&|b: &mut Value| {
                b["data"]["established"] = json!("2024-13-01");
            }),
            StatusCode::BAD_REQUEST,
            "established",
        ),
        (
            with(&|b: &mut Value| {
                b["data"].as_object_mut().unwrap().remove("scope");
            }),
            StatusCode::BAD_REQUEST,
            "required",
        ),
        (
            with(&|b: &mut Value| {
                b["data"]["colour"] = json!("red");
            }),
            StatusCode::BAD_REQUEST,
            "no field",
        ),
        (
            with(&|b: &mut Value| {
                b["number"] = json!("X-1");
            }),
            StatusCode::BAD_REQUEST,
            "import",
        ),
        (
            with(&|b: &mut Value| {
                b["extra"] = json!(1);
            }),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            with(&|b: &mut Value| {
                b["valid_until"] = json!("2020-01-01");
            }),
            StatusCode::BAD_REQUEST,
            "before valid_from",
        ),
        (
            with(&|b: &mut Value| {
                b["data"]["scope"] = json!("长".repeat(30_000));
            }),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger",
        ),
    ];
    for (body, status, want) in cases {
        let r = c.sc.post_json("/v1/licenses", &body).await.unwrap();
        let p = problem(&r, status);
        assert!(p["detail"].as_str().unwrap().contains(want), "{want}: {p}");
        let e = audit_of(&c.app, &c.jwks, &r).await;
        assert_eq!(e.entry.status, status.as_u16());
        assert!(!e.entry.reason.unwrap_or_default().contains(&wrong_check));
    }
    // Nothing was stored for the holder.
    let r =
        c.zw.get(&format!(
            "/v1/holders/{holder}/licenses?case_id={}",
            case_for(&c, &holder, YYZZ_MATTER).await
        ))
        .await
        .unwrap();
    assert_eq!(r.json().unwrap()["licenses"], json!([]));
    let r =
        c.zw.get("/v1/holders/12345/licenses?case_id=C-1")
            .await
            .unwrap();
    problem(&r, StatusCode::BAD_REQUEST);
    let r =
        c.zw.get(&format!("/v1/holders/{holder}/licenses?case_id=C-1&sort=x"))
            .await
            .unwrap();
    problem(&r, StatusCode::BAD_REQUEST);
    c.app.stop().await;
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn stored_licenses_are_sealed_and_holders_never_in_plaintext() {
    let c = setup().await;
    let holder = fresh_uscc(6);
    issue(&c, &holder).await;
    let r =
        c.zw.get(&format!(
            "/v1/holders/{holder}/licenses?case_id={}",
            case_for(&c, &holder, YYZZ_MATTER).await
        ))
        .await
        .unwrap();
    assert_eq!(r.json().unwrap()["licenses"].as_array().unwrap().len(), 1);
    // Imported licenses of the demo world name people; they are sealed too.
    let csv = std::fs::read_to_string(c.app.world.dir.join("data/licenses-GA.csv")).unwrap();
    let person: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let (person_id, person_name) = (person[1], person[2]);
    let files: Vec<_> = std::fs::read_dir(&c.app.world.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("paotui.db")
        })
        .collect();
    assert!(!files.is_empty());
    let mut seen = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        seen += bytes.len();
        for needle in [holder.as_str(), NAME, person_id, person_name] {
            assert!(
                !contains(&bytes, needle),
                "{} holds {needle:?} in plaintext",
                f.display()
            );
        }
    }
    assert!(seen > 0);
    let logged = logs().contents();
    assert!(!logged.contains(&holder) && !logged.contains(NAME));
    c.app.stop().await;
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn import_stores_good_rows_rejects_bad_ones_and_reruns_idempotently() {
    let c = setup().await;
    let (a, b, d) = (fresh_uscc(10), fresh_uscc(11), fresh_uscc(12));
    let case_b = case_for(&c, &b, YYZZ_MATTER).await;
    let mut bad_check = a.clone().into_bytes();
    let l = bad_check.last_mut().unwrap();
    *l = if *l == b'0' { b'1' } else { b'0' };
    let bad_check = String::from_utf8(bad_check).unwrap();
    let header = "type,holder_id,holder_name,number,issued_on,valid_from,valid_until,legal_rep,entity_kind,scope,established,address\n";
    let row = |ty: &str, id: &str, number: &str, issued: &str, scope: &str| {
        format!(
            "{ty},{id},测试公司,{number},{issued},,,张三,有限责任公司,{scope},2020-01-01,佛山市\n"
        )
    };
    let text = [
        header.to_owned(),
        row("YYZZ", &a, "N-A", "2020-01-02", "零售"), // 2 ok
        row("YYZZ", &bad_check, "N-B", "2020-01-02", "零售"), // 3 check digit
        row("YYZZ", &b, "N-C", "2020-02-30", "零售"), // 4 date
        row("YYZZ", &b, "N-D", "2020-01-02", ""),     // 5 required field
        "YYZZ,too,few\n".to_owned(),                  // 6 cells
        row("HKB", &b, "N-E", "2020-01-02", "零售"),  // 7 another department's type
        row("YYZZ", &d, "N-A", "2020-01-02", "批发"), // 8 duplicate number, other content
        row("YYZZ", &b, "N-F", "2021-05-06", "零售"), // 9 ok
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sc.csv");
    let rejects = dir.path().join("sc.rejects.csv");
    write(&file, &text);
    let config = c.app.world.config_path();
    let dept = paotui_certs::DeptCode::parse("SC").unwrap();
    let s = paotui_gateway::license_cli::import(
        &file,
        &config,
        dept.clone(),
        Some("ops-1".into()),
        &rejects,
    )
    .await
    .unwrap();
    assert_eq!((s.stored, s.already_stored, s.rejected), (2, 0, 6), "{s:?}");
    let rej = std::fs::read_to_string(&rejects).unwrap();
    let lines: Vec<&str> = rej.lines().collect();
    assert_eq!(lines[0], "line,reason");
    let numbers: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(numbers, ["3", "4", "5", "6", "7", "8"], "{rej}");
    for (n, want) in [
        (3, "check character"),
        (4, "issued_on"),
        (5, "scope"),
        (6, "cells"),
        (7, "whose issuer is GA"),
        (8, "other content"),
    ] {
        let l = lines
            .iter()
            .find(|l| l.starts_with(&format!("{n},")))
            .unwrap();
        assert!(l.contains(want), "line {n}: {l}");
    }
    assert!(
        !rej.contains(&bad_check) && !rej.contains(&b),
        "rejects never repeat identifiers"
    );

    // The stored rows are readable, signed, under the original numbers.
    let r =
        c.zw.get(&format!("/v1/holders/{b}/licenses?case_id={case_b}"))
            .await
            .unwrap();
    let list = r.json().unwrap();
    let docs = list["licenses"].as_array().unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["document"]["number"], "N-F");
    assert_eq!(docs[0]["document"]["issued_on"], "2021-05-06");

    // Every row left an audit entry.
    let store = c.app.store().await.unwrap();
    let all = store.audit_range(0, u64::MAX).await.unwrap();
    let import_entries = |tag: &str| {
        all.iter()
            .filter(|e| {
                e.entry.action == "license.import"
                    && e.entry.caller_system.as_deref() == Some("cli-import")
                    && e.entry.operator.as_deref() == Some(tag)
            })
            .count()
    };
    assert_eq!(import_entries("ops-1"), 8);

    // Re-running the file stores nothing new.
    let s =
        paotui_gateway::license_cli::import(&file, &config, dept, Some("ops-2".into()), &rejects)
            .await
            .unwrap();
    assert_eq!((s.stored, s.already_stored, s.rejected), (0, 2, 6), "{s:?}");
    let r =
        c.zw.get(&format!("/v1/holders/{b}/licenses?case_id={case_b}"))
            .await
            .unwrap();
    assert_eq!(r.json().unwrap()["licenses"].as_array().unwrap().len(), 1);

    // The same over HTTP, as JSON lines.
    let e = fresh_uscc(13);
    let good = json!({"type":"YYZZ","holder_id": e,"holder_name":"测试","number":"N-H","issued_on":"2022-01-01",
        "data":{"legal_rep":"李四","entity_kind":"个体工商户","scope":"零售","established":"2022-01-01","address":"佛山"}});
    let body = format!("{good}\n\n{{not json\n{}\n{good}\n", json!({"type":"YYZZ"}));
    let r =
        c.sc.send(
            http::Method::POST,
            "/v1/licenses/import",
            &[("content-type", "application/x-ndjson")],
            body.into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let out = r.json().unwrap();
    assert_eq!(
        out["summary"],
        json!({"stored": 1, "already_stored": 1, "rejected": 2}),
        "{out}"
    );
    let rows = out["rows"].as_array().unwrap();
    assert_eq!(rows[1]["line"], 3);
    assert_eq!(rows[1]["outcome"], "rejected");
    assert_eq!(rows[3]["outcome"], "already_stored");
    // Not an issuer: every row is its own issue_license decision, and each is refused
    // (and audited as denied) while the batch itself is answered.
    let rs = c.app.client("RS", "shebao").unwrap();
    let r = rs
        .send(
            http::Method::POST,
            "/v1/licenses/import",
            &[("content-type", "application/x-ndjson")],
            good.to_string().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let out = r.json().unwrap();
    assert_eq!(out["summary"]["stored"], 0);
    for row in out["rows"].as_array().unwrap() {
        assert_eq!(row["outcome"], "rejected");
        assert!(
            row["reason"]
                .as_str()
                .unwrap()
                .contains("no policy permits RS issuing"),
            "{row}"
        );
    }
    c.app.stop().await;
}

/// A second implementation checks the signature: Python's jwcrypto with only the JWK.
#[tokio::test]
async fn a_stock_jose_library_verifies_an_issued_license() {
    let Some(python_path) = jwcrypto() else {
        return;
    };
    let c = setup().await;
    let issued = issue(&c, &fresh_uscc(20)).await;
    let sc_key = c
        .jwks
        .keys
        .iter()
        .find(|k| k.issuer.as_deref() == Some("SC"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (jwk, tok) = (dir.path().join("jwk.json"), dir.path().join("token"));
    write(&jwk, &serde_json::to_string(sc_key).unwrap());
    let run = |token: &str| {
        write(&tok, token);
        std::process::Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/jose_verify.py"))
            .arg(&jwk)
            .arg(&tok)
            .env("PYTHONPATH", &python_path)
            .output()
            .unwrap()
    };
    let token = issued["jws"].as_str().unwrap();
    let out = run(token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let payload: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(payload, issued["document"]);
    // One changed character inside the signature (not the last, whose low bits are
    // padding a lenient decoder ignores): jwcrypto refuses it too.
    let mut bad = token.to_owned();
    let at = bad.len() - 10;
    let ch = bad.as_bytes()[at];
    bad.replace_range(at..=at, if ch == b'A' { "B" } else { "A" });
    assert!(!run(&bad).status.success());
    c.app.stop().await;
}

/// Where jwcrypto is importable from: installed by pip into the build directory when
/// missing. `None` (skip) only outside CI.
fn jwcrypto() -> Option<std::path::PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("python-jwcrypto");
    let importable = || {
        std::process::Command::new("python3")
            .args(["-c", "import jwcrypto.jws"])
            .env("PYTHONPATH", &dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !importable() {
        let _ = std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .arg("jwcrypto==1.5.6")
            .status();
    }
    if importable() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("jwcrypto could not be installed for the independent JOSE check");
    }
    eprintln!("skipping: jwcrypto unavailable (pip install jwcrypto)");
    None
}

/// The vault on the PostgreSQL store backend: issue, reuse, status, verify.
#[tokio::test]
async fn the_vault_works_on_a_postgres_store() {
    let Some((name, url)) = paotui_tests::fresh_pg_database("paotui_vault")
        .await
        .unwrap()
    else {
        return;
    };
    let app = TestApp::spawn_with(|c| c.database = Some(url.clone()))
        .await
        .unwrap();
    let sc = app.client("SC", "dengji").unwrap();
    let zw = app.client("ZW", "chuangkou").unwrap();
    let holder = fresh_uscc(30);
    let r = zw
        .post_json(
            "/v1/cases",
            &json!({"applicant": holder, "matters": [YYZZ_MATTER]}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "a case on the PostgreSQL store"
    );
    let case = r.json().unwrap()["id"].as_str().unwrap().to_owned();
    let r = sc.post_json("/v1/licenses", &yyzz(&holder)).await.unwrap();
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let issued = r.json().unwrap();
    let id = issued["id"].as_str().unwrap();
    let r = zw
        .get(&format!("/v1/holders/{holder}/licenses?case_id={case}"))
        .await
        .unwrap();
    assert_eq!(r.json().unwrap()["licenses"][0]["jws"], issued["jws"]);
    let r = sc
        .post_json(
            &format!("/v1/licenses/{id}/status"),
            &json!({"action": "suspend", "reason": "pg"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let r = zw
        .post_json("/v1/licenses/verify", &json!({"jws": issued["jws"]}))
        .await
        .unwrap();
    problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    // The rows are in PostgreSQL, sealed.
    let store = paotui_repository::Store::open(&url).await.unwrap();
    assert_eq!(store.backend_name(), "postgres");
    let row = store.license(id).await.unwrap().unwrap();
    assert_eq!(row.status, "suspended");
    assert!(!contains(&row.document, &holder) && !contains(&row.document, NAME));
    assert_eq!(store.license_uses(id).await.unwrap().len(), 1);
    store.close().await;
    app.stop().await;
    paotui_tests::drop_pg_database(&name).await.unwrap();
}
