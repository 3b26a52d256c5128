//! paotui-tests: the end-to-end harness. [`TestApp::spawn`] builds a small demo world in
//! its own temporary directory, starts the real gateway on port 0, and hands out mTLS
//! clients for the world's systems. Every log line of the process is captured so tests
//! can assert that no personal identifier was logged.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use paotui_gateway::client::MtlsClient;
use paotui_gateway::config::Config;
use paotui_gateway::demo::World;
use paotui_gateway::server::{self, Server};
use paotui_repository::{AuditEntry, Store};

/// Everything written by `tracing` in this process, at TRACE level.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn contents(&self) -> String {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&g).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once per process and returns its buffer.
pub fn logs() -> LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuffer::default();
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            // Everything at TRACE, with the same caps production has (RUST_LOG ignored).
            .with_env_filter(paotui_gateway::telemetry::capped(
                tracing_subscriber::EnvFilter::new("trace"),
            ))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buf
    })
    .clone()
}

/// A running gateway over a fresh demo world.
pub struct TestApp {
    pub world: World,
    pub addr: SocketAddr,
    pub config: Config,
    server: Option<Server>,
    _dir: tempfile::TempDir,
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

impl TestApp {
    /// Builds a world of 200 people in a temp dir and starts the gateway on 127.0.0.1:0.
    pub async fn spawn() -> Result<TestApp, Error> {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`spawn`](Self::spawn), with a chance to adjust the config first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Result<TestApp, Error> {
        logs();
        let dir = tempfile::tempdir()?;
        let world = World::open_or_build(&dir.path().join("world"), 200).await?;
        let mut config = Config::load(&world.config_path())?;
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.limits.crl_poll_ms = 100;
        adjust(&mut config);
        let server = server::spawn(&config).await?;
        Ok(TestApp {
            addr: server.addr,
            world,
            config,
            server: Some(server),
            _dir: dir,
        })
    }

    /// An mTLS client as one of the world's systems, e.g. `("RS", "shebao")`.
    pub fn client(&self, dept: &str, system: &str) -> Result<MtlsClient, Error> {
        Ok(self.world.client(dept, system, self.addr)?)
    }

    /// A client with an arbitrary (certificate, key) pair, or none.
    pub fn client_with(&self, identity: Option<(PathBuf, PathBuf)>) -> Result<MtlsClient, Error> {
        let id = identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        Ok(MtlsClient::new(
            &self.world.ca_cert(),
            id,
            self.addr,
            "localhost",
        )?)
    }

    /// A second handle on the gateway's store, for inspecting the audit log.
    pub async fn store(&self) -> Result<Store, Error> {
        Ok(Store::open(&self.config.database_url()).await?)
    }

    /// The stored audit entry at `index` (an error when there is none).
    pub async fn audit_entry(&self, index: u64) -> Result<AuditEntry, Error> {
        self.store()
            .await?
            .audit_entry(index)
            .await?
            .ok_or_else(|| format!("no audit entry {index}").into())
    }

    /// Opens a case for `applicant` and `matters` as `client`'s system (any system may
    /// accept a case) and answers its id: the purpose a data query names.
    pub async fn open_case(
        &self,
        client: &MtlsClient,
        applicant: &str,
        matters: &[&str],
    ) -> Result<String, Error> {
        let r = client
            .post_json(
                "/v1/cases",
                &serde_json::json!({"applicant": applicant, "matters": matters}),
            )
            .await?;
        if r.status != http::StatusCode::CREATED {
            return Err(format!(
                "opening a case: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )
            .into());
        }
        r.json()?["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "case answer without an id".into())
    }

    /// The gateway store's SQLite file.
    pub fn store_file(&self) -> PathBuf {
        self.world.dir.join("paotui.db")
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// A TCP proxy in front of a department database, which a test can cut and restore to
/// play "the database went away" without touching the real server.
pub struct TcpProxy {
    pub addr: SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `target` while up.
    pub async fn start(target: SocketAddr) -> Result<TcpProxy, Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (up, rx) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*rx.borrow() {
                    // Down: accept and drop at once, as a dead server's host would reset.
                    drop(inbound);
                    continue;
                }
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        // Cut: existing connections die too.
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(TcpProxy { addr, up, task })
    }

    pub fn set_up(&self, up: bool) {
        let _ = self.up.send(up);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh, uniquely named PostgreSQL database: `(name, url)`. `None` when PostgreSQL is
/// unreachable outside CI; under `CI=true` that is an error (never a silent skip).
pub async fn fresh_pg_database(prefix: &str) -> Result<Option<(String, String)>, Error> {
    use sqlx::Connection;
    let mut admin = match sqlx::PgConnection::connect(PG_ADMIN).await {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: PostgreSQL unreachable: {e}");
            return Ok(None);
        }
        Err(e) => return Err(format!("PostgreSQL unreachable under CI: {e}").into()),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let name = format!("{prefix}_{}_{nanos}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    Ok(Some((name, url)))
}

/// Drops a database made by [`fresh_pg_database`].
pub async fn drop_pg_database(name: &str) -> Result<(), Error> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(PG_ADMIN).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}
