//! Everything the IM signing and group functions share. A map for newcomers (and
//! `ARCHITECTURE.md` at the repository's root for the whole picture):
//!
//! - [`model`]: the domain with no SDK or HTTP in it: callers, groups, member lists and
//!   ids, the signed operations ([`model::signing`]) and who may have them
//!   ([`model::policy`]);
//! - [`store`]: the storage traits and their DynamoDB implementation, where every item is
//!   written and every group rule is enforced as a condition of the write;
//! - [`api`]: the HTTP layer: the route list ([`api::routes`]), the router built from it,
//!   the handlers (`api/signature.rs`, `api/group/`), extractors and the one error type;
//! - [`auth`]: bearer tokens, verified and minted;
//! - [`config`], [`telemetry`], [`metrics`], [`lambda`]: settings, logs, CloudWatch
//!   Embedded Metric Format lines, and the function binaries' entry point.

pub mod api;
pub mod auth;
pub mod config;
pub mod lambda;
pub mod metrics;
pub mod model;
pub mod store;
pub mod telemetry;

/// The route list, where newcomers look for it first.
pub use api::routes;
/// One entry type per Lambda function, for the binaries' `main.rs`.
pub use api::routes::entry as functions;

#[cfg(test)]
mod architecture;
