//! The whole of a function binary: state built once at init, then the Lambda runtime
//! feeding API Gateway events through a router that serves this function's routes and
//! links only its handler.

use std::time::Duration;

use crate::api::routes::{Entry, Function};
use crate::api::{router_for, AppState};
use crate::store::dynamo::client::Trust;

/// How long init may spend opening the connection to DynamoDB (Lambda allows 10 s).
const WARM_UP_LIMIT: Duration = Duration::from_millis(1500);

/// Whether init opens the connection to DynamoDB: over TLS (AWS), where the handshake is
/// worth paying during init; not over plain http (DynamoDB Local on loopback), where a
/// connection costs nothing and the call would only add a round trip to init, unless
/// `IM_DYNAMODB_WARM_UP=always` (`never` turns it off everywhere).
fn warm_up_wanted(var: impl Fn(&str) -> Option<String>, trust: Trust) -> bool {
    match var("IM_DYNAMODB_WARM_UP").as_deref() {
        Some("always") => true,
        Some("never") => false,
        _ => trust != Trust::Nothing,
    }
}

/// Runs the function `E` (one of [`crate::functions`]).
pub async fn run<E: Entry>(_function: E) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    // `health` reads no data (and its role may not): it opens no connection.
    let wanted = warm_up_wanted(|name| std::env::var(name).ok(), Trust::from_env());
    let warm_up = (E::FUNCTION != Function::Health && wanted).then_some(WARM_UP_LIMIT);
    let state = AppState::from_env_warm(warm_up).await?;
    lambda_http::run(router_for::<E>(state)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_connects_over_tls_unless_told() {
        let none = |_: &str| None;
        assert!(warm_up_wanted(none, Trust::AmazonRoots));
        assert!(warm_up_wanted(none, Trust::System));
        assert!(!warm_up_wanted(none, Trust::Nothing));
        let always = |_: &str| Some("always".to_owned());
        assert!(warm_up_wanted(always, Trust::Nothing));
        let never = |_: &str| Some("never".to_owned());
        assert!(!warm_up_wanted(never, Trust::AmazonRoots));
    }
}
