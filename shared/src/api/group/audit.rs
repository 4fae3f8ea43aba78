//! One audit line per group change: who, what, which group, which members, outcome.

use axum::response::Response;

use crate::api::error::ApiError;
use crate::model::Caller;

/// One audit line per mutating request: who, what, which group, which members, outcome.
/// It never holds a token, a key or a body.
pub(super) struct Audit<'a> {
    pub(super) caller: &'a Caller,
    pub(super) action: &'static str,
    pub(super) group_id: Option<u64>,
    pub(super) members: String,
}

impl<'a> Audit<'a> {
    pub(super) fn new(caller: &'a Caller, action: &'static str) -> Self {
        Self {
            caller,
            action,
            group_id: None,
            members: String::new(),
        }
    }

    pub(super) fn finish(self, result: Result<Response, ApiError>) -> Result<Response, ApiError> {
        let status = match &result {
            Ok(resp) => resp.status(),
            Err(e) => e.status(),
        };
        let outcome = match status.as_u16() {
            200..=299 => "ok",
            403 => "denied",
            404 => "not_found",
            409 => "conflict",
            400..=499 => "rejected",
            _ => "error",
        };
        tracing::info!(
            audit = self.action,
            app_id = %self.caller.app_id,
            caller = %self.caller.client_id,
            app_admin = self.caller.app_admin,
            group_id = self.group_id,
            members = %self.members,
            outcome,
            status = status.as_u16(),
            "audit"
        );
        result
    }
}
