//! Encryption at rest for stored documents: AES-256-GCM (ring) under one data key.
//!
//! A sealed value is `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`. Nonces are random
//! (96 bits from the system RNG), which is safe for far more documents than a vault holds
//! under one key (NIST SP 800-38D §8.3 bounds random nonces at 2^32 seals per key). The
//! associated data binds a sealed value to its row (the license id), so a ciphertext
//! copied onto another row does not open.

use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Error, Result, pemfile};

pub struct DataKey(LessSafeKey);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

const TAG_LEN: usize = 16;

impl DataKey {
    /// A key from its 32 raw bytes.
    pub fn from_bytes(key: &[u8]) -> Result<Self> {
        let k = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| Error::Key("an AES-256-GCM key is exactly 32 bytes".into()))?;
        Ok(DataKey(LessSafeKey::new(k)))
    }

    /// Loads a hex-encoded 32-byte key from `path`, generating one on first start.
    pub fn load_or_generate(path: &Path) -> Result<Self> {
        if path.exists() {
            let text = pemfile::read_to_string(path)?;
            let bytes = hex::decode(text.trim()).map_err(|e| Error::bad_file(path, e))?;
            return Self::from_bytes(&bytes).map_err(|e| Error::bad_file(path, e));
        }
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Key("system random source failed".into()))?;
        pemfile::write(path, format!("{}\n", hex::encode(bytes)).as_bytes(), true)?;
        Self::from_bytes(&bytes)
    }

    /// Encrypts `plaintext` bound to `aad` under a fresh random nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::Key("system random source failed".into()))?;
        self.seal_with_nonce(nonce, aad, plaintext)
    }

    fn seal_with_nonce(&self, nonce: [u8; NONCE_LEN], aad: &[u8], pt: &[u8]) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(NONCE_LEN + pt.len() + TAG_LEN);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(pt);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf[NONCE_LEN..],
            )
            .map_err(|_| Error::Invalid("encryption failed".into()))?;
        buf.extend_from_slice(tag.as_ref());
        Ok(buf)
    }

    /// Decrypts a value made by [`seal`](Self::seal) with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::Invalid("sealed value is too short".into()));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| Error::Invalid("sealed value has a bad nonce".into()))?;
        let mut buf = rest.to_vec();
        let pt = self
            .0
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| {
                Error::Invalid("sealed value does not open: wrong key, row or altered".into())
            })?;
        Ok(pt.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Galois/Counter Mode of Operation (McGrew & Viega, 2005), Appendix B, Test Case
    // 16: AES-256, 96-bit IV, with associated data. Cross-checked with Python
    // `cryptography`'s AESGCM.
    const K: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    const IV: &str = "cafebabefacedbaddecaf888";
    const P: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const A: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
    const C: &str = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
    const T: &str = "76fc6ece0f4e1768cddf8853bb2d551b";

    #[test]
    fn gcm_spec_test_case_16() {
        let key = DataKey::from_bytes(&hex::decode(K).unwrap()).unwrap();
        let iv: [u8; 12] = hex::decode(IV).unwrap().try_into().unwrap();
        let sealed = key
            .seal_with_nonce(iv, &hex::decode(A).unwrap(), &hex::decode(P).unwrap())
            .unwrap();
        assert_eq!(hex::encode(&sealed), format!("{IV}{C}{T}"));
        let opened = key.open(&hex::decode(A).unwrap(), &sealed).unwrap();
        assert_eq!(hex::encode(opened), P);
    }

    #[test]
    fn wrong_aad_key_or_any_flipped_bit_fails() {
        let key = DataKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = key.seal(b"row-1", b"secret document").unwrap();
        assert_eq!(key.open(b"row-1", &sealed).unwrap(), b"secret document");
        assert!(key.open(b"row-2", &sealed).is_err());
        let other = DataKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open(b"row-1", &sealed).is_err());
        for i in 0..sealed.len() * 8 {
            let mut s = sealed.clone();
            s[i / 8] ^= 1 << (i % 8);
            assert!(key.open(b"row-1", &s).is_err(), "bit {i}");
        }
        assert!(key.open(b"row-1", &sealed[..20]).is_err());
        assert!(DataKey::from_bytes(&[0u8; 16]).is_err());
    }

    #[test]
    fn nonces_differ_and_key_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.key");
        let a = DataKey::load_or_generate(&path).unwrap();
        let s1 = a.seal(b"", b"x").unwrap();
        let s2 = a.seal(b"", b"x").unwrap();
        assert_ne!(s1[..12], s2[..12]);
        let b = DataKey::load_or_generate(&path).unwrap();
        assert_eq!(b.open(b"", &s1).unwrap(), b"x");
    }
}
