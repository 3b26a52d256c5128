//! Database rows → one Arrow [`RecordBatch`].
//!
//! Each backend maps its column types to a [`ColKind`] and decodes values into [`Cell`]s;
//! this module turns the cells into typed Arrow arrays. Decimals stay exact: they travel
//! as `Decimal128` with the scale of the values (precision 38).

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use crate::{Error, Result};

/// The Arrow type a source column becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    Bool,
    Int,
    Float,
    Decimal,
    Text,
    Date,
    /// UTC timestamp, microseconds.
    Timestamp,
    Bytes,
}

/// One decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Decimal(rust_decimal::Decimal),
    Text(String),
    Date(NaiveDate),
    Timestamp(i64),
    Bytes(Vec<u8>),
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

fn mismatch(source: &str, col: &str, kind: ColKind, cell: &Cell) -> Error {
    Error::Query {
        source_name: source.to_owned(),
        detail: format!(
            "column {col}: a {kind:?} column returned {}",
            cell_kind(cell)
        ),
    }
}

fn cell_kind(c: &Cell) -> &'static str {
    match c {
        Cell::Null => "NULL",
        Cell::Bool(_) => "a boolean",
        Cell::Int(_) => "an integer",
        Cell::Float(_) => "a float",
        Cell::Decimal(_) => "a decimal",
        Cell::Text(_) => "text",
        Cell::Date(_) => "a date",
        Cell::Timestamp(_) => "a timestamp",
        Cell::Bytes(_) => "bytes",
    }
}

/// Builds the batch; `rows[i][j]` is row `i`, column `j`.
pub fn to_batch(
    source: &str,
    names: &[String],
    kinds: &[ColKind],
    rows: &[Vec<Cell>],
) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(names.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(names.len());
    for (j, (name, kind)) in names.iter().zip(kinds).enumerate() {
        let col = rows.iter().map(|r| r.get(j).unwrap_or(&Cell::Null));
        let bad = |c: &Cell| mismatch(source, name, *kind, c);
        let (dt, arr): (DataType, ArrayRef) = match kind {
            ColKind::Bool => {
                let mut b = BooleanBuilder::new();
                for c in col {
                    match c {
                        Cell::Null => b.append_null(),
                        Cell::Bool(v) => b.append_value(*v),
                        Cell::Int(v) => b.append_value(*v != 0),
                        other => return Err(bad(other)),
                    }
                }
                (DataType::Boolean, Arc::new(b.finish()))
            }
            ColKind::Int => {
                let mut b = Int64Builder::new();
                for c in col {
                    match c {
                        Cell::Null => b.append_null(),
                        Cell::Int(v) => b.append_value(*v),
                        Cell::Bool(v) => b.append_value(i64::from(*v)),
                        other => return Err(bad(other)),
                    }
                }
                (DataType::Int64, Arc::new(b.finish()))
            }
            ColKind::Float => {
                let mut b = Float64Builder::new();
                for c in col {
                    match c {
                        Cell::Null => b.append_null(),
                        Cell::Float(v) => b.append_value(*v),
                        Cell::Int(v) => b.append_value(*v as f64),
                        other => return Err(bad(other)),
                    }
                }
                (DataType::Float64, Arc::new(b.finish()))
            }
            ColKind::Decimal => {
                let scale = rows
                    .iter()
                    .filter_map(|r| match r.get(j) {
                        Some(Cell::Decimal(d)) => Some(d.scale()),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0);
                let mut b = Decimal128Builder::new();
                for c in col {
                    match c {
                        Cell::Null => b.append_null(),
                        Cell::Decimal(d) => {
                            let mut d = *d;
                            d.rescale(scale);
                            b.append_value(d.mantissa());
                        }
                        Cell::Int(v) => {
                            let mut d = rust_decimal::Decimal::from(*v);
                            d.rescale(scale);
                            b.append_value(d.mantissa());
                        }
                        other => return Err(bad(other)),
                    }
                }
                let scale = i8::try_from(scale).unwrap_or(i8::MAX);
                let arr = b
                    .finish()
                    .with_precision_and_scale(38, scale)
                    .map_err(|e| Error::Query {
                        source_name: source.to_owned(),
                        detail: e.to_string(),
                    })?;
                (DataType::Decimal128(38, scale), Arc::new(arr))
            }
            ColKind::Text => {
                let mut b = StringBuilder::new();
                for c in col {
                    match c {
                        Cell::Null => b.append_null(),
                        Cell::Text(s) => b.append_value(s),
                        Cell::Int(v) => b.append_value(v.to_string()),
                        Cell::Float(v) => b.append_value(v.to_string()),
                        Cell::Decimal(v) => b.append_value(v.to_string()),
                        Cell::Bool(v) => b.append_value(v.to_string()),
                        other => return Err(bad(other)),
                    }
                }
                (DataType::Utf8, Arc::new(b.finish()))
            }
            ColKind::Date => {
                let mut b = Date32Builder::new();
                for c in col {
                    match c {
                        Cell::Null => b.append_null(),
                        Cell::Date(d) => b.append_value((*d - EPOCH).num_days() as i32),
                        Cell::Text(s) => match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                            Ok(d) => b.append_value((d - EPOCH).num_days() as i32),
                            Err(_) => return Err(bad(c)),
                        },
                        other => return Err(bad(other)),
                    }
                }
                (DataType::Date32, Arc::new(b.finish()))
            }
            ColKind::Timestamp => {
                let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
                for c in col {
                    match c {
                        Cell::Null => b.append_null(),
                        Cell::Timestamp(us) => b.append_value(*us),
                        Cell::Text(s) => match parse_timestamp(s) {
                            Some(us) => b.append_value(us),
                            None => return Err(bad(c)),
                        },
                        other => return Err(bad(other)),
                    }
                }
                (
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    Arc::new(b.finish()),
                )
            }
            ColKind::Bytes => {
                let mut b = BinaryBuilder::new();
                for c in col {
                    match c {
                        Cell::Null => b.append_null(),
                        Cell::Bytes(v) => b.append_value(v),
                        Cell::Text(s) => b.append_value(s.as_bytes()),
                        other => return Err(bad(other)),
                    }
                }
                (DataType::Binary, Arc::new(b.finish()))
            }
        };
        fields.push(Field::new(name, dt, true));
        arrays.push(arr);
    }
    let schema = Arc::new(Schema::new(fields));
    if arrays.is_empty() {
        return Ok(RecordBatch::new_empty(schema));
    }
    RecordBatch::try_new(schema, arrays).map_err(|e| Error::Query {
        source_name: source.to_owned(),
        detail: e.to_string(),
    })
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (SQLite's text timestamps), read as UTC.
fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z');
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
    .map(|t| t.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Date32Type, Decimal128Type, Int64Type};

    #[test]
    fn builds_typed_columns() {
        let names: Vec<String> = ["i", "d", "dt", "t", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let kinds = [
            ColKind::Int,
            ColKind::Decimal,
            ColKind::Date,
            ColKind::Text,
            ColKind::Bool,
        ];
        let rows = vec![
            vec![
                Cell::Int(7),
                Cell::Decimal("12.5".parse().unwrap()),
                Cell::Date(NaiveDate::from_ymd_opt(2000, 1, 2).unwrap()),
                Cell::Text("x".into()),
                Cell::Bool(true),
            ],
            vec![
                Cell::Null,
                Cell::Decimal("3.25".parse().unwrap()),
                Cell::Null,
                Cell::Null,
                Cell::Int(0),
            ],
        ];
        let b = to_batch("s", &names, &kinds, &rows).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), 7);
        assert!(b.column(0).is_null(1));
        let d = b.column(1).as_primitive::<Decimal128Type>();
        assert_eq!(
            b.schema().field(1).data_type(),
            &DataType::Decimal128(38, 2)
        );
        assert_eq!(d.value(0), 1250);
        assert_eq!(d.value(1), 325);
        assert_eq!(b.column(2).as_primitive::<Date32Type>().value(0), 10958);
        assert!(!b.column(4).as_boolean().value(1));
        let e = to_batch(
            "s",
            &names[..1],
            &kinds[..1],
            &[vec![Cell::Text("no".into())]],
        )
        .unwrap_err();
        assert!(e.to_string().contains("column i"), "{e}");
    }
}
