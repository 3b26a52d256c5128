//! The supervision figures the seeds report (电子监察), each one SQL query over the
//! auditor tables ([`crate::sql`]) — defined here and nowhere else, served at
//! `GET /v1/stats/{figure}` and printed by `paotui stats`.
//!
//! Every figure takes the same filters: `from` / `to` (days, inclusive, UTC) on when a
//! case was accepted (or, for calls and denials, when the request was made); `dept`, the
//! handling department (a case with a matter it owns; the caller for calls and denials);
//! `site`, the department whose window accepted the case.

use chrono::NaiveDate;
use paotui_certs::DeptCode;

use crate::{Error, Result};

/// One figure: its name in the URL, its title, what it counts, and its SQL.
#[derive(Debug)]
pub struct Figure {
    pub name: &'static str,
    pub title: &'static str,
    pub definition: &'static str,
    /// The query after the shared `scope` / `facts` CTEs (see [`Filters::sql`]).
    body: &'static str,
}

/// The figures, in the order `paotui stats` prints them.
pub static FIGURES: [Figure; 8] = [
    Figure {
        name: "cases",
        title: "办件量 cases handled",
        definition: "Cases accepted in the period, and how many of them are completed, rejected or still open.",
        body: "SELECT count(*) AS accepted, \
               sum(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS completed, \
               sum(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END) AS rejected, \
               sum(CASE WHEN status IN ('completed', 'rejected') THEN 0 ELSE 1 END) AS open \
               FROM facts",
    },
    Figure {
        name: "immediate",
        title: "即办件率 immediate-case share",
        definition: "Share of the cases accepted whose matters are all immediate (即办, no promised deadline).",
        body: "SELECT count(*) AS cases, \
               sum(CASE WHEN deadline IS NULL THEN 1 ELSE 0 END) AS immediate, \
               CAST(sum(CASE WHEN deadline IS NULL THEN 1 ELSE 0 END) AS DOUBLE) \
                 / NULLIF(count(*), 0) AS share \
               FROM facts",
    },
    Figure {
        name: "on_time",
        title: "按时/提前办结率 on-time and early completion",
        definition: "Among completed cases with a promised deadline (the latest of their matters'): completed on or before the deadline day (on time), and before it (early).",
        body: "SELECT count(*) AS completed_promised, \
               sum(CASE WHEN CAST(closed_at AS DATE) <= deadline THEN 1 ELSE 0 END) AS on_time, \
               sum(CASE WHEN CAST(closed_at AS DATE) < deadline THEN 1 ELSE 0 END) AS early, \
               CAST(sum(CASE WHEN CAST(closed_at AS DATE) <= deadline THEN 1 ELSE 0 END) AS DOUBLE) \
                 / NULLIF(count(*), 0) AS on_time_rate, \
               CAST(sum(CASE WHEN CAST(closed_at AS DATE) < deadline THEN 1 ELSE 0 END) AS DOUBLE) \
                 / NULLIF(count(*), 0) AS early_rate \
               FROM facts WHERE status = 'completed' AND deadline IS NOT NULL",
    },
    Figure {
        name: "tongban",
        title: "通办率 accepted away from the owning department",
        definition: "Share of the cases accepted at a window whose department handles none of the case's matters (一门办理 / 通办).",
        body: "SELECT count(*) AS cases, \
               sum(CASE WHEN own_matters = 0 THEN 1 ELSE 0 END) AS elsewhere, \
               CAST(sum(CASE WHEN own_matters = 0 THEN 1 ELSE 0 END) AS DOUBLE) \
                 / NULLIF(count(*), 0) AS share \
               FROM facts",
    },
    Figure {
        name: "reuse",
        title: "用证率 licenses reused and paper copies avoided",
        definition: "For the cases accepted: stored licenses reused for them (each license once per case), data-service answers used for them (each service once per case), both per case, and their sum: paper copies the applicants did not bring.",
        body: "SELECT (SELECT count(*) FROM facts) AS cases, \
               (SELECT count(*) FROM (SELECT DISTINCT u.case_id, u.license_id FROM license_uses u \
                  JOIN facts f ON u.case_id = f.id)) AS licenses_reused, \
               (SELECT count(*) FROM (SELECT DISTINCT a.case_id, a.service FROM audit a \
                  JOIN facts f ON a.case_id = f.id \
                  WHERE a.action = 'service.query' AND a.outcome = 'ok')) AS data_used, \
               CAST((SELECT count(*) FROM (SELECT DISTINCT u.case_id, u.license_id FROM license_uses u \
                  JOIN facts f ON u.case_id = f.id)) AS DOUBLE) \
                 / NULLIF((SELECT count(*) FROM facts), 0) AS licenses_per_case, \
               (SELECT count(*) FROM (SELECT DISTINCT u.case_id, u.license_id FROM license_uses u \
                  JOIN facts f ON u.case_id = f.id)) \
               + (SELECT count(*) FROM (SELECT DISTINCT a.case_id, a.service FROM audit a \
                  JOIN facts f ON a.case_id = f.id \
                  WHERE a.action = 'service.query' AND a.outcome = 'ok')) AS papers_avoided",
    },
    Figure {
        name: "calls",
        title: "数据调用 data-service calls by consumer and provider",
        definition: "Answered data-service queries made in the period, by the calling (consumer) department and the service's owning (provider) department.",
        // Counted by (consumer, service) first and joined with the few services after:
        // joining first hashed a service string and copied an owner string for every
        // call, about a third of DataFusion's time over a 10M-entry archive.
        body: "SELECT t.caller_dept AS consumer, s.owner AS provider, sum(t.n) AS calls \
               FROM (SELECT caller_dept, service, count(*) AS n FROM calls \
                 GROUP BY caller_dept, service) t \
               JOIN services s ON t.service = s.id \
               GROUP BY t.caller_dept, s.owner ORDER BY consumer, provider",
    },
    Figure {
        name: "denials",
        title: "拒绝 denials by reason",
        definition: "Requests refused in the period, by action and the policies that refused them (`[]`: no policy permitted it; null: refused before any policy decision).",
        body: "SELECT action, policies, count(*) AS denials FROM denied \
               GROUP BY action, policies ORDER BY denials DESC, action, policies",
    },
    Figure {
        name: "evaluation",
        title: "一事一评 applicants' ratings",
        definition: "Ratings (1-5) recorded for the cases accepted in the period: how many, and their mean.",
        body: "SELECT count(*) AS rated, avg(CAST(e.score AS DOUBLE)) AS mean_score \
               FROM evaluations e JOIN facts f ON e.case_id = f.id",
    },
];

/// A figure by name.
pub fn figure(name: &str) -> Result<&'static Figure> {
    FIGURES.iter().find(|f| f.name == name).ok_or_else(|| {
        Error::NotFound(format!(
            "no figure {name:?}; the figures are {}",
            FIGURES
                .iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// The filters every figure takes.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub dept: Option<DeptCode>,
    pub site: Option<DeptCode>,
}

impl Filters {
    /// Parses `from`, `to` (YYYY-MM-DD), `dept`, `site` as given at the API or CLI.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        dept: Option<&str>,
        site: Option<&str>,
    ) -> Result<Filters> {
        let day = |name: &str, v: Option<&str>| {
            v.map(|v| {
                NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .map_err(|_| Error::BadRequest(format!("{name} must be a date YYYY-MM-DD")))
            })
            .transpose()
        };
        let dept_code = |name: &str, v: Option<&str>| {
            v.map(|v| DeptCode::parse(v).map_err(|e| Error::BadRequest(format!("{name}: {e}"))))
                .transpose()
        };
        let f = Filters {
            from: day("from", from)?,
            to: day("to", to)?,
            dept: dept_code("dept", dept)?,
            site: dept_code("site", site)?,
        };
        if let (Some(a), Some(b)) = (f.from, f.to)
            && a > b
        {
            return Err(Error::BadRequest("from is after to".into()));
        }
        Ok(f)
    }

    /// The figure's full query: the shared CTEs with the filters written in, then its
    /// body. Values are inlined only after parsing (a date's microseconds, a department
    /// code of A-Z 0-9), so nothing a caller sends reaches the SQL text unchecked. A
    /// filter not given writes no condition (an always-true bound still costs a
    /// comparison per row over the whole log).
    pub fn sql(&self, figure: &Figure) -> String {
        // Bounds within what DataFusion's nanosecond timestamps hold (1970 to 2262).
        const LAST: i64 = 9_183_110_400_000_000;
        let micros = |d: NaiveDate| {
            d.and_time(chrono::NaiveTime::MIN)
                .and_utc()
                .timestamp_micros()
                .clamp(0, LAST)
        };
        // `"at"` is quoted: a plain word in DataFusion, a keyword in other engines (DuckDB,
        // which the benches run the same text on).
        let period = |column: &str| {
            let mut c = Vec::new();
            if let Some(from) = self.from {
                c.push(format!("{column} >= to_timestamp_micros({})", micros(from)));
            }
            if let Some(to) = self.to {
                let end = to.succ_opt().map_or(LAST, micros);
                c.push(format!("{column} < to_timestamp_micros({end})"));
            }
            c
        };
        let filtered = |select: &str, conditions: Vec<String>| {
            if conditions.is_empty() {
                select.to_owned()
            } else {
                format!("{select} WHERE {}", conditions.join(" AND "))
            }
        };
        let mut scope = period("c.accepted_at");
        if let Some(site) = &self.site {
            scope.push(format!("c.site_dept = '{site}'"));
        }
        if let Some(dept) = &self.dept {
            scope.push(format!(
                "c.id IN (SELECT case_id FROM case_matters WHERE owner = '{dept}')"
            ));
        }
        let mut calls = vec![
            "action = 'service.query'".to_owned(),
            "outcome = 'ok'".into(),
        ];
        let mut denied = period("\"at\"");
        calls.extend(denied.iter().cloned());
        if let Some(dept) = &self.dept {
            calls.push(format!("caller_dept = '{dept}'"));
            denied.push(format!("caller_dept = '{dept}'"));
        }
        // `facts` groups by the case id alone and takes the case's own columns with
        // `max` (one value per id, the primary key): grouping by those columns as well
        // made DataFusion treat a filtered, constant `status` as an ordering and emit
        // groups in its slower partially-sorted mode (on_time ran 2.2x DuckDB's time).
        format!(
            "WITH scope AS ({}), \
             facts AS (\
               SELECT s.id, max(s.status) AS status, max(s.site_dept) AS site_dept, \
                 max(s.closed_at) AS closed_at, max(m.deadline) AS deadline, \
                 sum(CASE WHEN m.owner = s.site_dept THEN 1 ELSE 0 END) AS own_matters \
               FROM scope s JOIN case_matters m ON m.case_id = s.id \
               GROUP BY s.id), \
             calls AS ({}), \
             denied AS ({}) \
             {}",
            filtered("SELECT c.* FROM cases c", scope),
            filtered("SELECT * FROM audit", calls),
            filtered("SELECT * FROM denials", denied),
            figure.body
        )
    }
}

/// Computes `figure` under `filters` over the store, as JSON rows (the figure queries
/// run under the same `[sql]` limits as auditors' own).
pub async fn compute(
    store: &paotui_repository::Store,
    catalog: &paotui_policies::catalog::Catalog,
    limits: &crate::config::SqlConfig,
    figure: &Figure,
    filters: &Filters,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let ctx = crate::sql::session(store, Some(catalog), limits).await?;
    let answer = crate::sql::run(&ctx, &filters.sql(figure), limits).await?;
    let batch = datafusion::arrow::compute::concat_batches(&answer.schema, &answer.batches)
        .map_err(|e| Error::Internal(format!("stats: {e}")))?;
    crate::routes::services::json_rows(&batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{at, case};
    use paotui_repository::{
        Evaluation, LicenseEvent, LicenseUse, NewAuditEntry, Store, StoredLicense,
    };
    use serde_json::{Value, json};

    fn query(case: &str, service: &str, ok: bool, day: &str) -> NewAuditEntry {
        crate::testkit::access(
            "service.query",
            ("SC", "dengji", None),
            Some(case),
            Some(service),
            ok,
            at(day, 10),
        )
    }

    /// A world built so every figure's answer is known exactly: six cases accepted in
    /// November (one in October, outside the period), on time, early, late, rejected,
    /// open; license reuses, data answers and a denial; ratings.
    async fn world() -> (tempfile::TempDir, Store) {
        let (dir, store) = crate::testkit::store().await;
        let done = |d: &'static str| [("approved", d), ("completed", d)];
        case(
            &store,
            "C1",
            "2026-11-02",
            "ZW",
            &[("SC-GTGSH-SL", "SC", None)],
            &done("2026-11-02"),
        )
        .await;
        case(
            &store,
            "C2",
            "2026-11-02",
            "SC",
            &[("SC-SPJY-XK", "SC", Some("2026-11-16"))],
            &done("2026-11-10"),
        )
        .await;
        case(
            &store,
            "C3",
            "2026-11-02",
            "ZW",
            &[("SC-SPJY-XK", "SC", Some("2026-11-16"))],
            &done("2026-11-16"),
        )
        .await;
        case(
            &store,
            "C4",
            "2026-11-02",
            "ZW",
            &[("GA-HK-QR", "GA", Some("2026-11-09"))],
            &done("2026-11-12"),
        )
        .await;
        case(
            &store,
            "C5",
            "2026-11-03",
            "SC",
            &[("SC-GTGSH-SL", "SC", None)],
            &[],
        )
        .await;
        case(
            &store,
            "C6",
            "2026-11-04",
            "ZW",
            &[("SC-SPJY-XK", "SC", Some("2026-11-18"))],
            &[("rejected", "2026-11-05")],
        )
        .await;
        case(
            &store,
            "C7",
            "2026-10-20",
            "ZW",
            &[("SC-GTGSH-SL", "SC", None)],
            &done("2026-10-20"),
        )
        .await;

        let license = StoredLicense {
            id: "YYZZ-SC-00000001".into(),
            type_code: "YYZZ".into(),
            issuer: "SC".into(),
            number_hmac: "n".into(),
            holder_hmac: "h".into(),
            holder_kind: "business".into(),
            status: "valid".into(),
            valid_from: "2020-01-01".into(),
            valid_until: None,
            issued_at_us: at("2020-01-01", 9),
            source: "import".into(),
            content_hmac: "c".into(),
            document: vec![1],
        };
        let issued = LicenseEvent {
            license_id: license.id.clone(),
            at_us: license.issued_at_us,
            from_status: None,
            to_status: "valid".into(),
            reason: None,
            by_dept: "SC".into(),
            by_system: "dengji".into(),
            operator: None,
            request_id: "r0".into(),
        };
        store.insert_license(&license, &issued).await.unwrap();
        let uses: Vec<LicenseUse> = ["C2", "C2", "C3"]
            .iter()
            .map(|c| LicenseUse {
                license_id: license.id.clone(),
                at_us: at("2026-11-03", 9),
                caller_dept: "ZW".into(),
                caller_system: "window".into(),
                operator: None,
                case_id: (*c).into(),
                matter: None,
                request_id: "r".into(),
            })
            .collect();
        store.record_license_uses(&uses).await.unwrap();

        let log = crate::testkit::log(&store).await;
        for e in [
            query("C1", "population.person", true, "2026-11-02"),
            query("C1", "population.person", true, "2026-11-02"),
            query("C1", "property.by_owner", true, "2026-11-02"),
            query("C2", "population.person", true, "2026-11-03"),
            query("C3", "population.person", false, "2026-11-03"),
            // Outside the period: neither a call nor a denial of November.
            query("C7", "population.person", true, "2026-10-20"),
        ] {
            log.append(e).await.unwrap();
        }
        for (c, score) in [("C1", 5), ("C2", 4), ("C7", 1)] {
            store
                .evaluate_case(
                    c,
                    &Evaluation {
                        at_us: at("2026-11-20", 9),
                        score,
                        comment: None,
                    },
                )
                .await
                .unwrap();
        }
        (dir, store)
    }

    async fn figure_rows(store: &Store, name: &str, f: &Filters) -> Vec<Value> {
        let catalog = crate::testkit::catalog();
        compute(
            store,
            &catalog,
            &Default::default(),
            figure(name).unwrap(),
            f,
        )
        .await
        .unwrap()
        .into_iter()
        .map(Value::Object)
        .collect()
    }

    /// Every seed figure on a world whose answers are known.
    #[tokio::test]
    async fn every_figure_matches_the_world_it_was_built_for() {
        let (_dir, store) = world().await;
        let nov = Filters::parse(Some("2026-11-01"), Some("2026-11-30"), None, None).unwrap();
        let one = |rows: Vec<Value>| rows.into_iter().next().unwrap();
        assert_eq!(
            one(figure_rows(&store, "cases", &nov).await),
            json!({"accepted": 6, "completed": 4, "rejected": 1, "open": 1})
        );
        assert_eq!(
            one(figure_rows(&store, "immediate", &nov).await),
            json!({"cases": 6, "immediate": 2, "share": 2.0 / 6.0})
        );
        assert_eq!(
            one(figure_rows(&store, "on_time", &nov).await),
            json!({"completed_promised": 3, "on_time": 2, "early": 1,
                   "on_time_rate": 2.0 / 3.0, "early_rate": 1.0 / 3.0})
        );
        assert_eq!(
            one(figure_rows(&store, "tongban", &nov).await),
            json!({"cases": 6, "elsewhere": 4, "share": 4.0 / 6.0})
        );
        assert_eq!(
            one(figure_rows(&store, "reuse", &nov).await),
            json!({"cases": 6, "licenses_reused": 2, "data_used": 3,
                   "licenses_per_case": 2.0 / 6.0, "papers_avoided": 5})
        );
        assert_eq!(
            figure_rows(&store, "calls", &nov).await,
            [
                json!({"consumer": "SC", "provider": "BDC", "calls": 1}),
                json!({"consumer": "SC", "provider": "GA", "calls": 3}),
            ]
        );
        assert_eq!(
            figure_rows(&store, "denials", &nov).await,
            [
                json!({"action": "service.query", "policies": "[\"query-needs-its-case\"]", "denials": 1})
            ]
        );
        assert_eq!(
            one(figure_rows(&store, "evaluation", &nov).await),
            json!({"rated": 2, "mean_score": 4.5})
        );
        // Filters: the handling department, the accepting window, the whole log.
        let ga = Filters::parse(Some("2026-11-01"), None, Some("GA"), None).unwrap();
        assert_eq!(
            one(figure_rows(&store, "on_time", &ga).await)["completed_promised"],
            1
        );
        assert_eq!(one(figure_rows(&store, "on_time", &ga).await)["on_time"], 0);
        // The department filter on calls and denials is the caller's: every request of
        // this world came from SC.
        let nov_sc =
            Filters::parse(Some("2026-11-01"), Some("2026-11-30"), Some("SC"), None).unwrap();
        let nov_ga =
            Filters::parse(Some("2026-11-01"), Some("2026-11-30"), Some("GA"), None).unwrap();
        assert_eq!(
            figure_rows(&store, "calls", &nov_sc).await,
            figure_rows(&store, "calls", &nov).await
        );
        assert_eq!(figure_rows(&store, "calls", &nov_sc).await.len(), 2);
        assert!(figure_rows(&store, "calls", &nov_ga).await.is_empty());
        assert_eq!(figure_rows(&store, "denials", &nov_sc).await.len(), 1);
        assert!(figure_rows(&store, "denials", &nov_ga).await.is_empty());
        let sc_site = Filters::parse(None, Some("2026-11-30"), None, Some("SC")).unwrap();
        assert_eq!(
            one(figure_rows(&store, "cases", &sc_site).await),
            json!({"accepted": 2, "completed": 1, "rejected": 0, "open": 1})
        );
        let all = Filters::default();
        assert_eq!(one(figure_rows(&store, "cases", &all).await)["accepted"], 7);
        assert_eq!(
            one(figure_rows(&store, "evaluation", &all).await),
            json!({"rated": 3, "mean_score": 10.0 / 3.0})
        );
    }

    #[test]
    fn filters_are_parsed_at_the_edge() {
        for (from, to, dept, site, why) in [
            (Some("2026-13-01"), None, None, None, "from must be a date"),
            (None, Some("yesterday"), None, None, "to must be a date"),
            (None, None, Some("sc'; DROP"), None, "dept"),
            (None, None, None, Some("a b"), "site"),
            (
                Some("2026-11-02"),
                Some("2026-11-01"),
                None,
                None,
                "from is after to",
            ),
        ] {
            let e = Filters::parse(from, to, dept, site)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{e}");
        }
        assert!(
            figure("nope")
                .unwrap_err()
                .to_string()
                .contains("cases, immediate")
        );
    }
}
