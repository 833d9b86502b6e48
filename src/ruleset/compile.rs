//! Compilation: the proto `Ruleset` message -> the evaluable [`model::Ruleset`].
//!
//! This is the single validation gate for rulesets, whether they come from YAML
//! or from storage: names resolved to indices, operands typed and parsed (regex,
//! semver, timestamps), variant types checked, cycles rejected, weights bounded.
//! Every error says where ([`Place`]) and what ([`ErrorKind`]). It must not do
//! I/O and must not accept anything the evaluator could panic on.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::eval::model::{self, Attr, Cmp, Condition, Test, TextOp};
use crate::eval::{epoch_millis_to_nanos, parse_rfc3339, parse_semver};
use crate::ruleset::proto::{self, Operator, scalar};
use crate::ruleset::{hex, valid_env_name, valid_flag_key, valid_key_id};

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

/// What is wrong.
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
        /// What kind of name.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A reference to a variant the flag does not have.
    #[error("unknown variant {0:?}")]
    UnknownVariant(String),
    /// A reference to a segment that does not exist.
    #[error("unknown segment {0:?}")]
    UnknownSegment(String),
    /// A reference to a flag that does not exist.
    #[error("unknown flag {0:?}")]
    UnknownFlag(String),
    /// An operator name (or number) that does not exist.
    #[error("unknown operator {0:?}")]
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
        /// Operator name.
        op: &'static str,
        /// Expected type.
        expected: &'static str,
        /// What was given.
        got: String,
    },
    /// A regex that does not compile.
    #[error("invalid regex {pattern:?}: {reason}")]
    BadRegex {
        /// The pattern.
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
        /// First variant name.
        first: String,
        /// Its type.
        first_type: &'static str,
        /// Offending variant name.
        other: String,
        /// Its type.
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
    /// Where.
    pub place: Box<Place>,
    /// What.
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

/// Largest total of rollout weights (`2^32`), so `point = (h * T) >> 32` fits u64.
pub const MAX_WEIGHT_TOTAL: u64 = 1 << 32;

/// Compiled size limit per regex, so a hostile ruleset cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles and validates a proto ruleset into the evaluable model.
///
/// All-or-nothing: either every flag, segment and key is valid and the whole
/// model is returned, or the first problem found is reported.
pub fn compile(rs: &proto::Ruleset) -> Result<model::Ruleset, CompileError> {
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
    let keys = compile_keys(&rs.keys)?;

    // Names first, so that references can point forwards.
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
    let names = Names {
        segments: &segment_index,
        strings: Interner::default(),
    };

    let mut segments = Vec::with_capacity(rs.segments.len());
    for seg in &rs.segments {
        let place = Place::segment(&seg.name);
        let rules = seg
            .rules
            .iter()
            .enumerate()
            .map(|(r, conj)| names.conditions(&place.clone().rule(r + 1), &conj.conditions))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rules = rules;
        rules.shrink_to_fit();
        segments.push(model::Segment {
            name: seg.name.clone(),
            rules,
        });
    }
    check_segment_cycles(&segments)?;

    // Variant names of every flag, for prerequisites that point at other flags.
    let mut variant_names = Vec::with_capacity(rs.flags.len());
    let mut variant_values = Vec::with_capacity(rs.flags.len());
    for flag in &rs.flags {
        let (n, v) = variant_map(flag, &names.strings)?;
        variant_names.push(n);
        variant_values.push(v);
    }
    let mut flags = Vec::with_capacity(rs.flags.len());
    for ((flag, own_names), values) in rs.flags.iter().zip(&variant_names).zip(variant_values) {
        flags.push(compile_flag(
            flag,
            own_names,
            values,
            &names,
            &flag_index,
            &variant_names,
        )?);
    }
    check_prerequisite_cycles(&flags)?;
    check_evaluation_cost(&flags, &segments)?;

    let client_flags = flags
        .iter()
        .enumerate()
        .filter(|(_, f)| f.client)
        .map(|(i, _)| i)
        .collect();
    let flag_index = flags
        .iter()
        .enumerate()
        .map(|(i, f)| (Arc::clone(&f.key), i))
        .collect();
    Ok(model::Ruleset {
        environment: rs.environment.clone(),
        version: rs.version,
        keys,
        segments,
        flags,
        flag_index,
        client_flags,
        relevant_client: OnceLock::new(),
        relevant_all: OnceLock::new(),
    })
}

fn duplicate(place: Place, what: &'static str, name: &str) -> CompileError {
    CompileError::new(
        place,
        ErrorKind::Duplicate {
            what,
            name: name.to_owned(),
        },
    )
}

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

fn compile_keys(keys: &[proto::ApiKey]) -> Result<HashMap<String, model::ApiKey>, CompileError> {
    let mut out = HashMap::with_capacity(keys.len());
    for key in keys {
        let place = Place::key(&key.id);
        if !valid_key_id(&key.id) {
            return Err(CompileError::new(
                place.field("id"),
                ErrorKind::BadName {
                    what: "key id",
                    name: key.id.clone(),
                    pattern: "[A-Za-z0-9_-]{1,32}",
                },
            ));
        }
        let kind = match proto::KeyKind::try_from(key.kind) {
            Ok(proto::KeyKind::Frontend) => model::KeyKind::Frontend,
            Ok(proto::KeyKind::Backend) => model::KeyKind::Backend,
            _ => {
                return Err(CompileError::new(
                    place.field("kind"),
                    ErrorKind::BadKeyKind(key.kind.to_string()),
                ));
            }
        };
        let secret_sha256 = hex::decode_array::<32>(&key.secret_sha256).ok_or_else(|| {
            CompileError::new(
                place.clone().field("secret_sha256"),
                ErrorKind::BadSecretHash,
            )
        })?;
        for origin in &key.allowed_origins {
            if kind != model::KeyKind::Frontend || !valid_origin(origin) {
                return Err(CompileError::new(
                    place.field("allowed_origins"),
                    ErrorKind::BadOrigin(origin.clone()),
                ));
            }
        }
        let stored = model::ApiKey {
            id: key.id.clone(),
            kind,
            secret_sha256,
            allowed_origins: key.allowed_origins.clone(),
        };
        if out.insert(key.id.clone(), stored).is_some() {
            return Err(duplicate(Place::root().field("keys"), "key id", &key.id));
        }
    }
    Ok(out)
}

/// `*`, or `http(s)://host[:port]` with no path, as browsers send in `Origin`.
fn valid_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// Name lookups shared by flag and segment conditions.
struct Names<'a> {
    segments: &'a HashMap<&'a str, usize>,
    /// One shared `Arc<str>` per distinct string (attribute and variant
    /// names, operands): rulesets repeat them, and every allocation costs.
    strings: Interner,
}

impl Names<'_> {
    fn conditions(
        &self,
        place: &Place,
        conditions: &[proto::Condition],
    ) -> Result<Vec<Condition>, CompileError> {
        let mut out = conditions
            .iter()
            .enumerate()
            .map(|(c, cond)| self.condition(&place.clone().condition(c + 1), cond))
            .collect::<Result<Vec<_>, _>>()?;
        // Collecting through `Result` cannot know the length up front, so the
        // vector may have grown to twice its size; models live long and there
        // are thousands of them.
        out.shrink_to_fit();
        Ok(out)
    }

    fn condition(&self, place: &Place, cond: &proto::Condition) -> Result<Condition, CompileError> {
        use proto::condition::Kind;
        let segment = |name: &str, negate: bool, field: &'static str| {
            self.segments
                .get(name)
                .map(|&segment| Condition::Segment { segment, negate })
                .ok_or_else(|| {
                    CompileError::new(
                        place.clone().field(field),
                        ErrorKind::UnknownSegment(name.to_owned()),
                    )
                })
        };
        match &cond.kind {
            Some(Kind::Segment(name)) => segment(name, false, "segment"),
            Some(Kind::NotSegment(name)) => segment(name, true, "not_segment"),
            Some(Kind::Attribute(t)) => {
                attribute_test(place, t, &self.strings).map(Condition::Attr)
            }
            None => Err(CompileError::new(
                place.clone(),
                ErrorKind::MissingField("attr or segment"),
            )),
        }
    }
}

fn attribute_test(
    place: &Place,
    t: &proto::AttributeTest,
    strings: &Interner,
) -> Result<model::AttrTest, CompileError> {
    if t.attr.is_empty() {
        return Err(CompileError::new(
            place.clone().field("attr"),
            ErrorKind::MissingField("attr"),
        ));
    }
    let op = Operator::try_from(t.op)
        .ok()
        .filter(|op| *op != Operator::Unspecified)
        .ok_or_else(|| {
            CompileError::new(
                place.clone().field("op"),
                ErrorKind::UnknownOperator(t.op.to_string()),
            )
        })?;
    let name = op_name(op);
    let vplace = || place.clone().field("values");
    if matches!(op, Operator::Exists | Operator::NotExists) {
        if !t.values.is_empty() {
            return Err(CompileError::new(
                vplace(),
                ErrorKind::UnexpectedValues(name),
            ));
        }
    } else if t.values.is_empty() {
        return Err(CompileError::new(vplace(), ErrorKind::EmptyValues(name)));
    }
    let wrong = |expected: &'static str, got: &proto::Scalar| {
        CompileError::new(
            vplace(),
            ErrorKind::WrongValueType {
                op: name,
                expected,
                got: describe(got),
            },
        )
    };
    let text_values = || -> Result<Vec<String>, CompileError> {
        t.values
            .iter()
            .map(|v| match &v.kind {
                Some(scalar::Kind::StringValue(s)) => Ok(s.clone()),
                _ => Err(wrong("string", v)),
            })
            .collect()
    };
    let numbers = || -> Result<Vec<f64>, CompileError> {
        t.values
            .iter()
            .map(|v| {
                number(v)
                    .and_then(|n| n.as_f64())
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| wrong("number", v))
            })
            .collect()
    };
    let text = |op: TextOp, negate: bool| -> Result<Test, CompileError> {
        Ok(Test::Text {
            op,
            values: text_values()?.iter().map(|v| strings.get(v)).collect(),
            negate,
        })
    };
    let test = match op {
        Operator::Unspecified => unreachable_op(place)?,
        Operator::Exists => Test::Exists,
        Operator::NotExists => Test::NotExists,
        Operator::Eq | Operator::In | Operator::Neq | Operator::NotIn => Test::Equals {
            values: t
                .values
                .iter()
                .map(|v| match &v.kind {
                    Some(scalar::Kind::BoolValue(b)) => Ok(model::Scalar::Bool(*b)),
                    Some(scalar::Kind::StringValue(s)) => Ok(model::Scalar::Str(strings.get(s))),
                    _ => number(v)
                        .map(model::Scalar::Num)
                        .ok_or_else(|| wrong("string, number or boolean", v)),
                })
                .collect::<Result<_, _>>()?,
            negate: matches!(op, Operator::Neq | Operator::NotIn),
        },
        Operator::Contains => text(TextOp::Contains, false)?,
        Operator::NotContains => text(TextOp::Contains, true)?,
        Operator::StartsWith => text(TextOp::StartsWith, false)?,
        Operator::EndsWith => text(TextOp::EndsWith, false)?,
        Operator::Matches => Test::Matches(
            text_values()?
                .into_iter()
                .map(|pattern| {
                    shared_regex(&pattern).map_err(|e| {
                        CompileError::new(
                            vplace(),
                            ErrorKind::BadRegex {
                                reason: e
                                    .to_string()
                                    .lines()
                                    .last()
                                    .unwrap_or_default()
                                    .trim()
                                    .to_owned(),
                                pattern: pattern.clone(),
                            },
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => Test::Number {
            cmp: comparison(op),
            values: numbers()?,
        },
        Operator::SemverEq
        | Operator::SemverLt
        | Operator::SemverLte
        | Operator::SemverGt
        | Operator::SemverGte => {
            let cmp = comparison(op);
            let values = text_values()?
                .into_iter()
                .map(|s| {
                    parse_semver(&s)
                        .ok_or_else(|| CompileError::new(vplace(), ErrorKind::BadSemver(s)))
                })
                .collect::<Result<_, _>>()?;
            Test::Semver { cmp, values }
        }
        Operator::Before | Operator::After => Test::Time {
            after: op == Operator::After,
            values: t
                .values
                .iter()
                .map(|v| match &v.kind {
                    Some(scalar::Kind::StringValue(s)) => parse_rfc3339(s).ok_or_else(|| {
                        CompileError::new(vplace(), ErrorKind::BadTimestamp(s.clone()))
                    }),
                    _ => number(v)
                        .and_then(|n| epoch_millis_to_nanos(&n))
                        .ok_or_else(|| wrong("RFC 3339 string or epoch-milliseconds number", v)),
                })
                .collect::<Result<_, _>>()?,
        },
    };
    let mut test = test;
    shrink_operands(&mut test);
    Ok(model::AttrTest {
        attr: strings.attr(&t.attr),
        test,
    })
}

/// The comparison an ordering operator makes (`gte` and `semver_gte` alike).
fn comparison(op: Operator) -> Cmp {
    match op {
        Operator::SemverEq => Cmp::Eq,
        Operator::Lt | Operator::SemverLt => Cmp::Lt,
        Operator::Lte | Operator::SemverLte => Cmp::Lte,
        Operator::Gt | Operator::SemverGt => Cmp::Gt,
        _ => Cmp::Gte,
    }
}

/// Trims the operand list to its length (see `Names::conditions`).
fn shrink_operands(test: &mut Test) {
    match test {
        Test::Exists | Test::NotExists => {}
        Test::Equals { values, .. } => values.shrink_to_fit(),
        Test::Text { values, .. } => values.shrink_to_fit(),
        Test::Matches(values) => values.shrink_to_fit(),
        Test::Number { values, .. } => values.shrink_to_fit(),
        Test::Semver { values, .. } => values.shrink_to_fit(),
        Test::Time { values, .. } => values.shrink_to_fit(),
    }
}

/// Shares one `Arc<str>` per distinct string within one compilation.
#[derive(Default)]
struct Interner(RefCell<HashSet<Arc<str>>>);

impl Interner {
    fn get(&self, s: &str) -> Arc<str> {
        let mut set = self.0.borrow_mut();
        if let Some(shared) = set.get(s) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(s);
        set.insert(Arc::clone(&shared));
        shared
    }

    fn attr(&self, name: &str) -> Attr {
        Attr {
            name: self.get(name),
            nested: name.contains('.'),
        }
    }
}

/// Most distinct patterns kept in [`shared_regex`]'s cache.
const REGEX_CACHE_MAX: usize = 10_000;

/// Compiles `pattern`, or shares the one already compiled for it. A compiled
/// regex costs tens of KB (automaton plus its cache pool) and a server holding
/// thousands of environments sees the same patterns again and again; sharing
/// one `Arc<Regex>` (it is `Sync`) costs a pointer. The cache is cleared when
/// full; models keep their `Arc`s either way.
fn shared_regex(pattern: &str) -> Result<Arc<Regex>, regex::Error> {
    static CACHE: LazyLock<Mutex<HashMap<String, Arc<Regex>>>> = LazyLock::new(Mutex::default);
    let cached = CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(pattern)
        .cloned();
    if let Some(re) = cached {
        return Ok(re);
    }
    // Compiled outside the lock: a slow pattern must not stall other compiles.
    let re = Arc::new(
        RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()?,
    );
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= REGEX_CACHE_MAX {
        cache.clear();
    }
    cache.insert(pattern.to_owned(), re.clone());
    Ok(re)
}

/// `Operator::Unspecified` is filtered out before the match; this keeps the
/// match exhaustive without a panic.
fn unreachable_op(place: &Place) -> Result<Test, CompileError> {
    Err(CompileError::new(
        place.clone().field("op"),
        ErrorKind::UnknownOperator("unspecified".to_owned()),
    ))
}

/// A scalar's number, if it is one (non-finite floats are not numbers).
fn number(v: &proto::Scalar) -> Option<serde_json::Number> {
    match &v.kind {
        Some(scalar::Kind::IntValue(i)) => Some((*i).into()),
        Some(scalar::Kind::UintValue(u)) => Some((*u).into()),
        Some(scalar::Kind::FloatValue(f)) => serde_json::Number::from_f64(*f),
        _ => None,
    }
}

fn describe(v: &proto::Scalar) -> String {
    match &v.kind {
        Some(scalar::Kind::BoolValue(b)) => format!("boolean {b}"),
        Some(scalar::Kind::StringValue(s)) => format!("string {s:?}"),
        Some(scalar::Kind::IntValue(i)) => format!("number {i}"),
        Some(scalar::Kind::UintValue(u)) => format!("number {u}"),
        Some(scalar::Kind::FloatValue(f)) => format!("number {f}"),
        None => "an empty value".to_owned(),
    }
}

/// The authoring name of an operator (`semver_gte`).
pub fn op_name(op: Operator) -> &'static str {
    match op {
        Operator::Unspecified => "unspecified",
        Operator::Eq => "eq",
        Operator::Neq => "neq",
        Operator::In => "in",
        Operator::NotIn => "not_in",
        Operator::Contains => "contains",
        Operator::NotContains => "not_contains",
        Operator::StartsWith => "starts_with",
        Operator::EndsWith => "ends_with",
        Operator::Matches => "matches",
        Operator::Lt => "lt",
        Operator::Lte => "lte",
        Operator::Gt => "gt",
        Operator::Gte => "gte",
        Operator::SemverEq => "semver_eq",
        Operator::SemverLt => "semver_lt",
        Operator::SemverLte => "semver_lte",
        Operator::SemverGt => "semver_gt",
        Operator::SemverGte => "semver_gte",
        Operator::Before => "before",
        Operator::After => "after",
        Operator::Exists => "exists",
        Operator::NotExists => "not_exists",
    }
}

/// The JSON type family of a variant value; all variants of a flag share one.
fn value_type(v: &Value) -> Option<&'static str> {
    match v {
        Value::Bool(_) => Some("a boolean"),
        Value::String(_) => Some("a string"),
        Value::Number(_) => Some("a number"),
        Value::Object(_) | Value::Array(_) => Some("JSON (object/array)"),
        Value::Null => None,
    }
}

/// Resolves a variant name of the flag being compiled; the place is built only
/// on error.
type VariantLookup<'a> = dyn Fn(&str, &dyn Fn() -> Place) -> Result<usize, CompileError> + 'a;

/// Variant name -> index, for one flag.
type VariantNames = HashMap<String, usize>;

/// Decodes and type-checks one flag's variants.
fn variant_map(
    flag: &proto::Flag,
    strings: &Interner,
) -> Result<(VariantNames, Vec<model::Variant>), CompileError> {
    let place = Place::flag(&flag.key);
    if flag.variants.is_empty() {
        return Err(CompileError::new(
            place.field("variants"),
            ErrorKind::NoVariants,
        ));
    }
    let mut names = HashMap::with_capacity(flag.variants.len());
    let mut values: Vec<model::Variant> = Vec::with_capacity(flag.variants.len());
    let mut first: Option<(&str, &'static str)> = None;
    for (i, v) in flag.variants.iter().enumerate() {
        let vplace = || place.clone().field(format!("variants.{}", v.name));
        if v.name.is_empty() || v.name.len() > 128 {
            return Err(CompileError::new(
                vplace(),
                ErrorKind::BadName {
                    what: "variant name",
                    name: v.name.clone(),
                    pattern: "1 to 128 bytes",
                },
            ));
        }
        if names.insert(v.name.clone(), i).is_some() {
            return Err(duplicate(
                place.clone().field("variants"),
                "variant",
                &v.name,
            ));
        }
        let value: Value = serde_json::from_str(&v.value_json)
            .map_err(|e| CompileError::new(vplace(), ErrorKind::BadValue(e.to_string())))?;
        let Some(ty) = value_type(&value) else {
            return Err(CompileError::new(
                vplace(),
                ErrorKind::BadValue("null is not a variant value".to_owned()),
            ));
        };
        match &first {
            None => first = Some((v.name.as_str(), ty)),
            Some((first_name, first_type)) if *first_type != ty => {
                return Err(CompileError::new(
                    place.clone().field("variants"),
                    ErrorKind::MixedVariantTypes {
                        first: (*first_name).to_owned(),
                        first_type,
                        other: v.name.clone(),
                        other_type: ty,
                    },
                ));
            }
            Some(_) => {}
        }
        // Re-serialised compact (authored key order kept): what answers serve.
        let value = serde_json::value::to_raw_value(&value)
            .map_err(|e| CompileError::new(vplace(), ErrorKind::BadValue(e.to_string())))?;
        values.push(model::Variant {
            name: strings.get(&v.name),
            value,
        });
    }
    Ok((names, values))
}

fn compile_flag(
    flag: &proto::Flag,
    own_names: &VariantNames,
    variants: Vec<model::Variant>,
    names: &Names<'_>,
    flag_index: &HashMap<&str, usize>,
    all_variants: &[VariantNames],
) -> Result<model::Flag, CompileError> {
    let place = Place::flag(&flag.key);
    let variant = |name: &str, at: &dyn Fn() -> Place| {
        own_names
            .get(name)
            .copied()
            .ok_or_else(|| CompileError::new(at(), ErrorKind::UnknownVariant(name.to_owned())))
    };
    if flag.default_variant.is_empty() {
        return Err(CompileError::new(
            place.field("default"),
            ErrorKind::MissingField("default"),
        ));
    }
    let default = variant(&flag.default_variant, &|| place.clone().field("default"))?;
    let off = if flag.off_variant.is_empty() {
        default
    } else {
        variant(&flag.off_variant, &|| place.clone().field("off"))?
    };

    let mut prerequisites = Vec::with_capacity(flag.prerequisites.len());
    for p in &flag.prerequisites {
        let at = || place.clone().field("requires");
        let &pf = flag_index
            .get(p.flag.as_str())
            .ok_or_else(|| CompileError::new(at(), ErrorKind::UnknownFlag(p.flag.clone())))?;
        let pv = all_variants
            .get(pf)
            .and_then(|vs| vs.get(&p.variant))
            .copied()
            .ok_or_else(|| {
                CompileError::new(
                    at(),
                    ErrorKind::UnknownVariant(format!("{} (of flag {:?})", p.variant, p.flag)),
                )
            })?;
        prerequisites.push(model::Prerequisite {
            flag: pf,
            variant: pv,
        });
    }

    let mut rules = Vec::with_capacity(flag.rules.len());
    for (r, rule) in flag.rules.iter().enumerate() {
        let rplace = place.clone().rule(r + 1);
        let conditions = names.conditions(&rplace, &rule.conditions)?;
        let serve = match &rule.serve {
            Some(proto::targeting_rule::Serve::Variant(name)) => {
                model::Serve::Variant(variant(name, &|| rplace.clone().field("serve"))?)
            }
            Some(proto::targeting_rule::Serve::Rollout(ro)) => model::Serve::Rollout(Box::new(
                rollout(&flag.key, &rplace, ro, &variant, &names.strings)?,
            )),
            None => {
                return Err(CompileError::new(
                    rplace.field("serve"),
                    ErrorKind::NothingToServe,
                ));
            }
        };
        rules.push(model::Rule { conditions, serve });
    }

    Ok(model::Flag {
        key: Arc::from(flag.key.as_str()),
        client: flag.client,
        enabled: !flag.disabled,
        variants,
        default,
        off,
        prerequisites,
        rules,
    })
}

fn rollout(
    flag_key: &str,
    rplace: &Place,
    ro: &proto::Rollout,
    variant: &VariantLookup<'_>,
    strings: &Interner,
) -> Result<model::Rollout, CompileError> {
    let wplace = || rplace.clone().field("serve.rollout.weights");
    let bad = |msg: String| CompileError::new(wplace(), ErrorKind::BadWeights(msg));
    if ro.weights.is_empty() {
        return Err(bad("a rollout needs at least one weight".to_owned()));
    }
    let mut seen = HashMap::with_capacity(ro.weights.len());
    let mut total: u64 = 0;
    let mut buckets = Vec::with_capacity(ro.weights.len());
    for w in &ro.weights {
        let idx = variant(&w.variant, &wplace)?;
        if seen.insert(idx, ()).is_some() {
            return Err(bad(format!("variant {:?} is weighted twice", w.variant)));
        }
        total = total
            .checked_add(w.weight)
            .filter(|t| *t <= MAX_WEIGHT_TOTAL)
            .ok_or_else(|| {
                bad(format!(
                    "the total must be at most 2^32 ({MAX_WEIGHT_TOTAL})"
                ))
            })?;
        buckets.push((idx, total));
    }
    if total == 0 {
        return Err(bad("the total must be at least 1".to_owned()));
    }
    let by = if ro.by.is_empty() {
        "targetingKey"
    } else {
        ro.by.as_str()
    };
    let salt = ro.salt.as_deref().unwrap_or(flag_key);
    let mut salt_prefix = Vec::with_capacity(salt.len() + 1);
    salt_prefix.extend_from_slice(salt.as_bytes());
    salt_prefix.push(b':');
    Ok(model::Rollout {
        by: strings.attr(by),
        salt_prefix,
        buckets,
    })
}

/// Most conditions one evaluate-all may test in the worst case (every
/// enabled flag's cost, summed: each flag walks its prerequisites again):
/// about 20 ms of evaluation. Real rulesets of 10,000 flags stay under 10 % of
/// it.
pub const MAX_RULESET_COST: u64 = 1_000_000;

/// Most conditions one flag's decision may test in the worst case, counting a
/// prerequisite or segment again on every path that reaches it (evaluation
/// does not memoise). Far above real rulesets (a flag of 2,000 rules of 5
/// conditions is 10,000), far below a layered "diamond" of prerequisites or
/// segments that would take seconds per request (2^30 paths).
pub const MAX_FLAG_COST: u64 = 100_000;

/// Rejects a ruleset in which deciding some flag tests more than
/// [`MAX_FLAG_COST`] conditions. Runs after the cycle checks (the graphs are
/// acyclic). Cost of a segment: its conditions, a segment condition counting
/// as that segment's cost (+1); of a flag: 1, its rules' conditions the same
/// way, plus each prerequisite's cost.
fn check_evaluation_cost(
    flags: &[model::Flag],
    segments: &[model::Segment],
) -> Result<(), CompileError> {
    fn conditions_cost(conditions: &[Condition], segment_cost: &[u64]) -> u64 {
        conditions.iter().fold(0u64, |sum, c| {
            let one = match c {
                Condition::Segment { segment, .. } => segment_cost
                    .get(*segment)
                    .copied()
                    .unwrap_or(0)
                    .saturating_add(1),
                Condition::Attr(_) => 1,
            };
            sum.saturating_add(one)
        })
    }
    let segment_edges = segment_graph(segments);
    // A segment's own cost counts its attribute tests; its segment
    // conditions are the edges (their cost is added by `dag_costs`).
    let segment_own: Vec<u64> = segments
        .iter()
        .map(|s| s.rules.iter().map(|r| r.len() as u64).sum())
        .collect();
    let segment_cost = dag_costs(&segment_edges, &segment_own);
    let flag_edges = prerequisite_graph(flags);
    // A disabled flag serves `off` without looking at anything; as a
    // prerequisite it costs one step.
    let flag_own: Vec<u64> = flags
        .iter()
        .map(|f| {
            if !f.enabled {
                return 1;
            }
            f.rules.iter().fold(1u64, |sum, r| {
                sum.saturating_add(conditions_cost(&r.conditions, &segment_cost))
            })
        })
        .collect();
    let flag_edges: Vec<Vec<usize>> = flags
        .iter()
        .zip(flag_edges)
        .map(|(f, e)| if f.enabled { e } else { Vec::new() })
        .collect();
    let flag_cost = dag_costs(&flag_edges, &flag_own);
    if let Some((flag, &visits)) = flags
        .iter()
        .zip(&flag_cost)
        .find(|(_, cost)| **cost > MAX_FLAG_COST)
    {
        return Err(CompileError::new(
            Place::flag(&flag.key),
            ErrorKind::TooCostly { visits },
        ));
    }
    let visits = flag_cost.iter().fold(0u64, |t, c| t.saturating_add(*c));
    if visits > MAX_RULESET_COST {
        return Err(CompileError::new(
            Place::root(),
            ErrorKind::RulesetTooCostly { visits },
        ));
    }
    Ok(())
}

/// For an acyclic graph: `cost[n] = own[n] + sum of cost[s]` over the edges
/// `n -> s` (one term per edge, so a node reached twice counts twice),
/// saturating. Iterative post-order, so a long chain cannot overflow the
/// stack.
fn dag_costs(edges: &[Vec<usize>], own: &[u64]) -> Vec<u64> {
    let mut cost: Vec<Option<u64>> = vec![None; edges.len()];
    // A node is expanded once; meeting it unfinished again would mean a
    // cycle (rejected before this runs), and then its pending edges count 0
    // rather than loop.
    let mut expanded = vec![false; edges.len()];
    for start in 0..edges.len() {
        if cost.get(start).copied().flatten().is_some() {
            continue;
        }
        let mut stack = vec![start];
        while let Some(&node) = stack.last() {
            if cost.get(node).copied().flatten().is_some() {
                // A copy pushed by another parent, already summed.
                stack.pop();
                continue;
            }
            let succ = edges.get(node).map(Vec::as_slice).unwrap_or_default();
            let first = expanded.get(node).is_some_and(|e| !e);
            let pending = succ
                .iter()
                .any(|&s| cost.get(s).copied().flatten().is_none());
            if !pending || !first {
                let total = succ
                    .iter()
                    .fold(own.get(node).copied().unwrap_or(0), |t, &s| {
                        t.saturating_add(cost.get(s).copied().flatten().unwrap_or(0))
                    });
                if let Some(c) = cost.get_mut(node) {
                    *c = Some(total);
                }
                stack.pop();
            } else {
                if let Some(e) = expanded.get_mut(node) {
                    *e = true;
                }
                stack.extend(
                    succ.iter()
                        .copied()
                        .filter(|&s| cost.get(s).copied().flatten().is_none()),
                );
            }
        }
    }
    cost.into_iter().map(Option::unwrap_or_default).collect()
}

/// Depth-first search for a cycle in a graph given as adjacency lists; returns
/// the nodes of the first cycle found, closed (`a b a`).
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        if mark.get(start) != Some(&Mark::New) {
            continue;
        }
        // Iterative DFS: (node, next edge to look at); `path` mirrors the stack.
        let mut stack = vec![(start, 0usize)];
        if let Some(m) = mark.get_mut(start) {
            *m = Mark::Open;
        }
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let succ = edges.get(node).and_then(|e| e.get(*next)).copied();
            *next += 1;
            match succ {
                Some(s) => match mark.get(s).copied() {
                    Some(Mark::New) => {
                        if let Some(m) = mark.get_mut(s) {
                            *m = Mark::Open;
                        }
                        stack.push((s, 0));
                    }
                    Some(Mark::Open) => {
                        let from = stack.iter().position(|&(n, _)| n == s).unwrap_or(0);
                        let mut cycle: Vec<usize> =
                            stack.iter().skip(from).map(|&(n, _)| n).collect();
                        cycle.push(s);
                        return Some(cycle);
                    }
                    _ => {}
                },
                None => {
                    if let Some(m) = mark.get_mut(node) {
                        *m = Mark::Done;
                    }
                    stack.pop();
                }
            }
        }
    }
    None
}

fn segment_refs(conditions: &[Condition], out: &mut Vec<usize>) {
    for c in conditions {
        if let Condition::Segment { segment, .. } = c {
            out.push(*segment);
        }
    }
}

/// Segment `i` -> the segments its rules refer to (one edge per reference).
fn segment_graph(segments: &[model::Segment]) -> Vec<Vec<usize>> {
    segments
        .iter()
        .map(|s| {
            let mut out = Vec::new();
            for rule in &s.rules {
                segment_refs(rule, &mut out);
            }
            out
        })
        .collect()
}

/// Flag `i` -> its prerequisites (one edge per prerequisite).
fn prerequisite_graph(flags: &[model::Flag]) -> Vec<Vec<usize>> {
    flags
        .iter()
        .map(|f| f.prerequisites.iter().map(|p| p.flag).collect())
        .collect()
}

fn check_segment_cycles(segments: &[model::Segment]) -> Result<(), CompileError> {
    let edges = segment_graph(segments);
    match find_cycle(&edges) {
        None => Ok(()),
        Some(cycle) => {
            let names: Vec<&str> = cycle
                .iter()
                .filter_map(|&i| segments.get(i).map(|s| s.name.as_str()))
                .collect();
            Err(CompileError::new(
                Place::segment(names.first().copied().unwrap_or_default()),
                ErrorKind::SegmentCycle(names.join(" -> ")),
            ))
        }
    }
}

fn check_prerequisite_cycles(flags: &[model::Flag]) -> Result<(), CompileError> {
    let edges = prerequisite_graph(flags);
    match find_cycle(&edges) {
        None => Ok(()),
        Some(cycle) => {
            let names: Vec<&str> = cycle
                .iter()
                .filter_map(|&i| flags.get(i).map(|f| &*f.key))
                .collect();
            Err(CompileError::new(
                Place::flag(names.first().copied().unwrap_or_default()).field("requires"),
                ErrorKind::PrerequisiteCycle(names.join(" -> ")),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{condition, targeting_rule};

    fn s(v: &str) -> proto::Scalar {
        proto::Scalar {
            kind: Some(scalar::Kind::StringValue(v.into())),
        }
    }
    fn i(v: i64) -> proto::Scalar {
        proto::Scalar {
            kind: Some(scalar::Kind::IntValue(v)),
        }
    }
    fn attr(name: &str, op: Operator, values: Vec<proto::Scalar>) -> proto::Condition {
        proto::Condition {
            kind: Some(condition::Kind::Attribute(proto::AttributeTest {
                attr: name.into(),
                op: op as i32,
                values,
            })),
        }
    }
    fn seg(name: &str) -> proto::Condition {
        proto::Condition {
            kind: Some(condition::Kind::Segment(name.into())),
        }
    }
    fn flag(key: &str, variants: &[(&str, &str)]) -> proto::Flag {
        proto::Flag {
            key: key.into(),
            variants: variants
                .iter()
                .map(|(n, v)| proto::Variant {
                    name: (*n).into(),
                    value_json: (*v).into(),
                })
                .collect(),
            default_variant: variants.first().map(|v| v.0).unwrap_or("on").into(),
            ..Default::default()
        }
    }
    fn rule(conditions: Vec<proto::Condition>, serve: &str) -> proto::TargetingRule {
        proto::TargetingRule {
            conditions,
            serve: Some(targeting_rule::Serve::Variant(serve.into())),
        }
    }
    fn ruleset(flags: Vec<proto::Flag>) -> proto::Ruleset {
        proto::Ruleset {
            format: 1,
            environment: "prod".into(),
            version: 3,
            flags,
            ..Default::default()
        }
    }
    fn bool_flag(key: &str) -> proto::Flag {
        flag(key, &[("on", "true"), ("off", "false")])
    }
    fn err(rs: &proto::Ruleset) -> CompileError {
        compile(rs).expect_err("must not compile")
    }
    fn with_rule(cond: proto::Condition) -> proto::Ruleset {
        let mut f = bool_flag("f");
        f.rules.push(rule(vec![cond], "on"));
        ruleset(vec![f])
    }

    #[test]
    fn compiles_names_to_indices() {
        let mut a = bool_flag("a");
        a.client = true;
        let mut b = bool_flag("b");
        b.prerequisites.push(proto::Prerequisite {
            flag: "a".into(),
            variant: "off".into(),
        });
        b.rules.push(rule(vec![seg("staff")], "on"));
        let mut rs = ruleset(vec![a, b]);
        rs.segments.push(proto::Segment {
            name: "staff".into(),
            rules: vec![proto::Conjunction {
                conditions: vec![attr("email", Operator::EndsWith, vec![s("@x.com")])],
            }],
        });
        let m = compile(&rs).unwrap();
        assert_eq!(m.client_flags, vec![0]);
        let b = m.flag("b").unwrap();
        assert_eq!(b.prerequisites[0].flag, 0);
        assert_eq!(b.prerequisites[0].variant, 1);
        assert!(matches!(
            b.rules[0].conditions[0],
            Condition::Segment {
                segment: 0,
                negate: false
            }
        ));
        assert_eq!(b.off, b.default);
    }

    #[test]
    fn unknown_references_name_the_place() {
        let mut f = bool_flag("f");
        f.rules.push(rule(vec![], "maybe"));
        let e = err(&ruleset(vec![f]));
        assert_eq!(*e.kind, ErrorKind::UnknownVariant("maybe".into()));
        assert_eq!(
            e.to_string(),
            "flag `f`, rule 1, field `serve`: unknown variant \"maybe\""
        );

        let e = err(&with_rule(seg("nobody")));
        assert_eq!(*e.kind, ErrorKind::UnknownSegment("nobody".into()));
        assert_eq!(e.place.condition, Some(1));

        let mut f = bool_flag("f");
        f.prerequisites.push(proto::Prerequisite {
            flag: "ghost".into(),
            variant: "on".into(),
        });
        assert_eq!(
            *err(&ruleset(vec![f])).kind,
            ErrorKind::UnknownFlag("ghost".into())
        );
    }

    #[test]
    fn cycles_are_rejected() {
        let mut a = bool_flag("a");
        let mut b = bool_flag("b");
        a.prerequisites.push(proto::Prerequisite {
            flag: "b".into(),
            variant: "on".into(),
        });
        b.prerequisites.push(proto::Prerequisite {
            flag: "a".into(),
            variant: "on".into(),
        });
        let e = err(&ruleset(vec![a, b]));
        assert_eq!(*e.kind, ErrorKind::PrerequisiteCycle("a -> b -> a".into()));

        let mut self_loop = bool_flag("s");
        self_loop.prerequisites.push(proto::Prerequisite {
            flag: "s".into(),
            variant: "on".into(),
        });
        assert!(matches!(
            *err(&ruleset(vec![self_loop])).kind,
            ErrorKind::PrerequisiteCycle(_)
        ));

        let mut rs = ruleset(vec![]);
        for (name, other) in [("x", "y"), ("y", "x")] {
            rs.segments.push(proto::Segment {
                name: name.into(),
                rules: vec![proto::Conjunction {
                    conditions: vec![seg(other)],
                }],
            });
        }
        assert_eq!(
            *err(&rs).kind,
            ErrorKind::SegmentCycle("x -> y -> x".into())
        );
    }

    #[test]
    fn costs_count_every_path_through_a_dag() {
        // a -> b, a -> c, b -> d, c -> d: d is reached twice.
        let edges = vec![vec![1, 2], vec![3], vec![3], vec![]];
        assert_eq!(dag_costs(&edges, &[1, 1, 1, 5]), vec![13, 6, 6, 5]);
        // A chain longer than any stack would take recursively.
        let n = 200_000;
        let chain: Vec<Vec<usize>> = (0..n)
            .map(|i| if i + 1 < n { vec![i + 1] } else { vec![] })
            .collect();
        let costs = dag_costs(&chain, &vec![1; n]);
        assert_eq!(costs[0], n as u64);
        // A cycle (never passed in) still ends.
        assert_eq!(dag_costs(&[vec![1], vec![0]], &[1, 1]).len(), 2);
    }

    #[test]
    fn layered_shared_prerequisites_or_segments_are_rejected() {
        // 20 layers of two flags, each requiring both flags of the next layer:
        // deciding the top tests 2^20 paths.
        let layers = 20;
        let name = |layer: usize, k: usize| format!("l{layer}-{k}");
        let mut flags = Vec::new();
        for layer in 0..layers {
            for k in 0..2 {
                let mut f = bool_flag(&name(layer, k));
                if layer + 1 < layers {
                    for next in 0..2 {
                        f.prerequisites.push(proto::Prerequisite {
                            flag: name(layer + 1, next),
                            variant: "on".into(),
                        });
                    }
                }
                flags.push(f);
            }
        }
        let e = err(&ruleset(flags));
        assert!(matches!(*e.kind, ErrorKind::TooCostly { visits } if visits > MAX_FLAG_COST));
        assert!(e.to_string().starts_with("flag `l0-0`"), "{e}");
        assert!(e.to_string().contains("flatten them"), "{e}");

        // The same with segments, under one flag.
        let mut rs = with_rule(seg("s0"));
        for layer in 0..layers {
            let conditions = if layer + 1 < layers {
                vec![
                    seg(&format!("s{}", layer + 1)),
                    seg(&format!("s{}", layer + 1)),
                ]
            } else {
                vec![attr("a", Operator::Exists, vec![])]
            };
            rs.segments.push(proto::Segment {
                name: format!("s{layer}"),
                rules: vec![proto::Conjunction { conditions }],
            });
        }
        let e = err(&rs);
        assert!(matches!(*e.kind, ErrorKind::TooCostly { .. }), "{e}");

        // Wide sharing without layers is fine: 500 flags requiring one base.
        let mut flags = vec![bool_flag("base")];
        for i in 0..500 {
            let mut f = bool_flag(&format!("f{i}"));
            f.prerequisites.push(proto::Prerequisite {
                flag: "base".into(),
                variant: "on".into(),
            });
            flags.push(f);
        }
        compile(&ruleset(flags)).expect("flat sharing compiles");

        // Each flag within its own limit, the whole ruleset not: 200 flags
        // each requiring a base that tests 10,000 conditions (in one rule).
        let mut base = bool_flag("base");
        base.rules.push(rule(
            (0..10_000)
                .map(|_| attr("a", Operator::Exists, vec![]))
                .collect(),
            "on",
        ));
        let mut flags = vec![base];
        for i in 0..200 {
            let mut f = bool_flag(&format!("f{i}"));
            f.prerequisites.push(proto::Prerequisite {
                flag: "base".into(),
                variant: "on".into(),
            });
            flags.push(f);
        }
        let e = err(&ruleset(flags.clone()));
        assert!(matches!(*e.kind, ErrorKind::RulesetTooCostly { .. }), "{e}");
        assert!(
            e.to_string().starts_with("ruleset: evaluating every flag"),
            "{e}"
        );
        // A disabled flag costs one step, and so do its prerequisites.
        for f in flags.iter_mut().skip(1) {
            f.disabled = true;
        }
        compile(&ruleset(flags)).expect("disabled flags look at nothing");
    }

    #[test]
    fn operands_are_typed_and_parsed() {
        let cases = [
            (
                attr("a", Operator::Contains, vec![i(1)]),
                "needs string values",
            ),
            (attr("a", Operator::Matches, vec![s("(")]), "invalid regex"),
            (
                attr("a", Operator::SemverGte, vec![s("1.x")]),
                "invalid semver",
            ),
            (
                attr("a", Operator::Before, vec![s("2026-01-01 00:00:00Z")]),
                "invalid timestamp",
            ),
            (attr("a", Operator::Lt, vec![s("5")]), "needs number values"),
            (attr("a", Operator::In, vec![]), "needs at least one value"),
            (attr("a", Operator::Exists, vec![s("x")]), "takes no values"),
            (attr("", Operator::Eq, vec![s("x")]), "missing field"),
            (
                proto::Condition {
                    kind: Some(condition::Kind::Attribute(proto::AttributeTest {
                        attr: "a".into(),
                        op: 999,
                        values: vec![s("x")],
                    })),
                },
                "unknown operator",
            ),
        ];
        for (cond, want) in cases {
            let e = err(&with_rule(cond));
            assert!(e.to_string().contains(want), "{e} should contain {want}");
            assert_eq!(e.place.rule, Some(1), "{e}");
        }
        compile(&with_rule(attr(
            "t",
            Operator::After,
            vec![i(1_700_000_000_000)],
        )))
        .unwrap();
    }

    #[test]
    fn variants_must_share_a_type_and_be_unique() {
        let e = err(&ruleset(vec![flag("f", &[("a", "1"), ("b", "\"x\"")])]));
        assert!(
            matches!(*e.kind, ErrorKind::MixedVariantTypes { .. }),
            "{e}"
        );
        compile(&ruleset(vec![flag("f", &[("a", "1"), ("b", "2.5")])])).unwrap();
        compile(&ruleset(vec![flag("f", &[("a", "{}"), ("b", "[1]")])])).unwrap();
        let e = err(&ruleset(vec![flag("f", &[("a", "1"), ("a", "2")])]));
        assert!(matches!(*e.kind, ErrorKind::Duplicate { .. }));
        assert!(matches!(
            *err(&ruleset(vec![flag("f", &[])])).kind,
            ErrorKind::NoVariants
        ));
        let e = err(&ruleset(vec![flag("f", &[("a", "null")])]));
        assert!(matches!(*e.kind, ErrorKind::BadValue(_)));
        let e = err(&ruleset(vec![bool_flag("f"), bool_flag("f")]));
        assert!(matches!(*e.kind, ErrorKind::Duplicate { what: "flag", .. }));
    }

    #[test]
    fn weights_are_bounded() {
        let mk = |weights: &[(&str, u64)]| {
            let mut f = bool_flag("f");
            f.rules.push(proto::TargetingRule {
                conditions: vec![],
                serve: Some(targeting_rule::Serve::Rollout(proto::Rollout {
                    by: String::new(),
                    salt: None,
                    weights: weights
                        .iter()
                        .map(|(v, w)| proto::Weight {
                            variant: (*v).into(),
                            weight: *w,
                        })
                        .collect(),
                })),
            });
            ruleset(vec![f])
        };
        let m = compile(&mk(&[("on", 25), ("off", 75)])).unwrap();
        let model::Serve::Rollout(r) = &m.flags[0].rules[0].serve else {
            panic!("rollout expected")
        };
        assert_eq!(r.buckets, vec![(0, 25), (1, 100)]);
        assert_eq!(r.salt_prefix, b"f:");
        assert_eq!(&*r.by.name, "targetingKey");
        compile(&mk(&[("on", 1 << 32), ("off", 0)])).unwrap();
        for bad in [
            vec![("on", 0), ("off", 0)],
            vec![("on", 1 << 32), ("off", 1)],
            vec![("on", u64::MAX), ("off", 2)],
            vec![],
            vec![("on", 1), ("on", 1)],
        ] {
            assert!(
                matches!(*err(&mk(&bad)).kind, ErrorKind::BadWeights(_)),
                "{bad:?}"
            );
        }
        assert!(matches!(
            *err(&mk(&[("maybe", 1)])).kind,
            ErrorKind::UnknownVariant(_)
        ));
    }

    #[test]
    fn keys_and_top_level_are_checked() {
        let mut rs = ruleset(vec![]);
        rs.format = 2;
        assert_eq!(*err(&rs).kind, ErrorKind::UnsupportedFormat(2));
        let mut rs = ruleset(vec![]);
        rs.environment = "bad env".into();
        assert!(matches!(*err(&rs).kind, ErrorKind::BadName { .. }));

        let key = |id: &str, kind: proto::KeyKind, hash: &str, origins: &[&str]| proto::ApiKey {
            id: id.into(),
            kind: kind as i32,
            secret_sha256: hash.into(),
            allowed_origins: origins.iter().map(|o| (*o).into()).collect(),
        };
        let h = "ab".repeat(32);
        let mut rs = ruleset(vec![]);
        rs.keys = vec![
            key(
                "web",
                proto::KeyKind::Frontend,
                &h,
                &["https://app.example.com:8443", "*"],
            ),
            key("api", proto::KeyKind::Backend, &h, &[]),
        ];
        let m = compile(&rs).unwrap();
        assert_eq!(m.keys["web"].kind, model::KeyKind::Frontend);
        assert_eq!(m.keys["api"].secret_sha256, [0xab; 32]);

        for (bad, want) in [
            (
                key("api", proto::KeyKind::Backend, "abc", &[]),
                "secret_sha256",
            ),
            (
                key("api", proto::KeyKind::Backend, &h, &["*"]),
                "allowed origin",
            ),
            (
                key("web", proto::KeyKind::Frontend, &h, &["https://x.com/path"]),
                "allowed origin",
            ),
            (key("web", proto::KeyKind::Unspecified, &h, &[]), "key kind"),
            (
                key("a.b", proto::KeyKind::Backend, &h, &[]),
                "invalid key id",
            ),
        ] {
            let mut rs = ruleset(vec![]);
            rs.keys = vec![bad];
            let e = err(&rs);
            assert!(e.to_string().contains(want), "{e} should contain {want}");
        }
        let mut rs = ruleset(vec![]);
        rs.keys = vec![
            key("a", proto::KeyKind::Backend, &h, &[]),
            key("a", proto::KeyKind::Backend, &h, &[]),
        ];
        assert!(matches!(*err(&rs).kind, ErrorKind::Duplicate { .. }));
    }
}
