use std::sync::Arc;

use paotui_certs::GatewayKey;
use paotui_repository::{
    AuditLog, AuditOptions, CaseEvent, CaseMatter, CaseParty, Evaluation, LicenseEvent, LicenseUse,
    NewAuditEntry, Outcome, Store, StoredCase, StoredLicense,
};
use sqlx::Connection;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A PostgreSQL database that exists for one test and is dropped after it.
pub struct PgDb {
    name: String,
}

impl PgDb {
    /// `None` when PostgreSQL is unreachable outside CI; under `CI=true` that is a failure.
    pub async fn create() -> Option<(PgDb, String)> {
        let mut admin = match sqlx::PgConnection::connect(PG_ADMIN).await {
            Ok(c) => c,
            Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!("skipping PostgreSQL conformance (unreachable: {e})");
                return None;
            }
            Err(e) => panic!("PostgreSQL unreachable under CI: {e}"),
        };
        let name = format!("paotui_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        Some((PgDb { name }, url))
    }

    pub async fn drop_db(self, store: Store) {
        store.close().await;
        let mut admin = sqlx::PgConnection::connect(PG_ADMIN).await.unwrap();
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

pub fn entry(i: usize) -> NewAuditEntry {
    NewAuditEntry {
        at_us: 1_700_000_000_000_000 + i as i64,
        request_id: format!("req-{i}"),
        caller_dept: Some("RS".into()),
        caller_system: Some("shebao".into()),
        caller_serial: Some("1a2b".into()),
        operator: Some("clerk-7".into()),
        action: "service.query".into(),
        service: Some("population.person".into()),
        case_id: None,
        matter: None,
        outcome: if i.is_multiple_of(3) {
            Outcome::Denied
        } else {
            Outcome::Ok
        },
        status: if i.is_multiple_of(3) { 403 } else { 200 },
        reason: i.is_multiple_of(3).then(|| "not a consumer".to_string()),
        subject_hmac: Some(format!("{i:064x}")),
        fields: vec!["name".into(), "gender".into()],
        body_sha256: Some(format!("{:064x}", i * 7)),
        // Half the entries carry a policy decision (format v2), half do not (v1).
        decision: i
            .is_multiple_of(2)
            .then(|| paotui_repository::PolicyDecision {
                allowed: !i.is_multiple_of(3),
                policies: if i.is_multiple_of(3) {
                    vec![]
                } else {
                    vec!["query-owner-or-consumer".into()]
                },
            }),
    }
}

pub async fn open_log(store: &Store, opts: AuditOptions) -> AuditLog {
    let (key, _) = GatewayKey::generate().unwrap();
    AuditLog::open(store.clone(), Arc::new(key), opts)
        .await
        .unwrap()
}

async fn append_round_trip(store: &Store) {
    let log = open_log(store, AuditOptions::default()).await;
    assert_eq!(store.audit_len().await.unwrap(), 0);
    for i in 0..5 {
        assert_eq!(log.append(entry(i)).await.unwrap(), i as u64);
    }
    assert_eq!(store.audit_len().await.unwrap(), 5);
    let got = store.audit_entry(3).await.unwrap().unwrap();
    assert_eq!(got.index, 3);
    assert_eq!(got.entry, entry(3));
    assert!(store.audit_entry(99).await.unwrap().is_none());
    let range = store.audit_range(1, 4).await.unwrap();
    assert_eq!(
        range.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // Who read subject 1's data: its entries newest first, paged by index.
    for _ in 0..2 {
        log.append(entry(1)).await.unwrap();
    }
    let about = |before, limit| {
        let hmac = entry(1).subject_hmac.unwrap();
        async move {
            store
                .audit_of_subject(&hmac, before, limit)
                .await
                .unwrap()
                .iter()
                .map(|e| e.index)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(about(None, 10).await, [6, 5, 1]);
    assert_eq!(about(None, 2).await, [6, 5]);
    assert_eq!(about(Some(5), 2).await, [1]);
    assert_eq!(about(Some(1), 2).await, Vec::<u64>::new());
    assert!(
        store
            .audit_of_subject(&"f".repeat(64), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_appends_are_dense(store: &Store) {
    let log = open_log(store, AuditOptions::default()).await;
    let base = store.audit_len().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let l = log.clone();
        tasks.push(tokio::spawn(async move {
            l.append(entry(100 + i)).await.unwrap()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    got.sort();
    assert_eq!(got, (base..base + 40).collect::<Vec<_>>());
    // The checkpoint covers every append that has returned, and matches the stored tree.
    let cp = log.checkpoint();
    assert_eq!(cp.checkpoint.size, base + 40);
    assert_eq!(cp.checkpoint.root, store.root_at(base + 40).await.unwrap());
    store.ping().await.unwrap();
}

fn license(id: &str, number: &str, holder: &str) -> StoredLicense {
    StoredLicense {
        id: id.into(),
        type_code: "YYZZ".into(),
        issuer: "SC".into(),
        number_hmac: number.into(),
        holder_hmac: holder.into(),
        holder_kind: "business".into(),
        status: "valid".into(),
        valid_from: "2026-01-01".into(),
        valid_until: None,
        issued_at_us: 1_700_000_000_000_000,
        source: "api".into(),
        content_hmac: "c0".into(),
        document: vec![0, 1, 2, 255],
    }
}

fn event(id: &str, to: &str) -> LicenseEvent {
    LicenseEvent {
        license_id: id.into(),
        at_us: 1_700_000_000_000_001,
        from_status: None,
        to_status: to.into(),
        reason: Some("why".into()),
        by_dept: "SC".into(),
        by_system: "dengji".into(),
        operator: None,
        request_id: "req".into(),
    }
}

async fn license_vault(store: &Store) {
    // Serials are per (type, issuer) and count up.
    assert_eq!(store.next_license_serial("YYZZ", "SC").await.unwrap(), 1);
    assert_eq!(store.next_license_serial("YYZZ", "SC").await.unwrap(), 2);
    assert_eq!(store.next_license_serial("YYZZ", "GA").await.unwrap(), 1);

    let a = license("YYZZ-SC-00000001", "n1", "h1");
    store
        .insert_license(&a, &event(&a.id, "valid"))
        .await
        .unwrap();
    assert_eq!(store.license(&a.id).await.unwrap().as_ref(), Some(&a));
    assert_eq!(
        store
            .license_by_number("YYZZ", "n1")
            .await
            .unwrap()
            .map(|l| l.id),
        Some(a.id.clone())
    );
    assert!(store.license("YYZZ-SC-00000099").await.unwrap().is_none());

    // The same type and number again: refused, and no event row was left behind.
    let dup = license("YYZZ-SC-00000002", "n1", "h2");
    let e = store
        .insert_license(&dup, &event(&dup.id, "valid"))
        .await
        .unwrap_err();
    assert!(matches!(e, paotui_repository::Error::Conflict(_)), "{e}");
    assert!(store.license(&dup.id).await.unwrap().is_none());
    assert!(store.license_events(&dup.id).await.unwrap().is_empty());

    let mut b = license("YYZZ-SC-00000003", "n3", "h1");
    b.type_code = "SPJY".into();
    b.issued_at_us += 10;
    store
        .insert_license(&b, &event(&b.id, "valid"))
        .await
        .unwrap();
    let all: Vec<_> = store
        .licenses_of_holder("h1", None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(all, [b.id.clone(), a.id.clone()], "newest first");
    let one = store
        .licenses_of_holder("h1", Some("YYZZ"), 10)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert!(
        store
            .licenses_of_holder("h9", None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Status: an optimistic change; a stale `from` changes nothing.
    store
        .change_license_status("valid", &event(&a.id, "suspended"))
        .await
        .unwrap();
    let e = store
        .change_license_status("valid", &event(&a.id, "revoked"))
        .await
        .unwrap_err();
    assert!(matches!(e, paotui_repository::Error::Conflict(_)), "{e}");
    assert_eq!(
        store.license(&a.id).await.unwrap().unwrap().status,
        "suspended"
    );
    let history: Vec<_> = store
        .license_events(&a.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.from_status, e.to_status))
        .collect();
    assert_eq!(
        history,
        [
            (None, "valid".to_string()),
            (Some("valid".to_string()), "suspended".to_string())
        ]
    );

    // Usage records, all or none: one naming an unknown license fails the batch.
    let usage = |id: &str, case: &str| LicenseUse {
        license_id: id.into(),
        at_us: 1,
        caller_dept: "ZW".into(),
        caller_system: "chuangkou".into(),
        operator: Some("clerk".into()),
        case_id: case.into(),
        matter: None,
        request_id: "r".into(),
    };
    store
        .record_license_uses(&[usage(&a.id, "case-1"), usage(&b.id, "case-1")])
        .await
        .unwrap();
    assert!(
        store
            .record_license_uses(&[usage(&a.id, "case-2"), usage("NOPE-SC-00000001", "case-2")])
            .await
            .is_err()
    );
    let uses = store.license_uses(&a.id).await.unwrap();
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].case_id, "case-1");
}

async fn cases(store: &Store) {
    let c = StoredCase {
        id: "CASE-20261125-0001".into(),
        applicant_hmac: "h1".into(),
        applicant_kind: "business".into(),
        site_dept: "ZW".into(),
        site_system: "chuangkou".into(),
        operator: Some("clerk".into()),
        status: "accepted".into(),
        accepted_at_us: 1,
        accepted_on: "2026-11-25".into(),
        closed_at_us: None,
        parties: vec![
            CaseParty {
                role: "legal_rep".into(),
                subject_hmac: "h2".into(),
                subject_kind: "person".into(),
            },
            CaseParty {
                role: "shareholder".into(),
                subject_hmac: "h3".into(),
                subject_kind: "person".into(),
            },
        ],
    };
    let matters = vec![
        CaseMatter {
            matter: "SC-SPJY-XK".into(),
            owner: "SC".into(),
            deadline: Some("2026-12-09".into()),
        },
        CaseMatter {
            matter: "RS-DW-SBDJ".into(),
            owner: "RS".into(),
            deadline: None,
        },
    ];
    let ev = |e: &str, at: i64| CaseEvent {
        at_us: at,
        event: e.into(),
        by_dept: "SC".into(),
        by_system: "dengji".into(),
        operator: None,
        note: Some(format!("{e} note")),
    };
    store
        .open_case(&c, &matters, &ev("accepted", 1))
        .await
        .unwrap();
    // The same id again: refused, nothing added.
    assert!(
        store
            .open_case(&c, &matters, &ev("accepted", 1))
            .await
            .is_err()
    );
    let (got, got_matters) = store.case(&c.id).await.unwrap().unwrap();
    assert_eq!(got, c);
    assert_eq!(got_matters.len(), 2);
    assert_eq!(got_matters[0].matter, "RS-DW-SBDJ", "ordered by matter");
    assert!(store.case("CASE-NONE").await.unwrap().is_none());

    store
        .change_case_status(&c.id, "accepted", "approved", &ev("approved", 2))
        .await
        .unwrap();
    let e = store
        .change_case_status(&c.id, "accepted", "rejected", &ev("rejected", 3))
        .await
        .unwrap_err();
    assert!(matches!(e, paotui_repository::Error::Conflict(_)), "{e}");
    store
        .change_case_status(&c.id, "approved", "completed", &ev("completed", 4))
        .await
        .unwrap();
    let (done, _) = store.case(&c.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status.as_str(), done.closed_at_us),
        ("completed", Some(4))
    );
    let events: Vec<String> = store
        .case_events(&c.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events, ["accepted", "approved", "completed"]);

    let rating = Evaluation {
        at_us: 5,
        score: 5,
        comment: Some("快".into()),
    };
    store.evaluate_case(&c.id, &rating).await.unwrap();
    let e = store.evaluate_case(&c.id, &rating).await.unwrap_err();
    assert!(matches!(e, paotui_repository::Error::Conflict(_)), "{e}");
    assert_eq!(store.case_evaluation(&c.id).await.unwrap(), Some(rating));
    let bad = Evaluation {
        at_us: 6,
        score: 9,
        comment: None,
    };
    assert!(store.evaluate_case("CASE-NONE", &bad).await.is_err());
}

/// The first column of a query's answer, as integers.
async fn ints(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<i64> {
    use datafusion::arrow::array::{Array, Int64Array};
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = vec![];
    for b in batches {
        let c = b.column(0);
        let c = c.as_any().downcast_ref::<Int64Array>().unwrap();
        out.extend((0..c.len()).map(|i| c.value(i)));
    }
    out
}

/// The `audit` table reads the live store page by page, with the index and time ranges
/// of the filters pushed into the store query: every answer equals the rows read directly.
async fn audit_table(store: &Store) {
    use paotui_repository::tables::AuditTable;
    let all = store.audit_range(0, u64::MAX).await.unwrap();
    assert!(all.len() > 10);
    let idx = |pred: &dyn Fn(&paotui_repository::AuditEntry) -> bool| -> Vec<i64> {
        all.iter()
            .filter(|e| pred(e))
            .map(|e| e.index as i64)
            .collect()
    };
    let t = all[all.len() / 2].entry.at_us;
    // Page sizes that split the log unevenly, and the default; the scan read whole and
    // split into contiguous index ranges: (page, target partitions, ranges expected).
    // Three partitions are capped at two; the default page leaves this log whole (fewer
    // than two pages a range).
    assert!(all.len() >= 12, "two ranges of two 3-entry pages");
    for (page, partitions, split) in [(3, 1, 1), (3, 3, 2), (8192, 2, 1)] {
        let config = datafusion::prelude::SessionConfig::new().with_target_partitions(partitions);
        let ctx = datafusion::prelude::SessionContext::new_with_config(config);
        ctx.register_table(
            "audit",
            Arc::new(AuditTable::new(store.clone()).with_page_size(page)),
        )
        .unwrap();
        let scan = ctx
            .sql("SELECT idx FROM audit")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        use datafusion::physical_plan::ExecutionPlanProperties;
        assert_eq!(
            scan.output_partitioning().partition_count(),
            split,
            "page {page}, {partitions} partitions"
        );
        assert_eq!(
            ints(&ctx, "SELECT count(*) FROM audit").await,
            [all.len() as i64]
        );
        assert_eq!(
            ints(&ctx, "SELECT idx FROM audit ORDER BY idx").await,
            idx(&|_| true)
        );
        assert_eq!(
            ints(
                &ctx,
                "SELECT idx FROM audit WHERE idx >= 2 AND idx < 5 ORDER BY idx"
            )
            .await,
            [2, 3, 4]
        );
        assert_eq!(
            ints(
                &ctx,
                &format!("SELECT idx FROM audit WHERE at >= to_timestamp_micros({t}) ORDER BY idx")
            )
            .await,
            idx(&|e| e.entry.at_us >= t)
        );
        assert_eq!(
            ints(
                &ctx,
                &format!("SELECT idx FROM audit WHERE at < to_timestamp_micros({t}) ORDER BY idx")
            )
            .await,
            idx(&|e| e.entry.at_us < t)
        );
        assert_eq!(
            ints(
                &ctx,
                "SELECT idx FROM audit WHERE outcome = 'denied' AND status = 403 ORDER BY idx"
            )
            .await,
            idx(&|e| e.entry.outcome == Outcome::Denied && e.entry.status == 403)
        );
        assert_eq!(
            ints(&ctx, "SELECT count(*) FROM audit WHERE allowed").await,
            [idx(&|e| e.entry.decision.as_ref().is_some_and(|d| d.allowed)).len() as i64]
        );
        assert_eq!(ints(&ctx, "SELECT idx FROM audit LIMIT 4").await.len(), 4);
    }
    join_hashes_the_smaller_side(store, all.len()).await;
}

/// The live `audit` scan carries a row estimate, so a join with a smaller table hashes
/// the smaller table even when the query names `audit` first (without an estimate
/// DataFusion keeps the written order and hashes the whole log).
async fn join_hashes_the_smaller_side(store: &Store, entries: usize) {
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::joins::HashJoinExec;
    use datafusion::physical_plan::{ExecutionPlan, StatisticsArgs, StatisticsContext};
    use paotui_repository::tables::AuditTable;

    // Thresholds of zero: neither side is small enough to be collected whole on their
    // word, so the build side is chosen by comparing the two inputs' row counts (what a
    // join of the log with a table of a million cases goes through).
    let config = datafusion::prelude::SessionConfig::new()
        .with_target_partitions(2)
        .set_usize(
            "datafusion.optimizer.hash_join_single_partition_threshold",
            0,
        )
        .set_usize(
            "datafusion.optimizer.hash_join_single_partition_threshold_rows",
            0,
        );
    let ctx = datafusion::prelude::SessionContext::new_with_config(config);
    ctx.register_table("audit", Arc::new(AuditTable::new(store.clone())))
        .unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("i", DataType::Int64, false)]));
    let small =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
    ctx.register_table(
        "small",
        Arc::new(MemTable::try_new(schema, vec![vec![small]]).unwrap()),
    )
    .unwrap();

    let scan = ctx
        .sql("SELECT idx FROM audit WHERE idx >= 3")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let stats = StatisticsContext::new()
        .compute(scan.as_ref(), &StatisticsArgs::new())
        .unwrap();
    assert_eq!(stats.num_rows.get_value(), Some(&(entries - 3)));

    let plan = ctx
        .sql("SELECT a.idx FROM audit a JOIN small s ON a.idx = s.i")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    fn find_join(p: &Arc<dyn ExecutionPlan>) -> Option<&HashJoinExec> {
        p.downcast_ref::<HashJoinExec>()
            .or_else(|| p.children().into_iter().find_map(find_join))
    }
    let join = find_join(&plan).expect("a hash join");
    assert!(
        join.left().schema().field_with_name("i").is_ok(),
        "the hash table side should be `small`: {}",
        datafusion::physical_plan::displayable(plan.as_ref()).indent(false)
    );
    assert_eq!(
        ints(
            &ctx,
            "SELECT a.idx FROM audit a JOIN small s ON a.idx = s.i ORDER BY 1"
        )
        .await,
        [1, 2]
    );
}

/// Strings of the first column of a query's answer.
async fn texts(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<String> {
    use datafusion::arrow::array::{Array, StringArray};
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = vec![];
    for b in batches {
        let c = b.column(0);
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..c.len()).map(|i| c.value(i).to_owned()));
    }
    out
}

/// The store's other tables (cases, their matters, events and ratings; license metadata,
/// events and uses) read the same rows whatever the page size, match the store's own
/// reads, and split exactly at a pushed-down time bound.
async fn store_tables(store: &Store) {
    use paotui_repository::tables::{StoreTable, TABLES};
    let ctx_with = |page| {
        let ctx = datafusion::prelude::SessionContext::new();
        for spec in &TABLES {
            ctx.register_table(
                spec.name,
                Arc::new(StoreTable::new(store.clone(), spec).with_page_size(page)),
            )
            .unwrap();
        }
        ctx
    };
    let (small, big) = (ctx_with(1), ctx_with(8192));
    for spec in &TABLES {
        let all = format!("SELECT * FROM {} ORDER BY 1, 2", spec.name);
        let a = small.sql(&all).await.unwrap().collect().await.unwrap();
        let b = big.sql(&all).await.unwrap().collect().await.unwrap();
        let pretty = |x| {
            datafusion::arrow::util::pretty::pretty_format_batches(x)
                .unwrap()
                .to_string()
        };
        assert_eq!(pretty(&a), pretty(&b), "{}", spec.name);
        let n = ints(&big, &format!("SELECT count(*) FROM {}", spec.name)).await[0];
        assert!(n > 0, "{} is empty in the conformance store", spec.name);
    }
    // Every case and license the tables list is one the store holds, with its status.
    for id in texts(&small, "SELECT id FROM cases").await {
        let (case, _) = store.case(&id).await.unwrap().unwrap();
        assert_eq!(
            texts(
                &small,
                &format!("SELECT status FROM cases WHERE id = '{id}'")
            )
            .await,
            [case.status]
        );
        let events = store.case_events(&id).await.unwrap();
        assert_eq!(
            ints(
                &small,
                &format!("SELECT count(*) FROM case_events WHERE case_id = '{id}'")
            )
            .await,
            [events.len() as i64]
        );
    }
    for id in texts(&small, "SELECT id FROM licenses").await {
        assert!(store.license(&id).await.unwrap().is_some(), "{id}");
    }
    // A time bound pushed into the store query splits the rows exactly.
    let times = ints(
        &big,
        "SELECT CAST(to_unixtime(at) * 1000000 AS BIGINT) FROM case_events ORDER BY 1",
    )
    .await;
    let t = times[times.len() / 2];
    let before = ints(
        &small,
        &format!("SELECT count(*) FROM case_events WHERE at < to_timestamp_micros({t})"),
    )
    .await[0];
    let after = ints(
        &small,
        &format!("SELECT count(*) FROM case_events WHERE at >= to_timestamp_micros({t})"),
    )
    .await[0];
    assert_eq!(before + after, times.len() as i64);
    assert_eq!(before, times.iter().filter(|x| **x < t).count() as i64);
}

/// Alerts: raised once per (rule, index), listed newest first, acknowledged once.
async fn alerts(store: &Store) {
    use paotui_repository::{Error, NewAlert};
    let alert = |rule: &str, idx| NewAlert {
        rule: rule.into(),
        severity: "high".into(),
        idx,
        detail: Some(format!("{rule} at {idx}")),
        raised_at_us: 1,
    };
    let batch = [alert("a", 1), alert("a", 2), alert("b", 1)];
    assert_eq!(store.insert_alerts(&batch).await.unwrap(), 3);
    assert_eq!(store.insert_alerts(&batch).await.unwrap(), 0, "raised once");
    assert_eq!(
        store
            .insert_alerts(&[alert("a", 2), alert("a", 3)])
            .await
            .unwrap(),
        1
    );
    let open = store.alerts(true, 10).await.unwrap();
    assert_eq!(open.len(), 4);
    assert_eq!(open[0].alert, alert("a", 3), "newest first");
    let id = open[1].id;
    store
        .ack_alert(id, "JC/jiancha", "checked", 5)
        .await
        .unwrap();
    assert!(matches!(
        store.ack_alert(id, "JC/jiancha", "again", 6).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.ack_alert(999_999, "JC/jiancha", "x", 6).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.alerts(true, 10).await.unwrap().len(), 3);
    let all = store.alerts(false, 10).await.unwrap();
    let acked = all.iter().find(|a| a.id == id).unwrap();
    assert_eq!(
        (
            acked.acked_at_us,
            acked.acked_by.as_deref(),
            acked.note.as_deref()
        ),
        (Some(5), Some("JC/jiancha"), Some("checked"))
    );
    assert_eq!(store.alerts(false, 2).await.unwrap().len(), 2);
}

/// Archive runs are recorded only contiguously; the first index logged at a time.
async fn archive_runs(store: &Store) {
    use paotui_repository::{ArchiveRun, Error};
    let run = |from, upto| ArchiveRun {
        from_idx: from,
        upto_idx: upto,
        rows: upto - from,
        dir: format!("/archive/run-{from}-{upto}"),
        at_us: 1,
    };
    assert!(store.archives().await.unwrap().is_empty());
    assert!(matches!(
        store.record_archive(&run(5, 9)).await,
        Err(Error::Conflict(_))
    ));
    store.record_archive(&run(0, 5)).await.unwrap();
    assert!(matches!(
        store.record_archive(&run(0, 7)).await,
        Err(Error::Conflict(_))
    ));
    store.record_archive(&run(5, 9)).await.unwrap();
    assert_eq!(store.archives().await.unwrap(), [run(0, 5), run(5, 9)]);
    let all = store.audit_range(0, u64::MAX).await.unwrap();
    let t = all[3].entry.at_us;
    let first = all.iter().find(|e| e.entry.at_us >= t).unwrap().index as i64;
    assert_eq!(store.audit_index_at(t).await.unwrap(), first);
    assert_eq!(
        store.audit_index_at(i64::MAX).await.unwrap(),
        all.len() as i64,
        "after the last entry: the log's length"
    );
}

async fn run_all(store: &Store) {
    append_round_trip(store).await;
    concurrent_appends_are_dense(store).await;
    license_vault(store).await;
    cases(store).await;
    audit_table(store).await;
    store_tables(store).await;
    alerts(store).await;
    archive_runs(store).await;
}

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend_name(), "sqlite");
    run_all(&store).await;
    store.close().await;
    // Committed entries survive a reopen.
    let again = Store::open(&url).await.unwrap();
    assert_eq!(again.audit_len().await.unwrap(), 47);
}

#[tokio::test]
async fn postgres_conformance() {
    let Some((db, url)) = PgDb::create().await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend_name(), "postgres");
    run_all(&store).await;
    db.drop_db(store).await;
}

/// "Who read my data" across the subject lookup's first block (16,384 entries, indexed by
/// the append that completes it) and the tail after it (read from the log directly).
async fn subject_lookup_across_blocks(store: &Store) -> AuditLog {
    let log = open_log(store, AuditOptions::default()).await;
    let total = 16_384 + 300;
    let mut tasks = Vec::new();
    for w in 0..256usize {
        let l = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in (w..total).step_by(256) {
                // 50 subjects, each in many entries.
                got.push(l.append(entry(i % 50)).await.unwrap());
            }
            got
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = store.audit_range(0, total as u64).await.unwrap();
    assert_eq!(all.len(), total);
    for subject in [0usize, 7, 49] {
        let hmac = entry(subject).subject_hmac.unwrap();
        let mut want: Vec<u64> = all
            .iter()
            .filter(|e| e.entry.subject_hmac.as_deref() == Some(hmac.as_str()))
            .map(|e| e.index)
            .collect();
        want.reverse();
        assert!(want.iter().any(|&i| i < 16_384) && want.iter().any(|&i| i >= 16_384));
        let got: Vec<u64> = store
            .audit_of_subject(&hmac, None, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(got, want, "subject {subject}");
        // Paging by index gives the same entries across the block edge.
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let page = store.audit_of_subject(&hmac, before, 37).await.unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.index);
            paged.extend(page.iter().map(|e| e.index));
        }
        assert_eq!(paged, want, "subject {subject}, paged");
    }
    log
}

/// The subject lookup's block count and its rows, as stored.
const SUBJECT_BLOCKS: &str =
    "SELECT (SELECT blocks FROM audit_subject_blocks), (SELECT COUNT(*) FROM audit_subjects)";

#[tokio::test]
async fn sqlite_subject_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = Store::open(&url).await.unwrap();
    subject_lookup_across_blocks(&store).await;
    let blocks = |url: String| async move {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let n: (i64, i64) = sqlx::query_as(SUBJECT_BLOCKS)
            .fetch_one(&mut c)
            .await
            .unwrap();
        n
    };
    assert_eq!(blocks(url.clone()).await, (1, 16_384));
    // A lookup table that lost its blocks (as a log from before it) is rebuilt when the
    // log is opened; until then the lookup scans the log and still finds everything.
    {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("DELETE FROM audit_subjects; UPDATE audit_subject_blocks SET blocks = 0")
            .execute(&mut c)
            .await
            .unwrap();
    }
    let hmac = entry(7).subject_hmac.unwrap();
    let before = store.audit_of_subject(&hmac, None, 10_000).await.unwrap();
    assert!(before.len() > 300);
    open_log(&store, AuditOptions::default()).await;
    assert_eq!(blocks(url.clone()).await, (1, 16_384));
    assert_eq!(
        store.audit_of_subject(&hmac, None, 10_000).await.unwrap(),
        before
    );
    store.close().await;
}

#[tokio::test]
async fn postgres_subject_lookup() {
    let Some((db, url)) = PgDb::create().await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    subject_lookup_across_blocks(&store).await;
    // The block that the crossing append completed is in the lookup table, whole.
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let n: (i64, i64) = sqlx::query_as(SUBJECT_BLOCKS)
        .fetch_one(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    assert_eq!(n, (1, 16_384));
    db.drop_db(store).await;
}

#[tokio::test]
async fn bad_url_is_refused() {
    let e = Store::open("mysql://x").await.unwrap_err().to_string();
    assert!(e.contains("neither a sqlite:// nor a postgres://"), "{e}");
}

#[tokio::test]
async fn sqlite_in_memory_is_refused() {
    // The audit writer and the readers are connections of their own: a database in
    // memory would be a different, empty one for each.
    let e = Store::open("sqlite://:memory:")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a file"), "{e}");
}
