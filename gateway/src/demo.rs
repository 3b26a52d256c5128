//! `paotui demo`: a complete demo world on a fresh machine, and a walk-through of it over
//! real mTLS.
//!
//! The world (one directory) holds a CA, a server certificate, system certificates for
//! two departments, a population register of synthetic people (valid GB 11643 numbers),
//! the catalog and `paotui.toml`. It is built in a sibling directory and renamed into
//! place, so an interrupted build never leaves a half-world; a second run reuses it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::StatusCode;
use paotui_adapters::demo::Samples;
use paotui_certs::ca::Ca;
use paotui_certs::{DeptCode, SystemId};
use serde_json::json;

use crate::client::MtlsClient;
use crate::config::Config;
use crate::{Error, Result, server};

pub const SERVICE: &str = "population.person";

/// The demo world's generator seed (the date 佛山 opened its 一门式 windows city-wide).
pub const SEED: u64 = 20151026;

/// The demo catalog: four departments, one population service. It is also the example
/// catalog users copy (`examples/catalog.toml`), so the two never drift apart.
pub const CATALOG: &str = include_str!("../../examples/catalog.toml");

/// The example config (`examples/paotui.toml`), listening where the demo is told to.
const CONFIG: &str = include_str!("../../examples/paotui.toml");

fn config_text(listen: SocketAddr) -> String {
    CONFIG.replace(
        "listen = \"127.0.0.1:8443\"",
        &format!("listen = \"{listen}\""),
    )
}

/// The systems the demo issues certificates for: (dept, system, role).
pub const SYSTEMS: [(&str, &str, &str); 5] = [
    (
        "RS",
        "shebao",
        "social insurance system: a consumer, personal fields masked",
    ),
    (
        "MZ",
        "dibao",
        "minimum-living-allowance system: a consumer granted personal fields",
    ),
    (
        "SC",
        "dengji",
        "business registration system: handles 市场监管 matters, queries applicants' data for them",
    ),
    (
        "JC",
        "jiancha",
        "electronic supervision (电子监察): reads and verifies the audit log",
    ),
    (
        "ZW",
        "chuangkou",
        "一门办理 window system: accepts cases for every department, fetches prior licenses",
    ),
];

/// The member of staff at SC who decides the demo's cases (a decision names its operator).
const DECIDER: &[(&str, &str)] = &[("paotui-operator", "sc-officer-01")];

/// The issuing departments whose existing licenses the world imports into the vault.
pub const LICENSE_ISSUERS: [&str; 3] = ["GA", "SC", "BDC"];

/// A demo world on disk.
#[derive(Debug, Clone)]
pub struct World {
    pub dir: PathBuf,
    /// Synthetic ID numbers present in the population register.
    pub subjects: Vec<String>,
    /// Subjects present in each department's data.
    pub samples: Samples,
}

/// Where the demo puts the departments that can live on a server.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// The property registry goes to this PostgreSQL database.
    pub postgres: Option<String>,
    /// The business registry goes to this MySQL / MariaDB database.
    pub mysql: Option<String>,
}

/// Rewrites one `[sources.NAME]` SQLite block of the example config to a server source.
fn place_source(config: &str, name: &str, kind: &str, url: &str, env: &str) -> Result<String> {
    let old = format!("[sources.{name}]");
    let start = config
        .find(&old)
        .ok_or_else(|| Error::Internal(format!("example config has no {old}")))?;
    let end = config[start..]
        .find("\n\n")
        .map_or(config.len(), |i| start + i);
    let has_password = url::Url::parse(url)
        .map_err(|e| Error::Config(format!("--{kind} {url:?}: {e}")))?
        .password()
        .is_some();
    let conn = if has_password {
        // Passwords never go into the file: the user exports the variable.
        format!("url_env = \"{env}\"")
    } else {
        format!("url = \"{url}\"")
    };
    Ok(format!(
        "{}{old}\nkind = \"{kind}\"\n{conn}{}",
        &config[..start],
        &config[end..]
    ))
}

impl World {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("paotui.toml")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca").join("ca.pem")
    }
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }
    /// (certificate, key) of a demo system, e.g. `("RS", "shebao")`.
    pub fn system(&self, dept: &str, system: &str) -> (PathBuf, PathBuf) {
        let certs = self.dir.join("certs");
        (
            certs.join(format!("{dept}-{system}.pem")),
            certs.join(format!("{dept}-{system}-key.pem")),
        )
    }
    pub fn client(&self, dept: &str, system: &str, addr: SocketAddr) -> Result<MtlsClient> {
        let (c, k) = self.system(dept, system);
        MtlsClient::new(&self.ca_cert(), Some((&c, &k)), addr, "localhost")
    }

    /// Opens the world in `dir`, building it first if there is none.
    pub async fn open_or_build(dir: &Path, people: usize) -> Result<World> {
        Self::open_or_build_with(dir, people, &Placement::default()).await
    }

    /// Like [`World::open_or_build`], placing departments on servers when asked.
    pub async fn open_or_build_with(
        dir: &Path,
        people: usize,
        placement: &Placement,
    ) -> Result<World> {
        if dir.join("paotui.toml").exists() {
            return Self::open(dir);
        }
        if dir.exists()
            && std::fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(Error::Config(format!(
                "{} exists but holds no paotui.toml; choose another --dir or remove it",
                dir.display()
            )));
        }
        Self::build(dir, people, placement).await
    }

    pub fn open(dir: &Path) -> Result<World> {
        let path = dir.join("samples.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), e))?;
        let samples: Samples = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(World {
            dir: dir.to_owned(),
            subjects: samples.population.clone(),
            samples,
        })
    }

    async fn build(dir: &Path, people: usize, placement: &Placement) -> Result<World> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "paotui-demo".into());
        let staging = dir.with_file_name(format!(".{name}.building"));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| Error::io(staging.display(), e))?;
        }
        std::fs::create_dir_all(staging.join("data"))
            .map_err(|e| Error::io(staging.display(), e))?;

        let ca = Ca::init(&staging.join("ca"), "paotui demo CA", 3650)?;
        let certs = staging.join("certs");
        ca.issue_server(&["localhost".into(), "127.0.0.1".into()], 825)?
            .write(&certs, "server")?;
        for (dept, system, _) in SYSTEMS {
            ca.issue_client(&DeptCode::parse(dept)?, &SystemId::parse(system)?, 365)?
                .write(&certs, &format!("{dept}-{system}"))?;
        }
        let summary = paotui_adapters::demo::generate(&paotui_adapters::demo::Options {
            dir: staging.join("data"),
            people,
            seed: SEED,
            postgres: placement.postgres.clone(),
            mysql: placement.mysql.clone(),
            progress: true,
        })
        .await?;
        let samples = summary.samples;
        let write = |name: &str, text: &str| -> Result<()> {
            let p = staging.join(name);
            std::fs::write(&p, text).map_err(|e| Error::io(p.display(), e))
        };
        write("catalog.toml", CATALOG)?;
        // The shipped Cedar policies, as files an operator edits and reloads (SIGHUP).
        let policies = staging.join("policies");
        std::fs::create_dir_all(&policies).map_err(|e| Error::io(policies.display(), e))?;
        write(
            "policies/paotui.cedarschema",
            paotui_policies::cedar::SCHEMA,
        )?;
        for (name, text) in paotui_policies::cedar::SHIPPED {
            write(&format!("policies/{name}"), text)?;
        }
        let samples_json =
            serde_json::to_string_pretty(&samples).map_err(|e| Error::Internal(e.to_string()))?;
        write("samples.json", &samples_json)?;
        let mut config = config_text(SocketAddr::from(([127, 0, 0, 1], 8443)));
        if let Some(url) = &placement.postgres {
            config = place_source(
                &config,
                "property",
                "postgres",
                url,
                "PAOTUI_PROPERTY_DB_URL",
            )?;
        }
        if let Some(url) = &placement.mysql {
            config = place_source(&config, "business", "mysql", url, "PAOTUI_BUSINESS_DB_URL")?;
        }
        write("paotui.toml", &config)?;
        // Each issuing department migrates its existing licenses into the vault, exactly
        // as `paotui license import` does.
        for dept in LICENSE_ISSUERS {
            let file = staging.join("data").join(format!("licenses-{dept}.csv"));
            let rejects = staging
                .join("data")
                .join(format!("licenses-{dept}.rejects.csv"));
            let s = crate::license_cli::import(
                &file,
                &staging.join("paotui.toml"),
                DeptCode::parse(dept)?,
                Some("demo-import".into()),
                &rejects,
            )
            .await?;
            say(format!(
                "  {dept} imported {} licenses into the vault ({} rejected)",
                s.stored, s.rejected
            ));
        }
        if dir.exists() {
            std::fs::remove_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
        }
        std::fs::rename(&staging, dir).map_err(|e| Error::io(dir.display(), e))?;
        Ok(World {
            dir: dir.to_owned(),
            subjects: samples.population.clone(),
            samples,
        })
    }
}

/// Options of `paotui demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dir: PathBuf,
    pub exit: bool,
    pub listen: Option<SocketAddr>,
    pub people: usize,
    pub placement: Placement,
}

fn say(s: impl AsRef<str>) {
    // The demo is a CLI conversation with the person running it, not server logging.
    println!("{}", s.as_ref());
}

/// Runs the demo: build or reuse the world, start the gateway, walk through it.
pub async fn run(opts: DemoOptions) -> Result<()> {
    let fresh = !opts.dir.join("paotui.toml").exists();
    say(if fresh {
        format!("Building the demo world in {} …", opts.dir.display())
    } else {
        format!("Reusing the demo world in {}", opts.dir.display())
    });
    if !fresh && (opts.placement.postgres.is_some() || opts.placement.mysql.is_some()) {
        say("  (--postgres/--mysql apply when a world is built; remove the directory to rebuild)");
    }
    let world = World::open_or_build_with(&opts.dir, opts.people, &opts.placement).await?;
    // The walk-through follows this build's catalog (its matters, services, consumers);
    // a world built by another version would fail half-way, so say so up front.
    let shipped = [("catalog.toml", CATALOG)]
        .into_iter()
        .chain([(
            "policies/paotui.cedarschema",
            paotui_policies::cedar::SCHEMA,
        )])
        .map(|(n, t)| (n.to_owned(), t))
        .chain(
            paotui_policies::cedar::SHIPPED
                .iter()
                .map(|(n, t)| (format!("policies/{n}"), *t)),
        );
    for (name, text) in shipped {
        let path = opts.dir.join(&name);
        if !fresh && std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            return Err(Error::Config(format!(
                "{} differs from this version's demo world (an older world, or edited): \
                 remove {} to rebuild the demo world",
                path.display(),
                opts.dir.display()
            )));
        }
    }
    let mut cfg = Config::load(&world.config_path())?;
    cfg.listen = match opts.listen {
        Some(a) => a,
        None if opts.exit => SocketAddr::from(([127, 0, 0, 1], 0)),
        None => cfg.listen,
    };
    let server = server::spawn(&cfg).await?;
    let addr = server.addr;
    say(format!(
        "Gateway listening on https://localhost:{} (mTLS required)\n",
        addr.port()
    ));
    if let Err(e) = walkthrough(&world, addr).await {
        server.shutdown().await;
        return Err(e);
    }
    let (zw_cert, zw_key) = world.system("ZW", "chuangkou");
    let (cert, key) = world.system("SC", "dengji");
    let subject = world.samples.property.first().cloned().unwrap_or_default();
    let ca = world.ca_cert();
    let port = addr.port();
    say(format!(
        "\nTry it yourself: open a case as the window (ZW), then query for it as the handling \
         department (SC):\n\n  curl --cacert {ca} --cert {zw} --key {zwk} \\\n    \
         -H 'content-type: application/json' -H 'paotui-operator: clerk-001' \\\n    \
         -d '{{\"applicant\":\"{subject}\",\"matters\":[\"SC-GTGSH-SL\"]}}' \\\n    \
         https://localhost:{port}/v1/cases\n\n  curl --cacert {ca} --cert {sc} --key {sck} \\\n    \
         -H 'content-type: application/json' \\\n    \
         -d '{{\"subject\":\"{subject}\",\"case_id\":\"<id from the first answer>\",\"fields\":[\"name\",\"gender\",\"address\"]}}' \\\n    \
         https://localhost:{port}/v1/services/{SERVICE}/query\n",
        ca = ca.display(),
        zw = zw_cert.display(),
        zwk = zw_key.display(),
        sc = cert.display(),
        sck = key.display(),
    ));
    if opts.exit {
        server.shutdown().await;
        say("Walk-through complete.");
        return Ok(());
    }
    say("Serving until Ctrl-C.");
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    Ok(())
}

fn check(step: &str, got: StatusCode, want: StatusCode) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Client(format!(
            "demo step {step:?}: expected {want}, got {got}"
        )))
    }
}

/// Numbers the walk-through's steps as they are printed.
#[derive(Default)]
struct Steps(u32);

impl Steps {
    fn next(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
}

/// The materials resolution of a case answer, one line each.
fn say_materials(case: &serde_json::Value) {
    for m in case["materials"].as_array().cloned().unwrap_or_default() {
        let how = match m["by"].as_str().unwrap_or("") {
            "license" => format!(
                "license {} from the vault",
                m["license_id"].as_str().unwrap_or("")
            ),
            "data" => format!("data service {}", m["service"].as_str().unwrap_or("")),
            "deferred" => format!("deferred (容缺), due {}", m["due"].as_str().unwrap_or("")),
            _ => "paper, to collect".to_owned(),
        };
        say(format!("     {} ← {how}", m["name"].as_str().unwrap_or("")));
    }
    say(format!(
        "     {} paper copies avoided",
        case["papers_avoided"].as_u64().unwrap_or(0)
    ));
}

/// A window opens a case; answers its id and the case as JSON.
async fn open_case(
    client: &MtlsClient,
    jwks: &paotui_certs::Jwks,
    applicant: &str,
    matter: &str,
) -> Result<(String, serde_json::Value)> {
    let r = client
        .post_json(
            "/v1/cases",
            &json!({"applicant": applicant, "matters": [matter], "note": "一门办理窗口受理"}),
        )
        .await?;
    check("open case", r.status, StatusCode::CREATED)?;
    r.verify(jwks)?;
    let case = r.json()?;
    let id = case["id"].as_str().unwrap_or("").to_owned();
    Ok((id, case))
}

/// The scripted conversation: a window opens a case for another department, which queries
/// the applicant's data for it; what falls outside the case is refused; then the other
/// departments' sources, the audit log and the license vault.
pub async fn walkthrough(world: &World, addr: SocketAddr) -> Result<()> {
    let rs = world.client("RS", "shebao", addr)?;
    let sc = world.client("SC", "dengji", addr)?;
    let zw = world.client("ZW", "chuangkou", addr)?;
    let mut st = Steps::default();
    let jwks = rs.keys().await?;
    let kid = jwks.keys.first().map(|k| k.kid.clone()).unwrap_or_default();
    say(format!(
        "{}. GET /v1/keys → gateway key {kid} (Ed25519)",
        st.next()
    ));

    // A resident who owns property registers a sole proprietorship (个体工商户) at the
    // government-services window; 市场监管 (SC) handles the matter.
    let applicant = world
        .samples
        .property
        .first()
        .ok_or_else(|| Error::Client("demo world has no sample property owner".into()))?;
    let stranger = world
        .subjects
        .iter()
        .find(|s| *s != applicant)
        .ok_or_else(|| Error::Client("demo world has one person only".into()))?;
    let (case_id, case) = open_case(&zw, &jwks, applicant, "SC-GTGSH-SL").await?;
    say(format!(
        "{}. ZW/chuangkou accepts case {case_id} for 个体工商户设立登记 on behalf of SC (即办件) · materials:",
        st.next()
    ));
    say_materials(&case);

    let path = format!("/v1/services/{SERVICE}/query");
    let body = json!({"subject": applicant, "case_id": case_id, "fields": ["id_number", "name", "gender", "birth_date", "household_type", "address"]});
    let r = sc.post_json(&path, &body).await?;
    check("permitted query", r.status, StatusCode::OK)?;
    let (v, idx) = r.verify(&jwks)?;
    let first = (
        idx,
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &r.body)),
    );
    say(format!(
        "{}. SC/dengji queries {SERVICE} for the case → {} · signature verified (key {}) · audit index {idx}",
        st.next(),
        r.status,
        v.keyid
    ));
    let answer = r.json()?;
    if let Some(rows) = answer.get("rows").and_then(|r| r.as_array()) {
        for row in rows {
            say(format!("     {row}"));
        }
    }
    say(format!(
        "     masked for SC: {}",
        answer["fields"]
            .as_array()
            .map(|f| f
                .iter()
                .filter(|x| x["masked"] == json!(true))
                .filter_map(|x| x["name"].as_str())
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    ));
    let r = sc
        .post_json(
            "/v1/services/property.by_owner/query",
            &json!({"subject": applicant, "case_id": case_id, "fields": ["usage", "area", "mortgaged", "encumbrance"]}),
        )
        .await?;
    check("property for the case", r.status, StatusCode::OK)?;
    let (_, idx) = r.verify(&jwks)?;
    let rows = r.json()?["rows"].as_array().cloned().unwrap_or_default();
    say(format!(
        "{}. SC/dengji queries property.by_owner for the case → {} · {} row(s) · signature verified · audit index {idx}",
        st.next(),
        r.status,
        rows.len()
    ));

    // Outside the case: another person, another department, a mistyped ID.
    for (who, client, subject) in [("SC/dengji", &sc, stranger), ("RS/shebao", &rs, applicant)] {
        let r = client
            .post_json(&path, &json!({"subject": subject, "case_id": case_id}))
            .await?;
        check("denied query", r.status, StatusCode::FORBIDDEN)?;
        let (_, idx) = r.verify(&jwks)?;
        let about = if subject == applicant {
            "the applicant"
        } else {
            "an unrelated person"
        };
        say(format!(
            "{}. {who} asks about {about} under the same case → {} · {} · signature verified · audit index {idx}",
            st.next(),
            r.status,
            r.json()?["detail"].as_str().unwrap_or("")
        ));
    }
    let mut bad = applicant.clone().into_bytes();
    if let Some(last) = bad.last_mut() {
        *last = if *last == b'1' { b'2' } else { b'1' };
    }
    let bad = String::from_utf8_lossy(&bad).into_owned();
    let r = sc
        .post_json(&path, &json!({"subject": bad, "case_id": case_id}))
        .await?;
    check("bad request", r.status, StatusCode::BAD_REQUEST)?;
    let (_, idx) = r.verify(&jwks)?;
    say(format!(
        "{}. SC/dengji sends a mistyped ID number → {} · {} · signature verified · audit index {idx}",
        st.next(),
        r.status,
        r.json()?["detail"].as_str().unwrap_or("")
    ));

    // 民政 accepts a 低保 application at its own window and reads the 人社 Parquet export.
    let mz = world.client("MZ", "dibao", addr)?;
    let insured = world
        .samples
        .social
        .first()
        .ok_or_else(|| Error::Client("demo world has no sample for social.insurance".into()))?;
    let (dibao, _) = open_case(&mz, &jwks, insured, "MZ-DB-SQ").await?;
    let r = mz
        .post_json(
            "/v1/services/social.insurance/query",
            &json!({"subject": insured, "case_id": dibao, "fields": ["name", "insurance_type", "status", "months"]}),
        )
        .await?;
    check("social.insurance", r.status, StatusCode::OK)?;
    let (_, idx) = r.verify(&jwks)?;
    let rows = r.json()?["rows"].as_array().cloned().unwrap_or_default();
    say(format!(
        "{}. MZ/dibao accepts a 最低生活保障 case and queries social.insurance for the case → {} · {} row(s) · signature verified · audit index {idx}",
        st.next(),
        r.status,
        rows.len()
    ));
    if let Some(row) = rows.first() {
        say(format!("     {row}"));
    }

    audit_step(world, addr, &jwks, first, &mut st).await?;
    license_steps(world, addr, &jwks, &mut st).await?;

    // SC decides the sole-proprietorship case at once (即办); access for it ends with it.
    let events = format!("/v1/cases/{case_id}/events");
    for event in ["approved", "completed"] {
        let r = sc
            .post_json_with(&events, &json!({"event": event}), DECIDER)
            .await?;
        check(event, r.status, StatusCode::OK)?;
    }
    let r = sc.post_json(&path, &body).await?;
    check("query after completion", r.status, StatusCode::FORBIDDEN)?;
    let (_, idx) = r.verify(&jwks)?;
    say(format!(
        "{}. SC/dengji approves and completes case {case_id}; the same query again → {} · {} · signature verified · audit index {idx}",
        st.next(),
        r.status,
        r.json()?["detail"].as_str().unwrap_or("")
    ));

    // The applicant asks at the window who read their data (谁查了我的数据).
    let r = zw
        .get(&format!("/v1/audit/subject?id={applicant}&limit=20"))
        .await?;
    check("who read my data", r.status, StatusCode::OK)?;
    r.verify(&jwks)?;
    let seen = r.json()?;
    let accesses = seen["accesses"].as_array().cloned().unwrap_or_default();
    say(format!(
        "{}. ZW/chuangkou asks, for the applicant, who read their data (GET /v1/audit/subject) → {} · {} access(es), newest first:",
        st.next(),
        r.status,
        accesses.len()
    ));
    for a in &accesses {
        let text = |k: &str| a[k].as_str().unwrap_or("-").to_owned();
        let by = match a["operator"].as_str() {
            Some(op) => format!("{}/{} ({op})", text("dept"), text("system")),
            None => format!("{}/{}", text("dept"), text("system")),
        };
        say(format!(
            "     #{} {by} {} {} case {} → {}",
            a["index"],
            text("action"),
            text("service"),
            text("case_id"),
            text("outcome")
        ));
    }
    Ok(())
}

/// The license vault: a licence reused at a window for a case, a permit issued, verified,
/// suspended; the case completed and rated.
async fn license_steps(
    world: &World,
    addr: SocketAddr,
    jwks: &paotui_certs::Jwks,
    st: &mut Steps,
) -> Result<()> {
    let sc = world.client("SC", "dengji", addr)?;
    let zw = world.client("ZW", "chuangkou", addr)?;
    let business = world
        .samples
        .business
        .first()
        .ok_or_else(|| Error::Client("demo world has no sample business".into()))?;

    // The window accepts a food-business permit case for the business (handled by SC).
    let (case_id, case) = open_case(&zw, jwks, business, "SC-SPJY-XK").await?;
    say(format!(
        "{}. ZW/chuangkou accepts case {case_id} for 食品经营许可 (handled by SC, due {}) · materials:",
        st.next(),
        case["matters"][0]["deadline"].as_str().unwrap_or("-")
    ));
    say_materials(&case);

    // For that case, the window fetches the applicant's licence from the vault.
    let r = zw
        .get(&format!(
            "/v1/holders/{business}/licenses?type=YYZZ&case_id={case_id}&matter=SC-SPJY-XK"
        ))
        .await?;
    check("licenses of holder", r.status, StatusCode::OK)?;
    let (_, idx) = r.verify(jwks)?;
    let found = r.json()?;
    let licence = found["licenses"]
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .ok_or_else(|| Error::Client("the sample business has no licence in the vault".into()))?;
    let token = licence["jws"].as_str().unwrap_or("");
    let today = chrono::Utc::now().date_naive();
    let offline = paotui_policies::licenses::verify_offline(token, jwks, today);
    say(format!(
        "{}. ZW/chuangkou fetches the applicant's 营业执照 from the vault for the case → {} · {} {} · status {} · audit index {idx}",
        st.next(),
        r.status,
        licence["id"].as_str().unwrap_or(""),
        licence["document"]["holder"]["name"].as_str().unwrap_or(""),
        licence["status"].as_str().unwrap_or("")
    ));
    say(format!(
        "     its JWS verifies offline with the issuer key from /v1/keys alone: {} (no paper copy needed)",
        if offline.valid { "valid" } else { "NOT valid" }
    ));

    // The handling department checks the business is in operation, from its own register.
    let r = sc
        .post_json(
            "/v1/services/business.entity/query",
            &json!({"subject": business, "case_id": case_id, "fields": ["uscc", "name", "status", "registered_capital"]}),
        )
        .await?;
    check("business.entity", r.status, StatusCode::OK)?;
    let (_, idx) = r.verify(jwks)?;
    let rows = r.json()?["rows"].as_array().cloned().unwrap_or_default();
    say(format!(
        "{}. SC/dengji queries business.entity for the case → {} · {} row(s) · signature verified · audit index {idx}",
        st.next(),
        r.status,
        rows.len()
    ));
    if let Some(row) = rows.first() {
        say(format!("     {row}"));
    }

    // The handling department approves the case and issues the permit through the API.
    let events = format!("/v1/cases/{case_id}/events");
    let r = sc
        .post_json_with(&events, &json!({"event": "approved"}), DECIDER)
        .await?;
    check("approve case", r.status, StatusCode::OK)?;
    let body = json!({
        "type": "SPJY",
        "holder_id": business,
        "holder_name": licence["document"]["holder"]["name"],
        "data": {"scope": "预包装食品销售", "address": licence["document"]["data"]["address"]}
    });
    let r = sc.post_json("/v1/licenses", &body).await?;
    check("issue license", r.status, StatusCode::CREATED)?;
    r.verify(jwks)?;
    let issued = r.json()?;
    let id = issued["id"].as_str().unwrap_or("").to_owned();
    say(format!(
        "{}. SC/dengji approves the case and issues the 食品经营许可证 → {} · {id} valid until {} · signed by SC's key",
        st.next(),
        r.status,
        issued["document"]["valid_until"]
            .as_str()
            .unwrap_or("long-term")
    ));

    // Verified online, suspended by its issuer, verified again.
    let verify = json!({"jws": issued["jws"]});
    let r = zw.post_json("/v1/licenses/verify", &verify).await?;
    check("verify license", r.status, StatusCode::OK)?;
    r.verify(jwks)?;
    say(format!(
        "{}. ZW/chuangkou verifies it with the vault → {} · valid",
        st.next(),
        r.status
    ));
    let r = sc
        .post_json(
            &format!("/v1/licenses/{id}/status"),
            &json!({"action": "suspend", "reason": "现场核查整改期间"}),
        )
        .await?;
    check("suspend license", r.status, StatusCode::OK)?;
    let r = zw.post_json("/v1/licenses/verify", &verify).await?;
    check(
        "verify suspended license",
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
    )?;
    r.verify(jwks)?;
    say(format!(
        "{}. SC/dengji suspends it; verifying again → {} · {}",
        st.next(),
        r.status,
        r.json()?["detail"].as_str().unwrap_or("")
    ));

    // The case is completed; the applicant rates it at the window (一事一评).
    let r = sc
        .post_json_with(&events, &json!({"event": "completed"}), DECIDER)
        .await?;
    check("complete case", r.status, StatusCode::OK)?;
    let r = zw
        .post_json(
            &format!("/v1/cases/{case_id}/evaluation"),
            &json!({"score": 5, "comment": "一次办成"}),
        )
        .await?;
    check("evaluate case", r.status, StatusCode::OK)?;
    let r = zw.get(&format!("/v1/cases/{case_id}")).await?;
    check("read case", r.status, StatusCode::OK)?;
    r.verify(jwks)?;
    let done = r.json()?;
    let trail: Vec<&str> = done["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["event"].as_str()).collect())
        .unwrap_or_default();
    say(format!(
        "{}. SC/dengji completes the case ({}) · the applicant rates it {}/5 at the window",
        st.next(),
        trail.join(" → "),
        done["evaluation"]["score"]
    ));
    Ok(())
}

/// The supervisor (电子监察) proves the first answer's entry is in the log.
async fn audit_step(
    world: &World,
    addr: SocketAddr,
    jwks: &paotui_certs::Jwks,
    (index, body_sha256): (u64, String),
    st: &mut Steps,
) -> Result<()> {
    use paotui_certs::tlog::{self, Checkpoint, NoteVerifier};
    let jc = world.client("JC", "jiancha", addr)?;
    let origin = Config::load(&world.config_path())?.audit.origin;
    let key = jwks
        .keys
        .first()
        .ok_or_else(|| Error::Client("no gateway key".into()))?;
    // The checkpoint key is the gateway key under the log's name: /v1/keys alone suffices.
    let verifier = NoteVerifier::from_public_key(&origin, &key.public_key()?)?;
    let r = jc.get("/v1/audit/checkpoint").await?;
    check("audit checkpoint", r.status, StatusCode::OK)?;
    r.verify(jwks)?;
    let note = String::from_utf8_lossy(&r.body).into_owned();
    let cp = Checkpoint::parse(verifier.open(&note)?)?;
    let r = jc.get(&format!("/v1/audit/entries/{index}")).await?;
    check("audit entry", r.status, StatusCode::OK)?;
    r.verify(jwks)?;
    let entry = r.json()?;
    let canonical = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        entry["canonical"].as_str().unwrap_or(""),
    )
    .map_err(|e| Error::Client(format!("entry canonical bytes: {e}")))?;
    let decoded = paotui_repository::NewAuditEntry::from_canonical(&canonical)?;
    if decoded.body_sha256.as_deref() != Some(body_sha256.as_str()) {
        return Err(Error::Client(format!(
            "audit entry {index} does not hold the hash of the answer received"
        )));
    }
    let r = jc
        .get(&format!(
            "/v1/audit/proof/inclusion?index={index}&size={}",
            cp.size
        ))
        .await?;
    check("inclusion proof", r.status, StatusCode::OK)?;
    r.verify(jwks)?;
    let hashes = r.json()?["hashes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| tlog::hash_from_base64(h.as_str().unwrap_or("")))
                .collect::<paotui_certs::Result<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    tlog::verify_inclusion(
        index,
        cp.size,
        &tlog::leaf_hash(&canonical),
        &hashes,
        &cp.root,
    )?;
    say(format!(
        "{}. JC/jiancha reads the signed checkpoint ({} entries, origin {}) · entry {index} holds \
         the hash of SC's first answer · its {}-hash inclusion proof verifies against the checkpoint",
        st.next(),
        cp.size,
        cp.origin,
        hashes.len()
    ));
    say(format!(
        "     offline: paotui audit verify --config {}",
        world.config_path().display()
    ));
    Ok(())
}
