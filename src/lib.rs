//! flagbelt: an edge server for feature flags and dynamic config.
//!
//! # Layout
//! Dependencies point inward: `cli -> http -> delivery -> ruleset -> eval`;
//! every module may use [`util`].
//!
//! - [`eval`]: pure evaluation (model, context, operators, rollout hashing,
//!   `evaluate`); no I/O, no async, no clock.
//! - [`ruleset`]: the format: authoring YAML, proto encode/decode, compilation into
//!   the model, manifests, signatures, API keys and verification; pure too.
//! - [`delivery`]: storage I/O: sources (object_store), failover and version
//!   arbitration, lazily loaded environments, last-known-good.
//! - [`http`]: the HTTP surface (axum): routes, auth, caching headers (the only
//!   writer of them), errors and OFREP; handlers are thin over `delivery` and `eval`.
//! - [`cli`]: the `flagbelt` command's subcommands (compile, inspect, eval, keys,
//!   publish, fetch, serve, demo).
//! - [`util`]: the leaf helpers every layer needs once (error chains, the wall
//!   clock, poison-tolerant locks, percent-decoding).

pub mod cli;
pub mod delivery;
pub mod eval;
pub mod http;
pub mod ruleset;
pub mod util;
