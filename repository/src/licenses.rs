//! The electronic-license vault's tables (migration 0003).
//!
//! The store keeps what the gateway hands it: HMACs of holders and numbers, and the signed
//! document already sealed. Issuing inserts the license and its first event in one
//! transaction; a status change is an optimistic update (`WHERE status = from`) plus its
//! event, so two concurrent changes cannot both win.

use sqlx::Row;

use crate::store::on_pool;
use crate::{Error, Result, Store};

/// A license as the vault stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLicense {
    pub id: String,
    pub type_code: String,
    pub issuer: String,
    pub number_hmac: String,
    pub holder_hmac: String,
    pub holder_kind: String,
    /// `valid`, `suspended` or `revoked` (expiry is computed from `valid_until`).
    pub status: String,
    pub valid_from: String,
    pub valid_until: Option<String>,
    pub issued_at_us: i64,
    /// `api` or `import`.
    pub source: String,
    pub content_hmac: String,
    /// The sealed compact JWS.
    pub document: Vec<u8>,
}

/// A status change (the first, `from_status = None`, is the issue itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseEvent {
    pub license_id: String,
    pub at_us: i64,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
    pub by_dept: String,
    pub by_system: String,
    pub operator: Option<String>,
    pub request_id: String,
}

/// One fetch of a license for a case (用证记录).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseUse {
    pub license_id: String,
    pub at_us: i64,
    pub caller_dept: String,
    pub caller_system: String,
    pub operator: Option<String>,
    pub case_id: String,
    pub matter: Option<String>,
    pub request_id: String,
}

const LICENSE_COLUMNS: &str = "id, type_code, issuer, number_hmac, holder_hmac, holder_kind, status, \
     valid_from, valid_until, issued_at_us, source, content_hmac, document";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    /// The next serial for licenses of `type_code` issued by `issuer` (1, 2, …).
    pub async fn next_license_serial(&self, type_code: &str, issuer: &str) -> Result<u64> {
        let sql = "INSERT INTO license_serials (type_code, issuer, last) VALUES ($1, $2, 1) \
                   ON CONFLICT (type_code, issuer) DO UPDATE SET last = license_serials.last + 1 \
                   RETURNING last";
        let last: i64 = on_pool!(self, p => sqlx::query_scalar(sql)
            .bind(type_code)
            .bind(issuer)
            .fetch_one(p)
            .await?);
        u64::try_from(last).map_err(|_| Error::Invalid("negative license serial".into()))
    }

    /// Stores a new license with its first event, both or neither. A license with the same
    /// type and number is a [`Error::Conflict`].
    pub async fn insert_license(&self, l: &StoredLicense, first: &LicenseEvent) -> Result<()> {
        let sql = format!(
            "INSERT INTO licenses ({LICENSE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let inserted = sqlx::query(&sql)
                .bind(&l.id)
                .bind(&l.type_code)
                .bind(&l.issuer)
                .bind(&l.number_hmac)
                .bind(&l.holder_hmac)
                .bind(&l.holder_kind)
                .bind(&l.status)
                .bind(&l.valid_from)
                .bind(&l.valid_until)
                .bind(l.issued_at_us)
                .bind(&l.source)
                .bind(&l.content_hmac)
                .bind(&l.document)
                .execute(&mut *tx)
                .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(Error::Conflict(format!(
                        "a {} license with this number is already stored",
                        l.type_code
                    )));
                }
                other => other?,
            };
            sqlx::query(INSERT_EVENT)
                .bind(&first.license_id)
                .bind(first.at_us)
                .bind(&first.from_status)
                .bind(&first.to_status)
                .bind(&first.reason)
                .bind(&first.by_dept)
                .bind(&first.by_system)
                .bind(&first.operator)
                .bind(&first.request_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// One license by id.
    pub async fn license(&self, id: &str) -> Result<Option<StoredLicense>> {
        let sql = format!("SELECT {LICENSE_COLUMNS} FROM licenses WHERE id = $1");
        on_pool!(self, p => sqlx::query(&sql)
            .bind(id)
            .fetch_optional(p)
            .await?
            .map(|r| decode_license(&r))
            .transpose())
    }

    /// The license of `type_code` with this number, if stored.
    pub async fn license_by_number(
        &self,
        type_code: &str,
        number_hmac: &str,
    ) -> Result<Option<StoredLicense>> {
        let sql = format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses WHERE type_code = $1 AND number_hmac = $2"
        );
        on_pool!(self, p => sqlx::query(&sql)
            .bind(type_code)
            .bind(number_hmac)
            .fetch_optional(p)
            .await?
            .map(|r| decode_license(&r))
            .transpose())
    }

    /// A holder's licenses (optionally of one type), newest first, at most `limit`.
    pub async fn licenses_of_holder(
        &self,
        holder_hmac: &str,
        type_code: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredLicense>> {
        let sql = format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses WHERE holder_hmac = $1 \
             AND ($2 IS NULL OR type_code = $2) ORDER BY issued_at_us DESC, id LIMIT $3"
        );
        on_pool!(self, p => sqlx::query(&sql)
            .bind(holder_hmac)
            .bind(type_code)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
            .iter()
            .map(decode_license)
            .collect())
    }

    /// Moves a license from `from` to `event.to_status` and records the event, both or
    /// neither. If the license is no longer in `from` (a concurrent change), nothing is
    /// written and the answer is [`Error::Conflict`].
    pub async fn change_license_status(&self, from: &str, event: &LicenseEvent) -> Result<()> {
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let done = sqlx::query("UPDATE licenses SET status = $1 WHERE id = $2 AND status = $3")
                .bind(&event.to_status)
                .bind(&event.license_id)
                .bind(from)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() != 1 {
                return Err(Error::Conflict(format!(
                    "license {} is no longer {from}",
                    event.license_id
                )));
            }
            sqlx::query(INSERT_EVENT)
                .bind(&event.license_id)
                .bind(event.at_us)
                .bind(from)
                .bind(&event.to_status)
                .bind(&event.reason)
                .bind(&event.by_dept)
                .bind(&event.by_system)
                .bind(&event.operator)
                .bind(&event.request_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A license's history, oldest first.
    pub async fn license_events(&self, id: &str) -> Result<Vec<LicenseEvent>> {
        let sql = "SELECT license_id, at_us, from_status, to_status, reason, by_dept, by_system, \
                   operator, request_id FROM license_events WHERE license_id = $1 ORDER BY seq";
        on_pool!(self, p => sqlx::query(sql)
            .bind(id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| -> Result<LicenseEvent> {
                Ok(LicenseEvent {
                    license_id: r.try_get("license_id")?,
                    at_us: r.try_get("at_us")?,
                    from_status: r.try_get("from_status")?,
                    to_status: r.try_get("to_status")?,
                    reason: r.try_get("reason")?,
                    by_dept: r.try_get("by_dept")?,
                    by_system: r.try_get("by_system")?,
                    operator: r.try_get("operator")?,
                    request_id: r.try_get("request_id")?,
                })
            })
            .collect())
    }

    /// Records fetches of licenses for a case, all or none.
    pub async fn record_license_uses(&self, uses: &[LicenseUse]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let sql = "INSERT INTO license_uses (license_id, at_us, caller_dept, caller_system, \
                   operator, case_id, matter, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for u in uses {
                sqlx::query(sql)
                    .bind(&u.license_id)
                    .bind(u.at_us)
                    .bind(&u.caller_dept)
                    .bind(&u.caller_system)
                    .bind(&u.operator)
                    .bind(&u.case_id)
                    .bind(&u.matter)
                    .bind(&u.request_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A license's usage records, oldest first.
    pub async fn license_uses(&self, id: &str) -> Result<Vec<LicenseUse>> {
        let sql = "SELECT license_id, at_us, caller_dept, caller_system, operator, case_id, \
                   matter, request_id FROM license_uses WHERE license_id = $1 ORDER BY seq";
        on_pool!(self, p => sqlx::query(sql)
            .bind(id)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| -> Result<LicenseUse> {
                Ok(LicenseUse {
                    license_id: r.try_get("license_id")?,
                    at_us: r.try_get("at_us")?,
                    caller_dept: r.try_get("caller_dept")?,
                    caller_system: r.try_get("caller_system")?,
                    operator: r.try_get("operator")?,
                    case_id: r.try_get("case_id")?,
                    matter: r.try_get("matter")?,
                    request_id: r.try_get("request_id")?,
                })
            })
            .collect())
    }
}

const INSERT_EVENT: &str = "INSERT INTO license_events (license_id, at_us, from_status, \
     to_status, reason, by_dept, by_system, operator, request_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

fn decode_license<R: Row>(r: &R) -> Result<StoredLicense>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(StoredLicense {
        id: r.try_get("id")?,
        type_code: r.try_get("type_code")?,
        issuer: r.try_get("issuer")?,
        number_hmac: r.try_get("number_hmac")?,
        holder_hmac: r.try_get("holder_hmac")?,
        holder_kind: r.try_get("holder_kind")?,
        status: r.try_get("status")?,
        valid_from: r.try_get("valid_from")?,
        valid_until: r.try_get("valid_until")?,
        issued_at_us: r.try_get("issued_at_us")?,
        source: r.try_get("source")?,
        content_hmac: r.try_get("content_hmac")?,
        document: r.try_get("document")?,
    })
}
