//! The keyed hash under which subjects (ID numbers, credit codes) are stored and logged.
//!
//! The audit log never holds a plaintext identifier, only HMAC-SHA256(key, identifier). A
//! citizen asking "who read my data" is answered by hashing their identifier again.

use std::path::Path;

use ring::hmac;
use ring::rand::SecureRandom;

use crate::{Error, Result, pemfile};

#[derive(Clone)]
pub struct SubjectKey(hmac::Key);

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey(..)")
    }
}

impl SubjectKey {
    pub fn from_bytes(key: &[u8]) -> Self {
        SubjectKey(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// Loads a hex-encoded key from `path`, generating 32 random bytes on first start.
    pub fn load_or_generate(path: &Path) -> Result<Self> {
        if path.exists() {
            let text = pemfile::read_to_string(path)?;
            let bytes = hex::decode(text.trim()).map_err(|e| Error::bad_file(path, e))?;
            if bytes.len() < 32 {
                return Err(Error::bad_file(
                    path,
                    "subject key must be at least 32 bytes",
                ));
            }
            return Ok(Self::from_bytes(&bytes));
        }
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Key("system random source failed".into()))?;
        pemfile::write(path, format!("{}\n", hex::encode(bytes)).as_bytes(), true)?;
        Ok(Self::from_bytes(&bytes))
    }

    /// Lower-case hex HMAC-SHA256 of the identifier.
    pub fn hash(&self, identifier: &str) -> String {
        hex::encode(hmac::sign(&self.0, identifier.as_bytes()).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        let k = SubjectKey::from_bytes(b"Jefe");
        assert_eq!(
            k.hash("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
