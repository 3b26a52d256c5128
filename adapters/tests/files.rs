//! CSV and Parquet sources: declared types, NULLs, the row cap, and plans that would write.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Int64Type, TimeUnit};
use paotui_adapters::{ColumnType, DataSource, Error, FileSource, SourceLimits};
use paotui_policies::catalog::ParamValue;

const CSV: &str = "id,id_number,area,born,seen,active,note\n\
1,440604199001011234,120.50,2000-01-02,2000-01-02 03:04:05,true,甲\n\
2,,,,,,\n\
3,007,7.00,1990-06-01,2020-01-01 00:00:00,false,乙\n\
4,008,1.25,1980-01-01,2021-01-01 00:00:00,true,丙\n";

fn columns() -> BTreeMap<String, ColumnType> {
    [
        ("id", "integer"),
        ("area", "decimal(2)"),
        ("born", "date"),
        ("seen", "timestamp"),
        ("active", "boolean"),
    ]
    .iter()
    .map(|(c, t)| ((*c).to_owned(), ColumnType::parse(t).unwrap()))
    .collect()
}

const LIMITS: SourceLimits = SourceLimits {
    statement_timeout: std::time::Duration::from_secs(5),
    max_rows: 3,
};

#[tokio::test]
async fn csv_types_nulls_cap_and_no_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.csv");
    std::fs::write(&path, CSV).unwrap();
    let src = FileSource::csv("csv", &path, "t", &columns(), LIMITS)
        .await
        .unwrap();
    let r = src
        .query("SELECT id, id_number, area, born, seen, active, note FROM t WHERE id > :min ORDER BY id", &[ParamValue::Integer(0)])
        .await
        .unwrap();
    assert!(r.truncated);
    let b = &r.batch;
    assert_eq!(b.num_rows(), 3);
    let s = b.schema();
    let want = [
        DataType::Int64,
        DataType::Utf8,
        DataType::Decimal128(38, 2),
        DataType::Date32,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        DataType::Boolean,
        DataType::Utf8,
    ];
    for (f, w) in s.fields().iter().zip(&want) {
        assert_eq!(f.data_type(), w, "{}", f.name());
    }
    // Undeclared columns stay text: leading zeros survive.
    assert_eq!(b.column(1).as_string::<i32>().value(2), "007");
    assert_eq!(
        b.column(2).as_primitive::<Decimal128Type>().value(0),
        12_050
    );
    crate::assert_fixture_row0(b);
    for c in 1..7 {
        assert!(b.column(c).is_null(1), "column {c} of the empty row");
    }
    // Text parameters compare with text columns.
    let r = src
        .query(
            "SELECT id FROM t WHERE id_number = :subject",
            &[ParamValue::Text("008".into())],
        )
        .await
        .unwrap();
    assert_eq!(r.batch.column(0).as_primitive::<Int64Type>().value(0), 4);
    // Nothing that writes gets planned.
    for sql in [
        "INSERT INTO t (id) VALUES (:x)",
        "COPY (SELECT * FROM t WHERE id = :x) TO '/tmp/paotui-leak.csv'",
        "CREATE TABLE u AS SELECT * FROM t WHERE id = :x",
        "DROP TABLE t",
    ] {
        let e = src.query(sql, &[ParamValue::Integer(1)]).await;
        assert!(matches!(e, Err(Error::Query { .. })), "{sql}: {e:?}");
    }
    assert!(!std::path::Path::new("/tmp/paotui-leak.csv").exists());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        CSV,
        "the export is untouched"
    );
    src.ping().await.unwrap();
    // The export disappears: unavailable, and back when it returns.
    std::fs::rename(&path, dir.path().join("moved")).unwrap();
    let e = src
        .query("SELECT id FROM t WHERE id = :x", &[ParamValue::Integer(1)])
        .await;
    assert!(matches!(e, Err(Error::Unavailable { .. })), "{e:?}");
    assert!(matches!(src.ping().await, Err(Error::Unavailable { .. })));
    std::fs::rename(dir.path().join("moved"), &path).unwrap();
    src.query("SELECT id FROM t WHERE id = :x", &[ParamValue::Integer(1)])
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_files_and_declarations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.csv");
    std::fs::write(&path, CSV).unwrap();
    let mut cols = columns();
    cols.insert("nope".into(), ColumnType::Text);
    let e = FileSource::csv("csv", &path, "t", &cols, LIMITS)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("\"nope\" is not in the header"),
        "{e}"
    );
    let e = FileSource::csv(
        "csv",
        &dir.path().join("missing.csv"),
        "t",
        &columns(),
        LIMITS,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    // A value that does not parse as its declared type is a clear query error, not a panic.
    std::fs::write(&path, "id,area\nx,1.0\n").unwrap();
    let src = FileSource::csv(
        "csv",
        &path,
        "t",
        &columns().into_iter().filter(|(c, _)| c == "id").collect(),
        LIMITS,
    )
    .await
    .unwrap();
    let e = src
        .query(
            "SELECT id FROM t WHERE area = :a",
            &[ParamValue::Text("1.0".into())],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Query { .. }), "{e:?}");
    let garbage = dir.path().join("broken.parquet");
    std::fs::write(&garbage, b"not parquet at all").unwrap();
    assert!(
        FileSource::parquet("pq", &garbage, "t", LIMITS)
            .await
            .is_err()
    );
}
