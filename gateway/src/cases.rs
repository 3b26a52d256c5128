//! Cases (办件) and the materials resolver: for each material of each matter of a case,
//! whether the applicant's license in the vault, a data service, a deferral (容缺) or only
//! the paper covers it — and so how many paper copies the applicant did not bring.

use chrono::NaiveDate;
use paotui_policies::calendar::Calendar;
use paotui_policies::catalog::Catalog;
use paotui_policies::licenses::{self, Status};
use paotui_policies::matters::{MaterialSource, MatterCode, MatterKind};
use paotui_policies::purpose;
use paotui_repository::{CaseEvent, CaseMatter, Evaluation, Store, StoredCase};
use serde::Serialize;

use crate::{Error, Result};

/// How one material is covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Resolution {
    /// The applicant's valid license of the named type, from the vault.
    License { license_id: String },
    /// Data the handling department queries for this case instead of a paper copy.
    Data { service: String },
    /// Accepted without it (容缺受理); due by this day.
    Deferred { due: NaiveDate },
    /// Must be collected at the window.
    Collect,
}

#[derive(Debug, Clone, Serialize)]
pub struct MaterialView {
    pub matter: String,
    pub name: String,
    /// The party role the material is about (absent: the applicant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    #[serde(flatten)]
    pub resolution: Resolution,
}

#[derive(Debug, Clone, Serialize)]
pub struct MatterView {
    pub code: String,
    pub name: String,
    pub owner: String,
    /// `immediate` or `promised`.
    pub kind: &'static str,
    pub deadline: Option<String>,
    pub overdue: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub at: Option<String>,
    pub event: String,
    pub by_dept: String,
    pub by_system: String,
    pub operator: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseView {
    pub id: String,
    pub status: String,
    pub applicant_kind: String,
    pub site_dept: String,
    pub site_system: String,
    pub operator: Option<String>,
    pub accepted_on: String,
    pub matters: Vec<MatterView>,
    /// The parties the case gives, by role (their identifiers are never shown).
    pub parties: Vec<PartyView>,
    pub materials: Vec<MaterialView>,
    /// Materials covered by a license or by data: paper copies the applicant did not bring.
    pub papers_avoided: usize,
    /// Open with a promised deadline already passed.
    pub overdue: bool,
    pub events: Vec<EventView>,
    pub evaluation: Option<EvaluationView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartyView {
    pub role: String,
    pub kind: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvaluationView {
    pub score: i32,
    pub comment: Option<String>,
}

/// The events a case can take, and from which statuses.
pub fn next_status(from: &str, event: &str) -> std::result::Result<&'static str, String> {
    match (from, event) {
        ("accepted", "supplemented") => Ok("supplemented"),
        ("accepted" | "supplemented", "approved") => Ok("approved"),
        ("approved", "completed") => Ok("completed"),
        ("accepted" | "supplemented" | "approved", "rejected") => Ok("rejected"),
        ("completed" | "rejected", _) => Err(format!("the case is {from}; it is closed")),
        (_, "supplemented" | "approved" | "completed" | "rejected") => {
            Err(format!("a {from} case cannot be {event}"))
        }
        _ => Err(format!(
            "unknown event {event:?}; expected supplemented, approved, completed or rejected"
        )),
    }
}

/// Deadlines for matters accepted on `day`: `None` for immediate ones.
pub fn deadline(cal: &Calendar, kind: MatterKind, day: NaiveDate) -> Result<Option<NaiveDate>> {
    match kind {
        MatterKind::Immediate => Ok(None),
        MatterKind::Promised { working_days } => Ok(Some(cal.add_working_days(day, working_days)?)),
    }
}

fn date(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| Error::Internal(format!("stored date {s:?} is not a date")))
}

/// Builds the view of a stored case, resolving its materials against the vault today.
pub async fn view(
    store: &Store,
    catalog: &Catalog,
    cal: &Calendar,
    case: StoredCase,
    matters: Vec<CaseMatter>,
    today: NaiveDate,
) -> Result<CaseView> {
    let accepted_on = date(&case.accepted_on)?;
    let open = !paotui_repository::FINAL_CASE_STATUSES.contains(&case.status.as_str());
    let mut matter_views = Vec::new();
    let mut materials = Vec::new();
    let mut found: std::collections::HashMap<(String, String), Resolution> =
        std::collections::HashMap::new();
    for m in &matters {
        let spec = MatterCode::parse(&m.matter)
            .ok()
            .and_then(|c| catalog.matters.get(&c))
            .ok_or_else(|| {
                Error::Internal(format!(
                    "case {} names matter {} no longer in the catalog",
                    case.id, m.matter
                ))
            })?;
        let deadline = m.deadline.as_deref().map(date).transpose()?;
        matter_views.push(MatterView {
            code: m.matter.clone(),
            name: spec.name.clone(),
            owner: m.owner.clone(),
            kind: match spec.kind {
                MatterKind::Immediate => "immediate",
                MatterKind::Promised { .. } => "promised",
            },
            deadline: m.deadline.clone(),
            overdue: open && deadline.is_some_and(|d| d < today),
        });
        for mat in &spec.materials {
            // Whom the material is about: the applicant, or the party the case gives in
            // the material's role (none given: only the paper will do).
            let about = match &mat.about {
                None => Some((case.applicant_hmac.as_str(), case.applicant_kind.as_str())),
                Some(role) => case
                    .parties
                    .iter()
                    .find(|p| &p.role == role)
                    .map(|p| (p.subject_hmac.as_str(), p.subject_kind.as_str())),
            };
            let mut resolution = match (&mat.source, about) {
                (MaterialSource::Paper, _) | (_, None) => Resolution::Collect,
                // One lookup per holder and type, however many matters list it.
                (MaterialSource::License(t), Some((hmac, _))) => {
                    let key = (hmac.to_owned(), t.to_string());
                    match found.get(&key) {
                        Some(r) => r.clone(),
                        None => {
                            let r = store
                                .licenses_of_holder(hmac, Some(t.as_str()), 50)
                                .await?
                                .into_iter()
                                .find(|l| usable(l, today))
                                .map_or(Resolution::Collect, |l| Resolution::License {
                                    license_id: l.id,
                                });
                            found.insert(key, r.clone());
                            r
                        }
                    }
                }
                // Data stands in only when the service is keyed by the subject's kind of
                // identifier: a person-keyed register cannot vouch for an enterprise
                // (purpose binding would refuse the query anyway).
                (MaterialSource::Service(s), Some((_, kind))) => match catalog.services.get(s) {
                    Some(svc) if crate::vault::kind_name(svc.subject) == kind => Resolution::Data {
                        service: s.to_string(),
                    },
                    _ => Resolution::Collect,
                },
            };
            if let (Resolution::Collect, Some(days)) = (&resolution, mat.deferrable_days) {
                resolution = Resolution::Deferred {
                    due: cal.add_working_days(accepted_on, days)?,
                };
            }
            materials.push(MaterialView {
                matter: m.matter.clone(),
                name: mat.name.clone(),
                about: mat.about.clone(),
                resolution,
            });
        }
    }
    let papers_avoided = materials
        .iter()
        .filter(|m| {
            matches!(
                m.resolution,
                Resolution::License { .. } | Resolution::Data { .. }
            )
        })
        .count();
    let events = store
        .case_events(&case.id)
        .await?
        .into_iter()
        .map(|e: CaseEvent| EventView {
            at: chrono::DateTime::from_timestamp_micros(e.at_us).map(|t| t.to_rfc3339()),
            event: e.event,
            by_dept: e.by_dept,
            by_system: e.by_system,
            operator: e.operator,
            note: e.note,
        })
        .collect();
    let evaluation = store
        .case_evaluation(&case.id)
        .await?
        .map(|e: Evaluation| EvaluationView {
            score: e.score,
            comment: e.comment,
        });
    let parties = case
        .parties
        .iter()
        .map(|p| PartyView {
            role: p.role.clone(),
            kind: p.subject_kind.clone(),
        })
        .collect();
    Ok(CaseView {
        parties,
        overdue: matter_views.iter().any(|m| m.overdue),
        id: case.id,
        status: case.status,
        applicant_kind: case.applicant_kind,
        site_dept: case.site_dept,
        site_system: case.site_system,
        operator: case.operator,
        accepted_on: case.accepted_on,
        matters: matter_views,
        materials,
        papers_avoided,
        events,
        evaluation,
    })
}

/// A stored license that can stand in for its paper today: valid and within its dates.
fn usable(l: &paotui_repository::StoredLicense, today: NaiveDate) -> bool {
    let (Some(status), Ok(from)) = (Status::parse(&l.status), date(&l.valid_from)) else {
        return false;
    };
    let until = l.valid_until.as_deref().and_then(|u| date(u).ok());
    licenses::effective_status(status, from, until, today) == "valid"
}

/// What purpose binding found for a read: the matters of the case that grant it, or why
/// the case does not.
pub type Bound<'a> = std::result::Result<Vec<purpose::Grant<'a>>, String>;

/// Purpose binding at the edge: loads case `case_id` and judges the request with
/// [`purpose::bind`], recording the case (and the matter, when one is named) in the audit
/// entry. The outcome goes to the policies as the `binding` context, which decide.
pub async fn bind<'a>(
    app: &'a crate::state::AppState,
    scope: &crate::audit::AuditScope,
    caller: &paotui_certs::DeptCode,
    case_id: &str,
    matter: Option<&MatterCode>,
    subject_hmac: &str,
    want: purpose::Want<'_>,
) -> Result<Bound<'a>> {
    scope.update(|c| {
        c.case_id = Some(case_id.to_owned());
        c.matter = matter.map(ToString::to_string);
    });
    let Some((case, matters)) = app.store.case(case_id).await? else {
        return Ok(Err(format!("there is no case {case_id}")));
    };
    let facts = purpose::CaseFacts {
        id: &case.id,
        status: &case.status,
        applicant_hmac: &case.applicant_hmac,
        site_dept: &case.site_dept,
        matters: matters
            .iter()
            .map(|m| purpose::CaseMatterFacts {
                matter: &m.matter,
                owner: &m.owner,
            })
            .collect(),
        parties: case
            .parties
            .iter()
            .map(|p| purpose::CasePartyFacts {
                role: &p.role,
                subject_hmac: &p.subject_hmac,
            })
            .collect(),
    };
    let req = purpose::Request {
        caller_dept: caller,
        subject_hmac,
        matter,
        want,
    };
    Ok(purpose::bind(&app.catalog, &facts, &req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_events_follow_the_lifecycle() {
        assert_eq!(next_status("accepted", "supplemented"), Ok("supplemented"));
        assert_eq!(next_status("supplemented", "approved"), Ok("approved"));
        assert_eq!(next_status("accepted", "approved"), Ok("approved"));
        assert_eq!(next_status("approved", "completed"), Ok("completed"));
        assert_eq!(next_status("approved", "rejected"), Ok("rejected"));
        assert!(next_status("accepted", "completed").is_err());
        assert!(next_status("approved", "supplemented").is_err());
        assert!(
            next_status("rejected", "completed")
                .unwrap_err()
                .contains("closed")
        );
        assert!(
            next_status("completed", "rejected")
                .unwrap_err()
                .contains("closed")
        );
        assert!(
            next_status("accepted", "archived")
                .unwrap_err()
                .contains("unknown event")
        );
    }
}
