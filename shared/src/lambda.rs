//! The whole of a function binary: state built once at init, then the Lambda runtime
//! feeding API Gateway events through a router that serves this function's routes and
//! links only its handler.

use crate::api::routes::Entry;
use crate::api::{router_for, AppState};

/// Runs the function `E` (one of [`crate::functions`]).
pub async fn run<E: Entry>(_function: E) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let state = AppState::from_env().await?;
    lambda_http::run(router_for::<E>(state)).await
}
