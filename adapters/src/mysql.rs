use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlRow};
use sqlx::{Executor, MySqlPool, Row};

use crate::batch::{Cell, ColKind};
use crate::source::SourceLimits;
use crate::sqldb;
use crate::{Error, Result};

/// A MySQL or MariaDB department database. Each new session is set to
/// `SESSION TRANSACTION READ ONLY` with a server-side statement time limit (MariaDB
/// `max_statement_time`, MySQL `max_execution_time`), and each query runs in its own
/// `START TRANSACTION READ ONLY` transaction that is rolled back.
#[derive(Debug, Clone)]
pub struct MySqlSource {
    name: String,
    pool: MySqlPool,
    limits: SourceLimits,
}

impl MySqlSource {
    /// Connects lazily; see [`crate::PostgresSource::connect`].
    pub fn connect(name: &str, url: &str, limits: SourceLimits) -> Result<Self> {
        let opts = MySqlConnectOptions::from_str(url).map_err(|e| Error::Unavailable {
            source_name: name.to_owned(),
            detail: format!("bad connection URL: {e}"),
        })?;
        let ms = limits.statement_timeout.as_millis();
        let pool = MySqlPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(limits.statement_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                    let version: String = sqlx::query_scalar("SELECT VERSION()")
                        .fetch_one(&mut *conn)
                        .await?;
                    let limit = if version.contains("MariaDB") {
                        format!("SET SESSION max_statement_time = {}", ms as f64 / 1000.0)
                    } else {
                        format!("SET SESSION max_execution_time = {ms}")
                    };
                    conn.execute(limit.as_str()).await?;
                    Ok(())
                })
            })
            .connect_lazy_with(opts);
        Ok(MySqlSource {
            name: name.to_owned(),
            pool,
            limits,
        })
    }
}

fn kind_of(ty: &str) -> ColKind {
    let t = ty.to_ascii_uppercase();
    match t.as_str() {
        "BOOLEAN" => ColKind::Bool,
        t if t.contains("INT") => ColKind::Int,
        "FLOAT" | "DOUBLE" => ColKind::Float,
        "DECIMAL" => ColKind::Decimal,
        "DATE" => ColKind::Date,
        "DATETIME" | "TIMESTAMP" => ColKind::Timestamp,
        t if t.contains("BLOB") || t.contains("BINARY") => ColKind::Bytes,
        _ => ColKind::Text,
    }
}

fn decode_cell(
    row: &MySqlRow,
    i: usize,
    kind: &mut ColKind,
    ty: &str,
) -> Result<Cell, sqlx::Error> {
    // sqlx's MySQL type names are upper case ("BIGINT UNSIGNED").
    let unsigned = ty.contains("UNSIGNED");
    let cell = match *kind {
        ColKind::Bool => Cell::Bool(row.try_get(i)?),
        ColKind::Int if unsigned => Cell::Int(
            i64::try_from(row.try_get::<u64, _>(i)?)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        ),
        ColKind::Int => Cell::Int(row.try_get(i)?),
        ColKind::Float if ty == "FLOAT" => Cell::Float(f64::from(row.try_get::<f32, _>(i)?)),
        ColKind::Float => Cell::Float(row.try_get(i)?),
        ColKind::Decimal => Cell::Decimal(row.try_get(i)?),
        ColKind::Date => Cell::Date(row.try_get(i)?),
        ColKind::Timestamp if ty == "TIMESTAMP" => Cell::Timestamp(
            row.try_get::<chrono::DateTime<chrono::Utc>, _>(i)?
                .timestamp_micros(),
        ),
        ColKind::Timestamp => Cell::Timestamp(
            row.try_get::<chrono::NaiveDateTime, _>(i)?
                .and_utc()
                .timestamp_micros(),
        ),
        ColKind::Bytes => Cell::Bytes(row.try_get(i)?),
        ColKind::Text => Cell::Text(row.try_get(i)?),
    };
    Ok(cell)
}

sqldb::sqlx_source!(MySqlSource, sqlx::MySql, MySqlRow, begin: Some("START TRANSACTION READ ONLY"), placeholder: |_| "?".to_owned());
