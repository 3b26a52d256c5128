use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;

use futures_util::TryStreamExt;
use paotui_policies::catalog::{ParamValue, positional};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Row, SqlitePool, TypeInfo, ValueRef};

use crate::source::{DataSource, Rows, SourceLimits};
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

    async fn run(&self, sql: &str, params: &[ParamValue]) -> Result<Rows> {
        let sql = positional(sql, |_| "?".to_owned());
        let mut q = sqlx::query(&sql);
        for p in params {
            q = match p {
                ParamValue::Text(s) => q.bind(s.clone()),
                ParamValue::Integer(i) => q.bind(*i),
            };
        }
        let mut stream = q.fetch(&self.pool);
        let mut out = Rows {
            columns: vec![],
            rows: vec![],
            truncated: false,
        };
        while let Some(row) = stream.try_next().await.map_err(|e| self.classify(e))? {
            if out.columns.is_empty() {
                out.columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
            }
            if out.rows.len() == self.limits.max_rows {
                out.truncated = true;
                break;
            }
            out.rows
                .push(decode_row(&row).map_err(|e| self.classify(e))?);
        }
        Ok(out)
    }

    fn classify(&self, e: sqlx::Error) -> Error {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Error::Unavailable {
                    source_name: self.name.clone(),
                    detail: e.to_string(),
                }
            }
            other => Error::Query {
                source_name: self.name.clone(),
                detail: other.to_string(),
            },
        }
    }
}

fn decode_row(row: &SqliteRow) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    let mut out = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            out.push(serde_json::Value::Null);
            continue;
        }
        let ty = raw.type_info().name().to_ascii_uppercase();
        let v = match ty.as_str() {
            "INTEGER" | "INT" | "BIGINT" | "BOOLEAN" => {
                serde_json::Value::from(row.try_get::<i64, _>(i)?)
            }
            "REAL" | "FLOAT" | "DOUBLE" => serde_json::Value::from(row.try_get::<f64, _>(i)?),
            "BLOB" => serde_json::Value::from(hex_lower(&row.try_get::<Vec<u8>, _>(i)?)),
            _ => serde_json::Value::from(row.try_get::<String, _>(i)?),
        };
        out.push(v);
    }
    Ok(out)
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl DataSource for SqliteSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn query<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [ParamValue],
    ) -> Pin<Box<dyn std::future::Future<Output = Result<Rows>> + Send + 'a>> {
        Box::pin(async move {
            let ms = u64::try_from(self.limits.statement_timeout.as_millis()).unwrap_or(u64::MAX);
            match tokio::time::timeout(self.limits.statement_timeout, self.run(sql, params)).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout {
                    source_name: self.name.clone(),
                    ms,
                }),
            }
        })
    }

    fn ping(&self) -> Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(|e| self.classify(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_rows_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        crate::demo::write_population(&path, 20, 7, false)
            .await
            .unwrap();
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
        assert_eq!(rows.columns, vec!["id_number", "name"]);
        assert!(rows.rows.len() <= 5);
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
        assert_eq!(n.rows[0][0], serde_json::json!(20));
        assert!(
            SqliteSource::open("x", &dir.path().join("missing.db"), SourceLimits::default())
                .await
                .is_err()
        );
    }
}
