//! Alerts (电子监察): supervision rules, each one read-only SQL query over the auditor
//! tables ([`crate::sql`]) returning the audit entries (`idx`, and a `detail` text) it
//! flags. Rules are evaluated on a schedule (`[alerts] interval_s`) and on demand; each
//! (rule, audit index) raises one stored alert, once, which an auditor acknowledges with a
//! note. The default rules are `examples/alerts.toml`, built in.

use std::path::Path;

use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use paotui_policies::catalog::Catalog;
use paotui_repository::{NewAlert, Store};
use serde::Deserialize;

use crate::config::SqlConfig;
use crate::{Error, Result};

/// The built-in rules.
pub const DEFAULT_RULES: &str = include_str!("../../examples/alerts.toml");

/// One rule, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub severity: String,
    pub description: String,
    pub sql: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: Vec<toml::Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    severity: String,
    description: String,
    sql: String,
}

/// Parses and checks a rules file: names `a-z 0-9 _` and unique, a known severity, and
/// SQL that passes the read-only check. Errors name the file and the line.
pub fn parse(file: &str, text: &str) -> Result<Vec<Rule>> {
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let raw: RulesFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(1, |s| line(s.start));
        Error::Config(format!("{file}:{at}: {}", e.message()))
    })?;
    let mut rules: Vec<Rule> = Vec::new();
    for spanned in raw.rules {
        let at = line(spanned.span().start);
        let r = spanned.into_inner();
        let err = |why: String| Error::Config(format!("{file}:{at}: rule {:?}: {why}", r.name));
        let named = (1..=64).contains(&r.name.len())
            && r.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !named {
            return Err(err("the name must be 1-64 characters of a-z 0-9 _".into()));
        }
        if rules.iter().any(|x| x.name == r.name) {
            return Err(err("the name is used twice".into()));
        }
        if !matches!(r.severity.as_str(), "low" | "medium" | "high") {
            return Err(err("severity must be low, medium or high".into()));
        }
        crate::sql::check(&r.sql).map_err(|e| err(e.to_string()))?;
        rules.push(Rule {
            name: r.name,
            severity: r.severity,
            description: r.description.trim().to_owned(),
            sql: r.sql,
        });
    }
    Ok(rules)
}

/// The rules of `[alerts] rules`, or the built-in ones.
pub fn load(path: Option<&Path>) -> Result<Vec<Rule>> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p.display(), e))?;
            parse(&p.display().to_string(), &text)
        }
        None => parse("alerts.toml (built in)", DEFAULT_RULES),
    }
}

/// What one evaluation raised, per rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Raised {
    pub rule: String,
    /// Entries the rule flags now.
    pub flagged: usize,
    /// Of those, alerts not raised before.
    pub new: u64,
}

/// Runs every rule and stores the alerts not raised before. A rule that fails (over its
/// limits, or not returning `idx`) fails the evaluation with its name.
pub async fn evaluate(
    store: &Store,
    catalog: &Catalog,
    limits: &SqlConfig,
    rules: &[Rule],
    now_us: i64,
) -> Result<Vec<Raised>> {
    let ctx = crate::sql::session(store, Some(catalog), limits).await?;
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let fail = |e: Error| Error::Unprocessable {
            detail: format!("rule {}: {e}", rule.name),
            members: serde_json::Map::new(),
        };
        let answer = crate::sql::run(&ctx, &rule.sql, limits)
            .await
            .map_err(fail)?;
        let mut alerts = Vec::new();
        for batch in &answer.batches {
            let idx = batch
                .column_by_name("idx")
                .map(|c| datafusion::arrow::compute::cast(c, &DataType::Int64))
                .transpose()
                .map_err(|e| fail(Error::BadRequest(format!("idx: {e}"))))?
                .ok_or_else(|| fail(Error::BadRequest("must return a column idx".into())))?;
            let idx = idx
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| fail(Error::BadRequest("idx must be an integer".into())))?;
            // Whatever string type the query produced (Utf8, Utf8View …), as Utf8.
            let detail = batch
                .column_by_name("detail")
                .map(|c| datafusion::arrow::compute::cast(c, &DataType::Utf8))
                .transpose()
                .map_err(|e| fail(Error::BadRequest(format!("detail: {e}"))))?;
            let detail = detail
                .as_ref()
                .and_then(|c| c.as_any().downcast_ref::<StringArray>());
            for i in 0..batch.num_rows() {
                if idx.is_null(i) {
                    continue;
                }
                alerts.push(NewAlert {
                    rule: rule.name.clone(),
                    severity: rule.severity.clone(),
                    idx: idx.value(i),
                    detail: detail
                        .filter(|d| !d.is_null(i))
                        .map(|d| d.value(i).to_owned()),
                    raised_at_us: now_us,
                });
            }
        }
        let new = store.insert_alerts(&alerts).await?;
        out.push(Raised {
            rule: rule.name.clone(),
            flagged: alerts.len(),
            new,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testkit::{access, at, case};

    /// Weekday office-hour traffic for open cases, steady per operator, a few refusals:
    /// nothing a rule should flag. With `planted`, one anomaly of each kind besides.
    async fn world(planted: bool) -> (tempfile::TempDir, Store) {
        let (dir, store) = crate::testkit::store().await;
        let log = crate::testkit::log(&store).await;
        let sc = ("SC", "dengji", Some("op1"));
        case(
            &store,
            "K1",
            "2026-11-02",
            "ZW",
            &[("SC-SPJY-XK", "SC", Some("2100-01-01"))],
            &[],
        )
        .await;
        log.append(access(
            "case.open",
            ("ZW", "chuangkou", None),
            Some("K1"),
            None,
            true,
            at("2026-11-02", 1),
        ))
        .await
        .unwrap();
        // 02:00 UTC is 10:00 in China; 9-13 and 16-19 November are weekdays.
        for day in 9..=19 {
            if day == 14 || day == 15 {
                continue;
            }
            for _ in 0..2 {
                let d = format!("2026-11-{day}");
                log.append(access(
                    "service.query",
                    sc,
                    Some("K1"),
                    Some("population.person"),
                    true,
                    at(&d, 2),
                ))
                .await
                .unwrap();
            }
        }
        for _ in 0..4 {
            log.append(access(
                "service.query",
                ("MZ", "dibao", None),
                Some("K1"),
                Some("population.person"),
                false,
                at("2026-11-10", 3),
            ))
            .await
            .unwrap();
        }
        if planted {
            // No case; after the case closed; at 22:00 China time; on a Saturday.
            log.append(access(
                "service.query",
                ("RS", "shebao", None),
                None,
                Some("population.person"),
                true,
                at("2026-11-04", 2),
            ))
            .await
            .unwrap();
            case(
                &store,
                "K2",
                "2026-11-02",
                "ZW",
                &[("SC-GTGSH-SL", "SC", None)],
                &[("approved", "2026-11-05"), ("completed", "2026-11-05")],
            )
            .await;
            log.append(access(
                "service.query",
                ("SC", "dengji", None),
                Some("K2"),
                Some("population.person"),
                true,
                at("2026-11-06", 2),
            ))
            .await
            .unwrap();
            log.append(access(
                "service.query",
                ("SC", "dengji", None),
                Some("K1"),
                Some("population.person"),
                true,
                at("2026-11-04", 14),
            ))
            .await
            .unwrap();
            log.append(access(
                "service.query",
                ("SC", "dengji", None),
                Some("K1"),
                Some("population.person"),
                true,
                at("2026-11-07", 2),
            ))
            .await
            .unwrap();
            // op1 makes 10 queries on the 20th, usually 2.
            for _ in 0..10 {
                log.append(access(
                    "service.query",
                    sc,
                    Some("K1"),
                    Some("population.person"),
                    true,
                    at("2026-11-20", 2),
                ))
                .await
                .unwrap();
            }
            // An open case past its deadline.
            case(
                &store,
                "K3",
                "2026-10-01",
                "ZW",
                &[("SC-SPJY-XK", "SC", Some("2026-10-15"))],
                &[],
            )
            .await;
            log.append(access(
                "case.open",
                ("ZW", "chuangkou", None),
                Some("K3"),
                None,
                true,
                at("2026-10-01", 1),
            ))
            .await
            .unwrap();
            // A fifth refusal of MZ within the hour.
            log.append(access(
                "service.query",
                ("MZ", "dibao", None),
                Some("K1"),
                Some("population.person"),
                false,
                at("2026-11-10", 3),
            ))
            .await
            .unwrap();
        }
        (dir, store)
    }

    /// Each default rule fires on its planted anomaly, exactly, and on nothing in clean
    /// traffic; evaluating again raises nothing new.
    #[tokio::test]
    async fn rules_fire_on_planted_anomalies_and_not_on_clean_data() {
        let rules = parse("alerts.toml", DEFAULT_RULES).unwrap();
        let catalog = crate::testkit::catalog();
        let limits = SqlConfig::default();
        let (_d, clean) = world(false).await;
        let raised = evaluate(&clean, &catalog, &limits, &rules, 1)
            .await
            .unwrap();
        assert!(raised.iter().all(|r| r.flagged == 0), "{raised:?}");
        assert!(clean.alerts(false, 100).await.unwrap().is_empty());

        let (_d, store) = world(true).await;
        let raised = evaluate(&store, &catalog, &limits, &rules, 2)
            .await
            .unwrap();
        let counts: Vec<(&str, usize, u64)> = raised
            .iter()
            .map(|r| (r.rule.as_str(), r.flagged, r.new))
            .collect();
        assert_eq!(
            counts,
            [
                ("access_without_case", 1, 1),
                ("access_after_completion", 1, 1),
                ("outside_office_hours", 2, 2),
                ("operator_volume", 1, 1),
                ("overdue_case", 1, 1),
                ("repeated_denials", 1, 1),
            ]
        );
        let again = evaluate(&store, &catalog, &limits, &rules, 3)
            .await
            .unwrap();
        assert!(again.iter().all(|r| r.new == 0), "{again:?}");
        let alerts = store.alerts(true, 100).await.unwrap();
        assert_eq!(alerts.len(), 7);
        let volume = alerts
            .iter()
            .find(|a| a.alert.rule == "operator_volume")
            .unwrap();
        let detail = volume.alert.detail.as_deref().unwrap();
        assert!(
            detail.contains("op1 at SC made 10 queries on 2026-11-20, usually 2"),
            "{detail}"
        );
        // Every alert links to the audit entry behind it.
        for a in &alerts {
            let e = store
                .audit_entry(a.alert.idx as u64)
                .await
                .unwrap()
                .unwrap();
            let want = if a.alert.rule == "overdue_case" {
                "case.open"
            } else {
                "service.query"
            };
            assert_eq!(e.entry.action, want, "{a:?}");
        }
    }

    #[test]
    fn the_built_in_rules_parse() {
        let rules = parse("alerts.toml", DEFAULT_RULES).unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "access_without_case",
                "access_after_completion",
                "outside_office_hours",
                "operator_volume",
                "overdue_case",
                "repeated_denials"
            ]
        );
    }

    #[test]
    fn bad_rules_name_the_file_and_line() {
        let ok = "[[rules]]\nname = \"x\"\nseverity = \"low\"\ndescription = \"d\"\nsql = \"SELECT 1 AS idx\"\n";
        assert!(parse("r.toml", ok).is_ok());
        for (from, to, want) in [
            (
                "name = \"x\"",
                "name = \"X Y\"",
                "r.toml:1: rule \"X Y\": the name",
            ),
            ("\"low\"", "\"urgent\"", "r.toml:1: rule \"x\": severity"),
            ("SELECT 1 AS idx", "DELETE FROM audit", "found DELETE"),
            ("sql =", "query =", "r.toml:5: unknown field"),
        ] {
            let e = parse("r.toml", &ok.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{to}: {e}");
        }
        let twice = format!("{ok}{ok}");
        let e = parse("r.toml", &twice).unwrap_err().to_string();
        assert!(
            e.contains("r.toml:6: rule \"x\": the name is used twice"),
            "{e}"
        );
    }
}
