//! Pure flag evaluation: context + compiled ruleset -> value, variant, reason.
//!
//! Owns the evaluation semantics of DESIGN.md ("Evaluation semantics"): attribute
//! lookup, every operator, segments, prerequisites, rollout hashing and reasons.
//! It must stay pure: no I/O, no async, no clock, no proto types, no panics on any
//! context. Time-dependent operators compare against values in the context, never
//! against "now". The model it evaluates ([`model`]) is built by `ruleset::compile`.
//!
//! ```
//! use flagbelt::ruleset::authoring;
//! use flagbelt::eval::{self, Audience, Reason};
//!
//! let yaml = r#"
//! environment: demo
//! version: 1
//! flags:
//!   banner:
//!     client: true
//!     variants: {on: true, off: false}
//!     default: off
//!     rules:
//!       - when: [{attr: country, op: in, values: [NZ, AU]}]
//!         serve: on
//! "#;
//! let (_, ruleset) = authoring::compile_yaml(yaml, 0).unwrap();
//! let ctx = eval::context_from_json(r#"{"targetingKey": "u1", "country": "NZ"}"#).unwrap();
//! let all = eval::evaluate_all(&ruleset, &ctx, Audience::Client);
//! assert_eq!(all[0].value().get(), "true");
//! assert_eq!(&*all[0].variant.name, "on");
//! assert_eq!(all[0].reason, Reason::TargetingMatch);
//! ```

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod context;
mod evaluate;
pub mod model;
mod operators;
mod relevant;
mod rollout;

pub use context::{Context, ContextError, context_from_json, json_type_name, lookup};
pub use evaluate::{
    Answer, Audience, Evaluation, Reason, evaluate_all, evaluate_flag, evaluate_key,
};
pub use model::Ruleset;
pub use operators::{epoch_millis_to_nanos, parse_rfc3339, parse_semver};
pub use relevant::{context_fingerprint, relevant_attrs, relevant_attrs_cached};
pub use rollout::murmur3_x86_32;
