//! `paotui.toml`: where the gateway listens, its files, limits and department sources.
//!
//! Relative paths are resolved against the directory of the config file, so a world
//! directory can be moved as a whole. Secrets (database passwords) come from environment
//! variables named in the file, never from the file itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use paotui_adapters::ColumnType;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// API address (mTLS).
    pub listen: SocketAddr,
    /// The gateway store: `sqlite://…` or `postgres://…`. Default: `sqlite://<dir>/paotui.db`.
    /// `PAOTUI_DATABASE` overrides it.
    #[serde(default)]
    pub database: Option<String>,
    /// The data-service catalog.
    pub catalog: PathBuf,
    pub tls: TlsConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub audit: AuditConfig,
    /// Department data sources by name; catalog services refer to them.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Public holidays and make-up workdays (调休) for working-day deadlines.
    #[serde(default)]
    pub calendar: paotui_policies::calendar::CalendarConfig,
    /// How reads are bound to cases (`[policy]`).
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Limits of auditor SQL (`POST /v1/audit/sql`, `paotui sql`).
    #[serde(default)]
    pub sql: SqlConfig,
    /// Supervision rules and how often they run (`[alerts]`).
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Directory the relative paths above are resolved against (the config file's own).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate(s) client certificates must chain to.
    pub ca: PathBuf,
    /// CRL file; re-read when it changes, no restart needed.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Ed25519 response/checkpoint signing key; generated on first start.
    #[serde(default = "default_signing")]
    pub signing: PathBuf,
    /// HMAC key for subject identifiers in the audit log; generated on first start.
    #[serde(default = "default_subject")]
    pub subject_hmac: PathBuf,
    /// One Ed25519 key per license-issuing department, `<DEPT>-ed25519.pem` in this
    /// directory; generated on first start for each issuer the catalog names.
    #[serde(default = "default_issuers")]
    pub issuers: PathBuf,
    /// AES-256-GCM key sealing stored license documents; generated on first start.
    /// Losing it makes the stored documents unreadable: back it up with the store.
    #[serde(default = "default_data_key")]
    pub data_key: PathBuf,
}

fn default_signing() -> PathBuf {
    PathBuf::from("keys/gateway-ed25519.pem")
}
fn default_subject() -> PathBuf {
    PathBuf::from("keys/subject-hmac.key")
}
fn default_issuers() -> PathBuf {
    PathBuf::from("keys/issuers")
}
fn default_data_key() -> PathBuf {
    PathBuf::from("keys/data-aes256.key")
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            signing: default_signing(),
            subject_hmac: default_subject(),
            issuers: default_issuers(),
            data_key: default_data_key(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted (bytes).
    pub body_bytes: usize,
    /// Whole-request time limit (ms).
    pub request_timeout_ms: u64,
    /// Time limit for one department query (ms).
    pub statement_timeout_ms: u64,
    /// Rows read from a source at most.
    pub max_rows: usize,
    /// How often the CRL file is checked for changes (ms).
    pub crl_poll_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes: 64 * 1024,
            request_timeout_ms: 15_000,
            statement_timeout_ms: 5_000,
            max_rows: 1_000,
            crl_poll_ms: 2_000,
        }
    }
}

/// Access policy settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Whether a data query must name an open case (purpose binding, 目的绑定).
    pub purpose_binding: PurposeBinding,
    /// A Cedar policy directory (one `.cedarschema`, any `.cedar` files), reloaded on
    /// SIGHUP. Default: the policies shipped in `policies/cedar/`, built in.
    pub dir: Option<PathBuf>,
}

/// `required` (the default): a data query needs an open case of its subject, with a matter
/// listing the service, handled by the caller's department. `off`: queries are decided by
/// the catalog's consumer lists alone — for measuring what binding costs, or for a
/// migration period before the windows send cases; the gateway warns at start-up.
/// License fetches are bound to cases either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurposeBinding {
    #[default]
    Required,
    Off,
}

/// Supervision rules (电子监察 alerts).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// A rules file (see `examples/alerts.toml`); without it the built-in rules run.
    pub rules: Option<PathBuf>,
    /// Seconds between evaluations; 0 evaluates only on demand
    /// (`POST /v1/alerts/evaluate`).
    pub interval_s: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            rules: None,
            interval_s: 300,
        }
    }
}

/// Limits of one auditor SQL query: a runaway query is cancelled at them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// Most rows an answer carries (`truncated` says when there were more).
    pub max_rows: usize,
    /// Wall-clock limit of planning and running the query (ms).
    pub timeout_ms: u64,
    /// Memory the query's operators (sorts, joins, aggregates) may hold (MiB).
    pub memory_mb: usize,
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            max_rows: 10_000,
            timeout_ms: 10_000,
            memory_mb: 256,
        }
    }
}

impl SqlConfig {
    /// The limits, refused when one is zero (a query could never run).
    pub fn checked(&self) -> Result<SqlConfig> {
        if self.max_rows == 0 || self.timeout_ms == 0 || self.memory_mb == 0 {
            return Err(Error::Config(
                "[sql] max_rows, timeout_ms and memory_mb must each be at least 1".into(),
            ));
        }
        Ok(self.clone())
    }
}

/// The tamper-evident audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The log's name: the first line of every checkpoint and the checkpoint key's name
    /// (C2SP signed-note), e.g. `gateway.example.gov.cn/audit`. Changing it starts a
    /// differently named log for verifiers.
    pub origin: String,
    /// Department codes whose systems may read the log (`/v1/audit/*`): 电子监察.
    pub auditors: Vec<String>,
    /// Department codes running a citizen-facing portal, whose systems may ask who read
    /// a citizen's data (`GET /v1/audit/subject`; policy role `portal`).
    pub portals: Vec<String>,
    /// Most entries committed in one transaction.
    pub max_batch: usize,
    /// How long a batch waits for more entries once it has one (µs). 0 commits what is
    /// queued at once; batches still form while the previous commit runs.
    pub max_wait_us: u64,
    /// A signed checkpoint is stored with the first batch after this interval (ms).
    pub checkpoint_interval_ms: u64,
    /// MiB of tree nodes kept in memory so proofs need no store read (the newest
    /// entries' nodes, and those proofs asked for lately). The whole tree takes about
    /// 65 bytes per entry; the default 16 MiB holds the newest ~250k entries' nodes.
    pub proof_cache_mb: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            origin: "paotui.local/audit".into(),
            auditors: vec!["JC".into()],
            portals: vec![],
            max_batch: 4096,
            max_wait_us: 0,
            checkpoint_interval_ms: 1_000,
            proof_cache_mb: 16,
        }
    }
}

impl AuditConfig {
    pub fn options(&self) -> Result<paotui_repository::AuditOptions> {
        if self.max_batch == 0 {
            return Err(Error::Config("[audit] max_batch must be at least 1".into()));
        }
        Ok(paotui_repository::AuditOptions {
            origin: self.origin.clone(),
            max_batch: self.max_batch,
            max_wait: std::time::Duration::from_micros(self.max_wait_us),
            checkpoint_interval: std::time::Duration::from_millis(self.checkpoint_interval_ms),
            cache_bytes: self.proof_cache_mb.saturating_mul(1 << 20),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A SQLite file, opened read-only.
    Sqlite { path: PathBuf },
    /// PostgreSQL. The connection URL comes from the environment variable `url_env`
    /// (use this whenever it holds a password), or from `url` when it holds none.
    Postgres {
        #[serde(default)]
        url_env: Option<String>,
        #[serde(default)]
        url: Option<String>,
    },
    /// MySQL / MariaDB, likewise.
    Mysql {
        #[serde(default)]
        url_env: Option<String>,
        #[serde(default)]
        url: Option<String>,
    },
    /// A CSV export with a header line; the SQL sees it as `table` (default: the source
    /// name). Columns are text unless typed in `columns`.
    Csv {
        path: PathBuf,
        #[serde(default)]
        table: Option<String>,
        #[serde(default)]
        columns: BTreeMap<String, ColumnType>,
    },
    /// A Parquet export; its own schema gives the types.
    Parquet {
        path: PathBuf,
        #[serde(default)]
        table: Option<String>,
    },
    /// A department REST API answering JSON to `GET url?param=value…`.
    Http {
        url: String,
        #[serde(default)]
        table: Option<String>,
        columns: BTreeMap<String, ColumnType>,
        /// JSON pointer to the rows in the answer, e.g. `/data`.
        #[serde(default)]
        rows_at: Option<String>,
        /// Environment variable holding a bearer token for the upstream.
        #[serde(default)]
        token_env: Option<String>,
    },
}

impl SourceConfig {
    /// The connection URL of a database source: from its environment variable, or from
    /// the file when it carries no password.
    pub fn db_url(name: &str, url_env: Option<&str>, url: Option<&str>) -> Result<String> {
        match (url_env, url) {
            (Some(var), None) => Self::from_env(name, var),
            (None, Some(u)) => {
                let parsed = url::Url::parse(u)
                    .map_err(|e| Error::Config(format!("source {name}: bad url: {e}")))?;
                if parsed.password().is_some() {
                    return Err(Error::Config(format!(
                        "source {name}: the url holds a password; put it in an environment variable and name it in url_env"
                    )));
                }
                Ok(u.to_owned())
            }
            _ => Err(Error::Config(format!(
                "source {name}: give exactly one of url_env (an environment variable) or url"
            ))),
        }
    }

    /// A secret from the environment variable `var`.
    pub fn from_env(name: &str, var: &str) -> Result<String> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ => Err(Error::Config(format!(
                "source {name}: environment variable {var} is not set"
            ))),
        }
    }
}

impl Config {
    /// Reads and checks a config file; errors name the file, line and column.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
        let mut cfg = Self::parse(&path.display().to_string(), &text)?;
        cfg.base_dir = path
            .parent()
            .map(Path::to_owned)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(cfg)
    }

    pub fn parse(file: &str, text: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before
                        .rfind('\n')
                        .map_or(before.len(), |i| before.len() - i - 1)
                        + 1;
                    (line, col)
                })
                .unwrap_or((1, 1));
            Error::Config(format!("{file}:{line}:{col}: {}", e.message()))
        })?;
        cfg.calendar()
            .map_err(|e| Error::Config(format!("{file}: [calendar]: {e}")))?;
        Ok(cfg)
    }

    /// The working-day calendar of `[calendar]`.
    pub fn calendar(&self) -> Result<paotui_policies::calendar::Calendar> {
        Ok(paotui_policies::calendar::Calendar::from_config(
            &self.calendar,
        )?)
    }

    /// A path from the file, resolved against the config's directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Reads and validates the catalog file this config names; errors name its path and line.
    pub fn load_catalog(&self) -> Result<paotui_policies::catalog::Catalog> {
        let path = self.path(&self.catalog);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), e))?;
        Ok(paotui_policies::catalog::Catalog::parse(
            &path.display().to_string(),
            &text,
        )?)
    }

    /// The store URL in force (environment, file, or the default SQLite file).
    pub fn database_url(&self) -> String {
        if let Ok(url) = std::env::var("PAOTUI_DATABASE")
            && !url.is_empty()
        {
            return url;
        }
        self.database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.path(Path::new("paotui.db")).display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_never_carry_passwords_in_the_file() {
        assert!(SourceConfig::db_url("p", None, Some("postgres://ro@db/x")).is_ok());
        let e = SourceConfig::db_url("p", None, Some("postgres://ro:pw@db/x")).unwrap_err();
        assert!(e.to_string().contains("url_env"), "{e}");
        assert!(SourceConfig::db_url("p", None, None).is_err());
        let e = SourceConfig::db_url("p", Some("PAOTUI_TEST_SURELY_UNSET"), None).unwrap_err();
        assert!(e.to_string().contains("PAOTUI_TEST_SURELY_UNSET"), "{e}");
    }

    #[test]
    fn errors_have_line_numbers() {
        let text = "listen = \"127.0.0.1:8443\"\ncatalog = \"c.toml\"\n[tls]\nca = 3\n";
        let e = Config::parse("paotui.toml", text).unwrap_err().to_string();
        assert!(e.starts_with("paotui.toml:4:"), "{e}");
        let e = Config::parse("paotui.toml", "listen = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("paotui.toml:1:"), "{e}");
    }

    #[test]
    fn the_example_config_parses_and_a_bad_calendar_is_named() {
        let example = include_str!("../../examples/paotui.toml");
        let cfg = Config::parse("paotui.toml", example).unwrap();
        let cal = cfg.calendar().unwrap();
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert!(!cal.is_working_day(d("2025-10-08")) && cal.is_working_day(d("2025-10-11")));
        let bad = example.replace("\"2025-09-28\"", "\"2025-09-29\"");
        let e = Config::parse("paotui.toml", &bad).unwrap_err().to_string();
        assert!(e.starts_with("paotui.toml: [calendar]:"), "{e}");
        assert!(e.contains("not a weekend day"), "{e}");
    }
}
