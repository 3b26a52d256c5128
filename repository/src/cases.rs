//! Cases (migrations 0004, 0006): the case, its matters, its parties, its events and its
//! evaluation.
//! Opening a case writes all three of case, matters and first event, or nothing; a status
//! change is optimistic (`WHERE status = from`) plus its event.

use sqlx::Row;

use crate::store::on_pool;
use crate::{Error, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCase {
    pub id: String,
    pub applicant_hmac: String,
    /// `person` or `business`.
    pub applicant_kind: String,
    pub site_dept: String,
    pub site_system: String,
    pub operator: Option<String>,
    pub status: String,
    pub accepted_at_us: i64,
    pub accepted_on: String,
    pub closed_at_us: Option<i64>,
    /// Other persons or entities the case's matters name, by role.
    pub parties: Vec<CaseParty>,
}

/// A person or entity a case's matter names besides the applicant (e.g. `legal_rep`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseParty {
    pub role: String,
    pub subject_hmac: String,
    /// `person` or `business`.
    pub subject_kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseMatter {
    pub matter: String,
    pub owner: String,
    /// `None`: an immediate matter.
    pub deadline: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseEvent {
    pub at_us: i64,
    pub event: String,
    pub by_dept: String,
    pub by_system: String,
    pub operator: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub at_us: i64,
    pub score: i32,
    pub comment: Option<String>,
}

const CASE_COLUMNS: &str = "id, applicant_hmac, applicant_kind, site_dept, site_system, operator, \
     status, accepted_at_us, accepted_on, closed_at_us";

const INSERT_CASE_EVENT: &str = "INSERT INTO case_events (case_id, at_us, event, by_dept, \
     by_system, operator, note) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// One row of [`Store::case`]'s statement: `part` says which table it came from; `text`
/// holds columns `a` to `h`.
struct CaseRow {
    part: String,
    text: [Option<String>; 8],
    accepted: Option<i64>,
    closed: Option<i64>,
}

/// A [`CaseRow`] from row `$r`, read by name with its driver's getter `$get`
/// (rusqlite's `get`, sqlx's `try_get`).
macro_rules! case_row {
    ($r:ident, $get:ident) => {
        CaseRow {
            part: $r.$get("part")?,
            text: [
                $r.$get("a")?,
                $r.$get("b")?,
                $r.$get("c")?,
                $r.$get("d")?,
                $r.$get("e")?,
                $r.$get("f")?,
                $r.$get("g")?,
                $r.$get("h")?,
            ],
            accepted: $r.$get("accepted")?,
            closed: $r.$get("closed")?,
        }
    };
}

/// The case with its parties, and its matters, from [`CaseRow`]s.
fn assemble_case(rows: Vec<CaseRow>) -> Result<Option<(StoredCase, Vec<CaseMatter>)>> {
    let mut case = None;
    let (mut parties, mut matters) = (Vec::new(), Vec::new());
    for row in rows {
        let [a, b, c, d, e, f, g, h] = row.text;
        let need = |v: Option<String>, what: &str| {
            v.ok_or_else(|| Error::Invalid(format!("stored case row without its {what}")))
        };
        match row.part.as_str() {
            "case" => {
                case = Some(StoredCase {
                    id: need(a, "id")?,
                    applicant_hmac: need(b, "applicant")?,
                    applicant_kind: need(c, "applicant kind")?,
                    site_dept: need(d, "site department")?,
                    site_system: need(e, "site system")?,
                    operator: f,
                    status: need(g, "status")?,
                    accepted_at_us: row
                        .accepted
                        .ok_or_else(|| Error::Invalid("stored case without its time".into()))?,
                    accepted_on: need(h, "acceptance day")?,
                    closed_at_us: row.closed,
                    parties: Vec::new(),
                });
            }
            "party" => parties.push(CaseParty {
                role: need(a, "party role")?,
                subject_hmac: need(b, "party subject")?,
                subject_kind: need(c, "party kind")?,
            }),
            _ => matters.push(CaseMatter {
                matter: need(a, "matter")?,
                owner: need(b, "matter owner")?,
                deadline: c,
            }),
        }
    }
    Ok(case.map(|mut c| {
        c.parties = parties;
        (c, matters)
    }))
}

/// Case statuses after which nothing changes.
pub const FINAL_CASE_STATUSES: [&str; 2] = ["completed", "rejected"];

impl Store {
    /// Stores a new case with its matters, parties and `accepted` event, all or nothing.
    pub async fn open_case(
        &self,
        c: &StoredCase,
        matters: &[CaseMatter],
        first: &CaseEvent,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO cases ({CASE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(&sql)
                .bind(&c.id)
                .bind(&c.applicant_hmac)
                .bind(&c.applicant_kind)
                .bind(&c.site_dept)
                .bind(&c.site_system)
                .bind(&c.operator)
                .bind(&c.status)
                .bind(c.accepted_at_us)
                .bind(&c.accepted_on)
                .bind(c.closed_at_us)
                .execute(&mut *tx)
                .await?;
            for m in matters {
                sqlx::query("INSERT INTO case_matters (case_id, matter, owner, deadline) VALUES ($1, $2, $3, $4)")
                    .bind(&c.id)
                    .bind(&m.matter)
                    .bind(&m.owner)
                    .bind(&m.deadline)
                    .execute(&mut *tx)
                    .await?;
            }
            for party in &c.parties {
                sqlx::query("INSERT INTO case_parties (case_id, role, subject_hmac, subject_kind) VALUES ($1, $2, $3, $4)")
                    .bind(&c.id)
                    .bind(&party.role)
                    .bind(&party.subject_hmac)
                    .bind(&party.subject_kind)
                    .execute(&mut *tx)
                    .await?;
            }
            bind_event(sqlx::query(INSERT_CASE_EVENT), &c.id, first)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A case (with its parties) and its matters, or `None`.
    pub async fn case(&self, id: &str) -> Result<Option<(StoredCase, Vec<CaseMatter>)>> {
        // One statement for the case, its parties and its matters: every governed read
        // loads its case, and with sqlx's SQLite driver each statement is a round trip to
        // the connection's worker thread (issue G's profile). `part` tells the rows apart;
        // columns a part lacks are NULL.
        const SQL: &str = "\
            SELECT 'case' AS part, id AS a, applicant_hmac AS b, applicant_kind AS c, \
              site_dept AS d, site_system AS e, operator AS f, status AS g, accepted_on AS h, \
              accepted_at_us AS accepted, closed_at_us AS closed \
            FROM cases WHERE id = $1 \
            UNION ALL SELECT 'party', role, subject_hmac, subject_kind, NULL, NULL, NULL, NULL, \
              NULL, NULL, NULL FROM case_parties WHERE case_id = $1 \
            UNION ALL SELECT 'matter', matter, owner, deadline, NULL, NULL, NULL, NULL, \
              NULL, NULL, NULL FROM case_matters WHERE case_id = $1 \
            ORDER BY part, a, b";
        let rows = if let Some(readers) = self.readers() {
            let id = id.to_owned();
            readers
                .run_short(move |c| {
                    let mut stmt = c.prepare_cached(SQL)?;
                    let rows = stmt.query_map([&id], |r| Ok(case_row!(r, get)))?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?
        } else {
            on_pool!(self, p => sqlx::query(SQL)
                .bind(id)
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| -> Result<CaseRow> { Ok(case_row!(r, try_get)) })
                .collect::<Result<Vec<_>>>()?)
        };
        assemble_case(rows)
    }

    /// Moves a case from `from` to `to` with its event, both or neither; closing statuses
    /// stamp `closed_at_us`. A case no longer in `from` is a [`Error::Conflict`].
    pub async fn change_case_status(
        &self,
        id: &str,
        from: &str,
        to: &str,
        event: &CaseEvent,
    ) -> Result<()> {
        let closed = FINAL_CASE_STATUSES.contains(&to).then_some(event.at_us);
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let done = sqlx::query(
                "UPDATE cases SET status = $1, closed_at_us = $2 WHERE id = $3 AND status = $4",
            )
            .bind(to)
            .bind(closed)
            .bind(id)
            .bind(from)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(Error::Conflict(format!("case {id} is no longer {from}")));
            }
            bind_event(sqlx::query(INSERT_CASE_EVENT), id, event)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A case's events, oldest first.
    pub async fn case_events(&self, id: &str) -> Result<Vec<CaseEvent>> {
        let sql = "SELECT at_us, event, by_dept, by_system, operator, note FROM case_events \
                   WHERE case_id = $1 ORDER BY seq";
        on_pool!(self, p => sqlx::query(sql)
            .bind(id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| -> Result<CaseEvent> {
                Ok(CaseEvent {
                    at_us: r.try_get("at_us")?,
                    event: r.try_get("event")?,
                    by_dept: r.try_get("by_dept")?,
                    by_system: r.try_get("by_system")?,
                    operator: r.try_get("operator")?,
                    note: r.try_get("note")?,
                })
            })
            .collect())
    }

    /// Records the case's evaluation; a second one is a [`Error::Conflict`].
    pub async fn evaluate_case(&self, id: &str, e: &Evaluation) -> Result<()> {
        let sql =
            "INSERT INTO case_evaluations (case_id, at_us, score, comment) VALUES ($1, $2, $3, $4)";
        let r = on_pool!(self, p => sqlx::query(sql)
            .bind(id)
            .bind(e.at_us)
            .bind(e.score)
            .bind(&e.comment)
            .execute(p)
            .await
            .map(|_| ()));
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Err(Error::Conflict(
                format!("case {id} has already been evaluated"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The case's evaluation, if given.
    pub async fn case_evaluation(&self, id: &str) -> Result<Option<Evaluation>> {
        let sql = "SELECT at_us, score, comment FROM case_evaluations WHERE case_id = $1";
        on_pool!(self, p => sqlx::query(sql)
            .bind(id)
            .fetch_optional(p)
            .await?
            .map(|r| -> Result<Evaluation> {
                Ok(Evaluation {
                    at_us: r.try_get("at_us")?,
                    score: r.try_get("score")?,
                    comment: r.try_get("comment")?,
                })
            })
            .transpose())
    }
}

fn bind_event<'q, DB: sqlx::Database>(
    q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    case_id: &'q str,
    e: &'q CaseEvent,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(case_id)
        .bind(e.at_us)
        .bind(e.event.as_str())
        .bind(e.by_dept.as_str())
        .bind(e.by_system.as_str())
        .bind(e.operator.clone())
        .bind(e.note.clone())
}
