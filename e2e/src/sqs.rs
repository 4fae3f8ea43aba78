//! A stand-in for one SQS queue, served in-process on 127.0.0.1, for
//! `im-admin sync redrive --queue-url`: SQS cannot be reached from here and nothing local
//! serves it. It speaks what aws-sdk-sqs sends, the AWS JSON 1.0 protocol (`POST /`,
//! `X-Amz-Target: AmazonSQS.<Operation>`, a JSON body naming the `QueueUrl`), for the
//! operations the redrive uses: ReceiveMessage, DeleteMessage and ChangeMessageVisibility,
//! with visibility timeouts and receipt handles as SQS keeps them. It requires a SigV4
//! signature but does not check it. Point the SDK at it with `AWS_ENDPOINT_URL_SQS`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// The running stand-in; it stops serving when dropped.
pub struct SqsStandIn {
    endpoint: String,
    queue_url: String,
    queue: Arc<Mutex<Queue>>,
    serving: JoinHandle<()>,
}

#[derive(Default)]
struct Queue {
    url: String,
    messages: Vec<Stored>,
    sent: u64,
    receipts: u64,
    /// Every operation asked for, in order.
    operations: Vec<String>,
}

struct Stored {
    id: String,
    body: String,
    /// The handle of the latest receive: only it deletes or changes the message.
    receipt: Option<String>,
    hidden_until: Option<Instant>,
}

impl Drop for SqsStandIn {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

impl SqsStandIn {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let queue_url = format!("{endpoint}/000000000000/sync-dead-letters");
        let queue = Arc::new(Mutex::new(Queue {
            url: queue_url.clone(),
            ..Queue::default()
        }));
        let app = axum::Router::new()
            .route("/", axum::routing::post(operation))
            .with_state(queue.clone());
        let serving = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            endpoint,
            queue_url,
            queue,
            serving,
        }
    }

    /// What `AWS_ENDPOINT_URL_SQS` is set to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Puts a message in the queue, as Lambda's on-failure destination does; returns its id.
    pub fn send(&self, body: &str) -> String {
        let mut q = lock(&self.queue);
        q.sent += 1;
        let id = format!("00000000-0000-4000-8000-{:012}", q.sent);
        q.messages.push(Stored {
            id: id.clone(),
            body: body.to_owned(),
            receipt: None,
            hidden_until: None,
        });
        id
    }

    /// The bodies of the messages in the queue (visible or not), oldest first.
    pub fn bodies(&self) -> Vec<String> {
        lock(&self.queue)
            .messages
            .iter()
            .map(|m| m.body.clone())
            .collect()
    }

    /// The bodies of the messages a receive would return now.
    pub fn visible(&self) -> Vec<String> {
        let now = Instant::now();
        lock(&self.queue)
            .messages
            .iter()
            .filter(|m| m.hidden_until.is_none_or(|t| t <= now))
            .map(|m| m.body.clone())
            .collect()
    }

    /// The operations asked for so far (`ReceiveMessage`, ...), in order.
    pub fn operations(&self) -> Vec<String> {
        lock(&self.queue).operations.clone()
    }
}

fn lock(q: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An answer in the JSON 1.0 protocol.
fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    answer(
        status,
        json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": message}),
    )
}

async fn operation(
    State(queue): State<Arc<Mutex<Queue>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if !header("authorization").starts_with("AWS4-HMAC-SHA256 ") {
        return error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "not signed",
        );
    }
    if header("content-type") != "application/x-amz-json-1.0" {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "not JSON 1.0",
        );
    }
    let Some(op) = header("x-amz-target")
        .strip_prefix("AmazonSQS.")
        .map(str::to_owned)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "no target",
        );
    };
    let Ok(input) = serde_json::from_str::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "InvalidParameterValue", "not JSON");
    };
    let mut q = lock(&queue);
    q.operations.push(op.clone());
    if input["QueueUrl"] != q.url.as_str() {
        return error(
            StatusCode::BAD_REQUEST,
            "QueueDoesNotExist",
            "no such queue",
        );
    }
    let now = Instant::now();
    let seconds =
        |name: &str, default: u64| Duration::from_secs(input[name].as_u64().unwrap_or(default));
    match op.as_str() {
        "ReceiveMessage" => {
            let max = input["MaxNumberOfMessages"]
                .as_u64()
                .unwrap_or(1)
                .clamp(1, 10) as usize;
            let hide_for = seconds("VisibilityTimeout", 30);
            let mut out = Vec::new();
            for i in 0..q.messages.len() {
                if out.len() == max || q.messages[i].hidden_until.is_some_and(|t| t > now) {
                    continue;
                }
                q.receipts += 1;
                let receipt = format!("receipt-{}", q.receipts);
                let m = &mut q.messages[i];
                m.receipt = Some(receipt.clone());
                m.hidden_until = Some(now + hide_for);
                out.push(json!({"MessageId": m.id, "ReceiptHandle": receipt, "Body": m.body}));
            }
            answer(StatusCode::OK, json!({"Messages": out}))
        }
        "DeleteMessage" | "ChangeMessageVisibility" => {
            let handle = input["ReceiptHandle"].as_str().unwrap_or("");
            let Some(i) = q
                .messages
                .iter()
                .position(|m| m.receipt.as_deref() == Some(handle))
            else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ReceiptHandleIsInvalid",
                    "unknown receipt handle",
                );
            };
            if op == "DeleteMessage" {
                q.messages.remove(i);
            } else {
                q.messages[i].hidden_until = Some(now + seconds("VisibilityTimeout", 0));
            }
            answer(StatusCode::OK, json!({}))
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "UnsupportedOperation",
            "not served by the stand-in",
        ),
    }
}
