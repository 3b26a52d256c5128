//! The access decision for a data query, and the field plan it yields.
//!
//! [`AccessPolicy`] is the seam: the gateway decides with Cedar ([`crate::cedar::Policies`]);
//! [`CatalogAllowList`], the catalog's `consumers` / `personal_grants` lists read directly,
//! is the reference the Cedar policies are tested equal to.

use paotui_certs::SystemIdentity;
use serde::Serialize;

use crate::catalog::{Sensitivity, Service};
pub use crate::cedar::Binding;
use crate::mask::Mask;
use crate::{Error, Result};

/// One field that will leave, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedField {
    pub name: String,
    /// `None`: in clear. `Some(mask)`: masked before it leaves.
    pub mask: Option<Mask>,
}

/// Which requested fields leave (and how) and which are withheld.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FieldPlan {
    pub fields: Vec<PlannedField>,
    pub withheld: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Permit(FieldPlan),
    Deny(String),
}

/// Resolves the requested field names against the service: `None` means the default set.
/// Unknown names are bad input (an error), not a policy matter.
pub fn requested_fields(service: &Service, requested: Option<&[String]>) -> Result<Vec<String>> {
    let Some(req) = requested else {
        return Ok(service.default_fields.clone());
    };
    if req.is_empty() {
        return Err(Error::InvalidParam(
            "fields must not be empty (omit it for the default set)".into(),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(req.len());
    for f in req {
        if service.field(f).is_none() {
            return Err(Error::InvalidParam(format!(
                "unknown field {f:?} for service {}",
                service.id
            )));
        }
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    Ok(out)
}

pub trait AccessPolicy: Send + Sync {
    /// Decides whether `caller` may query `service` for `fields` (already resolved),
    /// given what purpose binding found.
    fn decide_query(
        &self,
        caller: &SystemIdentity,
        service: &Service,
        fields: &[String],
        binding: Binding,
    ) -> Decision;
}

/// The catalog's allow lists read directly (the reference for the shipped Cedar policies).
#[derive(Debug, Clone, Copy, Default)]
pub struct CatalogAllowList;

impl AccessPolicy for CatalogAllowList {
    fn decide_query(
        &self,
        caller: &SystemIdentity,
        service: &Service,
        fields: &[String],
        binding: Binding,
    ) -> Decision {
        if binding.required && !binding.granted {
            return Decision::Deny(format!("a query of {} needs its case", service.id));
        }
        let owner = caller.dept == service.owner;
        if !owner && !service.consumers.contains(&caller.dept) {
            return Decision::Deny(format!(
                "department {} is not a consumer of service {}",
                caller.dept, service.id
            ));
        }
        let clear_personal = owner || service.personal_grants.contains(&caller.dept);
        let mut plan = FieldPlan::default();
        for name in fields {
            let Some(spec) = service.field(name) else {
                plan.withheld.push(name.clone());
                continue;
            };
            match spec.sensitivity {
                Sensitivity::Public | Sensitivity::Internal => plan.fields.push(PlannedField {
                    name: name.clone(),
                    mask: None,
                }),
                Sensitivity::Personal => plan.fields.push(PlannedField {
                    name: name.clone(),
                    mask: if clear_personal {
                        None
                    } else {
                        spec.mask.or(Some(Mask::Full))
                    },
                }),
                // Secret fields need an explicit policy grant, which the allow list cannot give.
                Sensitivity::Secret if owner => plan.fields.push(PlannedField {
                    name: name.clone(),
                    mask: None,
                }),
                Sensitivity::Secret => plan.withheld.push(name.clone()),
            }
        }
        permit_plan(plan, caller, service)
    }
}

/// A permitted query with its field plan, or a denial when no requested field may leave.
pub fn permit_plan(plan: FieldPlan, caller: &SystemIdentity, service: &Service) -> Decision {
    if plan.fields.is_empty() {
        return Decision::Deny(format!(
            "none of the requested fields of {} may be released to {}",
            service.id, caller.dept
        ));
    }
    Decision::Permit(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::ids::ServiceId;
    use paotui_certs::{DeptCode, SystemId};

    const CAT: &str = r#"
[[departments]]
code = "GA"
name = "公安"
[[departments]]
code = "RS"
name = "人社"
[[departments]]
code = "MZ"
name = "民政"
[[departments]]
code = "SC"
name = "市场监管"
[[services]]
id = "p"
owner = "GA"
name = "p"
source = "s"
subject = "id_number"
query = "SELECT * FROM person WHERE id_number = :subject"
consumers = ["RS", "MZ"]
personal_grants = ["MZ"]
default_fields = ["name", "gender"]
[[services.fields]]
name = "name"
sensitivity = "personal"
mask = "name"
[[services.fields]]
name = "gender"
sensitivity = "internal"
[[services.fields]]
name = "criminal_record"
sensitivity = "secret"
"#;

    fn caller(d: &str) -> SystemIdentity {
        SystemIdentity {
            dept: DeptCode::parse(d).unwrap(),
            system: SystemId::parse("s1").unwrap(),
            serial: "01".into(),
        }
    }

    const OPEN: Binding = Binding {
        required: false,
        granted: false,
    };

    #[test]
    fn allow_list_masks_and_withholds() {
        let cat = Catalog::parse("c", CAT).unwrap();
        let s = &cat.services[&ServiceId::parse("p").unwrap()];
        let all = vec![
            "name".to_string(),
            "gender".into(),
            "criminal_record".into(),
        ];
        match CatalogAllowList.decide_query(&caller("RS"), s, &all, OPEN) {
            Decision::Permit(p) => {
                assert_eq!(
                    p.fields[0],
                    PlannedField {
                        name: "name".into(),
                        mask: Some(Mask::Name)
                    }
                );
                assert_eq!(p.fields[1].mask, None);
                assert_eq!(p.withheld, vec!["criminal_record"]);
            }
            d => panic!("{d:?}"),
        }
        match CatalogAllowList.decide_query(&caller("MZ"), s, &all, OPEN) {
            Decision::Permit(p) => assert_eq!(p.fields[0].mask, None),
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            CatalogAllowList.decide_query(&caller("SC"), s, &all, OPEN),
            Decision::Deny(_)
        ));
        assert!(matches!(
            CatalogAllowList.decide_query(&caller("RS"), s, &["criminal_record".into()], OPEN),
            Decision::Deny(_)
        ));
        assert_eq!(requested_fields(s, None).unwrap(), vec!["name", "gender"]);
        assert!(requested_fields(s, Some(&["nope".into()])).is_err());
        assert!(requested_fields(s, Some(&[])).is_err());
    }
}
