//! Compile errors: what is wrong ([`ErrorKind`]) and where ([`Place`]: the flag,
//! segment or key, rule, condition and field, as a person finds them in the
//! YAML). `authoring` maps a `Place` to a YAML line, so places must name fields
//! as authored (`values`, `serve.rollout.weights`, `variants.on`).
//!
//! It must not decide what is valid (the other `compile` modules do).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::graph::{MAX_FLAG_COST, MAX_RULESET_COST};
use crate::ruleset::operator::Spec;

/// Where in a ruleset an error is. Rule and condition numbers are 1-based, as a
/// person counts them in the YAML.
///
/// Compilation carries a `Place` down to every condition on the success path, so
/// clones are cheap: names are shared (`Arc<str>`) and field names are usually
/// static.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    /// The flag, if the error is inside one.
    pub flag: Option<Arc<str>>,
    /// The segment, if the error is inside one.
    pub segment: Option<Arc<str>>,
    /// The API key id, if the error is in a key.
    pub key: Option<Arc<str>>,
    /// Rule number (1-based).
    pub rule: Option<usize>,
    /// Condition number within the rule (1-based).
    pub condition: Option<usize>,
    /// Field name as authored (`values`, `serve`, `variants.on`, ...).
    pub field: Option<Cow<'static, str>>,
}

impl Place {
    /// The top level of the ruleset.
    pub fn root() -> Self {
        Self::default()
    }
    /// Inside flag `key`.
    pub fn flag(key: &str) -> Self {
        Self {
            flag: Some(key.into()),
            ..Self::default()
        }
    }
    /// Inside segment `name`.
    pub fn segment(name: &str) -> Self {
        Self {
            segment: Some(name.into()),
            ..Self::default()
        }
    }
    /// Inside API key `id`.
    pub fn key(id: &str) -> Self {
        Self {
            key: Some(id.into()),
            ..Self::default()
        }
    }
    /// The same place, at rule `n` (1-based).
    pub fn rule(mut self, n: usize) -> Self {
        self.rule = Some(n);
        self
    }
    /// The same place, at condition `n` (1-based).
    pub fn condition(mut self, n: usize) -> Self {
        self.condition = Some(n);
        self
    }
    /// The same place, at field `name`.
    pub fn field(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.field = Some(name.into());
        self
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(k) = &self.key {
            parts.push(format!("key `{k}`"));
        }
        if let Some(s) = &self.segment {
            parts.push(format!("segment `{s}`"));
        }
        if let Some(fl) = &self.flag {
            parts.push(format!("flag `{fl}`"));
        }
        if let Some(r) = self.rule {
            parts.push(format!("rule {r}"));
        }
        if let Some(c) = self.condition {
            parts.push(format!("condition {c}"));
        }
        if let Some(fd) = &self.field {
            parts.push(format!("field `{fd}`"));
        }
        if parts.is_empty() {
            f.write_str("ruleset")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// What is wrong, apart from where (that is [`Place`]); the message follows the
/// place in a [`CompileError`]'s text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// `format` is not one this build reads.
    #[error("unsupported ruleset format {0} (this build reads format {FORMAT})", FORMAT = crate::ruleset::FORMAT)]
    UnsupportedFormat(u32),
    /// A name does not match its pattern.
    #[error("invalid {what} {name:?}: must match {pattern}")]
    BadName {
        /// What kind of name (`flag key`, `environment`, ...).
        what: &'static str,
        /// The name as given.
        name: String,
        /// The pattern it must match.
        pattern: &'static str,
    },
    /// A name is defined twice.
    #[error("duplicate {what} {name:?}")]
    Duplicate {
        /// What kind of name, as the message says it (`flag`, `segment`,
        /// `variant`, `key id`).
        what: &'static str,
        /// The name defined twice, as authored.
        name: String,
    },
    /// A reference to a variant the flag does not have.
    #[error(
        "unknown variant {name:?}{of}{hint}",
        of = of_flag.as_ref().map(|f| format!(" of flag {f:?}")).unwrap_or_default(),
        hint = hint(name, valid.iter().map(String::as_str))
    )]
    UnknownVariant {
        /// The name as authored.
        name: String,
        /// For a prerequisite, the flag the variant was looked up in (else the
        /// variant is the erring flag's own).
        of_flag: Option<String>,
        /// The variants the flag has, in authoring order: the message lists
        /// them and suggests the closest.
        valid: Vec<String>,
    },
    /// A reference to a segment that does not exist.
    #[error("unknown segment {0:?}")]
    UnknownSegment(String),
    /// A reference to a flag that does not exist.
    #[error("unknown flag {0:?}")]
    UnknownFlag(String),
    /// An operator name (or number) that does not exist; the message lists the
    /// valid names and suggests the closest.
    #[error("unknown operator {0:?}{hint}", hint = hint(.0, Spec::all().map(|s| s.name)))]
    UnknownOperator(String),
    /// A field name that is not allowed here.
    #[error("unknown field {0:?}")]
    UnknownField(String),
    /// A required field is missing.
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    /// An operator that needs operands has none.
    #[error("operator `{0}` needs at least one value")]
    EmptyValues(&'static str),
    /// `exists`/`not_exists` with operands.
    #[error("operator `{0}` takes no values")]
    UnexpectedValues(&'static str),
    /// An operand of the wrong type for its operator.
    #[error("operator `{op}` needs {expected} values, got {got}")]
    WrongValueType {
        /// The operator's authoring name (`semver_gte`).
        op: &'static str,
        /// The operand types the operator accepts, as the message says them
        /// (`number`, `string, number or boolean`).
        expected: &'static str,
        /// The offending operand with its type (`boolean true`, `string "1.5"`).
        got: String,
    },
    /// A regex that does not compile.
    #[error("invalid regex {pattern:?}: {reason}")]
    BadRegex {
        /// The pattern as authored in `values`.
        pattern: String,
        /// The regex crate's message.
        reason: String,
    },
    /// A version that is not (lenient) SemVer.
    #[error("invalid semver {0:?}")]
    BadSemver(String),
    /// A timestamp that is not strict RFC 3339 (nor a number of epoch milliseconds).
    #[error(
        "invalid timestamp {0:?}: expected strict RFC 3339 (e.g. 2026-01-31T12:00:00Z) or epoch milliseconds"
    )]
    BadTimestamp(String),
    /// A variant value that is not valid JSON (stored rulesets only).
    #[error("invalid variant value: {0}")]
    BadValue(String),
    /// Variants of one flag with different JSON types.
    #[error("variants mix types: {first} is {first_type} but {other} is {other_type}")]
    MixedVariantTypes {
        /// The flag's first variant (authoring order), whose type every other
        /// variant must share.
        first: String,
        /// The JSON type of `first`, as the message says it (`a boolean`,
        /// `a string`, `a number`, `JSON (object/array)`).
        first_type: &'static str,
        /// The first variant whose type differs from `first_type`.
        other: String,
        /// The JSON type of `other`, named the same way.
        other_type: &'static str,
    },
    /// A flag without variants.
    #[error("a flag needs at least one variant")]
    NoVariants,
    /// A cycle of prerequisites.
    #[error("prerequisite cycle: {0}")]
    PrerequisiteCycle(String),
    /// A cycle of segments.
    #[error("segment cycle: {0}")]
    SegmentCycle(String),
    /// Deciding one flag would test too many conditions: prerequisites and
    /// segments are evaluated again on every path that reaches them, so
    /// shared ones in layers multiply.
    #[error(
        "deciding this flag tests up to {visits} conditions through its prerequisites and segments (limit {MAX_FLAG_COST}); shared prerequisites or segments in layers are evaluated once per path: flatten them"
    )]
    TooCostly {
        /// Conditions tested in the worst case (saturating).
        visits: u64,
    },
    /// Evaluating every flag would test too many conditions in all.
    #[error(
        "evaluating every flag tests up to {visits} conditions (limit {MAX_RULESET_COST}); each flag evaluates its prerequisites and segments again: share less, or split the environment"
    )]
    RulesetTooCostly {
        /// Conditions tested in the worst case, all flags (saturating).
        visits: u64,
    },
    /// Rollout weights that are out of range.
    #[error("bad weights: {0}")]
    BadWeights(String),
    /// A rule with neither a variant nor a rollout to serve.
    #[error("rule serves nothing: give a variant name or a rollout")]
    NothingToServe,
    /// A key whose kind is missing or unknown.
    #[error("invalid key kind {0:?}: expected frontend or backend")]
    BadKeyKind(String),
    /// A `secret_sha256` that is not 64 hex digits.
    #[error("secret_sha256 must be 64 hex digits (SHA-256 of the secret's base64url text)")]
    BadSecretHash,
    /// `allowed_origins` on a backend key, or a malformed origin.
    #[error(
        "invalid allowed origin {0:?}: expected `*` or scheme://host[:port], frontend keys only"
    )]
    BadOrigin(String),
}

/// A compile error: what and where. (Boxed parts keep `Result`s small on the
/// success path.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {kind}")]
pub struct CompileError {
    /// Where the error is, as a person finds it in the YAML; `authoring` maps
    /// it to a line.
    pub place: Box<Place>,
    /// What is wrong there.
    pub kind: Box<ErrorKind>,
}

impl CompileError {
    /// An error of `kind` at `place`.
    pub fn new(place: Place, kind: ErrorKind) -> Self {
        Self {
            place: Box::new(place),
            kind: Box::new(kind),
        }
    }
}

/// `name` is defined twice; `place` is where the names are listed.
pub(super) fn duplicate(place: Place, what: &'static str, name: &str) -> CompileError {
    CompileError::new(
        place,
        ErrorKind::Duplicate {
            what,
            name: name.to_owned(),
        },
    )
}

/// What follows an unknown name in its error: "; did you mean `x`? valid: a, b"
/// (the suggestion only when one is close, see [`closest`]).
fn hint<'a>(name: &str, valid: impl Iterator<Item = &'a str> + Clone) -> String {
    let list = valid.clone().collect::<Vec<_>>().join(", ");
    match closest(name, valid) {
        Some(near) => format!("; did you mean `{near}`? valid: {list}"),
        None => format!("; valid: {list}"),
    }
}

/// The valid name a misspelling most likely meant, if one is close: the one
/// at the smallest edit distance when that is at most a quarter of the name
/// (at least 1; ties go to the longer shared start, `of` -> `off` not `on`),
/// else the first that shares most of its own length with the name's start
/// (`equals` -> `eq`, `semver_greater` -> `semver_gt`). Case is ignored
/// (`IN` -> `in`). None when nothing is close, so a wild guess is never
/// offered.
pub(super) fn closest<'a>(name: &str, valid: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let name = name.to_lowercase();
    let mut by_distance: Option<((usize, usize), &str)> = None;
    let mut by_prefix: Option<(usize, &str)> = None;
    for cand in valid {
        let lower = cand.to_lowercase();
        let shared = name
            .chars()
            .zip(lower.chars())
            .take_while(|(a, b)| a == b)
            .count();
        // Smaller distance first, then the longer shared start.
        let rank = (edit_distance(&name, &lower), usize::MAX - shared);
        if by_distance.is_none_or(|(best, _)| rank < best) {
            by_distance = Some((rank, cand));
        }
        // Most of the candidate is the start of the name: at least 2 letters
        // and two thirds of the candidate.
        let cand_len = lower.chars().count();
        if shared >= 2
            && shared * 3 >= cand_len * 2
            && by_prefix.is_none_or(|(best, _)| shared > best)
        {
            by_prefix = Some((shared, cand));
        }
    }
    let limit = (name.chars().count() / 4).max(1);
    match by_distance {
        Some(((d, _), cand)) if d <= limit => Some(cand),
        _ => by_prefix.map(|(_, cand)| cand),
    }
}

/// Levenshtein distance in characters (names are short: a quadratic walk
/// with one row is plenty).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
