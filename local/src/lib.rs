//! What the im-local binary shares with the end-to-end tests: the stream poller.

pub mod stream;
