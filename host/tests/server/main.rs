//! The REST API end to end: the real server (`stephost::run`) on
//! 127.0.0.1:0 with a fresh data directory, talked to over real HTTP.

mod audit;
mod batches;
mod callbacks;
mod common;
mod dag;
mod definitions;
mod executions;
mod fair;
mod pause;
#[path = "../pg_support/mod.rs"]
mod pg_support;
mod postponed;
mod quotas;
#[path = "../receiver_support/mod.rs"]
mod receiver_support;
mod resources;
mod retention;
mod schedules;
mod step_http;
mod tenants;
mod tokens;
mod waits;
mod work;
