use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Row, SqlitePool, TypeInfo};

use crate::batch::{Cell, ColKind};
use crate::source::SourceLimits;
use crate::sqldb;
use crate::{Error, Result};

/// A department database in a SQLite file, opened read-only (`SQLITE_OPEN_READONLY` and
/// `PRAGMA query_only`), so no catalog query can write to it whatever its SQL says.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    name: String,
    pool: SqlitePool,
    limits: SourceLimits,
}

impl SqliteSource {
    pub async fn open(name: &str, path: &Path, limits: SourceLimits) -> Result<Self> {
        let unavailable = |detail: String| Error::Unavailable {
            source_name: name.to_owned(),
            detail,
        };
        if !path.exists() {
            return Err(unavailable(format!("{} does not exist", path.display())));
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| unavailable(e.to_string()))?
            .read_only(true)
            .pragma("query_only", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(limits.statement_timeout)
            .connect_with(opts)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(SqliteSource {
            name: name.to_owned(),
            pool,
            limits,
        })
    }
}

/// Declared column type → Arrow kind (SQLite's type affinity rules, plus dates).
fn kind_of(declared: &str) -> ColKind {
    let t = declared.to_ascii_uppercase();
    if t.contains("BOOL") {
        ColKind::Bool
    } else if t.contains("INT") {
        ColKind::Int
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        ColKind::Float
    } else if t.contains("DEC") || t.contains("NUMERIC") {
        ColKind::Decimal
    } else if t == "DATE" {
        ColKind::Date
    } else if t.contains("DATETIME") || t.contains("TIMESTAMP") {
        ColKind::Timestamp
    } else if t.contains("BLOB") {
        ColKind::Bytes
    } else {
        ColKind::Text
    }
}

fn decode_cell(
    row: &SqliteRow,
    i: usize,
    kind: &mut ColKind,
    ty: &str,
) -> Result<Cell, sqlx::Error> {
    // `ty` is the value's storage class (sqlx names are upper case).
    let storage = ty;
    // Expressions (COUNT(*), CASE …) have no declared type: the first non-NULL value's
    // storage class decides the column's kind.
    let declared = row.column(i).type_info().name();
    if *kind == ColKind::Text && matches!(declared, "" | "NULL") {
        match storage {
            "INTEGER" => *kind = ColKind::Int,
            "REAL" => *kind = ColKind::Float,
            "BLOB" => *kind = ColKind::Bytes,
            _ => {}
        }
    }
    let cell = match (*kind, storage) {
        (ColKind::Decimal, "INTEGER") => Cell::Int(row.try_get(i)?),
        (ColKind::Decimal, "REAL") => {
            let f: f64 = row.try_get(i)?;
            Cell::Decimal(
                rust_decimal::Decimal::try_from(f).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            )
        }
        (ColKind::Decimal, _) => {
            let s: String = row.try_get(i)?;
            Cell::Decimal(s.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?)
        }
        (ColKind::Bool | ColKind::Int, _) => Cell::Int(row.try_get(i)?),
        (ColKind::Float, _) => Cell::Float(row.try_get(i)?),
        (ColKind::Bytes, _) => Cell::Bytes(row.try_get(i)?),
        (ColKind::Text, "INTEGER") => Cell::Int(row.try_get(i)?),
        (ColKind::Text, "REAL") => Cell::Float(row.try_get(i)?),
        _ => Cell::Text(row.try_get(i)?),
    };
    Ok(cell)
}

// No transaction: the connection itself cannot write.
sqldb::sqlx_source!(SqliteSource, sqlx::Sqlite, SqliteRow, begin: None, placeholder: |_| "?".to_owned());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataSource;
    use datafusion::arrow::array::{Array, AsArray};
    use paotui_policies::catalog::ParamValue;

    #[tokio::test]
    async fn reads_rows_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        crate::demo::generate(&crate::demo::Options {
            dir: dir.path().to_owned(),
            people: 20,
            seed: 7,
            postgres: None,
            mysql: None,
            progress: false,
        })
        .await
        .unwrap();
        let path = dir.path().join(crate::demo::POPULATION_DB);
        let src = SqliteSource::open(
            "population",
            &path,
            SourceLimits {
                max_rows: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let rows = src
            .query(
                "SELECT id_number, name FROM person WHERE gender = :g",
                &[ParamValue::Text("男".into())],
            )
            .await
            .unwrap();
        let schema = rows.batch.schema();
        assert_eq!(schema.field(0).name(), "id_number");
        assert!(rows.batch.num_rows() <= 5);
        // The connection is read-only: even SQL that slipped past validation cannot write.
        let e = src
            .query("DELETE FROM person WHERE :x = 1", &[ParamValue::Integer(1)])
            .await;
        assert!(matches!(e, Err(Error::Query { .. })), "{e:?}");
        let n = src
            .query(
                "SELECT COUNT(*) AS n FROM person WHERE :x = 1",
                &[ParamValue::Integer(1)],
            )
            .await
            .unwrap();
        let col = n.batch.column(0);
        assert_eq!(
            col.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .value(0),
            20
        );
        assert!(!col.is_null(0));
        assert!(
            SqliteSource::open("x", &dir.path().join("missing.db"), SourceLimits::default())
                .await
                .is_err()
        );
    }
}
