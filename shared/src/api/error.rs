//! The one error type every route returns, and the one mapping to HTTP of every error
//! below it (the model's [`Invalid`], authentication's [`Unauthorized`], the store's
//! [`StoreError`]). The JSON body is
//! `{"code": <int>, "msg": "...", "request": "METHOD /path"}`, the shape clients of the
//! older service already parse. `request` is filled in by [`crate::api`]'s middleware,
//! which is the only place that knows the request line.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use thiserror::Error;

use crate::auth::Unauthorized;
use crate::model::Invalid;
use crate::store::StoreError;

/// `Retry-After` on a 503. One second: throttling and a blip in the network clear
/// within it, and the answer itself already took up to the store's bound (a few
/// seconds, `config::DynamoBounds`) when storage did not answer, so a client that waits
/// this long again does not hammer a store that is down; a longer outage shows as
/// repeated 503s, which clients back off from on their own.
pub const RETRY_AFTER_SECONDS: &str = "1";

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("invalid_parameter: {0}")]
    BadRequest(String),
    /// Missing, malformed, expired or badly signed credentials: one answer for all.
    #[error("unauthorized")]
    Unauthorized,
    /// Authenticated, but this action is not the caller's to take.
    #[error("forbidden")]
    Forbidden,
    #[error("{0}_not_found")]
    NotFound(&'static str),
    #[error("method_not_allowed")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("payload_too_large: the body may hold at most {0} bytes")]
    PayloadTooLarge(usize),
    #[error("unsupported_media_type: send application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    /// `If-Match` named a version the group no longer has.
    #[error("precondition_failed: {0}")]
    PreconditionFailed(String),
    #[error("unprocessable_entity: {0}")]
    Unprocessable(String),
    /// Storage cannot serve now (unreachable, too slow, throttling); the caller may
    /// retry after [`RETRY_AFTER_SECONDS`].
    #[error("service_unavailable: try again shortly")]
    Unavailable,
    /// Never shown to the caller beyond "internal_error"; logged where it is created.
    #[error("internal_error")]
    Internal,
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable numeric codes; 1000 is the older service's `invalid_parameter`.
    pub fn code(&self) -> u32 {
        match self {
            Self::BadRequest(_) => 1000,
            Self::Unauthorized => 1001,
            Self::Forbidden => 1003,
            Self::NotFound("group") => 1041,
            Self::NotFound("app") => 1042,
            Self::NotFound("tencent_settings") => 1043,
            Self::NotFound(_) => 1004,
            Self::MethodNotAllowed => 1005,
            Self::Conflict(_) => 1009,
            Self::PayloadTooLarge(_) => 1013,
            Self::UnsupportedMediaType => 1015,
            Self::PreconditionFailed(_) => 1012,
            Self::Unprocessable(_) => 1022,
            Self::Unavailable => 1503,
            Self::Internal => 1500,
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(err: Invalid) -> Self {
        ApiError::BadRequest(err.0)
    }
}

impl From<Unauthorized> for ApiError {
    fn from(_: Unauthorized) -> Self {
        ApiError::Unauthorized
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("group"),
            StoreError::Forbidden => ApiError::Forbidden,
            StoreError::AlreadyExists => ApiError::Conflict("already exists".into()),
            StoreError::AppRemoved => {
                ApiError::Conflict("the app id belonged to a removed app".into())
            }
            StoreError::NotMembers(ids) => {
                ApiError::Conflict(format!("not members of the group: {}", ids.join(":")))
            }
            StoreError::Full { count, max, adding } => ApiError::Conflict(format!(
                "the group has {count} of at most {max} members; adding {adding} would exceed that, so nobody was added"
            )),
            StoreError::TooManyAdmins { max } => ApiError::Conflict(format!(
                "a group has at most {max} admins; granting these would exceed that, so nobody was made an admin"
            )),
            StoreError::Invalid(detail) => {
                tracing::warn!(error = %detail, "storage refused the request as invalid");
                ApiError::BadRequest(
                    "the request would make an item larger, or a value other, than storage takes"
                        .into(),
                )
            }
            StoreError::KeyNeeded => ApiError::BadRequest(
                "the app's first Tencent settings need its secret key".into(),
            ),
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
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "storage unavailable");
                ApiError::Unavailable
            }
            StoreError::Backend(detail) => {
                tracing::error!(error = %detail, "storage failure");
                ApiError::Internal
            }
        }
    }
}

/// What the middleware needs to render the body once it knows the request line.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub code: u32,
    pub msg: String,
    pub request: String,
}

impl ErrorBody {
    pub fn into_response_with(mut self, status: StatusCode, request: String) -> Response {
        self.request = request;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            code: self.code(),
            msg: self.to_string(),
            request: String::new(),
        };
        let mut resp = body.clone().into_response_with(status, String::new());
        resp.extensions_mut().insert(body);
        match self {
            Self::Unavailable => {
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            Self::Unauthorized => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"im\""),
                );
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_4xx_or_5xx_status_and_a_distinct_code() {
        let all = [
            ApiError::bad("x"),
            ApiError::Unauthorized,
            ApiError::Forbidden,
            ApiError::NotFound("group"),
            ApiError::NotFound("app"),
            ApiError::NotFound("tencent_settings"),
            ApiError::NotFound("route"),
            ApiError::MethodNotAllowed,
            ApiError::Conflict("x".into()),
            ApiError::PayloadTooLarge(1),
            ApiError::UnsupportedMediaType,
            ApiError::PreconditionFailed("x".into()),
            ApiError::Unprocessable("x".into()),
            ApiError::Unavailable,
            ApiError::Internal,
        ];
        let mut codes: Vec<u32> = all.iter().map(ApiError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(all.iter().all(|e| e.status().as_u16() >= 400));
    }
}
