//! Purpose binding (目的绑定): data about a person or business leaves only for a real case.
//!
//! A data query or a license fetch names a case. It is permitted only if the case exists
//! and is open, the subject is the case's applicant (or a party the case gives in a role
//! the matter names, e.g. an enterprise's legal representative), the caller's department
//! stands in the right relation to one of the case's matters, and that matter lists the
//! service (or license type) asked for. After completion or rejection, access ends.
//!
//! The decision is a pure function of the case (as stored) and the request, so it is
//! tested exhaustively here and the gateway only loads the case and calls it.

use paotui_certs::DeptCode;

use crate::catalog::Catalog;
use crate::ids::ServiceId;
use crate::licenses::TypeCode;
use crate::matters::{Matter, MatterCode};

/// The case statuses after which nothing more may be read for it.
pub const FINAL_STATUSES: [&str; 2] = ["completed", "rejected"];

/// One matter of a stored case: its code and handling department.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseMatterFacts<'a> {
    pub matter: &'a str,
    pub owner: &'a str,
}

/// A party of a stored case: its role and hashed identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasePartyFacts<'a> {
    pub role: &'a str,
    pub subject_hmac: &'a str,
}

/// What the store knows of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFacts<'a> {
    pub id: &'a str,
    pub status: &'a str,
    pub applicant_hmac: &'a str,
    /// The department whose window accepted it.
    pub site_dept: &'a str,
    pub matters: Vec<CaseMatterFacts<'a>>,
    pub parties: Vec<CasePartyFacts<'a>>,
}

/// What the request wants to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want<'a> {
    /// A data-service query: only the handling department of a matter listing the
    /// service may ask (the resolver promised it the data instead of a paper copy).
    Service(&'a ServiceId),
    /// A license fetch or listing: the accepting window or a handling department; which
    /// types are released is decided from the matters this returns.
    Licenses,
}

/// The request, with its subject already canonical and hashed.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub caller_dept: &'a DeptCode,
    pub subject_hmac: &'a str,
    /// Narrows the binding to one matter of the case.
    pub matter: Option<&'a MatterCode>,
    pub want: Want<'a>,
}

/// A matter of the case a request may act under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant<'c> {
    pub matter: &'c Matter,
    /// For [`Want::Licenses`]: the license types of the matter's materials about the
    /// subject (the applicant's, or those about the party's role); empty for a query.
    pub license_types: Vec<&'c TypeCode>,
}

/// Decides a request against its case. `Ok` holds the case's matters the request may act
/// under (never empty for [`Want::Service`]); `Err` the reason it is refused.
pub fn bind<'c>(
    catalog: &'c Catalog,
    case: &CaseFacts<'_>,
    req: &Request<'_>,
) -> Result<Vec<Grant<'c>>, String> {
    let id = case.id;
    if FINAL_STATUSES.contains(&case.status) {
        return Err(format!(
            "case {id} is {}; access for it has ended",
            case.status
        ));
    }
    let applicant = case.applicant_hmac == req.subject_hmac;
    // The roles the subject has in the case, when it is not the applicant.
    let roles: Vec<&str> = case
        .parties
        .iter()
        .filter(|p| p.subject_hmac == req.subject_hmac)
        .map(|p| p.role)
        .collect();
    if !applicant && roles.is_empty() {
        return Err(format!(
            "the subject is not the applicant of case {id} nor a party it names"
        ));
    }
    if let Some(want) = req.matter
        && !case.matters.iter().any(|m| m.matter == want.as_str())
    {
        return Err(format!("case {id} is not for matter {want}"));
    }
    let dept = req.caller_dept.as_str();
    let site = case.site_dept == dept;
    if !site && !case.matters.iter().any(|m| m.owner == dept) {
        return Err(format!(
            "department {dept} neither accepted nor handles case {id}"
        ));
    }
    let mut out = Vec::new();
    for m in &case.matters {
        if req.matter.is_some_and(|want| want.as_str() != m.matter) {
            continue;
        }
        let handler = m.owner == dept;
        let Some(spec) = MatterCode::parse(m.matter)
            .ok()
            .and_then(|c| catalog.matters.get(&c))
        else {
            // A matter dropped from the catalog since the case was opened grants nothing.
            continue;
        };
        // A party is read about only under a matter that names its role, and data only
        // as a material about the subject (the applicant's, or the party's) lists it.
        let about = applicant || roles.iter().any(|r| spec.party(r).is_some());
        let fits = about
            && match req.want {
                Want::Licenses => site || handler,
                Want::Service(s) => handler && spec.lists_service_for(s, applicant, &roles),
            };
        if fits {
            out.push(Grant {
                matter: spec,
                license_types: match req.want {
                    Want::Licenses => spec.license_types_for(applicant, &roles),
                    Want::Service(_) => Vec::new(),
                },
            });
        }
    }
    if let Want::Service(s) = req.want
        && out.is_empty()
    {
        return Err(if applicant {
            format!("no matter of case {id} handled by {dept} lists service {s}")
        } else {
            format!(
                "no matter of case {id} handled by {dept} lists service {s} for the \
                 subject's role ({})",
                roles.join(", ")
            )
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::catalog::demo_catalog as catalog;

    fn dept(d: &str) -> DeptCode {
        DeptCode::parse(d).unwrap()
    }

    fn case<'a>(status: &'a str, matters: &[(&'a str, &'a str)]) -> CaseFacts<'a> {
        CaseFacts {
            id: "CASE-1",
            status,
            applicant_hmac: "applicant",
            site_dept: "ZW",
            matters: matters
                .iter()
                .map(|(matter, owner)| CaseMatterFacts { matter, owner })
                .collect(),
            parties: vec![],
        }
    }

    const GTGSH: (&str, &str) = ("SC-GTGSH-SL", "SC");

    /// Callers × wants × case states, each cell asserted (个体工商户设立登记 lists the
    /// population and property services; the window ZW accepted it, SC handles it).
    #[test]
    fn matrix() {
        let cat = catalog();
        let person = ServiceId::parse("population.person").unwrap();
        let property = ServiceId::parse("property.by_owner").unwrap();
        let social = ServiceId::parse("social.insurance").unwrap();
        let cases = [
            ("accepted", true),
            ("supplemented", true),
            ("approved", true),
            ("completed", false),
            ("rejected", false),
        ];
        for (status, open) in cases {
            let c = case(status, &[GTGSH]);
            for (caller, want, expect) in [
                // The handler may query what the matter lists, nothing else.
                ("SC", Want::Service(&person), true),
                ("SC", Want::Service(&property), true),
                ("SC", Want::Service(&social), false),
                // The window accepted the case but does not handle it: no data queries.
                ("ZW", Want::Service(&person), false),
                ("ZW", Want::Licenses, true),
                ("SC", Want::Licenses, true),
                // Unrelated departments get nothing.
                ("RS", Want::Service(&person), false),
                ("RS", Want::Licenses, false),
                ("GA", Want::Service(&person), false),
            ] {
                let d = dept(caller);
                let req = Request {
                    caller_dept: &d,
                    subject_hmac: "applicant",
                    matter: None,
                    want,
                };
                let got = bind(&cat, &c, &req);
                assert_eq!(
                    got.is_ok(),
                    open && expect,
                    "{status} {caller} {want:?}: {got:?}"
                );
                // Someone else's data is never released, whatever the case state.
                let other = Request {
                    subject_hmac: "someone-else",
                    ..req
                };
                let got = bind(&cat, &c, &other);
                assert!(got.is_err(), "{status} {caller} {want:?}");
            }
        }
        // The reasons say what is wrong.
        let d = dept("SC");
        let req = Request {
            caller_dept: &d,
            subject_hmac: "applicant",
            matter: None,
            want: Want::Service(&social),
        };
        let e = bind(&cat, &case("accepted", &[GTGSH]), &req).unwrap_err();
        assert!(e.contains("lists service social.insurance"), "{e}");
        let e = bind(&cat, &case("completed", &[GTGSH]), &req).unwrap_err();
        assert!(e.contains("has ended"), "{e}");
    }

    /// 有限责任公司设立登记 names the legal representative: SC may read the person's data
    /// for the enterprise's case; a person in no role, or a role the matter does not
    /// name, gets nothing.
    #[test]
    fn a_party_the_matter_names_is_read_for_the_case() {
        let cat = catalog();
        let person = ServiceId::parse("population.person").unwrap();
        let sc = dept("SC");
        let mut c = case("accepted", &[("SC-QY-SL", "SC")]);
        c.parties = vec![
            CasePartyFacts {
                role: "legal_rep",
                subject_hmac: "rep",
            },
            CasePartyFacts {
                role: "other_parent",
                subject_hmac: "parent",
            },
        ];
        let req = |subject| Request {
            caller_dept: &sc,
            subject_hmac: subject,
            matter: None,
            want: Want::Service(&person),
        };
        assert_eq!(bind(&cat, &c, &req("rep")).unwrap().len(), 1);
        let e = bind(&cat, &c, &req("parent")).unwrap_err();
        assert!(e.contains("for the subject's role (other_parent)"), "{e}");
        // The representative's identity is a material of the matter; the premises
        // (住所使用证明) are the applicant's, not the representative's.
        let property = ServiceId::parse("property.by_owner").unwrap();
        let premises = Request {
            want: Want::Service(&property),
            ..req("rep")
        };
        let e = bind(&cat, &c, &premises).unwrap_err();
        assert!(e.contains("for the subject's role (legal_rep)"), "{e}");
        let premises = Request {
            subject_hmac: "applicant",
            ..premises
        };
        assert_eq!(bind(&cat, &c, &premises).unwrap().len(), 1);
        let e = bind(&cat, &c, &req("stranger")).unwrap_err();
        assert!(
            e.contains("not the applicant of case CASE-1 nor a party"),
            "{e}"
        );
        c.status = "completed";
        assert!(bind(&cat, &c, &req("rep")).is_err());
    }

    #[test]
    fn a_named_matter_narrows_the_binding() {
        let cat = catalog();
        let person = ServiceId::parse("population.person").unwrap();
        // 并联: 个体工商户设立登记 (SC) + 社保卡申领 (RS) in one case.
        let c = case("accepted", &[GTGSH, ("RS-SBK-SL", "RS")]);
        let rs = dept("RS");
        let mut req = Request {
            caller_dept: &rs,
            subject_hmac: "applicant",
            matter: None,
            want: Want::Service(&person),
        };
        let got = bind(&cat, &c, &req).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].matter.code.as_str(), "RS-SBK-SL");
        let sc_matter = MatterCode::parse("SC-GTGSH-SL").unwrap();
        req.matter = Some(&sc_matter);
        assert!(
            bind(&cat, &c, &req).is_err(),
            "RS does not handle the SC matter"
        );
        let other = MatterCode::parse("GA-XSE-LH").unwrap();
        req.matter = Some(&other);
        let e = bind(&cat, &c, &req).unwrap_err();
        assert!(e.contains("is not for matter GA-XSE-LH"), "{e}");
    }

    fn statuses() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "accepted",
            "supplemented",
            "approved",
            "completed",
            "rejected",
        ])
    }

    proptest! {
        /// No request is permitted without an open case of its subject, a matter of that
        /// case handled (or, for licenses, accepted) by the caller, and — for data — a
        /// matter listing the service.
        #[test]
        fn nothing_leaves_without_an_open_matching_case(
            status in statuses(),
            picks in prop::collection::vec((0usize..64, 0usize..8), 1..4),
            site in 0usize..8,
            caller in 0usize..8,
            service in 0usize..4,
            subject in 0usize..3,
            party_role in prop::sample::select(vec!["legal_rep", "other_parent", "nobody"]),
            licenses in any::<bool>(),
            narrow in prop::option::of(0usize..64),
        ) {
            let cat = catalog();
            let codes: Vec<&MatterCode> = cat.matters.keys().collect();
            let depts: Vec<&DeptCode> = cat.departments.keys().collect();
            let services: Vec<&ServiceId> = cat.services.keys().collect();
            // Owners as stored: usually the catalog's, sometimes another department
            // (a stale or tampered row must not widen access).
            let mut matters: Vec<(String, String)> = picks
                .iter()
                .map(|(m, o)| {
                    let spec = &cat.matters[codes[m % codes.len()]];
                    let owner = if *o == 0 { depts[o % depts.len()].to_string() } else { spec.owner.to_string() };
                    (spec.code.to_string(), owner)
                })
                .collect();
            // A case holds each matter once (the store's key is case and matter): two
            // picks of one matter with different owners are not a case that can exist.
            let mut seen = std::collections::HashSet::new();
            matters.retain(|(code, _)| seen.insert(code.clone()));
            let facts = CaseFacts {
                id: "CASE-P",
                status,
                applicant_hmac: "applicant",
                site_dept: depts[site % depts.len()].as_str(),
                matters: matters
                    .iter()
                    .map(|(matter, owner)| CaseMatterFacts { matter, owner })
                    .collect(),
                parties: vec![CasePartyFacts { role: party_role, subject_hmac: "party" }],
            };
            let caller = depts[caller % depts.len()];
            let svc = services[service % services.len()];
            let narrow = narrow.map(|n| codes[n % codes.len()]);
            let req = Request {
                caller_dept: caller,
                subject_hmac: ["applicant", "party", "other"][subject],
                matter: narrow,
                want: if licenses { Want::Licenses } else { Want::Service(svc) },
            };
            if let Ok(granted) = bind(&cat, &facts, &req) {
                prop_assert!(!FINAL_STATUSES.contains(&status));
                prop_assert!(subject < 2, "only the applicant or a party");
                for grant in &granted {
                    let g = grant.matter;
                    // A party only under a matter that names its role.
                    if subject == 1 {
                        prop_assert!(g.party(party_role).is_some());
                    }
                    let stored = facts.matters.iter().find(|m| m.matter == g.code.as_str());
                    prop_assert!(stored.is_some());
                    let stored = stored.unwrap();
                    if let Some(n) = narrow {
                        prop_assert_eq!(&g.code, n);
                    }
                    // What is released is what a material about this subject lists.
                    let (applicant, roles) = if subject == 0 { (true, vec![]) } else { (false, vec![party_role]) };
                    if licenses {
                        prop_assert!(stored.owner == caller.as_str() || facts.site_dept == caller.as_str());
                        let about = g.license_types_for(applicant, &roles);
                        prop_assert!(grant.license_types.iter().all(|t| about.contains(t)));
                    } else {
                        prop_assert_eq!(stored.owner, caller.as_str());
                        prop_assert!(g.lists_service_for(svc, applicant, &roles));
                        prop_assert!(grant.license_types.is_empty());
                    }
                }
                if !licenses {
                    prop_assert!(!granted.is_empty());
                }
            }
        }
    }
}
