//! Cedar policies: the `.cedar` files and schema that decide API actions.
//!
//! A policy directory holds one schema (`*.cedarschema`, see `policies/cedar/`) and any
//! number of `.cedar` files. [`Policies::load_dir`] parses every file, gives each policy
//! the id of its `@id("…")` annotation (or `file:line`), and validates the whole set
//! against the schema in strict mode; every problem names its file and line, so
//! `paotui policy check DIR` can print them all.
//!
//! Entities are built per decision, and only those a decision can reach: the calling
//! system, its department and role, and the resource (a service, field, license type,
//! matter, case or the audit log) with what its attributes point to. Building them from
//! the catalog per decision keeps no second copy of the catalog to drift. A set
//! remembers the decisions it has taken, keyed by everything they were built from
//! (`policies/src/memo.rs`), so a caller's repeated requests are decided once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, Request, ResourceConstraint,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use paotui_certs::{DeptCode, SystemIdentity};

use crate::access::{AccessPolicy, Decision, FieldPlan, PlannedField};
use crate::catalog::{Sensitivity, Service};
use crate::licenses::LicenseType;
use crate::mask::Mask;
use crate::matters::Matter;
use crate::memo::{Key, Memo};
use crate::{Error, Result};

/// Context values of a decision are built with this (re-exported so callers need not
/// depend on cedar-policy themselves).
pub use cedar_policy::RestrictedExpression as ContextValue;

/// Who asks: the calling system (proven by its certificate) and, when the system names
/// one, the member of staff at it who acts (the `Paotui-Operator` header: asserted by the
/// system, so policies may hold it to naming one, or refuse a named one).
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub system: &'a SystemIdentity,
    pub operator: Option<&'a str>,
}

impl<'a> From<&'a SystemIdentity> for Who<'a> {
    fn from(system: &'a SystemIdentity) -> Self {
        Who {
            system,
            operator: None,
        }
    }
}

/// The principal and, when named, the operator entity of a request.
#[derive(Debug, Clone)]
struct Asker {
    principal: EntityUid,
    operator: Option<EntityUid>,
}

/// The role auditor departments (`[audit] auditors`) are members of.
pub const AUDITOR_ROLE: &str = "auditor";
/// The role of departments running a citizen-facing portal (`[audit] portals`), which
/// may ask on a citizen's behalf who read their data.
pub const PORTAL_ROLE: &str = "portal";

/// The schema, as shipped in `policies/cedar/`.
pub const SCHEMA: &str = include_str!("../cedar/paotui.cedarschema");

/// The default policy files, as shipped in `policies/cedar/` (used when the config names
/// no policy directory, and written into the demo world).
pub const SHIPPED: [(&str, &str); 5] = [
    ("audit.cedar", include_str!("../cedar/audit.cedar")),
    ("cases.cedar", include_str!("../cedar/cases.cedar")),
    ("data.cedar", include_str!("../cedar/data.cedar")),
    ("gateway.cedar", include_str!("../cedar/gateway.cedar")),
    ("licenses.cedar", include_str!("../cedar/licenses.cedar")),
];

/// A validated policy set with its schema.
pub struct Policies {
    schema: Schema,
    set: PolicySet,
    /// Where each policy came from, for messages: id → `file:line`.
    origin: HashMap<String, String>,
    auditors: BTreeSet<DeptCode>,
    /// Departments in `Role::"portal"` ([`PORTAL_ROLE`]).
    portals: BTreeSet<DeptCode>,
    authorizer: Authorizer,
    /// Per action, the policies whose scope can match it: a request is evaluated against
    /// these only, which decides exactly as the whole set (a policy whose scope excludes
    /// the request is never satisfied and never errors) at a fraction of the cost when
    /// the set is large.
    by_action: HashMap<Action, Slice>,
    /// Decisions this set has taken, by everything they were computed from (see
    /// [`crate::memo`]): a governed query repeats the same query decision and field plan
    /// for every request of a caller. Taking them afresh each time was a third of the
    /// gateway's CPU per governed query (benches/BENCHMARKS.md, 2026-12-05, night).
    verdicts: Memo<Verdict>,
    plans: Memo<FieldPlan>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("policies", &self.origin.len())
            .finish_non_exhaustive()
    }
}

/// Purpose binding as the policies see it (computed from the case store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// Whether this deployment requires a case for the read.
    pub required: bool,
    /// Whether the named case grants it.
    pub granted: bool,
}

/// What one decision came to, and which policies determined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Ids of the determining policies: the permits that allowed it, or the forbids
    /// that denied it (empty when nothing permitted: deny by default), sorted.
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (they are skipped, which can only deny).
    pub errors: Vec<String>,
}

impl Verdict {
    /// A one-line reason for a denial.
    pub fn reason(&self, what: &str) -> String {
        if self.policies.is_empty() {
            format!("no policy permits {what}")
        } else {
            format!("{what} is forbidden by policy {}", self.policies.join(", "))
        }
    }
}

/// A resource a decision is about, with the catalog entry it stands for.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    Service(&'a Service),
    Field(&'a Service, &'a str),
    LicenseType(&'a LicenseType),
    Matter(&'a Matter),
    Case(&'a CaseEntity<'a>),
    AuditLog,
    Gateway,
}

/// Every action of the schema: what the gateway asks the policies about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Query,
    ReadField,
    ReadFieldMasked,
    FetchLicense,
    IssueLicense,
    ChangeLicenseStatus,
    ReadLicenseHistory,
    OpenCase,
    AdvanceCase,
    ReadCase,
    EvaluateCase,
    ReadAudit,
    RunSql,
    ReadKeys,
    ListServices,
    VerifyLicense,
    ImportLicenses,
    ListMatters,
    ReadSubjectAccesses,
    ReadStats,
    ManageAlerts,
}

impl Action {
    pub const ALL: [Action; 21] = [
        Action::Query,
        Action::ReadField,
        Action::ReadFieldMasked,
        Action::FetchLicense,
        Action::IssueLicense,
        Action::ChangeLicenseStatus,
        Action::ReadLicenseHistory,
        Action::OpenCase,
        Action::AdvanceCase,
        Action::ReadCase,
        Action::EvaluateCase,
        Action::ReadAudit,
        Action::RunSql,
        Action::ReadKeys,
        Action::ListServices,
        Action::VerifyLicense,
        Action::ImportLicenses,
        Action::ListMatters,
        Action::ReadSubjectAccesses,
        Action::ReadStats,
        Action::ManageAlerts,
    ];

    /// The action's id in the schema (`Paotui::Action::"…"`).
    pub const fn name(self) -> &'static str {
        match self {
            Action::Query => "query",
            Action::ReadField => "read_field",
            Action::ReadFieldMasked => "read_field_masked",
            Action::FetchLicense => "fetch_license",
            Action::IssueLicense => "issue_license",
            Action::ChangeLicenseStatus => "change_license_status",
            Action::ReadLicenseHistory => "read_license_history",
            Action::OpenCase => "open_case",
            Action::AdvanceCase => "advance_case",
            Action::ReadCase => "read_case",
            Action::EvaluateCase => "evaluate_case",
            Action::ReadAudit => "read_audit",
            Action::RunSql => "run_sql",
            Action::ReadKeys => "read_keys",
            Action::ListServices => "list_services",
            Action::VerifyLicense => "verify_license",
            Action::ImportLicenses => "import_licenses",
            Action::ListMatters => "list_matters",
            Action::ReadSubjectAccesses => "read_subject_accesses",
            Action::ReadStats => "read_stats",
            Action::ManageAlerts => "manage_alerts",
        }
    }
}

/// A stored case, as an entity.
#[derive(Debug, Clone)]
pub struct CaseEntity<'a> {
    pub id: &'a str,
    pub status: &'a str,
    pub site: &'a str,
    pub handlers: Vec<&'a str>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn policy_error(file: &str, line: usize, message: impl Into<String>) -> Error {
    Error::Policy(format!("{file}:{line}: {}", message.into()))
}

/// The first labelled location of a diagnostic, as a line in `text`.
fn diagnostic_line(d: &dyn Diagnostic, text: &str) -> usize {
    d.labels()
        .and_then(|mut l| l.next())
        .map_or(1, |l| line_of(text, l.offset()))
}

fn uid(ty: &str, id: &str) -> Result<EntityUid> {
    let ty = EntityTypeName::from_str(ty)
        .map_err(|e| Error::Policy(format!("entity type {ty}: {e}")))?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

fn ent(
    uid: EntityUid,
    attrs: impl IntoIterator<Item = (&'static str, RestrictedExpression)>,
    parents: impl IntoIterator<Item = EntityUid>,
) -> Result<Entity> {
    Entity::new(
        uid,
        attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        parents.into_iter().collect::<HashSet<_>>(),
    )
    .map_err(|e| Error::Policy(format!("entity: {e}")))
}

fn dept_uid(d: &str) -> Result<EntityUid> {
    uid("Paotui::Department", d)
}

fn dept_set<'a>(ds: impl IntoIterator<Item = &'a str>) -> Result<RestrictedExpression> {
    Ok(RestrictedExpression::new_set(
        ds.into_iter()
            .map(|d| dept_uid(d).map(RestrictedExpression::new_entity_uid))
            .collect::<Result<Vec<_>>>()?,
    ))
}

fn sensitivity_name(s: Sensitivity) -> &'static str {
    match s {
        Sensitivity::Public => "public",
        Sensitivity::Internal => "internal",
        Sensitivity::Personal => "personal",
        Sensitivity::Secret => "secret",
    }
}

impl Policies {
    /// Loads and validates a policy directory: one `*.cedarschema`, every `*.cedar`.
    pub fn load_dir(dir: &Path, auditors: BTreeSet<DeptCode>) -> Result<Self> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| Error::Policy(format!("{}: {e}", p.display())))
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::Policy(format!("{}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        let schemas: Vec<&PathBuf> = entries
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "cedarschema"))
            .collect();
        let [schema] = schemas.as_slice() else {
            return Err(Error::Policy(format!(
                "{}: expected exactly one .cedarschema file, found {}",
                dir.display(),
                schemas.len()
            )));
        };
        let mut files = Vec::new();
        for p in entries
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        {
            files.push((p.display().to_string(), read(p)?));
        }
        if files.is_empty() {
            return Err(Error::Policy(format!(
                "{}: no .cedar policy files",
                dir.display()
            )));
        }
        Self::from_sources(
            (&schema.display().to_string(), &read(schema)?),
            &files,
            auditors,
        )
    }

    /// The shipped schema and policies.
    pub fn shipped(auditors: BTreeSet<DeptCode>) -> Result<Self> {
        let files: Vec<(String, String)> = SHIPPED
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        Self::from_sources(("paotui.cedarschema", SCHEMA), &files, auditors)
    }

    /// Parses and validates a schema and policy files given as (name, text).
    pub fn from_sources(
        (schema_name, schema_text): (&str, &str),
        files: &[(String, String)],
        auditors: BTreeSet<DeptCode>,
    ) -> Result<Self> {
        let (schema, _warnings) = Schema::from_cedarschema_str(schema_text).map_err(|e| {
            policy_error(schema_name, diagnostic_line(&e, schema_text), e.to_string())
        })?;
        // The gateway asks about every action; a schema without one would fail requests.
        let declared: HashSet<String> = schema
            .actions()
            .map(|a| a.id().unescaped().to_owned())
            .collect();
        let missing: Vec<&str> = Action::ALL
            .iter()
            .map(|a| a.name())
            .filter(|a| !declared.contains(*a))
            .collect();
        if !missing.is_empty() {
            return Err(policy_error(
                schema_name,
                1,
                format!(
                    "the schema does not declare action(s) {} that this gateway decides",
                    missing.join(", ")
                ),
            ));
        }
        // Requests naming an operator carry it as an `Operator` entity.
        if !schema
            .entity_types()
            .any(|t| t.to_string() == "Paotui::Operator")
        {
            return Err(policy_error(
                schema_name,
                1,
                "the schema does not declare entity type Operator, which this gateway \
                 builds for requests naming an operator"
                    .to_owned(),
            ));
        }
        let mut set = PolicySet::new();
        let mut origin = HashMap::new();
        let mut texts = HashMap::new();
        let mut problems = Vec::new();
        for (name, text) in files {
            let parsed = match PolicySet::from_str(text) {
                Ok(p) => p,
                Err(e) => {
                    for err in e.iter() {
                        problems.push(format!("{name}:{}: {err}", diagnostic_line(err, text)));
                    }
                    continue;
                }
            };
            // Policies come back in source order, each starting with its effect keyword.
            let starts: Vec<usize> = text
                .lines()
                .enumerate()
                .filter(|(_, l)| {
                    let t = l.trim_start();
                    t.starts_with("permit") || t.starts_with("forbid")
                })
                .map(|(i, _)| i + 1)
                .collect();
            let mut ordered: Vec<&Policy> = parsed.policies().collect();
            // Default ids are policy0, policy1, … in source order.
            ordered.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            for (n, p) in ordered.into_iter().enumerate() {
                let line = starts.get(n).copied().unwrap_or(1);
                let id = p
                    .annotation("id")
                    .map_or_else(|| format!("{name}:{line}"), str::to_owned);
                if let Some(prev) = origin.get(&id) {
                    problems.push(format!(
                        "{name}:{line}: policy id {id:?} is already used at {prev}"
                    ));
                    continue;
                }
                let renamed: Policy = p.new_id(PolicyId::new(&id));
                if let Err(e) = set.add(renamed) {
                    problems.push(format!("{name}:{line}: {e}"));
                    continue;
                }
                origin.insert(id.clone(), format!("{name}:{line}"));
                texts.insert(id, (name.clone(), text.clone()));
            }
        }
        if problems.is_empty() {
            let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
            for e in result.validation_errors() {
                let id = e.policy_id().to_string();
                let at = match texts.get(&id) {
                    Some((name, text)) => format!("{name}:{}", diagnostic_line(e, text)),
                    None => id.clone(),
                };
                problems.push(format!("{at}: policy {id}: {e}"));
            }
        }
        if !problems.is_empty() {
            let mut msg = String::new();
            for (i, p) in problems.iter().enumerate() {
                if i > 0 {
                    msg.push('\n');
                }
                let _ = write!(msg, "{p}");
            }
            return Err(Error::Policy(msg));
        }
        let by_action = slice_by_action(&schema, &set)?;
        Ok(Policies {
            schema,
            set,
            origin,
            auditors,
            portals: BTreeSet::new(),
            authorizer: Authorizer::new(),
            by_action,
            verdicts: Memo::default(),
            plans: Memo::default(),
        })
    }

    /// Puts `portals` in `Role::"portal"` (`[audit] portals`): departments whose
    /// citizen-facing systems may ask who read a citizen's data.
    pub fn with_portals(mut self, portals: BTreeSet<DeptCode>) -> Self {
        self.portals = portals;
        // Roles are part of every decision: none taken before may be reused.
        self.verdicts = Memo::default();
        self.plans = Memo::default();
        self
    }

    /// How many decisions and field plans are remembered.
    #[cfg(test)]
    fn remembered(&self) -> (usize, usize) {
        (self.verdicts.len(), self.plans.len())
    }

    /// The asker's part of a memo key: what [`Policies::principal`] builds entities from
    /// (roles follow from the department and this set's role lists).
    fn who_key(kind: &str, who: Who<'_>) -> Key {
        let mut k = Key::new(kind);
        k.part(who.system.dept.as_str())
            .part(who.system.system.as_str());
        match who.operator {
            Some(op) => k.part("op").part(op),
            None => k.part("-"),
        };
        k
    }

    /// A service's part of a memo key: every attribute [`Policies::service_entity`] reads.
    fn service_key(k: &mut Key, s: &Service) {
        k.part(s.id.as_str())
            .part(s.owner.as_str())
            .parts(s.consumers.iter().map(DeptCode::as_str))
            .parts(s.personal_grants.iter().map(DeptCode::as_str));
    }

    /// A field's part of a memo key: its name and what its entity and plan read of it
    /// (sensitivity, mask), or that the service has no such field.
    fn field_key(k: &mut Key, s: &Service, name: &str) {
        k.part(name);
        match s.field(name) {
            Some(spec) => k
                .part(sensitivity_name(spec.sensitivity))
                .part(&format!("{:?}", spec.mask)),
            None => k.part("?"),
        };
    }

    /// The memo key of a decision, or `None` for one not remembered: a case's decision
    /// reads its status, which moves, and case ids do not repeat the way callers do.
    fn decision_key(
        who: Who<'_>,
        action: Action,
        resource: &Resource<'_>,
        context: &[(String, RestrictedExpression)],
    ) -> Option<Key> {
        let mut k = Self::who_key("decision", who);
        k.part(action.name());
        match *resource {
            Resource::Service(s) => {
                k.part("service");
                Self::service_key(&mut k, s);
            }
            Resource::Field(s, name) => {
                k.part("field");
                Self::service_key(&mut k, s);
                Self::field_key(&mut k, s, name);
            }
            Resource::LicenseType(t) => {
                k.part("license_type")
                    .part(t.code.as_str())
                    .part(t.issuer.as_str());
            }
            Resource::Matter(m) => {
                k.part("matter")
                    .part(m.code.as_str())
                    .part(m.owner.as_str());
            }
            Resource::AuditLog => {
                k.part("audit_log");
            }
            Resource::Gateway => {
                k.part("gateway");
            }
            Resource::Case(_) => return None,
        }
        // Context values are plain records, strings, booleans and entity ids; their
        // debug form writes all of it.
        k.part(&format!("{context:?}"));
        Some(k)
    }

    /// How many policies the set holds.
    pub fn len(&self) -> usize {
        self.origin.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origin.is_empty()
    }

    /// Where policy `id` was written (`file:line`).
    pub fn origin(&self, id: &str) -> Option<&str> {
        self.origin.get(id).map(String::as_str)
    }

    fn principal(&self, who: Who<'_>, out: &mut Vec<Entity>) -> Result<Asker> {
        let caller = who.system;
        let d = caller.dept.as_str();
        let dept = dept_uid(d)?;
        let mut roles = Vec::new();
        for (name, members) in [(AUDITOR_ROLE, &self.auditors), (PORTAL_ROLE, &self.portals)] {
            if members.contains(&caller.dept) {
                let role = uid("Paotui::Role", name)?;
                out.push(ent(role.clone(), [], [])?);
                roles.push(role);
            }
        }
        out.push(ent(dept.clone(), [], roles)?);
        let system = uid(
            "Paotui::System",
            &format!("{}/{}", caller.dept, caller.system),
        )?;
        out.push(ent(
            system.clone(),
            [(
                "department",
                RestrictedExpression::new_entity_uid(dept.clone()),
            )],
            [dept],
        )?);
        let operator = match who.operator {
            Some(staff) => {
                let u = uid(
                    "Paotui::Operator",
                    &format!("{}/{}/{staff}", caller.dept, caller.system),
                )?;
                out.push(ent(u.clone(), [], [system.clone()])?);
                Some(u)
            }
            None => None,
        };
        Ok(Asker {
            principal: system,
            operator,
        })
    }

    fn service_entity(s: &Service, out: &mut Vec<Entity>) -> Result<EntityUid> {
        let u = uid("Paotui::Service", s.id.as_str())?;
        out.push(ent(
            u.clone(),
            [
                (
                    "owner",
                    RestrictedExpression::new_entity_uid(dept_uid(s.owner.as_str())?),
                ),
                (
                    "consumers",
                    dept_set(s.consumers.iter().map(DeptCode::as_str))?,
                ),
                (
                    "personal_grants",
                    dept_set(s.personal_grants.iter().map(DeptCode::as_str))?,
                ),
            ],
            [],
        )?);
        Ok(u)
    }

    /// An entity whose one attribute is a department (a license type's issuer, a
    /// matter's owner).
    fn dept_attr_entity(
        ty: &str,
        id: &str,
        attr: &'static str,
        dept: &DeptCode,
        out: &mut Vec<Entity>,
    ) -> Result<EntityUid> {
        let u = uid(ty, id)?;
        out.push(ent(
            u.clone(),
            [(
                attr,
                RestrictedExpression::new_entity_uid(dept_uid(dept.as_str())?),
            )],
            [],
        )?);
        Ok(u)
    }

    /// A field of `s` (whose entity is `service`).
    fn field_entity(
        service: &EntityUid,
        s: &Service,
        name: &str,
        out: &mut Vec<Entity>,
    ) -> Result<EntityUid> {
        let spec = s.field(name).ok_or_else(|| {
            Error::InvalidParam(format!("unknown field {name:?} for service {}", s.id))
        })?;
        let u = uid("Paotui::Field", &format!("{}.{name}", s.id))?;
        out.push(ent(
            u.clone(),
            [
                (
                    "service",
                    RestrictedExpression::new_entity_uid(service.clone()),
                ),
                (
                    "sensitivity",
                    RestrictedExpression::new_string(sensitivity_name(spec.sensitivity).to_owned()),
                ),
            ],
            [],
        )?);
        Ok(u)
    }

    fn resource(&self, r: Resource<'_>, out: &mut Vec<Entity>) -> Result<EntityUid> {
        match r {
            Resource::Service(s) => Self::service_entity(s, out),
            Resource::Field(s, name) => {
                let service = Self::service_entity(s, out)?;
                Self::field_entity(&service, s, name, out)
            }
            Resource::LicenseType(t) => Self::dept_attr_entity(
                "Paotui::LicenseType",
                t.code.as_str(),
                "issuer",
                &t.issuer,
                out,
            ),
            Resource::Matter(m) => {
                Self::dept_attr_entity("Paotui::Matter", m.code.as_str(), "owner", &m.owner, out)
            }
            Resource::Case(c) => {
                let u = uid("Paotui::Case", c.id)?;
                let open = !crate::purpose::FINAL_STATUSES.contains(&c.status);
                out.push(ent(
                    u.clone(),
                    [
                        (
                            "status",
                            RestrictedExpression::new_string(c.status.to_owned()),
                        ),
                        ("open", RestrictedExpression::new_bool(open)),
                        (
                            "site",
                            RestrictedExpression::new_entity_uid(dept_uid(c.site)?),
                        ),
                        ("handlers", dept_set(c.handlers.iter().copied())?),
                    ],
                    [],
                )?);
                Ok(u)
            }
            Resource::AuditLog => {
                let u = uid("Paotui::AuditLog", "log")?;
                out.push(ent(u.clone(), [], [])?);
                Ok(u)
            }
            Resource::Gateway => {
                let u = uid("Paotui::Gateway", "paotui")?;
                out.push(ent(u.clone(), [], [])?);
                Ok(u)
            }
        }
    }

    /// Decides `action` by `caller` on `resource`, with `context` pairs.
    pub fn authorize<'a>(
        &self,
        who: impl Into<Who<'a>>,
        action: Action,
        resource: Resource<'_>,
        context: Vec<(String, RestrictedExpression)>,
    ) -> Result<Verdict> {
        let who = who.into();
        let key = Self::decision_key(who, action, &resource, &context);
        if let Some(v) = key.as_ref().and_then(|k| self.verdicts.get(k)) {
            return Ok(v);
        }
        let mut entities = Vec::with_capacity(7);
        let asker = self.principal(who, &mut entities)?;
        let resource = self.resource(resource, &mut entities)?;
        let entities = self.entities(entities)?;
        let verdict = self.decide(&asker, action, resource, context, &entities)?;
        if let Some(k) = key {
            self.verdicts.put(k, verdict.clone());
        }
        Ok(verdict)
    }

    /// The schema requests and entities are checked against: in debug builds (every test)
    /// only. They are built by this module from typed catalog data, so the check catches
    /// a bug here, not bad input; release builds skip its cost on every request.
    fn check_schema(&self) -> Option<&Schema> {
        cfg!(debug_assertions).then_some(&self.schema)
    }

    fn entities(&self, entities: Vec<Entity>) -> Result<Entities> {
        // Departments the attributes point to need not exist as entities: equality and
        // set membership compare ids, and no policy reads a department's attributes.
        Entities::from_entities(entities, self.check_schema())
            .map_err(|e| Error::Policy(format!("entities: {e}")))
    }

    fn decide(
        &self,
        asker: &Asker,
        action: Action,
        resource: EntityUid,
        mut context: Vec<(String, RestrictedExpression)>,
        entities: &Entities,
    ) -> Result<Verdict> {
        if let Some(op) = &asker.operator {
            context.push((
                "operator".to_owned(),
                RestrictedExpression::new_entity_uid(op.clone()),
            ));
        }
        let principal = asker.principal.clone();
        let (set, action) = match self.by_action.get(&action) {
            Some(slice) => (
                slice.by_resource.get(&resource).unwrap_or(&slice.general),
                slice.action.clone(),
            ),
            None => (&self.set, uid("Paotui::Action", action.name())?),
        };
        let context =
            Context::from_pairs(context).map_err(|e| Error::Policy(format!("context: {e}")))?;
        let request = Request::new(principal, action, resource, context, self.check_schema())
            .map_err(|e| Error::Policy(format!("request: {e}")))?;
        let response = self.authorizer.is_authorized(&request, set, entities);
        let d = response.diagnostics();
        // Cedar hands reasons out of a hash set; sorted, the same request gives the
        // same audit entry bytes whichever slice (or the whole set) decided it.
        let mut policies: Vec<String> = d.reason().map(ToString::to_string).collect();
        policies.sort_unstable();
        let mut errors: Vec<String> = d.errors().map(ToString::to_string).collect();
        errors.sort_unstable();
        Ok(Verdict {
            allowed: response.decision() == CedarDecision::Allow,
            policies,
            errors,
        })
    }

    /// The `binding` context member of reads bound to cases.
    pub fn binding_context(b: Binding) -> Vec<(String, RestrictedExpression)> {
        vec![(
            "binding".to_owned(),
            // Two distinct keys: building the record cannot fail.
            RestrictedExpression::new_record([
                (
                    "required".to_owned(),
                    RestrictedExpression::new_bool(b.required),
                ),
                (
                    "granted".to_owned(),
                    RestrictedExpression::new_bool(b.granted),
                ),
            ])
            .unwrap_or_else(|_| RestrictedExpression::new_bool(false)),
        )]
    }

    /// The `event` context member of `advance_case`.
    pub fn event_context(event: &str) -> Vec<(String, RestrictedExpression)> {
        vec![(
            "event".to_owned(),
            RestrictedExpression::new_string(event.to_owned()),
        )]
    }

    /// Whether `caller` may query `service` under `binding`.
    pub fn query<'a>(
        &self,
        who: impl Into<Who<'a>>,
        service: &Service,
        binding: Binding,
    ) -> Result<Verdict> {
        self.authorize(
            who,
            Action::Query,
            Resource::Service(service),
            Self::binding_context(binding),
        )
    }

    /// Which of `fields` leave in clear, masked, or not at all. The caller, the service and
    /// its fields are built as entities once for all the field decisions.
    pub fn field_plan<'a>(
        &self,
        who: impl Into<Who<'a>>,
        service: &Service,
        fields: &[String],
    ) -> Result<FieldPlan> {
        let who = who.into();
        let mut key = Self::who_key("plan", who);
        Self::service_key(&mut key, service);
        key.part(&fields.len().to_string());
        for name in fields {
            Self::field_key(&mut key, service, name);
        }
        if let Some(plan) = self.plans.get(&key) {
            return Ok(plan);
        }
        let plan = self.plan_fields(who, service, fields)?;
        self.plans.put(key, plan.clone());
        Ok(plan)
    }

    fn plan_fields(&self, who: Who<'_>, service: &Service, fields: &[String]) -> Result<FieldPlan> {
        let mut entities = Vec::with_capacity(fields.len() + 5);
        let asker = self.principal(who, &mut entities)?;
        let service_uid = Self::service_entity(service, &mut entities)?;
        let mut known = Vec::with_capacity(fields.len());
        for name in fields {
            match service.field(name) {
                Some(spec) => {
                    let u = Self::field_entity(&service_uid, service, name, &mut entities)?;
                    known.push((name, Some((spec, u))));
                }
                None => known.push((name, None)),
            }
        }
        let entities = self.entities(entities)?;
        let mut plan = FieldPlan::default();
        for (name, field) in known {
            let Some((spec, u)) = field else {
                plan.withheld.push(name.clone());
                continue;
            };
            let may = |action| {
                self.decide(&asker, action, u.clone(), vec![], &entities)
                    .map(|v| v.allowed)
            };
            if may(Action::ReadField)? {
                plan.fields.push(PlannedField {
                    name: name.clone(),
                    mask: None,
                });
            } else if may(Action::ReadFieldMasked)? {
                plan.fields.push(PlannedField {
                    name: name.clone(),
                    mask: spec.mask.or(Some(Mask::Full)),
                });
            } else {
                plan.withheld.push(name.clone());
            }
        }
        Ok(plan)
    }
}

/// The policies that can apply to one action: those whose resource scope is not one
/// entity (`general`), and for each entity some policy names with `resource == …`, the
/// general ones with those.
#[derive(Debug)]
struct Slice {
    /// The action's entity, parsed once.
    action: EntityUid,
    general: PolicySet,
    by_resource: HashMap<EntityUid, PolicySet>,
}

/// The per-action policy subsets (see [`Policies::by_action`]). `action in [..]` naming an
/// action group of the schema may match its members: such a policy is kept for every
/// action, which is always sound; so is keeping `resource in …` / `is …` in `general`.
fn slice_by_action(schema: &Schema, set: &PolicySet) -> Result<HashMap<Action, Slice>> {
    let groups: HashSet<&EntityUid> = schema.action_groups().collect();
    let add = |to: &mut PolicySet, p: &Policy| {
        to.add(p.clone())
            .map_err(|e| Error::Policy(format!("policy slice: {e}")))
    };
    let mut out = HashMap::new();
    for action in Action::ALL {
        let me = uid("Paotui::Action", action.name())?;
        let applies: Vec<&Policy> = set
            .policies()
            .filter(|p| match p.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(a) => a == me,
                ActionConstraint::In(list) => list.iter().any(|a| *a == me || groups.contains(a)),
            })
            .collect();
        let mut slice = Slice {
            action: me,
            general: PolicySet::new(),
            by_resource: HashMap::new(),
        };
        let mut pinned: HashMap<EntityUid, Vec<&Policy>> = HashMap::new();
        for p in &applies {
            match p.resource_constraint() {
                ResourceConstraint::Eq(r) => pinned.entry(r).or_default().push(p),
                _ => add(&mut slice.general, p)?,
            }
        }
        for (r, ps) in pinned {
            let mut s = slice.general.clone();
            for p in ps {
                add(&mut s, p)?;
            }
            slice.by_resource.insert(r, s);
        }
        out.insert(action, slice);
    }
    Ok(out)
}

impl AccessPolicy for Policies {
    fn decide_query(
        &self,
        caller: &SystemIdentity,
        service: &Service,
        fields: &[String],
        binding: Binding,
    ) -> Decision {
        let verdict = match self.query(caller, service, binding) {
            Ok(v) => v,
            Err(e) => return Decision::Deny(format!("policy evaluation failed: {e}")),
        };
        if !verdict.allowed {
            return Decision::Deny(
                verdict.reason(&format!("a query of {} by {}", service.id, caller.dept)),
            );
        }
        match self.field_plan(caller, service, fields) {
            Ok(plan) => crate::access::permit_plan(plan, caller, service),
            Err(e) => Decision::Deny(format!("policy evaluation failed: {e}")),
        }
    }
}

/// `n` distinct, schema-valid policies shaped like real ones (per-department, per-service
/// grants with conditions), for measuring decisions over a large set.
pub fn generated_policies(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let _ = writeln!(
            out,
            "@id(\"generated-{i}\")\npermit (principal in Paotui::Department::\"D{i:04}\", action == Paotui::Action::\"query\", resource == Paotui::Service::\"svc.{i}\")\nwhen {{ context.binding.granted && resource.consumers.contains(principal.department) }};"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::CatalogAllowList;
    use paotui_certs::SystemId;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cedar");

    use crate::catalog::demo_catalog as catalog;

    fn shipped() -> Policies {
        Policies::load_dir(
            Path::new(DIR),
            BTreeSet::from([DeptCode::parse("JC").unwrap()]),
        )
        .unwrap()
    }

    fn caller(d: &str) -> SystemIdentity {
        SystemIdentity {
            dept: DeptCode::parse(d).unwrap(),
            system: SystemId::parse("s1").unwrap(),
            serial: "01".into(),
        }
    }

    fn act(name: &str) -> Action {
        Action::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .unwrap_or_else(|| panic!("no action {name}"))
    }

    /// Every action the gateway can ask about is in the schema, and no schema action is
    /// missing from [`Action`] (a decision on an unknown action would be an error).
    #[test]
    fn actions_match_the_schema() {
        let schema = Schema::from_cedarschema_str(SCHEMA).unwrap().0;
        let mut in_schema: Vec<String> = schema
            .actions()
            .map(|a| a.id().unescaped().to_owned())
            .collect();
        in_schema.sort();
        let mut ours: Vec<String> = Action::ALL.iter().map(|a| a.name().to_owned()).collect();
        ours.sort();
        assert_eq!(in_schema, ours);
    }

    fn schema_text() -> String {
        std::fs::read_to_string(format!("{DIR}/paotui.cedarschema")).unwrap()
    }

    fn load(policy: &str) -> Result<Policies> {
        Policies::from_sources(
            ("paotui.cedarschema", &schema_text()),
            &[("test.cedar".into(), policy.into())],
            BTreeSet::new(),
        )
    }

    /// The operator a request names is an `Operator` entity in its system, carried in
    /// every action's context: a policy can ban one member of staff, or require one.
    #[test]
    fn policies_speak_about_the_operator() {
        let p = load(
            r#"@id("gateway-open")
permit (principal, action == Paotui::Action::"read_keys", resource)
when { context has operator && context.operator in principal };
@id("ban-officer-13")
forbid (principal, action, resource)
when { context has operator && context.operator == Paotui::Operator::"SC/s1/officer-13" };
"#,
        )
        .unwrap();
        let sc = caller("SC");
        let ask = |operator| {
            p.authorize(
                Who {
                    system: &sc,
                    operator,
                },
                Action::ReadKeys,
                Resource::Gateway,
                vec![],
            )
            .unwrap()
        };
        let v = ask(Some("officer-01"));
        assert!(v.allowed, "{v:?}");
        assert_eq!(v.policies, ["gateway-open"]);
        let v = ask(Some("officer-13"));
        assert!(!v.allowed);
        assert_eq!(v.policies, ["ban-officer-13"]);
        assert!(!ask(None).allowed, "no operator named");
        // The same staff id at another system is another operator.
        let gd = caller("GA");
        let v = p
            .authorize(
                Who {
                    system: &gd,
                    operator: Some("officer-13"),
                },
                Action::ReadKeys,
                Resource::Gateway,
                vec![],
            )
            .unwrap();
        assert!(v.allowed, "{v:?}");
    }

    /// A schema without the `Operator` entity type is refused at load: requests naming an
    /// operator could not be decided against it.
    #[test]
    fn a_schema_without_operators_is_refused() {
        let schema = schema_text()
            .replace("entity Operator in [System];", "")
            .replace(", operator?: Operator", "")
            .replace("context: { operator?: Operator },", "");
        let e = Policies::from_sources(
            ("paotui.cedarschema", &schema),
            &[("test.cedar".into(), String::new())],
            BTreeSet::new(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("entity type Operator"), "{e}");
    }

    #[test]
    fn the_shipped_policies_validate_and_carry_ids() {
        assert_eq!(
            Policies::shipped(BTreeSet::new()).unwrap().len(),
            shipped().len()
        );
        let p = shipped();
        assert!(p.len() >= 12, "{}", p.len());
        assert!(
            p.origin("query-needs-its-case")
                .unwrap()
                .ends_with("data.cedar:13"),
            "{:?}",
            p.origin("query-needs-its-case")
        );
    }

    #[test]
    fn broken_policies_are_named_by_file_and_line() {
        // A syntax error on line 3.
        let e = load("// c\n\npermit (principal, action, resource) when { };\n").unwrap_err();
        assert!(e.to_string().starts_with("test.cedar:3:"), "{e}");
        // An attribute the schema does not have, on line 2.
        let e = load(
            "permit (principal, action == Paotui::Action::\"query\", resource)\n  when { resource.ownr == principal.department };\n",
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("test.cedar:2:"), "{msg}");
        assert!(msg.contains("ownr"), "{msg}");
        // An unknown action.
        let e = load(
            "permit (principal, action == Paotui::Action::\"delete_everything\", resource);\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("delete_everything"), "{e}");
        // Two policies with one id.
        let e = load(
            "@id(\"a\")\npermit (principal, action == Paotui::Action::\"open_case\", resource);\n@id(\"a\")\npermit (principal, action == Paotui::Action::\"open_case\", resource);\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("test.cedar:4: policy id \"a\" is already used at test.cedar:2"),
            "{e}"
        );
        // A broken schema names its line too.
        let e = Policies::from_sources(
            (
                "s.cedarschema",
                "namespace Paotui {\n  entity Foo {\n    x: Strin,\n  };\n}\n",
            ),
            &[(
                "t.cedar".into(),
                "permit (principal, action, resource);".into(),
            )],
            BTreeSet::new(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("s.cedarschema:"), "{e}");
        // A schema that lacks an action the gateway decides (e.g. from an older version).
        let e = Policies::from_sources(
            (
                "old.cedarschema",
                &schema_text().replace("\"read_keys\", ", ""),
            ),
            &[(
                "t.cedar".into(),
                "permit (principal, action, resource);".into(),
            )],
            BTreeSet::new(),
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("old.cedarschema:1:") && e.to_string().contains("read_keys"),
            "{e}"
        );
        // A directory without a schema.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.cedar"),
            "permit (principal, action, resource);",
        )
        .unwrap();
        let e = Policies::load_dir(dir.path(), BTreeSet::new()).unwrap_err();
        assert!(e.to_string().contains("exactly one .cedarschema"), "{e}");
    }

    /// Cedar decides data queries exactly as the catalog's allow lists did: for every
    /// department, service and field of the demo catalog, the same permit/deny and the same
    /// field plan (clear, masked how, withheld).
    #[test]
    fn cedar_field_plans_match_the_catalog_allow_lists() {
        let cat = catalog();
        let p = shipped();
        let granted = Binding {
            required: true,
            granted: true,
        };
        let mut compared = 0;
        for d in cat.departments.keys() {
            let c = caller(d.as_str());
            for s in cat.services.values() {
                let all: Vec<String> = s.fields.iter().map(|f| f.name.clone()).collect();
                let mut sets = vec![all.clone()];
                sets.extend(all.iter().map(|f| vec![f.clone()]));
                for fields in sets {
                    let want = CatalogAllowList.decide_query(&c, s, &fields, granted);
                    let got = p.decide_query(&c, s, &fields, granted);
                    match (&want, &got) {
                        (Decision::Permit(a), Decision::Permit(b)) => {
                            assert_eq!(a, b, "{d} {}", s.id)
                        }
                        (Decision::Deny(_), Decision::Deny(_)) => {}
                        _ => panic!("{d} {} {fields:?}: {want:?} vs {got:?}", s.id),
                    }
                    compared += 1;
                }
            }
        }
        assert!(compared > 100, "{compared}");
    }

    /// A remembered decision is the decision: every query decision and field plan of the
    /// demo catalog, asked a second time of the same set (from its memo), equals the one a
    /// second set takes afresh; and a service whose attributes differ under the same id,
    /// or another operator, is decided again, not served from the memo.
    #[test]
    fn remembered_decisions_are_the_decisions() {
        let cat = catalog();
        let warm = shipped();
        let fresh = shipped();
        let mut asked = 0;
        for d in cat.departments.keys() {
            let c = caller(d.as_str());
            for s in cat.services.values() {
                let all: Vec<String> = s.fields.iter().map(|f| f.name.clone()).collect();
                let mut sets = vec![all.clone(), vec!["no_such_field".into()]];
                sets.extend(all.iter().map(|f| vec![f.clone()]));
                for fields in sets {
                    for (required, granted) in [(true, true), (true, false), (false, false)] {
                        let b = Binding { required, granted };
                        let first = warm.decide_query(&c, s, &fields, b);
                        let again = warm.decide_query(&c, s, &fields, b);
                        assert_eq!(first, again, "{d} {} {fields:?} {b:?}", s.id);
                        assert_eq!(again, fresh.decide_query(&c, s, &fields, b));
                        asked += 1;
                    }
                }
            }
        }
        assert!(asked > 300, "{asked}");
        let (verdicts, plans) = warm.remembered();
        assert!(verdicts > 0 && plans > 0, "{verdicts} {plans}");
        assert_eq!(warm.remembered(), fresh.remembered());

        // The same id with other attributes, one at a time: the warm set must decide each
        // copy as a set that never saw the original does, and each copy must change some
        // decision (so a key that left the attribute out would be caught).
        let id = crate::ids::ServiceId::parse("population.person").unwrap();
        let person = &cat.services[&id];
        let sc = caller("SC");
        let granted = Binding {
            required: true,
            granted: true,
        };
        let fields: Vec<String> = person.fields.iter().map(|f| f.name.clone()).collect();
        let dept = |d: &str| DeptCode::parse(d).unwrap();
        let mut copies: Vec<(&str, Service)> = Vec::new();
        let mut c = person.clone();
        c.consumers.remove(&dept("SC"));
        copies.push(("SC no longer a consumer", c));
        let mut c = person.clone();
        c.consumers.remove(&dept("SC"));
        c.owner = dept("SC");
        copies.push(("SC the owner instead", c));
        let mut c = person.clone();
        c.personal_grants.insert(dept("SC"));
        copies.push(("SC granted personal fields", c));
        let mut c = person.clone();
        for f in &mut c.fields {
            f.sensitivity = Sensitivity::Secret;
        }
        copies.push(("every field secret", c));
        let mut c = person.clone();
        for f in &mut c.fields {
            f.mask = Some(Mask::Full);
        }
        copies.push(("every mask full", c));
        let before = warm.decide_query(&sc, person, &fields, granted);
        for (what, copy) in &copies {
            let got = warm.decide_query(&sc, copy, &fields, granted);
            let want = shipped().decide_query(&sc, copy, &fields, granted);
            assert_eq!(got, want, "{what}");
            assert_ne!(
                got, before,
                "{what} changes nothing: the check proves nothing"
            );
        }
    }

    /// The memo keeps decisions per operator and per role set: a banned operator is not
    /// let through by a decision remembered for a colleague, and giving the set portal
    /// roles forgets what it decided before.
    #[test]
    fn remembered_decisions_follow_the_operator_and_roles() {
        let p = load(
            r#"@id("keys-by-officer-01")
permit (principal, action == Paotui::Action::"read_keys", resource)
when { context has operator && context.operator == Paotui::Operator::"SC/s1/officer-01" };
@id("portal-stats")
permit (principal in Paotui::Role::"portal", action == Paotui::Action::"read_stats", resource);
"#,
        )
        .unwrap();
        let sc = caller("SC");
        let ask = |p: &Policies, operator, action| {
            let resource = if action == Action::ReadStats {
                Resource::AuditLog
            } else {
                Resource::Gateway
            };
            p.authorize(
                Who {
                    system: &sc,
                    operator,
                },
                action,
                resource,
                vec![],
            )
            .unwrap()
            .allowed
        };
        for _ in 0..2 {
            assert!(ask(&p, Some("officer-01"), Action::ReadKeys));
            assert!(!ask(&p, Some("officer-13"), Action::ReadKeys));
            assert!(!ask(&p, None, Action::ReadKeys));
            assert!(!ask(&p, None, Action::ReadStats));
        }
        assert!(p.remembered().0 >= 4);
        let p = p.with_portals(BTreeSet::from([DeptCode::parse("SC").unwrap()]));
        assert_eq!(p.remembered(), (0, 0));
        assert!(ask(&p, None, Action::ReadStats), "SC is a portal now");
    }

    #[test]
    fn decisions_name_their_determining_policies() {
        let cat = catalog();
        let p = shipped();
        let person = &cat.services[&crate::ids::ServiceId::parse("population.person").unwrap()];
        let v = p
            .query(
                &caller("SC"),
                person,
                Binding {
                    required: true,
                    granted: true,
                },
            )
            .unwrap();
        assert!(v.allowed);
        assert_eq!(v.policies, ["query-owner-or-consumer"]);
        let v = p
            .query(
                &caller("SC"),
                person,
                Binding {
                    required: true,
                    granted: false,
                },
            )
            .unwrap();
        assert!(!v.allowed);
        assert_eq!(v.policies, ["query-needs-its-case"]);
        assert!(
            v.reason("a query")
                .contains("forbidden by policy query-needs-its-case")
        );
        let v = p
            .query(
                &caller("JC"),
                person,
                Binding {
                    required: false,
                    granted: false,
                },
            )
            .unwrap();
        assert!(!v.allowed);
        assert!(v.policies.is_empty());
        assert_eq!(v.reason("a query"), "no policy permits a query");
    }

    /// Callers × actions × case states → permit/deny, each cell asserted.
    #[test]
    fn matrix_of_callers_actions_and_case_states() {
        let cat = catalog();
        let p = shipped().with_portals(BTreeSet::from([DeptCode::parse("ZW").unwrap()]));
        let yyzz = &cat.license_types[&crate::licenses::TypeCode::parse("YYZZ").unwrap()];
        let matter = &cat.matters[&crate::matters::MatterCode::parse("SC-GTGSH-SL").unwrap()];
        let granted = || {
            Policies::binding_context(Binding {
                required: true,
                granted: true,
            })
        };
        let refused = || {
            Policies::binding_context(Binding {
                required: true,
                granted: false,
            })
        };
        let event = |e: &str| {
            vec![(
                "event".to_owned(),
                RestrictedExpression::new_string(e.to_owned()),
            )]
        };
        for status in ["accepted", "approved", "completed", "rejected"] {
            let open = !crate::purpose::FINAL_STATUSES.contains(&status);
            let case = CaseEntity {
                id: "CASE-1",
                status,
                site: "ZW",
                handlers: vec!["SC"],
            };
            for (who, action, resource, ctx, want) in [
                (
                    "SC",
                    "issue_license",
                    Resource::LicenseType(yyzz),
                    vec![],
                    true,
                ),
                (
                    "GA",
                    "issue_license",
                    Resource::LicenseType(yyzz),
                    vec![],
                    false,
                ),
                (
                    "SC",
                    "change_license_status",
                    Resource::LicenseType(yyzz),
                    vec![],
                    true,
                ),
                (
                    "ZW",
                    "change_license_status",
                    Resource::LicenseType(yyzz),
                    vec![],
                    false,
                ),
                (
                    "ZW",
                    "fetch_license",
                    Resource::LicenseType(yyzz),
                    granted(),
                    true,
                ),
                (
                    "ZW",
                    "fetch_license",
                    Resource::LicenseType(yyzz),
                    refused(),
                    false,
                ),
                ("RS", "open_case", Resource::Matter(matter), vec![], true),
                // A decision names its operator ("+op": the request names one).
                (
                    "SC+op",
                    "advance_case",
                    Resource::Case(&case),
                    event("approved"),
                    open,
                ),
                (
                    "SC",
                    "advance_case",
                    Resource::Case(&case),
                    event("approved"),
                    false,
                ),
                (
                    "SC+op",
                    "advance_case",
                    Resource::Case(&case),
                    event("rejected"),
                    open,
                ),
                (
                    "ZW+op",
                    "advance_case",
                    Resource::Case(&case),
                    event("approved"),
                    false,
                ),
                (
                    "ZW",
                    "advance_case",
                    Resource::Case(&case),
                    event("supplemented"),
                    open,
                ),
                (
                    "RS",
                    "advance_case",
                    Resource::Case(&case),
                    event("supplemented"),
                    false,
                ),
                ("ZW", "read_case", Resource::Case(&case), vec![], true),
                ("SC", "read_case", Resource::Case(&case), vec![], true),
                ("JC", "read_case", Resource::Case(&case), vec![], true),
                ("RS", "read_case", Resource::Case(&case), vec![], false),
                ("JC", "read_audit", Resource::AuditLog, vec![], true),
                ("JC", "run_sql", Resource::AuditLog, vec![], true),
                ("SC", "read_audit", Resource::AuditLog, vec![], false),
                ("ZW", "run_sql", Resource::AuditLog, vec![], false),
                // Who read my data: the portal (ZW here) and the auditors, nobody else;
                // the portal reads nothing else of the log.
                (
                    "ZW",
                    "read_subject_accesses",
                    Resource::AuditLog,
                    vec![],
                    true,
                ),
                (
                    "JC",
                    "read_subject_accesses",
                    Resource::AuditLog,
                    vec![],
                    true,
                ),
                (
                    "RS",
                    "read_subject_accesses",
                    Resource::AuditLog,
                    vec![],
                    false,
                ),
                ("ZW", "read_audit", Resource::AuditLog, vec![], false),
                ("JC", "read_stats", Resource::AuditLog, vec![], true),
                ("SC", "read_stats", Resource::AuditLog, vec![], false),
                ("JC", "manage_alerts", Resource::AuditLog, vec![], true),
                ("ZW", "manage_alerts", Resource::AuditLog, vec![], false),
                (
                    "SC",
                    "read_license_history",
                    Resource::LicenseType(yyzz),
                    vec![],
                    true,
                ),
                (
                    "JC",
                    "read_license_history",
                    Resource::LicenseType(yyzz),
                    vec![],
                    true,
                ),
                (
                    "ZW",
                    "read_license_history",
                    Resource::LicenseType(yyzz),
                    vec![],
                    false,
                ),
                ("ZW", "evaluate_case", Resource::Case(&case), vec![], true),
                ("SC", "evaluate_case", Resource::Case(&case), vec![], false),
                ("RS", "read_keys", Resource::Gateway, vec![], true),
                ("RS", "list_services", Resource::Gateway, vec![], true),
                ("GA", "verify_license", Resource::Gateway, vec![], true),
                ("GA", "import_licenses", Resource::Gateway, vec![], true),
                ("ZW", "list_matters", Resource::Gateway, vec![], true),
            ] {
                let action = act(action);
                let (dept, op) = match who.split_once('+') {
                    Some((d, _)) => (d, Some("officer-01")),
                    None => (who, None),
                };
                let system = caller(dept);
                let asker = Who {
                    system: &system,
                    operator: op,
                };
                let v = p.authorize(asker, action, resource, ctx).unwrap();
                assert_eq!(v.allowed, want, "{status}: {who} {action:?}: {v:?}");
                assert!(v.errors.is_empty(), "{v:?}");
            }
        }
    }

    /// The benchmark's large set: 1,000 policies validate and still decide correctly.
    #[test]
    fn a_thousand_generated_policies_validate() {
        let mut files = vec![];
        for f in std::fs::read_dir(DIR).unwrap() {
            let path = f.unwrap().path();
            if path.extension().is_some_and(|x| x == "cedar") {
                files.push((
                    path.display().to_string(),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
        let shipped_count = shipped().len();
        // Two policies pinned to a catalog service, so its slice (general + pinned) is
        // exercised: a grant to an outside department and a ban of one consumer.
        let pinned = "@id(\"pinned-grant\")\npermit (principal in Paotui::Department::\"D0007\", action == Paotui::Action::\"query\", resource == Paotui::Service::\"population.person\");\n@id(\"pinned-ban\")\nforbid (principal in Paotui::Department::\"MZ\", action == Paotui::Action::\"query\", resource == Paotui::Service::\"population.person\");\n";
        files.push(("pinned.cedar".into(), pinned.into()));
        files.push((
            "generated.cedar".into(),
            generated_policies(1000 - shipped_count - 2),
        ));
        let p = Policies::from_sources(
            ("paotui.cedarschema", &schema_text()),
            &files,
            BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(p.len(), 1000);
        // The per-action, per-resource slices decide exactly as the whole set.
        let mut whole = Policies::from_sources(
            ("paotui.cedarschema", &schema_text()),
            &files,
            BTreeSet::from([DeptCode::parse("JC").unwrap()]),
        )
        .unwrap();
        whole.by_action.clear();
        let p = Policies::from_sources(
            ("paotui.cedarschema", &schema_text()),
            &files,
            BTreeSet::from([DeptCode::parse("JC").unwrap()]),
        )
        .unwrap();
        let cat = catalog();
        let person = &cat.services[&crate::ids::ServiceId::parse("population.person").unwrap()];
        let granted = Binding {
            required: true,
            granted: true,
        };
        // The pinned slice holds the general policies too (RS is a consumer) and the pins.
        assert!(p.query(&caller("RS"), person, granted).unwrap().allowed);
        assert!(p.query(&caller("D0007"), person, granted).unwrap().allowed);
        let banned = p.query(&caller("MZ"), person, granted).unwrap();
        assert_eq!(
            (banned.allowed, banned.policies),
            (false, vec!["pinned-ban".to_owned()])
        );
        let mut compared = 0;
        for d in cat
            .departments
            .keys()
            .map(DeptCode::as_str)
            .chain(["D0007"])
        {
            let who = caller(d);
            for s in cat.services.values() {
                for granted in [false, true] {
                    let b = Binding {
                        required: true,
                        granted,
                    };
                    let a = p.query(&who, s, b).unwrap();
                    assert_eq!(a, whole.query(&who, s, b).unwrap(), "{d} {}", s.id);
                    compared += 1;
                }
                let names: Vec<String> = s.fields.iter().map(|f| f.name.clone()).collect();
                assert_eq!(
                    p.field_plan(&who, s, &names).unwrap(),
                    whole.field_plan(&who, s, &names).unwrap()
                );
            }
            for r in [Resource::AuditLog, Resource::Gateway] {
                for a in Action::ALL {
                    let (x, y) = (
                        p.authorize(&who, a, r, vec![]),
                        whole.authorize(&who, a, r, vec![]),
                    );
                    // Actions that do not apply to this resource fail alike.
                    assert_eq!(x.is_ok(), y.is_ok(), "{d} {a:?}");
                    if let (Ok(x), Ok(y)) = (x, y) {
                        assert_eq!(x, y, "{d} {a:?}");
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 100, "{compared}");
        let cat = catalog();
        let person = &cat.services[&crate::ids::ServiceId::parse("population.person").unwrap()];
        let v = p
            .query(
                &caller("SC"),
                person,
                Binding {
                    required: true,
                    granted: false,
                },
            )
            .unwrap();
        assert!(!v.allowed);
    }
}
