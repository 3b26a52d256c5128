//! Data services: `GET /v1/services` and `POST /v1/services/{id}/query`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use paotui_adapters::arrow::array::{
    ArrayRef, AsArray, RecordBatch, RecordBatchOptions, StringArray,
};
use paotui_adapters::arrow::compute::cast;
use paotui_adapters::arrow::datatypes::{DataType, Field, Schema};
use paotui_adapters::arrow::ipc::writer::StreamWriter;
use paotui_adapters::arrow::json::WriterBuilder;
use paotui_adapters::arrow::json::writer::JsonArray;
use paotui_policies::access::{Binding, Decision, FieldPlan, permit_plan, requested_fields};
use paotui_policies::catalog::{ParamValue, Sensitivity, Service};
use paotui_policies::cedar::{Action, Policies, Resource};
use paotui_policies::ids::ServiceId;
use paotui_policies::matters::MatterCode;
use paotui_policies::purpose::Want;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;

use crate::audit::AuditScope;
use crate::authz::Authz;
use crate::config::PurposeBinding;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::{Error, Result};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/services", get(list))
        .route("/v1/services/{id}/query", post(query))
}

#[derive(Serialize)]
struct FieldInfo<'a> {
    name: &'a str,
    description: &'a str,
    sensitivity: Sensitivity,
    /// Whether this caller receives the field masked.
    masked: bool,
    /// Whether this caller may receive the field at all.
    available: bool,
}

#[derive(Serialize)]
struct ServiceInfo<'a> {
    id: &'a str,
    name: &'a str,
    description: &'a str,
    owner: &'a str,
    subject: paotui_policies::catalog::SubjectKind,
    params: Vec<BTreeMap<&'static str, String>>,
    default_fields: &'a [String],
    fields: Vec<FieldInfo<'a>>,
}

/// The services this caller may query, with what it would see of each field.
async fn list(State(app): State<AppState>, scope: AuditScope, authz: Authz) -> Result<Json<Value>> {
    scope.update(|c| c.action = Some("service.list".into()));
    authz.require(
        Action::ListServices,
        Resource::Gateway,
        vec![],
        || "listing the services".into(),
        None,
    )?;
    let caller = authz.caller();
    let policy = authz.policies();
    let mut out = Vec::new();
    for s in app.catalog.services.values() {
        let all: Vec<String> = s.fields.iter().map(|f| f.name.clone()).collect();
        // What the caller could receive for a case that grants the query.
        let for_a_case = Binding {
            required: true,
            granted: true,
        };
        let Decision::Permit(plan) = paotui_policies::access::AccessPolicy::decide_query(
            policy, caller, s, &all, for_a_case,
        ) else {
            continue;
        };
        let fields = s
            .fields
            .iter()
            .map(|f| {
                let p = plan.fields.iter().find(|p| p.name == f.name);
                FieldInfo {
                    name: &f.name,
                    description: &f.description,
                    sensitivity: f.sensitivity,
                    masked: p.is_some_and(|p| p.mask.is_some()),
                    available: p.is_some(),
                }
            })
            .collect();
        out.push(ServiceInfo {
            id: s.id.as_str(),
            name: &s.name,
            description: &s.description,
            owner: s.owner.as_str(),
            subject: s.subject,
            params: s
                .params
                .iter()
                .map(|p| {
                    BTreeMap::from([
                        ("name", p.name.clone()),
                        ("type", format!("{:?}", p.ty).to_lowercase()),
                        ("required", p.required.to_string()),
                        ("description", p.description.clone()),
                    ])
                })
                .collect(),
            default_fields: &s.default_fields,
            fields,
        });
    }
    Ok(Json(serde_json::json!({ "services": out })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// The person or enterprise the data is about (ID number or credit code).
    subject: String,
    #[serde(default)]
    params: serde_json::Map<String, Value>,
    /// Field names; omitted means the service's default set.
    #[serde(default)]
    fields: Option<Vec<String>>,
    /// The case (办件) this query serves: required unless `[policy] purpose_binding =
    /// "off"`, and checked whenever given.
    #[serde(default)]
    case_id: Option<String>,
    /// Narrows the binding to one matter of the case.
    #[serde(default)]
    matter: Option<String>,
}

#[derive(Serialize)]
struct QueryAnswer {
    service: String,
    fields: Vec<AnswerField>,
    withheld: Vec<String>,
    rows: Vec<serde_json::Map<String, Value>>,
    truncated: bool,
}

#[derive(Serialize)]
struct AnswerField {
    name: String,
    masked: bool,
}

pub(crate) fn parse_case_id(s: &str) -> Result<String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Error::BadRequest(
            "case_id must be 1-64 characters of A-Z a-z 0-9 - _".into(),
        ))
    }
}

pub(crate) fn parse_matter(s: &str) -> Result<MatterCode> {
    MatterCode::parse(s)
        .map_err(|_| Error::BadRequest("matter must be a matter code (A-Z 0-9 -)".into()))
}

/// Binds the body's params to the service's placeholders, in placeholder order.
fn bind_params(
    service: &Service,
    subject: &str,
    given: &serde_json::Map<String, Value>,
) -> Result<Vec<ParamValue>> {
    for k in given.keys() {
        if !service.params.iter().any(|p| &p.name == k) {
            return Err(Error::BadRequest(format!(
                "unknown parameter {k:?} for service {}",
                service.id
            )));
        }
    }
    let mut values = BTreeMap::new();
    for spec in &service.params {
        match given.get(&spec.name) {
            Some(v) => {
                values.insert(spec.name.as_str(), spec.value(v)?);
            }
            None if spec.required => {
                return Err(Error::BadRequest(format!(
                    "missing required parameter {:?}",
                    spec.name
                )));
            }
            None => {
                values.insert(spec.name.as_str(), ParamValue::Text(String::new()));
            }
        }
    }
    service
        .placeholders
        .iter()
        .map(|name| {
            if name == "subject" {
                Ok(ParamValue::Text(subject.to_owned()))
            } else {
                values
                    .get(name.as_str())
                    .cloned()
                    .ok_or_else(|| Error::Internal(format!("placeholder {name} without parameter")))
            }
        })
        .collect()
}

/// Keeps only the planned fields, in plan order, and masks the ones the plan says to
/// mask (the column is rendered as text first, so dates and decimals mask too).
fn minimise(service: &Service, plan: &FieldPlan, batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(plan.fields.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(plan.fields.len());
    for f in &plan.fields {
        let i = schema.index_of(&f.name).map_err(|_| {
            Error::SourceFailed(format!(
                "source of {} did not return field {:?}",
                service.id, f.name
            ))
        })?;
        let col = batch.column(i);
        let meta = HashMap::from([("paotui.masked".to_owned(), f.mask.is_some().to_string())]);
        match f.mask {
            None => {
                fields.push(schema.field(i).clone().with_metadata(meta));
                columns.push(col.clone());
            }
            Some(mask) => {
                let text =
                    cast(col, &DataType::Utf8).map_err(|e| Error::Internal(e.to_string()))?;
                let masked: StringArray = text
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(|s| mask.apply(s)))
                    .collect();
                fields.push(Field::new(&f.name, DataType::Utf8, true).with_metadata(meta));
                columns.push(Arc::new(masked));
            }
        }
    }
    let schema = Arc::new(Schema::new(fields));
    RecordBatch::try_new_with_options(
        schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| Error::Internal(e.to_string()))
}

/// Rows as JSON objects; nulls are written out, not dropped.
pub fn json_rows(batch: &RecordBatch) -> Result<Vec<serde_json::Map<String, Value>>> {
    if batch.num_rows() == 0 {
        return Ok(vec![]);
    }
    // Decimals (areas, money) travel as strings so no JSON reader rounds them.
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut cols = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if matches!(f.data_type(), DataType::Decimal128(..)) {
            cols.push(cast(c, &DataType::Utf8).map_err(|e| Error::Internal(e.to_string()))?);
            fields.push(Field::new(f.name(), DataType::Utf8, true));
        } else {
            cols.push(Arc::clone(c));
            fields.push(f.as_ref().clone());
        }
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut w = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(Vec::new());
    w.write(&batch)
        .map_err(|e| Error::Internal(e.to_string()))?;
    w.finish().map_err(|e| Error::Internal(e.to_string()))?;
    serde_json::from_slice(&w.into_inner()).map_err(|e| Error::Internal(e.to_string()))
}

/// The answer as an Arrow IPC stream.
pub(crate) fn arrow_stream(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut w = StreamWriter::try_new(Vec::new(), &batch.schema())
        .map_err(|e| Error::Internal(e.to_string()))?;
    w.write(batch).map_err(|e| Error::Internal(e.to_string()))?;
    w.finish().map_err(|e| Error::Internal(e.to_string()))?;
    w.into_inner().map_err(|e| Error::Internal(e.to_string()))
}

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

pub(crate) fn wants_arrow(headers: &HeaderMap) -> bool {
    accepts(headers, ARROW_STREAM)
}

/// Whether `Accept` names media type `mime` (parameters ignored).
pub(crate) fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(mime)
        })
}

async fn query(
    State(app): State<AppState>,
    authz: Authz,
    scope: AuditScope,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<ApiJson<QueryBody>, Error>,
) -> Result<Response> {
    scope.update(|c| c.action = Some("service.query".into()));
    let service = ServiceId::parse(&id)
        .ok()
        .and_then(|id| app.catalog.services.get(&id))
        .ok_or_else(|| Error::NotFound("unknown service".into()))?;
    scope.update(|c| c.service = Some(service.id.to_string()));
    let ApiJson(body) = body?;
    let case_id = body.case_id.as_deref().map(parse_case_id).transpose()?;
    let matter = body.matter.as_deref().map(parse_matter).transpose()?;
    let subject = service
        .subject
        .parse(&body.subject)
        .map_err(|e| Error::BadRequest(format!("subject: {e}")))?;
    let subject_hmac = app.subject_key.hash(&subject);
    scope.update(|c| c.subject_hmac = Some(subject_hmac.clone()));
    let params = bind_params(service, &subject, &body.params)?;
    let fields = requested_fields(service, body.fields.as_deref())?;
    let caller = authz.caller();
    // A named case binds the query even where binding is off: it is checked, not ignored.
    let required = app.purpose_binding == PurposeBinding::Required || case_id.is_some();
    // What the case store says; the policies decide with it as context.
    let refusal = match (&case_id, app.purpose_binding) {
        (Some(case_id), _) => {
            let bound = crate::cases::bind(
                &app,
                &scope,
                &caller.dept,
                case_id,
                matter.as_ref(),
                &subject_hmac,
                Want::Service(&service.id),
            )
            .await?;
            match bound {
                Ok(granted) => {
                    let codes: Vec<&str> = granted.iter().map(|g| g.matter.code.as_str()).collect();
                    scope.update(|c| c.matter = Some(codes.join(",")));
                    None
                }
                Err(why) => Some(why),
            }
        }
        (None, PurposeBinding::Required) => {
            return Err(Error::BadRequest(
                "case_id is required: name the case (办件) this query serves".into(),
            ));
        }
        (None, PurposeBinding::Off) if matter.is_some() => {
            return Err(Error::BadRequest("matter needs a case_id".into()));
        }
        (None, PurposeBinding::Off) => None,
    };
    let binding = Binding {
        required,
        granted: case_id.is_some() && refusal.is_none(),
    };
    authz.require(
        Action::Query,
        Resource::Service(service),
        Policies::binding_context(binding),
        || format!("a query of {} by {}", service.id, caller.dept),
        refusal,
    )?;
    let plan = authz.field_plan(service, &fields)?;
    let plan = match permit_plan(plan, caller, service) {
        Decision::Permit(plan) => plan,
        // No field decision allows anything: the request is denied by default.
        Decision::Deny(reason) => return Err(authz.refuse(reason)),
    };
    let source = app.sources.get(&service.source).ok_or_else(|| {
        Error::Internal(format!(
            "service {} has no source {}",
            service.id, service.source
        ))
    })?;
    let rows = source
        .query(&service.query, &params)
        .instrument(tracing::info_span!("source.query", source = %service.source))
        .await?;
    let truncated = rows.truncated;
    let out = minimise(service, &plan, &rows.batch)?;
    scope.update(|c| c.fields = plan.fields.iter().map(|f| f.name.clone()).collect());
    if wants_arrow(&headers) {
        let body = arrow_stream(&out)?;
        let mut resp = body.into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ARROW_STREAM));
        if truncated {
            resp.headers_mut()
                .insert("paotui-truncated", HeaderValue::from_static("true"));
        }
        return Ok(resp);
    }
    Ok(Json(QueryAnswer {
        service: service.id.to_string(),
        fields: plan
            .fields
            .iter()
            .map(|f| AnswerField {
                name: f.name.clone(),
                masked: f.mask.is_some(),
            })
            .collect(),
        withheld: plan.withheld.clone(),
        rows: json_rows(&out)?,
        truncated,
    })
    .into_response())
}
