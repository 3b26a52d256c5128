//! The matter catalog (事项): what a window can accept, who handles it, how long it may
//! take, and which materials it needs — and for each material whether data can replace
//! the paper: a license from the vault (`license:<type>`), a data service the handling
//! department may query for the case (`service:<id>`), or only `paper`. A material may
//! be deferrable (容缺受理): the case is accepted and the material is due within a number
//! of working days.

use std::fmt;

use serde::Serialize;

use crate::ids::ServiceId;
use crate::licenses::TypeCode;
use crate::{Error, Result};
use paotui_certs::DeptCode;

/// A matter code: 2–64 of `A-Z 0-9 -`, starting with a letter or digit (real codes are
/// long numeric 事项编码 or short mnemonic ones).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct MatterCode(String);

impl MatterCode {
    pub fn parse(s: &str) -> Result<Self> {
        let ok = (2..=64).contains(&s.len())
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(MatterCode(s.to_owned()))
        } else {
            Err(Error::InvalidParam(
                "matter code must be 2-64 characters of A-Z 0-9 - (starting with a letter or digit)"
                    .into(),
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MatterCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long a matter may take: decided at the window (即办件) or promised within a number
/// of working days (承诺件).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MatterKind {
    Immediate,
    Promised { working_days: u32 },
}

/// What can stand in for a material's paper copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", content = "id", rename_all = "snake_case")]
pub enum MaterialSource {
    /// A license of this type held by the applicant in the vault.
    License(TypeCode),
    /// This data service, queried for the case by the handling department.
    Service(ServiceId),
    /// Only the paper (or a scan) will do.
    Paper,
}

impl MaterialSource {
    /// Parses `license:<type>`, `service:<id>` or `paper`.
    pub fn parse(s: &str) -> Result<Self> {
        if s == "paper" {
            return Ok(MaterialSource::Paper);
        }
        if let Some(t) = s.strip_prefix("license:") {
            return Ok(MaterialSource::License(TypeCode::parse(t)?));
        }
        if let Some(id) = s.strip_prefix("service:") {
            return Ok(MaterialSource::Service(ServiceId::parse(id)?));
        }
        Err(Error::InvalidParam(
            "material source must be license:<type>, service:<id> or paper".into(),
        ))
    }
}

/// One material a matter needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Material {
    pub name: String,
    pub source: MaterialSource,
    /// Deferrable (容缺): due this many working days after acceptance.
    pub deferrable_days: Option<u32>,
    /// The party role (of the same matter) this material is about — the legal
    /// representative's identity proof — rather than the applicant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
}

impl Material {
    /// Whether this material is about a subject that is the applicant (`applicant`) or
    /// holds `roles` in the case.
    pub fn concerns(&self, applicant: bool, roles: &[&str]) -> bool {
        match &self.about {
            None => applicant,
            Some(r) => roles.contains(&r.as_str()),
        }
    }
}

/// A person or entity a matter names besides the applicant — an enterprise's legal
/// representative, the other parent of a newborn — given by role when the case is
/// opened; the handling department may read data about them for the case as about the
/// applicant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartyRole {
    /// `a-z 0-9 _`, 1-32 (e.g. `legal_rep`).
    pub role: String,
    pub name: String,
    pub kind: crate::catalog::SubjectKind,
}

/// A matter, validated against the catalog it is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matter {
    pub code: MatterCode,
    pub name: String,
    /// The department that handles (decides) it; any window may accept it (通办).
    pub owner: DeptCode,
    #[serde(flatten)]
    pub kind: MatterKind,
    pub materials: Vec<Material>,
    /// Others the matter names, by role (see [`PartyRole`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parties: Vec<PartyRole>,
}

impl Matter {
    /// The license types whose licenses this matter may fetch.
    pub fn license_types(&self) -> impl Iterator<Item = &TypeCode> {
        self.materials.iter().filter_map(|m| match &m.source {
            MaterialSource::License(t) => Some(t),
            _ => None,
        })
    }

    /// The license types this matter may fetch for a subject that is the applicant
    /// (`applicant`) or holds `roles` in the case: those of materials about it.
    pub fn license_types_for(&self, applicant: bool, roles: &[&str]) -> Vec<&TypeCode> {
        self.materials
            .iter()
            .filter(|m| m.concerns(applicant, roles))
            .filter_map(|m| match &m.source {
                MaterialSource::License(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// Whether this matter lists service `s` in a material about a subject that is the
    /// applicant (`applicant`) or holds `roles` in the case.
    pub fn lists_service_for(&self, s: &ServiceId, applicant: bool, roles: &[&str]) -> bool {
        self.materials.iter().any(|m| {
            m.concerns(applicant, roles)
                && matches!(&m.source, MaterialSource::Service(x) if x == s)
        })
    }

    /// The party role `role`, if this matter names it.
    pub fn party(&self, role: &str) -> Option<&PartyRole> {
        self.parties.iter().find(|p| p.role == role)
    }

    /// The data services this matter may query.
    pub fn services(&self) -> impl Iterator<Item = &ServiceId> {
        self.materials.iter().filter_map(|m| match &m.source {
            MaterialSource::Service(s) => Some(s),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_sources_parse_strictly() {
        assert!(MatterCode::parse("SC-GTGSH-SL").is_ok());
        assert!(MatterCode::parse("11440600MB2C92001Q4440117027000").is_ok());
        for bad in ["", "x", "-AB", "ab-cd", "A B"] {
            assert!(MatterCode::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            MaterialSource::parse("paper").unwrap(),
            MaterialSource::Paper
        );
        assert_eq!(
            MaterialSource::parse("license:YYZZ").unwrap(),
            MaterialSource::License(TypeCode::parse("YYZZ").unwrap())
        );
        assert_eq!(
            MaterialSource::parse("service:population.person").unwrap(),
            MaterialSource::Service(ServiceId::parse("population.person").unwrap())
        );
        for bad in ["Paper", "license:", "license:yy", "service:", "file:x"] {
            assert!(MaterialSource::parse(bad).is_err(), "{bad:?}");
        }
    }
}
