//! YAML authoring: the ruleset a person writes (DESIGN.md, "Authoring format")
//! turned into the proto [`proto::Ruleset`], plus [`compile_yaml`], which runs that
//! through [`compile::compile`] and points its errors at YAML lines.
//!
//! This module owns what only the YAML text knows: the YAML 1.2 type of each
//! scalar (`42` is a number, `"42"` a string, `on` a string), the source text of
//! bare scalars where a string is expected (`1.50` stays `"1.50"`), the order of
//! mappings (flags, variants and rollout weights keep the order written), the
//! shape of the format (unknown fields, duplicate keys, a condition that is both
//! an attribute test and a segment test) and the line of every flag, rule and
//! condition. It checks what it needs to build the proto (operator names, key
//! kinds, operand and weight types) and a few things it can report with a better
//! line (missing `default`/`serve`, operand counts, the environment name); the
//! rest (unknown variants, cycles, regexes, ...) is left to `compile`, the one
//! validation gate, which stored rulesets go through too. No I/O.
//!
//! The parts: `shapes` (the serde structs of the document: the format's shape),
//! `scalars` (YAML 1.2 typing of nodes, source text of bare scalars, variant
//! values as JSON), `builder` (document -> proto ruleset, recording lines) and
//! `lines` (a compile error's place -> its YAML line). This file owns the entry
//! points and [`AuthoringError`].
//!
//! YAML is read by serde-saphyr with YAML 1.2 booleans only
//! (`strict_booleans`), `1_000` kept as a string, duplicate keys rejected and
//! `deny_unknown_fields` on every struct (ECOSYSTEM.md §7.6). Source text is
//! sliced from the input at each node's span: serde-saphyr keeps byte offsets
//! for string input.

mod builder;
mod lines;
mod scalars;
mod shapes;

use serde_saphyr::MessageFormatter;

use crate::eval::model;
use crate::ruleset::compile::{self, CompileError, Place};
use crate::ruleset::proto;

use builder::Builder;
use lines::Lines;
use shapes::Doc;

/// An authoring error. Every variant displays as one line that starts with the
/// YAML location (`line 14: flag `new-checkout`, rule 2, ...`).
#[derive(Debug, thiserror::Error)]
pub enum AuthoringError {
    /// The text is not YAML, or not in the shape of the format: a syntax error,
    /// an unknown field, a duplicate key, a value of the wrong YAML type.
    #[error("{}", yaml_display(.message, *.line, *.column))]
    Yaml {
        /// What is wrong (one line, no source snippet).
        message: String,
        /// Line (1-based; 0 when the YAML reader gave no location).
        line: u64,
        /// Column (1-based; 0 when the YAML reader gave no location).
        column: u64,
    },
    /// A construct that is well-formed YAML with known fields but that the
    /// format does not allow, such as a condition with both `attr` and `segment`.
    #[error("{}", one_line(&format!("line {line}: {place}: {message}")))]
    Shape {
        /// The flag, segment or key, rule, condition and field holding the
        /// construct, as the message names them.
        place: Box<Place>,
        /// What is wrong.
        message: String,
        /// Line (1-based).
        line: u64,
    },
    /// A semantic error: what [`compile::compile`] (or this module, for the same
    /// kinds of problem) found, with the most specific YAML line known.
    #[error("{}", one_line(&match line {
        Some(l) => format!("line {l}: {error}"),
        None => error.to_string(),
    }))]
    Invalid {
        /// What is wrong and where, in the same terms as for a stored ruleset
        /// (its place names the flag, rule and field).
        error: CompileError,
        /// The YAML line of the most specific part of that place found in the
        /// text; `None` when no part of it could be located.
        line: Option<u64>,
    },
}

fn yaml_display(message: &str, line: u64, column: u64) -> String {
    if line == 0 {
        one_line(message)
    } else {
        one_line(&format!("line {line}, column {column}: {message}"))
    }
}

/// Escapes control characters (a flag key may hold a newline), so that every
/// error stays one line.
pub(super) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses authoring YAML into the proto ruleset, without the semantic checks of
/// [`compile::compile`]. `now_ms` is the version when the YAML gives none.
pub fn parse(text: &str, now_ms: u64) -> Result<proto::Ruleset, AuthoringError> {
    parse_with_lines(text, now_ms).map(|(pb, _)| pb)
}

/// Parses and compiles: the proto ruleset to store and the model to evaluate.
/// A compile error carries the line of the most specific place it names.
pub fn compile_yaml(
    text: &str,
    now_ms: u64,
) -> Result<(proto::Ruleset, model::Ruleset), AuthoringError> {
    let (pb, lines) = parse_with_lines(text, now_ms)?;
    let m = compile::compile(&pb).map_err(|error| AuthoringError::Invalid {
        line: lines.line_of(&error),
        error,
    })?;
    Ok((pb, m))
}

/// Largest authoring document, in YAML nodes (about 100,000 flags of typical shape).
pub const MAX_YAML_NODES: usize = 5_000_000;

fn parse_with_lines(text: &str, now_ms: u64) -> Result<(proto::Ruleset, Lines), AuthoringError> {
    // The default budget (250k nodes, 1M events) stops near 5,000 flags; a large
    // SaaS environment is bigger than that. Raise only the size caps: the alias
    // and anchor caps, which stop "billion laughs" expansion, keep their defaults.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: MAX_YAML_NODES,
            max_events: 2 * MAX_YAML_NODES,
        },
        strict_booleans: true,
        underscored_numbers_as_strings: true,
        with_snippet: false,
    };
    let doc: Doc =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| yaml_error(&e))?;
    Builder::new(text).build(doc, now_ms)
}

/// One line, no snippet, no Rust type names: serde-saphyr's user-facing wording.
fn yaml_error(err: &serde_saphyr::Error) -> AuthoringError {
    let mut inner = err;
    // The renderers unwrap these wrappers before formatting; so must we.
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    let message = match inner {
        // "expected sequence start" and the like, in the format's words.
        serde_saphyr::Error::Unexpected { expected, .. } => match *expected {
            "sequence start" => "expected a list".to_owned(),
            "mapping start" => "expected a mapping".to_owned(),
            "string scalar" => "expected a string".to_owned(),
            _ => serde_saphyr::UserMessageFormatter
                .format_message(inner)
                .into_owned(),
        },
        _ => serde_saphyr::UserMessageFormatter
            .format_message(inner)
            .into_owned(),
    };
    let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
    yaml_at(message, line, column)
}

pub(super) fn yaml_at(message: String, line: u64, column: u64) -> AuthoringError {
    AuthoringError::Yaml {
        message: one_line(&message),
        line,
        column,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse0(yaml: &str) -> Result<proto::Ruleset, AuthoringError> {
        parse(yaml, 7)
    }

    #[test]
    fn source_text_of_bare_scalars_where_strings_are_expected() {
        let rs = parse0(
            "environment: e\nflags:\n  f:\n    variants: {a: 1}\n    default: a\n    rules:\n      - when: [{attr: v, op: contains, values: [1.50, 2, true, 0x1F, \"q\", &x 012, *x]}]\n        serve: 1.50\n",
        )
        .unwrap();
        let rule = &rs.flags[0].rules[0];
        let Some(proto::condition::Kind::Attribute(t)) = &rule.conditions[0].kind else {
            panic!("not an attribute test")
        };
        let texts: Vec<_> = t
            .values
            .iter()
            .map(|v| match &v.kind {
                Some(proto::scalar::Kind::StringValue(s)) => s.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["1.50", "2", "true", "0x1F", "q", "012", "012"]);
        assert_eq!(
            rule.serve,
            Some(proto::targeting_rule::Serve::Variant("1.50".into()))
        );
        assert_eq!(rs.version, 7);
    }

    #[test]
    fn leading_zero_integers_are_integers() {
        let rs = parse0(
            "environment: e\nflags:\n  f:\n    variants: {a: 012, b: [-007, 1.0]}\n    default: a\n",
        )
        .unwrap();
        assert_eq!(rs.flags[0].variants[0].value_json, "12");
        assert_eq!(rs.flags[0].variants[1].value_json, "[-7,1.0]");
    }

    #[test]
    fn keys_equal_as_text_are_duplicates() {
        let err =
            parse0("environment: e\nflags:\n  1:\n    default: a\n  \"1\":\n    default: a\n")
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 5, column 3: duplicate mapping key `1` (first at line 3)"
        );
    }

    fn contains_values(yaml: &str) -> Vec<String> {
        let rs = parse0(yaml).unwrap();
        let Some(proto::condition::Kind::Attribute(t)) = &rs.flags[0].rules[0].conditions[0].kind
        else {
            panic!("not an attribute test")
        };
        t.values
            .iter()
            .map(|v| match &v.kind {
                Some(proto::scalar::Kind::StringValue(s)) => s.clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn source_text_survives_bom_multibyte_text_and_block_style() {
        let flow = "environment: e\nflags:\n  f: {description: \"é😀\", variants: {a: 1}, default: a, rules: [{when: [{attr: x, op: contains, values: [é, 1.50, 😀, 2.50]}], serve: a}]}\n";
        assert_eq!(contains_values(flow), ["é", "1.50", "😀", "2.50"]);
        let bom = format!("\u{feff}{flow}");
        assert_eq!(contains_values(&bom), ["é", "1.50", "😀", "2.50"]);
        let crlf = flow.replace('\n', "\r\n");
        assert_eq!(contains_values(&crlf), ["é", "1.50", "😀", "2.50"]);
        let block = "environment: e\nflags:\n  f:\n    variants: {a: 1}\n    default: a\n    rules:\n      - when:\n          - attr: x\n            op: contains\n            values:\n              - 1.50   # price\n              - 3.0\n        serve: a\n";
        assert_eq!(contains_values(block), ["1.50", "3.0"]);
    }

    #[test]
    fn version_is_a_whole_number() {
        assert_eq!(
            parse0("environment: e\nversion: 012\n").unwrap().version,
            12
        );
        assert_eq!(parse0("environment: e\nversion: ~\n").unwrap().version, 7);
        let err = parse0("environment: e\nversion: 1.0\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2, column 10: `version` must be a whole number ≥ 0, got number 1.0"
        );
    }
}
