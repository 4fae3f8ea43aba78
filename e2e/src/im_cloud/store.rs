//! The stand-in's memory: conversations and their messages, with the vendor's kinds of
//! ids and times.

use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::query::Where;

/// A conversation as the stand-in holds it, for a test to look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// The `objectId`: 24 hex digits, like the vendor's.
    pub id: String,
    pub name: Option<String>,
    /// The `m` field.
    pub members: BTreeSet<String>,
    /// The `attr` object (`Null` when the conversation has none).
    pub attr: Value,
    pub created_at: String,
    pub updated_at: String,
    /// The whole conversation as a query answers it (`objectId`, `m`, `createdAt`, ...).
    pub json: Value,
}

impl Conversation {
    /// `attr.group_id`, when it is a number (as the group service writes it).
    pub fn group_id(&self) -> Option<u64> {
        self.attr.get("group_id").and_then(Value::as_u64)
    }
}

/// A message sent to a conversation through the REST API.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub msg_id: String,
    /// Milliseconds since the epoch, as the answer's `timestamp`.
    pub timestamp: u64,
    pub from_client: String,
    /// The `message` string as sent.
    pub raw: String,
    /// `raw` parsed as JSON (a typed message: `_lctype`, `_lctext`, `_lcattrs`); `Null`
    /// when it is not JSON.
    pub message: Value,
    /// The request's other fields (`transient`, `no_sync`, `push_data`, ...).
    pub options: Map<String, Value>,
}

/// One live conversation. `fields` holds what was set through create and update (`name`,
/// `attr`, anything else); the members and the vendor's own fields are kept apart.
struct Stored {
    seq: u64,
    fields: Map<String, Value>,
    members: BTreeSet<String>,
    created_at: String,
    updated_at: String,
}

impl Stored {
    fn json(&self, id: &str) -> Value {
        let mut object = self.fields.clone();
        object.insert("m".into(), json!(self.members));
        object.insert("objectId".into(), json!(id));
        object.insert("createdAt".into(), json!(self.created_at));
        object.insert("updatedAt".into(), json!(self.updated_at));
        Value::Object(object)
    }

    fn snapshot(&self, id: &str) -> Conversation {
        Conversation {
            id: id.to_string(),
            name: self
                .fields
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string),
            members: self.members.clone(),
            attr: self.fields.get("attr").cloned().unwrap_or(Value::Null),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            json: self.json(id),
        }
    }
}

#[derive(Default)]
pub(super) struct Store {
    live: HashMap<String, Stored>,
    deleted: Vec<Conversation>,
    messages: HashMap<String, Vec<Message>>,
    seq: u64,
    last_timestamp: u64,
}

impl Store {
    /// Stores a new conversation; returns its id and its answer (fields, `objectId`,
    /// `createdAt`, `updatedAt`).
    pub fn create(&mut self, fields: Map<String, Value>, members: BTreeSet<String>) -> Value {
        let id = object_id();
        let now = iso_now();
        self.seq += 1;
        let stored = Stored {
            seq: self.seq,
            fields,
            members,
            created_at: now.clone(),
            updated_at: now,
        };
        let answer = stored.json(&id);
        self.live.insert(id, stored);
        answer
    }

    pub fn exists(&self, id: &str) -> bool {
        self.live.contains_key(id)
    }

    pub fn group_of(&self, id: &str) -> Option<u64> {
        self.live
            .get(id)?
            .fields
            .get("attr")?
            .get("group_id")?
            .as_u64()
    }

    /// The live conversation with `unique` set and exactly these members, for a create
    /// with `"unique": true`.
    pub fn find_unique(&self, members: &BTreeSet<String>) -> Option<Value> {
        self.in_order()
            .into_iter()
            .find(|(_, c)| {
                c.fields.get("unique") == Some(&Value::Bool(true)) && c.members == *members
            })
            .map(|(id, c)| c.json(id))
    }

    /// Sets `fields` on a conversation; returns its new `updatedAt`.
    pub fn update(&mut self, id: &str, fields: Map<String, Value>) -> Option<String> {
        let stored = self.live.get_mut(id)?;
        stored.fields.extend(fields);
        stored.updated_at = iso_now();
        Some(stored.updated_at.clone())
    }

    /// Adds (`add`) or removes members; returns the new `updatedAt`.
    pub fn change_members(
        &mut self,
        id: &str,
        clients: &BTreeSet<String>,
        add: bool,
    ) -> Option<String> {
        let stored = self.live.get_mut(id)?;
        if add {
            stored.members.extend(clients.iter().cloned());
        } else {
            stored.members.retain(|m| !clients.contains(m));
        }
        stored.updated_at = iso_now();
        Some(stored.updated_at.clone())
    }

    pub fn members(&self, id: &str) -> Option<Vec<String>> {
        Some(self.live.get(id)?.members.iter().cloned().collect())
    }

    pub fn delete(&mut self, id: &str) -> bool {
        match self.live.remove(id) {
            Some(stored) => {
                self.deleted.push(stored.snapshot(id));
                true
            }
            None => false,
        }
    }

    /// The answers of the conversations `filter` matches, oldest first.
    pub fn query(&self, filter: &Where, skip: usize, limit: usize) -> Vec<Value> {
        self.in_order()
            .into_iter()
            .map(|(id, c)| c.json(id))
            .filter(|json| filter.matches(json))
            .skip(skip)
            .take(limit)
            .collect()
    }

    /// Stores a message; returns its `msg-id` and `timestamp`.
    pub fn add_message(
        &mut self,
        conversation: &str,
        from_client: String,
        raw: String,
        options: Map<String, Value>,
    ) -> (String, u64) {
        // Strictly increasing, so that history order is send order even within a millisecond.
        let timestamp = now_ms().max(self.last_timestamp + 1);
        self.last_timestamp = timestamp;
        let msg_id = Alphanumeric.sample_string(&mut rand::rng(), 22);
        let message = serde_json::from_str(&raw).unwrap_or(Value::Null);
        self.messages
            .entry(conversation.to_string())
            .or_default()
            .push(Message {
                msg_id: msg_id.clone(),
                timestamp,
                from_client,
                raw,
                message,
                options,
            });
        (msg_id, timestamp)
    }

    /// Every message sent to a conversation, in send order (also after it was deleted).
    pub fn messages(&self, conversation: &str) -> Vec<Message> {
        self.messages.get(conversation).cloned().unwrap_or_default()
    }

    pub fn conversations(&self) -> Vec<Conversation> {
        self.in_order()
            .into_iter()
            .map(|(id, c)| c.snapshot(id))
            .collect()
    }

    pub fn conversation(&self, id: &str) -> Option<Conversation> {
        self.live.get(id).map(|c| c.snapshot(id))
    }

    pub fn deleted(&self) -> Vec<Conversation> {
        self.deleted.clone()
    }

    fn in_order(&self) -> Vec<(&str, &Stored)> {
        let mut all: Vec<_> = self.live.iter().map(|(id, c)| (id.as_str(), c)).collect();
        all.sort_by_key(|(_, c)| c.seq);
        all
    }
}

/// Like the vendor's ids (MongoDB object ids): the creation time in seconds, then random
/// bits; 24 lowercase hex digits.
fn object_id() -> String {
    format!("{:08x}{:016x}", now_ms() / 1000, rand::random::<u64>())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The vendor's time format: UTC with milliseconds, `2018-01-16T03:40:32.814Z`.
pub(super) fn iso_now() -> String {
    let t = OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}
