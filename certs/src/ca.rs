//! The paotui certificate authority: one directory of PEM files.
//!
//! ```text
//! <dir>/ca.pem          CA certificate (ECDSA P-256, so curl and openssl interoperate)
//! <dir>/ca-key.pem      CA private key (mode 0600)
//! <dir>/crl.pem         current CRL, rewritten on every revocation
//! <dir>/issued.jsonl    one line per issued certificate (serial, kind, subject, not_after)
//! <dir>/revoked.json    revoked serials and the CRL number
//! ```

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::identity::{DeptCode, SystemId, SystemIdentity};
use crate::{Error, Result, pemfile};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const CRL: &str = "crl.pem";
const ISSUED: &str = "issued.jsonl";
const REVOKED: &str = "revoked.json";

/// What kind of certificate a serial was issued as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertKind {
    Client,
    Server,
}

/// One line of `issued.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedRecord {
    pub serial: String,
    pub kind: CertKind,
    pub subject: String,
    pub not_after: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RevokedFile {
    crl_number: u64,
    revoked: Vec<RevokedEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RevokedEntry {
    serial: String,
    /// Unix seconds.
    at: i64,
    reason: Option<String>,
}

/// A freshly issued certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub serial: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Writes `<stem>.pem` and `<stem>-key.pem` (0600) and returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        pemfile::write(&cert, self.cert_pem.as_bytes(), false)?;
        pemfile::write(&key, self.key_pem.as_bytes(), true)?;
        Ok((cert, key))
    }
}

/// An opened CA directory.
#[derive(Debug)]
pub struct Ca {
    dir: PathBuf,
    cert_pem: String,
    key_pem: String,
}

fn random_serial() -> Result<SerialNumber> {
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::Key("system random source failed".into()))?;
    // Positive and without a leading zero octet, so DER keeps all 16 bytes and the hex we
    // print is the hex x509 parsers print.
    b[0] = (b[0] & 0x7f) | 0x10;
    Ok(SerialNumber::from_slice(&b))
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    // A little slack for clocks that disagree by a few minutes.
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days));
}

fn p256() -> Result<KeyPair> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

impl Ca {
    /// Creates a new CA in `dir`. Refuses to overwrite an existing one.
    pub fn init(dir: &Path, name: &str, days: u32) -> Result<Ca> {
        let cert_path = dir.join(CA_CERT);
        if cert_path.exists() {
            return Err(Error::bad_file(
                &cert_path,
                "a CA already exists here; refusing to overwrite it",
            ));
        }
        let key = p256()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "paotui");
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.serial_number = Some(random_serial()?);
        validity(&mut params, days);
        let cert = params.self_signed(&key)?;
        let ca = Ca {
            dir: dir.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        pemfile::write(&dir.join(CA_KEY), ca.key_pem.as_bytes(), true)?;
        pemfile::write(&cert_path, ca.cert_pem.as_bytes(), false)?;
        ca.write_crl(&RevokedFile::default())?;
        Ok(ca)
    }

    /// Opens an existing CA directory.
    pub fn open(dir: &Path) -> Result<Ca> {
        let cert_pem = pemfile::read_to_string(&dir.join(CA_CERT))?;
        let key_pem = pemfile::read_to_string(&dir.join(CA_KEY))?;
        let ca = Ca {
            dir: dir.to_owned(),
            cert_pem,
            key_pem,
        };
        // Fail now, with the file name, rather than at the first issue.
        ca.issuer()?;
        Ok(ca)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join(CRL)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let key = KeyPair::from_pem(&self.key_pem)
            .map_err(|e| Error::bad_file(self.dir.join(CA_KEY), e))?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key)
            .map_err(|e| Error::bad_file(self.dir.join(CA_CERT), e))
    }

    fn record(
        &self,
        serial: &SerialNumber,
        kind: CertKind,
        subject: &str,
        params: &CertificateParams,
    ) -> Result<String> {
        let serial = hex::encode(serial.to_bytes());
        let rec = IssuedRecord {
            serial: serial.clone(),
            kind,
            subject: subject.to_owned(),
            not_after: params
                .not_after
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| Error::Invalid(e.to_string()))?,
        };
        let path = self.dir.join(ISSUED);
        let mut line = serde_json::to_string(&rec).map_err(|e| Error::Invalid(e.to_string()))?;
        line.push('\n');
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&path, e))?;
        Ok(serial)
    }

    /// Issues a client certificate for one department system (URI SAN
    /// `paotui://dept/<dept>/system/<system>`, EKU clientAuth).
    pub fn issue_client(&self, dept: &DeptCode, system: &SystemId, days: u32) -> Result<Issued> {
        let uri = SystemIdentity::uri(dept, system);
        let key = p256()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, dept.as_str());
        dn.push(DnType::CommonName, format!("{dept}/{system}"));
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            rcgen::string::Ia5String::try_from(uri.as_str())
                .map_err(|e| Error::Identity(e.to_string()))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let serial = random_serial()?;
        params.serial_number = Some(serial.clone());
        validity(&mut params, days);
        let cert = params.signed_by(&key, &self.issuer()?)?;
        let serial = self.record(&serial, CertKind::Client, &uri, &params)?;
        Ok(Issued {
            serial,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a server certificate for the given DNS names / IP addresses.
    pub fn issue_server(&self, hosts: &[String], days: u32) -> Result<Issued> {
        if hosts.is_empty() {
            return Err(Error::Invalid(
                "a server certificate needs at least one host".into(),
            ));
        }
        let key = p256()?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "paotui");
        dn.push(DnType::CommonName, hosts[0].as_str());
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let serial = random_serial()?;
        params.serial_number = Some(serial.clone());
        validity(&mut params, days);
        let cert = params.signed_by(&key, &self.issuer()?)?;
        let serial = self.record(&serial, CertKind::Server, &hosts.join(","), &params)?;
        Ok(Issued {
            serial,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Every certificate this CA has issued.
    pub fn issued(&self) -> Result<Vec<IssuedRecord>> {
        let path = self.dir.join(ISSUED);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io(&path, e)),
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| Error::bad_file(&path, format!("line {}: {e}", i + 1)))
            })
            .collect()
    }

    fn revoked_file(&self) -> Result<RevokedFile> {
        let path = self.dir.join(REVOKED);
        match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| Error::bad_file(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RevokedFile::default()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Revokes a certificate by serial (hex, `:` separators allowed) and rewrites the CRL.
    /// Returns `false` when it was already revoked.
    pub fn revoke(&self, serial: &str, reason: Option<&str>) -> Result<bool> {
        let serial = normalise_serial(serial)?;
        if !self.issued()?.iter().any(|r| r.serial == serial) {
            return Err(Error::Invalid(format!(
                "no certificate with serial {serial} was issued by the CA in {}",
                self.dir.display()
            )));
        }
        let mut file = self.revoked_file()?;
        if file.revoked.iter().any(|r| r.serial == serial) {
            return Ok(false);
        }
        file.revoked.push(RevokedEntry {
            serial,
            at: OffsetDateTime::now_utc().unix_timestamp(),
            reason: reason.map(str::to_owned),
        });
        file.crl_number += 1;
        self.write_crl(&file)?;
        let text = serde_json::to_vec_pretty(&file).map_err(|e| Error::Invalid(e.to_string()))?;
        pemfile::write(&self.dir.join(REVOKED), &text, false)?;
        Ok(true)
    }

    fn write_crl(&self, file: &RevokedFile) -> Result<()> {
        let now = OffsetDateTime::now_utc();
        let mut revoked_certs = Vec::with_capacity(file.revoked.len());
        for r in &file.revoked {
            let bytes =
                hex::decode(&r.serial).map_err(|e| Error::bad_file(self.dir.join(REVOKED), e))?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: OffsetDateTime::from_unix_timestamp(r.at)
                    .map_err(|e| Error::bad_file(self.dir.join(REVOKED), e))?,
                reason_code: Some(RevocationReason::Unspecified),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(30),
            crl_number: SerialNumber::from(file.crl_number + 1),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer()?)?;
        pemfile::write(&self.crl_path(), crl.pem()?.as_bytes(), false)
    }
}

/// Accepts `0a1b…`, `0A:1B:…` and `0x0a1b…`; returns lower-case hex.
pub fn normalise_serial(s: &str) -> Result<String> {
    let t: String = s
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if t.is_empty() || !t.len().is_multiple_of(2) || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!(
            "serial {s:?} is not an even-length hex string"
        )));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_cert_carries_identity_and_revocation_lands_in_crl() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(dir.path(), "test CA", 30).unwrap();
        assert!(Ca::init(dir.path(), "again", 30).is_err());
        let dept = DeptCode::parse("GA").unwrap();
        let sys = SystemId::parse("hukou").unwrap();
        let issued = ca.issue_client(&dept, &sys, 30).unwrap();
        let der = pemfile::blocks(Path::new("x"), &issued.cert_pem, "CERTIFICATE").unwrap();
        let id = SystemIdentity::from_cert_der(&der[0]).unwrap();
        assert_eq!(id.dept, dept);
        assert_eq!(id.system, sys);
        assert_eq!(id.serial, issued.serial);

        assert!(ca.revoke(&issued.serial, Some("test")).unwrap());
        assert!(!ca.revoke(&issued.serial, None).unwrap());
        assert!(ca.revoke("00ff", None).is_err());
        let crl_der = pemfile::one_block(&ca.crl_path(), "X509 CRL").unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&crl_der).unwrap();
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        assert_eq!(serials, vec![issued.serial.clone()]);
        // Reopening reads the same CA.
        let again = Ca::open(dir.path()).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
    }

    #[test]
    fn serial_normalisation() {
        assert_eq!(normalise_serial("0A:1b").unwrap(), "0a1b");
        assert_eq!(normalise_serial("0x0a1b").unwrap(), "0a1b");
        assert!(normalise_serial("abc").is_err());
        assert!(normalise_serial("zz").is_err());
    }
}
