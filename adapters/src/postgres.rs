use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Column, PgPool, Row};

use crate::batch::{Cell, ColKind};
use crate::source::SourceLimits;
use crate::sqldb;
use crate::{Error, Result};

/// A PostgreSQL (or PostgreSQL-compatible) department database. Every session is
/// `default_transaction_read_only = on` with a server-side `statement_timeout`, and each
/// query runs in its own `BEGIN READ ONLY` transaction that is rolled back.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    name: String,
    pool: PgPool,
    limits: SourceLimits,
}

impl PostgresSource {
    /// Connects lazily: an unreachable database makes queries answer 503, and the pool
    /// reconnects by itself when it comes back.
    pub fn connect(name: &str, url: &str, limits: SourceLimits) -> Result<Self> {
        let timeout_ms = limits.statement_timeout.as_millis().to_string();
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Unavailable {
                source_name: name.to_owned(),
                detail: format!("bad connection URL: {e}"),
            })?
            .options([
                ("default_transaction_read_only", "on"),
                ("statement_timeout", timeout_ms.as_str()),
                ("application_name", "paotui"),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(limits.statement_timeout)
            .connect_lazy_with(opts);
        Ok(PostgresSource {
            name: name.to_owned(),
            pool,
            limits,
        })
    }
}

fn kind_of(ty: &str) -> ColKind {
    match ty {
        "BOOL" => ColKind::Bool,
        "INT2" | "INT4" | "INT8" => ColKind::Int,
        "FLOAT4" | "FLOAT8" => ColKind::Float,
        "NUMERIC" => ColKind::Decimal,
        "DATE" => ColKind::Date,
        "TIMESTAMP" | "TIMESTAMPTZ" => ColKind::Timestamp,
        "BYTEA" => ColKind::Bytes,
        _ => ColKind::Text,
    }
}

fn decode_cell(row: &PgRow, i: usize, kind: &mut ColKind, ty: &str) -> Result<Cell, sqlx::Error> {
    let cell = match (*kind, ty) {
        (ColKind::Bool, _) => Cell::Bool(row.try_get(i)?),
        (ColKind::Int, "INT2") => Cell::Int(i64::from(row.try_get::<i16, _>(i)?)),
        (ColKind::Int, "INT4") => Cell::Int(i64::from(row.try_get::<i32, _>(i)?)),
        (ColKind::Int, _) => Cell::Int(row.try_get(i)?),
        (ColKind::Float, "FLOAT4") => Cell::Float(f64::from(row.try_get::<f32, _>(i)?)),
        (ColKind::Float, _) => Cell::Float(row.try_get(i)?),
        (ColKind::Decimal, _) => Cell::Decimal(row.try_get(i)?),
        (ColKind::Date, _) => Cell::Date(row.try_get(i)?),
        (ColKind::Timestamp, "TIMESTAMPTZ") => Cell::Timestamp(
            row.try_get::<chrono::DateTime<chrono::Utc>, _>(i)?
                .timestamp_micros(),
        ),
        (ColKind::Timestamp, _) => Cell::Timestamp(
            row.try_get::<chrono::NaiveDateTime, _>(i)?
                .and_utc()
                .timestamp_micros(),
        ),
        (ColKind::Bytes, _) => Cell::Bytes(row.try_get(i)?),
        (ColKind::Text, _) => {
            match row.try_get::<String, _>(i) {
                Ok(s) => Cell::Text(s),
                Err(_) => {
                    return Err(sqlx::Error::Decode(
                        format!("column {} has unsupported type {ty}; cast it to text in the catalog query", row.column(i).name()).into(),
                    ));
                }
            }
        }
    };
    Ok(cell)
}

sqldb::sqlx_source!(PostgresSource, sqlx::Postgres, PgRow, begin: Some("BEGIN READ ONLY"), placeholder: |i| format!("${i}"));
