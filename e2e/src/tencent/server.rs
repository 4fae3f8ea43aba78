//! The stand-in's HTTP side: the LeanCloud stand-in's connection serving
//! (`crate::im_cloud::server::serve_on_loopback`), with Tencent's faults around each call.

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::http::request::Parts;
use hyper::{header, Response, StatusCode};
use tokio::task::JoinHandle;

use std::collections::BTreeSet;

use serde_json::Value;

use super::body::Fail;
use super::callback::{self, Tamper};
use super::faults::{Fault, FaultKind, FaultTiming};
use super::rest::{self, Answer, Body};
use super::Shared;
use crate::im_cloud::server::{serve_on_loopback, Dropped, Served};

pub(super) fn listen(shared: Arc<Shared>) -> (String, JoinHandle<()>) {
    serve_on_loopback(move |parts, body| serve(shared.clone(), parts, body))
}

/// A fault's answer, when it has one.
fn fault_answer(kind: FaultKind) -> Option<Answer> {
    let fail = |code, info: &str| Some(Answer::fail(&Fail::new(code, info)));
    match kind {
        FaultKind::RestRateLimit => fail(60007, "REST API calls over the limit (injected)"),
        FaultKind::GroupRateLimit => fail(10023, "group calls over the limit (injected)"),
        FaultKind::Internal => fail(10002, "internal error, retry (injected)"),
        FaultKind::Status500 => Some(Answer::gateway(StatusCode::INTERNAL_SERVER_ERROR)),
        FaultKind::Status502 => Some(Answer::gateway(StatusCode::BAD_GATEWAY)),
        FaultKind::Slow | FaultKind::Drop => None,
    }
}

async fn serve(shared: Arc<Shared>, parts: Parts, body: Bytes) -> Served {
    let (entry, fault, slow_delay) = shared.begin(parts.uri.path(), &body);
    if let Some(Fault {
        kind,
        timing: FaultTiming::BeforeChange,
    }) = fault
    {
        if kind == FaultKind::Slow {
            tokio::time::sleep(slow_delay).await;
        }
        return shared.finish(entry, fault_answer(kind).ok_or(Dropped));
    }
    // The app's callback, asked before the change (notes, "Callbacks").
    let command = parts.uri.path().strip_prefix("/v4/").unwrap_or_default();
    let operator = parts.uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "identifier")
            .map(|(_, v)| v.into_owned())
    });
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let target = shared.lock().callback.clone();
    let mut refused = BTreeSet::new();
    let mut asks = None;
    if let (Some(target), Some(parsed), Some(op)) = (&target, &parsed, &operator) {
        if shared.app.admins.contains(op) {
            asks = Some((target.clone(), parsed.clone(), op.clone()));
        }
    }
    if let Some((target, parsed, op)) = &asks {
        if let Some((event, ev)) = callback::before_event(command, op, parsed) {
            let sdk = shared.app.sdk_app_id;
            let logged = callback::post_callback(
                target,
                sdk,
                event,
                callback::REST_PLATFORM,
                ev.to_string().as_bytes(),
                Tamper::None,
            )
            .await;
            shared.lock().callbacks.push(logged.clone());
            if !logged.allows() {
                let fail = Fail::new(10016, "refused by the app's callback");
                return shared.finish(entry, Ok(Answer::fail(&fail)));
            }
            refused = logged.refused_members().into_iter().collect();
        }
    }
    let before = parsed
        .as_ref()
        .and_then(|p| p.get("GroupId")?.as_str())
        .and_then(|id| Some(shared.lock().store.groups.get(id)?.group.clone()));
    let answer = shared.handle(
        entry,
        &rest::Request {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            body: &body,
        },
        refused,
    );
    // Then, as Tencent does, told after the change without holding up the answer.
    if let (true, Some((target, parsed, op))) = (answer.applied, asks) {
        let after = callback::after_event(command, &op, &parsed, before.as_ref());
        if let Some((event, ev)) = after {
            let shared = shared.clone();
            tokio::spawn(async move {
                let logged = callback::post_callback(
                    &target,
                    shared.app.sdk_app_id,
                    event,
                    callback::REST_PLATFORM,
                    ev.to_string().as_bytes(),
                    Tamper::None,
                )
                .await;
                shared.lock().callbacks.push(logged);
            });
        }
    }
    let outcome = match fault.map(|f| f.kind) {
        None => Ok(answer),
        Some(FaultKind::Slow) => {
            tokio::time::sleep(slow_delay).await;
            Ok(answer)
        }
        Some(kind) => fault_answer(kind).ok_or(Dropped),
    };
    shared.finish(entry, outcome)
}

fn response(answer: Answer) -> Response<Full<Bytes>> {
    let builder = Response::builder().status(answer.status);
    let builder = if answer.status == StatusCode::METHOD_NOT_ALLOWED {
        builder.header(header::ALLOW, "POST")
    } else {
        builder
    };
    let (content_type, bytes) = match answer.body {
        Body::Json(json) => ("application/json; charset=utf-8", json.to_string()),
        Body::Text(text) => ("text/plain; charset=utf-8", text.to_string()),
    };
    builder
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(bytes)))
        .unwrap()
}

impl Shared {
    /// Turns the outcome into what hyper sends, and logs its status and code.
    fn finish(&self, entry: usize, outcome: Result<Answer, Dropped>) -> Served {
        {
            let mut inner = self.lock();
            let logged = &mut inner.log[entry];
            if let Ok(answer) = &outcome {
                logged.status = Some(answer.status.as_u16());
                logged.error_code = answer.error_code();
            }
        }
        outcome.map(response)
    }
}
