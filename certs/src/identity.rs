//! Who is calling: the department and system named in a client certificate.
//!
//! A system certificate carries exactly one URI SAN `paotui://dept/<dept>/system/<id>`.
//! These newtypes are built only by parsing, so a handler holding a [`SystemIdentity`]
//! knows both parts are well-formed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The URI SAN scheme and authority prefix for system certificates.
pub const URI_PREFIX: &str = "paotui://dept/";

fn valid_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A department code (部门编码): 1–32 ASCII letters, digits, `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeptCode(String);

impl DeptCode {
    pub fn parse(s: &str) -> Result<Self> {
        if valid_token(s, 32) {
            Ok(DeptCode(s.to_owned()))
        } else {
            Err(Error::Identity(format!(
                "department code {s:?} must be 1-32 letters, digits, '-' or '_'"
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A system id within a department: 1–64 ASCII letters, digits, `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SystemId(String);

impl SystemId {
    pub fn parse(s: &str) -> Result<Self> {
        if valid_token(s, 64) {
            Ok(SystemId(s.to_owned()))
        } else {
            Err(Error::Identity(format!(
                "system id {s:?} must be 1-64 letters, digits, '-' or '_'"
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_impls {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                <$t>::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                <$t>::parse(s)
            }
        }
    };
}
string_newtype_impls!(DeptCode);
string_newtype_impls!(SystemId);

/// The authenticated caller of one TLS connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemIdentity {
    pub dept: DeptCode,
    pub system: SystemId,
    /// Certificate serial number, lower-case hex without separators.
    pub serial: String,
}

impl SystemIdentity {
    /// The URI SAN that names this system in its certificate.
    pub fn uri(dept: &DeptCode, system: &SystemId) -> String {
        format!("{URI_PREFIX}{dept}/system/{system}")
    }

    /// Parses `paotui://dept/<dept>/system/<id>`.
    pub fn parse_uri(uri: &str) -> Result<(DeptCode, SystemId)> {
        let rest = uri
            .strip_prefix(URI_PREFIX)
            .ok_or_else(|| Error::Identity(format!("URI {uri:?} is not a paotui system URI")))?;
        let (dept, system) = rest
            .split_once("/system/")
            .ok_or_else(|| Error::Identity(format!("URI {uri:?} lacks /system/<id>")))?;
        Ok((DeptCode::parse(dept)?, SystemId::parse(system)?))
    }

    /// Reads the identity from a DER certificate (already verified by the TLS layer).
    pub fn from_cert_der(der: &[u8]) -> Result<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| Error::Identity(format!("unparsable certificate: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| Error::Identity(format!("bad subjectAltName: {e}")))?
            .ok_or_else(|| Error::Identity("certificate has no subjectAltName".into()))?;
        let mut found = None;
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name
                && uri.starts_with(URI_PREFIX)
            {
                if found.is_some() {
                    return Err(Error::Identity(
                        "certificate names more than one paotui system".into(),
                    ));
                }
                found = Some(Self::parse_uri(uri)?);
            }
        }
        let (dept, system) = found
            .ok_or_else(|| Error::Identity("certificate has no paotui://dept/… URI".into()))?;
        Ok(SystemIdentity {
            dept,
            system,
            serial: hex::encode(cert.raw_serial()),
        })
    }
}

impl fmt::Display for SystemIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} (serial {})", self.dept, self.system, self.serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip() {
        let d = DeptCode::parse("GA").unwrap();
        let s = SystemId::parse("hukou-1").unwrap();
        let uri = SystemIdentity::uri(&d, &s);
        assert_eq!(uri, "paotui://dept/GA/system/hukou-1");
        assert_eq!(SystemIdentity::parse_uri(&uri).unwrap(), (d, s));
    }

    #[test]
    fn rejects_bad_parts() {
        assert!(DeptCode::parse("").is_err());
        assert!(DeptCode::parse("a/b").is_err());
        assert!(SystemId::parse("x y").is_err());
        assert!(SystemIdentity::parse_uri("https://dept/GA/system/x").is_err());
        assert!(SystemIdentity::parse_uri("paotui://dept/GA/x").is_err());
        assert!(SystemIdentity::parse_uri("paotui://dept/GA/system/").is_err());
    }
}
