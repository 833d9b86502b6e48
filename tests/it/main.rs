//! The one integration test binary: `cargo test` runs every module below.

mod alloc;
mod authoring;
mod cli;
mod clients;
mod docs;
mod environments;
mod failover;
mod failures;
mod http;
mod openapi;
mod peers;
mod readme;
mod rig;
mod signing;
mod stores;
mod vectors;
