//! What the end-to-end tests share. The tests themselves are one binary,
//! `tests/api/main.rs`, with a module per subject. They talk to real services that
//! `make test` starts (scripts/test.sh): DynamoDB Local, the local server and the Lambda
//! emulator, whose addresses arrive in `IM_TEST_*` variables.
//!
//! - [`calls`]: the DynamoDB calls a request makes, counted;
//! - [`repo`]: files of the repository (`template.yaml`, event files, workspace binaries);
//! - [`stack`]: the services: their addresses, DynamoDB, registered test apps and their
//!   tokens, the service served in-process with other settings, the admin command;
//! - [`http`]: the one HTTP client of the tests, every answer checked against
//!   `openapi.yaml`;
//! - [`openapi`]: that check;
//! - [`lambda`]: a function binary invoked under the Lambda emulator, and the replay of
//!   every event file that both emulators' suites run;
//! - [`sam`]: SAM CLI's `sam local invoke` and `sam local start-api` (the `sam_local`
//!   test binary, run after `sam build`);
//! - [`signatures`]: signatures checked against Python's HMAC;
//! - [`im_cloud`]: a stand-in for an app's IM cloud (the vendor's realtime REST API 1.2),
//!   with faults on demand; it needs no service;
//! - [`tencent`]: a stand-in for Tencent Cloud IM's server REST API (`/v4/...`), its
//!   admin UserSig checked independently, with rate limits and faults; it needs no service;
//! - [`sqs`]: a stand-in for the SQS queue of the stream's dead letters;
//! - [`net`]: this machine's own addresses, and the forwarder that lets the `sam local`
//!   suites' containers reach DynamoDB Local from the Docker bridge only.

pub mod calls;
pub mod http;
pub mod im_cloud;
pub mod lambda;
pub mod net;
pub mod openapi;
pub mod repo;
pub mod sam;
pub mod signatures;
pub mod sqs;
pub mod stack;
pub mod tencent;
