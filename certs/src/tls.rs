//! rustls configurations: the server *requires* a client certificate chained to the paotui
//! CA and not on its CRL; the CRL is reloadable without a restart.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use crate::{Error, Result, pemfile};

/// The ring provider everywhere: no aws-lc in the tree.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let text = pemfile::read_to_string(path)?;
    let certs: Vec<_> = pemfile::blocks(path, &text, "CERTIFICATE")?
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    if certs.is_empty() {
        return Err(Error::bad_file(path, "no CERTIFICATE in file"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| Error::bad_file(path, e))
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let text = pemfile::read_to_string(path)?;
    Ok(pemfile::blocks(path, &text, "X509 CRL")?
        .into_iter()
        .map(CertificateRevocationListDer::from)
        .collect())
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>> {
    let mut store = RootCertStore::empty();
    for c in load_certs(ca)? {
        store.add(c).map_err(|e| Error::bad_file(ca, e))?;
    }
    Ok(Arc::new(store))
}

/// A client verifier whose CRL can be swapped while the server runs. It delegates every
/// decision to a stock [`WebPkiClientVerifier`]; only the pointer to it changes.
#[derive(Debug)]
pub struct ReloadableClientVerifier {
    roots: Arc<RootCertStore>,
    crl_path: Option<PathBuf>,
    hints: Vec<DistinguishedName>,
    inner: RwLock<(Arc<dyn ClientCertVerifier>, Option<SystemTime>)>,
    /// Serials (lower-case hex) on the CRL in force, so connections opened before a
    /// revocation can be refused too.
    revoked: RwLock<HashSet<String>>,
}

/// Serials listed in the CRL file, lower-case hex.
fn crl_serials(path: &Path) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for der in load_crls(path)? {
        let (_, crl) =
            x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| Error::bad_file(path, e))?;
        for r in crl.iter_revoked_certificates() {
            out.insert(hex::encode(r.raw_serial()));
        }
    }
    Ok(out)
}

impl ReloadableClientVerifier {
    pub fn new(ca: &Path, crl: Option<&Path>) -> Result<Arc<Self>> {
        let roots = roots(ca)?;
        let hints = roots.subjects();
        let (inner, mtime) = Self::build(&roots, crl)?;
        let revoked = match crl {
            Some(p) => crl_serials(p)?,
            None => HashSet::new(),
        };
        Ok(Arc::new(ReloadableClientVerifier {
            roots,
            crl_path: crl.map(Path::to_owned),
            hints,
            inner: RwLock::new((inner, mtime)),
            revoked: RwLock::new(revoked),
        }))
    }

    fn build(
        roots: &Arc<RootCertStore>,
        crl: Option<&Path>,
    ) -> Result<(Arc<dyn ClientCertVerifier>, Option<SystemTime>)> {
        let mut builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
        let mut mtime = None;
        if let Some(path) = crl {
            mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            builder = builder.with_crls(load_crls(path)?);
        }
        Ok((builder.build().map_err(tls_err)?, mtime))
    }

    /// Re-reads the CRL if its file changed since the last load. Returns whether it did.
    /// A broken CRL file is reported and the previous one stays in force.
    pub fn reload_if_changed(&self) -> Result<bool> {
        let Some(path) = &self.crl_path else {
            return Ok(false);
        };
        let now = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| Error::io(path, e))?;
        let current = match self.inner.read() {
            Ok(g) => g.1,
            Err(p) => p.into_inner().1,
        };
        if current == Some(now) {
            return Ok(false);
        }
        self.reload()?;
        Ok(true)
    }

    /// Re-reads the CRL unconditionally.
    pub fn reload(&self) -> Result<()> {
        let built = Self::build(&self.roots, self.crl_path.as_deref())?;
        let serials = match &self.crl_path {
            Some(p) => crl_serials(p)?,
            None => HashSet::new(),
        };
        match self.inner.write() {
            Ok(mut g) => *g = built,
            Err(p) => *p.into_inner() = built,
        }
        match self.revoked.write() {
            Ok(mut g) => *g = serials,
            Err(p) => *p.into_inner() = serials,
        }
        Ok(())
    }

    /// Is this serial (lower-case hex) on the CRL in force?
    pub fn is_revoked(&self, serial: &str) -> bool {
        match self.revoked.read() {
            Ok(g) => g.contains(serial),
            Err(p) => p.into_inner().contains(serial),
        }
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        match self.inner.read() {
            Ok(g) => g.0.clone(),
            Err(p) => p.into_inner().0.clone(),
        }
    }
}

impl ClientCertVerifier for ReloadableClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// Server TLS settings: files on disk.
#[derive(Debug, Clone)]
pub struct ServerTlsFiles {
    pub ca: PathBuf,
    pub crl: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The API port's rustls config (HTTP/1.1 via ALPN) and a handle to reload its CRL.
pub fn server_config(
    files: &ServerTlsFiles,
) -> Result<(Arc<rustls::ServerConfig>, Arc<ReloadableClientVerifier>)> {
    let verifier = ReloadableClientVerifier::new(&files.ca, files.crl.as_deref())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(|e| Error::bad_file(&files.key, e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session resumption: a resumed session skips client-certificate verification, so a
    // certificate revoked after its first handshake could keep reconnecting.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok((Arc::new(cfg), verifier))
}

/// A client config trusting the paotui CA and presenting a system certificate (or none,
/// which the server refuses — used by tests and the demo's "no certificate" step).
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_root_certificates(roots(ca)?);
    let mut cfg = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| Error::bad_file(key, e))?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
