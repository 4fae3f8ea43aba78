//! The stand-in's HTTP side. Each TCP connection is served by hyper on its own, so that a
//! fault can close a connection without answering: when the service fails, hyper drops
//! the connection and writes nothing. (axum's `serve` answers every request; its
//! extractors would also answer refusals in axum's shapes rather than the vendor's.)
//!
//! [`serve_on_loopback`] is that connection serving alone, shared with the Tencent
//! stand-in (`crate::tencent`), which answers in its own vendor's shapes.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::faults::{Fault, FaultKind, FaultTiming};
use super::rest::{self, Answer};
use super::Shared;

/// The connection is closed without an answer.
#[derive(Debug)]
pub(crate) struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by the stand-in")
    }
}

impl std::error::Error for Dropped {}

/// Listens on a free port of 127.0.0.1; returns the base URL and the accepting task.
pub(super) async fn listen(shared: Arc<Shared>) -> (String, JoinHandle<()>) {
    serve_on_loopback(move |parts, body| serve(shared.clone(), parts, body))
}

/// What a stand-in's answer to one request is: a response, or the connection closed.
pub(crate) type Served = Result<Response<Full<Bytes>>, Dropped>;

/// Serves `answer` on a free port of 127.0.0.1, each connection on its own, with each
/// request's body read whole first; returns the base URL and the accepting task (abort it
/// to stop accepting). A body the client does not finish sending drops the connection.
/// Not async (the port is bound at once), but it must run inside a tokio runtime.
pub(crate) fn serve_on_loopback<F, Fut>(answer: F) -> (String, JoinHandle<()>)
where
    F: Fn(Parts, Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Served> + Send + 'static,
{
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let listener = TcpListener::from_std(listener).unwrap();
    let accepting = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: wait for some to close rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
                        answer(parts, body).await
                    }
                });
                // An error here is a dropped connection (ours or the client's): nothing to do.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, accepting)
}

async fn serve(shared: Arc<Shared>, parts: Parts, body: Bytes) -> Served {
    let (entry, fault, slow_delay) = shared.begin(&parts.method, &parts.uri);
    if let Some(Fault {
        kind,
        timing: FaultTiming::BeforeChange,
    }) = fault
    {
        let answer = match kind {
            FaultKind::TooManyRequests => Answer::too_many_requests(),
            FaultKind::ServerError => Answer::server_error(),
            FaultKind::Slow => {
                tokio::time::sleep(slow_delay).await;
                return shared.finish(entry, Err(Dropped));
            }
            FaultKind::Drop => return shared.finish(entry, Err(Dropped)),
        };
        return shared.finish(entry, Ok(answer));
    }
    let answer = shared.handle(
        entry,
        &rest::Request {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            body: &body,
        },
    );
    let outcome = match fault.map(|f| f.kind) {
        None => Ok(answer),
        Some(FaultKind::ServerError) => Ok(Answer::server_error()),
        Some(FaultKind::Drop) => Err(Dropped),
        Some(FaultKind::Slow) => {
            tokio::time::sleep(slow_delay).await;
            Ok(answer)
        }
        Some(FaultKind::TooManyRequests) => unreachable!("a 429 comes before the change"),
    };
    shared.finish(entry, outcome)
}

fn response(answer: &Answer) -> Response<Full<Bytes>> {
    Response::builder()
        .status(answer.status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(answer.body.to_string())))
        .unwrap()
}

impl Shared {
    /// Turns the outcome into what hyper sends, and logs its status.
    fn finish(
        &self,
        entry: usize,
        outcome: Result<Answer, Dropped>,
    ) -> Result<Response<Full<Bytes>>, Dropped> {
        let status = outcome.as_ref().ok().map(|a| a.status.as_u16());
        self.lock().log[entry].status = status;
        outcome.map(|answer| response(&answer))
    }
}
