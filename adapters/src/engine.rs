//! The query path of the sources that are not databases (CSV and Parquet files, HTTP JSON
//! upstreams): the catalog's SQL runs in DataFusion over the file or the upstream's answer.
//!
//! DataFusion is the engine the auditors' SQL already uses, so a file-backed service obeys
//! the same SQL dialect checks as the rest of the catalog. Plans that write or change
//! anything (DML, `COPY`, DDL, `SET`) are refused by [`SQLOptions`] before they run.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use paotui_policies::catalog::{ParamValue, positional};
use serde::{Deserialize, Serialize};

use crate::source::{Rows, SourceLimits};
use crate::{Error, Result};

/// A session for one source: one partition (answers are small and the gateway serves
/// many requests at once; parallelism comes from requests, not from inside one).
pub(crate) fn session() -> SessionContext {
    SessionContext::new_with_config(
        SessionConfig::new()
            .with_target_partitions(1)
            .with_information_schema(false),
    )
}

/// Runs `sql` (with `:name` placeholders) on `ctx`, read-only, at most `max_rows` rows.
pub(crate) async fn run(
    name: &str,
    limits: SourceLimits,
    ctx: &SessionContext,
    sql: &str,
    params: &[ParamValue],
) -> Result<Rows> {
    let query_err = |e: datafusion::error::DataFusionError| Error::Query {
        source_name: name.to_owned(),
        detail: e.to_string(),
    };
    let sql = positional(sql, |i| format!("${i}"));
    let read_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let values: Vec<ScalarValue> = params
        .iter()
        .map(|p| match p {
            ParamValue::Text(s) => ScalarValue::Utf8(Some(s.clone())),
            ParamValue::Integer(i) => ScalarValue::Int64(Some(*i)),
        })
        .collect();
    // One row past the cap tells whether the answer was cut.
    let df = ctx
        .sql_with_options(&sql, read_only)
        .await
        .map_err(query_err)?
        .with_param_values(values)
        .map_err(query_err)?
        .limit(0, Some(limits.max_rows.saturating_add(1)))
        .map_err(query_err)?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(|e| classify(name, e))?;
    let mut batch = concat_batches(&schema, &batches).map_err(|e| Error::Query {
        source_name: name.to_owned(),
        detail: e.to_string(),
    })?;
    let truncated = batch.num_rows() > limits.max_rows;
    if truncated {
        batch = batch.slice(0, limits.max_rows);
    }
    Ok(Rows {
        batch: normalize(name, &batch)?,
        truncated,
    })
}

/// A file that vanished or cannot be read is an unavailable source, not a bad query.
fn classify(name: &str, e: datafusion::error::DataFusionError) -> Error {
    use datafusion::error::DataFusionError as E;
    match e.find_root() {
        E::IoError(_) | E::ObjectStore(_) => Error::Unavailable {
            source_name: name.to_owned(),
            detail: e.to_string(),
        },
        _ => Error::Query {
            source_name: name.to_owned(),
            detail: e.to_string(),
        },
    }
}

/// Casts a batch to the types every source answers in, whatever the engine or file chose:
/// Int64, Float64, Utf8, Boolean, Decimal128(38, s), Date32, Timestamp(µs, UTC), Binary.
pub fn normalize(name: &str, batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (f, a) in batch.schema().fields().iter().zip(batch.columns()) {
        let want = canonical(f.data_type());
        let arr = if &want == a.data_type() {
            Arc::clone(a)
        } else {
            cast(a, &want).map_err(|e| Error::Query {
                source_name: name.to_owned(),
                detail: format!("column {}: {e}", f.name()),
            })?
        };
        fields.push(Field::new(f.name(), want, true));
        arrays.push(arr);
    }
    let schema = Arc::new(Schema::new(fields));
    if arrays.is_empty() {
        return Ok(RecordBatch::new_empty(schema));
    }
    RecordBatch::try_new(schema, arrays).map_err(|e| Error::Query {
        source_name: name.to_owned(),
        detail: e.to_string(),
    })
}

fn canonical(dt: &DataType) -> DataType {
    use DataType as D;
    match dt {
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 => D::Int64,
        D::Float16 | D::Float32 | D::Float64 => D::Float64,
        D::Utf8 | D::LargeUtf8 | D::Utf8View | D::Null => D::Utf8,
        D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => D::Binary,
        D::Decimal32(_, s) | D::Decimal64(_, s) | D::Decimal128(_, s) => D::Decimal128(38, *s),
        D::Date64 => D::Date32,
        D::Timestamp(_, _) => D::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        // Anything else (u64, lists, structs …) travels as text rather than failing.
        D::Boolean | D::Date32 => dt.clone(),
        _ => D::Utf8,
    }
}

/// A column type declared in the config for sources whose files carry no types (CSV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ColumnType {
    Text,
    Integer,
    Float,
    /// Exact decimal; the scale is the number of digits after the point.
    Decimal {
        scale: i8,
    },
    Date,
    Timestamp,
    Boolean,
}

impl ColumnType {
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Text => DataType::Utf8,
            ColumnType::Integer => DataType::Int64,
            ColumnType::Float => DataType::Float64,
            ColumnType::Decimal { scale } => DataType::Decimal128(38, scale),
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::Boolean => DataType::Boolean,
        }
    }

    /// Parses `text`, `integer`, `float`, `decimal(2)`, `date`, `timestamp`, `boolean`.
    pub fn parse(s: &str) -> Option<ColumnType> {
        let s = s.trim().to_ascii_lowercase();
        Some(match s.as_str() {
            "text" => ColumnType::Text,
            "integer" => ColumnType::Integer,
            "float" => ColumnType::Float,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            "boolean" => ColumnType::Boolean,
            _ => {
                let scale = s.strip_prefix("decimal(")?.strip_suffix(')')?.trim();
                let scale: i8 = scale.parse().ok().filter(|n| (0..=38).contains(n))?;
                ColumnType::Decimal { scale }
            }
        })
    }
}

impl From<ColumnType> for String {
    fn from(t: ColumnType) -> String {
        match t {
            ColumnType::Text => "text".into(),
            ColumnType::Integer => "integer".into(),
            ColumnType::Float => "float".into(),
            ColumnType::Decimal { scale } => format!("decimal({scale})"),
            ColumnType::Date => "date".into(),
            ColumnType::Timestamp => "timestamp".into(),
            ColumnType::Boolean => "boolean".into(),
        }
    }
}

impl TryFrom<String> for ColumnType {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        ColumnType::parse(&s).ok_or_else(|| {
            format!(
                "unknown column type {s:?}: expected text, integer, float, decimal(SCALE), date, timestamp or boolean"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_parse() {
        assert_eq!(
            ColumnType::parse("decimal(2)"),
            Some(ColumnType::Decimal { scale: 2 })
        );
        assert_eq!(ColumnType::parse(" Date "), Some(ColumnType::Date));
        assert_eq!(ColumnType::parse("decimal(99)"), None);
        assert_eq!(ColumnType::parse("varchar"), None);
    }
}
