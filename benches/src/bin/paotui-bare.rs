//! `paotui-bare`: the floor of this stack for `run-comparison`. One axum + sqlx handler
//! that runs a catalog service's SQL for a subject and answers the JSON paotui answers —
//! with no TLS, identity, policy, purpose binding, masking, audit or signature. What
//! paotui costs is measured against this.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use paotui_policies::catalog::Catalog;
use serde_json::{Map, Value, json};
use sqlx::{Column, PgPool, Row, SqlitePool};

// The gateway's allocator, so that the comparison measures governance, not malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "paotui-bare",
    about = "A bare axum + sqlx handler answering one catalog service, ungoverned (the \
             benchmark floor)"
)]
struct Args {
    /// The catalog whose service SQL is run.
    #[arg(long)]
    catalog: PathBuf,
    /// The service to answer, e.g. population.person.
    #[arg(long)]
    service: String,
    /// The source database: sqlite://FILE or postgres://….
    #[arg(long)]
    db: String,
    /// Where to listen (loopback).
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
}

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

struct Bare {
    id: String,
    /// The service's SQL with its `:subject` as the backend's placeholder.
    sql: String,
    default_fields: Vec<String>,
    pool: Pool,
}

/// A row's requested columns as JSON: text, integer, real or null, as paotui's adapters
/// give them.
fn object<'r, R>(row: &'r R, fields: &[String]) -> Map<String, Value>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<f64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let cell = |i: usize| -> Value {
        if let Ok(v) = row.try_get::<Option<String>, _>(i) {
            return v.map_or(Value::Null, Value::String);
        }
        if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
            return v.map_or(Value::Null, Value::from);
        }
        row.try_get::<Option<f64>, _>(i)
            .ok()
            .flatten()
            .map_or(Value::Null, Value::from)
    };
    let mut out = Map::new();
    for (i, c) in row.columns().iter().enumerate() {
        if fields.iter().any(|f| f == c.name()) {
            out.insert(c.name().to_owned(), cell(i));
        }
    }
    out
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        [("content-type", "application/problem+json")],
        json!({"title": status.canonical_reason(), "status": status.as_u16(), "detail": detail})
            .to_string(),
    )
        .into_response()
}

async fn query(
    State(bare): State<Arc<Bare>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if id != bare.id {
        return problem(StatusCode::NOT_FOUND, "no such service");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    let Some(subject) = body["subject"].as_str() else {
        return problem(StatusCode::BAD_REQUEST, "subject is missing");
    };
    let fields: Vec<String> = match body["fields"].as_array() {
        Some(a) => a
            .iter()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect(),
        None => bare.default_fields.clone(),
    };
    let rows = match &bare.pool {
        Pool::Sqlite(p) => sqlx::query(&bare.sql)
            .bind(subject)
            .fetch_all(p)
            .await
            .map(|rows| rows.iter().map(|r| object(r, &fields)).collect::<Vec<_>>()),
        Pool::Postgres(p) => sqlx::query(&bare.sql)
            .bind(subject)
            .fetch_all(p)
            .await
            .map(|rows| rows.iter().map(|r| object(r, &fields)).collect::<Vec<_>>()),
    };
    match rows {
        Ok(rows) => Json(json!({
            "service": bare.id,
            "fields": fields.iter().map(|f| json!({"name": f, "masked": false})).collect::<Vec<_>>(),
            "withheld": [],
            "rows": rows,
            "truncated": false,
        }))
        .into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let file = args.catalog.display().to_string();
    let catalog = Catalog::parse(&file, &std::fs::read_to_string(&args.catalog)?)?;
    let service = catalog
        .services
        .values()
        .find(|s| s.id.to_string() == args.service)
        .ok_or_else(|| format!("{file} has no service {:?}", args.service))?;
    let (pool, placeholder) = if args.db.starts_with("postgres") {
        (Pool::Postgres(PgPool::connect(&args.db).await?), "$1")
    } else {
        (Pool::Sqlite(SqlitePool::connect(&args.db).await?), "?")
    };
    let bare = Arc::new(Bare {
        id: args.service.clone(),
        sql: service.query.replace(":subject", placeholder),
        default_fields: service
            .default_fields
            .iter()
            .map(|f| f.to_string())
            .collect(),
        pool,
    });
    let app = Router::new()
        .route("/v1/services/{id}/query", post(query))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(bare);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

fn main() {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!("paotui-bare: {} is not a loopback address", args.listen);
        std::process::exit(2);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paotui-bare: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("paotui-bare: {e}");
        std::process::exit(1);
    }
}
