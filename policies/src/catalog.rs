//! The data-service catalog (TOML): departments and the services they offer.
//!
//! ```toml
//! [[departments]]
//! code = "GA"
//! name = "公安局"
//!
//! [[services]]
//! id = "population.person"
//! owner = "GA"
//! name = "人口基本信息查询"
//! source = "population"            # a [sources.<name>] in paotui.toml
//! subject = "id_number"            # the subject kind bound to :subject
//! query = "SELECT ... WHERE id_number = :subject"
//! consumers = ["RS", "MZ"]         # departments allowed to query (read by the Cedar policies)
//! personal_grants = ["MZ"]         # consumers that see personal fields unmasked
//! default_fields = ["name", "gender"]
//!
//! [[services.params]]
//! name = "as_of"
//! type = "date"
//! required = false
//!
//! [[services.fields]]
//! name = "name"
//! description = "姓名"
//! sensitivity = "personal"
//! mask = "name"
//! ```
//!
//! [`Catalog::parse`] checks structure and cross-references and reports errors as
//! `file:line:column: message`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use paotui_certs::DeptCode;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::ids::{IdNumber, ServiceId, Uscc};
use crate::licenses::{LicenseField, LicenseType, TypeCode};
use crate::mask::Mask;
use crate::matters::{Material, MaterialSource, Matter, MatterCode, MatterKind, PartyRole};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    Public,
    Internal,
    Personal,
    Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    IdNumber,
    Uscc,
}

impl SubjectKind {
    /// The name the catalog spells it with.
    pub fn name(self) -> &'static str {
        match self {
            SubjectKind::IdNumber => "id_number",
            SubjectKind::Uscc => "uscc",
        }
    }

    /// Parses a subject of this kind into its canonical text.
    pub fn parse(self, s: &str) -> Result<String> {
        Ok(match self {
            SubjectKind::IdNumber => IdNumber::parse(s)?.as_str().to_owned(),
            SubjectKind::Uscc => Uscc::parse(s)?.as_str().to_owned(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Integer,
    Date,
}

/// A typed query parameter value, ready to bind.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Text(String),
    Integer(i64),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ParamType,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default)]
    pub description: String,
}

fn yes() -> bool {
    true
}

impl ParamSpec {
    /// Parses one JSON value for this parameter.
    pub fn value(&self, v: &serde_json::Value) -> Result<ParamValue> {
        let bad =
            |want: &str| Error::InvalidParam(format!("parameter {:?} must be {want}", self.name));
        match self.ty {
            ParamType::String => v
                .as_str()
                .filter(|s| s.len() <= 256)
                .map(|s| ParamValue::Text(s.to_owned()))
                .ok_or_else(|| bad("a string of at most 256 bytes")),
            ParamType::Integer => v
                .as_i64()
                .map(ParamValue::Integer)
                .ok_or_else(|| bad("an integer")),
            ParamType::Date => v
                .as_str()
                .and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .map(|d| ParamValue::Text(d.format("%Y-%m-%d").to_string()))
                .ok_or_else(|| bad("a date YYYY-MM-DD")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub sensitivity: Sensitivity,
    #[serde(default)]
    pub mask: Option<Mask>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDepartment {
    code: Spanned<String>,
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    id: Spanned<String>,
    owner: Spanned<String>,
    name: String,
    #[serde(default)]
    description: String,
    source: Spanned<String>,
    subject: SubjectKind,
    query: Spanned<String>,
    #[serde(default = "empty_list")]
    consumers: Spanned<Vec<String>>,
    #[serde(default = "empty_list")]
    personal_grants: Spanned<Vec<String>>,
    #[serde(default = "empty_list")]
    default_fields: Spanned<Vec<String>>,
    #[serde(default)]
    params: Vec<Spanned<ParamSpec>>,
    fields: Vec<Spanned<FieldSpec>>,
}

fn empty_list() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    departments: Vec<RawDepartment>,
    #[serde(default)]
    services: Vec<RawService>,
    #[serde(default)]
    license_types: Vec<RawLicenseType>,
    #[serde(default)]
    matters: Vec<RawMatter>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatter {
    code: Spanned<String>,
    name: String,
    owner: Spanned<String>,
    /// `immediate` (即办件) or `promised` (承诺件, with `promised_days`).
    kind: Spanned<String>,
    #[serde(default)]
    promised_days: Option<Spanned<u32>>,
    #[serde(default)]
    materials: Vec<Spanned<RawMaterial>>,
    #[serde(default)]
    parties: Vec<Spanned<RawParty>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParty {
    role: String,
    name: String,
    kind: SubjectKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaterial {
    name: String,
    source: String,
    #[serde(default)]
    deferrable_days: Option<u32>,
    /// A party role of this matter the material is about (default: the applicant).
    #[serde(default)]
    about: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLicenseType {
    code: Spanned<String>,
    name: String,
    issuer: Spanned<String>,
    holder: SubjectKind,
    #[serde(default)]
    validity_years: Option<Spanned<u32>>,
    #[serde(default)]
    fields: Vec<Spanned<LicenseField>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Department {
    pub code: DeptCode,
    pub name: String,
}

/// One data service, validated.
#[derive(Debug, Clone)]
pub struct Service {
    pub id: ServiceId,
    pub owner: DeptCode,
    pub name: String,
    pub description: String,
    pub source: String,
    pub subject: SubjectKind,
    /// The SQL as written, with `:name` placeholders.
    pub query: String,
    /// Placeholder names in the order they appear (repeats included).
    pub placeholders: Vec<String>,
    pub consumers: BTreeSet<DeptCode>,
    pub personal_grants: BTreeSet<DeptCode>,
    pub default_fields: Vec<String>,
    pub params: Vec<ParamSpec>,
    pub fields: Vec<FieldSpec>,
}

impl Service {
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// The validated catalog.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub departments: BTreeMap<DeptCode, Department>,
    pub services: BTreeMap<ServiceId, Service>,
    pub license_types: BTreeMap<TypeCode, LicenseType>,
    pub matters: BTreeMap<MatterCode, Matter>,
}

impl Catalog {
    /// The departments that issue at least one license type.
    pub fn issuers(&self) -> BTreeSet<&DeptCode> {
        self.license_types.values().map(|t| &t.issuer).collect()
    }
}

/// Most materials one matter lists, and most working days a deadline or deferral counts.
const MAX_MATERIALS: usize = 64;
const MAX_DAYS: u32 = 365;

fn parse_matter(ctx: &Ctx<'_>, cat: &Catalog, m: RawMatter) -> Result<Matter> {
    let code =
        MatterCode::parse(m.code.get_ref()).map_err(|e| ctx.err(m.code.span(), e.to_string()))?;
    if cat.matters.contains_key(&code) {
        return Err(ctx.err(m.code.span(), format!("matter {code} defined twice")));
    }
    if m.name.trim().is_empty() {
        return Err(ctx.err(m.code.span(), format!("matter {code} has no name")));
    }
    let owner = DeptCode::parse(m.owner.get_ref())
        .ok()
        .filter(|d| cat.departments.contains_key(d))
        .ok_or_else(|| {
            ctx.err(
                m.owner.span(),
                format!(
                    "owner {:?} is not a department in this catalog",
                    m.owner.get_ref()
                ),
            )
        })?;
    let kind = match (m.kind.get_ref().as_str(), &m.promised_days) {
        ("immediate", None) => MatterKind::Immediate,
        ("immediate", Some(d)) => {
            return Err(ctx.err(d.span(), "an immediate matter has no promised_days"));
        }
        ("promised", Some(d)) if (1..=MAX_DAYS).contains(d.get_ref()) => MatterKind::Promised {
            working_days: *d.get_ref(),
        },
        ("promised", Some(d)) => {
            return Err(ctx.err(d.span(), format!("promised_days must be 1-{MAX_DAYS}")));
        }
        ("promised", None) => {
            return Err(ctx.err(
                m.kind.span(),
                "a promised matter needs promised_days (working days)",
            ));
        }
        (other, _) => {
            return Err(ctx.err(
                m.kind.span(),
                format!("kind {other:?} must be \"immediate\" or \"promised\""),
            ));
        }
    };
    // Parties first: a material may be about one of them.
    let mut parties: Vec<PartyRole> = Vec::new();
    for raw in &m.parties {
        let span = raw.span();
        let r = raw.get_ref();
        let ok = (1..=32).contains(&r.role.len())
            && r.role
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(ctx.err(span, "party role must be 1-32 characters of a-z 0-9 _"));
        }
        if parties.iter().any(|p| p.role == r.role) {
            return Err(ctx.err(span, format!("party role {:?} listed twice", r.role)));
        }
        let name = r.name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(ctx.err(span, "party name must be 1-200 bytes"));
        }
        parties.push(PartyRole {
            role: r.role.clone(),
            name: name.to_owned(),
            kind: r.kind,
        });
    }
    if m.materials.len() > MAX_MATERIALS {
        return Err(ctx.err(m.code.span(), format!("at most {MAX_MATERIALS} materials")));
    }
    let mut materials: Vec<Material> = Vec::new();
    for raw in &m.materials {
        let span = raw.span();
        let r = raw.get_ref();
        let name = r.name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(ctx.err(span, "material name must be 1-200 bytes"));
        }
        if materials.iter().any(|x| x.name == name) {
            return Err(ctx.err(span, format!("material {name:?} listed twice")));
        }
        let source =
            MaterialSource::parse(&r.source).map_err(|e| ctx.err(span.clone(), e.to_string()))?;
        match &source {
            MaterialSource::License(t) if !cat.license_types.contains_key(t) => {
                return Err(ctx.err(span, format!("license type {t} is not in this catalog")));
            }
            MaterialSource::Service(s) => match cat.services.get(s) {
                None => {
                    return Err(ctx.err(span, format!("service {s} is not in this catalog")));
                }
                // The resolver promises the handling department this data for the case,
                // so the department must be one the service may answer at all.
                Some(svc) if svc.owner != owner && !svc.consumers.contains(&owner) => {
                    return Err(ctx.err(
                        span,
                        format!(
                            "matter {code} is handled by {owner}, which is not a consumer of \
                             service {s}: add {owner} to its consumers or collect this \
                             material on paper"
                        ),
                    ));
                }
                Some(_) => {}
            },
            _ => {}
        }
        if let Some(d) = r.deferrable_days
            && !(1..=MAX_DAYS).contains(&d)
        {
            return Err(ctx.err(span, format!("deferrable_days must be 1-{MAX_DAYS}")));
        }
        if let Some(role) = &r.about {
            let Some(party) = parties.iter().find(|p| &p.role == role) else {
                return Err(ctx.err(
                    span,
                    format!("material {name:?} is about {role:?}, a party role this matter does not name"),
                ));
            };
            // The resolver looks the data or license up by the party's identifier, so
            // the register must be keyed by that kind of identifier.
            let keyed = match &source {
                MaterialSource::License(t) => cat.license_types.get(t).map(|t| t.holder),
                MaterialSource::Service(s) => cat.services.get(s).map(|s| s.subject),
                MaterialSource::Paper => None,
            };
            if let Some(k) = keyed
                && k != party.kind
            {
                return Err(ctx.err(
                    span,
                    format!(
                        "material {name:?} is about {role:?} ({}), but its source is keyed by {}",
                        party.kind.name(),
                        k.name()
                    ),
                ));
            }
        }
        materials.push(Material {
            name: name.to_owned(),
            source,
            deferrable_days: r.deferrable_days,
            about: r.about.clone(),
        });
    }
    Ok(Matter {
        code,
        name: m.name.trim().to_owned(),
        owner,
        kind,
        materials,
        parties,
    })
}

/// The demo catalog (`examples/catalog.toml`): its matters, services and license types
/// are the real ones the gateway runs with, so tests decide against them.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn demo_catalog() -> Catalog {
    Catalog::parse(
        "examples/catalog.toml",
        include_str!("../../examples/catalog.toml"),
    )
    .unwrap()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, col)
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> Error {
        let (line, column) = line_col(self.text, span.start);
        Error::Catalog {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Byte ranges of `:name` placeholders (colon included) outside string literals,
/// quoted identifiers and `--` comments, in order of appearance.
fn placeholder_spans(sql: &str) -> Vec<Range<usize>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            // `::` is a PostgreSQL cast, not a placeholder.
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' if b
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') =>
            {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(start..i);
            }
            _ => i += 1,
        }
    }
    out
}

/// The `:name` placeholders of a query, in order of appearance (repeats included).
pub fn placeholders(sql: &str) -> Vec<String> {
    placeholder_spans(sql)
        .into_iter()
        .map(|r| sql[r.start + 1..r.end].to_owned())
        .collect()
}

/// Rewrites `:name` placeholders to positional ones produced by `pos(index)` (1-based, in
/// order of appearance), e.g. `?` for SQLite/MySQL or `$1` for PostgreSQL.
pub fn positional(sql: &str, pos: impl Fn(usize) -> String) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut last = 0;
    for (n, r) in placeholder_spans(sql).into_iter().enumerate() {
        out.push_str(&sql[last..r.start]);
        out.push_str(&pos(n + 1));
        last = r.end;
    }
    out.push_str(&sql[last..]);
    out
}

/// Checks that `sql` is exactly one read-only `SELECT` (sqlparser, as re-exported by
/// datafusion): no other statement kind, no `SELECT … INTO`, no `FOR UPDATE`/`FOR SHARE`,
/// no data-modifying CTE. The sources' read-only transactions are the second line.
pub fn validate_select(sql: &str) -> std::result::Result<(), String> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    let numbered = positional(sql, |i| format!("${i}"));
    let stmts = Parser::parse_sql(&PostgreSqlDialect {}, &numbered)
        .map_err(|e| format!("SQL does not parse: {e}"))?;
    read_only_statement(&stmts)
}

/// Checks that `stmts` is exactly one read-only query (the rules of [`validate_select`]);
/// also used for auditor SQL, parsed in DataFusion's own dialect.
pub fn read_only_statement(
    stmts: &[datafusion::sql::sqlparser::ast::Statement],
) -> std::result::Result<(), String> {
    use datafusion::sql::sqlparser::ast::Statement;
    match stmts {
        [Statement::Query(q)] => check_query(q),
        [other] => Err(format!(
            "query must be a single SELECT, found {}",
            other
                .to_string()
                .split_whitespace()
                .next()
                .unwrap_or("?")
                .to_ascii_uppercase()
        )),
        [] => Err("query is empty".into()),
        _ => Err("query must be a single statement".into()),
    }
}

fn check_query(q: &datafusion::sql::sqlparser::ast::Query) -> std::result::Result<(), String> {
    if !q.locks.is_empty() {
        return Err("query must not lock rows (FOR UPDATE / FOR SHARE)".into());
    }
    if let Some(with) = &q.with {
        for cte in &with.cte_tables {
            check_query(&cte.query)?;
        }
    }
    check_set_expr(&q.body)
}

fn check_set_expr(e: &datafusion::sql::sqlparser::ast::SetExpr) -> std::result::Result<(), String> {
    use datafusion::sql::sqlparser::ast::SetExpr;
    match e {
        SetExpr::Select(s) if s.into.is_some() => Err("query must not be SELECT … INTO".into()),
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => Ok(()),
        SetExpr::Query(q) => check_query(q),
        SetExpr::SetOperation { left, right, .. } => {
            check_set_expr(left)?;
            check_set_expr(right)
        }
        _ => Err("query must be a single SELECT, found a data-modifying statement".into()),
    }
}

impl Catalog {
    /// Parses and validates catalog text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Catalog> {
        let ctx = Ctx { file, text };
        let raw: RawCatalog = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ctx.err(span, e.message().to_owned())
        })?;
        let mut cat = Catalog::default();
        for d in raw.departments {
            let code = DeptCode::parse(d.code.get_ref())
                .map_err(|e| ctx.err(d.code.span(), e.to_string()))?;
            if cat.departments.contains_key(&code) {
                return Err(ctx.err(d.code.span(), format!("department {code} defined twice")));
            }
            cat.departments
                .insert(code.clone(), Department { code, name: d.name });
        }
        let dept = |s: &Spanned<String>, what: &str| -> Result<DeptCode> {
            let code =
                DeptCode::parse(s.get_ref()).map_err(|e| ctx.err(s.span(), e.to_string()))?;
            if !cat.departments.contains_key(&code) {
                return Err(ctx.err(
                    s.span(),
                    format!("{what} {code} is not a department in this catalog"),
                ));
            }
            Ok(code)
        };
        let mut services = BTreeMap::new();
        for s in raw.services {
            let id = ServiceId::parse(s.id.get_ref())
                .map_err(|e| ctx.err(s.id.span(), e.to_string()))?;
            if services.contains_key(&id) {
                return Err(ctx.err(s.id.span(), format!("service {id} defined twice")));
            }
            let owner = dept(&s.owner, "owner")?;
            let mut consumers = BTreeSet::new();
            for c in s.consumers.get_ref() {
                consumers.insert(dept(
                    &Spanned::new(s.consumers.span(), c.clone()),
                    "consumer",
                )?);
            }
            let mut personal_grants = BTreeSet::new();
            for c in s.personal_grants.get_ref() {
                let code = dept(
                    &Spanned::new(s.personal_grants.span(), c.clone()),
                    "granted department",
                )?;
                if !consumers.contains(&code) {
                    return Err(ctx.err(
                        s.personal_grants.span(),
                        format!("{code} is granted personal fields but is not a consumer"),
                    ));
                }
                personal_grants.insert(code);
            }
            let query = s.query.get_ref().trim().to_owned();
            validate_select(&query).map_err(|m| ctx.err(s.query.span(), m))?;
            let ph = placeholders(&query);
            if !ph.iter().any(|p| p == "subject") {
                return Err(ctx.err(s.query.span(), "query must use the :subject placeholder"));
            }
            let mut params = Vec::new();
            for p in &s.params {
                let spec = p.get_ref().clone();
                if spec.name == "subject" || params.iter().any(|q: &ParamSpec| q.name == spec.name)
                {
                    return Err(ctx.err(
                        p.span(),
                        format!(
                            "parameter {:?} defined twice (or shadows :subject)",
                            spec.name
                        ),
                    ));
                }
                if !ph.contains(&spec.name) {
                    return Err(ctx.err(
                        p.span(),
                        format!("parameter {:?} is not used in the query", spec.name),
                    ));
                }
                params.push(spec);
            }
            for name in &ph {
                if name != "subject" && !params.iter().any(|p| &p.name == name) {
                    return Err(ctx.err(
                        s.query.span(),
                        format!("placeholder :{name} has no [[services.params]] entry"),
                    ));
                }
            }
            let mut fields: Vec<FieldSpec> = Vec::new();
            for f in &s.fields {
                let spec = f.get_ref().clone();
                if fields.iter().any(|g| g.name == spec.name) {
                    return Err(ctx.err(f.span(), format!("field {:?} defined twice", spec.name)));
                }
                if spec.sensitivity == Sensitivity::Personal && spec.mask.is_none() {
                    return Err(ctx.err(
                        f.span(),
                        format!("personal field {:?} needs a mask", spec.name),
                    ));
                }
                fields.push(spec);
            }
            if fields.is_empty() {
                return Err(ctx.err(s.id.span(), "a service needs at least one field"));
            }
            for f in s.default_fields.get_ref() {
                if !fields.iter().any(|g| &g.name == f) {
                    return Err(ctx.err(
                        s.default_fields.span(),
                        format!("default field {f:?} is not a field of this service"),
                    ));
                }
            }
            let default_fields = if s.default_fields.get_ref().is_empty() {
                fields
                    .iter()
                    .filter(|f| f.sensitivity != Sensitivity::Secret)
                    .map(|f| f.name.clone())
                    .collect()
            } else {
                s.default_fields.get_ref().clone()
            };
            services.insert(
                id.clone(),
                Service {
                    id,
                    owner,
                    name: s.name,
                    description: s.description,
                    source: s.source.get_ref().clone(),
                    subject: s.subject,
                    query,
                    placeholders: ph,
                    consumers,
                    personal_grants,
                    default_fields,
                    params,
                    fields,
                },
            );
        }
        cat.services = services;
        for t in raw.license_types {
            let code = TypeCode::parse(t.code.get_ref())
                .map_err(|e| ctx.err(t.code.span(), e.to_string()))?;
            if cat.license_types.contains_key(&code) {
                return Err(ctx.err(t.code.span(), format!("license type {code} defined twice")));
            }
            let issuer = dept(&t.issuer, "issuer")?;
            if let Some(y) = &t.validity_years
                && !(1..=100).contains(y.get_ref())
            {
                return Err(ctx.err(
                    y.span(),
                    "validity_years must be 1-100 (omit it for long-term)",
                ));
            }
            let mut fields: Vec<LicenseField> = Vec::new();
            for f in &t.fields {
                let spec = f.get_ref().clone();
                let ok = !spec.name.is_empty()
                    && spec.name.len() <= 64
                    && spec
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !ok {
                    return Err(ctx.err(
                        f.span(),
                        format!("field name {:?} must be 1-64 of a-z 0-9 _", spec.name),
                    ));
                }
                if fields.iter().any(|g| g.name == spec.name) {
                    return Err(ctx.err(f.span(), format!("field {:?} defined twice", spec.name)));
                }
                fields.push(spec);
            }
            cat.license_types.insert(
                code.clone(),
                LicenseType {
                    code,
                    name: t.name,
                    issuer,
                    holder: t.holder,
                    validity_years: t.validity_years.map(|y| *y.get_ref()),
                    fields,
                },
            );
        }
        for m in raw.matters {
            let matter = parse_matter(&ctx, &cat, m)?;
            cat.matters.insert(matter.code.clone(), matter);
        }
        Ok(cat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[departments]]
code = "GA"
name = "公安局"

[[departments]]
code = "RS"
name = "人社局"

[[services]]
id = "population.person"
owner = "GA"
name = "人口"
source = "population"
subject = "id_number"
query = "SELECT name, id_number FROM person WHERE id_number = :subject AND ':x' <> :kind"
consumers = ["RS"]

[[services.params]]
name = "kind"
type = "string"

[[services.fields]]
name = "name"
sensitivity = "personal"
mask = "name"

[[services.fields]]
name = "id_number"
sensitivity = "personal"
mask = "id_number"
"#;

    #[test]
    fn parses_good_catalog() {
        let c = Catalog::parse("cat.toml", GOOD).unwrap();
        let s = &c.services[&ServiceId::parse("population.person").unwrap()];
        assert_eq!(s.placeholders, vec!["subject", "kind"]);
        assert_eq!(s.default_fields, vec!["name", "id_number"]);
        assert_eq!(
            positional(&s.query, |i| format!("${i}")),
            "SELECT name, id_number FROM person WHERE id_number = $1 AND ':x' <> $2"
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = GOOD.replace("consumers = [\"RS\"]", "consumers = [\"XX\"]");
        let e = Catalog::parse("cat.toml", &bad).unwrap_err().to_string();
        assert!(e.starts_with("cat.toml:17:"), "{e}");
        assert!(e.contains("XX is not a department"), "{e}");

        let bad = GOOD.replace("SELECT name", "DELETE name");
        let e = Catalog::parse("cat.toml", &bad).unwrap_err().to_string();
        assert!(
            e.starts_with("cat.toml:16:") && e.contains("single SELECT"),
            "{e}"
        );

        let bad = GOOD.replace("mask = \"name\"", "");
        let e = Catalog::parse("cat.toml", &bad).unwrap_err().to_string();
        assert!(e.contains("needs a mask"), "{e}");

        let bad = GOOD.replace("subject = \"id_number\"", "subject = 3");
        let e = Catalog::parse("cat.toml", &bad).unwrap_err().to_string();
        assert!(e.starts_with("cat.toml:15:"), "{e}");

        let bad = GOOD.replace(":kind", "1; DROP TABLE person");
        assert!(Catalog::parse("cat.toml", &bad).is_err());
    }
}

#[cfg(test)]
mod license_type_tests {
    use super::*;

    const TYPES: &str = r#"
[[departments]]
code = "SC"
name = "市场监督管理局"

[[license_types]]
code = "YYZZ"
name = "营业执照"
issuer = "SC"
holder = "uscc"
validity_years = 20

[[license_types.fields]]
name = "legal_person"
required = true

[[license_types.fields]]
name = "founded"
type = "date"
"#;

    #[test]
    fn parses_license_types() {
        let c = Catalog::parse("cat.toml", TYPES).unwrap();
        let t = &c.license_types[&TypeCode::parse("YYZZ").unwrap()];
        assert_eq!(t.issuer.as_str(), "SC");
        assert_eq!(t.holder, SubjectKind::Uscc);
        assert_eq!(t.validity_years, Some(20));
        assert_eq!(t.fields.len(), 2);
        assert_eq!(t.fields[1].ty, ParamType::Date);
        assert!(t.fields[0].required && !t.fields[1].required);
        assert_eq!(c.issuers().len(), 1);
    }

    const MATTERS: &str = r#"
[[departments]]
code = "SC"
name = "市场监督管理局"

[[license_types]]
code = "YYZZ"
name = "营业执照"
issuer = "SC"
holder = "uscc"

[[matters]]
code = "SC-SPJY-XK"
name = "食品经营许可"
owner = "SC"
kind = "promised"
promised_days = 10

[[matters.materials]]
name = "营业执照"
source = "license:YYZZ"

[[matters.materials]]
name = "经营场所平面图"
source = "paper"
deferrable_days = 5
"#;

    #[test]
    fn parses_matters() {
        let c = Catalog::parse("cat.toml", MATTERS).unwrap();
        let m = &c.matters[&MatterCode::parse("SC-SPJY-XK").unwrap()];
        assert_eq!(m.owner.as_str(), "SC");
        assert_eq!(m.kind, MatterKind::Promised { working_days: 10 });
        assert_eq!(m.materials.len(), 2);
        assert_eq!(
            m.license_types().map(TypeCode::as_str).collect::<Vec<_>>(),
            ["YYZZ"]
        );
        assert_eq!(m.services().count(), 0);
        assert_eq!(m.materials[1].source, MaterialSource::Paper);
        assert_eq!(m.materials[1].deferrable_days, Some(5));
    }

    #[test]
    fn matter_errors_name_the_line() {
        assert_errors_at_lines(
            MATTERS,
            &[
                ("code = \"SC-SPJY-XK\"", "code = \"sc\"", 13, "matter code"),
                ("owner = \"SC\"", "owner = \"XX\"", 15, "not a department"),
                ("kind = \"promised\"", "kind = \"soon\"", 16, "immediate"),
                ("promised_days = 10", "promised_days = 0", 17, "1-365"),
                (
                    "kind = \"promised\"",
                    "kind = \"immediate\"",
                    17,
                    "no promised_days",
                ),
                (
                    "source = \"license:YYZZ\"",
                    "source = \"license:HKB\"",
                    19,
                    "not in this catalog",
                ),
                (
                    "source = \"license:YYZZ\"",
                    "source = \"service:a.b\"",
                    19,
                    "not in this catalog",
                ),
                ("source = \"paper\"", "source = \"fax\"", 23, "paper"),
                (
                    "deferrable_days = 5",
                    "deferrable_days = 999",
                    23,
                    "deferrable_days",
                ),
                (
                    "name = \"经营场所平面图\"",
                    "name = \"营业执照\"",
                    23,
                    "listed twice",
                ),
            ],
        );
    }

    /// A material about a party: the role must be the matter's, and the source keyed by
    /// the party's kind of identifier.
    #[test]
    fn materials_about_a_party() {
        let base = format!(
            r#"{MATTERS}
[[matters]]
code = "SC-BG-FR"
name = "法定代表人变更登记"
owner = "SC"
kind = "immediate"

[[matters.parties]]
role = "new_rep"
name = "新法定代表人"
kind = "uscc"

[[matters.materials]]
name = "新法定代表人的营业执照"
source = "license:YYZZ"
about = "new_rep"
"#
        );
        let c = Catalog::parse("cat.toml", &base).unwrap();
        let m = &c.matters[&MatterCode::parse("SC-BG-FR").unwrap()];
        assert_eq!(m.materials[0].about.as_deref(), Some("new_rep"));
        let yyzz = TypeCode::parse("YYZZ").unwrap();
        assert_eq!(
            m.license_types_for(true, &[]).len(),
            0,
            "not the applicant's"
        );
        assert_eq!(m.license_types_for(false, &["new_rep"]), [&yyzz]);
        assert_eq!(m.license_types_for(false, &["other"]).len(), 0);
        assert_errors_at_lines(
            &base,
            &[
                (
                    "about = \"new_rep\"",
                    "about = \"old_rep\"",
                    39,
                    "a party role this matter does not name",
                ),
                (
                    "kind = \"uscc\"",
                    "kind = \"id_number\"",
                    39,
                    "about \"new_rep\" (id_number), but its source is keyed by uscc",
                ),
            ],
        );
    }

    /// Each edit of `base` (from → to) fails to parse at `line` with a message holding `want`.
    fn assert_errors_at_lines(base: &str, cases: &[(&str, &str, usize, &str)]) {
        for (from, to, line, want) in cases {
            let bad = base.replace(from, to);
            assert_ne!(bad, base, "{from}");
            let e = Catalog::parse("cat.toml", &bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("cat.toml:{line}:")), "{to}: {e}");
            assert!(e.contains(want), "{to}: {e}");
        }
    }

    #[test]
    fn license_type_errors_name_the_line() {
        assert_errors_at_lines(
            TYPES,
            &[
                ("issuer = \"SC\"", "issuer = \"XX\"", 9, "not a department"),
                ("code = \"YYZZ\"", "code = \"yy\"", 7, "upper-case"),
                ("validity_years = 20", "validity_years = 0", 11, "1-100"),
                (
                    "holder = \"uscc\"",
                    "holder = \"cat\"",
                    10,
                    "unknown variant",
                ),
                (
                    "name = \"founded\"",
                    "name = \"legal_person\"",
                    17,
                    "defined twice",
                ),
                ("type = \"date\"", "type = \"blob\"", 19, "unknown variant"),
            ],
        );
    }
}

#[cfg(test)]
mod sql_tests {
    use super::validate_select;

    #[test]
    fn only_single_read_only_selects_pass() {
        for ok in [
            "SELECT a FROM t WHERE id = :subject",
            "WITH x AS (SELECT a FROM t WHERE id = :subject) SELECT * FROM x",
            "SELECT a FROM t WHERE id = :subject UNION SELECT b FROM u",
            "SELECT a::text FROM t WHERE id = :subject AND note = ':not_a_param;'",
        ] {
            assert!(
                validate_select(ok).is_ok(),
                "{ok}: {:?}",
                validate_select(ok)
            );
        }
        for (bad, why) in [
            ("DELETE FROM t WHERE id = :subject", "found DELETE"),
            ("UPDATE t SET a = 1 WHERE id = :subject", "found UPDATE"),
            ("SELECT 1; DROP TABLE t", "single statement"),
            ("SELECT a INTO x FROM t WHERE id = :subject", "INTO"),
            ("SELECT a FROM t WHERE id = :subject FOR UPDATE", "lock"),
            ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", ""),
            ("SELEC a FROM t", "does not parse"),
        ] {
            let e = validate_select(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
