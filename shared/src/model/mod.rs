//! The domain: who acts, groups and member lists, the signed operations and the rules
//! about who may have them. Nothing here knows DynamoDB or HTTP, so every rule can be
//! read, and unit-tested, on its own; `store` persists these types and `api` serves them.

pub mod caller;
pub mod export;
pub mod group;
pub mod ids;
pub mod im_cloud;
pub mod import;
pub mod mirror;
pub mod policy;
pub mod reserved;
pub mod secret;
pub mod signing;
pub mod tencent_callback;
pub mod tencent_cloud;
pub mod usersig;

pub use caller::{AppKey, Caller, TencentKey, TokenKey};
pub use group::{
    Created, GroupMeta, GroupPatch, GroupSpec, GroupStatus, Idempotency, NewGroup, Page, Standing,
    DEFAULT_MAX_MEMBERS, IDEMPOTENCY_WINDOW, MAX_MAX_MEMBERS,
};
pub use ids::MemberList;
pub use im_cloud::{ImCloud, OnDelete, DEFAULT_MESSAGES_PER_MINUTE, MAX_MESSAGES_PER_MINUTE};
pub use mirror::{ChangeEvent, CloudId, SyncReport, SyncStatus};
pub use policy::ConversationClaim;
pub use reserved::ReservedIds;
pub use secret::Secret;
pub use tencent_cloud::{TencentCloud, TencentGroupType, TencentSpec};

/// Input that breaks a rule of the model; the HTTP layer answers it with a 400 whose
/// message is this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}
