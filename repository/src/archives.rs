//! The Parquet archive's record of runs (migration 0008).

use sqlx::Row;

use crate::store::on_pool;
use crate::{Error, Result, Store};

/// One recorded Parquet archive run: audit entries `[from_idx, upto_idx)` under `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRun {
    pub from_idx: i64,
    pub upto_idx: i64,
    pub rows: i64,
    pub dir: String,
    pub at_us: i64,
}

impl Store {
    /// The recorded archive runs, oldest first.
    pub async fn archives(&self) -> Result<Vec<ArchiveRun>> {
        let sql = "SELECT from_idx, upto_idx, rows, dir, at_us FROM archives ORDER BY upto_idx";
        on_pool!(self, p => sqlx::query(sql)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| {
                Ok(ArchiveRun {
                    from_idx: r.try_get("from_idx")?,
                    upto_idx: r.try_get("upto_idx")?,
                    rows: r.try_get("rows")?,
                    dir: r.try_get("dir")?,
                    at_us: r.try_get("at_us")?,
                })
            })
            .collect())
    }

    /// Records a run, only if it starts where the last one ended (0 for the first): two
    /// archivers racing cannot both record overlapping runs.
    pub async fn record_archive(&self, run: &ArchiveRun) -> Result<()> {
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let last: Option<i64> = sqlx::query_scalar("SELECT max(upto_idx) FROM archives")
                .fetch_one(&mut *tx)
                .await?;
            if last.unwrap_or(0) != run.from_idx {
                return Err(Error::Conflict(format!(
                    "the archive ends at entry {}, not {}: another archive ran meanwhile",
                    last.unwrap_or(0),
                    run.from_idx
                )));
            }
            sqlx::query(
                "INSERT INTO archives (from_idx, upto_idx, rows, dir, at_us) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(run.from_idx)
            .bind(run.upto_idx)
            .bind(run.rows)
            .bind(&run.dir)
            .bind(run.at_us)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The first index whose entry was logged at or after `at_us` (the log's length when
    /// none was).
    pub async fn audit_index_at(&self, at_us: i64) -> Result<i64> {
        let first: Option<i64> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT min(idx) FROM audit_entries WHERE at_us >= $1",
        )
        .bind(at_us)
        .fetch_one(p)
        .await?);
        match first {
            Some(i) => Ok(i),
            None => Ok(i64::try_from(self.audit_len().await?).unwrap_or(i64::MAX)),
        }
    }
}
