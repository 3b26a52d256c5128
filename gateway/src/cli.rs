//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use paotui_certs::ca::Ca;
use paotui_certs::{DeptCode, SystemId};
use paotui_policies::catalog::Catalog;

use crate::config::Config;
use crate::{Error, Result, demo, server, telemetry};

/// paotui (跑腿): let government data run the errands instead of citizens.
///
/// A data-sharing gateway (signed, audited, policy-checked APIs in front of department
/// databases) and an electronic-license vault, in one binary.
#[derive(Debug, Parser)]
#[command(name = "paotui", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build (or reuse) a demo world, start the gateway and walk through it over mTLS.
    Demo {
        /// Directory of the demo world; reused when it already holds one.
        #[arg(long, default_value = "paotui-demo")]
        dir: PathBuf,
        /// Exit after the walk-through instead of serving until Ctrl-C.
        #[arg(long)]
        exit: bool,
        /// Listen address (default: the world's 127.0.0.1:8443, or a free port with --exit).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// People in the synthetic population register (only when building the world).
        #[arg(long, default_value_t = 10_000)]
        people: usize,
        /// Put the property registry (不动产) in this PostgreSQL database instead of
        /// SQLite (only when building the world), e.g. postgres://postgres@127.0.0.1/test.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// Put the business registry (市场监管) in this MySQL / MariaDB database instead
        /// of SQLite (only when building the world), e.g. mysql://root@127.0.0.1/test.
        #[arg(long, value_name = "URL")]
        mysql: Option<String>,
    },
    /// Write deterministic synthetic department data: 公安 population, 不动产 property,
    /// 市场监管 business and 人社 social insurance (Parquet + CSV).
    ///
    /// SQLite files go to DIR (population.db, property.db, business.db), the social
    /// insurance export to DIR/social_insurance.{parquet,csv}. With --postgres / --mysql
    /// the property / business tables go to those databases instead (replaced if present).
    DemoData {
        /// Number of distinct people (departments' rows follow from them).
        #[arg(long, default_value_t = 10_000)]
        size: usize,
        /// Generator seed: the same seed writes the same world.
        #[arg(long, default_value_t = demo::SEED)]
        seed: u64,
        /// Output directory.
        #[arg(long, default_value = "paotui-demo-data")]
        dir: PathBuf,
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        #[arg(long, value_name = "URL")]
        mysql: Option<String>,
    },
    /// Run the gateway.
    Serve {
        /// Config file (paths in it are relative to its directory).
        #[arg(long, short, default_value = "paotui.toml")]
        config: PathBuf,
    },
    /// Certificate authority: create it, issue system and server certificates, revoke.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Data-service catalog tools.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Cedar access policies: validate a policy directory against its schema.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The tamper-evident audit log: verify it, print and check inclusion proofs.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Run one read-only SQL query over the audit log's tables, locally (电子监察).
    ///
    /// Tables: `audit` (one row per entry: idx, at, caller_dept, caller_system, operator,
    /// action, service, case_id, matter, outcome, status, reason, subject_hmac, fields,
    /// allowed, policies, …), the view `denials`, `cases`, `case_matters`, `case_events`,
    /// `evaluations`, `licenses` (metadata only), `license_events` and `license_uses`
    /// (`SELECT * FROM information_schema.columns` lists every column). Only a single SELECT runs (DDL, DML,
    /// COPY and SET are refused), under the `[sql]` limits of the config. This reads the
    /// store directly, as whoever can read the data dir; over the API, auditors use
    /// `POST /v1/audit/sql`.
    Sql {
        /// The query, e.g. "SELECT caller_dept, count(*) FROM audit GROUP BY 1".
        query: String,
        #[arg(long, short, default_value = "paotui.toml")]
        config: PathBuf,
        /// Output: an aligned table, CSV, or JSON (an array of row objects).
        #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
        format: SqlFormat,
    },
    /// Print the supervision figures (电子监察) from the store, locally.
    ///
    /// Figures: cases (办件量), immediate (即办件率), on_time (按时/提前办结率), tongban
    /// (通办率), reuse (用证率, paper copies avoided), calls (consumer × provider), denials
    /// (by reason), evaluation (一事一评). Each one's definition is printed with it; over the
    /// API, auditors read them at `GET /v1/stats/{figure}`.
    Stats {
        /// One figure (all when omitted).
        figure: Option<String>,
        #[arg(long, short, default_value = "paotui.toml")]
        config: PathBuf,
        /// First day of the period (YYYY-MM-DD, UTC), by acceptance (or request) time.
        #[arg(long)]
        from: Option<String>,
        /// Last day of the period, inclusive.
        #[arg(long)]
        to: Option<String>,
        /// Only cases with a matter this department handles (calls, denials: by caller).
        #[arg(long)]
        dept: Option<String>,
        /// Only cases accepted at this department's window.
        #[arg(long)]
        site: Option<String>,
    },
    /// Copy the audit entries of closed days to Parquet (zstd, one directory per day).
    ///
    /// Takes the entries logged before --before that no earlier run took, writes them
    /// under DIR/run-<from>-<upto>/day=YYYY-MM-DD/, and records the run. The entries stay
    /// in the store (the log is still verified from it); auditor SQL reads the archive and
    /// the rest live, each entry once.
    Archive {
        /// First day not to archive (YYYY-MM-DD, UTC): today at the latest.
        #[arg(long)]
        before: String,
        /// Where the Parquet files go (default: `archive` beside the config file).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, short, default_value = "paotui.toml")]
        config: PathBuf,
    },
    /// Supervision rules (电子监察 alerts): check a rules file, or run the rules now.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// The electronic-license vault: verify a license offline, import existing licenses.
    License {
        #[command(subcommand)]
        command: crate::license_cli::LicenseCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Check a rules file: names, severities, and that each rule is one read-only query;
    /// errors name the file and line.
    Check { file: PathBuf },
    /// Run the configured rules against the store now; print what each flagged and how
    /// many alerts are new (the gateway also runs them every `[alerts] interval_s`).
    Evaluate {
        #[arg(long, short, default_value = "paotui.toml")]
        config: PathBuf,
    },
}

/// How `paotui sql` prints its answer.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SqlFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the whole log from storage and check it; name the first bad index.
    ///
    /// Recomputes every leaf, tree node and root, checks every stored checkpoint's
    /// signature and root, and (with --from-checkpoint) that a checkpoint you kept
    /// earlier is consistent with the log now. Exits non-zero on the first problem.
    /// Safe to run while the gateway serves.
    Verify {
        #[arg(long, short, default_value = "paotui.toml")]
        config: PathBuf,
        /// A signed checkpoint (as served at /v1/audit/checkpoint) kept from earlier.
        #[arg(long, value_name = "FILE")]
        from_checkpoint: Option<PathBuf>,
    },
    /// Print (JSON) a proof that entry INDEX is in the log, for a third party.
    ///
    /// The proof holds a freshly signed checkpoint, the entry with its canonical bytes,
    /// and its inclusion proof. A third party checks it with `paotui audit check-proof`
    /// or any RFC 9162 verifier, needing only the checkpoint's verifier key.
    Proof {
        index: u64,
        #[arg(long, short, default_value = "paotui.toml")]
        config: PathBuf,
    },
    /// Check a proof printed by `paotui audit proof`, offline, with the verifier key.
    ///
    /// The verifier key is `<origin>+<key id>+<key>`, as `paotui audit verify` prints it.
    CheckProof {
        file: PathBuf,
        #[arg(long, value_name = "VKEY")]
        verifier_key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new CA (ECDSA P-256) in DIR: ca.pem, ca-key.pem, crl.pem.
    Init {
        #[arg(long, default_value = "ca")]
        dir: PathBuf,
        #[arg(long, default_value = "paotui CA")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a client certificate for a department system
    /// (URI SAN paotui://dept/DEPT/system/SYSTEM), written to OUT/DEPT-SYSTEM.pem and -key.pem.
    Issue {
        #[arg(long, default_value = "ca")]
        dir: PathBuf,
        #[arg(long)]
        dept: String,
        #[arg(long)]
        system: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Issue a server certificate for the given hosts, written to OUT/server.pem and server-key.pem.
    IssueServer {
        #[arg(long, default_value = "ca")]
        dir: PathBuf,
        /// DNS name or IP address (repeatable).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Revoke a certificate by serial (hex) and rewrite the CRL; a running gateway picks it up.
    Revoke {
        #[arg(long, default_value = "ca")]
        dir: PathBuf,
        serial: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse every .cedar file in DIR and validate it against DIR's one .cedarschema
    /// (strict mode); every problem is printed with its file and line. Exit 1 on any.
    Check {
        /// The policy directory, e.g. policies/cedar.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Validate a catalog file; errors name the file, line and column.
    Check { file: PathBuf },
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo {
            dir,
            exit,
            listen,
            people,
            postgres,
            mysql,
        } => {
            telemetry::init("warn");
            demo::run(demo::DemoOptions {
                dir,
                exit,
                listen,
                people,
                placement: demo::Placement { postgres, mysql },
            })
            .await
        }
        Command::DemoData {
            size,
            seed,
            dir,
            postgres,
            mysql,
        } => {
            telemetry::init("warn");
            if size == 0 {
                return Err(Error::Config("--size must be at least 1".into()));
            }
            let summary = paotui_adapters::demo::generate(&paotui_adapters::demo::Options {
                dir: dir.clone(),
                people: size,
                seed,
                postgres,
                mysql,
                progress: true,
            })
            .await?;
            println!("wrote department data to {} (seed {seed}):", dir.display());
            for (table, rows) in &summary.rows {
                println!("  {table:<18} {rows:>10} rows");
            }
            Ok(())
        }
        Command::Serve { config } => {
            telemetry::init("info");
            let cfg = Config::load(&config)?;
            let server = server::spawn(&cfg).await?;
            shutdown_signal().await;
            tracing::info!("shutting down");
            server.shutdown().await;
            Ok(())
        }
        Command::Ca { command } => ca(command),
        Command::Audit { command } => {
            telemetry::init("warn");
            crate::audit_cli::run(command).await
        }
        Command::License { command } => {
            telemetry::init("warn");
            crate::license_cli::run(command).await
        }
        Command::Stats {
            figure,
            config,
            from,
            to,
            dept,
            site,
        } => {
            telemetry::init("warn");
            let filters = crate::stats::Filters::parse(
                from.as_deref(),
                to.as_deref(),
                dept.as_deref(),
                site.as_deref(),
            )?;
            stats(figure.as_deref(), &config, &filters).await
        }
        Command::Archive {
            before,
            dir,
            config,
        } => {
            telemetry::init("warn");
            let before = chrono::NaiveDate::parse_from_str(&before, "%Y-%m-%d")
                .map_err(|_| Error::BadRequest("--before must be a date YYYY-MM-DD".into()))?;
            let cfg = Config::load(&config)?;
            let dir = match dir {
                Some(d) => d,
                None => cfg.path(std::path::Path::new("archive")),
            };
            let store = paotui_repository::Store::open(&cfg.database_url()).await?;
            let (today, _) = crate::vault::now();
            let done = crate::archive::archive(&store, &dir, before, today).await?;
            match &done.dir {
                Some(d) => println!(
                    "archived entries {}..{} ({} rows) to {}",
                    done.from_idx,
                    done.upto_idx,
                    done.rows,
                    d.display()
                ),
                None => println!(
                    "nothing to archive before {before} (archive ends at entry {})",
                    done.upto_idx
                ),
            }
            store.close().await;
            Ok(())
        }
        Command::Alerts {
            command: AlertsCommand::Check { file },
        } => {
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(file.display(), e))?;
            let rules = crate::alerts::parse(&file.display().to_string(), &text)?;
            println!("{}: ok ({} rules)", file.display(), rules.len());
            Ok(())
        }
        Command::Alerts {
            command: AlertsCommand::Evaluate { config },
        } => {
            telemetry::init("warn");
            let cfg = Config::load(&config)?;
            let limits = cfg.sql.checked()?;
            let rules =
                crate::alerts::load(cfg.alerts.rules.as_ref().map(|p| cfg.path(p)).as_deref())?;
            let catalog = cfg.load_catalog()?;
            let store = paotui_repository::Store::open(&cfg.database_url()).await?;
            let (_, now) = crate::vault::now();
            let raised = crate::alerts::evaluate(&store, &catalog, &limits, &rules, now).await?;
            for r in raised {
                println!("{}: {} flagged, {} new", r.rule, r.flagged, r.new);
            }
            store.close().await;
            Ok(())
        }
        Command::Sql {
            query,
            config,
            format,
        } => {
            telemetry::init("warn");
            sql(&query, &config, format).await
        }
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => {
            let p = paotui_policies::cedar::Policies::load_dir(&dir, Default::default())?;
            println!(
                "{}: ok ({} policies valid against the schema)",
                dir.display(),
                p.len()
            );
            Ok(())
        }
        Command::Catalog {
            command: CatalogCommand::Check { file },
        } => {
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(file.display(), e))?;
            let cat = Catalog::parse(&file.display().to_string(), &text)?;
            println!(
                "{}: ok ({} departments, {} services, {} license types, {} matters)",
                file.display(),
                cat.departments.len(),
                cat.services.len(),
                cat.license_types.len(),
                cat.matters.len()
            );
            Ok(())
        }
    }
}

async fn stats(
    figure: Option<&str>,
    config: &std::path::Path,
    filters: &crate::stats::Filters,
) -> Result<()> {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    let figures: Vec<&crate::stats::Figure> = match figure {
        Some(name) => vec![crate::stats::figure(name)?],
        None => crate::stats::FIGURES.iter().collect(),
    };
    let cfg = Config::load(config)?;
    let limits = cfg.sql.checked()?;
    let catalog = cfg.load_catalog()?;
    let store = paotui_repository::Store::open(&cfg.database_url()).await?;
    let ctx = crate::sql::session(&store, Some(&catalog), &limits).await?;
    for f in figures {
        let answer = crate::sql::run(&ctx, &filters.sql(f), &limits).await?;
        let table = pretty_format_batches(&answer.batches)
            .map_err(|e| Error::Internal(format!("stats table: {e}")))?;
        println!("{} — {}\n{}\n{table}\n", f.name, f.title, f.definition);
    }
    store.close().await;
    Ok(())
}

async fn sql(query: &str, config: &std::path::Path, format: SqlFormat) -> Result<()> {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    let cfg = Config::load(config)?;
    let limits = cfg.sql.checked()?;
    let catalog = cfg.load_catalog()?;
    let store = paotui_repository::Store::open(&cfg.database_url()).await?;
    let ctx = crate::sql::session(&store, Some(&catalog), &limits).await?;
    let answer = crate::sql::run(&ctx, query, &limits).await?;
    let batch = datafusion::arrow::compute::concat_batches(&answer.schema, &answer.batches)
        .map_err(|e| Error::Internal(format!("sql answer: {e}")))?;
    let out = match format {
        SqlFormat::Table => pretty_format_batches(&[batch])
            .map(|t| format!("{t}\n"))
            .map_err(|e| Error::Internal(format!("sql table: {e}")))?,
        SqlFormat::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(Vec::new());
            w.write(&batch)
                .map_err(|e| Error::Internal(format!("sql csv: {e}")))?;
            String::from_utf8_lossy(&w.into_inner()).into_owned()
        }
        SqlFormat::Json => {
            let rows = crate::routes::services::json_rows(&batch)?;
            serde_json::to_string_pretty(&rows).map_err(|e| Error::Internal(e.to_string()))? + "\n"
        }
    };
    print!("{out}");
    if answer.truncated {
        eprintln!(
            "(truncated at {} rows: [sql] max_rows in {})",
            answer.rows,
            config.display()
        );
    }
    store.close().await;
    Ok(())
}

fn ca(cmd: CaCommand) -> Result<()> {
    match cmd {
        CaCommand::Init { dir, name, days } => {
            let ca = Ca::init(&dir, &name, days)?;
            println!(
                "created CA {} and CRL {}",
                ca.cert_path().display(),
                ca.crl_path().display()
            );
        }
        CaCommand::Issue {
            dir,
            dept,
            system,
            out,
            days,
        } => {
            let ca = Ca::open(&dir)?;
            let dept = DeptCode::parse(&dept)?;
            let system = SystemId::parse(&system)?;
            let issued = ca.issue_client(&dept, &system, days)?;
            let (c, k) = issued.write(&out, &format!("{dept}-{system}"))?;
            println!(
                "issued {} (key {}) serial {}",
                c.display(),
                k.display(),
                issued.serial
            );
        }
        CaCommand::IssueServer {
            dir,
            hosts,
            out,
            days,
        } => {
            let ca = Ca::open(&dir)?;
            let issued = ca.issue_server(&hosts, days)?;
            let (c, k) = issued.write(&out, "server")?;
            println!(
                "issued {} (key {}) serial {}",
                c.display(),
                k.display(),
                issued.serial
            );
        }
        CaCommand::Revoke {
            dir,
            serial,
            reason,
        } => {
            let ca = Ca::open(&dir)?;
            if ca.revoke(&serial, reason.as_deref())? {
                println!(
                    "revoked {serial}; CRL rewritten at {}",
                    ca.crl_path().display()
                );
            } else {
                println!("{serial} was already revoked");
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
