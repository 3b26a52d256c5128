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
    // Population (permitted, denied, bad input) and one query per other department.
    assert_eq!(stdout.matches("signature verified").count(), 6, "{stdout}");
    for service in ["property.by_owner", "business.entity", "social.insurance"] {
        assert!(stdout.contains(&format!("{service} → 200 OK")), "{stdout}");
    }
    assert!(
        stdout.contains("403 Forbidden") && stdout.contains("400 Bad Request"),
        "{stdout}"
    );
    assert!(stdout.contains("curl --cacert"), "{stdout}");

    let again = paotui()
        .args(["demo", "--exit", "--dir"])
        .arg(&world)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(stdout.contains("Reusing the demo world"), "{stdout}");
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
