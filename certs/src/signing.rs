//! The gateway's Ed25519 signing key (ring) and its public JWK set.
//!
//! The key id is the RFC 7638 JWK thumbprint of the public key, so a verifier can check
//! that a `kid` really names the key it came with.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::{DeptCode, Error, Result, pemfile};

/// A public key in JWK form (RFC 8037 OKP / Ed25519).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// For a license issuer's key: the issuing department's code. A private JWK member
    /// (RFC 7517 §4: members a library does not understand are ignored), so a verifier
    /// can check that a license naming department X was signed with X's key.
    #[serde(
        rename = "paotui_issuer",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub issuer: Option<String>,
}

impl Jwk {
    pub fn ed25519(public_key: &[u8]) -> Jwk {
        let x = URL_SAFE_NO_PAD.encode(public_key);
        Jwk {
            kid: thumbprint_okp("Ed25519", &x),
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x,
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
            issuer: None,
        }
    }

    /// The raw 32-byte public key, after checking the JWK really is an Ed25519 key.
    pub fn public_key(&self) -> Result<Vec<u8>> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(Error::Key(format!(
                "key {} is {}/{}, expected OKP/Ed25519",
                self.kid, self.kty, self.crv
            )));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(&self.x)
            .map_err(|e| Error::Key(format!("key {}: bad x: {e}", self.kid)))?;
        if raw.len() != 32 {
            return Err(Error::Key(format!("key {}: x is not 32 bytes", self.kid)));
        }
        Ok(raw)
    }

    /// Verifies an Ed25519 signature over `msg` with this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<()> {
        UnparsedPublicKey::new(&ED25519, self.public_key()?)
            .verify(msg, sig)
            .map_err(|_| {
                Error::Signature(format!("signature does not verify with key {}", self.kid))
            })
    }
}

/// RFC 7638 thumbprint of an OKP key: SHA-256 over the lexicographically ordered members.
pub fn thumbprint_okp(crv: &str, x: &str) -> String {
    // Member names and these values need no JSON escaping (base64url and a curve name).
    let canonical = format!(r#"{{"crv":"{crv}","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// A JWK set as served at `/v1/keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

/// The license issuers' signing keys, one Ed25519 key per issuing department, each in
/// `<dir>/<DEPT>-ed25519.pem` (generated on first start, mode 0600).
#[derive(Debug, Default)]
pub struct IssuerKeys {
    keys: std::collections::BTreeMap<DeptCode, GatewayKey>,
}

impl IssuerKeys {
    /// Loads (or creates) the key of each department in `depts`.
    pub fn load_or_generate<'a>(
        dir: &Path,
        depts: impl IntoIterator<Item = &'a DeptCode>,
    ) -> Result<Self> {
        let mut keys = std::collections::BTreeMap::new();
        for d in depts {
            let (mut key, _) =
                GatewayKey::load_or_generate(&dir.join(format!("{}-ed25519.pem", d.as_str())))?;
            key.jwk.issuer = Some(d.as_str().to_owned());
            keys.insert(d.clone(), key);
        }
        Ok(IssuerKeys { keys })
    }

    /// The signing key of an issuing department.
    pub fn get(&self, dept: &DeptCode) -> Option<&GatewayKey> {
        self.keys.get(dept)
    }

    /// The public keys, each marked with its department.
    pub fn jwks(&self) -> impl Iterator<Item = &Jwk> {
        self.keys.values().map(GatewayKey::jwk)
    }
}

/// An Ed25519 private key held in memory.
pub struct GatewayKey {
    pair: Ed25519KeyPair,
    jwk: Jwk,
}

impl std::fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayKey")
            .field("kid", &self.jwk.kid)
            .finish()
    }
}

const PEM_TAG: &str = "PRIVATE KEY";

impl GatewayKey {
    fn from_pair(pair: Ed25519KeyPair) -> Self {
        let jwk = Jwk::ed25519(pair.public_key().as_ref());
        GatewayKey { pair, jwk }
    }

    /// Parses a PKCS#8 v1 (OpenSSL) or v2 (ring) Ed25519 private key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| Error::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(Self::from_pair(pair))
    }

    /// Builds a key from its 32-byte seed (used for published test vectors).
    pub fn from_seed(seed: &[u8]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| Error::Key(format!("bad Ed25519 seed: {e}")))?;
        Ok(Self::from_pair(pair))
    }

    /// Generates a new key and returns it with its PKCS#8 encoding.
    pub fn generate() -> Result<(Self, Vec<u8>)> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::Key("key generation failed".into()))?;
        Ok((Self::from_pkcs8(doc.as_ref())?, doc.as_ref().to_vec()))
    }

    /// Loads the key at `path`, generating it (mode 0600) on first start.
    /// Returns the key and whether it was just created.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool)> {
        if path.exists() {
            let der = pemfile::one_block(path, PEM_TAG)?;
            let key = Self::from_pkcs8(&der).map_err(|e| Error::bad_file(path, e))?;
            return Ok((key, false));
        }
        let (key, der) = Self::generate()?;
        pemfile::write(path, pemfile::encode(PEM_TAG, &der).as_bytes(), true)?;
        Ok((key, true))
    }

    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8037 Appendix A.1-A.4: the Ed25519 example key, its thumbprint, and the JWS
    // "Example of Ed25519 signing" signed with it.
    const D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn rfc8037_thumbprint() {
        assert_eq!(
            thumbprint_okp("Ed25519", X),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn rfc8037_signature() {
        let key = GatewayKey::from_seed(&URL_SAFE_NO_PAD.decode(D).unwrap()).unwrap();
        assert_eq!(key.jwk().x, X);
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        let signing_input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = key.sign(signing_input.as_bytes());
        assert_eq!(
            URL_SAFE_NO_PAD.encode(&sig),
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
        key.jwk().verify(signing_input.as_bytes(), &sig).unwrap();
        assert!(key.jwk().verify(b"other", &sig).is_err());
    }

    #[test]
    fn issuer_keys_are_per_department_and_marked() {
        let dir = tempfile::tempdir().unwrap();
        let sc = DeptCode::parse("SC").unwrap();
        let ga = DeptCode::parse("GA").unwrap();
        let keys = IssuerKeys::load_or_generate(dir.path(), [&sc, &ga]).unwrap();
        assert_ne!(keys.get(&sc).unwrap().kid(), keys.get(&ga).unwrap().kid());
        assert!(keys.get(&DeptCode::parse("MZ").unwrap()).is_none());
        let jwk = keys.get(&sc).unwrap().jwk();
        assert_eq!(jwk.issuer.as_deref(), Some("SC"));
        let text = serde_json::to_string(jwk).unwrap();
        assert!(text.contains(r#""paotui_issuer":"SC""#), "{text}");
        let again = IssuerKeys::load_or_generate(dir.path(), [&sc]).unwrap();
        assert_eq!(again.get(&sc).unwrap().kid(), jwk.kid);
    }

    #[test]
    fn generated_key_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/gateway.pem");
        let (a, created) = GatewayKey::load_or_generate(&path).unwrap();
        assert!(created);
        let (b, created) = GatewayKey::load_or_generate(&path).unwrap();
        assert!(!created);
        assert_eq!(a.kid(), b.kid());
    }
}
