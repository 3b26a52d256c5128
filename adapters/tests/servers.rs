use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type, TimeUnit};
use paotui_adapters::{DataSource, Error, MySqlSource, PostgresSource, SourceLimits};
use paotui_policies::catalog::ParamValue;
use sqlx::Connection;

fn required() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn db_name() -> String {
    format!("paotui_adapter_{}", uuid::Uuid::new_v4().simple())
}

/// Creates a database on a server; `None` (skip) when unreachable outside CI.
async fn create_pg() -> Option<(String, String)> {
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    let mut c = match sqlx::PgConnection::connect(admin).await {
        Ok(c) => c,
        Err(e) if !required() => {
            eprintln!("skipping PostgreSQL adapter tests: {e}");
            return None;
        }
        Err(e) => panic!("PostgreSQL unreachable under CI: {e}"),
    };
    let name = db_name();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    Some((
        name.clone(),
        format!("postgres://postgres@127.0.0.1:5432/{name}"),
    ))
}

async fn drop_pg(name: &str) {
    let mut c = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut c)
        .await
        .unwrap();
}

async fn create_mysql() -> Option<(String, String)> {
    let admin = "mysql://root@127.0.0.1:3306/test";
    let mut c = match sqlx::MySqlConnection::connect(admin).await {
        Ok(c) => c,
        Err(e) if !required() => {
            eprintln!("skipping MariaDB adapter tests: {e}");
            return None;
        }
        Err(e) => panic!("MariaDB unreachable under CI: {e}"),
    };
    let name = db_name();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    Some((name.clone(), format!("mysql://root@127.0.0.1:3306/{name}")))
}

async fn drop_mysql(name: &str) {
    let mut c = sqlx::MySqlConnection::connect("mysql://root@127.0.0.1:3306/test")
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut c)
        .await
        .unwrap();
}

const LIMITS: SourceLimits = SourceLimits {
    statement_timeout: Duration::from_millis(1500),
    max_rows: 3,
};

/// The same checks for every networked backend: types, NULLs, parameters, row cap,
/// read-only enforcement and the statement timeout.
async fn check_source(src: &dyn DataSource, sleep_sql: &str) {
    let r = src
        .query(
            "SELECT id, name, area, born, seen, active, ratio FROM t WHERE name IS NULL OR name <> :skip ORDER BY id",
            &[ParamValue::Text("nobody".into())],
        )
        .await
        .unwrap();
    let b = &r.batch;
    assert!(r.truncated, "4 rows with max_rows 3");
    assert_eq!(b.num_rows(), 3);
    let s = b.schema();
    assert_eq!(s.field(0).data_type(), &DataType::Int64);
    assert_eq!(s.field(1).data_type(), &DataType::Utf8);
    assert_eq!(s.field(2).data_type(), &DataType::Decimal128(38, 2));
    assert_eq!(s.field(3).data_type(), &DataType::Date32);
    assert_eq!(
        s.field(4).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(s.field(5).data_type(), &DataType::Boolean);
    assert_eq!(s.field(6).data_type(), &DataType::Float64);
    assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), 1);
    assert_eq!(b.column(1).as_string::<i32>().value(0), "张三");
    assert_eq!(
        b.column(2).as_primitive::<Decimal128Type>().value(0),
        12_050
    );
    crate::assert_fixture_row0(b);
    assert_eq!(b.column(6).as_primitive::<Float64Type>().value(0), 0.5);
    // Row 2 is all NULLs but its id.
    for c in 1..7 {
        assert!(b.column(c).is_null(1), "column {c} of the NULL row");
    }
    // Integer parameters bind too.
    let r = src
        .query(
            "SELECT name FROM t WHERE id = :id",
            &[ParamValue::Integer(3)],
        )
        .await
        .unwrap();
    assert_eq!(r.batch.column(0).as_string::<i32>().value(0), "李四");
    // Read-only by construction: writes fail inside the source's transaction.
    crate::assert_cannot_write(src).await;
    let n = src
        .query(
            "SELECT COUNT(*) AS n FROM t WHERE id > :id",
            &[ParamValue::Integer(0)],
        )
        .await
        .unwrap();
    assert_eq!(n.batch.column(0).as_primitive::<Int64Type>().value(0), 4);
    // A slow statement is cut at the timeout.
    let slow = src.query(sleep_sql, &[ParamValue::Integer(1)]).await;
    assert!(matches!(slow, Err(Error::Timeout { .. })), "{slow:?}");
    // And the source still answers afterwards.
    src.ping().await.unwrap();
}

#[tokio::test]
async fn postgres_source() {
    let Some((name, url)) = create_pg().await else {
        return;
    };
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    for sql in [
        "CREATE TABLE t (id INT8 PRIMARY KEY, name TEXT, area NUMERIC(10,2), born DATE, seen TIMESTAMP, active BOOL, ratio FLOAT8)",
        "INSERT INTO t VALUES (1, '张三', 120.50, '2000-01-02', '2000-01-02 03:04:05', true, 0.5), (2, NULL, NULL, NULL, NULL, NULL, NULL), (3, '李四', 7, '1990-06-01', '2020-01-01 00:00:00', false, 1.25), (4, '王五', 1, '1980-01-01', '2021-01-01 00:00:00', true, 2)",
    ] {
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }
    c.close().await.unwrap();
    let src = PostgresSource::connect("pg", &url, LIMITS).unwrap();
    check_source(&src, "SELECT pg_sleep(5)::text AS slept WHERE 1 = :x").await;
    drop(src);
    drop_pg(&name).await;
}

#[tokio::test]
async fn mariadb_source() {
    let Some((name, url)) = create_mysql().await else {
        return;
    };
    let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
    for sql in [
        "CREATE TABLE t (id BIGINT PRIMARY KEY, name VARCHAR(20), area DECIMAL(10,2), born DATE, seen DATETIME, active BOOLEAN, ratio DOUBLE)",
        "INSERT INTO t VALUES (1, '张三', 120.50, '2000-01-02', '2000-01-02 03:04:05', true, 0.5), (2, NULL, NULL, NULL, NULL, NULL, NULL), (3, '李四', 7, '1990-06-01', '2020-01-01 00:00:00', false, 1.25), (4, '王五', 1, '1980-01-01', '2021-01-01 00:00:00', true, 2)",
    ] {
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }
    c.close().await.unwrap();
    let src = MySqlSource::connect("maria", &url, LIMITS).unwrap();
    check_source(&src, "SELECT SLEEP(5) FROM t WHERE id = :x").await;
    drop(src);
    drop_mysql(&name).await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable_not_an_error_page() {
    // Nothing listens on port 1: the pool cannot connect.
    let src = PostgresSource::connect("gone", "postgres://postgres@127.0.0.1:1/x", LIMITS).unwrap();
    let e = src
        .query("SELECT 1 AS one WHERE 1 = :x", &[ParamValue::Integer(1)])
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Unavailable { .. } | Error::Timeout { .. }),
        "{e:?}"
    );
    let src = MySqlSource::connect("gone", "mysql://root@127.0.0.1:1/x", LIMITS).unwrap();
    let e = src
        .query(
            "SELECT 1 AS one FROM DUAL WHERE 1 = :x",
            &[ParamValue::Integer(1)],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Unavailable { .. } | Error::Timeout { .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn demo_data_into_postgres_and_mariadb() {
    let Some((pg_name, pg_url)) = create_pg().await else {
        return;
    };
    let Some((my_name, my_url)) = create_mysql().await else {
        drop_pg(&pg_name).await;
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let opts = paotui_adapters::demo::Options {
        dir: dir.path().to_owned(),
        people: 400,
        seed: 9,
        postgres: Some(pg_url.clone()),
        mysql: Some(my_url.clone()),
        progress: false,
    };
    // Twice: the second run replaces the tables in place.
    paotui_adapters::demo::generate(&opts).await.unwrap();
    let summary = paotui_adapters::demo::generate(&opts).await.unwrap();
    assert!(
        !dir.path().join("property.db").exists(),
        "property went to PostgreSQL"
    );
    assert!(
        !dir.path().join("business.db").exists(),
        "business went to MariaDB"
    );
    let rows = |t: &str| summary.rows.iter().find(|(n, _)| n == t).unwrap().1 as i64;
    let limits = SourceLimits {
        statement_timeout: Duration::from_secs(5),
        max_rows: 10,
    };
    let pg = PostgresSource::connect("property", &pg_url, limits).unwrap();
    let n = pg
        .query(
            "SELECT COUNT(*) AS n FROM property WHERE 1 = :one",
            &[ParamValue::Integer(1)],
        )
        .await
        .unwrap();
    assert_eq!(
        n.batch.column(0).as_primitive::<Int64Type>().value(0),
        rows("property")
    );
    let owner = &summary.samples.property[0];
    let r = pg
        .query("SELECT owner_id, area, registered_at, mortgaged, floor_count FROM property WHERE owner_id = :subject", &[ParamValue::Text(owner.clone())])
        .await
        .unwrap();
    assert!(r.batch.num_rows() >= 1);
    assert_eq!(
        r.batch.schema().field(1).data_type(),
        &DataType::Decimal128(38, 2)
    );
    let my = MySqlSource::connect("business", &my_url, limits).unwrap();
    let n = my
        .query(
            "SELECT COUNT(*) AS n FROM business WHERE 1 = :one",
            &[ParamValue::Integer(1)],
        )
        .await
        .unwrap();
    assert_eq!(
        n.batch.column(0).as_primitive::<Int64Type>().value(0),
        rows("business")
    );
    let r = my
        .query("SELECT uscc, registered_capital, established, annual_report_filed FROM business WHERE uscc = :subject", &[ParamValue::Text(summary.samples.business[0].clone())])
        .await
        .unwrap();
    assert_eq!(r.batch.num_rows(), 1);
    assert_eq!(
        r.batch.column(0).as_string::<i32>().value(0),
        summary.samples.business[0]
    );
    drop((pg, my));
    drop_pg(&pg_name).await;
    drop_mysql(&my_name).await;
}
