//! What handlers take from a request: the caller ([`caller`]), bodies ([`body`]) and
//! path parameters.

pub mod body;
pub mod caller;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;

use super::error::ApiError;

/// Path parameters, with a decoding failure (say, invalid UTF-8) answered as a 400.
pub fn path_params<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|_| ApiError::bad("a path segment is not valid UTF-8 after URL decoding"))
}
