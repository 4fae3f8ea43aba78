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
            // An emulator may send no usable deadline (cargo lambda's is already past): then
            // the template's time-out, 60 s.
            let left = if left.is_zero() {
                Duration::from_secs(60)
            } else {
                left
            };
            // A quarter of what is left when that is less than the margin (an emulator's
            // short time-out), so that some work is always started.
            let margin = DEADLINE_MARGIN.min(left / 4);
            let deadline = Instant::now() + left.saturating_sub(margin);
            tracing::info!(
                records = event.payload.records.len(),
                time_left_ms = left.as_millis() as u64,
                "stream batch"
            );
            Ok::<_, lambda_runtime::Error>(syncer.handle(event.payload, deadline).await)
        },
    ))
    .await
}
