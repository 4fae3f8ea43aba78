//! The whole of a function binary: state built once at init, then the Lambda runtime
//! feeding API Gateway events through the same router the local server uses.

use crate::api::{router, AppState};
use crate::routes::Function;

/// Runs the function whose package name is `package`.
pub async fn run(package: &str) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let function = Function::from_name(package)
        .ok_or_else(|| format!("the route list assigns no route to function {package:?}"))?;
    let state = AppState::from_env().await?;
    lambda_http::run(router(state, &[function])).await
}
