use std::process::Command;

fn paotui() -> Command {
    Command::new(env!("CARGO_BIN_EXE_paotui"))
}

#[test]
fn demo_exit_builds_walks_through_and_reuses_its_world() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world");
    let out = paotui()
        .args(["demo", "--exit", "--people", "300", "--dir"])
        .arg(&world)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Building the demo world"), "{stdout}");
    // Queries for cases (population, property, social insurance, business), two refused
    // outside the case, one bad input.
    assert_eq!(stdout.matches("signature verified").count(), 8, "{stdout}");
    for service in [
        "population.person",
        "property.by_owner",
        "business.entity",
        "social.insurance",
    ] {
        assert!(
            stdout.contains(&format!("{service} for the case → 200 OK")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("an unrelated person under the same case → 403 Forbidden · the subject is not the applicant"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the applicant under the same case → 403 Forbidden · department RS neither accepted nor handles"),
        "{stdout}"
    );
    assert!(stdout.contains("400 Bad Request"), "{stdout}");
    assert!(
        stdout.contains("the same query again → 403 Forbidden · case CASE-")
            && stdout.contains("is completed; access for it has ended"),
        "{stdout}"
    );
    assert!(stdout.contains("curl --cacert"), "{stdout}");
    // Who read my data: the window lists the applicant's accesses, refused ones included.
    assert!(
        stdout.contains("who read their data (GET /v1/audit/subject) → 200 OK"),
        "{stdout}"
    );
    assert!(
        stdout.contains("SC/dengji service.query population.person case CASE-")
            && stdout.contains("RS/shebao service.query population.person case CASE-"),
        "{stdout}"
    );
    assert!(stdout.contains("ZW/chuangkou case.open"), "{stdout}");
    // The license vault: imported at build, fetched by a window, issued, verified, suspended.
    assert!(stdout.contains("SC imported"), "{stdout}");
    assert!(
        stdout.contains("fetches the applicant's 营业执照 from the vault for the case → 200 OK"),
        "{stdout}"
    );
    assert!(stdout.contains("/v1/keys alone: valid"), "{stdout}");
    assert!(stdout.contains("食品经营许可证 → 201 Created"), "{stdout}");
    assert!(stdout.contains("2 paper copies avoided"), "{stdout}");
    assert!(
        stdout.contains("accepted → approved → completed) · the applicant rates it 5/5"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "422 Unprocessable Entity · the license does not verify: the license is suspended"
        ),
        "{stdout}"
    );

    let again = paotui()
        .args(["demo", "--exit", "--dir"])
        .arg(&world)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(stdout.contains("Reusing the demo world"), "{stdout}");

    // `paotui sql` over the world's log: the walk-throughs' refused queries are there.
    let sql = |query: &str, format: &str| {
        paotui()
            .args(["sql", query, "--format", format, "--config"])
            .arg(world.join("paotui.toml"))
            .output()
            .unwrap()
    };
    let out = sql(
        "SELECT caller_dept, count(*) AS n FROM denials WHERE action = 'service.query' \
         GROUP BY 1 ORDER BY 1",
        "csv",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two walk-throughs: RS refused twice; SC refused (stranger, after completion) 4 times.
    assert_eq!(text, "caller_dept,n\nRS,2\nSC,4\n");
    let out = sql(
        "SELECT count(*) AS n FROM audit WHERE allowed IS NULL AND outcome = 'ok'",
        "json",
    );
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"n\": 0"),
        "every answered request was decided"
    );
    // `paotui stats`: every figure with its definition; a bad filter names itself.
    let out = paotui()
        .args(["stats", "--config"])
        .arg(world.join("paotui.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for title in [
        "办件量",
        "即办件率",
        "按时/提前办结率",
        "通办率",
        "用证率",
        "数据调用",
        "拒绝",
        "一事一评",
    ] {
        assert!(text.contains(title), "{title}: {text}");
    }
    let out = paotui()
        .args(["stats", "cases", "--from", "2026-02-30", "--config"])
        .arg(world.join("paotui.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("from must be a date YYYY-MM-DD"));
    // `paotui archive`: the world's entries are all of today, so nothing before today;
    // a day not yet closed is refused.
    let archive = |before: &str| {
        paotui()
            .args(["archive", "--before", before, "--config"])
            .arg(world.join("paotui.toml"))
            .output()
            .unwrap()
    };
    let today = chrono::Utc::now().date_naive();
    let out = archive(&today.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to archive"));
    let out = archive(&today.succ_opt().unwrap().to_string());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only closed days are archived"));
    let out = sql("DROP TABLE audit", "table");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "only a single read-only query runs: query must be a single SELECT, found DROP"
        ),
        "{err}"
    );
}

#[test]
fn demo_refuses_a_foreign_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let out = paotui()
        .args(["demo", "--exit", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no paotui.toml"));
}

#[test]
fn ca_commands_produce_certificates_openssl_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let run = |args: &[&str]| {
        let out = paotui().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ca_s = ca.to_str().unwrap();
    let out_s = dir.path().to_str().unwrap();
    run(&["ca", "init", "--dir", ca_s]);
    let issued = run(&[
        "ca", "issue", "--dir", ca_s, "--dept", "GA", "--system", "hukou", "--out", out_s,
    ]);
    run(&[
        "ca",
        "issue-server",
        "--dir",
        ca_s,
        "--host",
        "localhost",
        "--host",
        "127.0.0.1",
        "--out",
        out_s,
    ]);
    let serial = issued.split("serial ").nth(1).unwrap().trim().to_owned();
    // Re-initialising would destroy the CA: refused.
    assert!(
        !paotui()
            .args(["ca", "init", "--dir", ca_s])
            .output()
            .unwrap()
            .status
            .success()
    );
    let bad = paotui()
        .args([
            "ca", "issue", "--dir", ca_s, "--dept", "G/A", "--system", "x",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("department code"));

    // openssl, when present, accepts what we wrote and sees the revocation.
    if Command::new("openssl").arg("version").output().is_ok() {
        let cert = dir.path().join("GA-hukou.pem");
        let ok = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(ca.join("ca.pem"))
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stdout)
        );
        run(&["ca", "revoke", "--dir", ca_s, &serial, "--reason", "test"]);
        let revoked = Command::new("openssl")
            .args(["verify", "-crl_check", "-CAfile"])
            .arg(ca.join("ca.pem"))
            .arg("-CRLfile")
            .arg(ca.join("crl.pem"))
            .arg(&cert)
            .output()
            .unwrap();
        assert!(!revoked.status.success());
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&revoked.stdout),
            String::from_utf8_lossy(&revoked.stderr)
        );
        assert!(said.contains("revoked"), "{said}");
    }
    assert!(run(&["ca", "revoke", "--dir", ca_s, &serial]).contains("already revoked"));
    let unknown = paotui()
        .args(["ca", "revoke", "--dir", ca_s, "00ff"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
}

#[test]
fn catalog_check_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, paotui_gateway::demo::CATALOG).unwrap();
    let out = paotui()
        .args(["catalog", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        paotui_gateway::demo::CATALOG.replace("SELECT id_number", "DELETE id_number"),
    )
    .unwrap();
    let out = paotui()
        .args(["catalog", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = paotui_gateway::demo::CATALOG
        .lines()
        .position(|l| l.starts_with("query = "))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("bad.toml:{line}:")) && err.contains("single SELECT, found DELETE"),
        "{err}"
    );
}

#[test]
fn policy_check_validates_the_shipped_set_and_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("paotui.cedarschema"), paotui_policies::cedar::SCHEMA).unwrap();
    for (name, text) in paotui_policies::cedar::SHIPPED {
        std::fs::write(p.join(name), text).unwrap();
    }
    let out = paotui().args(["policy", "check"]).arg(p).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok (") && stdout.contains("policies valid"),
        "{stdout}"
    );
    // A policy reading an attribute the schema does not have, on line 4 of its file.
    std::fs::write(
        p.join("extra.cedar"),
        "// extra\n\npermit (principal, action == Paotui::Action::\"query\", resource)\n  when { resource.owners == principal.department };\n",
    )
    .unwrap();
    let out = paotui().args(["policy", "check"]).arg(p).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("extra.cedar:4:") && err.contains("owners"),
        "{err}"
    );
}

#[test]
fn demo_data_writes_four_departments() {
    let dir = tempfile::tempdir().unwrap();
    let out = paotui()
        .args(["demo-data", "--size", "120", "--seed", "7", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for table in ["person", "property", "business", "social_insurance"] {
        assert!(stdout.contains(table), "{stdout}");
    }
    assert!(stdout.contains("       120 rows"), "{stdout}");
    for f in [
        "population.db",
        "property.db",
        "business.db",
        "social_insurance.parquet",
        "social_insurance.csv",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    // Not a terminal: no progress bar in the output.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("people"));
    let bad = paotui()
        .args(["demo-data", "--size", "0", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--size"));
}

/// `paotui license verify`: offline, with a JWK set file; exit 1 with reasons when bad.
#[test]
fn license_verify_offline_accepts_good_and_refuses_altered_or_expired() {
    use paotui_certs::{DeptCode, IssuerKeys, Jwks, jws};
    let dir = tempfile::tempdir().unwrap();
    let sc = DeptCode::parse("SC").unwrap();
    let keys = IssuerKeys::load_or_generate(&dir.path().join("issuers"), [&sc]).unwrap();
    let jwks = Jwks {
        keys: keys.jwks().cloned().collect(),
    };
    let keys_file = dir.path().join("keys.json");
    std::fs::write(&keys_file, serde_json::to_string(&jwks).unwrap()).unwrap();
    let doc = serde_json::json!({
        "v": 1, "id": "SPJY-SC-00000001", "type": "SPJY", "type_name": "食品经营许可证",
        "number": "SPJY-SC-00000001",
        "holder": {"kind": "uscc", "id": "91440606100000075N", "name": "测试"},
        "issuer": {"dept": "SC", "name": "市场监督管理局"},
        "issued_on": "2024-01-01", "valid_from": "2024-01-01", "valid_until": "2028-12-31",
        "data": {"scope": "零售"}
    });
    let token = jws::sign_json(keys.get(&sc).unwrap(), "paotui-license+jws", &doc).unwrap();
    let run = |token: &str, extra: &[&str]| {
        let f = dir.path().join("license.json");
        std::fs::write(&f, serde_json::json!({ "jws": token }).to_string()).unwrap();
        paotui()
            .args(["license", "verify"])
            .arg(&f)
            .arg("--keys")
            .arg(&keys_file)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&token, &["--on", "2026-11-25"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["document"]["id"], "SPJY-SC-00000001");

    let out = run(&token, &["--on", "2029-01-01"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired"));

    let mut altered = token.clone();
    let mid = altered.find('.').unwrap() + 5;
    let c = altered.as_bytes()[mid];
    altered.replace_range(mid..=mid, if c == b'A' { "B" } else { "A" });
    let out = run(&altered, &["--on", "2026-11-25"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("license.json: the license does not verify"),
        "{err}"
    );
}

/// `paotui license import` with a file it cannot read as licenses names the file and line.
#[test]
fn license_import_names_file_and_line_of_a_broken_header() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world");
    let out = paotui()
        .args(["demo", "--exit", "--people", "50", "--dir"])
        .arg(&world)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.path().join("bad.csv");
    std::fs::write(&file, "kind,holder\nYYZZ,x\n").unwrap();
    let out = paotui()
        .args(["license", "import"])
        .arg(&file)
        .arg("--config")
        .arg(world.join("paotui.toml"))
        .args(["--dept", "SC"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv:line 1: the header has no \"type\" column"),
        "{err}"
    );

    // A good file: stored, and a second run stores nothing new.
    std::fs::write(
        &file,
        "type,holder_id,holder_name,number,issued_on,scope,address\nSPJY,91440606100000075N,测试,JY-1,2024-01-01,零售,佛山\n",
    )
    .unwrap();
    for want in [
        "1 stored, 0 already stored, 0 rejected",
        "0 stored, 1 already stored, 0 rejected",
    ] {
        let out = paotui()
            .args(["license", "import"])
            .arg(&file)
            .arg("--config")
            .arg(world.join("paotui.toml"))
            .args(["--dept", "SC"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(want), "{stdout}");
    }
}

/// `paotui alerts check`: the shipped rules pass; a broken one is named with its file and line.
#[test]
fn alerts_check_names_file_and_line() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/alerts.toml");
    let out = paotui()
        .args(["alerts", "check", shipped])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (6 rules)"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        "[[rules]]\nname = \"ok\"\nseverity = \"low\"\ndescription = \"d\"\nsql = \"SELECT idx FROM audit\"\n\n[[rules]]\nname = \"wipe\"\nseverity = \"high\"\ndescription = \"d\"\nsql = \"DELETE FROM audit\"\n",
    )
    .unwrap();
    let out = paotui()
        .args(["alerts", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rules.toml:7: rule \"wipe\": only a single read-only query runs"),
        "{err}"
    );
}
