//! Storage: the traits the routes use, by concern, and their DynamoDB implementation
//! ([`dynamo`]). The HTTP layer maps [`StoreError`] to statuses (`api::error`); nothing
//! here knows HTTP.

pub mod cache;
pub mod dynamo;

use async_trait::async_trait;
use thiserror::Error;

use crate::model::{
    AppKey, Caller, CloudId, ConversationClaim, Created, GroupMeta, GroupPatch, GroupSpec,
    GroupStatus, Idempotency, MemberList, Page, ReservedIds, TencentKey, TokenKey,
};

pub use cache::{Keys, Links};
pub use dynamo::DynamoStore;

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
    /// The app id was an app's that was removed: it is never registered again.
    #[error("the app id belonged to a removed app")]
    AppRemoved,
    #[error("not members of the group: {0:?}")]
    NotMembers(Vec<String>),
    /// Granting would give the group more admins than the setting allows
    /// (`IM_MAX_ADMINS`); nothing was granted.
    #[error("a group has at most {max} admins")]
    TooManyAdmins { max: u64 },
    /// A write DynamoDB refuses as invalid (an item past its size limit, a key or value
    /// it cannot take): the request's fault, answered with a 400; the detail is for the
    /// log.
    #[error("dynamodb refused the request as invalid: {0}")]
    Invalid(String),
    /// The app's first Tencent settings came without its secret key; nothing was set.
    #[error("the app's first Tencent settings need its secret key")]
    KeyNeeded,
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
    /// DynamoDB could not serve the request now: not reached (refused, DNS, connect
    /// time-out), no answer within the bound (`config::DynamoBounds`), throttling or a
    /// 5xx once the SDK's retries were spent. The caller may retry; the detail is for
    /// the log.
    #[error("dynamodb unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a request we built wrong, an item or answer we cannot read.
    #[error("dynamodb: {0}")]
    Backend(String),
}

/// The secrets the routes read on every request (and cache; see [`cache`]).
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The app's master key (and system client), or `None` for an unknown app.
    async fn master_key(&self, app_id: &str) -> Result<Option<AppKey>, StoreError>;
    /// The app's Tencent settings and secret key, or `None` for an app without them (or
    /// no app).
    async fn tencent_key(&self, app_id: &str) -> Result<Option<TencentKey>, StoreError>;
    /// The active token secret named `kid`, or `None`.
    async fn token_key(&self, kid: &str) -> Result<Option<TokenKey>, StoreError>;
    /// The client ids the app's IM cloud settings reserve (its system client, its Tencent
    /// App admin), which no group may have as members.
    async fn reserved_ids(&self, app_id: &str) -> Result<ReservedIds, StoreError>;
    /// Both at once: the token secret `kid` and `app_id`'s master key (the first request of
    /// a signature function needs both; the DynamoDB store reads them in one round trip).
    async fn token_and_master_key(
        &self,
        kid: &str,
        app_id: &str,
    ) -> Result<(Option<TokenKey>, Option<AppKey>), StoreError> {
        Ok((self.token_key(kid).await?, self.master_key(app_id).await?))
    }
}

/// Groups as a whole: create, change, delete, hand over, read.
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Creates a group owned by the caller, who is also a member, and links its
    /// conversation. With an idempotency key, a repeat of an earlier create (same
    /// caller, key and fingerprint, within [`crate::model::IDEMPOTENCY_WINDOW`]) returns that group
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
    /// The group, for a member of it (or the app's backend).
    async fn group_for(&self, caller: &Caller, group_id: u64) -> Result<GroupMeta, StoreError>;
}

/// A group's members and admins, and a client's groups.
#[async_trait]
pub trait MemberStore: Send + Sync + 'static {
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
    /// Owner: make members group admins (`grant`: `Some(the most admins a group may
    /// have)`) or plain members again (`None`).
    async fn set_admins(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
        grant: Option<usize>,
    ) -> Result<(), StoreError>;
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
}

/// What the signature rules read: which group a conversation is, and a client's standing
/// in it.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// The group whose conversation `conversation_id` is, in `app_id`, or that it was
    /// one's and is closed now; `None` when no group ever claimed it.
    async fn conversation_group(
        &self,
        app_id: &str,
        conversation_id: &str,
    ) -> Result<Option<ConversationClaim>, StoreError>;
    /// Whether `group_id` is a group of `app_id` (live, or being deleted), and if live,
    /// `client_id`'s standing in it and which of `named` are its members.
    async fn standing(
        &self,
        app_id: &str,
        group_id: u64,
        client_id: &str,
        named: &[&str],
    ) -> Result<GroupStatus, StoreError>;
}

/// What an IM cloud's callback records that no group route writes.
#[async_trait]
pub trait CloudStateStore: Send + Sync + 'static {
    /// Marks `group_id`'s sync state in `cloud` failed with `why`, while the group is a
    /// live group of `app_id` (one transaction: the group checked, its sync state
    /// written); `false` when it is not, or is failed with `why` already (a replayed
    /// callback changes nothing twice).
    async fn mark_cloud_failed(
        &self,
        app_id: &str,
        group_id: u64,
        cloud: CloudId,
        why: &str,
    ) -> Result<bool, StoreError>;
}

/// Everything the routes need from storage; nothing else.
pub trait Store: KeyStore + GroupStore + MemberStore + ConversationStore + CloudStateStore {}

impl<T: KeyStore + GroupStore + MemberStore + ConversationStore + CloudStateStore> Store for T {}
