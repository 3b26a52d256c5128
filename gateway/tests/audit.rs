//! The audit log through the binary: `paotui audit verify | proof | check-proof` on a
//! demo world, tampering named by index, and the crash test (`kill -9` under load).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paotui_gateway::demo::World;
use paotui_repository::Store;
use serde_json::json;

fn paotui() -> Command {
    Command::new(env!("CARGO_BIN_EXE_paotui"))
}

fn run(args: &[&str]) -> Output {
    paotui().args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A demo world with a few audited requests in its log (the walk-through's).
fn world(dir: &Path) -> PathBuf {
    let world = dir.join("world");
    let o = paotui()
        .args(["demo", "--exit", "--people", "200", "--dir"])
        .arg(&world)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    world
}

fn sqlite(world: &Path, sql: &str) {
    let url = format!("sqlite://{}", world.join("paotui.db").display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
    });
}

#[test]
fn audit_verify_proof_and_check_proof_and_tampering_named_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let config = world.join("paotui.toml");
    let config = config.to_str().unwrap();

    let o = run(&["audit", "verify", "--config", config]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.starts_with("audit log ok: "), "{out}");
    let vkey = out
        .lines()
        .find_map(|l| l.strip_prefix("verifier key: "))
        .unwrap()
        .to_owned();
    assert!(vkey.starts_with("paotui.demo/audit+"), "{vkey}");

    // A proof a third party checks with the verifier key alone.
    let o = run(&["audit", "proof", "1", "--config", config]);
    assert!(o.status.success(), "{}", text(&o));
    let proof_path = dir.path().join("proof.json");
    std::fs::write(&proof_path, &o.stdout).unwrap();
    let proof = proof_path.to_str().unwrap();
    let o = run(&["audit", "check-proof", proof, "--verifier-key", &vkey]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: entry 1 is in log"));
    // The same proof with a changed entry, or checked with another key, fails.
    let mut p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&proof_path).unwrap()).unwrap();
    let checkpoint = p["checkpoint"].as_str().unwrap().to_owned();
    p["entry"]["status"] = json!(500);
    let forged = dir.path().join("forged.json");
    std::fs::write(&forged, p.to_string()).unwrap();
    let o = run(&[
        "audit",
        "check-proof",
        forged.to_str().unwrap(),
        "--verifier-key",
        &vkey,
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("differs from its canonical bytes"),
        "{}",
        text(&o)
    );
    let other = vkey.replace("paotui.demo/audit+", "paotui.other/audit+");
    let o = run(&["audit", "check-proof", proof, "--verifier-key", &other]);
    assert!(!o.status.success(), "{}", text(&o));
    let o = run(&["audit", "proof", "100000", "--config", config]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no audit entry 100000"),
        "{}",
        text(&o)
    );

    // An auditor's kept checkpoint is consistent with the log.
    let kept = dir.path().join("kept.checkpoint");
    std::fs::write(&kept, &checkpoint).unwrap();
    let kept = kept.to_str().unwrap();
    let o = run(&[
        "audit",
        "verify",
        "--config",
        config,
        "--from-checkpoint",
        kept,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("the given checkpoint is consistent"));
    let bad = dir.path().join("bad.checkpoint");
    std::fs::write(&bad, checkpoint.replacen("paotui.demo", "paotui.dem0", 1)).unwrap();
    let o = run(&[
        "audit",
        "verify",
        "--config",
        config,
        "--from-checkpoint",
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.checkpoint"),
        "{}",
        text(&o)
    );

    // One changed byte in entry 3: verify fails and names index 3.
    sqlite(
        &world,
        "UPDATE audit_entries SET request_id = request_id || 'x' WHERE idx = 3",
    );
    let o = run(&["audit", "verify", "--config", config]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("FAILED verification at index 3"),
        "{}",
        text(&o)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &Path) -> Server {
    Server(
        paotui()
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn wait_ready(world: &World, addr: SocketAddr) {
    let c = world.client("RS", "shebao", addr).unwrap();
    for _ in 0..200 {
        if c.keys().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway did not come up on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_under_load_loses_no_answered_entry_on_sqlite() {
    crash_under_load(None).await;
}

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_under_load_loses_no_answered_entry_on_postgres() {
    use sqlx::Connection;
    let mut admin = match sqlx::PgConnection::connect(PG_ADMIN).await {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping the PostgreSQL crash test (unreachable: {e})");
            return;
        }
        Err(e) => panic!("PostgreSQL unreachable under CI: {e}"),
    };
    let name = format!("paotui_crash_{}", std::process::id());
    let drop_db = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::query(&drop_db).execute(&mut admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    crash_under_load(Some(format!("postgres://postgres@127.0.0.1:5432/{name}"))).await;
    sqlx::query(&drop_db).execute(&mut admin).await.unwrap();
}

/// Opens a 社会保障卡申领 case for `subject` as RS; answers its id.
async fn open_case(c: &paotui_gateway::client::MtlsClient, subject: &str) -> String {
    let r = c
        .post_json(
            "/v1/cases",
            &json!({"applicant": subject, "matters": ["RS-SBK-SL"]}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, http::StatusCode::CREATED, "{:?}", r.json());
    r.json().unwrap()["id"].as_str().unwrap().to_owned()
}

/// Every answer a client received before `kill -9` has its entry (same body hash) after
/// the restart; the log verifies; indices are dense and never repeat. The store is the
/// world's SQLite file, or the PostgreSQL database `store`.
async fn crash_under_load(store: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let world_dir = world(dir.path());
    let world = World::open(&world_dir).unwrap();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let cfg_path = world_dir.join("paotui.toml");
    let store_url = store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", world_dir.join("paotui.db").display()));
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let cfg = cfg.replace(
        "listen = \"127.0.0.1:8443\"",
        &format!("listen = \"{addr}\"\ndatabase = \"{store_url}\""),
    );
    std::fs::write(&cfg_path, cfg).unwrap();

    let mut server = serve(&cfg_path);
    wait_ready(&world, addr).await;
    let received: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    let opener = world.client("RS", "shebao", addr).unwrap();
    for w in 0..24 {
        let client = world.client("RS", "shebao", addr).unwrap();
        let subject = world.subjects[w % world.subjects.len()].clone();
        // Each query serves a case of its subject (purpose binding).
        let case = open_case(&opener, &subject).await;
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(jwks) = client.keys().await else {
                return;
            };
            // Several requests per connection; stop at the first failure (the kill).
            let Ok(conn) = client.connect().await else {
                return;
            };
            let mut conn = conn;
            loop {
                let body = json!({"subject": subject, "case_id": case}).to_string();
                let r = conn
                    .send(
                        http::Method::POST,
                        "/v1/services/population.person/query",
                        &paotui_gateway::client::json_headers(),
                        body.into_bytes(),
                    )
                    .await;
                let Ok(r) = r else { return };
                let Ok((_, idx)) = r.verify(&jwks) else {
                    return;
                };
                let hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, &r.body));
                received.lock().unwrap().push((idx, hash));
            }
        }));
    }
    // Let the load build up, then kill the gateway mid-flight.
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if received.lock().unwrap().len() >= 300 {
            break;
        }
    }
    server.0.kill().unwrap(); // SIGKILL on Unix: no shutdown path runs.
    server.0.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let got = received.lock().unwrap().clone();
    assert!(
        got.len() >= 50,
        "too little load before the kill: {}",
        got.len()
    );

    eprintln!("{} answers received before kill -9", got.len());

    // Restart on the same store; the log carries on where it stopped.
    let server = serve(&cfg_path);
    wait_ready(&world, addr).await;
    let c = world.client("RS", "shebao", addr).unwrap();
    let jwks = c.keys().await.unwrap();
    let case = open_case(&c, &world.subjects[0]).await;
    let r = c
        .post_json(
            "/v1/services/population.person/query",
            &json!({"subject": world.subjects[0], "case_id": case}),
        )
        .await
        .unwrap();
    let (_, after) = r.verify(&jwks).unwrap();
    drop(server);

    let store = Store::open(&store_url).await.unwrap();
    let n = store.next_index().await.unwrap();
    assert_eq!(store.audit_len().await.unwrap(), n, "indices are dense");
    assert_eq!(
        store.tree_size().await.unwrap(),
        n,
        "every entry has its leaf"
    );
    assert!(after < n);
    let mut seen = std::collections::HashSet::new();
    for (idx, hash) in &got {
        assert!(seen.insert(*idx), "index {idx} was given to two answers");
        let e = store
            .audit_entry(*idx)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("answered entry {idx} lost"));
        assert_eq!(
            e.entry.body_sha256.as_deref(),
            Some(hash.as_str()),
            "entry {idx}"
        );
    }
    store.close().await;
    let o = run(&["audit", "verify", "--config", cfg_path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Policies reload on SIGHUP: an added `forbid` takes effect without a restart, and a
/// directory that no longer validates is refused while the previous set stays in force.
/// (In this file because it shares the child-process server helpers.)
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_reload_on_sighup_and_a_broken_set_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let world_dir = world(dir.path());
    let world = World::open(&world_dir).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg_path = world_dir.join("paotui.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "listen = \"127.0.0.1:8443\"",
        &format!("listen = \"{addr}\""),
    );
    std::fs::write(&cfg_path, cfg).unwrap();
    let server = serve(&cfg_path);
    wait_ready(&world, addr).await;
    let rs = world.client("RS", "shebao", addr).unwrap();
    let subject = world.subjects[0].clone();
    let case = open_case(&rs, &subject).await;
    let query = || async {
        rs.post_json(
            "/v1/services/population.person/query",
            &json!({"subject": subject, "case_id": case}),
        )
        .await
        .unwrap()
    };
    assert_eq!(query().await.status, http::StatusCode::OK);

    let hup = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    };
    let policies = world_dir.join("policies");
    std::fs::write(
        policies.join("local.cedar"),
        "@id(\"rs-paused\")\nforbid (principal in Paotui::Department::\"RS\", action == Paotui::Action::\"query\", resource);\n",
    )
    .unwrap();
    hup(server.0.id());
    let mut denied = None;
    for _ in 0..100 {
        let r = query().await;
        if r.status == http::StatusCode::FORBIDDEN {
            denied = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = denied.expect("the reloaded forbid applies");
    let detail = r.json().unwrap()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("forbidden by policy rs-paused"), "{detail}");

    // A broken file: the reload is refused, the previous set (with rs-paused) stays.
    std::fs::write(
        policies.join("broken.cedar"),
        "permit (principal, action, resource) when {",
    )
    .unwrap();
    hup(server.0.id());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(query().await.status, http::StatusCode::FORBIDDEN);
    let mz = world.client("MZ", "dibao", addr).unwrap();
    let r = mz
        .post_json(
            "/v1/cases",
            &json!({"applicant": subject, "matters": ["MZ-DB-SQ"]}),
        )
        .await
        .unwrap();
    let mz_case = r.json().unwrap()["id"].as_str().unwrap().to_owned();
    let r = mz
        .post_json(
            "/v1/services/population.person/query",
            &json!({"subject": subject, "case_id": mz_case}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, http::StatusCode::OK, "the server still serves");
    drop(server);
}
