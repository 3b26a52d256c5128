//! The HTTP JSON source against a local axum server standing in for a department API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Int64Type};
use paotui_adapters::{ColumnType, DataSource, Error, HttpOptions, HttpSource, SourceLimits};
use paotui_policies::catalog::ParamValue;
use serde_json::json;

const OK: u8 = 0;
const FAIL: u8 = 1;
const SLOW: u8 = 2;
const GARBAGE: u8 = 3;

async fn upstream(
    State(mode): State<Arc<AtomicU8>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    match mode.load(Ordering::SeqCst) {
        FAIL => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        SLOW => tokio::time::sleep(Duration::from_secs(10)).await,
        GARBAGE => return "<html>oops</html>".into_response(),
        _ => {}
    }
    let subject = q.get("subject").cloned().unwrap_or_default();
    if subject == "unknown" {
        return StatusCode::NOT_FOUND.into_response();
    }
    // The upstream echoes what it was asked, so the test sees the parameters arrive.
    Json(json!({"data": [
        {"holder": subject, "kind": q.get("kind"), "months": 12, "base": "3500.50", "extra": "never loaded"},
        {"holder": subject, "kind": "other", "months": null, "base": null},
    ]}))
    .into_response()
}

async fn serve(addr: SocketAddr, mode: Arc<AtomicU8>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/api/insured", axum::routing::get(upstream))
        .with_state(mode);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

fn source(addr: SocketAddr) -> HttpSource {
    let columns = [
        ("holder", "text"),
        ("kind", "text"),
        ("months", "integer"),
        ("base", "decimal(2)"),
    ]
    .iter()
    .map(|(c, t)| ((*c).to_owned(), ColumnType::parse(t).unwrap()))
    .collect();
    HttpSource::new(
        "rs-api",
        HttpOptions {
            url: format!("http://{addr}/api/insured"),
            table: "insured".into(),
            columns,
            rows_at: Some("/data".into()),
            bearer: Some("s3cret".into()),
        },
        SourceLimits {
            statement_timeout: Duration::from_millis(800),
            max_rows: 10,
        },
    )
    .unwrap()
}

const SQL: &str =
    "SELECT holder, kind, months, base FROM insured WHERE holder = :subject AND kind = :kind";

#[tokio::test]
async fn queries_fails_and_recovers() {
    let mode = Arc::new(AtomicU8::new(OK));
    let (addr, task) = serve(SocketAddr::from(([127, 0, 0, 1], 0)), mode.clone()).await;
    let src = source(addr);
    assert!(
        !format!("{src:?}").contains("s3cret"),
        "no token in debug output"
    );
    let params = [
        ParamValue::Text("44060419900101123X".into()),
        ParamValue::Text("pension".into()),
    ];
    let r = src.query(SQL, &params).await.unwrap();
    let b = &r.batch;
    assert_eq!(b.num_rows(), 1, "the SQL filters what the upstream sent");
    assert_eq!(
        b.column(0).as_string::<i32>().value(0),
        "44060419900101123X"
    );
    assert_eq!(b.column(1).as_string::<i32>().value(0), "pension");
    assert_eq!(b.column(2).as_primitive::<Int64Type>().value(0), 12);
    assert_eq!(
        b.schema().field(3).data_type(),
        &DataType::Decimal128(38, 2)
    );
    assert_eq!(
        b.column(3).as_primitive::<Decimal128Type>().value(0),
        350_050
    );
    // NULLs come through.
    let r = src
        .query(
            "SELECT months, base FROM insured WHERE holder = :subject AND kind = 'other'",
            &params[..1],
        )
        .await
        .unwrap();
    assert!(r.batch.column(0).is_null(0) && r.batch.column(1).is_null(0));
    // 404 is "no such record": zero rows, same columns.
    let r = src
        .query(
            SQL,
            &[
                ParamValue::Text("unknown".into()),
                ParamValue::Text("x".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.batch.num_rows(), 0);
    assert_eq!(r.batch.num_columns(), 4);
    // Undeclared fields are not there to select.
    let e = src
        .query(
            "SELECT extra FROM insured WHERE holder = :subject",
            &params[..1],
        )
        .await;
    assert!(matches!(e, Err(Error::Query { .. })), "{e:?}");

    mode.store(FAIL, Ordering::SeqCst);
    let e = src.query(SQL, &params).await;
    assert!(matches!(e, Err(Error::Unavailable { .. })), "{e:?}");
    mode.store(GARBAGE, Ordering::SeqCst);
    let e = src.query(SQL, &params).await;
    assert!(matches!(e, Err(Error::Query { .. })), "{e:?}");
    mode.store(SLOW, Ordering::SeqCst);
    let e = src.query(SQL, &params).await;
    assert!(matches!(e, Err(Error::Timeout { .. })), "{e:?}");
    mode.store(OK, Ordering::SeqCst);
    src.query(SQL, &params).await.unwrap();

    // The upstream goes away, then comes back on the same address.
    task.abort();
    let _ = task.await;
    let e = src.query(SQL, &params).await;
    assert!(matches!(e, Err(Error::Unavailable { .. })), "{e:?}");
    assert!(src.ping().await.is_err());
    let (_, task) = serve(addr, mode).await;
    src.query(SQL, &params).await.unwrap();
    src.ping().await.unwrap();
    task.abort();
}

#[test]
fn bad_options_are_refused() {
    let mut opts = HttpOptions {
        url: "ftp://example.org/x".into(),
        table: "t".into(),
        columns: [("a".to_owned(), ColumnType::Text)].into_iter().collect(),
        rows_at: None,
        bearer: None,
    };
    assert!(HttpSource::new("x", opts.clone(), SourceLimits::default()).is_err());
    opts.url = "http://127.0.0.1:1/x".into();
    opts.columns.clear();
    assert!(HttpSource::new("x", opts, SourceLimits::default()).is_err());
}
