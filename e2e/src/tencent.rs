//! A stand-in for Tencent Cloud IM's server REST API (`/v4/<service>/<command>`), served
//! in-process on 127.0.0.1 for the tests of the Tencent mirror, since the real one cannot
//! be reached from here. It follows `../shared/notes/tencent-im.md` (in the workspace's
//! notes) and refuses what the notes do not allow; where they are silent it takes the
//! strict reading and says so beside the rule (`tencent/rest.rs`, `accounts.rs`,
//! `groups.rs`).
//!
//! - every call's admin UserSig is checked by the stand-in's own implementation
//!   (`tencent/usersig.rs`), never the service's;
//! - accounts must be imported before they own or join a group (the admins exist);
//! - each command has a rate limit, per second, like Tencent's (`tencent/limiter.rs`);
//! - faults, at random or on demand, before or after the change (`tencent/faults.rs`),
//!   and groups whose calls fail forever with a code;
//! - what it holds, and a log of the calls (never their UserSig), are there for a test
//!   to read, and to change "behind the service's back".
//!
//! ```ignore
//! let tencent = TencentStandIn::start(1_400_000_001, &key, &["administrator"]);
//! tencent.set_failure_rate(0.3);
//! // ... point the app's Tencent settings at tencent.url(), write groups ...
//! tencent.clear_faults();
//! assert_eq!(tencent.group("7").unwrap().owner.as_deref(), Some("alice"));
//! ```

mod accounts;
mod body;
pub mod callback;
mod faults;
mod groups;
mod limiter;
mod rest;
mod server;
mod store;
mod usersig;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

pub use callback::{CallbackLogged, CallbackTarget, Tamper};
pub use faults::{Fault, FaultKind, FaultTiming};
pub use store::{Notification, Role, TencentGroup};

use faults::Faults;
use limiter::Limiter;
use store::Store;

/// One call the stand-in received, and what became of it. Never its query (which carries
/// the admin's UserSig) nor its body.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    /// `<service>/<command>`, as in the path after `/v4/` (whatever the path was, also
    /// for one the stand-in does not serve).
    pub command: String,
    /// The body's `GroupId`, when it has one.
    pub group_id: Option<String>,
    /// The HTTP status; `None` while the answer is pending, and for a connection closed
    /// without one.
    pub status: Option<u16>,
    /// The answer's `ErrorCode` (0 for OK), when the answer was Tencent's JSON.
    pub error_code: Option<u32>,
    /// The injected fault, if any (a poisoned group is not a fault: see `error_code`).
    pub fault: Option<Fault>,
    /// Whether the call changed anything.
    pub applied: bool,
}

/// The running stand-in; it stops accepting connections when dropped.
pub struct TencentStandIn {
    url: String,
    shared: Arc<Shared>,
    accepting: JoinHandle<()>,
}

/// The one app the stand-in serves.
struct App {
    sdk_app_id: u64,
    key: String,
    admins: BTreeSet<String>,
}

struct Shared {
    app: App,
    inner: Mutex<Inner>,
}

struct Inner {
    store: Store,
    faults: Faults,
    limiter: Limiter,
    log: Vec<LoggedRequest>,
    /// Accounts whose joins the app's "before invite" callback refuses.
    refused_joins: BTreeSet<String>,
    /// The accounts the callback refused in the call being handled (set and cleared
    /// under the one lock that call is handled in).
    refused_now: BTreeSet<String>,
    /// Where callbacks go, when the app has a callback URL.
    callback: Option<CallbackTarget>,
    /// Every callback sent, in the order answered.
    callbacks: Vec<CallbackLogged>,
}

impl Inner {
    fn refuses_join(&self, account: &str) -> bool {
        self.refused_joins.contains(account) || self.refused_now.contains(account)
    }
}

impl TencentStandIn {
    /// Serves the app `sdk_app_id` keyed with `secret_key`, whose admins (which exist as
    /// accounts from the start) are `admins`, on a free port of 127.0.0.1. Must be called
    /// inside a tokio runtime (it spawns the accepting task).
    pub fn start(sdk_app_id: u64, secret_key: &str, admins: &[&str]) -> Self {
        assert!(!admins.is_empty(), "every Tencent app has an admin");
        let admins: BTreeSet<String> = admins.iter().map(|a| a.to_string()).collect();
        let mut store = Store::default();
        store.accounts = admins.clone();
        let shared = Arc::new(Shared {
            app: App {
                sdk_app_id,
                key: secret_key.to_string(),
                admins,
            },
            inner: Mutex::new(Inner {
                store,
                faults: Faults::default(),
                limiter: Limiter::default(),
                log: Vec::new(),
                refused_joins: BTreeSet::new(),
                refused_now: BTreeSet::new(),
                callback: None,
                callbacks: Vec::new(),
            }),
        });
        let (url, accepting) = server::listen(shared.clone());
        Self {
            url,
            shared,
            accepting,
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash: the app's REST server.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn sdk_app_id(&self) -> u64 {
        self.shared.app.sdk_app_id
    }

    // --- what the stand-in holds ---------------------------------------------------

    pub fn group(&self, id: &str) -> Option<TencentGroup> {
        self.shared
            .lock()
            .store
            .groups
            .get(id)
            .map(|s| s.group.clone())
    }

    /// The live groups, oldest first.
    pub fn groups(&self) -> Vec<TencentGroup> {
        self.shared.lock().store.groups_in_order()
    }

    /// The groups destroyed (through the API or [`Self::destroy_group_directly`]), as they
    /// were, in order.
    pub fn destroyed_groups(&self) -> Vec<TencentGroup> {
        self.shared.lock().store.destroyed.clone()
    }

    /// The group's members in the order they joined (the member list's order), with roles.
    pub fn members_in_order(&self, group_id: &str) -> Option<Vec<(String, Role)>> {
        self.shared.lock().store.members_in_order(group_id)
    }

    /// Every account, the admins included.
    pub fn accounts(&self) -> BTreeSet<String> {
        self.shared.lock().store.accounts.clone()
    }

    /// The system notifications sent to a group, in order (kept after it is destroyed).
    pub fn notifications(&self, group_id: &str) -> Vec<Notification> {
        self.shared
            .lock()
            .store
            .notifications
            .get(group_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Every call so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// How many calls each command received (faults and refusals included).
    pub fn call_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for request in &self.shared.lock().log {
            *counts.entry(request.command.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// How many calls the rate limiter refused (not counting injected rate-limit faults).
    pub fn rate_limited_count(&self) -> usize {
        self.shared.lock().limiter.refused
    }

    // --- changes behind the service's back -------------------------------------------

    /// A group "someone else" made (a client, through the SDK): a create of its id through
    /// REST answers 10021, where one the admin made answers 10025. Imports the owner.
    /// Panics if the id is taken.
    pub fn create_foreign_group(&self, id: &str, owner: &str) {
        let mut inner = self.shared.lock();
        assert!(
            !inner.store.groups.contains_key(id),
            "group {id} exists already"
        );
        inner.store.accounts.insert(owner.to_string());
        inner.store.insert(
            TencentGroup {
                id: id.to_string(),
                group_type: "Public".into(),
                name: format!("made by {owner}"),
                owner: Some(owner.to_string()),
                members: BTreeMap::from([(owner.to_string(), Role::Owner)]),
                apply_join_option: "NeedPermission".into(),
                introduction: String::new(),
                notification: String::new(),
                face_url: String::new(),
                max_member_count: 2000,
                app_defined_data: Value::Null,
                created_by_admin: false,
            },
            &[owner],
        );
    }

    /// Imports accounts, as a client's first login does.
    pub fn import_accounts_directly(&self, ids: &[&str]) {
        let mut inner = self.shared.lock();
        inner
            .store
            .accounts
            .extend(ids.iter().map(|id| id.to_string()));
    }

    /// Adds a member (importing it), as a client joining through the SDK. Panics if the
    /// group does not exist or it is a member already.
    pub fn add_member_directly(&self, group_id: &str, member: &str, role: Role) {
        let mut inner = self.shared.lock();
        inner.store.accounts.insert(member.to_string());
        assert!(
            inner.store.add_member(group_id, member, role),
            "no group {group_id}, or {member} is in it"
        );
    }

    /// Removes a member (the owner too, leaving the group without one), as a client
    /// quitting. Panics if it was not a member.
    pub fn remove_member_directly(&self, group_id: &str, member: &str) {
        assert!(
            self.shared.lock().store.remove_member(group_id, member),
            "{member} is not in group {group_id}"
        );
    }

    /// Renames a group, as the console does. Panics if it does not exist.
    pub fn rename_group_directly(&self, group_id: &str, name: &str) {
        let mut inner = self.shared.lock();
        let stored = inner.store.groups.get_mut(group_id);
        stored.expect("no such group").group.name = name.to_string();
    }

    /// Destroys a group, as the console does. Panics if it does not exist.
    pub fn destroy_group_directly(&self, group_id: &str) {
        assert!(
            self.shared.lock().store.destroy(group_id),
            "no group {group_id}"
        );
    }

    /// From now on `add_group_member` answers `Result` 0 (failed) for this account, as
    /// when the app's "before invite" callback refuses it (notes, "Callbacks").
    pub fn refuse_joins_of(&self, account: &str) {
        self.shared.lock().refused_joins.insert(account.to_string());
    }

    // --- callbacks (notes, "Callbacks"; `tencent/callback.rs`) -------------------------

    /// From now on the stand-in calls `target` for the documented events (with the token
    /// it names), the app's REST calls' own included.
    pub fn set_callback(&self, target: CallbackTarget) {
        assert!(
            target.url.starts_with("http://127.0.0.1:"),
            "callbacks go to loopback only: {}",
            target.url
        );
        self.shared.lock().callback = Some(target);
    }

    /// Every callback sent so far, in the order answered.
    pub fn callbacks(&self) -> Vec<CallbackLogged> {
        self.shared.lock().callbacks.clone()
    }

    fn target(&self) -> CallbackTarget {
        self.shared
            .lock()
            .callback
            .clone()
            .expect("no callback URL: set_callback first")
    }

    /// Sends one callback as given (any body, spoiled as `tamper` says) and logs it.
    pub async fn send_callback(
        &self,
        command: &str,
        opt_platform: &str,
        body: &[u8],
        tamper: Tamper,
    ) -> CallbackLogged {
        let target = self.target();
        let logged = callback::post_callback(
            &target,
            self.sdk_app_id(),
            command,
            opt_platform,
            body,
            tamper,
        )
        .await;
        self.shared.lock().callbacks.push(logged.clone());
        logged
    }

    /// A client's invite through the SDK (`operator` on `platform`): the app's "before
    /// invite" callback decides, then the members it did not refuse join (imported).
    /// Panics if the group does not exist.
    pub async fn client_invite(
        &self,
        platform: &str,
        group_id: &str,
        operator: &str,
        members: &[&str],
    ) -> CallbackLogged {
        let group_type = self.group(group_id).expect("no such group").group_type;
        let body = serde_json::json!({
            "CallbackCommand": "Group.CallbackBeforeInviteJoinGroup",
            "GroupId": group_id,
            "Type": group_type,
            "Operator_Account": operator,
            "DestinationMembers": callback::member_accounts(members.iter().copied()),
        });
        let logged = self
            .send_callback(
                "Group.CallbackBeforeInviteJoinGroup",
                platform,
                body.to_string().as_bytes(),
                Tamper::None,
            )
            .await;
        if logged.allows() {
            let refused = logged.refused_members();
            let mut inner = self.shared.lock();
            for m in members.iter().filter(|m| !refused.iter().any(|r| r == *m)) {
                inner.store.accounts.insert(m.to_string());
                inner.store.add_member(group_id, m, Role::Member);
            }
        }
        logged
    }

    /// A member's quit through the SDK: it leaves at once (Tencent cannot be refused
    /// that), then the app hears of it (`Group.CallbackAfterMemberExit`, `Quit`).
    pub async fn client_quit(
        &self,
        platform: &str,
        group_id: &str,
        member: &str,
    ) -> CallbackLogged {
        let group_type = {
            let mut inner = self.shared.lock();
            inner.store.remove_member(group_id, member);
            inner
                .store
                .groups
                .get(group_id)
                .map(|s| s.group.group_type.clone())
                .unwrap_or_else(|| "Public".into())
        };
        let body = serde_json::json!({
            "CallbackCommand": "Group.CallbackAfterMemberExit",
            "GroupId": group_id,
            "Type": group_type,
            "ExitType": "Quit",
            "Operator_Account": member,
            "ExitMemberList": callback::member_accounts([member]),
        });
        self.send_callback(
            "Group.CallbackAfterMemberExit",
            platform,
            body.to_string().as_bytes(),
            Tamper::None,
        )
        .await
    }

    /// A client's create through the SDK: the "before create" callback decides; allowed,
    /// the group is made as [`Self::create_foreign_group`] makes it.
    pub async fn client_create(
        &self,
        platform: &str,
        group_id: &str,
        owner: &str,
    ) -> CallbackLogged {
        let body = serde_json::json!({
            "CallbackCommand": "Group.CallbackBeforeCreateGroup",
            "Operator_Account": owner,
            "Owner_Account": owner,
            "Type": "Public",
            "Name": format!("made by {owner}"),
            "CreateGroupNum": 0,
            "MemberList": [],
        });
        let logged = self
            .send_callback(
                "Group.CallbackBeforeCreateGroup",
                platform,
                body.to_string().as_bytes(),
                Tamper::None,
            )
            .await;
        if logged.allows() {
            self.create_foreign_group(group_id, owner);
        }
        logged
    }

    /// Destroys a group in the console, then tells the app
    /// (`Group.CallbackAfterGroupDestroyed`). Panics if it does not exist.
    pub async fn destroy_group_in_console(&self, group_id: &str) -> CallbackLogged {
        let gone = self.group(group_id).expect("no such group");
        self.destroy_group_directly(group_id);
        let body = callback::destroyed_body(&gone);
        self.send_callback(
            "Group.CallbackAfterGroupDestroyed",
            "Web",
            body.to_string().as_bytes(),
            Tamper::None,
        )
        .await
    }

    // --- rate limits ------------------------------------------------------------------

    /// Every command's limit `per_second`, but `multiaccount_import` half that (at least
    /// 1), Tencent's ratio: `set_rate_limit(200)` gives back the documented limits.
    pub fn set_rate_limit(&self, per_second: u32) {
        self.shared.lock().limiter.set_all(per_second);
    }

    /// One command's limit, `command` as `<service>/<command>`.
    pub fn set_command_rate_limit(&self, command: &str, per_second: u32) {
        assert!(
            rest::COMMANDS.contains(&command),
            "the stand-in serves no {command}"
        );
        self.shared.lock().limiter.set(command, per_second);
    }

    // --- faults --------------------------------------------------------------------

    /// The fraction of calls (chosen at random) that fail, each with a kind chosen at
    /// random among [`Self::set_fault_kinds`] (all by default), before or after the change.
    pub fn set_failure_rate(&self, rate: f64) {
        self.shared.lock().faults.set_rate(rate);
    }

    pub fn set_fault_kinds(&self, kinds: &[FaultKind]) {
        self.shared.lock().faults.set_kinds(kinds);
    }

    /// How long a slow answer takes: set it longer than the client's time-out.
    pub fn set_slow_delay(&self, delay: Duration) {
        self.shared.lock().faults.slow_delay = delay;
    }

    /// The next call (of any command) fails with `fault`; queued faults come in order,
    /// before any random one.
    pub fn inject_next(&self, fault: Fault) {
        self.shared.lock().faults.queue(fault);
    }

    /// Every call naming this group (`GroupId`, or an element of `get_group_info`'s
    /// `GroupIdList`) fails with `code` (10007 "no permission", say), until
    /// [`Self::clear_faults`]; nothing changes.
    pub fn fail_always_for_group(&self, group_id: &str, code: u32) {
        self.shared.lock().faults.poison_group(group_id, code);
    }

    /// No fault but this: like [`Self::clear_faults`] then [`Self::fail_always_for_group`],
    /// at once.
    pub fn fail_always_only_for_group(&self, group_id: &str, code: u32) {
        let mut inner = self.shared.lock();
        inner.faults.clear();
        inner.faults.poison_group(group_id, code);
    }

    /// No more faults: no rate, no queued faults, no poisoned groups (the slow delay and
    /// the rate limits stay).
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }
}

impl Drop for TencentStandIn {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Shared {
    /// A test that panicked while holding the lock leaves the state as it was.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs a new call and picks its fault; returns the log entry, the fault and the slow
    /// delay.
    fn begin(&self, path: &str, body: &[u8]) -> (usize, Option<Fault>, Duration) {
        let group_id = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|b| b.get("GroupId")?.as_str().map(str::to_string));
        let mut inner = self.lock();
        let fault = inner.faults.pick();
        inner.log.push(LoggedRequest {
            command: path.strip_prefix("/v4/").unwrap_or(path).to_string(),
            group_id,
            status: None,
            error_code: None,
            fault,
            applied: false,
        });
        (inner.log.len() - 1, fault, inner.faults.slow_delay)
    }

    /// Answers the call, and logs at once whether it changed anything: a test may look
    /// before a slow answer is sent.
    /// `refused`: the accounts the app's callback refused for this call.
    fn handle(
        &self,
        entry: usize,
        request: &rest::Request,
        refused: BTreeSet<String>,
    ) -> rest::Answer {
        let mut inner = self.lock();
        inner.refused_now = refused;
        let answer = rest::handle(&self.app, &mut inner, request);
        inner.refused_now.clear();
        inner.log[entry].applied = answer.applied;
        answer
    }
}
