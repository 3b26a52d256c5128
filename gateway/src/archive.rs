//! The Parquet archive of the audit log (`paotui archive --before DATE`).
//!
//! A run copies the entries logged before `DATE` that no earlier run took — indices
//! `[from, upto)`, contiguous with the last run — into Parquet (zstd), partitioned by day
//! (`<dir>/run-<from>-<upto>/day=YYYY-MM-DD/*.parquet`), then records the run in the store.
//! The entries stay in the store, so `paotui audit verify` still proves them; auditor SQL
//! reads the recorded runs and the live table only from the last `upto`, so each entry is
//! counted once. A run interrupted before it is recorded leaves a directory nobody reads,
//! removed by the next run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::SessionContext;
use paotui_repository::tables::AuditTable;
use paotui_repository::{ArchiveRun, Store};

use crate::{Error, Result};

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Archived {
    pub from_idx: i64,
    pub upto_idx: i64,
    pub rows: i64,
    pub dir: Option<PathBuf>,
}

fn run_dir(dir: &Path, from: i64, upto: i64) -> PathBuf {
    dir.join(format!("run-{from}-{upto}"))
}

/// Archives the entries logged before `before` (a closed day: today at the latest) into
/// `dir`; nothing to archive is not an error.
pub async fn archive(
    store: &Store,
    dir: &Path,
    before: NaiveDate,
    today: NaiveDate,
) -> Result<Archived> {
    if before > today {
        return Err(Error::BadRequest(format!(
            "--before {before} is after today ({today}): only closed days are archived"
        )));
    }
    let runs = store.archives().await?;
    let from = runs.last().map_or(0, |r| r.upto_idx);
    let cut = before
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_micros())
        .unwrap_or(0);
    let upto = store.audit_index_at(cut).await?;
    if upto <= from {
        return Ok(Archived {
            from_idx: from,
            upto_idx: from,
            rows: 0,
            dir: None,
        });
    }
    // Leftovers of an interrupted run: never recorded, never read.
    let recorded: Vec<PathBuf> = runs.iter().map(|r| PathBuf::from(&r.dir)).collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let is_run = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("run-"));
            if is_run && !recorded.contains(&p) {
                std::fs::remove_dir_all(&p).map_err(|e| Error::io(p.display(), e))?;
            }
        }
    }
    let target = run_dir(dir, from, upto);
    std::fs::create_dir_all(&target).map_err(|e| Error::io(target.display(), e))?;
    let ctx = SessionContext::new();
    ctx.register_table("live", Arc::new(AuditTable::new(store.clone())))
        .map_err(|e| Error::Internal(format!("archive: {e}")))?;
    let df = ctx
        .sql(&format!(
            "SELECT *, CAST(CAST(at AS DATE) AS VARCHAR) AS day FROM live \
             WHERE idx >= {from} AND idx < {upto} ORDER BY idx"
        ))
        .await
        .map_err(|e| Error::Internal(format!("archive: {e}")))?;
    let mut parquet = TableParquetOptions::default();
    parquet.global.compression = Some("zstd(3)".into());
    let written = df
        .write_parquet(
            &target.display().to_string(),
            DataFrameWriteOptions::new().with_partition_by(vec!["day".into()]),
            Some(parquet),
        )
        .await
        .map_err(|e| Error::Internal(format!("archive: writing Parquet: {e}")))?;
    let rows: u64 = written
        .iter()
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                .map(|c| c.values().iter().sum::<u64>())
        })
        .sum();
    let rows = i64::try_from(rows).unwrap_or(i64::MAX);
    if rows != upto - from {
        return Err(Error::Internal(format!(
            "archive: wrote {rows} rows for entries {from}..{upto}; the run is not recorded"
        )));
    }
    let (_, now) = crate::vault::now();
    store
        .record_archive(&ArchiveRun {
            from_idx: from,
            upto_idx: upto,
            rows,
            dir: target.display().to_string(),
            at_us: now,
        })
        .await?;
    Ok(Archived {
        from_idx: from,
        upto_idx: upto,
        rows,
        dir: Some(target),
    })
}

/// Registers `audit` as the archive's recorded runs (Parquet) followed by the live table
/// from where the archive ends.
pub async fn register_audit(ctx: &SessionContext, store: &Store) -> Result<()> {
    let runs = store.archives().await?;
    let upto = runs.last().map_or(0, |r| r.upto_idx);
    let live = AuditTable::new(store.clone()).starting_at(upto);
    if runs.is_empty() {
        ctx.register_table("audit", Arc::new(live))
            .map_err(|e| Error::Internal(format!("sql tables: {e}")))?;
        return Ok(());
    }
    ctx.register_table("audit_live", Arc::new(live))
        .map_err(|e| Error::Internal(format!("sql tables: {e}")))?;
    let paths: Vec<String> = runs.iter().map(|r| r.dir.clone()).collect();
    let archived = ctx
        .read_parquet(
            paths,
            datafusion::prelude::ParquetReadOptions::default().table_partition_cols(vec![(
                "day".to_owned(),
                datafusion::arrow::datatypes::DataType::Utf8,
            )]),
        )
        .await
        .map_err(|e| Error::Internal(format!("reading the archive: {e}")))?;
    ctx.register_table("audit_archive", archived.into_view())
        .map_err(|e| Error::Internal(format!("sql tables: {e}")))?;
    let columns: Vec<String> = paotui_repository::tables::audit_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let columns = columns.join(", ");
    let union = ctx
        .sql(&format!(
            "SELECT {columns} FROM audit_archive UNION ALL SELECT {columns} FROM audit_live"
        ))
        .await
        .map_err(|e| Error::Internal(format!("sql tables: {e}")))?;
    ctx.register_table("audit", union.into_view())
        .map_err(|e| Error::Internal(format!("sql tables: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{access, at};
    use datafusion::arrow::util::pretty::pretty_format_batches;

    async fn table(ctx: &SessionContext, sql: &str) -> String {
        let b = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&b).unwrap().to_string()
    }

    /// Entries of three days; archived in two runs across day boundaries; the union of
    /// archive and live returns every entry once, column for column as the store holds
    /// it, through filters that straddle the boundary.
    #[tokio::test]
    async fn archive_and_live_return_each_entry_once() {
        let (dir, store) = crate::testkit::store().await;
        let log = crate::testkit::log(&store).await;
        for (day, n) in [("2026-11-02", 3), ("2026-11-03", 4), ("2026-11-04", 5)] {
            for i in 0..n {
                let ok = i % 2 == 0;
                log.append(access(
                    "service.query",
                    ("SC", "dengji", Some("op")),
                    Some("K1"),
                    Some("population.person"),
                    ok,
                    at(day, 1 + i),
                ))
                .await
                .unwrap();
            }
        }
        let live_only = SessionContext::new();
        live_only
            .register_table("audit", Arc::new(AuditTable::new(store.clone())))
            .unwrap();
        let all = "SELECT * FROM audit ORDER BY idx";
        let expected = table(&live_only, all).await;
        let arch = dir.path().join("archive");
        let today = NaiveDate::from_ymd_opt(2026, 11, 5).unwrap();
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();

        assert!(
            archive(&store, &arch, day(6), today).await.is_err(),
            "not a closed day"
        );
        let first = archive(&store, &arch, day(3), today).await.unwrap();
        assert_eq!((first.from_idx, first.upto_idx, first.rows), (0, 3, 3));
        // Nothing more before the same day; the next run takes the next day only.
        assert_eq!(archive(&store, &arch, day(3), today).await.unwrap().rows, 0);
        // An interrupted run's leftovers are removed, never read.
        std::fs::create_dir_all(arch.join("run-3-99/day=2026-11-03")).unwrap();
        let second = archive(&store, &arch, day(4), today).await.unwrap();
        assert_eq!((second.from_idx, second.upto_idx, second.rows), (3, 7, 4));
        assert!(!arch.join("run-3-99").exists());
        let days: Vec<String> = std::fs::read_dir(second.dir.unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(days, ["day=2026-11-03"]);

        let ctx = SessionContext::new();
        register_audit(&ctx, &store).await.unwrap();
        assert_eq!(
            table(&ctx, all).await,
            expected,
            "each entry once, every column"
        );
        for sql in [
            "SELECT count(*) FROM audit",
            "SELECT count(*) FROM audit WHERE at >= to_timestamp_micros(1793674800000000)",
            "SELECT idx FROM audit WHERE at < to_timestamp_micros(1793674800000000) ORDER BY idx",
            "SELECT outcome, count(*) FROM audit WHERE idx BETWEEN 2 AND 8 GROUP BY 1 ORDER BY 1",
            "SELECT caller_dept, min(idx), max(idx) FROM audit GROUP BY 1",
        ] {
            assert_eq!(
                table(&ctx, sql).await,
                table(&live_only, sql).await,
                "{sql}"
            );
        }
        // The Parquet files are zstd-compressed.
        let file = walk(&arch)
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "parquet"))
            .unwrap();
        let reader = datafusion::parquet::file::reader::SerializedFileReader::new(
            std::fs::File::open(&file).unwrap(),
        )
        .unwrap();
        use datafusion::parquet::file::reader::FileReader;
        let codec = reader.metadata().row_group(0).column(0).compression();
        assert!(
            matches!(codec, datafusion::parquet::basic::Compression::ZSTD(_)),
            "{codec:?}"
        );
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
