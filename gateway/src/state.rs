//! Everything a request handler needs, built once at start-up.

use std::collections::HashMap;
use std::sync::Arc;

use paotui_adapters::DataSource;
use paotui_certs::{GatewayKey, Jwks, SubjectKey};
use paotui_policies::catalog::Catalog;
use paotui_policies::cedar::Policies;
use paotui_repository::{AuditLog, Store};

use crate::config::Limits;
use crate::vault::Vault;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub audit: AuditLog,
    /// Departments whose systems may read the audit log.
    pub auditors: Vec<paotui_certs::DeptCode>,
    pub catalog: Catalog,
    pub sources: HashMap<String, Arc<dyn DataSource>>,
    /// The access policy (Cedar), swapped whole on reload.
    pub policy: PolicyHandle,
    pub key: Arc<GatewayKey>,
    /// The gateway's key and the license issuers' keys, as served at `/v1/keys`.
    pub jwks: Jwks,
    pub subject_key: SubjectKey,
    pub limits: Limits,
    pub vault: Vault,
    /// Working days for case deadlines (`[calendar]`).
    pub calendar: paotui_policies::calendar::Calendar,
    /// Whether data queries must name an open case (`[policy] purpose_binding`).
    pub purpose_binding: crate::config::PurposeBinding,
    /// Limits of auditor SQL (`[sql]`).
    pub sql: crate::config::SqlConfig,
    /// The supervision rules (`[alerts] rules`, or the built-in ones).
    pub alert_rules: Vec<crate::alerts::Rule>,
}

/// The current access policy; a reload replaces it for requests that start afterwards.
pub struct PolicyHandle(std::sync::RwLock<Arc<Policies>>);

impl PolicyHandle {
    pub fn new(p: Arc<Policies>) -> Self {
        PolicyHandle(std::sync::RwLock::new(p))
    }

    pub fn current(&self) -> Arc<Policies> {
        // A poisoned lock still holds a complete policy (replacement is one assignment).
        match self.0.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    pub fn replace(&self, p: Arc<Policies>) {
        match self.0.write() {
            Ok(mut g) => *g = p,
            Err(e) => *e.into_inner() = p,
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
