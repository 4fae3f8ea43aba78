//! Everything the IM signing and group functions share. A map for newcomers:
//!
//! - [`routes`]: the route list (path, method, function, event file, status);
//! - [`api`]: the router built from it, and the handlers (`api/signature.rs`,
//!   `api/group.rs`) where each route's rules are checked;
//! - [`signing`]: the HMAC-SHA1 operation signatures;
//! - [`policy`]: who may have which signature (pure rules the signature routes apply);
//! - [`ids`], [`body`]: input validation and body parsing;
//! - [`store`]: the DynamoDB model, where every item is written and every group rule
//!   (owner, group admin, member) is enforced as a condition of the write;
//! - [`error`]: the error type and its one mapping to HTTP;
//! - [`auth`]: who is calling (bearer tokens, or API Gateway's JWT authorizer);
//! - [`config`], [`secret`], [`keys`], [`telemetry`], [`lambda`]: plumbing.

pub mod api;
pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod ids;
pub mod keys;
pub mod lambda;
pub mod policy;
pub mod routes;
pub mod secret;
pub mod signing;
pub mod store;
pub mod telemetry;
