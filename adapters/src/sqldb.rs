//! The one query path shared by the sqlx backends (SQLite, PostgreSQL, MySQL/MariaDB):
//! bind the typed parameters, stream rows up to the cap, decode them into cells and build
//! the Arrow batch. A backend only says how its placeholders look, how its column types
//! map to Arrow and how to decode one row.

use futures_util::TryStreamExt;
use paotui_policies::catalog::{ParamValue, positional};
use sqlx::{Column, Database, Executor, IntoArguments, Row, TypeInfo, ValueRef};

use crate::Result;
use crate::batch::{Cell, ColKind, to_batch};
use crate::source::{Rows, SourceLimits, classify};

/// What differs between the sqlx backends.
pub(crate) trait Dialect: Database {
    /// The positional placeholder for the `i`-th (1-based) parameter.
    fn placeholder(i: usize) -> String;
    /// A column's declared type name → Arrow kind.
    fn kind_of(type_name: &str) -> ColKind;
    /// Decodes column `i` of a row, a non-NULL value whose type name is `ty`; may refine
    /// `kind` where the declared type was not enough.
    fn decode_cell(
        row: &Self::Row,
        i: usize,
        kind: &mut ColKind,
        ty: &str,
    ) -> Result<Cell, sqlx::Error>;
}

/// Decodes one row: NULLs here, everything else by the backend.
fn decode<DB: Dialect>(row: &DB::Row, kinds: &mut [ColKind]) -> Result<Vec<Cell>, sqlx::Error>
where
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let mut out = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter_mut().enumerate() {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            out.push(Cell::Null);
            continue;
        }
        let info = raw.type_info();
        out.push(DB::decode_cell(row, i, kind, info.name())?);
    }
    Ok(out)
}

/// Runs `sql` (with `:name` placeholders) on `exec`, reading at most `limits.max_rows` rows.
pub(crate) async fn fetch<'c, DB, E>(
    name: &str,
    limits: SourceLimits,
    exec: E,
    sql: &str,
    params: &[ParamValue],
) -> Result<Rows>
where
    DB: Dialect,
    E: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let sql = positional(sql, DB::placeholder);
    let mut q = sqlx::query::<DB>(&sql);
    for p in params {
        q = match p {
            ParamValue::Text(s) => q.bind(s.clone()),
            ParamValue::Integer(i) => q.bind(*i),
        };
    }
    let err = |e| classify(name, limits, e);
    let mut stream = exec.fetch(q);
    let (mut names, mut kinds, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    let mut truncated = false;
    while let Some(row) = stream.try_next().await.map_err(err)? {
        if names.is_empty() {
            for c in row.columns() {
                names.push(c.name().to_owned());
                kinds.push(DB::kind_of(c.type_info().name()));
            }
        }
        if rows.len() == limits.max_rows {
            truncated = true;
            break;
        }
        rows.push(decode::<DB>(&row, &mut kinds).map_err(err)?);
    }
    Ok(Rows {
        batch: to_batch(name, &names, &kinds, &rows)?,
        truncated,
    })
}

/// A read-only query on a pooled connection, inside `begin` (e.g. `BEGIN READ ONLY`),
/// rolled back afterwards whatever happened.
pub(crate) async fn fetch_in_tx<DB>(
    name: &str,
    limits: SourceLimits,
    pool: &sqlx::Pool<DB>,
    begin: &'static str,
    sql: &str,
    params: &[ParamValue],
) -> Result<Rows>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let err = |e| classify(name, limits, e);
    // Failing to get a connection and open the transaction means the database is not
    // there for us, whatever the driver calls it (a half-open connection's error is
    // not one `classify` can tell from a bad query); a database's own refusal stays
    // what `classify` makes of it.
    let mut tx = pool.begin_with(begin).await.map_err(|e| match e {
        sqlx::Error::Database(_) => err(e),
        other => crate::Error::Unavailable {
            source_name: name.to_owned(),
            detail: other.to_string(),
        },
    })?;
    let rows = fetch(name, limits, &mut *tx, sql, params).await;
    tx.rollback().await.map_err(err)?;
    rows
}

/// `SELECT 1` on a pooled connection.
pub(crate) async fn ping<DB>(name: &str, limits: SourceLimits, pool: &sqlx::Pool<DB>) -> Result<()>
where
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    sqlx::query::<DB>("SELECT 1")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| classify(name, limits, e))
}

/// The [`DataSource`](crate::DataSource) and [`Dialect`] impls of a sqlx backend: a struct
/// with `name`, `pool` and `limits`, the backend's database type and row type, the
/// statement that opens its read-only transaction (`None`: the connection itself cannot
/// write), its positional placeholder, and the module's `kind_of` / `decode` functions.
macro_rules! sqlx_source {
    ($source:ty, $db:ty, $row:ty, begin: $begin:expr, placeholder: $ph:expr) => {
        impl $crate::sqldb::Dialect for $db {
            fn placeholder(i: usize) -> String {
                let f: fn(usize) -> String = $ph;
                f(i)
            }

            fn kind_of(ty: &str) -> $crate::batch::ColKind {
                kind_of(ty)
            }

            fn decode_cell(
                row: &$row,
                i: usize,
                kind: &mut $crate::batch::ColKind,
                ty: &str,
            ) -> std::result::Result<$crate::batch::Cell, sqlx::Error> {
                decode_cell(row, i, kind, ty)
            }
        }

        impl $crate::source::DataSource for $source {
            fn name(&self) -> &str {
                &self.name
            }

            fn query<'a>(
                &'a self,
                sql: &'a str,
                params: &'a [paotui_policies::catalog::ParamValue],
            ) -> $crate::source::BoxFuture<'a, $crate::Result<$crate::source::Rows>> {
                let begin: Option<&'static str> = $begin;
                Box::pin($crate::source::with_timeout(
                    &self.name,
                    self.limits,
                    async move {
                        match begin {
                            Some(b) => {
                                $crate::sqldb::fetch_in_tx(
                                    &self.name,
                                    self.limits,
                                    &self.pool,
                                    b,
                                    sql,
                                    params,
                                )
                                .await
                            }
                            None => {
                                $crate::sqldb::fetch(
                                    &self.name,
                                    self.limits,
                                    &self.pool,
                                    sql,
                                    params,
                                )
                                .await
                            }
                        }
                    },
                ))
            }

            fn ping(&self) -> $crate::source::BoxFuture<'_, $crate::Result<()>> {
                Box::pin($crate::sqldb::ping(&self.name, self.limits, &self.pool))
            }
        }
    };
}

pub(crate) use sqlx_source;
