//! Electronic licenses (电子证照): the types in the catalog, the signed document, its
//! lifecycle, and the offline part of a verdict.
//!
//! A license is a JSON document signed by its issuing department: RFC 8785 canonical
//! JSON in a compact JWS (EdDSA), `typ` [`JWS_TYPE`]. Everything here is pure; the
//! gateway stores, seals and serves the documents.
//!
//! License identifiers are `<type>-<issuer>-<serial>`: the type code, the issuing
//! department's code and an 8-digit serial the vault assigns per type (unique, never
//! reused; a failed issue may leave a gap). Example: `YYZZ-SC-00000042`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, NaiveDate};
use paotui_certs::{DeptCode, Jwks, jws};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{ParamType, SubjectKind};
use crate::ids::{IdNumber, Uscc};
use crate::{Error, Result};

/// The `typ` header of a signed license.
pub const JWS_TYPE: &str = "paotui-license+jws";

/// Version of the document layout below.
pub const DOCUMENT_VERSION: u32 = 1;

/// Largest text value of a license data field, in bytes.
pub const MAX_TEXT: usize = 512;

/// JCS writes numbers as doubles; integers beyond ±2^53 would change when signed.
const MAX_SAFE_INT: i64 = (1 << 53) - 1;

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidLicense(msg.into())
}

/// A license type code in the style of the national catalogue of license types
/// (GB/T 36902): 2–16 upper-case letters and digits, starting with a letter, e.g. `YYZZ`
/// (营业执照, business licence).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TypeCode(String);

impl TypeCode {
    pub fn parse(s: &str) -> Result<Self> {
        let b = s.as_bytes();
        let ok = (2..=16).contains(&b.len())
            && b[0].is_ascii_uppercase()
            && b.iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if ok {
            Ok(TypeCode(s.to_owned()))
        } else {
            Err(bad(format!(
                "license type {s:?} must be 2-16 upper-case letters and digits, starting with a letter"
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TypeCode {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}
impl From<TypeCode> for String {
    fn from(v: TypeCode) -> String {
        v.0
    }
}
impl fmt::Display for TypeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A license identifier `<type>-<issuer>-<serial>` (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LicenseId {
    text: String,
    type_code: TypeCode,
}

impl LicenseId {
    pub fn new(type_code: &TypeCode, issuer: &DeptCode, serial: u64) -> Result<Self> {
        Self::parse(&format!("{type_code}-{}-{serial:08}", issuer.as_str()))
    }

    pub fn parse(s: &str) -> Result<Self> {
        let err = || bad("license id must look like TYPE-DEPT-00000001");
        // The department code may itself hold '-', so split type first and serial last.
        let (type_code, rest) = s.split_once('-').ok_or_else(err)?;
        let (dept, serial) = rest.rsplit_once('-').ok_or_else(err)?;
        let type_code = TypeCode::parse(type_code).map_err(|_| err())?;
        DeptCode::parse(dept).map_err(|_| err())?;
        if serial.len() < 8 || serial.len() > 19 || !serial.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        Ok(LicenseId {
            text: s.to_owned(),
            type_code,
        })
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
    pub fn type_code(&self) -> &TypeCode {
        &self.type_code
    }
}

impl TryFrom<String> for LicenseId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}
impl From<LicenseId> for String {
    fn from(v: LicenseId) -> String {
        v.text
    }
}
impl fmt::Display for LicenseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One data field of a license type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseField {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type", default = "string_type")]
    pub ty: ParamType,
    #[serde(default)]
    pub required: bool,
}

fn string_type() -> ParamType {
    ParamType::String
}

/// A license type from the catalog, validated.
#[derive(Debug, Clone)]
pub struct LicenseType {
    pub code: TypeCode,
    pub name: String,
    pub issuer: DeptCode,
    /// Who holds it: a person (ID number) or an enterprise (credit code).
    pub holder: SubjectKind,
    /// Fixed term in years (valid until the day before the anniversary); `None` means
    /// long-term (长期) unless the issuer states an end date.
    pub validity_years: Option<u32>,
    pub fields: Vec<LicenseField>,
}

/// The holder as written in a license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holder {
    pub kind: SubjectKind,
    /// ID number or unified social credit code, canonical form.
    pub id: String,
    pub name: String,
}

/// The issuer as written in a license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    pub dept: DeptCode,
    pub name: String,
}

/// The signed license document (layout version [`DOCUMENT_VERSION`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseDocument {
    pub v: u32,
    pub id: LicenseId,
    #[serde(rename = "type")]
    pub type_code: TypeCode,
    pub type_name: String,
    /// The license number printed on it: the id for licenses issued here, the original
    /// number for imported ones.
    pub number: String,
    pub holder: Holder,
    pub issuer: Issuer,
    pub issued_on: NaiveDate,
    pub valid_from: NaiveDate,
    /// `None`: long-term.
    pub valid_until: Option<NaiveDate>,
    pub data: BTreeMap<String, Value>,
}

/// What an issuer supplies for a new license (the API body and an import row).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseRequest {
    #[serde(rename = "type")]
    pub type_code: String,
    pub holder_id: String,
    pub holder_name: String,
    /// Only for imports: the license's existing number.
    #[serde(default)]
    pub number: Option<String>,
    /// Only for imports: the date it was first issued. Default: today.
    #[serde(default)]
    pub issued_on: Option<String>,
    #[serde(default)]
    pub valid_from: Option<String>,
    #[serde(default)]
    pub valid_until: Option<String>,
    #[serde(default)]
    pub data: serde_json::Map<String, Value>,
}

fn date(what: &str, s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| bad(format!("{what} must be a date YYYY-MM-DD")))
}

/// The day before the `years`-th anniversary of `from` (29 Feb rolls to 28 Feb).
pub fn term_end(from: NaiveDate, years: u32) -> Option<NaiveDate> {
    let y = from.year().checked_add(i32::try_from(years).ok()?)?;
    let anniversary = from
        .with_year(y)
        .or_else(|| NaiveDate::from_ymd_opt(y, from.month(), 28))?;
    anniversary.pred_opt()
}

/// A request checked against its type: everything a document needs except the id.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRequest {
    pub holder: Holder,
    pub number: Option<String>,
    pub issued_on: NaiveDate,
    pub valid_from: NaiveDate,
    pub valid_until: Option<NaiveDate>,
    pub data: BTreeMap<String, Value>,
}

impl LicenseType {
    /// Checks a request for this type: holder identifier (check digits), name, dates
    /// against the validity rule, and each data field against its declared type.
    /// Messages never repeat a value.
    pub fn check(&self, req: &LicenseRequest, today: NaiveDate) -> Result<CheckedRequest> {
        let id = match self.holder {
            SubjectKind::IdNumber => IdNumber::parse(&req.holder_id)
                .map_err(|e| bad(format!("holder_id: {e}")))?
                .as_str()
                .to_owned(),
            SubjectKind::Uscc => Uscc::parse(&req.holder_id)
                .map_err(|e| bad(format!("holder_id: {e}")))?
                .as_str()
                .to_owned(),
        };
        let name = req.holder_name.trim();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(bad(
                "holder_name must be 1-200 bytes of text without control characters",
            ));
        }
        let number = match &req.number {
            None => None,
            Some(n) => {
                let n = n.trim();
                let ok = !n.is_empty()
                    && n.len() <= 64
                    && n.chars().all(|c| !c.is_control() && !c.is_whitespace());
                if !ok {
                    return Err(bad("number must be 1-64 characters without spaces"));
                }
                Some(n.to_owned())
            }
        };
        let issued_on = match &req.issued_on {
            Some(s) => date("issued_on", s)?,
            None => today,
        };
        if issued_on > today {
            return Err(bad("issued_on is in the future"));
        }
        let valid_from = match &req.valid_from {
            Some(s) => date("valid_from", s)?,
            None => issued_on,
        };
        let term = match self.validity_years {
            Some(y) => {
                Some(term_end(valid_from, y).ok_or_else(|| bad("valid_from is out of range"))?)
            }
            None => None,
        };
        let valid_until = match (&req.valid_until, term) {
            (Some(s), term) => {
                let d = date("valid_until", s)?;
                if d < valid_from {
                    return Err(bad("valid_until is before valid_from"));
                }
                if term.is_some_and(|t| d > t) {
                    return Err(bad(format!(
                        "valid_until is beyond the {}-year term of {}",
                        self.validity_years.unwrap_or(0),
                        self.code
                    )));
                }
                Some(d)
            }
            (None, term) => term,
        };
        for k in req.data.keys() {
            if !self.fields.iter().any(|f| &f.name == k) {
                return Err(bad(format!("{} has no field {k:?}", self.code)));
            }
        }
        let mut data = BTreeMap::new();
        for f in &self.fields {
            let v = match req.data.get(&f.name) {
                None | Some(Value::Null) if f.required => {
                    return Err(bad(format!("field {:?} is required", f.name)));
                }
                None | Some(Value::Null) => continue,
                Some(v) => v,
            };
            let v = match f.ty {
                ParamType::String => v
                    .as_str()
                    .filter(|s| !s.is_empty() && s.len() <= MAX_TEXT)
                    .map(|s| Value::from(s.to_owned())),
                ParamType::Integer => v
                    .as_i64()
                    .filter(|i| i.abs() <= MAX_SAFE_INT)
                    .map(Value::from),
                ParamType::Date => v
                    .as_str()
                    .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                    .map(|d| Value::from(d.format("%Y-%m-%d").to_string())),
            }
            .ok_or_else(|| {
                let want = match f.ty {
                    ParamType::String => format!("a string of 1-{MAX_TEXT} bytes"),
                    ParamType::Integer => "an integer within ±2^53".to_owned(),
                    ParamType::Date => "a date YYYY-MM-DD".to_owned(),
                };
                bad(format!("field {:?} must be {want}", f.name))
            })?;
            data.insert(f.name.clone(), v);
        }
        Ok(CheckedRequest {
            holder: Holder {
                kind: self.holder,
                id,
                name: name.to_owned(),
            },
            number,
            issued_on,
            valid_from,
            valid_until,
            data,
        })
    }

    /// The document for a checked request under its assigned id.
    pub fn document(
        &self,
        id: LicenseId,
        issuer_name: &str,
        req: CheckedRequest,
    ) -> LicenseDocument {
        LicenseDocument {
            v: DOCUMENT_VERSION,
            number: req.number.unwrap_or_else(|| id.as_str().to_owned()),
            id,
            type_code: self.code.clone(),
            type_name: self.name.clone(),
            holder: req.holder,
            issuer: Issuer {
                dept: self.issuer.clone(),
                name: issuer_name.to_owned(),
            },
            issued_on: req.issued_on,
            valid_from: req.valid_from,
            valid_until: req.valid_until,
            data: req.data,
        }
    }
}

/// A license's stored status. Expiry is not stored: it follows from the date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Valid,
    Suspended,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Suspended => "suspended",
            Status::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "valid" => Some(Status::Valid),
            "suspended" => Some(Status::Suspended),
            "revoked" => Some(Status::Revoked),
            _ => None,
        }
    }
}

/// What an issuer may do to a license.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusAction {
    Suspend,
    Restore,
    Revoke,
}

/// The status after `action`, or why it is refused: valid ⇄ suspended; revoked is final.
pub fn transition(from: Status, action: StatusAction) -> std::result::Result<Status, String> {
    use Status::*;
    use StatusAction::*;
    match (from, action) {
        (Valid, Suspend) => Ok(Suspended),
        (Suspended, Restore) => Ok(Valid),
        (Valid | Suspended, Revoke) => Ok(Revoked),
        (Revoked, _) => Err("the license is revoked; revocation is final".into()),
        (Valid, Restore) => Err("the license is not suspended".into()),
        (Suspended, Suspend) => Err("the license is already suspended".into()),
    }
}

/// The status a reader sees: the stored one, or `expired` once `valid_until` has passed,
/// or `not_yet_valid` before `valid_from`.
pub fn effective_status(
    stored: Status,
    valid_from: NaiveDate,
    valid_until: Option<NaiveDate>,
    today: NaiveDate,
) -> &'static str {
    match stored {
        Status::Valid if valid_until.is_some_and(|u| u < today) => "expired",
        Status::Valid if valid_from > today => "not_yet_valid",
        s => s.as_str(),
    }
}

/// What a signature check alone (no vault) says about a presented license.
#[derive(Debug, Clone, Serialize)]
pub struct OfflineVerdict {
    /// Signature good, signed by the key of the department the license names, and within
    /// its validity dates.
    pub valid: bool,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<LicenseDocument>,
}

/// Checks a compact JWS license against issuer keys (a JWK set such as `/v1/keys`):
/// signature, that the key belongs to the issuing department the document names, the
/// document layout, and its validity dates on `today`. `Err` only for input that is not
/// a JWS at all; every failed check is a reason in the verdict.
pub fn verify_offline(token: &str, keys: &Jwks, today: NaiveDate) -> OfflineVerdict {
    let mut v = OfflineVerdict {
        valid: false,
        reasons: vec![],
        kid: None,
        document: None,
    };
    let checked = match jws::verify(token.trim(), keys) {
        Ok(c) => c,
        Err(e) => {
            v.reasons.push(e.to_string());
            return v;
        }
    };
    v.kid = checked.kid.clone();
    if checked.typ.as_deref() != Some(JWS_TYPE) {
        v.reasons
            .push(format!("JWS type is not {JWS_TYPE}: not a paotui license"));
        return v;
    }
    let doc: LicenseDocument = match checked.json() {
        Ok(d) => d,
        Err(e) => {
            v.reasons.push(e.to_string());
            return v;
        }
    };
    let key_issuer = checked
        .kid
        .as_deref()
        .and_then(|k| keys.find(k))
        .and_then(|k| k.issuer.clone());
    match key_issuer {
        None => v
            .reasons
            .push("signed with a key that is not a license issuer's key".into()),
        Some(d) if d != doc.issuer.dept.as_str() => v.reasons.push(format!(
            "signed with the key of {d}, but the license names issuer {}",
            doc.issuer.dept.as_str()
        )),
        Some(_) => {}
    }
    if doc.v != DOCUMENT_VERSION {
        v.reasons
            .push(format!("unknown license document version {}", doc.v));
    }
    if doc.id.type_code() != &doc.type_code {
        v.reasons.push("license id does not match its type".into());
    }
    if doc.valid_until.is_some_and(|u| u < today) {
        v.reasons.push("expired".into());
    }
    if doc.valid_from > today {
        v.reasons.push("not yet valid".into());
    }
    v.valid = v.reasons.is_empty();
    v.document = Some(doc);
    v
}

#[cfg(test)]
mod tests {
    use paotui_certs::GatewayKey;

    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn yyzz() -> LicenseType {
        LicenseType {
            code: TypeCode::parse("YYZZ").unwrap(),
            name: "营业执照".into(),
            issuer: DeptCode::parse("SC").unwrap(),
            holder: SubjectKind::Uscc,
            validity_years: Some(20),
            fields: vec![
                LicenseField {
                    name: "legal_person".into(),
                    description: String::new(),
                    ty: ParamType::String,
                    required: true,
                },
                LicenseField {
                    name: "capital".into(),
                    description: String::new(),
                    ty: ParamType::Integer,
                    required: false,
                },
                LicenseField {
                    name: "founded".into(),
                    description: String::new(),
                    ty: ParamType::Date,
                    required: false,
                },
            ],
        }
    }

    fn uscc() -> String {
        let first = "91350100M000100Y4";
        format!(
            "{first}{}",
            crate::ids::uscc_check_char(first.as_bytes()).unwrap()
        )
    }

    fn wrong_check_char() -> String {
        let mut u = uscc();
        let last = u.pop().unwrap();
        u.push(if last == '0' { '1' } else { '0' });
        u
    }

    fn request() -> LicenseRequest {
        LicenseRequest {
            type_code: "YYZZ".into(),
            holder_id: uscc(),
            holder_name: "福州某某有限公司".into(),
            data: serde_json::json!({"legal_person": "张三", "capital": 1000000})
                .as_object()
                .unwrap()
                .clone(),
            ..Default::default()
        }
    }

    #[test]
    fn ids_round_trip_and_refuse_bad_shapes() {
        let id = LicenseId::new(
            &TypeCode::parse("YYZZ").unwrap(),
            &DeptCode::parse("SC").unwrap(),
            42,
        )
        .unwrap();
        assert_eq!(id.as_str(), "YYZZ-SC-00000042");
        assert_eq!(id.type_code().as_str(), "YYZZ");
        assert!(LicenseId::parse("YYZZ-SC-BDC-00000001").is_ok());
        for bad in [
            "",
            "YYZZ",
            "YYZZ-SC",
            "YYZZ-SC-42",
            "yyzz-SC-00000001",
            "YYZZ--00000001",
            "YYZZ-SC-0000000x",
        ] {
            assert!(LicenseId::parse(bad).is_err(), "{bad}");
        }
        assert!(TypeCode::parse("1ABC").is_err());
        assert!(TypeCode::parse("A").is_err());
    }

    #[test]
    fn term_ends_the_day_before_the_anniversary() {
        assert_eq!(term_end(d("2026-11-24"), 5), Some(d("2031-11-23")));
        assert_eq!(term_end(d("2024-02-29"), 1), Some(d("2025-02-27")));
        assert_eq!(term_end(d("2024-03-01"), 0), Some(d("2024-02-29")));
    }

    #[test]
    fn check_fills_the_term_and_types_the_data() {
        let c = yyzz().check(&request(), d("2026-11-24")).unwrap();
        assert_eq!(c.valid_from, d("2026-11-24"));
        assert_eq!(c.valid_until, Some(d("2046-11-23")));
        assert_eq!(c.data["capital"], serde_json::json!(1000000));
        assert!(!c.data.contains_key("founded"));
    }

    #[test]
    fn check_refuses_bad_requests_without_echoing_values() {
        let t = yyzz();
        let today = d("2026-11-24");
        type Edit = Box<dyn Fn(&mut LicenseRequest)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|r| r.holder_id = wrong_check_char()),
                "check character",
            ),
            (
                Box::new(|r| r.holder_id = "110105194912310021".into()),
                "holder_id",
            ),
            (Box::new(|r| r.holder_name = " ".into()), "holder_name"),
            (
                Box::new(|r| {
                    r.data.remove("legal_person");
                }),
                "required",
            ),
            (
                Box::new(|r| {
                    r.data.insert("nope".into(), 1.into());
                }),
                "has no field",
            ),
            (
                Box::new(|r| {
                    r.data.insert("capital".into(), "many".into());
                }),
                "integer",
            ),
            (
                Box::new(|r| {
                    r.data.insert("capital".into(), (1i64 << 60).into());
                }),
                "2^53",
            ),
            (
                Box::new(|r| {
                    r.data.insert("founded".into(), "2020-02-30".into());
                }),
                "date",
            ),
            (
                Box::new(|r| r.valid_until = Some("2050-01-01".into())),
                "20-year term",
            ),
            (
                Box::new(|r| r.valid_until = Some("2020-01-01".into())),
                "before valid_from",
            ),
            (
                Box::new(|r| r.valid_from = Some("24/11/2026".into())),
                "YYYY-MM-DD",
            ),
            (
                Box::new(|r| r.issued_on = Some("2027-01-01".into())),
                "future",
            ),
            (Box::new(|r| r.number = Some("a b".into())), "number"),
        ];
        for (edit, want) in cases {
            let mut r = request();
            edit(&mut r);
            let e = t.check(&r, today).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert!(!e.contains("9135") && !e.contains("1101"), "{e}");
        }
    }

    #[test]
    fn transitions_follow_the_lifecycle() {
        use Status::*;
        use StatusAction::*;
        assert_eq!(transition(Valid, Suspend), Ok(Suspended));
        assert_eq!(transition(Suspended, Restore), Ok(Valid));
        assert_eq!(transition(Valid, Revoke), Ok(Revoked));
        assert_eq!(transition(Suspended, Revoke), Ok(Revoked));
        for a in [Suspend, Restore, Revoke] {
            assert!(transition(Revoked, a).is_err());
        }
        assert!(transition(Valid, Restore).is_err());
        assert!(transition(Suspended, Suspend).is_err());
        assert_eq!(
            effective_status(
                Valid,
                d("2020-01-01"),
                Some(d("2020-12-31")),
                d("2021-01-01")
            ),
            "expired"
        );
        assert_eq!(
            effective_status(Valid, d("2030-01-01"), None, d("2021-01-01")),
            "not_yet_valid"
        );
        assert_eq!(
            effective_status(
                Revoked,
                d("2020-01-01"),
                Some(d("2020-12-31")),
                d("2021-01-01")
            ),
            "revoked"
        );
        assert_eq!(
            effective_status(Valid, d("2020-01-01"), None, d("2021-01-01")),
            "valid"
        );
    }

    #[test]
    fn offline_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let sc = DeptCode::parse("SC").unwrap();
        let ga = DeptCode::parse("GA").unwrap();
        let keys = paotui_certs::IssuerKeys::load_or_generate(dir, [&sc, &ga]).unwrap();
        let jwks = Jwks {
            keys: keys.jwks().cloned().collect(),
        };
        let t = yyzz();
        let today = d("2026-11-24");
        let id = LicenseId::new(&t.code, &sc, 1).unwrap();
        let doc = t.document(id, "市场监督管理局", t.check(&request(), today).unwrap());
        let good = jws::sign_json(keys.get(&sc).unwrap(), JWS_TYPE, &doc).unwrap();
        let v = verify_offline(&good, &jwks, today);
        assert!(v.valid, "{:?}", v.reasons);
        assert_eq!(v.document.as_ref(), Some(&doc));

        // Expired on a later day.
        let v = verify_offline(&good, &jwks, d("2046-11-24"));
        assert_eq!(v.reasons, vec!["expired"]);
        // Signed by another department's key.
        let wrong = jws::sign_json(keys.get(&ga).unwrap(), JWS_TYPE, &doc).unwrap();
        let v = verify_offline(&wrong, &jwks, today);
        assert!(
            !v.valid && v.reasons[0].contains("key of GA"),
            "{:?}",
            v.reasons
        );
        // Signed by a key that is not an issuer's (e.g. the gateway's).
        let (gw, _) = GatewayKey::generate().unwrap();
        let mut with_gw = jwks.clone();
        with_gw.keys.push(gw.jwk().clone());
        let v = verify_offline(
            &jws::sign_json(&gw, JWS_TYPE, &doc).unwrap(),
            &with_gw,
            today,
        );
        assert!(
            v.reasons[0].contains("not a license issuer"),
            "{:?}",
            v.reasons
        );
        // Altered payload.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut altered = doc.clone();
        altered.holder.name = "别人".into();
        parts[1] = base64_url(&jws::canonical_json(&altered).unwrap());
        let v = verify_offline(&parts.join("."), &jwks, today);
        assert!(
            !v.valid && v.reasons[0].contains("does not verify"),
            "{:?}",
            v.reasons
        );
        // Wrong typ.
        let other = jws::sign_json(keys.get(&sc).unwrap(), "JWT", &doc).unwrap();
        assert!(!verify_offline(&other, &jwks, today).valid);
        // Not a JWS.
        assert!(!verify_offline("hello", &jwks, today).valid);
    }

    fn base64_url(b: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }
}
