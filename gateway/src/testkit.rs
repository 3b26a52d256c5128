//! Test helpers shared by the supervision tests: a store with cases written directly,
//! at chosen times.

use chrono::NaiveDate;
use paotui_repository::{CaseEvent, CaseMatter, Store, StoredCase};

pub(crate) fn at(day: &str, hour: u32) -> i64 {
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

pub(crate) fn event(e: &str, at_us: i64) -> CaseEvent {
    CaseEvent {
        at_us,
        event: e.into(),
        by_dept: "SC".into(),
        by_system: "dengji".into(),
        operator: Some("officer".into()),
        note: None,
    }
}

/// Stores a case accepted on `day` at `site` with `matters` (matter, owner, deadline),
/// then moves it through `events` (event, day).
pub(crate) async fn case(
    store: &Store,
    id: &str,
    day: &str,
    site: &str,
    matters: &[(&str, &str, Option<&str>)],
    events: &[(&str, &str)],
) {
    let c = StoredCase {
        id: id.into(),
        applicant_hmac: format!("{id}-applicant"),
        applicant_kind: "person".into(),
        site_dept: site.into(),
        site_system: "window".into(),
        operator: None,
        status: "accepted".into(),
        accepted_at_us: at(day, 9),
        accepted_on: day.into(),
        closed_at_us: None,
        parties: vec![],
    };
    let ms: Vec<CaseMatter> = matters
        .iter()
        .map(|(m, o, d)| CaseMatter {
            matter: (*m).into(),
            owner: (*o).into(),
            deadline: d.map(str::to_owned),
        })
        .collect();
    store
        .open_case(&c, &ms, &event("accepted", at(day, 9)))
        .await
        .unwrap();
    let mut from = "accepted".to_owned();
    for (e, day) in events {
        store
            .change_case_status(id, &from, e, &event(e, at(day, 15)))
            .await
            .unwrap();
        from = (*e).to_owned();
    }
}

/// A fresh SQLite store in a temp dir (kept alive by the returned guard).
pub(crate) async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    (dir, Store::open(&url).await.unwrap())
}

/// An audit log on `store` under a fresh key.
pub(crate) async fn log(store: &Store) -> paotui_repository::AuditLog {
    let (key, _) = paotui_certs::GatewayKey::generate().unwrap();
    paotui_repository::AuditLog::open(
        store.clone(),
        std::sync::Arc::new(key),
        paotui_repository::AuditOptions::default(),
    )
    .await
    .unwrap()
}

/// The demo catalog (`examples/`), as the gateway loads it.
pub(crate) fn catalog() -> paotui_policies::catalog::Catalog {
    crate::config::Config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/paotui.toml"
    )))
    .unwrap()
    .load_catalog()
    .unwrap()
}

/// An audit entry: `action` by `caller` (dept, system, operator) for `case` and
/// `service`, answered (`ok`) or refused by policy, at `at_us`.
pub(crate) fn access(
    action: &str,
    caller: (&str, &str, Option<&str>),
    case: Option<&str>,
    service: Option<&str>,
    ok: bool,
    at_us: i64,
) -> paotui_repository::NewAuditEntry {
    use paotui_repository::{NewAuditEntry, Outcome, PolicyDecision};
    NewAuditEntry {
        at_us,
        request_id: "r".into(),
        caller_dept: Some(caller.0.into()),
        caller_system: Some(caller.1.into()),
        caller_serial: None,
        operator: caller.2.map(str::to_owned),
        action: action.into(),
        service: service.map(str::to_owned),
        case_id: case.map(str::to_owned),
        matter: None,
        outcome: if ok { Outcome::Ok } else { Outcome::Denied },
        status: if ok { 200 } else { 403 },
        reason: None,
        subject_hmac: None,
        fields: vec![],
        body_sha256: None,
        decision: Some(PolicyDecision {
            allowed: ok,
            policies: vec![if ok {
                "query-owner-or-consumer".into()
            } else {
                "query-needs-its-case".into()
            }],
        }),
    }
}
