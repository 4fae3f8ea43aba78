//! Mirrors groups into each app's IM cloud (the vendor's realtime REST API 1.2): the
//! table's stream records in, conversation changes and system messages out.
//! Work in progress (issue 10).

pub use aws_lambda_events::event::dynamodb::Event as StreamEvent;
pub use aws_lambda_events::event::streams::DynamoDbEventResponse;
