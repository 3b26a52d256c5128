//! Alerts raised by the supervision rules (migration 0007).
//!
//! An alert is (rule, audit index): inserting one that exists is a no-op, so rules can be
//! evaluated as often as wanted. Acknowledging is an optimistic update (`WHERE acked_at_us
//! IS NULL`): an alert is acknowledged once, by one auditor, with a note.

use sqlx::Row;

use crate::store::on_pool;
use crate::{Error, Result, Store};

/// An alert a rule raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub rule: String,
    /// `low`, `medium` or `high`.
    pub severity: String,
    /// The audit entry behind it.
    pub idx: i64,
    pub detail: Option<String>,
    pub raised_at_us: i64,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAlert {
    pub id: i64,
    pub alert: NewAlert,
    pub acked_at_us: Option<i64>,
    /// `DEPT/system (operator)` of whoever acknowledged it.
    pub acked_by: Option<String>,
    pub note: Option<String>,
}

impl Store {
    /// Stores the alerts not raised before (by rule and index), in one transaction;
    /// answers how many are new.
    pub async fn insert_alerts(&self, alerts: &[NewAlert]) -> Result<u64> {
        let sql = "INSERT INTO alerts (rule, severity, idx, detail, raised_at_us) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (rule, idx) DO NOTHING";
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let mut new = 0;
            for a in alerts {
                new += sqlx::query(sql)
                    .bind(&a.rule)
                    .bind(&a.severity)
                    .bind(a.idx)
                    .bind(&a.detail)
                    .bind(a.raised_at_us)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            Ok(new)
        })
    }

    /// Alerts newest first, at most `limit`; only unacknowledged ones when `open_only`.
    pub async fn alerts(&self, open_only: bool, limit: i64) -> Result<Vec<StoredAlert>> {
        let sql = if open_only {
            "SELECT id, rule, severity, idx, detail, raised_at_us, acked_at_us, acked_by, note \
             FROM alerts WHERE acked_at_us IS NULL ORDER BY id DESC LIMIT $1"
        } else {
            "SELECT id, rule, severity, idx, detail, raised_at_us, acked_at_us, acked_by, note \
             FROM alerts ORDER BY id DESC LIMIT $1"
        };
        on_pool!(self, p => sqlx::query(sql)
            .bind(limit)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| {
                Ok(StoredAlert {
                    id: r.try_get("id")?,
                    alert: NewAlert {
                        rule: r.try_get("rule")?,
                        severity: r.try_get("severity")?,
                        idx: r.try_get("idx")?,
                        detail: r.try_get("detail")?,
                        raised_at_us: r.try_get("raised_at_us")?,
                    },
                    acked_at_us: r.try_get("acked_at_us")?,
                    acked_by: r.try_get("acked_by")?,
                    note: r.try_get("note")?,
                })
            })
            .collect())
    }

    /// Acknowledges alert `id` with a note: not found, or already acknowledged (a
    /// conflict), are errors and change nothing.
    pub async fn ack_alert(&self, id: i64, by: &str, note: &str, at_us: i64) -> Result<()> {
        let sql = "UPDATE alerts SET acked_at_us = $1, acked_by = $2, note = $3 \
                   WHERE id = $4 AND acked_at_us IS NULL";
        let done = on_pool!(self, p => sqlx::query(sql)
            .bind(at_us)
            .bind(by)
            .bind(note)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        if done == 1 {
            return Ok(());
        }
        let exists = on_pool!(self, p => sqlx::query("SELECT id FROM alerts WHERE id = $1")
            .bind(id)
            .fetch_optional(p)
            .await?
            .is_some());
        Err(if exists {
            Error::Conflict(format!("alert {id} is already acknowledged"))
        } else {
            Error::NotFound(format!("no alert {id}"))
        })
    }
}
