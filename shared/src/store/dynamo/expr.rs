//! Condition and update expressions, built in pieces with their placeholders; the
//! group rules (live, in the caller's app, managed or owned by the caller) are written
//! here once. Nothing outside this module edits an expression's text: a condition grows
//! by [`Expr::and`], an update by its clauses ([`UpdateExpr`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::layout::{number, s, Item, ACTIVE};
use crate::model::Caller;

/// A condition expression with its placeholders, built in pieces.
#[derive(Default, Clone)]
pub(super) struct Expr {
    text: String,
    names: HashMap<String, String>,
    values: Item,
}

impl Expr {
    pub(super) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            ..Self::default()
        }
    }

    pub(super) fn text(&self) -> &str {
        &self.text
    }

    pub(super) fn names(&self) -> &HashMap<String, String> {
        &self.names
    }

    pub(super) fn values(&self) -> &Item {
        &self.values
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
}

/// An update expression, built by its clauses and rendered in DynamoDB's syntax
/// (`SET a = :a, b = :b ADD c :c DELETE d :d REMOVE e`), with its placeholders.
#[derive(Default, Clone)]
pub(super) struct UpdateExpr {
    set: Vec<String>,
    add: Vec<String>,
    delete: Vec<String>,
    remove: Vec<String>,
    names: HashMap<String, String>,
    values: Item,
}

impl UpdateExpr {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// A `SET` action: `attribute = value`.
    pub(super) fn set(mut self, clause: &str) -> Self {
        self.set.push(clause.to_owned());
        self
    }

    /// An `ADD` action: `attribute value` (a number added, or elements to a set).
    pub(super) fn add(mut self, clause: &str) -> Self {
        self.add.push(clause.to_owned());
        self
    }

    /// A `DELETE` action: `attribute value` (elements taken from a set).
    pub(super) fn delete(mut self, clause: &str) -> Self {
        self.delete.push(clause.to_owned());
        self
    }

    /// A `REMOVE` action: the attribute (or a list of them) removed.
    pub(super) fn remove(mut self, attribute: &str) -> Self {
        self.remove.push(attribute.to_owned());
        self
    }

    pub(super) fn name(mut self, placeholder: &str, attribute: &str) -> Self {
        self.names.insert(placeholder.into(), attribute.into());
        self
    }

    pub(super) fn value(mut self, placeholder: &str, v: AttributeValue) -> Self {
        self.values.insert(placeholder.into(), v);
        self
    }

    /// The expression, its actions in the order `SET`, `ADD`, `DELETE`, `REMOVE`.
    pub(super) fn text(&self) -> String {
        [
            ("SET", &self.set),
            ("ADD", &self.add),
            ("DELETE", &self.delete),
            ("REMOVE", &self.remove),
        ]
        .into_iter()
        .filter(|(_, clauses)| !clauses.is_empty())
        .map(|(action, clauses)| format!("{action} {}", clauses.join(", ")))
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// The placeholders of this update and of its condition `cond`, together (what an
    /// update with a condition sends).
    pub(super) fn placeholders_with(&self, cond: &Expr) -> (HashMap<String, String>, Item) {
        let mut names = self.names.clone();
        names.extend(cond.names.clone());
        let mut values = self.values.clone();
        values.extend(cond.values.clone());
        (names, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_renders_its_actions_in_dynamodbs_syntax() {
        assert_eq!(UpdateExpr::new().text(), "");
        assert_eq!(
            UpdateExpr::new().set("a = :a").text(),
            "SET a = :a",
            "one action, one clause"
        );
        // Actions in a fixed order, whatever the order they were given in; clauses of one
        // action in theirs, joined by commas.
        let u = UpdateExpr::new()
            .remove("e")
            .delete("#admins :d")
            .add("version :one")
            .set("a = :a")
            .add("member_count :n")
            .set("b = if_not_exists(b, :b)")
            .remove("#held, #held_why");
        assert_eq!(
            u.text(),
            "SET a = :a, b = if_not_exists(b, :b) ADD version :one, member_count :n \
             DELETE #admins :d REMOVE e, #held, #held_why"
        );
        assert_eq!(
            UpdateExpr::new()
                .add("places_left :back")
                .remove("#pa")
                .text(),
            "ADD places_left :back REMOVE #pa"
        );
    }

    #[test]
    fn an_update_sends_its_placeholders_with_its_conditions() {
        let u = UpdateExpr::new()
            .set("#owner = :new")
            .name("#owner", "owner")
            .value(":new", s("bob"));
        let cond = Expr::new("#owner = :caller")
            .name("#owner", "owner")
            .and("#status = :active")
            .name("#status", "status")
            .value(":caller", s("amy"))
            .value(":active", s(ACTIVE));
        assert_eq!(cond.text(), "#owner = :caller AND #status = :active");
        let (names, values) = u.placeholders_with(&cond);
        assert_eq!(
            names,
            HashMap::from([
                ("#owner".to_owned(), "owner".to_owned()),
                ("#status".to_owned(), "status".to_owned()),
            ])
        );
        let mut keys: Vec<&str> = values.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, [":active", ":caller", ":new"]);
        assert_eq!(values[":new"], s("bob"));
    }
}
