//! Lambda entry point: DynamoDB stream batches of the table, mirrored into each app's IM
//! cloud by `im-sync`. Partial batch failures go back to Lambda, which retries them.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use im_sync::{mirror::DEADLINE_MARGIN, StreamEvent, Syncer};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    im_shared::telemetry::init();
    let syncer = Syncer::from_env().await?;
    let syncer = &syncer;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<StreamEvent>| async move {
            // The invocation's deadline (epoch ms) as an Instant, less a margin to report.
            let left = Duration::from_millis(event.context.deadline).saturating_sub(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default(),
            );
            let deadline = Instant::now() + left.saturating_sub(DEADLINE_MARGIN);
            Ok::<_, lambda_runtime::Error>(syncer.handle(event.payload, deadline).await)
        },
    ))
    .await
}
