//! The start-up floor of a Rust Lambda function with the AWS SDK set up the default way
//! (`make bench`, not shipped): `aws_config::load_from_env()` and
//! `aws_sdk_dynamodb::Client::new` at init, then a handler that makes one GetItem (of an
//! item that does not exist, in `TABLE_NAME`) and answers 200. Its first invocation pays
//! what the default client leaves for the first request: the trust store and the
//! connection.

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::{service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = aws_config::load_from_env().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = std::env::var("TABLE_NAME")?;
    lambda_http::run(service_fn(move |_req: Request| {
        let (client, table) = (client.clone(), table.clone());
        async move {
            client
                .get_item()
                .table_name(table)
                .key("pk", AttributeValue::S("FLOOR".into()))
                .key("sk", AttributeValue::S("none".into()))
                .send()
                .await?;
            Ok::<_, Error>(Response::new(Body::from("ok")))
        }
    }))
    .await
}
