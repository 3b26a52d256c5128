//! Signed JSON documents: RFC 8785 (JCS) canonical JSON in an RFC 7515 compact JWS signed
//! with EdDSA / Ed25519 (RFC 8037).
//!
//! The payload is the JCS form of the document, so the signed bytes do not depend on how
//! the signer's JSON library orders members or formats numbers, and any stock JOSE
//! library can verify the result with the public JWK alone. The protected header is
//! `{"alg":"EdDSA","kid":<RFC 7638 thumbprint>,"typ":<type>}`, itself in JCS form.
//!
//! JCS writes every number as an IEEE 754 double (as ECMAScript does), so integers beyond
//! ±2^53 do not survive it: documents carry identifiers and serial numbers as strings.
//!
//! Verification accepts only `alg` `EdDSA` (never `none` or an HMAC algorithm chosen by
//! the sender), refuses any `crit` header (none is understood), and decodes base64url
//! strictly (no padding, no whitespace).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::{Error, GatewayKey, Jwk, Jwks, Result};

/// Largest compact JWS accepted, in bytes; a signed document is far smaller.
pub const MAX_JWS_LEN: usize = 1 << 20;

/// The RFC 8785 canonical JSON bytes of `value`.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json_canonicalizer::to_vec(value)
        .map_err(|e| Error::Invalid(format!("cannot canonicalise JSON: {e}")))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crit: Option<serde_json::Value>,
}

/// Signs the JCS form of `payload` as a compact JWS of type `typ`.
pub fn sign_json<T: Serialize>(key: &GatewayKey, typ: &str, payload: &T) -> Result<String> {
    let header = Header {
        alg: "EdDSA".into(),
        kid: Some(key.kid().to_owned()),
        typ: Some(typ.to_owned()),
        crit: None,
    };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(canonical_json(&header)?),
        URL_SAFE_NO_PAD.encode(canonical_json(payload)?)
    );
    let sig = key.sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// A JWS whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// The payload bytes as signed.
    pub payload: Vec<u8>,
}

impl Verified {
    /// The payload parsed as JSON.
    pub fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| Error::Invalid(format!("signed payload is not the expected JSON: {e}")))
    }
}

struct Parts<'a> {
    header: Header,
    signing_input: &'a str,
    payload: Vec<u8>,
    sig: Vec<u8>,
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| Error::Invalid(format!("JWS {what} is not base64url: {e}")))
}

fn parse(jws: &str) -> Result<Parts<'_>> {
    if jws.len() > MAX_JWS_LEN {
        return Err(Error::Invalid(format!(
            "JWS is {} bytes, more than the {MAX_JWS_LEN} accepted",
            jws.len()
        )));
    }
    let mut it = jws.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(Error::Invalid(
            "not a compact JWS: expected three base64url parts separated by '.'".into(),
        ));
    };
    let header: Header = serde_json::from_slice(&b64(h, "header")?)
        .map_err(|e| Error::Invalid(format!("JWS header is not a JSON object: {e}")))?;
    if header.alg != "EdDSA" {
        return Err(Error::Signature(format!(
            "JWS algorithm {:?} is not accepted (only EdDSA)",
            header.alg
        )));
    }
    if header.crit.is_some() {
        return Err(Error::Signature(
            "JWS has critical header parameters this verifier does not understand".into(),
        ));
    }
    Ok(Parts {
        signing_input: &jws[..h.len() + 1 + p.len()],
        payload: b64(p, "payload")?,
        sig: b64(s, "signature")?,
        header,
    })
}

fn check(parts: Parts<'_>, key: &Jwk) -> Result<Verified> {
    key.verify(parts.signing_input.as_bytes(), &parts.sig)?;
    Ok(Verified {
        kid: parts.header.kid,
        typ: parts.header.typ,
        payload: parts.payload,
    })
}

/// Verifies a compact JWS with one given key (its `kid`, if any, is not consulted).
pub fn verify_with_key(jws: &str, key: &Jwk) -> Result<Verified> {
    check(parse(jws)?, key)
}

/// Verifies a compact JWS with the key its `kid` names in `keys`.
pub fn verify(jws: &str, keys: &Jwks) -> Result<Verified> {
    let parts = parse(jws)?;
    let kid = parts
        .header
        .kid
        .as_deref()
        .ok_or_else(|| Error::Signature("JWS header names no key (kid)".into()))?;
    let key = keys
        .find(kid)
        .ok_or_else(|| Error::Signature(format!("JWS is signed with unknown key {kid}")))?;
    check(parts, key)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn jcs_of(text: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        String::from_utf8(canonical_json(&v).unwrap()).unwrap()
    }

    // RFC 8785 §3.2.2 (the "values" sample), as in the RFC's reference test data
    // (github.com/cyberphone/json-canonicalization, testdata/input|output/values.json).
    #[test]
    fn jcs_rfc8785_values_sample() {
        let input = r#"{
          "numbers": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001],
          "escaping": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            jcs_of(input),
            "{\"escaping\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\",\"literals\":[null,true,false],\
             \"numbers\":[1e+30,4.5,333333333.3333333,0.002,1e-27]}"
        );
    }

    // RFC 8785 §3.2.3 (member sorting by UTF-16 code units), the reference "weird" sample.
    #[test]
    fn jcs_rfc8785_sorting_sample() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "1": "One",
          "\u0080": "Control\u007f",
          "\ud83d\ude02": "Smiley",
          "\u00f6": "Latin Small Letter O With Diaeresis",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "</script>": "Browser Challenge"
        }"#;
        assert_eq!(
            jcs_of(input),
            "{\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\
             \"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\
             \"😂\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    // RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical number text.
    #[test]
    fn jcs_rfc8785_appendix_b_numbers() {
        let samples = [
            (0x0000000000000000u64, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, text) in samples {
            let got = canonical_json(&f64::from_bits(bits)).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), text, "{bits:016x}");
        }
    }

    // RFC 8037 Appendix A.1 key and the A.4 JWS "Example of Ed25519 signing".
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.\
        hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    fn rfc8037_jwk() -> Jwk {
        let raw = URL_SAFE_NO_PAD.decode(RFC8037_X).unwrap();
        Jwk::ed25519(&raw)
    }

    #[test]
    fn verifies_the_rfc8037_example_jws() {
        let v = verify_with_key(RFC8037_JWS, &rfc8037_jwk()).unwrap();
        assert_eq!(v.payload, b"Example of Ed25519 signing");
        assert_eq!(v.kid, None);
        // It names no key, so a key set cannot pick one.
        let keys = Jwks {
            keys: vec![rfc8037_jwk()],
        };
        assert!(matches!(
            verify(RFC8037_JWS, &keys),
            Err(Error::Signature(_))
        ));
    }

    fn key() -> GatewayKey {
        GatewayKey::from_seed(&URL_SAFE_NO_PAD.decode(RFC8037_D).unwrap()).unwrap()
    }

    #[test]
    fn signs_the_canonical_form_and_verifies_by_kid() {
        let k = key();
        let doc = json!({"number": "91440600MA4UXXXX1X-2026-000001", "b": 1.50, "a": [true]});
        let jws = sign_json(&k, "paotui-license+jws", &doc).unwrap();
        let keys = Jwks {
            keys: vec![k.jwk().clone()],
        };
        let v = verify(&jws, &keys).unwrap();
        assert_eq!(v.kid.as_deref(), Some(k.kid()));
        assert_eq!(v.typ.as_deref(), Some("paotui-license+jws"));
        // The payload is exactly the JCS form, whatever order the caller built.
        assert_eq!(
            v.payload,
            br#"{"a":[true],"b":1.5,"number":"91440600MA4UXXXX1X-2026-000001"}"#
        );
        assert_eq!(v.json::<serde_json::Value>().unwrap(), doc);
        // The header is JCS too.
        let header = URL_SAFE_NO_PAD
            .decode(jws.split('.').next().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(
                r#"{{"alg":"EdDSA","kid":"{}","typ":"paotui-license+jws"}}"#,
                k.kid()
            )
        );
    }

    #[test]
    fn refuses_other_algorithms_crit_unknown_keys_and_malformed_input() {
        let k = key();
        let keys = Jwks {
            keys: vec![k.jwk().clone()],
        };
        let jws = sign_json(&k, "t", &json!({"a": 1})).unwrap();
        let parts: Vec<&str> = jws.split('.').collect();
        let with_header = |h: serde_json::Value| {
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(h.to_string()),
                parts[1],
                parts[2]
            )
        };
        for alg in ["none", "HS256", "ES256", "eddsa"] {
            let forged = with_header(json!({"alg": alg, "kid": k.kid()}));
            assert!(
                matches!(verify(&forged, &keys), Err(Error::Signature(_))),
                "{alg}"
            );
        }
        let crit = with_header(json!({"alg": "EdDSA", "kid": k.kid(), "crit": ["exp"]}));
        assert!(matches!(verify(&crit, &keys), Err(Error::Signature(_))));
        // A forger signing with another key while naming ours gets nowhere.
        let (other, _) = GatewayKey::generate().unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        let forged = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(other.sign(input.as_bytes()))
        );
        assert!(matches!(verify(&forged, &keys), Err(Error::Signature(_))));
        let theirs = sign_json(&other, "t", &json!({"a": 1})).unwrap();
        assert!(verify_with_key(&theirs, k.jwk()).is_err());
        let empty = Jwks::default();
        assert!(
            matches!(verify(&jws, &empty), Err(Error::Signature(m)) if m.contains("unknown key"))
        );
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            &format!("{jws}="),
            &format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            &format!("{} .{}.{}", parts[0], parts[1], parts[2]),
            &format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("[1]"),
                parts[1],
                parts[2]
            ),
        ] {
            assert!(verify(bad, &keys).is_err(), "{bad:?}");
        }
        let huge = "a".repeat(MAX_JWS_LEN + 1);
        assert!(matches!(verify(&huge, &keys), Err(Error::Invalid(m)) if m.contains("bytes")));
    }

    proptest! {
        // A signed document verifies and reads back as signed (integers within ±2^53, which
        // JCS keeps exact); any change of one character makes it fail.
        #[test]
        fn any_changed_character_fails(
            n in -(1i64 << 53)..(1i64 << 53),
            s in "\\PC{0,40}",
            pos in any::<prop::sample::Index>(),
            with in prop::sample::select(vec!['A', 'B', '_', '-', '0', '.', 'z']),
        ) {
            let k = key();
            let keys = Jwks { keys: vec![k.jwk().clone()] };
            let jws = sign_json(&k, "t", &json!({"n": n, "s": s})).unwrap();
            let v = verify(&jws, &keys).unwrap();
            prop_assert_eq!(v.json::<serde_json::Value>().unwrap(), json!({"n": n, "s": s}));
            let mut chars: Vec<char> = jws.chars().collect();
            let i = pos.index(chars.len());
            prop_assume!(chars[i] != with);
            chars[i] = with;
            let changed: String = chars.into_iter().collect();
            prop_assert!(verify(&changed, &keys).is_err());
        }
    }
}
