//! RFC 9421 HTTP Message Signatures (Ed25519) and RFC 9530 `Content-Digest`.
//!
//! The gateway signs every API response over `@status`, `content-type`, `content-digest`
//! and `paotui-audit-index`; [`verify_response`] is what a client runs with nothing but the
//! JWK set from `/v1/keys`. Structured fields are parsed and serialised by `sfv`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sfv::{BareItem, Dictionary, FieldType, InnerList, Item, Key, ListEntry, Parameters, Parser};

use crate::signing::{GatewayKey, Jwks};
use crate::{Error, Result};

/// The signature label paotui uses in `Signature-Input` / `Signature`.
pub const LABEL: &str = "paotui";
/// The components every paotui response signature covers.
pub const RESPONSE_COMPONENTS: [&str; 4] = [
    "@status",
    "content-type",
    "content-digest",
    "paotui-audit-index",
];

fn sig_err(s: impl Into<String>) -> Error {
    Error::Signature(s.into())
}

/// `sha-256=:<base64>:` for a body (RFC 9530).
pub fn content_digest(body: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, body);
    format!("sha-256=:{}:", STANDARD.encode(d.as_ref()))
}

/// Checks a `Content-Digest` field against the body; `sha-256` must be present.
pub fn check_content_digest(field: &str, body: &[u8]) -> Result<()> {
    let dict: Dictionary = Parser::new(field)
        .parse()
        .map_err(|e| sig_err(format!("content-digest is not a dictionary: {e}")))?;
    let Some(ListEntry::Item(Item {
        bare_item: BareItem::ByteSequence(want),
        ..
    })) = dict.get("sha-256")
    else {
        return Err(sig_err("content-digest has no sha-256 byte sequence"));
    };
    let got = ring::digest::digest(&ring::digest::SHA256, body);
    if got.as_ref() != want.as_slice() {
        return Err(sig_err("content-digest does not match the body"));
    }
    Ok(())
}

/// The parts of an HTTP message a signature can cover. Header names are matched
/// case-insensitively; repeated fields are combined with `", "` (RFC 9421 §2.1).
#[derive(Debug, Clone, Default)]
pub struct MessageView<'a> {
    pub status: Option<u16>,
    pub method: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub path: Option<&'a str>,
    pub headers: Vec<(&'a str, &'a str)>,
}

impl MessageView<'_> {
    fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    fn component(&self, name: &str) -> Result<String> {
        let missing = || sig_err(format!("message has no component {name:?}"));
        match name {
            "@status" => self.status.map(|s| s.to_string()).ok_or_else(missing),
            "@method" => self.method.map(str::to_owned).ok_or_else(missing),
            "@authority" => self
                .authority
                .map(|a| a.to_ascii_lowercase())
                .ok_or_else(missing),
            "@path" => self.path.map(str::to_owned).ok_or_else(missing),
            n if n.starts_with('@') => Err(sig_err(format!("unsupported derived component {n}"))),
            n => self.header(n).ok_or_else(missing),
        }
    }
}

/// Signature parameters (RFC 9421 §2.3) in the order they are serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureParams {
    pub components: Vec<String>,
    pub created: Option<i64>,
    pub keyid: Option<String>,
    pub alg: Option<String>,
}

fn key(s: &str) -> Result<Key> {
    Key::from_string(s.to_owned()).map_err(|(e, _)| sig_err(e.to_string()))
}

impl SignatureParams {
    fn to_inner_list(&self) -> Result<InnerList> {
        let mut items = Vec::with_capacity(self.components.len());
        for c in &self.components {
            let s = sfv::String::from_string(c.clone()).map_err(|(e, _)| sig_err(e.to_string()))?;
            items.push(Item::new(s));
        }
        let mut params = Parameters::new();
        if let Some(c) = self.created {
            let i = sfv::Integer::try_from(c).map_err(|e| sig_err(e.to_string()))?;
            params.insert(key("created")?, BareItem::Integer(i));
        }
        for (k, v) in [("keyid", &self.keyid), ("alg", &self.alg)] {
            if let Some(v) = v {
                let s =
                    sfv::String::from_string(v.clone()).map_err(|(e, _)| sig_err(e.to_string()))?;
                params.insert(key(k)?, BareItem::String(s));
            }
        }
        Ok(InnerList::with_params(items, params))
    }

    fn from_inner_list(list: &InnerList) -> Result<Self> {
        let mut components = Vec::with_capacity(list.items.len());
        for item in &list.items {
            if !item.params.is_empty() {
                return Err(sig_err("component parameters are not supported"));
            }
            match &item.bare_item {
                BareItem::String(s) => components.push(s.as_str().to_owned()),
                _ => return Err(sig_err("component identifiers must be strings")),
            }
        }
        let mut p = SignatureParams {
            components,
            created: None,
            keyid: None,
            alg: None,
        };
        for (k, v) in &list.params {
            match (k.as_str(), v) {
                ("created", BareItem::Integer(i)) => p.created = Some(i64::from(*i)),
                ("keyid", BareItem::String(s)) => p.keyid = Some(s.as_str().to_owned()),
                ("alg", BareItem::String(s)) => p.alg = Some(s.as_str().to_owned()),
                // expires, nonce, tag: carried in the base as given, not interpreted here.
                ("created" | "keyid" | "alg", _) => {
                    return Err(sig_err(format!(
                        "signature parameter {} has the wrong type",
                        k.as_str()
                    )));
                }
                _ => {}
            }
        }
        Ok(p)
    }

    /// The serialised inner list, as in `Signature-Input` and the `@signature-params` line.
    pub fn serialize(&self) -> Result<String> {
        serialize_member(LABEL, &self.to_inner_list()?).map(|s| s[LABEL.len() + 1..].to_owned())
    }
}

fn serialize_member(label: &str, list: &InnerList) -> Result<String> {
    let mut dict = Dictionary::new();
    dict.insert(key(label)?, ListEntry::InnerList(list.clone()));
    dict.serialize()
        .ok_or_else(|| sig_err("empty signature input"))
}

/// The signature base (RFC 9421 §2.5) for `params` over `msg`.
pub fn signature_base(msg: &MessageView<'_>, params: &SignatureParams) -> Result<String> {
    let mut base = String::new();
    for (i, c) in params.components.iter().enumerate() {
        if params.components[..i].contains(c) {
            return Err(sig_err(format!("component {c:?} listed twice")));
        }
        if c != &c.to_ascii_lowercase() {
            return Err(sig_err(format!("component {c:?} must be lower case")));
        }
        let value = msg.component(c)?;
        base.push_str(&format!("\"{c}\": {value}\n"));
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&params.serialize()?);
    Ok(base)
}

/// Header values to attach: (`Signature-Input`, `Signature`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub signature_input: String,
    pub signature: String,
}

/// Signs `msg` over `components` with label `label`.
pub fn sign(
    key: &GatewayKey,
    msg: &MessageView<'_>,
    label: &str,
    params: &SignatureParams,
) -> Result<SignatureHeaders> {
    let base = signature_base(msg, params)?;
    let sig = key.sign(base.as_bytes());
    let mut dict = Dictionary::new();
    dict.insert(
        key_of(label)?,
        ListEntry::Item(Item::new(BareItem::ByteSequence(sig))),
    );
    Ok(SignatureHeaders {
        signature_input: serialize_member(label, &params.to_inner_list()?)?,
        signature: dict.serialize().ok_or_else(|| sig_err("empty signature"))?,
    })
}

fn key_of(label: &str) -> Result<Key> {
    key(label)
}

/// Signs a paotui response (the components in [`RESPONSE_COMPONENTS`]).
pub fn sign_response(
    key: &GatewayKey,
    msg: &MessageView<'_>,
    created: i64,
) -> Result<SignatureHeaders> {
    let params = SignatureParams {
        components: RESPONSE_COMPONENTS
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        created: Some(created),
        keyid: Some(key.kid().to_owned()),
        alg: Some("ed25519".into()),
    };
    sign(key, msg, LABEL, &params)
}

/// What a verified signature said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub label: String,
    pub keyid: String,
    pub created: Option<i64>,
    pub components: Vec<String>,
}

/// Verifies the signature labelled `label` on `msg` with a key from `jwks`, requiring that
/// it covers every component in `required`.
pub fn verify(
    jwks: &Jwks,
    msg: &MessageView<'_>,
    label: &str,
    required: &[&str],
) -> Result<Verified> {
    let input = msg
        .header("signature-input")
        .ok_or_else(|| sig_err("no Signature-Input header"))?;
    let sigs = msg
        .header("signature")
        .ok_or_else(|| sig_err("no Signature header"))?;
    let input: Dictionary = Parser::new(&input)
        .parse()
        .map_err(|e| sig_err(format!("Signature-Input: {e}")))?;
    let sigs: Dictionary = Parser::new(&sigs)
        .parse()
        .map_err(|e| sig_err(format!("Signature: {e}")))?;
    let Some(ListEntry::InnerList(list)) = input.get(label) else {
        return Err(sig_err(format!("no signature input labelled {label:?}")));
    };
    let Some(ListEntry::Item(Item {
        bare_item: BareItem::ByteSequence(sig),
        ..
    })) = sigs.get(label)
    else {
        return Err(sig_err(format!("no signature labelled {label:?}")));
    };
    let params = SignatureParams::from_inner_list(list)?;
    for r in required {
        if !params.components.iter().any(|c| c == r) {
            return Err(sig_err(format!("signature does not cover {r:?}")));
        }
    }
    if let Some(alg) = &params.alg
        && alg != "ed25519"
    {
        return Err(sig_err(format!("unsupported alg {alg:?}")));
    }
    let keyid = params
        .keyid
        .clone()
        .ok_or_else(|| sig_err("signature has no keyid"))?;
    let jwk = jwks
        .find(&keyid)
        .ok_or_else(|| sig_err(format!("unknown keyid {keyid:?}")))?;
    // Rebuild the base from the parsed parameters, in the order they were sent.
    let base = signature_base_with_list(msg, &params, list)?;
    jwk.verify(base.as_bytes(), sig)?;
    Ok(Verified {
        label: label.to_owned(),
        keyid,
        created: params.created,
        components: params.components,
    })
}

fn signature_base_with_list(
    msg: &MessageView<'_>,
    params: &SignatureParams,
    list: &InnerList,
) -> Result<String> {
    let mut base = String::new();
    for c in &params.components {
        base.push_str(&format!("\"{c}\": {}\n", msg.component(c)?));
    }
    base.push_str("\"@signature-params\": ");
    let full = serialize_member(LABEL, list)?;
    base.push_str(&full[LABEL.len() + 1..]);
    Ok(base)
}

/// Verifies a paotui response: the signature over [`RESPONSE_COMPONENTS`] and the body's
/// `Content-Digest`. Returns the audit index the response claims.
pub fn verify_response(jwks: &Jwks, msg: &MessageView<'_>, body: &[u8]) -> Result<(Verified, u64)> {
    let v = verify(jwks, msg, LABEL, &RESPONSE_COMPONENTS)?;
    let digest = msg
        .header("content-digest")
        .ok_or_else(|| sig_err("no Content-Digest header"))?;
    check_content_digest(&digest, body)?;
    let index = msg
        .header("paotui-audit-index")
        .ok_or_else(|| sig_err("no Paotui-Audit-Index header"))?
        .parse::<u64>()
        .map_err(|_| sig_err("Paotui-Audit-Index is not an integer"))?;
    Ok((v, index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    // RFC 9421 Appendix B.1.4 test-key-ed25519 (private scalar `d`, public `x`).
    const B14_D: &str = "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU";
    const B14_X: &str = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";

    fn b2_request() -> MessageView<'static> {
        // RFC 9421 Appendix B.2: POST /foo?param=Value&Pet=dog to example.com.
        MessageView {
            status: None,
            method: Some("POST"),
            authority: Some("example.com"),
            path: Some("/foo"),
            headers: vec![
                ("Host", "example.com"),
                ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
                ("Content-Type", "application/json"),
                (
                    "Content-Digest",
                    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
                ),
                ("Content-Length", "18"),
            ],
        }
    }

    fn b26_params() -> SignatureParams {
        SignatureParams {
            components: [
                "date",
                "@method",
                "@path",
                "@authority",
                "content-type",
                "content-length",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            created: Some(1618884473),
            keyid: Some("test-key-ed25519".into()),
            alg: None,
        }
    }

    #[test]
    fn rfc9421_b26_signature_base_and_value() {
        let base = signature_base(&b2_request(), &b26_params()).unwrap();
        assert_eq!(
            base,
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\
             \"@authority\": example.com\n\"content-type\": application/json\n\
             \"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \
             \"@authority\" \"content-type\" \"content-length\");created=1618884473;\
             keyid=\"test-key-ed25519\""
        );
        let key = GatewayKey::from_seed(&URL_SAFE_NO_PAD.decode(B14_D).unwrap()).unwrap();
        assert_eq!(key.jwk().x, B14_X);
        let h = sign(&key, &b2_request(), "sig-b26", &b26_params()).unwrap();
        assert_eq!(
            h.signature_input,
            "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
        );
        assert_eq!(
            h.signature,
            "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
        );
    }

    #[test]
    fn rfc9421_b26_verifies_with_public_key_alone() {
        let mut jwk = crate::signing::Jwk::ed25519(&URL_SAFE_NO_PAD.decode(B14_X).unwrap());
        jwk.kid = "test-key-ed25519".into();
        let jwks = Jwks { keys: vec![jwk] };
        let mut msg = b2_request();
        msg.headers.push(("Signature-Input", "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""));
        msg.headers.push(("Signature", "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"));
        let v = verify(&jwks, &msg, "sig-b26", &["@method"]).unwrap();
        assert_eq!(v.created, Some(1618884473));
        // Any change to a covered component breaks it.
        msg.path = Some("/bar");
        assert!(verify(&jwks, &msg, "sig-b26", &[]).is_err());
    }

    #[test]
    fn rfc9530_content_digest() {
        // RFC 9530 §2: {"hello": "world"}
        let d = content_digest(br#"{"hello": "world"}"#);
        assert_eq!(d, "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:");
        check_content_digest(&d, br#"{"hello": "world"}"#).unwrap();
        assert!(check_content_digest(&d, br#"{"hello": "World"}"#).is_err());
        assert!(check_content_digest("sha-512=:AA==:", b"").is_err());
    }

    #[test]
    fn response_round_trip_and_tamper() {
        let (key, _) = GatewayKey::generate().unwrap();
        let jwks = Jwks {
            keys: vec![key.jwk().clone()],
        };
        let body = br#"{"rows":[]}"#;
        let digest = content_digest(body);
        let base_headers = vec![
            ("content-type", "application/json"),
            ("content-digest", digest.as_str()),
            ("paotui-audit-index", "7"),
        ];
        let msg = MessageView {
            status: Some(200),
            headers: base_headers.clone(),
            ..Default::default()
        };
        let h = sign_response(&key, &msg, 1_700_000_000).unwrap();
        let mut signed = base_headers.clone();
        signed.push(("signature-input", h.signature_input.as_str()));
        signed.push(("signature", h.signature.as_str()));
        let ok = MessageView {
            status: Some(200),
            headers: signed.clone(),
            ..Default::default()
        };
        let (v, idx) = verify_response(&jwks, &ok, body).unwrap();
        assert_eq!(idx, 7);
        assert_eq!(v.keyid, key.kid());
        // Tampered body, status, or index: all refused.
        assert!(verify_response(&jwks, &ok, br#"{"rows":[1]}"#).is_err());
        let bad_status = MessageView {
            status: Some(404),
            headers: signed.clone(),
            ..Default::default()
        };
        assert!(verify_response(&jwks, &bad_status, body).is_err());
        let mut other = signed.clone();
        other[2] = ("paotui-audit-index", "8");
        let bad_idx = MessageView {
            status: Some(200),
            headers: other,
            ..Default::default()
        };
        assert!(verify_response(&jwks, &bad_idx, body).is_err());
        // Unknown key.
        assert!(verify_response(&Jwks::default(), &ok, body).is_err());
    }
}
