//! paotui-benches: criterion benches (`benches/`) for the hot paths and a governed query
//! end to end, the supervision-SQL bench against DuckDB, and the load generator
//! (`paotui-load`, [`load`]). Figures and how to reproduce them are in `BENCHMARKS.md`.
//!
//! This library holds what several benches share.
#![forbid(unsafe_code)]

pub mod load;

use std::path::PathBuf;

use sqlx::Connection;

/// Where benches keep what they build once (big logs, generated worlds, a virtualenv):
/// `$CARGO_TARGET_DIR/paotui-bench` (or `target/paotui-bench`).
pub fn work_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("paotui-bench")
}

/// Whether the bench was started in criterion's quick or test mode (`cargo bench --
/// --test`, as CI does): benches that build big worlds build small ones instead, so the
/// run proves they still work without taking the full bench's time.
pub fn quick_mode() -> bool {
    std::env::args().any(|a| a == "--test" || a == "--quick")
}

/// The multi-threaded runtime every bench drives its async work on (`None`, with a
/// message, if it cannot start).
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            None
        }
    }
}

/// The PostgreSQL maintenance database the benches create their own databases from.
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh (dropped and re-created) PostgreSQL database `db`, or `None` with a message
/// when PostgreSQL is not reachable: a bench leaves that backend out.
pub async fn fresh_pg(db: &str) -> Option<String> {
    let mut c = match sqlx::PgConnection::connect(PG_ADMIN).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("PostgreSQL left out: {e}");
            return None;
        }
    };
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut c)
        .await;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut c)
        .await
        .ok()?;
    Some(format!("postgres://postgres@127.0.0.1:5432/{db}"))
}

/// Drops a database made by [`fresh_pg`] (best effort: benches clean up after themselves).
pub async fn drop_pg(db: &str) {
    if let Ok(mut c) = sqlx::PgConnection::connect(PG_ADMIN).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&mut c)
            .await;
    }
}
