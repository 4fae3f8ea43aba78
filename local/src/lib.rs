//! What the im-local binary shares with the end-to-end tests and the benchmarks: the
//! stream poller, and starting DynamoDB Local.

pub mod dynamodb_local;
pub mod stream;
