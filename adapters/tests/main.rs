//! Adapters against real database servers on this machine (fresh database per test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod files;
mod http;
mod servers;
mod sqlite;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Date32Type, TimestampMicrosecondType};
use datafusion::arrow::record_batch::RecordBatch;
use paotui_adapters::{DataSource, Error};
use paotui_policies::catalog::ParamValue;

/// Columns 3–5 of row 0 of the fixture every backend's test loads: born 2000-01-02, seen
/// 2000-01-02 03:04:05 (UTC), active.
fn assert_fixture_row0(b: &RecordBatch) {
    assert_eq!(b.column(3).as_primitive::<Date32Type>().value(0), 10_958);
    assert_eq!(
        b.column(4)
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        946_782_245_000_000
    );
    assert!(b.column(5).as_boolean().value(0));
}

/// A write through the source fails as a query error: the source cannot write, whatever
/// its SQL says.
async fn assert_cannot_write(src: &dyn DataSource) {
    let w = src
        .query("DELETE FROM t WHERE id = :id", &[ParamValue::Integer(1)])
        .await;
    assert!(matches!(w, Err(Error::Query { .. })), "{w:?}");
}
