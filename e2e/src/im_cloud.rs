//! A stand-in for one app's IM cloud: the vendor's realtime REST API 1.2 (LeanCloud,
//! `/1.2/rtm/conversations...`), served in-process on 127.0.0.1 for the tests of group
//! mirroring, since the real one cannot be reached from here.
//!
//! It follows the vendor's documentation and refuses what the documentation does not
//! allow (see `im_cloud/rest.rs` for what was verified and what was chosen where the documentation
//! is silent), keeps conversations, members and messages in memory for a test to look at
//! or change "behind the service's back", logs every request, and injects faults: 429,
//! 500, slow answers and dropped connections, at random or on demand, before or after the
//! change is made (see `im_cloud/faults.rs`).
//!
//! ```ignore
//! let cloud = ImCloudStandIn::start(&app.app_id, &app.master_key).await;
//! cloud.set_failure_rate(0.3);
//! // ... point the app's IM cloud settings at cloud.url(), write groups ...
//! cloud.clear_faults();
//! assert_eq!(cloud.conversations_for_group(7).len(), 1);
//! ```

mod faults;
mod query;
mod quota;
mod rest;
/// Also the Tencent stand-in's connection serving (`serve_on_loopback`).
pub(crate) mod server;
mod store;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::{Method, Uri};
use serde_json::{Map, Value};
use tokio::task::JoinHandle;

pub use faults::{Fault, FaultKind, FaultTiming};
pub use store::{Conversation, Message};

use faults::Faults;
use rest::{Answer, App};
use store::Store;

/// One request the stand-in received, and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The status answered; `None` while the answer is pending, and for a connection
    /// closed without one.
    pub status: Option<u16>,
    /// The injected fault, if any (a poisoned id is not a fault here: see `status`).
    pub fault: Option<Fault>,
    /// Whether the request changed anything.
    pub applied: bool,
}

/// The running stand-in; it stops accepting connections when dropped.
pub struct ImCloudStandIn {
    url: String,
    shared: Arc<Shared>,
    accepting: JoinHandle<()>,
}

struct Shared {
    app: App,
    inner: Mutex<Inner>,
}

struct Inner {
    store: Store,
    faults: Faults,
    log: Vec<LoggedRequest>,
    any_client_ids: bool,
    quota: Option<quota::MessageQuota>,
}

impl ImCloudStandIn {
    /// Serves the app `app_id`, whose requests must carry `X-LC-Id: <app_id>` and
    /// `X-LC-Key: <master_key>,master`, on a free port of 127.0.0.1.
    pub async fn start(app_id: &str, master_key: &str) -> Self {
        let shared = Arc::new(Shared {
            app: App {
                id: app_id.to_string(),
                master_key: master_key.to_string(),
            },
            inner: Mutex::new(Inner {
                store: Store::default(),
                faults: Faults::default(),
                log: Vec::new(),
                any_client_ids: false,
                quota: None,
            }),
        });
        let (url, accepting) = server::listen(shared.clone()).await;
        Self {
            url,
            shared,
            accepting,
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash: the app's server address.
    pub fn url(&self) -> &str {
        &self.url
    }

    // --- what the stand-in holds ---------------------------------------------------

    /// The live conversations, oldest first.
    pub fn conversations(&self) -> Vec<Conversation> {
        self.shared.lock().store.conversations()
    }

    pub fn conversation(&self, id: &str) -> Option<Conversation> {
        self.shared.lock().store.conversation(id)
    }

    /// The live conversations whose `attr.group_id` is `group_id`.
    pub fn conversations_for_group(&self, group_id: u64) -> Vec<Conversation> {
        let mut all = self.conversations();
        all.retain(|c| c.group_id() == Some(group_id));
        all
    }

    /// The conversations deleted through the API or [`Self::delete_conversation_directly`],
    /// as they were when deleted.
    pub fn deleted_conversations(&self) -> Vec<Conversation> {
        self.shared.lock().store.deleted()
    }

    /// The messages sent to a conversation, in send order (kept after it is deleted).
    pub fn messages(&self, conversation_id: &str) -> Vec<Message> {
        self.shared.lock().store.messages(conversation_id)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    // --- changes behind the service's back -------------------------------------------

    /// A conversation made by someone else (another backend, the console); returns its id.
    pub fn create_conversation_directly(
        &self,
        name: &str,
        members: &[&str],
        attr: Value,
    ) -> String {
        let mut fields = Map::new();
        fields.insert("name".into(), Value::String(name.into()));
        if !attr.is_null() {
            fields.insert("attr".into(), attr);
        }
        let members: BTreeSet<String> = members.iter().map(|m| m.to_string()).collect();
        let json = self.shared.lock().store.create(fields, members);
        json["objectId"].as_str().unwrap().to_string()
    }

    /// Panics if the conversation does not exist.
    pub fn add_member_directly(&self, conversation_id: &str, client_id: &str) {
        self.change_member(conversation_id, client_id, true);
    }

    /// Panics if the conversation does not exist.
    pub fn remove_member_directly(&self, conversation_id: &str, client_id: &str) {
        self.change_member(conversation_id, client_id, false);
    }

    /// Panics if the conversation does not exist.
    pub fn delete_conversation_directly(&self, conversation_id: &str) {
        assert!(
            self.shared.lock().store.delete(conversation_id),
            "no conversation {conversation_id}"
        );
    }

    fn change_member(&self, conversation_id: &str, client_id: &str, add: bool) {
        let clients = BTreeSet::from([client_id.to_string()]);
        let changed = self
            .shared
            .lock()
            .store
            .change_members(conversation_id, &clients, add);
        assert!(changed.is_some(), "no conversation {conversation_id}");
    }

    /// Accepts any non-empty string as a client id, instead of the vendor's documented
    /// form (letters, digits, `_`, `-`, not starting with a digit, at most 64 characters).
    pub fn accept_any_client_ids(&self, any: bool) {
        self.shared.lock().any_client_ids = any;
    }

    /// The vendor's message quota: past `per_minute` messages in a minute, every message
    /// is refused with 429 for `refusal` (the vendor's "about a minute"). `None`: no quota.
    pub fn set_message_quota(&self, quota: Option<(usize, Duration)>) {
        self.shared.lock().quota = quota.map(|(n, refusal)| quota::MessageQuota::new(n, refusal));
    }

    /// How many messages the quota refused (429s to `POST .../messages`).
    pub fn messages_refused(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                r.method == "POST" && r.path.ends_with("/messages") && r.status == Some(429)
            })
            .count()
    }

    // --- faults --------------------------------------------------------------------

    /// The fraction of requests (chosen at random) that fail, each with a kind chosen at
    /// random among [`Self::set_fault_kinds`] (all by default), before or after the change.
    pub fn set_failure_rate(&self, rate: f64) {
        self.shared.lock().faults.set_rate(rate);
    }

    pub fn set_fault_kinds(&self, kinds: &[FaultKind]) {
        self.shared.lock().faults.set_kinds(kinds);
    }

    /// How long a slow answer takes: set it longer than the client's time-out (10 s by
    /// default).
    pub fn set_slow_delay(&self, delay: Duration) {
        self.shared.lock().faults.slow_delay = delay;
    }

    /// The next request (of any kind) fails with `fault`; queued faults come in order,
    /// before any random one.
    pub fn inject_next(&self, fault: Fault) {
        self.shared.lock().faults.queue(fault);
    }

    /// Every request about this conversation is refused with `status` and the vendor's
    /// body for it (404: code 4303; 401; 429; 500; 503), from now until [`Self::clear_faults`].
    pub fn fail_always_for_conversation(&self, conversation_id: &str, status: u16) {
        self.shared
            .lock()
            .faults
            .poison_conversation(conversation_id, status);
    }

    /// Likewise for the group: a create with this `attr.group_id`, a query for it, and any
    /// request about its conversation.
    pub fn fail_always_for_group(&self, group_id: u64, status: u16) {
        self.shared.lock().faults.poison_group(group_id, status);
    }

    /// No fault but this: like [`Self::clear_faults`] then [`Self::fail_always_for_group`],
    /// at once (no request in between sees the group answered).
    pub fn fail_always_only_for_group(&self, group_id: u64, status: u16) {
        let mut inner = self.shared.lock();
        inner.faults.clear();
        inner.faults.poison_group(group_id, status);
    }

    /// No more faults: no rate, no queued faults, no poisoned ids (the slow delay stays).
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }
}

impl Drop for ImCloudStandIn {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Shared {
    /// A test that panicked while holding the lock leaves the state as it was; the other
    /// tests' stand-ins are their own.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs a new request and picks its fault; returns the log entry, the fault and the
    /// slow delay.
    fn begin(&self, method: &Method, uri: &Uri) -> (usize, Option<Fault>, Duration) {
        let mut inner = self.lock();
        let fault = inner.faults.pick();
        inner.log.push(LoggedRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            status: None,
            fault,
            applied: false,
        });
        (inner.log.len() - 1, fault, inner.faults.slow_delay)
    }

    /// Answers the request, and logs at once whether it changed anything: a test may look
    /// before a slow answer is sent.
    fn handle(&self, entry: usize, request: &rest::Request) -> Answer {
        let mut inner = self.lock();
        let answer = rest::handle(&self.app, &mut inner, request);
        inner.log[entry].applied = answer.applied;
        answer
    }
}
