//! Authorization: the Cedar policies decide every API action, through [`Authz`].
//!
//! Handlers take an [`Authz`] (an extractor: the caller, the policy set current when the
//! request started, and its audit scope) and ask it before they act. Each decision is
//! written into the request's audit entry with the ids of the policies that determined it.
//!
//! Handlers cannot forget to ask: the audit layer ([`crate::audit`]) refuses to send any
//! success answer whose request was not allowed by a decision here, replacing it with a
//! 403 (deny by default, as Cedar itself does) and logging the route as a bug.

use std::sync::Arc;

use paotui_certs::SystemIdentity;
use paotui_policies::cedar::{Action, ContextValue, Policies, Resource, Verdict, Who};
use paotui_repository::PolicyDecision;

use crate::audit::{AuditScope, Identity};
use crate::state::AppState;
use crate::{Error, Result};

/// Context pairs of a decision (see the schema's `context` of each action).
pub type CedarContext = Vec<(String, ContextValue)>;

/// Asks the policies on behalf of one caller, recording each verdict in `scope`.
#[derive(Clone)]
pub struct Authz {
    policy: Arc<Policies>,
    caller: SystemIdentity,
    /// The member of staff the caller names (`Paotui-Operator`), an `Operator` entity.
    operator: Option<String>,
    scope: AuditScope,
}

impl Authz {
    pub fn new(
        policy: Arc<Policies>,
        caller: SystemIdentity,
        operator: Option<String>,
        scope: AuditScope,
    ) -> Self {
        Authz {
            policy,
            caller,
            operator,
            scope,
        }
    }

    fn who(&self) -> Who<'_> {
        Who {
            system: &self.caller,
            operator: self.operator.as_deref(),
        }
    }

    pub fn caller(&self) -> &SystemIdentity {
        &self.caller
    }

    /// The policy set, for decisions that are not the request's own (which services to
    /// list, how each field leaves).
    pub fn policies(&self) -> &Policies {
        &self.policy
    }

    /// The same caller and policies, recording into another scope (one per imported row).
    pub fn with_scope(&self, scope: AuditScope) -> Authz {
        Authz {
            scope,
            ..self.clone()
        }
    }

    /// Asks the policies without recording: one of several verdicts a request combines
    /// (one per matter of a new case, one per license type of a listing).
    pub fn verdict(
        &self,
        action: Action,
        resource: Resource<'_>,
        context: CedarContext,
    ) -> Result<Verdict> {
        let verdict = self
            .policy
            .authorize(self.who(), action, resource, context)
            .map_err(policy_failure)?;
        if !verdict.errors.is_empty() {
            // A policy that fails to evaluate is skipped (it can only deny); say so.
            tracing::warn!(action = action.name(), errors = ?verdict.errors, "policy errors");
        }
        Ok(verdict)
    }

    /// Decides `action` on `resource` and records the verdict as the request's decision.
    pub fn decide(
        &self,
        action: Action,
        resource: Resource<'_>,
        context: CedarContext,
    ) -> Result<Verdict> {
        let verdict = self.verdict(action, resource, context)?;
        self.record(verdict.allowed, verdict.policies.clone());
        Ok(verdict)
    }

    /// How each of `fields` of `service` leaves for this caller (the query itself was
    /// decided by [`Authz::require`]).
    pub fn field_plan(
        &self,
        service: &paotui_policies::catalog::Service,
        fields: &[String],
    ) -> Result<paotui_policies::access::FieldPlan> {
        self.policy
            .field_plan(self.who(), service, fields)
            .map_err(policy_failure)
    }

    /// Records the request's decision when it combines several verdicts (e.g. one per
    /// license type of a listing): allowed, and the policies that determined it.
    pub fn record(&self, allowed: bool, policies: Vec<String>) {
        self.scope
            .update(|c| c.decision = Some(PolicyDecision { allowed, policies }));
    }

    /// Denies by default — nothing the request could be granted was allowed (no field of
    /// a query may leave, no license type of a listing may be fetched) — as a 403.
    pub fn refuse(&self, reason: String) -> Error {
        self.record(false, vec![]);
        Error::Forbidden(reason)
    }

    /// Decides, and turns a denial into an audited 403. `what` names the request in the
    /// reason ("a query of population.person by SC"); `because`, when given, is the fact
    /// behind the denial found outside the policies (e.g. why the case does not grant it).
    pub fn require(
        &self,
        action: Action,
        resource: Resource<'_>,
        context: CedarContext,
        what: impl FnOnce() -> String,
        because: Option<String>,
    ) -> Result<()> {
        let verdict = self.decide(action, resource, context)?;
        if verdict.allowed {
            return Ok(());
        }
        let policy = verdict.reason(&what());
        Err(Error::Forbidden(match because {
            Some(why) => format!("{why} ({policy})"),
            None => policy,
        }))
    }
}

/// A decision that could not be evaluated (entities the schema rejects): a bug here, not
/// bad input.
fn policy_failure(e: paotui_policies::Error) -> Error {
    Error::Internal(format!("policy evaluation: {e}"))
}

impl axum::extract::FromRequestParts<AppState> for Authz {
    type Rejection = Error;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &AppState,
    ) -> Result<Self> {
        let Identity(caller) = Identity::from_request_parts(parts, app).await?;
        let scope = AuditScope::from_request_parts(parts, app).await?;
        Ok(Authz::new(
            app.policy.current(),
            caller,
            crate::audit::operator(&parts.headers),
            scope,
        ))
    }
}
