//! Department sources, each against the same SQL run directly, in one bench run:
//!
//! - `into_arrow_100k/<adapter>`: a 100,000-row result read into one Arrow batch by the
//!   adapter, and `…/<adapter>_direct` the same SQL through plain sqlx (rows decoded into
//!   Rust values) or, for the files, plain DataFusion. Throughput is rows.
//! - `lookup_via_gateway/<adapter>`: a single-row lookup by ID number through the whole
//!   gateway (mTLS, policy, source, masking, durable audit, signature) over one kept-alive
//!   connection, and `…/<adapter>_direct` the same lookup straight through sqlx /
//!   DataFusion.
//!
//! The same 100,000 synthetic people are loaded into SQLite, PostgreSQL, MariaDB, Parquet
//! and CSV first. PostgreSQL and MariaDB must be up (127.0.0.1, see the README); a source
//! that cannot be reached is left out with a message.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::Method;
use paotui_adapters::demo::{self, PERSON, Sink};
use paotui_adapters::{
    DataSource, FileSource, MySqlSource, PostgresSource, SourceLimits, SqliteSource,
};
use paotui_benches::{drop_pg, fresh_pg};
use paotui_gateway::config::SourceConfig;
use paotui_policies::catalog::ParamValue;
use paotui_tests::TestApp;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use sqlx::{Connection, Row};

const ROWS: usize = 100_000;
const MY_ADMIN: &str = "mysql://root@127.0.0.1:3306/test";
const DB: &str = "paotui_bench_adapters";
const ALL: &str = "SELECT id_number, name, gender, birth_date, ethnicity, household_type, address, phone, marital_status FROM person WHERE id_number > :floor";
const ONE: &str = "SELECT name, gender, birth_date FROM person WHERE id_number = :subject";
const CSV_COLUMNS: [(&str, &str); 1] = [("birth_date", "date")];

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Writes the same people everywhere; returns a few ID numbers to look up.
async fn load(dir: &Path, pg: Option<&str>, my: Option<&str>) -> Result<Vec<String>, Error> {
    let mut sinks = vec![
        Sink::sqlite(&PERSON, &dir.join("person.db")).await?,
        Sink::files(&PERSON, dir)?,
    ];
    if let Some(url) = pg {
        sinks.push(Sink::postgres(&PERSON, url).await?);
    }
    if let Some(url) = my {
        sinks.push(Sink::mysql(&PERSON, url).await?);
    }
    let mut rng = SmallRng::seed_from_u64(paotui_gateway::demo::SEED);
    let mut seen = std::collections::HashSet::new();
    let mut subjects = Vec::new();
    while seen.len() < ROWS {
        let p = demo::person(&mut rng)?;
        if !seen.insert(p.id_number.as_str().to_owned()) {
            continue;
        }
        if subjects.len() < 64 {
            subjects.push(p.id_number.as_str().to_owned());
        }
        for s in &mut sinks {
            s.push(demo::person_row(&p)).await?;
        }
    }
    for s in sinks {
        s.finish().await?;
    }
    Ok(subjects)
}

/// A fresh MariaDB database, or `None` (with a message) when it is not reachable.
async fn fresh_mysql() -> Option<String> {
    let mut c = match sqlx::MySqlConnection::connect(MY_ADMIN).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("MariaDB left out: {e}");
            return None;
        }
    };
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {DB}"))
        .execute(&mut c)
        .await;
    sqlx::query(&format!("CREATE DATABASE {DB}"))
        .execute(&mut c)
        .await
        .ok()?;
    Some(format!("mysql://root@127.0.0.1:3306/{DB}"))
}

/// The plain sqlx baseline: the same statement, rows decoded into Rust values.
enum Direct {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
    /// Files: plain DataFusion over the same file.
    Engine(datafusion_ctx::Ctx),
}

mod datafusion_ctx {
    use paotui_adapters::arrow::record_batch::RecordBatch;

    /// A DataFusion session with the file registered as `person`.
    pub struct Ctx(pub datafusion::prelude::SessionContext);

    impl Ctx {
        pub async fn run(&self, sql: &str, value: &str) -> usize {
            let sql = sql.replace(":floor", "$1").replace(":subject", "$1");
            let Ok(df) = self.0.sql(&sql).await else {
                return 0;
            };
            let Ok(df) = df.with_param_values(vec![datafusion::common::ScalarValue::Utf8(Some(
                value.to_owned(),
            ))]) else {
                return 0;
            };
            let batches: Vec<RecordBatch> = df.collect().await.unwrap_or_default();
            batches.iter().map(RecordBatch::num_rows).sum()
        }
    }
}

/// Fetches with one bound value and decodes every column (text, or a date), counting
/// rows: the same body for PostgreSQL and MySQL, whose row types differ.
macro_rules! fetch_decoded {
    ($pool:expr, $sql:expr, $value:expr) => {{
        let rows = sqlx::query(&$sql)
            .bind($value)
            .fetch_all($pool)
            .await
            .unwrap_or_default();
        rows.iter()
            .map(|r| {
                decode_all(r.len(), |i| match r.try_get::<String, _>(i) {
                    Ok(s) => Ok(s.len()),
                    Err(_) => r.try_get::<chrono::NaiveDate, _>(i).map(|_| 4),
                })
            })
            .sum()
    }};
}

impl Direct {
    async fn run(&self, sql: &str, value: &str) -> usize {
        // Each backend's own placeholder, one parameter.
        match self {
            Direct::Sqlite(p) => {
                let sql = sql.replace(":floor", "?").replace(":subject", "?");
                let rows = sqlx::query(&sql)
                    .bind(value)
                    .fetch_all(p)
                    .await
                    .unwrap_or_default();
                rows.iter()
                    .map(|r| decode_all(r.len(), |i| r.try_get::<String, _>(i).map(|s| s.len())))
                    .sum()
            }
            Direct::Postgres(p) => {
                let sql = sql.replace(":floor", "$1").replace(":subject", "$1");
                fetch_decoded!(p, sql, value)
            }
            Direct::MySql(p) => {
                let sql = sql.replace(":floor", "?").replace(":subject", "?");
                fetch_decoded!(p, sql, value)
            }
            Direct::Engine(c) => c.run(sql, value).await,
        }
    }
}

/// Decodes every column of a row (so the baseline does the work the adapter does);
/// counts the row.
fn decode_all(n: usize, mut get: impl FnMut(usize) -> Result<usize, sqlx::Error>) -> usize {
    let mut bytes = 0;
    for i in 0..n {
        bytes += get(i).unwrap_or(0);
    }
    std::hint::black_box(bytes);
    1
}

struct Adapter {
    name: &'static str,
    source: Arc<dyn DataSource>,
    direct: Direct,
    config: SourceConfig,
}

async fn adapters(
    dir: &Path,
    pg: Option<String>,
    my: Option<String>,
) -> Result<Vec<Adapter>, Error> {
    let limits = SourceLimits {
        statement_timeout: Duration::from_secs(60),
        max_rows: ROWS,
    };
    let sqlite_path = dir.join("person.db");
    let csv_cols = CSV_COLUMNS
        .iter()
        .map(|(c, t)| {
            (
                (*c).to_owned(),
                paotui_adapters::ColumnType::parse(t).unwrap_or(paotui_adapters::ColumnType::Text),
            )
        })
        .collect();
    let engine = |file: &str| {
        let ctx = datafusion::prelude::SessionContext::new();
        (ctx, dir.join(file))
    };
    let mut out = vec![Adapter {
        name: "sqlite",
        source: Arc::new(SqliteSource::open("sqlite", &sqlite_path, limits).await?),
        direct: Direct::Sqlite(
            sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", sqlite_path.display()))
                .await?,
        ),
        config: SourceConfig::Sqlite {
            path: sqlite_path.clone(),
        },
    }];
    if let Some(url) = pg {
        out.push(Adapter {
            name: "postgres",
            source: Arc::new(PostgresSource::connect("postgres", &url, limits)?),
            direct: Direct::Postgres(sqlx::PgPool::connect(&url).await?),
            config: SourceConfig::Postgres {
                url_env: None,
                url: Some(url.clone()),
            },
        });
    }
    if let Some(url) = my {
        out.push(Adapter {
            name: "mariadb",
            source: Arc::new(MySqlSource::connect("mariadb", &url, limits)?),
            direct: Direct::MySql(sqlx::MySqlPool::connect(&url).await?),
            config: SourceConfig::Mysql {
                url_env: None,
                url: Some(url.clone()),
            },
        });
    }
    let (ctx, path) = engine("person.parquet");
    ctx.register_parquet(
        "person",
        path.to_string_lossy().as_ref(),
        Default::default(),
    )
    .await?;
    out.push(Adapter {
        name: "parquet",
        source: Arc::new(FileSource::parquet("parquet", &path, "person", limits).await?),
        direct: Direct::Engine(datafusion_ctx::Ctx(ctx)),
        config: SourceConfig::Parquet {
            path: path.clone(),
            table: Some("person".into()),
        },
    });
    let (ctx, path) = engine("person.csv");
    // The same declared types as the adapter: text, and a date.
    let schema = datafusion::arrow::datatypes::Schema::new(
        PERSON
            .columns
            .iter()
            .map(|(c, _)| {
                let t = if *c == "birth_date" {
                    datafusion::arrow::datatypes::DataType::Date32
                } else {
                    datafusion::arrow::datatypes::DataType::Utf8
                };
                datafusion::arrow::datatypes::Field::new(*c, t, true)
            })
            .collect::<Vec<_>>(),
    );
    ctx.register_csv(
        "person",
        path.to_string_lossy().as_ref(),
        datafusion::prelude::CsvReadOptions::new().schema(&schema),
    )
    .await?;
    out.push(Adapter {
        name: "csv",
        source: Arc::new(FileSource::csv("csv", &path, "person", &csv_cols, limits).await?),
        direct: Direct::Engine(datafusion_ctx::Ctx(ctx)),
        config: SourceConfig::Csv {
            path: path.clone(),
            table: Some("person".into()),
            columns: csv_cols.clone(),
        },
    });
    Ok(out)
}

/// A catalog with one lookup service per adapter, queried by RS.
fn catalog(names: &[&str]) -> String {
    let mut s = paotui_gateway::demo::CATALOG.to_owned();
    for n in names {
        s.push_str(&format!(
            "\n[[services]]\nid = \"bench.{n}\"\nowner = \"GA\"\nname = \"bench {n}\"\nsource = \"bench_{n}\"\nsubject = \"id_number\"\nquery = \"{ONE}\"\nconsumers = [\"RS\"]\n\
             [[services.fields]]\nname = \"name\"\nsensitivity = \"personal\"\nmask = \"name\"\n\
             [[services.fields]]\nname = \"gender\"\nsensitivity = \"internal\"\n\
             [[services.fields]]\nname = \"birth_date\"\nsensitivity = \"internal\"\n"
        ));
    }
    s
}

fn bench(c: &mut Criterion) {
    let Some(rt) = paotui_benches::runtime() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let (pg, my) = rt.block_on(async { (fresh_pg(DB).await, fresh_mysql().await) });
    let subjects = match rt.block_on(load(dir.path(), pg.as_deref(), my.as_deref())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loading the bench data failed: {e}");
            return;
        }
    };
    let adapters = match rt.block_on(adapters(dir.path(), pg.clone(), my.clone())) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("opening the adapters failed: {e}");
            return;
        }
    };

    let mut g = c.benchmark_group("into_arrow_100k");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(6));
    for a in &adapters {
        let floor = [ParamValue::Text(String::new())];
        g.bench_function(BenchmarkId::new(a.name, ROWS), |b| {
            b.iter(|| {
                rt.block_on(async {
                    match a.source.query(ALL, &floor).await {
                        Ok(r) if r.batch.num_rows() == ROWS => {}
                        other => eprintln!(
                            "{}: unexpected {:?}",
                            a.name,
                            other.map(|r| r.batch.num_rows())
                        ),
                    }
                })
            })
        });
        g.bench_function(BenchmarkId::new(format!("{}_direct", a.name), ROWS), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let n = a.direct.run(ALL, "").await;
                    if n != ROWS {
                        eprintln!("{}_direct: {n} rows", a.name);
                    }
                })
            })
        });
    }
    g.finish();

    // The gateway, with one service per adapter.
    let names: Vec<&str> = adapters.iter().map(|a| a.name).collect();
    let Ok(cat_dir) = tempfile::tempdir() else {
        return;
    };
    let cat = cat_dir.path().join("catalog.toml");
    if std::fs::write(&cat, catalog(&names)).is_err() {
        return;
    }
    let app = match rt.block_on(TestApp::spawn_with(|cfg| {
        cfg.catalog = cat.clone();
        // This group measures the adapter under the gateway; binding each lookup to a
        // case is the governed_query bench's subject, so it is off here.
        cfg.policy.purpose_binding = paotui_gateway::config::PurposeBinding::Off;
        for a in &adapters {
            cfg.sources
                .insert(format!("bench_{}", a.name), a.config.clone());
        }
    })) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("gateway did not start: {e}");
            return;
        }
    };
    let Ok(client) = app.client("RS", "shebao") else {
        return;
    };
    let mut g = c.benchmark_group("lookup_via_gateway");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    for a in &adapters {
        let path = format!("/v1/services/bench.{}/query", a.name);
        let bodies: Vec<Vec<u8>> = subjects
            .iter()
            .map(|s| {
                serde_json::json!({"subject": s, "fields": ["name", "gender", "birth_date"]})
                    .to_string()
                    .into_bytes()
            })
            .collect();
        // A fresh kept-alive connection per adapter: the server closes idle ones.
        let Ok(mut conn) = rt.block_on(client.connect()) else {
            return;
        };
        g.bench_function(a.name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        let body = bodies[i as usize % bodies.len()].clone();
                        let r = conn
                            .send(
                                Method::POST,
                                &path,
                                &[("content-type", "application/json")],
                                body,
                            )
                            .await;
                        if !matches!(&r, Ok(r) if r.status == 200) {
                            // A failed lookup would make the figure meaningless.
                            eprintln!("{}: query failed, bench aborted: {r:?}", a.name);
                            std::process::exit(1);
                        }
                    }
                    start.elapsed()
                })
            })
        });
        g.bench_function(format!("{}_direct", a.name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        let n = a
                            .direct
                            .run(ONE, &subjects[i as usize % subjects.len()])
                            .await;
                        if n != 1 {
                            eprintln!("{}_direct: {n} rows", a.name);
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
    rt.block_on(app.stop());
    rt.block_on(async {
        if pg.is_some() {
            drop_pg(DB).await;
        }
        if my.is_some()
            && let Ok(mut c) = sqlx::MySqlConnection::connect(MY_ADMIN).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {DB}"))
                .execute(&mut c)
                .await;
        }
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
