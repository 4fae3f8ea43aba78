//! The start-up floor of a Rust Lambda function (`make bench`, not shipped): the
//! `lambda_http` runtime and a handler that answers 200 without doing anything. No
//! configuration, no logging set-up, no AWS SDK.

use lambda_http::{service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_req: Request| async {
        Ok::<_, Error>(Response::new(Body::from("ok")))
    }))
    .await
}
