//! Condition and update expressions, built in pieces with their placeholders; the
//! group rules (live, in the caller's app, managed or owned by the caller) are written
//! here once.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::layout::{number, s, Item, ACTIVE};
use crate::model::Caller;

/// A condition (or update) expression with its placeholders, built in pieces.
#[derive(Default, Clone)]
pub(super) struct Expr {
    pub(super) text: String,
    pub(super) names: HashMap<String, String>,
    pub(super) values: Item,
}

impl Expr {
    pub(super) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            ..Self::default()
        }
    }

    pub(super) fn name(mut self, placeholder: &str, attribute: &str) -> Self {
        self.names.insert(placeholder.into(), attribute.into());
        self
    }

    pub(super) fn value(mut self, placeholder: &str, v: AttributeValue) -> Self {
        self.values.insert(placeholder.into(), v);
        self
    }

    pub(super) fn and(mut self, clause: &str) -> Self {
        if !self.text.is_empty() {
            self.text.push_str(" AND ");
        }
        self.text.push_str(clause);
        self
    }

    /// The group exists, is live and belongs to the caller's app.
    pub(super) fn live_in_app(caller: &Caller) -> Self {
        Self::default()
            .and("attribute_exists(pk) AND #status = :active AND #app = :app")
            .name("#status", "status")
            .name("#app", "app_id")
            .value(":active", s(ACTIVE))
            .value(":app", s(caller.app_id.as_str()))
    }

    /// ...and the caller is its owner or one of its admins (app admins always are).
    pub(super) fn managed_by(self, caller: &Caller) -> Self {
        if caller.app_admin {
            return self;
        }
        self.and("(#owner = :caller OR contains(#admins, :caller))")
            .name("#owner", "owner")
            .name("#admins", "admins")
            .value(":caller", s(caller.client_id.as_str()))
    }

    /// ...and the caller is its owner (app admins always are).
    pub(super) fn owned_by(self, caller: &Caller) -> Self {
        if caller.app_admin {
            return self;
        }
        self.and("#owner = :caller")
            .name("#owner", "owner")
            .value(":caller", s(caller.client_id.as_str()))
    }

    /// ...and none of `ids` is the owner.
    pub(super) fn owner_not_in(self, ids: &[String]) -> Self {
        if ids.is_empty() {
            return self;
        }
        let placeholders: Vec<String> = (0..ids.len()).map(|i| format!(":o{i}")).collect();
        let mut e = self
            .and(&format!("NOT (#owner IN ({}))", placeholders.join(", ")))
            .name("#owner", "owner");
        for (p, id) in placeholders.iter().zip(ids) {
            e = e.value(p, s(id.as_str()));
        }
        e
    }

    /// ...and the group's version is one of `versions`.
    pub(super) fn version_in(self, versions: &[u64]) -> Self {
        let placeholders: Vec<String> = (0..versions.len()).map(|i| format!(":v{i}")).collect();
        let mut e = self
            .and(&format!("#version IN ({})", placeholders.join(", ")))
            .name("#version", "version");
        for (p, v) in placeholders.iter().zip(versions) {
            e = e.value(p, number(*v));
        }
        e
    }

    /// Merges another expression's placeholders (for an update with a condition).
    pub(super) fn with_placeholders_of(mut self, other: &Expr) -> Self {
        self.names.extend(other.names.clone());
        self.values.extend(other.values.clone());
        self
    }
}
