//! Who acts, as authentication established it.

use super::secret::Secret;
use super::tencent_cloud::TencentCloud;

/// Who acts: the identity the token (or API Gateway's authorizer) vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub app_id: String,
    pub client_id: String,
    /// The app's backend, acting for anyone in its app.
    pub app_admin: bool,
}

/// What a signature needs of an app: its master key, and the client id its IM cloud
/// settings send system messages as (which nobody logs in as: it speaks for the service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppKey {
    pub master: Secret,
    pub system_client: Option<String>,
}

/// An active token-signing secret and the app it speaks for.
#[derive(Debug, Clone)]
pub struct TokenKey {
    pub app_id: String,
    pub secret: Secret,
}

/// What a UserSig needs of an app: its Tencent settings and the secret key they go with;
/// and what Tencent's callbacks are checked with: the callback token, if one is set (an
/// app without one has every callback refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TencentKey {
    pub settings: TencentCloud,
    pub key: Secret,
    pub callback_token: Option<Secret>,
}
