//! Identifiers, built only by parsing.
//!
//! - [`IdNumber`]: resident identity card number, GB 11643-1999 (17 digits + ISO 7064
//!   MOD 11-2 check character).
//! - [`Uscc`]: unified social credit code, GB 32100-2015 (18 characters, MOD 31 check).
//! - [`ServiceId`]: a data service id from the catalog.
//!
//! Error messages describe what is wrong without echoing the value: these are personal
//! identifiers and the message may end up in a log or an audit reason.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// GB 11643 check character for the first 17 digits.
pub fn id_check_char(first17: &[u8; 17]) -> Option<char> {
    let mut sum = 0u32;
    for (d, w) in first17.iter().zip(ID_WEIGHTS) {
        if !d.is_ascii_digit() {
            return None;
        }
        sum += u32::from(d - b'0') * w;
    }
    ID_CHECK.get((sum % 11) as usize).map(|b| char::from(*b))
}

/// A resident identity card number with a valid check character and birth date.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct IdNumber(String);

impl IdNumber {
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let b = s.as_bytes();
        if b.len() != 18 {
            return Err(Error::InvalidId(format!(
                "ID number must have 18 characters, got {}",
                s.chars().count()
            )));
        }
        let mut first = [0u8; 17];
        first.copy_from_slice(&b[..17]);
        let check = id_check_char(&first)
            .ok_or_else(|| Error::InvalidId("ID number must start with 17 digits".into()))?;
        if char::from(b[17]).to_ascii_uppercase() != check {
            return Err(Error::InvalidId(
                "ID number check digit does not match".into(),
            ));
        }
        let birth = std::str::from_utf8(&b[6..14]).unwrap_or("");
        if NaiveDate::parse_from_str(birth, "%Y%m%d").is_err() {
            return Err(Error::InvalidId(
                "ID number does not contain a valid birth date".into(),
            ));
        }
        if &b[..2] == b"00" {
            return Err(Error::InvalidId(
                "ID number has no valid region code".into(),
            ));
        }
        Ok(IdNumber(s.to_ascii_uppercase()))
    }

    /// Builds a number from a 6-digit region, a birth date and a 3-digit sequence
    /// (odd = male), appending the check character. Used by the demo generator.
    pub fn from_parts(region: u32, birth: NaiveDate, seq: u16) -> Result<Self> {
        let s = format!("{region:06}{}{:03}", birth.format("%Y%m%d"), seq % 1000);
        let mut first = [0u8; 17];
        if s.len() != 17 {
            return Err(Error::InvalidId("region must have 6 digits".into()));
        }
        first.copy_from_slice(s.as_bytes());
        let c = id_check_char(&first)
            .ok_or_else(|| Error::InvalidId("region must have 6 digits".into()))?;
        Self::parse(&format!("{s}{c}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<IdNumber> for String {
    fn from(v: IdNumber) -> String {
        v.0
    }
}

// Debug never prints the number: identifiers must not reach logs by accident.
impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber({})", crate::mask::id_number(&self.0))
    }
}

impl<'de> Deserialize<'de> for IdNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IdNumber::parse(&s).map_err(serde::de::Error::custom)
    }
}

const USCC_CHARS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// GB 32100 check character for the first 17 characters.
pub fn uscc_check_char(first17: &[u8]) -> Option<char> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (c, w) in first17.iter().zip(USCC_WEIGHTS) {
        let v = USCC_CHARS.iter().position(|x| x == c)? as u32;
        sum += v * w;
    }
    let check = (31 - sum % 31) % 31;
    USCC_CHARS.get(check as usize).map(|b| char::from(*b))
}

/// A unified social credit code (统一社会信用代码) with a valid check character.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct Uscc(String);

impl Uscc {
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_uppercase();
        let b = s.as_bytes();
        if b.len() != 18 {
            return Err(Error::InvalidId(
                "credit code must have 18 characters".into(),
            ));
        }
        let check = uscc_check_char(&b[..17]).ok_or_else(|| {
            Error::InvalidId("credit code contains a character outside GB 32100's set".into())
        })?;
        if char::from(b[17]) != check {
            return Err(Error::InvalidId(
                "credit code check character does not match".into(),
            ));
        }
        Ok(Uscc(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Uscc> for String {
    fn from(v: Uscc) -> String {
        v.0
    }
}

impl fmt::Debug for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uscc({})", &self.0)
    }
}

impl fmt::Display for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A data-service id: 1–64 characters of lower-case letters, digits, `.`, `-`, `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceId(String);

impl ServiceId {
    pub fn parse(s: &str) -> Result<Self> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            });
        if ok {
            Ok(ServiceId(s.to_owned()))
        } else {
            Err(Error::InvalidParam(
                "service id must be 1-64 characters of a-z, 0-9, '.', '-', '_'".into(),
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServiceId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        ServiceId::parse(&s)
    }
}
impl From<ServiceId> for String {
    fn from(v: ServiceId) -> String {
        v.0
    }
}
impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn gb11643_examples() {
        // The worked examples printed in GB 11643-1999 itself.
        assert!(IdNumber::parse("11010519491231002X").is_ok());
        assert!(IdNumber::parse("11010519491231002x").is_ok());
        assert!(IdNumber::parse("440524188001010014").is_ok());
        assert!(IdNumber::parse("110105194912310021").is_err());
        assert!(IdNumber::parse("1101051949123100").is_err());
        assert!(IdNumber::parse("11010519491331002X").is_err()); // month 13, fixed check
    }

    #[test]
    fn gb11643_error_does_not_echo_value() {
        let e = IdNumber::parse("110105194912310021")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("1101051949"), "{e}");
        let d = format!("{:?}", IdNumber::parse("11010519491231002X").unwrap());
        assert!(!d.contains("11010519491231002X"), "{d}");
    }

    #[test]
    fn gb32100_examples() {
        // Widely published valid codes (the GB 32100-2015 example and a listed company).
        assert!(Uscc::parse("91350100M000100Y43").is_ok());
        assert!(Uscc::parse("91350100M000100Y44").is_err());
        assert!(Uscc::parse("91350100M000100Y4").is_err());
        assert!(Uscc::parse("91350100M000I00Y43").is_err()); // I is not in the set
    }

    proptest! {
        #[test]
        fn generated_numbers_parse(region in 110000u32..659999, days in 0i64..40000, seq in 0u16..1000) {
            let birth = NaiveDate::from_ymd_opt(1910, 1, 1).unwrap() + chrono::Duration::days(days);
            let id = IdNumber::from_parts(region, birth, seq).unwrap();
            prop_assert!(IdNumber::parse(id.as_str()).is_ok());
            // Any single changed digit in the body breaks the check.
            let mut b = id.as_str().as_bytes().to_vec();
            b[16] = if b[16] == b'9' { b'0' } else { b[16] + 1 };
            prop_assert!(IdNumber::parse(std::str::from_utf8(&b).unwrap()).is_err());
        }
    }
}
