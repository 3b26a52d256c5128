//! The SQLite source on a file of its own: types and NULLs, expressions, parameters, the
//! row cap, read-only enforcement, values of the wrong type, the statement timeout
//! (SQLite interrupts the statement and the connection comes back) and files that are
//! not databases.
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use paotui_adapters::{DataSource, Error, SourceLimits, SqliteSource};
use paotui_policies::catalog::ParamValue;
use sqlx::Connection;

const LIMITS: SourceLimits = SourceLimits {
    statement_timeout: Duration::from_millis(400),
    max_rows: 3,
};

async fn database(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("t.db");
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, area DECIMAL(10,2), born DATE, \
         seen DATETIME, active BOOLEAN, ratio REAL, photo BLOB)",
        "INSERT INTO t VALUES \
         (1, '张三', '120.25', '2000-01-02', '2000-01-02 03:04:05', 1, 0.5, x'0102'), \
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
         (3, '李四', 7, '1990-06-01', '2020-01-01 00:00:00', 0, 1, NULL), \
         (4, '王五', 1, '1980-01-01', '2021-01-01 00:00:00', 1, 2, NULL)",
        "CREATE TABLE odd (id INTEGER PRIMARY KEY, active BOOLEAN)",
        "INSERT INTO odd VALUES (1, 'yes')",
    ] {
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }
    c.close().await.unwrap();
    path
}

#[tokio::test]
async fn sqlite_types_cap_and_no_writes() {
    let dir = tempfile::tempdir().unwrap();
    let src = SqliteSource::open("t", &database(dir.path()).await, LIMITS)
        .await
        .unwrap();
    let r = src
        .query(
            "SELECT id, name, area, born, seen, active, ratio, photo FROM t \
             WHERE name IS NULL OR name <> :skip ORDER BY id",
            &[ParamValue::Text("nobody".into())],
        )
        .await
        .unwrap();
    let b = &r.batch;
    assert!(r.truncated, "4 rows with max_rows 3");
    assert_eq!(b.num_rows(), 3);
    let s = b.schema();
    let types: Vec<&DataType> = s.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(
        types,
        [
            &DataType::Int64,
            &DataType::Utf8,
            &DataType::Float64,
            &DataType::Date32,
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            &DataType::Boolean,
            &DataType::Float64,
            &DataType::Binary,
        ]
    );
    assert_eq!(b.column(1).as_string::<i32>().value(0), "张三");
    // NUMERIC affinity stores 120.25 as a REAL and 7 as an INTEGER: SQLite has no
    // decimals, so the column is a float whichever way a value is stored.
    let area = b.column(2).as_primitive::<Float64Type>();
    assert_eq!((area.value(0), area.value(2)), (120.25, 7.0));
    crate::assert_fixture_row0(b);
    assert!(!b.column(5).as_boolean().value(2));
    let ratio = b.column(6).as_primitive::<Float64Type>();
    assert_eq!((ratio.value(0), ratio.value(2)), (0.5, 1.0));
    assert_eq!(b.column(7).as_binary::<i32>().value(0), [1, 2]);
    for c in 1..8 {
        assert!(b.column(c).is_null(1), "column {c} of the NULL row");
    }

    // Expressions have no declared type: their values decide.
    let r = src
        .query(
            "SELECT COUNT(*) AS n, MAX(ratio) * 2 AS r, 'x' || :s AS t FROM t WHERE id > :id",
            &[ParamValue::Text("y".into()), ParamValue::Integer(0)],
        )
        .await
        .unwrap();
    assert_eq!(r.batch.column(0).as_primitive::<Int64Type>().value(0), 4);
    assert_eq!(
        r.batch.column(1).as_primitive::<Float64Type>().value(0),
        4.0
    );
    assert_eq!(r.batch.column(2).as_string::<i32>().value(0), "xy");

    // The connection is read-only whatever the SQL says.
    crate::assert_cannot_write(&src).await;
    // A value the declared type does not allow is a clear error, not a wrong answer.
    let odd = src
        .query(
            "SELECT active FROM odd WHERE id = :id",
            &[ParamValue::Integer(1)],
        )
        .await;
    match odd {
        Err(Error::Query { detail, .. }) => assert!(detail.contains("active"), "{detail}"),
        other => panic!("{other:?}"),
    }
    // Fewer values than placeholders.
    let short = src
        .query(
            "SELECT id FROM t WHERE id = :a OR id = :b",
            &[ParamValue::Integer(1)],
        )
        .await;
    assert!(matches!(short, Err(Error::Query { .. })), "{short:?}");
}

#[tokio::test]
async fn runaway_statements_are_interrupted_and_free_their_connections() {
    let dir = tempfile::tempdir().unwrap();
    let src = SqliteSource::open("t", &database(dir.path()).await, LIMITS)
        .await
        .unwrap();
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                   SELECT COUNT(*) AS n FROM c WHERE :x = 1";
    // More than the source's connections at once: every one is cut at the timeout.
    let params = [ParamValue::Integer(1)];
    let slow = futures_util::future::join_all((0..6).map(|_| src.query(endless, &params))).await;
    for r in &slow {
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    }
    // Had SQLite kept running them, every connection would still be busy and this would
    // time out too.
    src.ping().await.unwrap();
    let r = src
        .query(
            "SELECT name FROM t WHERE id = :id",
            &[ParamValue::Integer(3)],
        )
        .await
        .unwrap();
    assert_eq!(r.batch.column(0).as_string::<i32>().value(0), "李四");
}

#[tokio::test]
async fn files_that_are_not_databases_are_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let e = SqliteSource::open("junk", &junk, LIMITS).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    let e = SqliteSource::open("gone", &dir.path().join("missing.db"), LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
}
