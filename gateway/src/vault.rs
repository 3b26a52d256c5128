//! The electronic-license vault: issuing, reading, status changes and verification, shared
//! by the HTTP routes ([`crate::routes::licenses`]) and `paotui license import`.
//!
//! A license is a [`LicenseDocument`] in RFC 8785 canonical JSON, signed as an EdDSA
//! compact JWS by its issuing department's key. The vault stores it sealed (AES-256-GCM,
//! the license id as associated data) and finds it by HMACs: the holder's under the same
//! subject key as the audit log (so "who read my data" covers licenses), the number's and
//! the content's under domain-separated inputs of that key.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use paotui_certs::{DataKey, DeptCode, IssuerKeys, Jwks, SubjectKey, jws};
use paotui_policies::catalog::Catalog;
use paotui_policies::cedar::{Action, Resource};
use paotui_policies::ids::{IdNumber, Uscc};
use paotui_policies::licenses::{
    self, CheckedRequest, JWS_TYPE, LicenseDocument, LicenseId, LicenseRequest, LicenseType,
    OfflineVerdict, Status, StatusAction, TypeCode,
};
use paotui_repository::{LicenseEvent, LicenseUse, Store, StoredLicense};
use serde::Serialize;

use crate::{Error, Result};

/// Who acts on the vault: the calling system (or the department running an import).
#[derive(Debug, Clone)]
pub struct Actor {
    pub dept: DeptCode,
    pub system: String,
    pub operator: Option<String>,
    pub request_id: String,
}

/// Where a license came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Api,
    Import,
}

/// A license as a reader receives it.
#[derive(Debug, Clone, Serialize)]
pub struct LicenseView {
    pub id: String,
    /// `valid`, `suspended`, `revoked`, `expired` or `not_yet_valid` today.
    pub status: String,
    /// The compact JWS, verifiable with the issuer's key from `/v1/keys` alone.
    pub jws: String,
    pub document: LicenseDocument,
}

/// What issuing did.
#[derive(Debug, Clone)]
pub enum Issued {
    New(Box<LicenseView>),
    /// An import row whose license (same type, number and content) is already stored.
    AlreadyStored(String),
}

/// The vault's answer to `POST /v1/licenses/verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub valid: bool,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The vault's current status of the license, when it is in the vault. (Not `status`:
    /// in a 422 problem that member is the HTTP status.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<LicenseDocument>,
}

pub struct Vault {
    store: Store,
    subject_key: SubjectKey,
    data_key: DataKey,
    issuers: IssuerKeys,
    issuer_jwks: Jwks,
    types: BTreeMap<TypeCode, LicenseType>,
    dept_names: BTreeMap<DeptCode, String>,
}

/// Most licenses one holder listing returns.
pub const HOLDER_LIST_LIMIT: u32 = 500;

impl Vault {
    pub fn new(
        store: Store,
        catalog: &Catalog,
        subject_key: SubjectKey,
        data_key: DataKey,
        issuers: IssuerKeys,
    ) -> Vault {
        let issuer_jwks = Jwks {
            keys: issuers.jwks().cloned().collect(),
        };
        Vault {
            store,
            subject_key,
            data_key,
            issuers,
            issuer_jwks,
            types: catalog.license_types.clone(),
            dept_names: catalog
                .departments
                .iter()
                .map(|(k, d)| (k.clone(), d.name.clone()))
                .collect(),
        }
    }

    /// The issuing departments' public keys, each marked `paotui_issuer`.
    pub fn issuer_jwks(&self) -> &Jwks {
        &self.issuer_jwks
    }

    pub fn license_type(&self, code: &str) -> Result<&LicenseType> {
        TypeCode::parse(code)
            .ok()
            .and_then(|c| self.types.get(&c))
            .ok_or_else(|| Error::BadRequest("unknown license type".into()))
    }

    /// The HMAC a holder is found by (and audited under).
    pub fn holder_hmac(&self, canonical_id: &str) -> String {
        self.subject_key.hash(canonical_id)
    }

    fn number_hmac(&self, t: &TypeCode, number: &str) -> String {
        self.subject_key
            .hash(&format!("license-number\u{0}{t}\u{0}{number}"))
    }

    /// Identifies an import row's content, so re-importing it is recognised.
    fn content_hmac(&self, t: &TypeCode, c: &CheckedRequest) -> Result<String> {
        let canon = jws::canonical_json(&serde_json::json!({
            "holder": c.holder,
            "number": c.number,
            "issued_on": c.issued_on,
            "valid_from": c.valid_from,
            "valid_until": c.valid_until,
            "data": c.data,
        }))?;
        let text = String::from_utf8_lossy(&canon);
        Ok(self
            .subject_key
            .hash(&format!("license-content\u{0}{t}\u{0}{text}")))
    }

    /// Checks, signs and stores a new license, if the policies let the caller of `authz`
    /// issue its type (shipped: only the type's issuing department). With a `number` (imports), the same type and number already stored with
    /// the same content is [`Issued::AlreadyStored`]; with other content, a conflict.
    pub async fn issue(
        &self,
        authz: &crate::authz::Authz,
        actor: &Actor,
        req: &LicenseRequest,
        source: Source,
        today: NaiveDate,
        at_us: i64,
    ) -> Result<Issued> {
        let t = self.license_type(&req.type_code)?;
        authz.require(
            Action::IssueLicense,
            Resource::LicenseType(t),
            vec![],
            || {
                format!(
                    "{} issuing {} licenses, whose issuer is {}",
                    authz.caller().dept,
                    t.code,
                    t.issuer
                )
            },
            None,
        )?;
        let checked = t.check(req, today)?;
        let content_hmac = self.content_hmac(&t.code, &checked)?;
        if let Some(number) = &checked.number {
            let nh = self.number_hmac(&t.code, number);
            if let Some(old) = self.store.license_by_number(t.code.as_str(), &nh).await? {
                return if old.content_hmac == content_hmac {
                    Ok(Issued::AlreadyStored(old.id))
                } else {
                    Err(Error::Conflict(format!(
                        "a {} license with this number is already stored with other content",
                        t.code
                    )))
                };
            }
        }
        let key = self
            .issuers
            .get(&t.issuer)
            .ok_or_else(|| Error::Internal(format!("no signing key for issuer {}", t.issuer)))?;
        let serial = self
            .store
            .next_license_serial(t.code.as_str(), t.issuer.as_str())
            .await?;
        let id = LicenseId::new(&t.code, &t.issuer, serial)?;
        let issuer_name = self
            .dept_names
            .get(&t.issuer)
            .map_or(t.issuer.as_str(), String::as_str);
        let doc = t.document(id.clone(), issuer_name, checked);
        let token = jws::sign_json(key, JWS_TYPE, &doc)?;
        let sealed = self
            .data_key
            .seal(id.as_str().as_bytes(), token.as_bytes())?;
        let row = StoredLicense {
            id: id.to_string(),
            type_code: t.code.to_string(),
            issuer: t.issuer.to_string(),
            number_hmac: self.number_hmac(&t.code, &doc.number),
            holder_hmac: self.holder_hmac(&doc.holder.id),
            holder_kind: holder_kind(&doc).to_owned(),
            status: Status::Valid.as_str().to_owned(),
            valid_from: doc.valid_from.to_string(),
            valid_until: doc.valid_until.map(|d| d.to_string()),
            issued_at_us: at_us,
            source: match source {
                Source::Api => "api",
                Source::Import => "import",
            }
            .to_owned(),
            content_hmac,
            document: sealed,
        };
        let event = LicenseEvent {
            license_id: row.id.clone(),
            at_us,
            from_status: None,
            to_status: row.status.clone(),
            reason: Some(match source {
                Source::Api => "issued".to_owned(),
                Source::Import => "imported".to_owned(),
            }),
            by_dept: actor.dept.to_string(),
            by_system: actor.system.clone(),
            operator: actor.operator.clone(),
            request_id: actor.request_id.clone(),
        };
        self.store.insert_license(&row, &event).await?;
        let status =
            licenses::effective_status(Status::Valid, doc.valid_from, doc.valid_until, today);
        Ok(Issued::New(Box::new(LicenseView {
            id: row.id,
            status: status.to_owned(),
            jws: token,
            document: doc,
        })))
    }

    /// Opens a stored license: the sealed JWS, checked against the issuer's key, parsed.
    fn view(&self, row: &StoredLicense, today: NaiveDate) -> Result<LicenseView> {
        let token = self
            .data_key
            .open(row.id.as_bytes(), &row.document)
            .map_err(|_| {
                Error::Internal(format!(
                    "stored license {} does not open under the data key",
                    row.id
                ))
            })?;
        let token = String::from_utf8(token)
            .map_err(|_| Error::Internal(format!("stored license {} is not text", row.id)))?;
        let document: LicenseDocument = jws::verify(&token, &self.issuer_jwks)
            .and_then(|v| v.json())
            .map_err(|e| Error::Internal(format!("stored license {}: {e}", row.id)))?;
        let stored = Status::parse(&row.status).ok_or_else(|| {
            Error::Internal(format!(
                "stored license {} has status {:?}",
                row.id, row.status
            ))
        })?;
        Ok(LicenseView {
            id: row.id.clone(),
            status: licenses::effective_status(
                stored,
                document.valid_from,
                document.valid_until,
                today,
            )
            .to_owned(),
            jws: token,
            document,
        })
    }

    /// One license's stored row (status, holder HMAC, issuer), without opening its
    /// document.
    pub async fn row(&self, id: &str) -> Result<StoredLicense> {
        let id = LicenseId::parse(id).map_err(|_| Error::NotFound("no such license".into()))?;
        self.store
            .license(id.as_str())
            .await?
            .ok_or_else(|| Error::NotFound("no such license".into()))
    }

    /// One license by id, with its row (for the holder's HMAC).
    pub async fn get(&self, id: &str, today: NaiveDate) -> Result<(StoredLicense, LicenseView)> {
        let row = self.row(id).await?;
        let view = self.view(&row, today)?;
        Ok((row, view))
    }

    /// The licenses held under `holder_hmac` (see [`canonical_holder`]), optionally of one
    /// type, newest first.
    pub async fn of_holder(
        &self,
        holder_hmac: &str,
        type_code: Option<&str>,
        today: NaiveDate,
    ) -> Result<Vec<LicenseView>> {
        let t = type_code.map(|c| self.license_type(c)).transpose()?;
        let rows = self
            .store
            .licenses_of_holder(holder_hmac, t.map(|t| t.code.as_str()), HOLDER_LIST_LIMIT)
            .await?;
        rows.iter().map(|r| self.view(r, today)).collect()
    }

    /// Records that licenses were fetched for a case (用证记录): (license id, matter) pairs.
    pub async fn record_uses(
        &self,
        actor: &Actor,
        uses: &[(String, String)],
        case_id: &str,
        at_us: i64,
    ) -> Result<()> {
        let uses: Vec<LicenseUse> = uses
            .iter()
            .map(|(id, matter)| LicenseUse {
                license_id: id.clone(),
                at_us,
                caller_dept: actor.dept.to_string(),
                caller_system: actor.system.clone(),
                operator: actor.operator.clone(),
                case_id: case_id.to_owned(),
                matter: Some(matter.clone()),
                request_id: actor.request_id.clone(),
            })
            .collect();
        Ok(self.store.record_license_uses(&uses).await?)
    }

    /// Suspends, restores or revokes a license, if the policies let the caller of `authz`
    /// (shipped: only its issuing department).
    pub async fn change_status(
        &self,
        authz: &crate::authz::Authz,
        actor: &Actor,
        row: &StoredLicense,
        action: StatusAction,
        reason: &str,
        at_us: i64,
    ) -> Result<(Status, Status)> {
        authz.require(
            Action::ChangeLicenseStatus,
            Resource::LicenseType(self.license_type(&row.type_code)?),
            vec![],
            || {
                format!(
                    "{} changing the status of a {} license, whose issuer is {}",
                    authz.caller().dept,
                    row.type_code,
                    row.issuer
                )
            },
            None,
        )?;
        let from = Status::parse(&row.status).ok_or_else(|| {
            Error::Internal(format!(
                "stored license {} has status {:?}",
                row.id, row.status
            ))
        })?;
        let to = licenses::transition(from, action).map_err(Error::Conflict)?;
        let event = LicenseEvent {
            license_id: row.id.clone(),
            at_us,
            from_status: Some(from.as_str().to_owned()),
            to_status: to.as_str().to_owned(),
            reason: Some(reason.to_owned()),
            by_dept: actor.dept.to_string(),
            by_system: actor.system.clone(),
            operator: actor.operator.clone(),
            request_id: actor.request_id.clone(),
        };
        self.store
            .change_license_status(from.as_str(), &event)
            .await?;
        Ok((from, to))
    }

    /// Checks a presented license: the offline checks (signature, issuer key, dates), then
    /// that the vault holds exactly this document and its status is valid.
    pub async fn verify(&self, token: &str, today: NaiveDate) -> Result<Verdict> {
        let OfflineVerdict {
            mut reasons,
            kid,
            document,
            ..
        } = licenses::verify_offline(token, &self.issuer_jwks, today);
        let mut license_status = None;
        if let Some(doc) = &document {
            match self.store.license(doc.id.as_str()).await? {
                None => reasons.push("the license is not in the vault".into()),
                Some(row) => {
                    let view = self.view(&row, today)?;
                    if view.jws != token.trim() {
                        reasons.push("the license differs from the vault's copy".into());
                    }
                    // Expiry is already a reason from the dates; other states are not.
                    if matches!(view.status.as_str(), "suspended" | "revoked") {
                        reasons.push(format!("the license is {}", view.status));
                    }
                    license_status = Some(view.status);
                }
            }
        }
        Ok(Verdict {
            valid: reasons.is_empty(),
            reasons,
            kid,
            license_status,
            document,
        })
    }
}

/// Today (UTC) and now in unix microseconds: the day dates are checked against and the
/// time events are stamped with, read once per request.
pub fn now() -> (NaiveDate, i64) {
    let t = chrono::Utc::now();
    (t.date_naive(), t.timestamp_micros())
}

/// A holder or applicant as given at the API: an ID number (`person`) or a unified social
/// credit code (`business`), in canonical form.
pub fn canonical_holder(s: &str) -> Result<(String, &'static str)> {
    if let Ok(i) = IdNumber::parse(s) {
        return Ok((i.as_str().to_owned(), "person"));
    }
    if let Ok(u) = Uscc::parse(s) {
        return Ok((u.as_str().to_owned(), "business"));
    }
    Err(Error::BadRequest(
        "expected an ID number or a unified social credit code with a valid check character".into(),
    ))
}

fn holder_kind(doc: &LicenseDocument) -> &'static str {
    kind_name(doc.holder.kind)
}

/// How a holder or applicant kind is stored: `person` or `business`.
pub fn kind_name(kind: paotui_policies::catalog::SubjectKind) -> &'static str {
    match kind {
        paotui_policies::catalog::SubjectKind::IdNumber => "person",
        paotui_policies::catalog::SubjectKind::Uscc => "business",
    }
}
