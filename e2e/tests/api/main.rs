//! The end-to-end tests, one binary with a module per subject; what they share is the
//! `im_e2e` library (`e2e/src`). Most need the services `make test` starts. One module:
//! `cargo test -p im-e2e --test api store::`.

mod admin_cli;
mod admins_bound;
mod authz_matrix;
mod big_groups;
mod deploy;
mod fairness;
mod group_lifecycle;
mod http_api;
mod iam_policies;
mod im_cloud_standin;
mod import_export;
mod js_kit;
mod lambda_events;
mod local_run;
mod mirror;
mod openapi;
mod round_trips;
mod routes_agree;
mod sdk_rules;
mod signing_rules;
mod store;
mod stream_poller;
mod tencent_callbacks;
mod tencent_mirror;
mod tencent_standin;
mod timestamp_unit;
mod unreachable;
mod usersig;
