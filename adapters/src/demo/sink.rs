//! Where generated department tables go: a SQLite file, a PostgreSQL or MySQL database,
//! or Parquet + CSV export files. Rows arrive as [`Cell`]s in chunks.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, MySqlConnection, PgConnection};

use crate::batch::{Cell, ColKind, to_batch};
use crate::{Error, Result};

/// A column type of a generated table.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Text,
    Int,
    /// DECIMAL(precision, scale)
    Dec(u8, u8),
    Date,
    Ts,
    Bool,
}

impl Ty {
    fn kind(self) -> ColKind {
        match self {
            Ty::Text => ColKind::Text,
            Ty::Int => ColKind::Int,
            Ty::Dec(..) => ColKind::Decimal,
            Ty::Date => ColKind::Date,
            Ty::Ts => ColKind::Timestamp,
            Ty::Bool => ColKind::Bool,
        }
    }
}

/// A generated table: name, columns, and the columns to index.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Ty)],
    pub primary_key: &'static [&'static str],
    pub indexes: &'static [&'static str],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

fn gen_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::Generate(format!("{what}: {e}"))
}

impl Dialect {
    fn ty(self, t: Ty) -> String {
        match (self, t) {
            // MySQL cannot index TEXT without a prefix length.
            (Dialect::MySql, Ty::Text) => "VARCHAR(255)".into(),
            (_, Ty::Text) => "TEXT".into(),
            (Dialect::MySql, Ty::Int) => "INT".into(),
            (_, Ty::Int) => "INTEGER".into(),
            (_, Ty::Dec(p, s)) => format!("DECIMAL({p},{s})"),
            (_, Ty::Date) => "DATE".into(),
            (Dialect::MySql, Ty::Ts) => "DATETIME".into(),
            (_, Ty::Ts) => "TIMESTAMP".into(),
            (_, Ty::Bool) => "BOOLEAN".into(),
        }
    }

    /// One value as a SQL literal. Values are generated here, but quoting is done properly
    /// anyway (MySQL also treats backslashes as escapes).
    fn literal(self, c: &Cell, out: &mut String) {
        use std::fmt::Write;
        match c {
            Cell::Null => out.push_str("NULL"),
            Cell::Bool(b) => out.push_str(match (self, b) {
                (Dialect::Sqlite, true) => "1",
                (Dialect::Sqlite, false) => "0",
                (_, true) => "TRUE",
                (_, false) => "FALSE",
            }),
            Cell::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Cell::Float(f) => {
                let _ = write!(out, "{f}");
            }
            Cell::Decimal(d) => {
                let _ = write!(out, "{d}");
            }
            Cell::Text(s) => {
                out.push('\'');
                for ch in s.chars() {
                    match ch {
                        '\'' => out.push_str("''"),
                        '\\' if self == Dialect::MySql => out.push_str("\\\\"),
                        c => out.push(c),
                    }
                }
                out.push('\'');
            }
            Cell::Date(d) => {
                let prefix = if self == Dialect::Sqlite { "" } else { "DATE " };
                let _ = write!(out, "{prefix}'{}'", d.format("%Y-%m-%d"));
            }
            Cell::Timestamp(us) => {
                let prefix = if self == Dialect::Sqlite {
                    ""
                } else {
                    "TIMESTAMP "
                };
                let t = chrono::DateTime::from_timestamp_micros(*us).unwrap_or_default();
                let _ = write!(out, "{prefix}'{}'", t.format("%Y-%m-%d %H:%M:%S"));
            }
            Cell::Bytes(b) => {
                out.push_str("X'");
                for x in b {
                    let _ = write!(out, "{x:02X}");
                }
                out.push('\'');
            }
        }
    }

    fn create(self, t: &Table, name: &str) -> String {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|(c, ty)| format!("{c} {}", self.ty(*ty)))
            .collect();
        let tail = if self == Dialect::MySql {
            " DEFAULT CHARSET=utf8mb4"
        } else {
            ""
        };
        format!(
            "CREATE TABLE {name} ({}, PRIMARY KEY ({})){tail}",
            cols.join(", "),
            t.primary_key.join(", ")
        )
    }
}

enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
    MySql(MySqlConnection),
}

impl Conn {
    async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        use sqlx::Executor;
        match self {
            Conn::Sqlite(c) => c.execute(sql).await.map(|_| ()),
            Conn::Postgres(c) => c.execute(sql).await.map(|_| ()),
            Conn::MySql(c) => c.execute(sql).await.map(|_| ()),
        }
    }

    fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
            Conn::MySql(_) => Dialect::MySql,
        }
    }

    async fn close(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Sqlite(c) => c.close().await,
            Conn::Postgres(c) => c.close().await,
            Conn::MySql(c) => c.close().await,
        }
    }
}

enum Target {
    Db {
        // Boxed, like the writers below: all three are large.
        conn: Box<Conn>,
        /// The SQLite file being written and its final name (`None` for servers).
        file: Option<(PathBuf, PathBuf)>,
        label: String,
    },
    Files {
        parquet: Box<ArrowWriter<File>>,
        csv: Box<datafusion::arrow::csv::Writer<File>>,
        /// (temporary, final) names of both files.
        names: [(PathBuf, PathBuf); 2],
    },
}

/// A table being written.
pub struct Sink {
    table: &'static Table,
    target: Target,
    pending: Vec<Vec<Cell>>,
    pub rows: u64,
}

const SQL_CHUNK: usize = 500;
const FILE_CHUNK: usize = 8192;

fn staging(table: &Table) -> String {
    format!("{}__new", table.name)
}

impl Sink {
    /// A new SQLite file at `path` (written as `path.tmp`, renamed by [`Sink::finish`]).
    pub async fn sqlite(table: &'static Table, path: &Path) -> Result<Sink> {
        let tmp = path.with_extension("db.tmp");
        let _ = std::fs::remove_file(&tmp);
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", tmp.display()))
            .map_err(|e| gen_err(path.display(), e))?
            .create_if_missing(true)
            .disable_statement_logging()
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Off)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Off);
        let conn = SqliteConnection::connect_with(&opts)
            .await
            .map_err(|e| gen_err(path.display(), e))?;
        Self::db(
            table,
            Conn::Sqlite(conn),
            Some((tmp, path.to_owned())),
            path.display().to_string(),
        )
        .await
    }

    /// A table in the PostgreSQL database at `url`.
    pub async fn postgres(table: &'static Table, url: &str) -> Result<Sink> {
        // Statements carry generated identifiers as literals: never log them.
        let opts = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| gen_err("PostgreSQL", e))?
            .disable_statement_logging();
        let conn = PgConnection::connect_with(&opts)
            .await
            .map_err(|e| gen_err("PostgreSQL", e))?;
        Self::db(
            table,
            Conn::Postgres(conn),
            None,
            format!("PostgreSQL table {}", table.name),
        )
        .await
    }

    /// A table in the MySQL / MariaDB database at `url`.
    pub async fn mysql(table: &'static Table, url: &str) -> Result<Sink> {
        let opts = sqlx::mysql::MySqlConnectOptions::from_str(url)
            .map_err(|e| gen_err("MySQL", e))?
            .disable_statement_logging();
        let conn = MySqlConnection::connect_with(&opts)
            .await
            .map_err(|e| gen_err("MySQL", e))?;
        Self::db(
            table,
            Conn::MySql(conn),
            None,
            format!("MySQL table {}", table.name),
        )
        .await
    }

    async fn db(
        table: &'static Table,
        mut conn: Conn,
        file: Option<(PathBuf, PathBuf)>,
        label: String,
    ) -> Result<Sink> {
        let d = conn.dialect();
        let name = if file.is_some() {
            table.name.to_owned()
        } else {
            staging(table)
        };
        let err = |e| gen_err(&label, e);
        conn.exec(&format!("DROP TABLE IF EXISTS {name}"))
            .await
            .map_err(err)?;
        conn.exec(&d.create(table, &name)).await.map_err(err)?;
        conn.exec(if d == Dialect::MySql {
            "START TRANSACTION"
        } else {
            "BEGIN"
        })
        .await
        .map_err(err)?;
        Ok(Sink {
            table,
            target: Target::Db {
                conn: Box::new(conn),
                file,
                label,
            },
            pending: Vec::with_capacity(SQL_CHUNK),
            rows: 0,
        })
    }

    /// Parquet and CSV exports of the table: `<stem>.parquet` and `<stem>.csv` in `dir`.
    pub fn files(table: &'static Table, dir: &Path) -> Result<Sink> {
        let names = ["parquet", "csv"].map(|ext| {
            let fin = dir.join(format!("{}.{ext}", table.name));
            (fin.with_extension(format!("{ext}.tmp")), fin)
        });
        let open = |p: &Path| File::create(p).map_err(|e| gen_err(p.display(), e));
        let schema = schema(table);
        let parquet = Box::new(
            ArrowWriter::try_new(open(&names[0].0)?, schema, None)
                .map_err(|e| gen_err(names[0].1.display(), e))?,
        );
        let csv = Box::new(
            CsvWriterBuilder::new()
                .with_header(true)
                .with_timestamp_tz_format("%Y-%m-%d %H:%M:%S".into())
                .build(open(&names[1].0)?),
        );
        Ok(Sink {
            table,
            target: Target::Files {
                parquet,
                csv,
                names,
            },
            pending: Vec::with_capacity(FILE_CHUNK),
            rows: 0,
        })
    }

    pub async fn push(&mut self, row: Vec<Cell>) -> Result<()> {
        self.pending.push(row);
        self.rows += 1;
        let chunk = match self.target {
            Target::Db { .. } => SQL_CHUNK,
            Target::Files { .. } => FILE_CHUNK,
        };
        if self.pending.len() >= chunk {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        match &mut self.target {
            Target::Db { conn, file, label } => {
                let d = conn.dialect();
                let name = if file.is_some() {
                    self.table.name.to_owned()
                } else {
                    staging(self.table)
                };
                let mut sql = format!("INSERT INTO {name} VALUES ");
                for (i, row) in rows.iter().enumerate() {
                    sql.push_str(if i == 0 { "(" } else { ", (" });
                    for (j, c) in row.iter().enumerate() {
                        if j > 0 {
                            sql.push_str(", ");
                        }
                        d.literal(c, &mut sql);
                    }
                    sql.push(')');
                }
                conn.exec(&sql).await.map_err(|e| gen_err(&*label, e))?;
            }
            Target::Files {
                parquet,
                csv,
                names,
            } => {
                let batch = file_batch(self.table, &rows)?;
                parquet
                    .write(&batch)
                    .map_err(|e| gen_err(names[0].1.display(), e))?;
                csv.write(&batch)
                    .map_err(|e| gen_err(names[1].1.display(), e))?;
            }
        }
        Ok(())
    }

    /// Writes what is pending, builds the indexes and puts the table in place.
    pub async fn finish(mut self) -> Result<u64> {
        self.flush().await?;
        let table = self.table;
        match self.target {
            Target::Db {
                mut conn,
                file,
                label,
            } => {
                let d = conn.dialect();
                let err = |e| gen_err(&label, e);
                let live = if file.is_some() {
                    table.name.to_owned()
                } else {
                    staging(table)
                };
                for col in table.indexes {
                    conn.exec(&format!("CREATE INDEX {live}_{col} ON {live} ({col})"))
                        .await
                        .map_err(err)?;
                }
                conn.exec("COMMIT").await.map_err(err)?;
                if file.is_none() {
                    // Swap the freshly loaded table in (PostgreSQL: in one transaction).
                    let t = table.name;
                    let swap = match d {
                        // Index names are schema-wide in PostgreSQL: rename them with the table.
                        Dialect::Postgres => {
                            let mut s = format!(
                                "BEGIN; DROP TABLE IF EXISTS {t}; ALTER TABLE {live} RENAME TO {t}; \
                                 ALTER INDEX {live}_pkey RENAME TO {t}_pkey"
                            );
                            for col in table.indexes {
                                s.push_str(&format!(
                                    "; ALTER INDEX {live}_{col} RENAME TO {t}_{col}"
                                ));
                            }
                            s + "; COMMIT"
                        }
                        _ => format!("DROP TABLE IF EXISTS {t}; RENAME TABLE {live} TO {t}"),
                    };
                    for stmt in swap.split("; ") {
                        conn.exec(stmt).await.map_err(err)?;
                    }
                }
                conn.close().await.map_err(err)?;
                if let Some((tmp, fin)) = file {
                    std::fs::rename(&tmp, &fin).map_err(|e| gen_err(fin.display(), e))?;
                }
            }
            Target::Files {
                parquet,
                csv,
                names,
            } => {
                parquet
                    .close()
                    .map_err(|e| gen_err(names[0].1.display(), e))?;
                drop(csv);
                for (tmp, fin) in &names {
                    std::fs::rename(tmp, fin).map_err(|e| gen_err(fin.display(), e))?;
                }
            }
        }
        Ok(self.rows)
    }
}

/// The Arrow schema of a table's export files (exact decimal scales).
fn schema(t: &Table) -> SchemaRef {
    Arc::new(Schema::new(
        t.columns
            .iter()
            .map(|(c, ty)| {
                let dt = match ty {
                    Ty::Dec(_, s) => DataType::Decimal128(38, i8::try_from(*s).unwrap_or(0)),
                    Ty::Text => DataType::Utf8,
                    Ty::Int => DataType::Int64,
                    Ty::Date => DataType::Date32,
                    Ty::Ts => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    Ty::Bool => DataType::Boolean,
                };
                Field::new(*c, dt, true)
            })
            .collect::<Vec<_>>(),
    ))
}

fn file_batch(t: &Table, rows: &[Vec<Cell>]) -> Result<RecordBatch> {
    let b = to_batch(t.name, &col_names(t), &kinds(t), rows)?;
    let schema = schema(t);
    let cols = b
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(a, f)| cast(a, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| gen_err(t.name, e))?;
    RecordBatch::try_new(schema, cols).map_err(|e| gen_err(t.name, e))
}

fn col_names(t: &Table) -> Vec<String> {
    t.columns.iter().map(|(c, _)| (*c).to_owned()).collect()
}

fn kinds(t: &Table) -> Vec<ColKind> {
    t.columns.iter().map(|(_, ty)| ty.kind()).collect()
}
