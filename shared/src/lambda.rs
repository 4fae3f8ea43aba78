//! The whole of a function binary: state built once at init, then the Lambda runtime
//! feeding API Gateway events through a router that serves this function's routes and
//! links only its handler.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;

use crate::api::routes::{Entry, Function};
use crate::api::{router_for, AppState};
use crate::config::Config;

/// How long init may spend opening the connection to DynamoDB (Lambda allows 10 s).
const WARM_UP_LIMIT: Duration = Duration::from_millis(1500);

/// Runs the function `E` (one of [`crate::functions`]) on a single-threaded runtime: a
/// sandbox serves one event at a time, so worker threads would only add their start-up
/// to init and a hand-over between threads to each request.
///
/// Only the router is `E`'s own: init and the runtime's loop are the non-generic
/// [`init`] and [`serve`], compiled once in this library rather than again in each of
/// the function binaries, which `sam build` compiles one after another.
pub fn run<E: Entry>(_function: E) -> Result<(), lambda_http::Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let state = init(E::FUNCTION).await?;
            serve(router_for::<E>(state)).await
        })
}

/// A future built here and polled through a vtable: its code is compiled in this library.
/// An `async fn`'s body would be compiled again in each binary that awaits it.
type Compiled<T> = Pin<Box<dyn Future<Output = Result<T, lambda_http::Error>>>>;

/// Logging, the configuration, the DynamoDB client and, over TLS, its connection.
fn init(function: Function) -> Compiled<AppState> {
    Box::pin(async move {
        crate::telemetry::init();
        let config = Config::from_env()?;
        // `health` reads no data (and its role may not): it opens no connection.
        let warm_up = (function != Function::Health && config.dynamodb_target.warm_up_at_init())
            .then_some(WARM_UP_LIMIT);
        Ok(AppState::from_config(config, warm_up).await)
    })
}

/// The Lambda runtime feeding API Gateway events through `router`.
fn serve(router: Router) -> Compiled<()> {
    Box::pin(lambda_http::run(router))
}
