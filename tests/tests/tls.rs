//! The handshake is the first gate: no certificate, a foreign CA, or a revoked
//! certificate never reach a handler.

use std::time::Duration;

use paotui_certs::ca::Ca;
use paotui_certs::{DeptCode, SystemId};
use paotui_tests::TestApp;

#[tokio::test]
async fn no_client_certificate_is_refused_at_handshake() {
    let app = TestApp::spawn().await.unwrap();
    let anon = app.client_with(None).unwrap();
    let r = anon.get("/healthz").await;
    assert!(
        r.is_err(),
        "a client without a certificate got an answer: {r:?}"
    );
    // A system with a certificate is served on the same port.
    assert_eq!(
        app.client("RS", "shebao")
            .unwrap()
            .get("/healthz")
            .await
            .unwrap()
            .status,
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let app = TestApp::spawn().await.unwrap();
    let other = tempfile::tempdir().unwrap();
    let ca = Ca::init(&other.path().join("ca"), "rogue CA", 30).unwrap();
    let issued = ca
        .issue_client(
            &DeptCode::parse("RS").unwrap(),
            &SystemId::parse("shebao").unwrap(),
            30,
        )
        .unwrap();
    let (c, k) = issued.write(other.path(), "rogue").unwrap();
    let rogue = app.client_with(Some((c, k))).unwrap();
    assert!(rogue.get("/healthz").await.is_err());
    let before = app.store().await.unwrap().audit_len().await.unwrap();
    assert!(rogue.get("/v1/keys").await.is_err());
    // Refused at the handshake: no handler ran, so nothing was audited.
    assert_eq!(
        app.store().await.unwrap().audit_len().await.unwrap(),
        before
    );
    app.stop().await;
}

#[tokio::test]
async fn revoked_certificate_is_refused_without_restart() {
    let app = TestApp::spawn().await.unwrap();
    let ca = Ca::open(&app.world.ca_dir()).unwrap();
    let certs = app.world.dir.join("certs");
    let issued = ca
        .issue_client(
            &DeptCode::parse("RS").unwrap(),
            &SystemId::parse("temp").unwrap(),
            30,
        )
        .unwrap();
    let (c, k) = issued.write(&certs, "RS-temp").unwrap();
    let client = app.client_with(Some((c, k))).unwrap();
    assert_eq!(client.get("/v1/keys").await.unwrap().status, 200);
    // A connection opened before the revocation stays open…
    let mut open_conn = client.connect().await.unwrap();
    assert_eq!(
        open_conn
            .send(http::Method::GET, "/v1/keys", &[], vec![])
            .await
            .unwrap()
            .status,
        200
    );

    assert!(ca.revoke(&issued.serial, Some("key lost")).unwrap());
    // The gateway polls the CRL file every 100 ms in tests; allow a generous margin.
    let mut refused = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if client.get("/v1/keys").await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "revoked certificate still accepted after 5 s");
    // …but is refused from then on, with an audited 403.
    let r = open_conn
        .send(http::Method::GET, "/v1/keys", &[], vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("revoked"));
    let (_, idx) = r
        .verify(&app.client("RS", "shebao").unwrap().keys().await.unwrap())
        .unwrap();
    let e = app.audit_entry(idx).await.unwrap();
    assert_eq!(
        e.entry.caller_serial.as_deref(),
        Some(issued.serial.as_str())
    );
    // Other systems are unaffected.
    assert_eq!(
        app.client("RS", "shebao")
            .unwrap()
            .get("/v1/keys")
            .await
            .unwrap()
            .status,
        200
    );
    app.stop().await;
}
