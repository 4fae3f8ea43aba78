//! Counting the DynamoDB calls a request makes: an interceptor on the service's own SDK
//! client sees every attempt the SDK sends (retries included), by operation, just before
//! it goes on the wire to DynamoDB Local.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use im_shared::store::DynamoStore;

use crate::stack::{ddb, env, serve_on};

/// The calls seen since the last [`Calls::take`], as `(operation, count)`.
#[derive(Debug, Default, Clone)]
pub struct Calls(Arc<Mutex<Vec<String>>>);

impl Calls {
    /// The operations sent since the last call, in order, and forgets them.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// [`Calls::take`], counted by operation.
    pub fn counted(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for op in self.take() {
            *out.entry(op).or_default() += 1;
        }
        out
    }
}

impl Intercept for Calls {
    fn name(&self) -> &'static str {
        "count DynamoDB calls"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.lock().unwrap().push(operation(context).to_owned());
        Ok(())
    }
}

/// The operation a request is: DynamoDB's JSON protocol names it in a header,
/// `x-amz-target: DynamoDB_20120810.GetItem`.
fn operation<'a>(context: &'a BeforeTransmitInterceptorContextRef<'_>) -> &'a str {
    let target = context
        .request()
        .headers()
        .get("x-amz-target")
        .unwrap_or("?");
    target.rsplit('.').next().unwrap_or(target)
}

/// Counts calls by operation in constant memory, for a long run (the import benchmark)
/// where [`Calls`]' list would grow with the run.
#[derive(Debug, Default, Clone)]
pub struct Tally(Arc<Mutex<BTreeMap<String, u64>>>);

impl Tally {
    pub fn counted(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap().clone()
    }
}

impl Intercept for Tally {
    fn name(&self) -> &'static str {
        "tally DynamoDB calls"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = operation(context);
        let mut tally = self.0.lock().unwrap();
        match tally.get_mut(op) {
            Some(n) => *n += 1,
            None => {
                tally.insert(op.to_owned(), 1);
            }
        }
        Ok(())
    }
}

/// The service as [`crate::stack::serve`] serves it, with `settings`, on the local
/// server's table, through a client whose every DynamoDB call is counted. Its caches start
/// empty, like a new Lambda sandbox's.
pub async fn serve_counted(settings: &[(&str, &str)]) -> (String, Calls) {
    let calls = Calls::default();
    let client = ddb().await;
    let config = client
        .config()
        .to_builder()
        .interceptor(calls.clone())
        .build();
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        env("IM_TEST_LOCAL_TABLE"),
    );
    (serve_on(settings, store).await, calls)
}
