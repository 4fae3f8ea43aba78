//! Storage: the small trait the routes use, and its DynamoDB implementation.
//!
//! One table, keyed `pk`/`sk` (the definition lives once, in `template.yaml`):
//!
//! | item | pk | sk | attributes |
//! | --- | --- | --- | --- |
//! | app | `APP` | app id | `master_key`, `created_at`, `updated_at` |
//! | token secret | `TOKEN_KEY` | key id (`kid`) | `app_id`, `secret`, `status` (active, retired), `created_at` |
//! | group-id counter | `COUNTER` | `GROUP_ID` | `next_id` |
//! | group | `GROUP#<id>` | `META` | `group_id`, `app_id`, `group_name`, `owner`, `admins` (string set), `status` (active, deleting), `member_count`, `max_members`, `version`, `avatar_url`, `description`, `conversation_id`, `created_at`, `updated_at` |
//! | member | `GROUP#<id>` | `MEMBER#<client id>` | `client_id`, `group_id`, `joined_at`, `gsi1pk` = `CLIENT#<app id>:<client id>`, `gsi1sk` = `GROUP#<id, 20 digits>` |
//! | conversation link | `CONV#<app id>:<conversation id>` | `CONV` | `group_id`: the one group whose conversation this is |
//! | idempotency record | `IDEM#<app id>:<client id>:<key>` | `IDEM` | `fingerprint`, the created group's `group_id`, `group_name`, `owner`, `member_client_ids`, `expires_at` (epoch seconds: the table's TTL attribute) |
//!
//! Ids never contain `:` (see [`crate::ids::check_id`]), so these keys cannot collide.
//!
//! Groups belong to the app of the caller who created them; a caller of another app
//! finds nothing. Every write that touches several items is one transaction, and every
//! rule about who may write (owner, group admin, member) is a condition of that same
//! write, so no concurrent request can slip between a check and the change it guards.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, DeleteRequest, KeysAndAttributes, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use rand::Rng;
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::ids::{conversation_may_link, MemberList};
use crate::secret::Secret;

#[derive(Debug, Error)]
pub enum StoreError {
    /// No such group for this caller (absent, deleted, another app's, or the caller is
    /// not a member: a non-member learns nothing).
    #[error("not found")]
    NotFound,
    /// The caller is a member but may not do this.
    #[error("forbidden")]
    Forbidden,
    #[error("already exists")]
    AlreadyExists,
    #[error("not members of the group: {0:?}")]
    NotMembers(Vec<String>),
    /// Adding would take the group past its member limit; nothing was added.
    #[error("the group is full")]
    Full { count: u64, max: u64, adding: u64 },
    /// `If-Match` named other versions than the group's current one.
    #[error("the group is at version {current}")]
    Stale { current: u64 },
    /// The conversation id already belongs to another group of the app.
    #[error("conversation already linked")]
    ConversationTaken,
    /// The conversation id reads as a group id other than the group's own.
    #[error("conversation id {0} is a group id")]
    ConversationIsAGroupId(String),
    /// An idempotency key reused with a different request.
    #[error("idempotency key reused")]
    KeyReused,
    /// Other transactions kept winning on the same group; the caller may retry.
    #[error("too many concurrent writes to the same group")]
    Contention,
    #[error("throttled by DynamoDB")]
    Throttled,
    #[error("dynamodb: {0}")]
    Backend(String),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("group"),
            StoreError::Forbidden => ApiError::Forbidden,
            StoreError::AlreadyExists => ApiError::Conflict("already exists".into()),
            StoreError::NotMembers(ids) => {
                ApiError::Conflict(format!("not members of the group: {}", ids.join(":")))
            }
            StoreError::Full { count, max, adding } => ApiError::Conflict(format!(
                "the group has {count} of at most {max} members; adding {adding} would exceed that, so nobody was added"
            )),
            StoreError::Stale { current } => ApiError::PreconditionFailed(format!(
                "the group changed since: its ETag is now \"{current}\""
            )),
            StoreError::ConversationTaken => ApiError::Conflict(
                "conversation_id is already the conversation of another group".into(),
            ),
            StoreError::ConversationIsAGroupId(id) => ApiError::Conflict(format!(
                "conversation_id {id} reads as a group id, which names that group's conversation; a group may link it only if it is its own id"
            )),
            StoreError::KeyReused => ApiError::Unprocessable(
                "this Idempotency-Key was used with a different request".into(),
            ),
            StoreError::Contention => {
                ApiError::Conflict("too many concurrent changes to this group; retry".into())
            }
            StoreError::Throttled => ApiError::Unavailable,
            StoreError::Backend(detail) => {
                tracing::error!(error = %detail, "storage failure");
                ApiError::Internal
            }
        }
    }
}

/// Who acts: the identity the token (or API Gateway's authorizer) vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub app_id: String,
    pub client_id: String,
    /// The app's backend, acting for anyone in its app.
    pub app_admin: bool,
}

/// An active token-signing secret and the app it speaks for.
#[derive(Debug, Clone)]
pub struct TokenKey {
    pub app_id: String,
    pub secret: Secret,
}

/// What a group is created with.
#[derive(Debug, Clone, Default)]
pub struct GroupSpec {
    pub name: String,
    pub members: MemberList,
    pub avatar_url: Option<String>,
    pub description: Option<String>,
    pub conversation_id: Option<String>,
    pub max_members: u64,
}

/// A partial update of a group's settings: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct GroupPatch {
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub description: Option<String>,
    pub conversation_id: Option<String>,
}

/// A freshly created group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    pub group_id: u64,
    pub group_name: String,
    pub owner: String,
    pub members: MemberList,
}

/// A create's `Idempotency-Key` (scoped to the calling client) and a fingerprint of the
/// request, so that a retry can be told from another request under the same key.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

/// How long a create's idempotency record answers retries.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// The outcome of a create: the group, and whether it was created earlier under the
/// same idempotency key (nothing was written this time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub group: NewGroup,
    pub replayed: bool,
}

/// One page of a listing, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// A client's standing in a live group, and who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub member: bool,
    pub owner: bool,
    pub admin: bool,
    /// The group's owner, whom kick and conversation-block signatures must not name
    /// unless the owner asks.
    pub owner_id: String,
}

/// What a group id means to a signature rule, for one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupStatus {
    /// No group of this app has the id: never created, another app's, or deleted.
    Absent,
    /// Being deleted: gone for its members, but its conversation is not free yet.
    Deleting,
    Live(Standing),
}

/// The group item, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMeta {
    pub group_id: u64,
    pub app_id: String,
    pub group_name: String,
    pub owner: String,
    pub admins: BTreeSet<String>,
    pub live: bool,
    pub member_count: u64,
    pub max_members: u64,
    /// Grows with every change: the group's ETag.
    pub version: u64,
    pub avatar_url: Option<String>,
    pub description: Option<String>,
    pub conversation_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl GroupMeta {
    fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Self> {
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let number = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
        };
        Some(Self {
            group_id: number("group_id").unwrap_or_default(),
            app_id: text("app_id")?,
            group_name: text("group_name").unwrap_or_default(),
            owner: text("owner").unwrap_or_default(),
            admins: item
                .get("admins")
                .and_then(|v| v.as_ss().ok())
                .map(|v| v.iter().cloned().collect())
                .unwrap_or_default(),
            live: text("status").as_deref() == Some(ACTIVE),
            member_count: number("member_count").unwrap_or_default(),
            max_members: number("max_members").unwrap_or(DEFAULT_MAX_MEMBERS),
            version: number("version").unwrap_or_default(),
            avatar_url: text("avatar_url"),
            description: text("description"),
            conversation_id: text("conversation_id"),
            created_at: text("created_at").unwrap_or_default(),
            updated_at: text("updated_at").unwrap_or_default(),
        })
    }

    /// `client_id`'s role: owner, admin or member (for a client known to be a member).
    pub fn role_of(&self, client_id: &str) -> &'static str {
        if self.owner == client_id {
            "owner"
        } else if self.admins.contains(client_id) {
            "admin"
        } else {
            "member"
        }
    }

    fn manages(&self, client_id: &str) -> bool {
        self.owner == client_id || self.admins.contains(client_id)
    }

    /// The group after `patch` was written over this version of it at `now`.
    fn patched(mut self, patch: &GroupPatch, now: &str) -> Self {
        if let Some(name) = &patch.name {
            self.group_name = name.clone();
        }
        for (field, value) in [
            (&mut self.avatar_url, &patch.avatar_url),
            (&mut self.description, &patch.description),
            (&mut self.conversation_id, &patch.conversation_id),
        ] {
            if value.is_some() {
                field.clone_from(value);
            }
        }
        self.version += 1;
        self.updated_at = now.to_owned();
        self
    }

    /// The caller may change the group's settings (owner, group admin, app admin).
    fn managed_by(&self, caller: &Caller) -> bool {
        caller.app_admin || self.manages(&caller.client_id)
    }

    /// The caller may delete the group or hand it over (owner, app admin).
    fn owned_by(&self, caller: &Caller) -> bool {
        caller.app_admin || self.owner == caller.client_id
    }
}

/// An `If-Match` on a write: the versions it accepts, and who may make the write (a
/// caller who may not gets 403/404 as without the header, never 412).
#[derive(Clone, Copy)]
struct Precondition<'a> {
    versions: &'a [u64],
    may: fn(&GroupMeta, &Caller) -> bool,
}

impl Precondition<'_> {
    /// `Stale` when the refused write was the caller's to make and only the version
    /// stood in its way.
    fn stale(&self, caller: &Caller, old: Option<&Item>) -> Option<StoreError> {
        let meta = old.and_then(GroupMeta::from_item)?;
        let visible = meta.live && meta.app_id == caller.app_id && (self.may)(&meta, caller);
        (visible && !self.versions.contains(&meta.version)).then_some(StoreError::Stale {
            current: meta.version,
        })
    }
}

/// The secrets the routes read on every request (and cache; see [`crate::keys`]).
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The app's master key, or `None` for an unknown app.
    async fn master_key(&self, app_id: &str) -> Result<Option<Secret>, StoreError>;
    /// The active token secret named `kid`, or `None`.
    async fn token_key(&self, kid: &str) -> Result<Option<TokenKey>, StoreError>;
}

/// What the routes need from storage; nothing else.
#[async_trait]
pub trait Store: KeyStore {
    /// Creates a group owned by the caller, who is also a member, and links its
    /// conversation. With an idempotency key, a repeat of an earlier create (same
    /// caller, key and fingerprint, within [`IDEMPOTENCY_WINDOW`]) returns that group
    /// and writes nothing; the key with another fingerprint is `KeyReused`.
    async fn create_group(
        &self,
        caller: &Caller,
        spec: &GroupSpec,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, StoreError>;
    /// Owner or group admin: changes the fields the patch names; returns the group.
    /// With `if_match`, only while the group's version is one of those.
    async fn update_group(
        &self,
        caller: &Caller,
        group_id: u64,
        patch: &GroupPatch,
        if_match: Option<&[u64]>,
    ) -> Result<GroupMeta, StoreError>;
    /// Owner. With `if_match`, only while the group's version is one of those.
    async fn delete_group(
        &self,
        caller: &Caller,
        group_id: u64,
        if_match: Option<&[u64]>,
    ) -> Result<(), StoreError>;
    /// Owner: makes a member the owner; the old owner stays a plain member.
    async fn transfer_owner(
        &self,
        caller: &Caller,
        group_id: u64,
        new_owner: &str,
    ) -> Result<GroupMeta, StoreError>;
    /// The group whose conversation `conversation_id` is, in `app_id`.
    async fn conversation_group(
        &self,
        app_id: &str,
        conversation_id: &str,
    ) -> Result<Option<u64>, StoreError>;
    /// Any member. Adding a client that is already a member keeps its `joined_at`.
    async fn add_members(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
    ) -> Result<(), StoreError>;
    /// Owner or group admin, never the owner; any member may remove itself.
    async fn remove_members(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
    ) -> Result<(), StoreError>;
    /// Owner: make members group admins (`grant`) or plain members again.
    async fn set_admins(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
        grant: bool,
    ) -> Result<(), StoreError>;
    /// The group, for a member of it (or the app's backend).
    async fn group_for(&self, caller: &Caller, group_id: u64) -> Result<GroupMeta, StoreError>;
    /// A page of the group's members (`client_id`, `joined_at`), in client-id order,
    /// after `after`, for a member of it (or the app's backend).
    async fn members_page(
        &self,
        caller: &Caller,
        group_id: u64,
        limit: u32,
        after: Option<&str>,
    ) -> Result<(GroupMeta, Page<(String, String), String>), StoreError>;
    /// A page of the live groups `client_id` (of the caller's app) is in, by group id,
    /// after group `after`.
    async fn client_groups(
        &self,
        caller: &Caller,
        client_id: &str,
        limit: u32,
        after: Option<u64>,
    ) -> Result<Page<GroupMeta, u64>, StoreError>;
    /// Whether `group_id` is a group of `app_id` (live, or being deleted), and if live,
    /// `client_id`'s standing in it.
    async fn standing(
        &self,
        app_id: &str,
        group_id: u64,
        client_id: &str,
    ) -> Result<GroupStatus, StoreError>;
}

// Key layout. Kept private: nothing outside this module builds keys.
const PK: &str = "pk";
const SK: &str = "sk";
const APP_PK: &str = "APP";
const TOKEN_KEY_PK: &str = "TOKEN_KEY";
const COUNTER_PK: &str = "COUNTER";
const COUNTER_SK: &str = "GROUP_ID";
const META_SK: &str = "META";
const LINK_SK: &str = "CONV";
const IDEM_SK: &str = "IDEM";
const MEMBER_PREFIX: &str = "MEMBER#";
const ACTIVE: &str = "active";
const DELETING: &str = "deleting";
const RETIRED: &str = "retired";
/// Member limit of a group created without one.
pub const DEFAULT_MAX_MEMBERS: u64 = 500;
/// The largest member limit a group may have.
pub const MAX_MAX_MEMBERS: u64 = 5000;

type Item = HashMap<String, AttributeValue>;

fn group_pk(id: u64) -> String {
    format!("GROUP#{id}")
}

fn member_sk(client_id: &str) -> String {
    format!("{MEMBER_PREFIX}{client_id}")
}

fn link_key(app_id: &str, conversation_id: &str) -> Item {
    key(format!("CONV#{app_id}:{conversation_id}"), LINK_SK)
}

fn idempotency_key(caller: &Caller, key_text: &str) -> Item {
    key(
        format!("IDEM#{}:{}:{key_text}", caller.app_id, caller.client_id),
        IDEM_SK,
    )
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn epoch_now() -> u64 {
    OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("request build: {e}"))
}

fn is_throttle(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "ThrottlingException"
        )
    )
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

/// Maps an SDK error; throttling becomes a retryable 503, the rest a logged 500.
fn sdk_err<E, R>(op: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if is_throttle(err.code()) {
        return StoreError::Throttled;
    }
    StoreError::Backend(format!("{op}: {}", DisplayErrorContext(&err)))
}

/// A condition (or update) expression with its placeholders, built in pieces.
#[derive(Default, Clone)]
struct Expr {
    text: String,
    names: HashMap<String, String>,
    values: Item,
}

impl Expr {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            ..Self::default()
        }
    }

    fn name(mut self, placeholder: &str, attribute: &str) -> Self {
        self.names.insert(placeholder.into(), attribute.into());
        self
    }

    fn value(mut self, placeholder: &str, v: AttributeValue) -> Self {
        self.values.insert(placeholder.into(), v);
        self
    }

    fn and(mut self, clause: &str) -> Self {
        if !self.text.is_empty() {
            self.text.push_str(" AND ");
        }
        self.text.push_str(clause);
        self
    }

    /// The group exists, is live and belongs to the caller's app.
    fn live_in_app(caller: &Caller) -> Self {
        Self::default()
            .and("attribute_exists(pk) AND #status = :active AND #app = :app")
            .name("#status", "status")
            .name("#app", "app_id")
            .value(":active", s(ACTIVE))
            .value(":app", s(caller.app_id.as_str()))
    }

    /// ...and the caller is its owner or one of its admins (app admins always are).
    fn managed_by(self, caller: &Caller) -> Self {
        if caller.app_admin {
            return self;
        }
        self.and("(#owner = :caller OR contains(#admins, :caller))")
            .name("#owner", "owner")
            .name("#admins", "admins")
            .value(":caller", s(caller.client_id.as_str()))
    }

    /// ...and the caller is its owner (app admins always are).
    fn owned_by(self, caller: &Caller) -> Self {
        if caller.app_admin {
            return self;
        }
        self.and("#owner = :caller")
            .name("#owner", "owner")
            .value(":caller", s(caller.client_id.as_str()))
    }

    /// ...and none of `ids` is the owner.
    fn owner_not_in(self, ids: &[String]) -> Self {
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
    fn version_in(self, versions: &[u64]) -> Self {
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
    fn with_placeholders_of(mut self, other: &Expr) -> Self {
        self.names.extend(other.names.clone());
        self.values.extend(other.values.clone());
        self
    }
}

fn string_set(ids: &[String]) -> AttributeValue {
    AttributeValue::Ss(ids.to_vec())
}

/// How a transaction ended.
enum TxOutcome {
    Done,
    /// These items (by index) failed their conditions; the group item, when it is among
    /// them, comes back as it was.
    Refused(Vec<(usize, Option<Item>)>),
}

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// A client configured from the standard AWS environment (region, credentials,
    /// `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local), with timeouts so that a stuck
    /// connection answers with an error instead of hanging the request.
    pub async fn client_from_env() -> Client {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(12))
            .build();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await;
        Client::new(&config)
    }

    /// A client for DynamoDB Local at `endpoint`: a fixed region and placeholder
    /// credentials, which DynamoDB Local accepts and never checks.
    pub async fn local_client(endpoint: &str) -> Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local",
                "local",
                None,
                None,
                "dynamodb-local",
            ))
            .endpoint_url(endpoint)
            .load()
            .await;
        Client::new(&config)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Runs a transaction, retrying the cancellations caused by other transactions on the
    /// same items (jittered exponential back-off). Condition failures are returned, not
    /// retried.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<TxOutcome, StoreError> {
        const ATTEMPTS: u32 = 12;
        for attempt in 0..ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(TxOutcome::Done),
                Err(err) => err,
            };
            let conflict = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                    let reasons = e.cancellation_reasons();
                    let refused: Vec<(usize, Option<Item>)> = reasons
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(i, r)| (i, r.item().cloned()))
                        .collect();
                    if !refused.is_empty() {
                        return Ok(TxOutcome::Refused(refused));
                    }
                    if reasons.iter().any(|r| is_throttle(r.code())) {
                        return Err(StoreError::Throttled);
                    }
                    reasons
                        .iter()
                        .any(|r| r.code() == Some("TransactionConflict"))
                }
                Some(TransactWriteItemsError::TransactionInProgressException(_)) => true,
                _ => false,
            };
            if !conflict {
                return Err(sdk_err("TransactWriteItems", err));
            }
            if attempt + 1 < ATTEMPTS {
                let cap = 10u64 << attempt.min(6);
                let wait = rand::rng().random_range(cap / 2..=cap);
                tracing::debug!(attempt, wait_ms = wait, "transaction conflict, retrying");
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
        Err(StoreError::Contention)
    }

    fn meta_key(group_id: u64) -> Item {
        key(group_pk(group_id), META_SK)
    }

    /// A transaction item that only checks the group item against `cond`.
    fn check_meta(&self, group_id: u64, cond: &Expr) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(Self::meta_key(group_id)))
            .condition_expression(&cond.text)
            .set_expression_attribute_names(Some(cond.names.clone()))
            .set_expression_attribute_values(Some(cond.values.clone()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// A transaction item that updates the group item with `update`, if `cond` holds.
    fn update_meta(
        &self,
        group_id: u64,
        update: &Expr,
        cond: &Expr,
    ) -> Result<TransactWriteItem, StoreError> {
        let merged = update.clone().with_placeholders_of(cond);
        let u = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::meta_key(group_id)))
            .update_expression(&update.text)
            .condition_expression(&cond.text)
            .set_expression_attribute_names(Some(merged.names))
            .set_expression_attribute_values(Some(merged.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(u).build())
    }

    /// A transaction item that checks `client_id` is a member.
    fn check_member(
        &self,
        group_id: u64,
        client_id: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(group_pk(group_id), member_sk(client_id))))
            .condition_expression("attribute_exists(sk)")
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Runs a conditional update of the group item alone; returns the item as it was
    /// (`ReturnValue::AllOld`) or became (`AllNew`).
    async fn update_meta_alone(
        &self,
        caller: &Caller,
        group_id: u64,
        update: &Expr,
        cond: &Expr,
        returning: ReturnValue,
        precondition: Option<Precondition<'_>>,
    ) -> Result<Option<Item>, StoreError> {
        let merged = update.clone().with_placeholders_of(cond);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::meta_key(group_id)))
            .update_expression(&update.text)
            .condition_expression(&cond.text)
            .set_expression_attribute_names(Some(merged.names))
            .set_expression_attribute_values(Some(merged.values))
            .return_values(returning)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.attributes),
            Err(e) if is_condition_failure(&e) => {
                let old = e
                    .as_service_error()
                    .and_then(|se| match se {
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => c.item.clone(),
                        _ => None,
                    });
                if let Some(stale) = precondition.and_then(|p| p.stale(caller, old.as_ref())) {
                    return Err(stale);
                }
                Err(self.refusal(caller, group_id, old).await)
            }
            Err(e) => Err(sdk_err("UpdateItem(group)", e)),
        }
    }

    /// Why a guarded write to a group was refused, from the group item as it was: a
    /// group that is gone, another app's, or one the caller is not a member of is
    /// `NotFound`; a member who may not do this gets `Forbidden`.
    async fn refusal(&self, caller: &Caller, group_id: u64, old: Option<Item>) -> StoreError {
        let Some(meta) = old.as_ref().and_then(GroupMeta::from_item) else {
            return StoreError::NotFound;
        };
        if !meta.live || meta.app_id != caller.app_id {
            return StoreError::NotFound;
        }
        if caller.app_admin || meta.manages(&caller.client_id) {
            return StoreError::Forbidden;
        }
        match self.is_member(group_id, &caller.client_id).await {
            Ok(true) => StoreError::Forbidden,
            Ok(false) => StoreError::NotFound,
            Err(e) => e,
        }
    }

    /// Reads up to 100 items by key, consistently, asking again for what DynamoDB leaves
    /// unprocessed under load.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        if keys.is_empty() {
            return Ok(found);
        }
        let mut wanted = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(build_err)?,
        );
        for attempt in 0..8u32 {
            let Some(keys) = wanted.take() else { break };
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            }
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(|e| sdk_err("BatchGetItem", e))?;
            if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                found.extend(items.iter().cloned());
            }
            wanted = out
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .filter(|k| !k.keys().is_empty())
                .cloned();
        }
        if wanted.is_some() {
            return Err(StoreError::Throttled);
        }
        Ok(found)
    }

    /// The group item and which of `clients` are members, in one consistent read.
    async fn meta_and_members(
        &self,
        group_id: u64,
        clients: &[&str],
    ) -> Result<(Option<GroupMeta>, BTreeSet<String>), StoreError> {
        let mut keys = vec![Self::meta_key(group_id)];
        let unique: BTreeSet<&str> = clients.iter().copied().collect();
        keys.extend(unique.iter().map(|c| key(group_pk(group_id), member_sk(c))));
        let items = self.batch_get(keys).await?;
        let sk_of = |i: &Item| {
            i.get(SK)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let meta = items
            .iter()
            .find(|i| sk_of(i) == META_SK)
            .and_then(GroupMeta::from_item);
        let members = items
            .iter()
            .filter_map(|i| sk_of(i).strip_prefix(MEMBER_PREFIX).map(str::to_owned))
            .collect();
        Ok((meta, members))
    }

    /// The live group of the caller's app, if the caller may see it.
    fn visible(
        meta: Option<GroupMeta>,
        caller: &Caller,
        caller_is_member: bool,
    ) -> Result<GroupMeta, StoreError> {
        match meta {
            Some(m)
                if m.live
                    && m.app_id == caller.app_id
                    && (caller.app_admin || caller_is_member) =>
            {
                Ok(m)
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn is_member(&self, group_id: u64, client_id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(group_pk(group_id), member_sk(client_id))))
            .projection_expression("sk")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(member)", e))?;
        Ok(out.item().is_some())
    }

    /// Maps a refused group transaction: the group item at index 0 gets `refusal`; a
    /// refused caller check (index 1 when present) means the caller is not a member.
    async fn refused(
        &self,
        caller: &Caller,
        group_id: u64,
        refused: Vec<(usize, Option<Item>)>,
    ) -> StoreError {
        match refused.into_iter().next() {
            Some((0, old)) => self.refusal(caller, group_id, old).await,
            _ => StoreError::NotFound,
        }
    }

    /// Links `conversation_id` to the group, unless another group holds it.
    fn link_put(
        &self,
        app_id: &str,
        conversation_id: &str,
        group_id: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = link_key(app_id, conversation_id);
        item.insert("group_id".into(), number(group_id));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR group_id = :g")
            .expression_attribute_values(":g", number(group_id))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Unlinks `conversation_id`, if the group holds it.
    fn link_delete(
        &self,
        app_id: &str,
        conversation_id: &str,
        group_id: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(link_key(app_id, conversation_id)))
            .condition_expression("attribute_not_exists(pk) OR group_id = :g")
            .expression_attribute_values(":g", number(group_id))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// The group an unexpired idempotency record answers with; `KeyReused` when the
    /// record is for another request.
    async fn replay(
        &self,
        caller: &Caller,
        idempotency: &Idempotency,
    ) -> Result<Option<Created>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(idempotency_key(caller, &idempotency.key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(idempotency)", e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let num = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
        };
        // DynamoDB's TTL removes expired items only eventually: an expired one is absent.
        if num("expires_at").unwrap_or_default() <= epoch_now() {
            return Ok(None);
        }
        if text("fingerprint").as_deref() != Some(idempotency.fingerprint.as_str()) {
            return Err(StoreError::KeyReused);
        }
        let members = MemberList::parse_joined(
            "member_client_ids",
            &text("member_client_ids").unwrap_or_default(),
            usize::MAX,
            usize::MAX,
        )
        .map_err(|e| StoreError::Backend(format!("idempotency record: {e}")))?;
        Ok(Some(Created {
            group: NewGroup {
                group_id: num("group_id").unwrap_or_default(),
                group_name: text("group_name").unwrap_or_default(),
                owner: text("owner").unwrap_or_default(),
                members,
            },
            replayed: true,
        }))
    }

    /// The record that answers retries of this create for [`IDEMPOTENCY_WINDOW`]; it
    /// may replace an expired record that TTL has not removed yet.
    fn idempotency_put(
        &self,
        caller: &Caller,
        idempotency: &Idempotency,
        group: &NewGroup,
        now: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = idempotency_key(caller, &idempotency.key);
        item.insert("fingerprint".into(), s(idempotency.fingerprint.as_str()));
        item.insert("group_id".into(), number(group.group_id));
        item.insert("group_name".into(), s(group.group_name.as_str()));
        item.insert("owner".into(), s(group.owner.as_str()));
        item.insert("member_client_ids".into(), s(group.members.joined()));
        item.insert("created_at".into(), s(now));
        let epoch = epoch_now();
        item.insert(
            "expires_at".into(),
            number(epoch + IDEMPOTENCY_WINDOW.as_secs()),
        );
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", number(epoch))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn member_item(app_id: &str, group_id: u64, client_id: &str, now: &str) -> Item {
        let mut item = key(group_pk(group_id), member_sk(client_id));
        item.insert("client_id".into(), s(client_id));
        item.insert("group_id".into(), AttributeValue::N(group_id.to_string()));
        item.insert("joined_at".into(), s(now));
        item.insert("gsi1pk".into(), s(format!("CLIENT#{app_id}:{client_id}")));
        item.insert("gsi1sk".into(), s(format!("GROUP#{group_id:020}")));
        item
    }

    async fn next_group_id(&self) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(COUNTER_PK, COUNTER_SK)))
            .update_expression("ADD next_id :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| sdk_err("UpdateItem(counter)", e))?;
        out.attributes()
            .and_then(|a| a.get("next_id"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| StoreError::Backend("group id counter returned no number".into()))
    }

    /// The current members of a group, in byte order.
    pub async fn group_members(&self, group_id: u64) -> Result<Vec<String>, StoreError> {
        let mut sks = self.member_keys(group_id).await?;
        sks.sort();
        Ok(sks
            .into_iter()
            .filter_map(|sk| sk.strip_prefix(MEMBER_PREFIX).map(str::to_owned))
            .collect())
    }

    /// The group item, if there is one (live or being deleted).
    pub async fn group_meta(&self, group_id: u64) -> Result<Option<GroupMeta>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::meta_key(group_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(group)", e))?;
        Ok(out.item().and_then(GroupMeta::from_item))
    }

    /// Sort keys of every member item under the group, live or not.
    async fn member_keys(&self, group_id: u64) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :m)")
            .expression_attribute_values(":pk", s(group_pk(group_id)))
            .expression_attribute_values(":m", s(MEMBER_PREFIX))
            .projection_expression("sk")
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| sdk_err("Query(members)", e))?;
            if let Some(sk) = item.get(SK).and_then(|v| v.as_s().ok()) {
                out.push(sk.clone());
            }
        }
        Ok(out)
    }

    /// Deletes items 25 at a time, retrying what DynamoDB leaves unprocessed.
    async fn batch_delete(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(build_err)
                })
                .collect::<Result<_, _>>()?;
            let mut attempt = 0u32;
            while !requests.is_empty() {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
                }
                if attempt == 10 {
                    return Err(StoreError::Backend(
                        "batch delete kept being throttled".into(),
                    ));
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| sdk_err("BatchWriteItem", e))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|m| m.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                attempt += 1;
            }
        }
        Ok(())
    }

    // --- apps and token secrets (the admin command and the local server) ---------------

    /// Registers a new app; `AlreadyExists` if the id is taken.
    pub async fn create_app(&self, app_id: &str, master_key: &Secret) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let mut item = key(APP_PK, app_id);
        item.insert("master_key".into(), s(master_key.expose()));
        item.insert("created_at".into(), s(now.clone()));
        item.insert("updated_at".into(), s(now));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::AlreadyExists),
            Err(e) => Err(sdk_err("PutItem(app)", e)),
        }
    }

    /// Replaces an existing app's master key; `NotFound` for an unknown app.
    pub async fn rotate_app(&self, app_id: &str, master_key: &Secret) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .update_expression("SET master_key = :k, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":k", s(master_key.expose()))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::NotFound),
            Err(e) => Err(sdk_err("UpdateItem(app)", e)),
        }
    }

    /// Removes an app and, in the same transaction, retires every token secret that
    /// speaks for it: no token of a removed app verifies again (warm functions stop
    /// within `IM_APP_CACHE_SECONDS`, as for `retire`). The app item counts the keys ever
    /// added to it (`token_keys`), and the delete holds only at the count read, so a key
    /// added meanwhile is not left active: the removal reads again and retries.
    pub async fn remove_app(&self, app_id: &str) -> Result<(), StoreError> {
        // DynamoDB takes 100 actions per transaction: the app item and 99 keys. Keys
        // beyond that are retired first, on their own (retiring early is always safe).
        const KEYS_PER_TRANSACTION: usize = 99;
        for _ in 0..8 {
            let app = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key(APP_PK, app_id)))
                .projection_expression("token_keys")
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| sdk_err("GetItem(app)", e))?;
            let Some(item) = app.item() else {
                return Err(StoreError::NotFound);
            };
            let count = item.get("token_keys").and_then(|v| v.as_n().ok()).cloned();
            let mut kids: Vec<String> = self
                .query_partition(
                    TOKEN_KEY_PK,
                    "sk, app_id, #status",
                    &[("#status", "status")],
                )
                .await?
                .iter()
                .filter(|i| {
                    i.get("app_id")
                        .and_then(|v| v.as_s().ok())
                        .map(String::as_str)
                        == Some(app_id)
                        && i.get("status")
                            .and_then(|v| v.as_s().ok())
                            .map(String::as_str)
                            == Some(ACTIVE)
                })
                .filter_map(|i| i.get(SK).and_then(|v| v.as_s().ok()).cloned())
                .collect();
            let early = kids.len().saturating_sub(KEYS_PER_TRANSACTION);
            for kid in kids.drain(..early) {
                self.retire_token_key(&kid).await?;
            }
            let unchanged = match &count {
                Some(n) => Expr::new("attribute_exists(pk) AND token_keys = :n")
                    .value(":n", AttributeValue::N(n.clone())),
                None => Expr::new("attribute_exists(pk) AND attribute_not_exists(token_keys)"),
            };
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(APP_PK, app_id)))
                .condition_expression(&unchanged.text)
                .set_expression_attribute_values(
                    (!unchanged.values.is_empty()).then(|| unchanged.values.clone()),
                )
                .build()
                .map_err(build_err)?;
            let mut items = vec![TransactWriteItem::builder().delete(delete).build()];
            let now = now_rfc3339();
            for kid in &kids {
                items.push(self.retire_item(kid, app_id, &now)?);
            }
            match self.transact(items).await? {
                TxOutcome::Done => return Ok(()),
                // A key was added (or the app removed) since the read: read again.
                TxOutcome::Refused(_) => continue,
            }
        }
        Err(StoreError::Contention)
    }

    /// Retires the token secret `kid`, on condition that it is `app_id`'s.
    fn retire_item(
        &self,
        kid: &str,
        app_id: &str,
        now: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(TOKEN_KEY_PK, kid)))
            .update_expression("SET #status = :retired, retired_at = :now")
            .condition_expression("app_id = :app")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":retired", s(RETIRED))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":app", s(app_id))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// App ids only: keys never leave the table through this.
    pub async fn list_apps(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .query_partition(APP_PK, "sk", &[])
            .await?
            .into_iter()
            .filter_map(|item| item.get(SK).and_then(|v| v.as_s().ok()).cloned())
            .collect())
    }

    async fn query_partition(
        &self,
        pk: &str,
        projection: &str,
        names: &[(&str, &str)],
    ) -> Result<Vec<Item>, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .projection_expression(projection);
        for (placeholder, name) in names {
            query = query.expression_attribute_names(*placeholder, *name);
        }
        let mut pages = query.into_paginator().items().send();
        let mut items = Vec::new();
        while let Some(item) = pages.next().await {
            items.push(item.map_err(|e| sdk_err("Query", e))?);
        }
        Ok(items)
    }

    /// Adds a token-signing secret for an existing app. `NotFound` for an unknown app,
    /// `AlreadyExists` for a key id in use (key ids are never reused, even retired ones).
    pub async fn create_token_key(
        &self,
        kid: &str,
        app_id: &str,
        secret: &Secret,
    ) -> Result<(), StoreError> {
        self.put_token_key(kid, app_id, secret, true).await
    }

    /// Sets `kid` to `secret` for `app_id`, whatever it was: for the development setup of
    /// the local server only (operators use `create_token_key`, whose ids are never reused).
    pub async fn upsert_token_key(
        &self,
        kid: &str,
        app_id: &str,
        secret: &Secret,
    ) -> Result<(), StoreError> {
        self.put_token_key(kid, app_id, secret, false).await
    }

    async fn put_token_key(
        &self,
        kid: &str,
        app_id: &str,
        secret: &Secret,
        only_new: bool,
    ) -> Result<(), StoreError> {
        let mut item = key(TOKEN_KEY_PK, kid);
        item.insert("app_id".into(), s(app_id));
        item.insert("secret".into(), s(secret.expose()));
        item.insert("status".into(), s(ACTIVE));
        item.insert("created_at".into(), s(now_rfc3339()));
        // Counted on the app item, in the same transaction: `remove_app` holds its delete
        // at the count it read, so no key can be added unseen while an app is removed.
        let app_exists = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .update_expression("ADD token_keys :one")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .build()
            .map_err(build_err)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(only_new.then(|| "attribute_not_exists(pk)".to_owned()))
            .build()
            .map_err(build_err)?;
        let items = vec![
            TransactWriteItem::builder().update(app_exists).build(),
            TransactWriteItem::builder().put(put).build(),
        ];
        match self.transact(items).await? {
            TxOutcome::Done => Ok(()),
            TxOutcome::Refused(r) if r.iter().any(|(i, _)| *i == 0) => Err(StoreError::NotFound),
            TxOutcome::Refused(_) => Err(StoreError::AlreadyExists),
        }
    }

    /// Stops a token secret from verifying anything; the id stays taken.
    pub async fn retire_token_key(&self, kid: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(TOKEN_KEY_PK, kid)))
            .update_expression("SET #status = :retired, retired_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":retired", s(RETIRED))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::NotFound),
            Err(e) => Err(sdk_err("UpdateItem(token key)", e)),
        }
    }

    /// `(kid, app_id, status)` of every token secret; never the secrets.
    pub async fn list_token_keys(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let text = |item: &Item, k: &str| {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        Ok(self
            .query_partition(
                TOKEN_KEY_PK,
                "sk, app_id, #status",
                &[("#status", "status")],
            )
            .await?
            .iter()
            .map(|item| (text(item, SK), text(item, "app_id"), text(item, "status")))
            .collect())
    }
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn master_key(&self, app_id: &str) -> Result<Option<Secret>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .projection_expression("master_key")
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(app)", e))?;
        Ok(out
            .item()
            .and_then(|item| item.get("master_key"))
            .and_then(|v| v.as_s().ok())
            .map(|k| Secret::new(k.as_str())))
    }

    async fn token_key(&self, kid: &str) -> Result<Option<TokenKey>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(TOKEN_KEY_PK, kid)))
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(token key)", e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok());
        if text("status").map(String::as_str) != Some(ACTIVE) {
            return Ok(None);
        }
        Ok(match (text("app_id"), text("secret")) {
            (Some(app_id), Some(secret)) => Some(TokenKey {
                app_id: app_id.clone(),
                secret: Secret::new(secret.as_str()),
            }),
            _ => None,
        })
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn create_group(
        &self,
        caller: &Caller,
        spec: &GroupSpec,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, StoreError> {
        if let Some(idem) = idempotency {
            if let Some(earlier) = self.replay(caller, idem).await? {
                return Ok(earlier);
            }
        }
        let all = MemberList::from_ids(
            "member_client_ids",
            spec.members
                .ids()
                .iter()
                .map(String::as_str)
                .chain([caller.client_id.as_str()]),
            usize::MAX,
            usize::MAX,
        )
        .map_err(|e| StoreError::Backend(e.to_string()))?;
        let count = all.len() as u64;
        if count > spec.max_members {
            return Err(StoreError::Full {
                count: 0,
                max: spec.max_members,
                adding: count,
            });
        }
        // Two round trips: the id must be known before the items that carry it are written.
        let group_id = self.next_group_id().await?;
        if let Some(conversation) = &spec.conversation_id {
            if !conversation_may_link(conversation, group_id) {
                return Err(StoreError::ConversationIsAGroupId(conversation.clone()));
            }
        }
        let now = now_rfc3339();
        let mut meta = Self::meta_key(group_id);
        meta.insert("group_id".into(), AttributeValue::N(group_id.to_string()));
        meta.insert("app_id".into(), s(caller.app_id.as_str()));
        meta.insert("group_name".into(), s(spec.name.as_str()));
        meta.insert("owner".into(), s(caller.client_id.as_str()));
        meta.insert("status".into(), s(ACTIVE));
        meta.insert("member_count".into(), AttributeValue::N(count.to_string()));
        meta.insert(
            "max_members".into(),
            AttributeValue::N(spec.max_members.to_string()),
        );
        meta.insert("version".into(), AttributeValue::N("1".into()));
        for (name, value) in [
            ("avatar_url", &spec.avatar_url),
            ("description", &spec.description),
            ("conversation_id", &spec.conversation_id),
        ] {
            if let Some(v) = value {
                meta.insert(name.into(), s(v.as_str()));
            }
        }
        meta.insert("created_at".into(), s(now.clone()));
        meta.insert("updated_at".into(), s(now.clone()));
        let mut items = vec![TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(meta))
                    // Ids are never reused: refuse to overwrite, even a deleted group.
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(build_err)?,
            )
            .build()];
        for id in all.ids() {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(Self::member_item(&caller.app_id, group_id, id, &now)))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let group = NewGroup {
            group_id,
            group_name: spec.name.clone(),
            owner: caller.client_id.clone(),
            members: all,
        };
        // The link and the idempotency record commit with the group or not at all.
        let mut link_at = None;
        if let Some(conversation) = &spec.conversation_id {
            items.push(self.link_put(&caller.app_id, conversation, group_id)?);
            link_at = Some(items.len() - 1);
        }
        let mut idempotency_at = None;
        if let Some(idem) = idempotency {
            items.push(self.idempotency_put(caller, idem, &group, &now)?);
            idempotency_at = Some(items.len() - 1);
        }
        let refused = match self.transact(items).await? {
            TxOutcome::Done => {
                return Ok(Created {
                    group,
                    replayed: false,
                })
            }
            TxOutcome::Refused(r) => r,
        };
        let failed = |at: Option<usize>| at.is_some_and(|at| refused.iter().any(|(i, _)| *i == at));
        if let (true, Some(idem)) = (failed(idempotency_at), idempotency) {
            // A concurrent request with the same key won; answer as it did.
            return self
                .replay(caller, idem)
                .await?
                .ok_or(StoreError::Contention);
        }
        if failed(link_at) {
            return Err(StoreError::ConversationTaken);
        }
        Err(StoreError::Backend(format!(
            "group id {group_id} from the counter is already taken"
        )))
    }

    async fn update_group(
        &self,
        caller: &Caller,
        group_id: u64,
        patch: &GroupPatch,
        if_match: Option<&[u64]>,
    ) -> Result<GroupMeta, StoreError> {
        if let Some(conversation) = &patch.conversation_id {
            if !conversation_may_link(conversation, group_id) {
                return Err(StoreError::ConversationIsAGroupId(conversation.clone()));
            }
        }
        let now = now_rfc3339();
        let mut sets = vec!["updated_at = :now".to_owned()];
        let mut update = Expr::default()
            .value(":now", s(now.as_str()))
            .value(":one", AttributeValue::N("1".into()));
        for (attr, value) in [
            ("group_name", &patch.name),
            ("avatar_url", &patch.avatar_url),
            ("description", &patch.description),
            ("conversation_id", &patch.conversation_id),
        ] {
            if let Some(v) = value {
                sets.push(format!("{attr} = :{attr}"));
                update = update.value(&format!(":{attr}"), s(v.as_str()));
            }
        }
        update.text = format!("SET {} ADD version :one", sets.join(", "));
        let mut cond = Expr::live_in_app(caller).managed_by(caller);
        let precondition = if_match.map(|versions| Precondition {
            versions,
            may: GroupMeta::managed_by,
        });
        if let Some(versions) = if_match {
            cond = cond.version_in(versions);
        }
        let Some(conversation) = &patch.conversation_id else {
            let new = self
                .update_meta_alone(
                    caller,
                    group_id,
                    &update,
                    &cond,
                    ReturnValue::AllNew,
                    precondition,
                )
                .await?;
            return new
                .as_ref()
                .and_then(GroupMeta::from_item)
                .ok_or_else(|| StoreError::Backend("update returned no group".into()));
        };
        // A new conversation moves the link: read the group to learn the old one, then
        // write the group (at the version read), the new link and the old link's removal
        // in one transaction.
        for _ in 0..8 {
            let seen = self
                .group_meta(group_id)
                .await?
                .ok_or(StoreError::NotFound)?;
            let guard = cond
                .clone()
                .and("#version = :seen")
                .name("#version", "version")
                .value(":seen", number(seen.version));
            let mut items = vec![self.update_meta(group_id, &update, &guard)?];
            if seen.conversation_id.as_deref() != Some(conversation.as_str()) {
                items.push(self.link_put(&caller.app_id, conversation, group_id)?);
                if let Some(old) = &seen.conversation_id {
                    items.push(self.link_delete(&caller.app_id, old, group_id)?);
                }
            }
            let refused = match self.transact(items).await? {
                // The write held only at the version read, so the group is now exactly
                // what was read with the patch applied: no need to read it again.
                TxOutcome::Done => return Ok(seen.patched(patch, &now)),
                TxOutcome::Refused(r) => r,
            };
            if let Some((_, old)) = refused.iter().find(|(i, _)| *i == 0) {
                if let Some(stale) = precondition.and_then(|p| p.stale(caller, old.as_ref())) {
                    return Err(stale);
                }
                let moved_on = old
                    .as_ref()
                    .and_then(GroupMeta::from_item)
                    .is_some_and(|m| m.live && m.managed_by(caller) && m.version != seen.version);
                if !moved_on {
                    return Err(self.refusal(caller, group_id, old.clone()).await);
                }
            } else if refused.iter().any(|(i, _)| *i == 1) {
                return Err(StoreError::ConversationTaken);
            }
            // Changed since the read: read again.
        }
        Err(StoreError::Contention)
    }

    async fn delete_group(
        &self,
        caller: &Caller,
        group_id: u64,
        if_match: Option<&[u64]>,
    ) -> Result<(), StoreError> {
        // 1. Mark the group as being deleted: from here on every read and write treats it
        //    as gone. A group already marked (a delete that crashed half-way) is finished
        //    below by any caller of its app, but answers NotFound: it was already deleted.
        let update = Expr::new("SET #status = :deleting, updated_at = :now")
            .value(":deleting", s(DELETING))
            .value(":now", s(now_rfc3339()));
        let mut allowed = Expr::live_in_app(caller).owned_by(caller);
        if let Some(versions) = if_match {
            allowed = allowed.version_in(versions);
        }
        let precondition = if_match.map(|versions| Precondition {
            versions,
            may: GroupMeta::owned_by,
        });
        let cond = Expr {
            text: format!(
                "attribute_exists(pk) AND #app = :app AND (#status = :deleting OR ({}))",
                allowed.text
            ),
            ..allowed
        };
        let old = self
            .update_meta_alone(
                caller,
                group_id,
                &update,
                &cond,
                ReturnValue::AllOld,
                precondition,
            )
            .await?
            .as_ref()
            .and_then(GroupMeta::from_item);
        let was_live = old.as_ref().is_some_and(|m| m.live);
        // 2. Remove every member item, then the group item itself.
        let member_keys = self
            .member_keys(group_id)
            .await?
            .into_iter()
            .map(|sk| key(group_pk(group_id), sk))
            .collect();
        self.batch_delete(member_keys).await?;
        if let Some(conversation) = old.as_ref().and_then(|m| m.conversation_id.as_deref()) {
            let unlink = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(link_key(&caller.app_id, conversation)))
                .condition_expression("group_id = :g")
                .expression_attribute_values(":g", number(group_id))
                .send()
                .await;
            match unlink {
                // Refused: the link is gone, or another group's by now; it stays.
                Err(e) if !is_condition_failure(&e) => {
                    return Err(sdk_err("DeleteItem(conversation link)", e))
                }
                _ => {}
            }
        }
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::meta_key(group_id)))
            .send()
            .await
            .map_err(|e| sdk_err("DeleteItem(group)", e))?;
        if was_live {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn add_members(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
    ) -> Result<(), StoreError> {
        // Read, then write on condition: the count and the limit stay exact however many
        // requests race, because each new member item must not exist yet and the count
        // must leave room, both checked in the one transaction that changes them.
        for _ in 0..8 {
            let mut clients: Vec<&str> = members.ids().iter().map(String::as_str).collect();
            clients.push(&caller.client_id);
            let (meta, present) = self.meta_and_members(group_id, &clients).await?;
            let meta = Self::visible(meta, caller, present.contains(&caller.client_id))?;
            let new: Vec<&String> = members
                .ids()
                .iter()
                .filter(|id| !present.contains(*id))
                .collect();
            if new.is_empty() {
                return Ok(()); // all members already: nothing to write
            }
            let adding = new.len() as u64;
            if meta.member_count + adding > meta.max_members {
                return Err(StoreError::Full {
                    count: meta.member_count,
                    max: meta.max_members,
                    adding,
                });
            }
            let now = now_rfc3339();
            let update = Expr::new("SET updated_at = :now ADD member_count :n, version :one")
                .value(":now", s(now.as_str()))
                .value(":n", AttributeValue::N(adding.to_string()))
                .value(":one", AttributeValue::N("1".into()));
            let cond = Expr::live_in_app(caller).and("member_count <= :cap").value(
                ":cap",
                AttributeValue::N((meta.max_members - adding).to_string()),
            );
            let mut items = vec![self.update_meta(group_id, &update, &cond)?];
            if !caller.app_admin {
                items.push(self.check_member(group_id, &caller.client_id)?);
            }
            for id in &new {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(Self::member_item(&caller.app_id, group_id, id, &now)))
                    .condition_expression("attribute_not_exists(sk)")
                    .build()
                    .map_err(build_err)?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            match self.transact(items).await? {
                TxOutcome::Done => return Ok(()),
                // Something changed since the read (a concurrent add or removal, the
                // group deleted): read again and decide again.
                TxOutcome::Refused(_) => continue,
            }
        }
        Err(StoreError::Contention)
    }

    async fn remove_members(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
    ) -> Result<(), StoreError> {
        let ids = members.ids();
        let leaving = !caller.app_admin && ids.len() == 1 && ids[0] == caller.client_id;
        let mut cond = Expr::live_in_app(caller);
        if !leaving {
            cond = cond.managed_by(caller);
        }
        // Never the owner: an owner hands the group over or deletes it.
        let cond = cond.owner_not_in(ids);
        for _ in 0..8 {
            let clients: Vec<&str> = ids.iter().map(String::as_str).collect();
            let (meta, present) = self.meta_and_members(group_id, &clients).await?;
            if leaving && meta.as_ref().is_some_and(|m| m.live) && present.is_empty() {
                return Err(StoreError::NotFound); // not a member: nothing to leave
            }
            let gone: Vec<String> = ids
                .iter()
                .filter(|id| present.contains(*id))
                .cloned()
                .collect();
            let mut items = Vec::new();
            if gone.is_empty() {
                // Nobody to remove: still answer as the write would have (404, 403).
                items.push(self.check_meta(group_id, &cond)?);
            } else {
                // Whoever leaves the group stops being one of its admins.
                let update = Expr::new("SET updated_at = :now ADD member_count :n, version :one DELETE #admins :removed")
                    .name("#admins", "admins")
                    .value(":now", s(now_rfc3339()))
                    .value(":n", AttributeValue::N(format!("-{}", gone.len())))
                    .value(":one", AttributeValue::N("1".into()))
                    .value(":removed", string_set(&gone));
                items.push(self.update_meta(group_id, &update, &cond)?);
                for id in &gone {
                    let delete = Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(group_pk(group_id), member_sk(id))))
                        // Counted once: a member removed meanwhile sends us round again.
                        .condition_expression("attribute_exists(sk)")
                        .build()
                        .map_err(build_err)?;
                    items.push(TransactWriteItem::builder().delete(delete).build());
                }
            }
            match self.transact(items).await? {
                TxOutcome::Done => return Ok(()),
                TxOutcome::Refused(r) if r.iter().any(|(i, _)| *i == 0) => {
                    return Err(self.refused(caller, group_id, r).await)
                }
                TxOutcome::Refused(_) => continue,
            }
        }
        Err(StoreError::Contention)
    }

    async fn set_admins(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
        grant: bool,
    ) -> Result<(), StoreError> {
        let ids = members.ids();
        let cond = Expr::live_in_app(caller).owned_by(caller).owner_not_in(ids);
        let update = Expr::new(if grant {
            "ADD #admins :ids, version :one"
        } else {
            "DELETE #admins :ids ADD version :one"
        })
        .name("#admins", "admins")
        .value(":ids", string_set(ids))
        .value(":one", AttributeValue::N("1".into()));
        if !grant {
            return self
                .update_meta_alone(caller, group_id, &update, &cond, ReturnValue::None, None)
                .await
                .map(|_| ());
        }
        // Only members can be made admins: check each in the same transaction.
        let mut items = vec![self.update_meta(group_id, &update, &cond)?];
        for id in ids {
            items.push(self.check_member(group_id, id)?);
        }
        match self.transact(items).await? {
            TxOutcome::Done => Ok(()),
            TxOutcome::Refused(r) if r.iter().any(|(i, _)| *i == 0) => {
                Err(self.refused(caller, group_id, r).await)
            }
            TxOutcome::Refused(r) => Err(StoreError::NotMembers(
                r.iter()
                    .filter_map(|(i, _)| ids.get(i - 1).cloned())
                    .collect(),
            )),
        }
    }

    async fn transfer_owner(
        &self,
        caller: &Caller,
        group_id: u64,
        new_owner: &str,
    ) -> Result<GroupMeta, StoreError> {
        // The new owner must be a member, checked in the same transaction; an owner is
        // never also listed as a group admin.
        let update = Expr::new(
            "SET #owner = :new_owner, updated_at = :now ADD version :one DELETE #admins :new_owner_set",
        )
        .name("#owner", "owner")
        .name("#admins", "admins")
        .value(":new_owner", s(new_owner))
        .value(":new_owner_set", string_set(&[new_owner.to_owned()]))
        .value(":now", s(now_rfc3339()))
        .value(":one", AttributeValue::N("1".into()));
        let cond = Expr::live_in_app(caller).owned_by(caller);
        let items = vec![
            self.update_meta(group_id, &update, &cond)?,
            self.check_member(group_id, new_owner)?,
        ];
        match self.transact(items).await? {
            TxOutcome::Done => self.group_meta(group_id).await?.ok_or(StoreError::NotFound),
            TxOutcome::Refused(r) if r.iter().any(|(i, _)| *i == 0) => {
                Err(self.refused(caller, group_id, r).await)
            }
            TxOutcome::Refused(_) => Err(StoreError::NotMembers(vec![new_owner.to_owned()])),
        }
    }

    async fn conversation_group(
        &self,
        app_id: &str,
        conversation_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(link_key(app_id, conversation_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(conversation link)", e))?;
        Ok(out
            .item()
            .and_then(|i| i.get("group_id"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok()))
    }

    async fn standing(
        &self,
        app_id: &str,
        group_id: u64,
        client_id: &str,
    ) -> Result<GroupStatus, StoreError> {
        let (meta, present) = self.meta_and_members(group_id, &[client_id]).await?;
        Ok(match meta.filter(|m| m.app_id == app_id) {
            None => GroupStatus::Absent,
            Some(m) if !m.live => GroupStatus::Deleting,
            Some(m) => GroupStatus::Live(Standing {
                member: present.contains(client_id),
                owner: m.owner == client_id,
                admin: m.admins.contains(client_id),
                owner_id: m.owner,
            }),
        })
    }

    async fn group_for(&self, caller: &Caller, group_id: u64) -> Result<GroupMeta, StoreError> {
        let (meta, present) = self
            .meta_and_members(group_id, &[&caller.client_id])
            .await?;
        Self::visible(meta, caller, present.contains(&caller.client_id))
    }

    async fn members_page(
        &self,
        caller: &Caller,
        group_id: u64,
        limit: u32,
        after: Option<&str>,
    ) -> Result<(GroupMeta, Page<(String, String), String>), StoreError> {
        let meta = self.group_for(caller, group_id).await?;
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :m)")
            .expression_attribute_values(":pk", s(group_pk(group_id)))
            .expression_attribute_values(":m", s(MEMBER_PREFIX))
            .projection_expression("sk, joined_at")
            .consistent_read(true)
            .limit(limit as i32);
        if let Some(after) = after {
            // The partition always comes from the group asked for: a cursor can only move
            // within it, never into another group.
            query = query.set_exclusive_start_key(Some(key(group_pk(group_id), member_sk(after))));
        }
        let out = query
            .send()
            .await
            .map_err(|e| sdk_err("Query(members page)", e))?;
        let text = |i: &Item, k: &str| {
            i.get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let items: Vec<(String, String)> = out
            .items()
            .iter()
            .filter_map(|i| {
                let id = text(i, SK).strip_prefix(MEMBER_PREFIX)?.to_owned();
                Some((id, text(i, "joined_at")))
            })
            .collect();
        let next = out
            .last_evaluated_key()
            .and_then(|k| k.get(SK))
            .and_then(|v| v.as_s().ok())
            .and_then(|sk| sk.strip_prefix(MEMBER_PREFIX))
            .map(str::to_owned);
        Ok((meta, Page { items, next }))
    }

    async fn client_groups(
        &self,
        caller: &Caller,
        client_id: &str,
        limit: u32,
        after: Option<u64>,
    ) -> Result<Page<GroupMeta, u64>, StoreError> {
        let gsi1pk = format!("CLIENT#{}:{client_id}", caller.app_id);
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :c")
            .expression_attribute_values(":c", s(gsi1pk.as_str()))
            .limit(limit as i32);
        if let Some(g) = after {
            let mut start = key(group_pk(g), member_sk(client_id));
            start.insert("gsi1pk".into(), s(gsi1pk.as_str()));
            start.insert("gsi1sk".into(), s(format!("GROUP#{g:020}")));
            query = query.set_exclusive_start_key(Some(start));
        }
        let out = query
            .send()
            .await
            .map_err(|e| sdk_err("Query(client groups)", e))?;
        let group_of = |i: &Item| {
            i.get("gsi1sk")
                .and_then(|v| v.as_s().ok())
                .and_then(|g| g.strip_prefix("GROUP#"))
                .and_then(|g| g.parse::<u64>().ok())
        };
        let ids: Vec<u64> = out.items().iter().filter_map(group_of).collect();
        let metas = self
            .batch_get(ids.iter().map(|g| Self::meta_key(*g)).collect())
            .await?;
        let mut groups: Vec<GroupMeta> = metas
            .iter()
            .filter_map(GroupMeta::from_item)
            // The index is eventually consistent and deletes finish in steps: only live
            // groups of this app count.
            .filter(|m| m.live && m.app_id == caller.app_id)
            .collect();
        groups.sort_by_key(|m| m.group_id);
        let next = out
            .last_evaluated_key()
            .and_then(|k| k.get("gsi1sk").cloned())
            .and_then(|v| v.as_s().ok().cloned())
            .and_then(|g| g.strip_prefix("GROUP#").and_then(|g| g.parse::<u64>().ok()));
        Ok(Page {
            items: groups,
            next,
        })
    }
}
