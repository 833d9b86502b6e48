//! Compilation: the proto `Ruleset` message -> the evaluable [`model::Ruleset`].
//!
//! This is the single validation gate for rulesets, whether they come from YAML
//! or from storage: names resolved to indices, operands typed and parsed (regex,
//! semver, timestamps), variant types checked, cycles rejected, weights bounded.
//! Every error says where ([`Place`]) and what ([`ErrorKind`]). It must not do
//! I/O and must not accept anything the evaluator could panic on.
//!
//! This file owns [`compile`] and the order of its steps; each step lives in its
//! own module:
//! - `error`: [`CompileError`], [`ErrorKind`] and [`Place`] (how a flag, segment,
//!   key, rule, condition and field are named in messages);
//! - `keys`: API keys (ids, kinds, secret hashes, CORS origins);
//! - `conditions`: conditions, one small builder per operand family;
//! - `flags`: variants, default/off, prerequisites, rules and rollouts;
//! - `regex_cache`: `matches` patterns, compiled once per process;
//! - `graph`: segment and prerequisite cycles, and the evaluation cost limits;
//! - `intern`: one shared `Arc<str>` per distinct string of a ruleset.

mod conditions;
mod error;
mod flags;
mod graph;
mod intern;
mod keys;
mod regex_cache;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::eval::model;
use crate::ruleset::proto;
use crate::ruleset::{valid_env_name, valid_flag_key};

use conditions::Names;
use error::duplicate;
use intern::Interner;

pub use error::{CompileError, ErrorKind, Place};
pub use flags::MAX_WEIGHT_TOTAL;
pub use graph::{MAX_FLAG_COST, MAX_RULESET_COST};

/// Compiles and validates a proto ruleset into the evaluable model.
///
/// All-or-nothing: either every flag, segment and key is valid and the whole
/// model is returned, or the first problem found is reported.
pub fn compile(rs: &proto::Ruleset) -> Result<model::Ruleset, CompileError> {
    check_header(rs)?;
    let keys = keys::compile_keys(&rs.keys)?;

    // Names first, so that references can point forwards.
    let (segment_index, flag_index) = name_indices(rs)?;
    let names = Names {
        segments: &segment_index,
        strings: Interner::default(),
    };

    let segments = compile_segments(&rs.segments, &names)?;
    graph::check_segment_cycles(&segments)?;
    let flags = flags::compile_flags(&rs.flags, &names, &flag_index)?;
    graph::check_prerequisite_cycles(&flags)?;
    // The cost walk assumes acyclic graphs: it runs after both cycle checks.
    graph::check_evaluation_cost(&flags, &segments)?;

    Ok(model::Ruleset::new(
        rs.environment.clone(),
        rs.version,
        keys,
        segments,
        flags,
    ))
}

/// The format this build reads, and the environment name.
fn check_header(rs: &proto::Ruleset) -> Result<(), CompileError> {
    if rs.format != crate::ruleset::FORMAT {
        return Err(CompileError::new(
            Place::root().field("format"),
            ErrorKind::UnsupportedFormat(rs.format),
        ));
    }
    if !valid_env_name(&rs.environment) {
        return Err(CompileError::new(
            Place::root().field("environment"),
            ErrorKind::BadName {
                what: "environment",
                name: rs.environment.clone(),
                pattern: "[A-Za-z0-9_-]{1,64}",
            },
        ));
    }
    Ok(())
}

/// Segment name -> index and flag key -> index, each name checked and unique.
type NameIndices<'a> = (HashMap<&'a str, usize>, HashMap<&'a str, usize>);

fn name_indices(rs: &proto::Ruleset) -> Result<NameIndices<'_>, CompileError> {
    let mut segment_index = HashMap::with_capacity(rs.segments.len());
    for (i, seg) in rs.segments.iter().enumerate() {
        let place = Place::segment(&seg.name);
        check_name(&place, "segment name", &seg.name)?;
        if segment_index.insert(seg.name.as_str(), i).is_some() {
            return Err(duplicate(
                Place::root().field("segments"),
                "segment",
                &seg.name,
            ));
        }
    }
    let mut flag_index = HashMap::with_capacity(rs.flags.len());
    for (i, flag) in rs.flags.iter().enumerate() {
        let place = Place::flag(&flag.key);
        check_name(&place, "flag key", &flag.key)?;
        if flag_index.insert(flag.key.as_str(), i).is_some() {
            return Err(duplicate(Place::root().field("flags"), "flag", &flag.key));
        }
    }
    Ok((segment_index, flag_index))
}

/// A segment or flag name: `[A-Za-z0-9._-]{1,128}`.
fn check_name(place: &Place, what: &'static str, name: &str) -> Result<(), CompileError> {
    if valid_flag_key(name) {
        Ok(())
    } else {
        Err(CompileError::new(
            place.clone(),
            ErrorKind::BadName {
                what,
                name: name.to_owned(),
                pattern: "[A-Za-z0-9._-]{1,128}",
            },
        ))
    }
}

/// Every segment's rules (each a conjunction of conditions), in order.
fn compile_segments(
    segments: &[proto::Segment],
    names: &Names<'_>,
) -> Result<Vec<model::Segment>, CompileError> {
    let mut out = Vec::with_capacity(segments.len());
    for seg in segments {
        let place = Place::segment(&seg.name);
        let mut rules = seg
            .rules
            .iter()
            .enumerate()
            .map(|(r, conj)| names.conditions(&place.clone().rule(r + 1), &conj.conditions))
            .collect::<Result<Vec<_>, _>>()?;
        // Collected through `Result`, so the vector may have grown past its length.
        rules.shrink_to_fit();
        out.push(model::Segment {
            name: seg.name.clone(),
            rules,
        });
    }
    Ok(out)
}
