//! Lambda entry point: DynamoDB stream batches of the table, mirrored into each app's IM
//! cloud by `im-sync`. Partial batch failures go back to Lambda, which retries them.
//! The template's schedule also invokes it (an EventBridge event, no `Records`): then it
//! drains the records deferred while an app was over its IM cloud's quota.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use im_sync::{mirror::DEADLINE_MARGIN, StreamEvent, Syncer};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    im_shared::telemetry::init();
    let syncer = Syncer::from_env().await?;
    let syncer = &syncer;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
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
            if event.payload.get("Records").is_none() {
                let drained = syncer.drain(deadline).await;
                tracing::info!(
                    drained,
                    time_left_ms = left.as_millis() as u64,
                    "deferred records drained"
                );
                return Ok::<_, lambda_runtime::Error>(serde_json::json!({ "drained": drained }));
            }
            let batch: StreamEvent = serde_json::from_value(event.payload)?;
            tracing::info!(
                records = batch.records.len(),
                time_left_ms = left.as_millis() as u64,
                "stream batch"
            );
            Ok(serde_json::to_value(syncer.handle(batch, deadline).await)?)
        },
    ))
    .await
}
