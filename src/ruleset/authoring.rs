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
//! YAML is read by serde-saphyr with YAML 1.2 booleans only
//! (`strict_booleans`), `1_000` kept as a string, duplicate keys rejected and
//! `deny_unknown_fields` on every struct (ECOSYSTEM.md §7.6). Source text is
//! sliced from the input at each node's span: serde-saphyr keeps byte offsets
//! for string input.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, MessageFormatter, Spanned};

use crate::eval::model;
use crate::ruleset::compile::{self, CompileError, ErrorKind, Place};
use crate::ruleset::operator::{Operands, Spec};
use crate::ruleset::proto;

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
        /// Where.
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
        /// The error.
        error: CompileError,
        /// Line, when known.
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
fn one_line(s: &str) -> String {
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
    let mut b = Builder {
        src: text,
        lines: Lines::default(),
    };
    let pb = b.ruleset(doc, now_ms)?;
    Ok((pb, b.lines))
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

fn yaml_at(message: String, line: u64, column: u64) -> AuthoringError {
    AuthoringError::Yaml {
        message: one_line(&message),
        line,
        column,
    }
}

// ---------------------------------------------------------------------------
// The authoring document, as read from YAML.
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a ruleset: a mapping with `environment`, `version`, `keys`, `segments` and `flags`"
)]
struct Doc {
    environment: Spanned<String>,
    version: Option<Spanned<Node>>,
    keys: Option<Vec<Spanned<KeyDoc>>>,
    segments: Option<OrderedMap<SegmentRules>>,
    flags: Option<OrderedMap<FlagDoc>>,
}

/// A segment's rules: each a list of conditions.
type SegmentRules = Vec<Spanned<Vec<Spanned<ConditionDoc>>>>;

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an API key: a mapping with `id`, `kind`, `secret_sha256` and `allowed_origins`"
)]
struct KeyDoc {
    id: Spanned<String>,
    kind: Spanned<String>,
    secret_sha256: Spanned<String>,
    allowed_origins: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a condition: `{attr, op, values}`, `{segment}` or `{not_segment}`"
)]
struct ConditionDoc {
    attr: Option<Spanned<String>>,
    op: Option<Spanned<String>>,
    values: Option<Spanned<Vec<Spanned<Node>>>>,
    segment: Option<Spanned<String>>,
    not_segment: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a flag: a mapping with `variants`, `default` and optionally `description`, `client`, `enabled`, `off`, `requires`, `rules`"
)]
struct FlagDoc {
    description: Option<String>,
    #[serde(default)]
    client: bool,
    #[serde(default = "yes")]
    enabled: bool,
    variants: Option<Spanned<OrderedMap<Node>>>,
    default: Option<Spanned<String>>,
    off: Option<Spanned<String>>,
    requires: Option<Spanned<Vec<Spanned<PrerequisiteDoc>>>>,
    rules: Option<Vec<Spanned<RuleDoc>>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a prerequisite: a mapping with `flag` and `variant`"
)]
struct PrerequisiteDoc {
    flag: String,
    variant: String,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a rule: a mapping with `serve` and optionally `when`"
)]
struct RuleDoc {
    when: Option<Spanned<Vec<Spanned<ConditionDoc>>>>,
    serve: Option<Spanned<ServeDoc>>,
}

/// `serve: <variant name>` or `serve: {rollout: {...}}`.
enum ServeDoc {
    /// A scalar: the variant name (its source text if not a YAML string).
    Variant(Node),
    Rollout(RolloutDoc),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "`{rollout: {by, salt, weights}}`")]
struct ServeMapDoc {
    rollout: RolloutDoc,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a rollout: a mapping with `weights` and optionally `by`, `salt`"
)]
struct RolloutDoc {
    by: Option<String>,
    salt: Option<String>,
    weights: Spanned<OrderedMap<Node>>,
}

impl<'de> Deserialize<'de> for ServeDoc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ServeVisitor;
        impl<'de> Visitor<'de> for ServeVisitor {
            type Value = ServeDoc;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a variant name or `{rollout: {...}}`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ServeDoc, E> {
                NodeVisitor.visit_bool(v).map(ServeDoc::Variant)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ServeDoc, E> {
                NodeVisitor.visit_i64(v).map(ServeDoc::Variant)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ServeDoc, E> {
                NodeVisitor.visit_u64(v).map(ServeDoc::Variant)
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<ServeDoc, E> {
                NodeVisitor.visit_i128(v).map(ServeDoc::Variant)
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<ServeDoc, E> {
                NodeVisitor.visit_u128(v).map(ServeDoc::Variant)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ServeDoc, E> {
                NodeVisitor.visit_f64(v).map(ServeDoc::Variant)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ServeDoc, E> {
                NodeVisitor.visit_str(v).map(ServeDoc::Variant)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ServeDoc, A::Error> {
                ServeMapDoc::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|m| ServeDoc::Rollout(m.rollout))
            }
        }
        d.deserialize_any(ServeVisitor)
    }
}

/// A YAML mapping with string keys, in the order written. (serde's maps would
/// sort or hash; order matters for flags, variants and rollout buckets.)
struct OrderedMap<V>(Vec<(Spanned<String>, Spanned<V>)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OrderedMap<V>, A::Error> {
                read_entries(map).map(OrderedMap)
            }
        }
        d.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

type Entries<V> = Vec<(Spanned<String>, Spanned<V>)>;

fn read_entries<'de, A: MapAccess<'de>, V: Deserialize<'de>>(
    mut map: A,
) -> Result<Entries<V>, A::Error> {
    let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
    while let Some(k) = map.next_key::<Spanned<String>>()? {
        let v = map.next_value::<Spanned<V>>()?;
        out.push((k, v));
    }
    Ok(out)
}

/// Rejects two keys with the same text. serde-saphyr already rejects equal YAML
/// keys; this catches keys that differ only in YAML type (`1` and `"1"`).
fn check_unique<V>(entries: &Entries<V>) -> Result<(), AuthoringError> {
    let mut seen = std::collections::HashMap::with_capacity(entries.len());
    for (k, _) in entries {
        if let Some(first) = seen.insert(k.value.as_str(), k.referenced.line()) {
            return Err(yaml_at(
                format!(
                    "duplicate mapping key `{}` (first at line {first})",
                    k.value
                ),
                k.referenced.line(),
                k.referenced.column(),
            ));
        }
    }
    Ok(())
}

/// Any YAML node, typed by the YAML 1.2 core schema, keeping mapping order and
/// the location of every node (for source text and lines).
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    /// A whole number that fits in i64.
    Int(i64),
    /// A whole number above i64::MAX.
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Entries<Node>),
}

impl Node {
    fn from_u64(v: u64) -> Self {
        i64::try_from(v).map_or(Node::Uint(v), Node::Int)
    }

    /// For messages: `null`, `a list`, `number 1.5`...
    fn describe(&self) -> String {
        match self {
            Node::Null => "null".to_owned(),
            Node::Bool(b) => format!("boolean {b}"),
            Node::Int(i) => format!("number {i}"),
            Node::Uint(u) => format!("number {u}"),
            Node::Float(f) => format!("number {f:?}"),
            Node::Str(s) => format!("string {s:?}"),
            Node::Seq(_) => "a list".to_owned(),
            Node::Map(_) => "a mapping".to_owned(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// Reads any YAML node as a [`Node`].
struct NodeVisitor;
impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Node, D2::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::from_u64(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(i64::try_from(v)
            .map(Node::Int)
            .or_else(|_| u64::try_from(v).map(Node::Uint))
            .unwrap_or(Node::Float(v as f64)))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(u64::try_from(v).map_or(Node::Float(v as f64), Node::from_u64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element::<Spanned<Node>>()? {
            out.push(v);
        }
        Ok(Node::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Node, A::Error> {
        read_entries(map).map(Node::Map)
    }
}

/// The text of a scalar node as written, without its tag or anchor (quoted
/// scalars keep their quotes). Uses `defined`, so that an alias `*a` yields the
/// anchored node's text.
fn source_text<'a>(src: &'a str, node: &Spanned<Node>) -> Option<&'a str> {
    let span = node.defined.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    src.get(start..start.checked_add(len)?)
}

/// The node's value, with one correction: serde-saphyr reads a decimal integer
/// with leading zeros (`012`, `-007`) as a float, but YAML 1.2's core schema
/// makes it an integer.
fn typed(src: &str, node: &Spanned<Node>) -> Node {
    if let Node::Float(_) = node.value
        && let Some(text) = source_text(src, node)
    {
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit())
        {
            let text = text.strip_prefix('+').unwrap_or(text);
            if let Ok(i) = text.parse::<i64>() {
                return Node::Int(i);
            }
            if let Ok(u) = text.parse::<u64>() {
                return Node::Uint(u);
            }
        }
    }
    node.value.clone()
}

/// A whole number ≥ 0 (`012` included).
fn whole_number(src: &str, node: &Spanned<Node>) -> Option<u64> {
    match typed(src, node) {
        Node::Int(i) => u64::try_from(i).ok(),
        Node::Uint(u) => Some(u),
        _ => None,
    }
}

/// A scalar where a string is expected: a YAML string as is, any other bare
/// scalar as its source text (`1.50` -> "1.50", `2` -> "2", `true` -> "true").
/// `None` for null, lists and mappings.
fn text_of(src: &str, node: &Spanned<Node>) -> Option<String> {
    match &node.value {
        Node::Str(s) => Some(s.clone()),
        Node::Null | Node::Seq(_) | Node::Map(_) => None,
        // Fallback only if the span has no byte offsets (never for `from_str`).
        other => Some(source_text(src, node).map_or_else(
            || match other {
                Node::Bool(b) => b.to_string(),
                Node::Int(i) => i.to_string(),
                Node::Uint(u) => u.to_string(),
                Node::Float(f) => f.to_string(),
                _ => String::new(),
            },
            str::to_owned,
        )),
    }
}

/// A variant value as JSON, keeping the key order written.
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Int(i) => s.serialize_i64(*i),
            Json::Uint(u) => s.serialize_u64(*u),
            Json::Float(f) => s.serialize_f64(*f),
            Json::Str(v) => s.serialize_str(v),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

fn to_json(src: &str, node: &Spanned<Node>) -> Result<Json, AuthoringError> {
    Ok(match &node.value {
        Node::Null => Json::Null,
        Node::Bool(b) => Json::Bool(*b),
        Node::Int(i) => Json::Int(*i),
        Node::Uint(u) => Json::Uint(*u),
        Node::Float(f) => match typed(src, node) {
            Node::Int(i) => Json::Int(i),
            Node::Uint(u) => Json::Uint(u),
            _ => Json::Float(*f),
        },
        Node::Str(s) => Json::Str(s.clone()),
        Node::Seq(items) => Json::Array(
            items
                .iter()
                .map(|i| to_json(src, i))
                .collect::<Result<_, _>>()?,
        ),
        Node::Map(entries) => {
            check_unique(entries)?;
            Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.value.clone(), to_json(src, v)?)))
                    .collect::<Result<_, AuthoringError>>()?,
            )
        }
    })
}

// ---------------------------------------------------------------------------
// Document -> proto, recording lines.
// ---------------------------------------------------------------------------

struct Builder<'a> {
    src: &'a str,
    lines: Lines,
}

fn invalid(place: Place, kind: ErrorKind, loc: &Location) -> AuthoringError {
    AuthoringError::Invalid {
        error: CompileError::new(place, kind),
        line: known(loc),
    }
}

fn shape(place: Place, message: impl Into<String>, loc: &Location) -> AuthoringError {
    AuthoringError::Shape {
        place: Box::new(place),
        message: message.into(),
        line: loc.line(),
    }
}

fn known(loc: &Location) -> Option<u64> {
    Some(loc.line()).filter(|&l| l > 0)
}

impl Builder<'_> {
    fn ruleset(&mut self, doc: Doc, now_ms: u64) -> Result<proto::Ruleset, AuthoringError> {
        let env = doc.environment;
        self.lines
            .add(Place::root().field("environment"), &env.referenced);
        if !crate::ruleset::valid_env_name(&env.value) {
            return Err(invalid(
                Place::root().field("environment"),
                ErrorKind::BadName {
                    what: "environment",
                    name: env.value,
                    pattern: "[A-Za-z0-9_-]{1,64}",
                },
                &env.referenced,
            ));
        }
        let version = match &doc.version {
            None => now_ms,
            Some(v) => {
                self.lines
                    .add(Place::root().field("version"), &v.referenced);
                whole_number(self.src, v).ok_or_else(|| {
                    yaml_at(
                        format!(
                            "`version` must be a whole number ≥ 0, got {}",
                            typed(self.src, v).describe()
                        ),
                        v.referenced.line(),
                        v.referenced.column(),
                    )
                })?
            }
        };
        let keys = doc
            .keys
            .unwrap_or_default()
            .into_iter()
            .map(|k| self.key(k))
            .collect::<Result<_, _>>()?;
        let segments = match doc.segments {
            Some(OrderedMap(entries)) => {
                check_unique(&entries)?;
                entries
                    .into_iter()
                    .map(|(name, rules)| self.segment(name, rules))
                    .collect::<Result<_, _>>()?
            }
            None => Vec::new(),
        };
        let flags = match doc.flags {
            Some(OrderedMap(entries)) => {
                check_unique(&entries)?;
                entries
                    .into_iter()
                    .map(|(key, flag)| self.flag(key, flag))
                    .collect::<Result<_, _>>()?
            }
            None => Vec::new(),
        };
        Ok(proto::Ruleset {
            format: crate::ruleset::FORMAT,
            environment: env.value,
            version,
            keys,
            segments,
            flags,
        })
    }

    fn key(&mut self, k: Spanned<KeyDoc>) -> Result<proto::ApiKey, AuthoringError> {
        let KeyDoc {
            id,
            kind,
            secret_sha256,
            allowed_origins,
        } = k.value;
        let place = Place::key(&id.value);
        self.lines.add(place.clone(), &k.referenced);
        self.lines.add(place.clone().field("id"), &id.referenced);
        self.lines
            .add(place.clone().field("kind"), &kind.referenced);
        self.lines.add(
            place.clone().field("secret_sha256"),
            &secret_sha256.referenced,
        );
        let kind_value = match kind.value.as_str() {
            "frontend" => proto::KeyKind::Frontend,
            "backend" => proto::KeyKind::Backend,
            _ => {
                return Err(invalid(
                    place.field("kind"),
                    ErrorKind::BadKeyKind(kind.value),
                    &kind.referenced,
                ));
            }
        };
        let mut origins = Vec::new();
        if let Some(list) = allowed_origins {
            self.lines
                .add(place.clone().field("allowed_origins"), &list.referenced);
            for o in list.value {
                self.lines.add(
                    place.clone().field(format!("allowed_origins.{}", o.value)),
                    &o.referenced,
                );
                origins.push(o.value);
            }
        }
        Ok(proto::ApiKey {
            id: id.value,
            kind: kind_value as i32,
            secret_sha256: secret_sha256.value,
            allowed_origins: origins,
        })
    }

    fn segment(
        &mut self,
        name: Spanned<String>,
        rules: Spanned<SegmentRules>,
    ) -> Result<proto::Segment, AuthoringError> {
        let place = Place::segment(&name.value);
        self.lines.add(place.clone(), &name.referenced);
        let rules = rules
            .value
            .into_iter()
            .enumerate()
            .map(|(r, rule)| {
                let rplace = place.clone().rule(r + 1);
                self.lines.add(rplace.clone(), &rule.referenced);
                Ok(proto::Conjunction {
                    conditions: self.conditions(&rplace, rule.value)?,
                })
            })
            .collect::<Result<_, AuthoringError>>()?;
        Ok(proto::Segment {
            name: name.value,
            rules,
        })
    }

    fn conditions(
        &mut self,
        rplace: &Place,
        conditions: Vec<Spanned<ConditionDoc>>,
    ) -> Result<Vec<proto::Condition>, AuthoringError> {
        conditions
            .into_iter()
            .enumerate()
            .map(|(c, cond)| self.condition(rplace.clone().condition(c + 1), cond))
            .collect()
    }

    fn condition(
        &mut self,
        place: Place,
        cond: Spanned<ConditionDoc>,
    ) -> Result<proto::Condition, AuthoringError> {
        use proto::condition::Kind;
        let at = cond.referenced;
        self.lines.add(place.clone(), &at);
        let ConditionDoc {
            attr,
            op,
            values,
            segment,
            not_segment,
        } = cond.value;
        for (field, loc) in [
            ("attr", attr.as_ref().map(|s| s.referenced)),
            ("op", op.as_ref().map(|s| s.referenced)),
            ("values", values.as_ref().map(|s| s.referenced)),
            ("segment", segment.as_ref().map(|s| s.referenced)),
            ("not_segment", not_segment.as_ref().map(|s| s.referenced)),
        ] {
            if let Some(loc) = loc {
                self.lines.add(place.clone().field(field), &loc);
            }
        }
        let is_test = attr.is_some() || op.is_some() || values.is_some();
        let kinds: Vec<&str> = [
            is_test.then_some("`attr`/`op`/`values`"),
            segment.is_some().then_some("`segment`"),
            not_segment.is_some().then_some("`not_segment`"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if kinds.len() != 1 {
            let message = if kinds.is_empty() {
                "a condition needs `attr` and `op` (with `values`), or `segment`, or `not_segment`"
                    .to_owned()
            } else {
                format!(
                    "a condition is one of `attr`/`op`/`values`, `segment` or `not_segment`; this one has {}",
                    kinds.join(" and ")
                )
            };
            return Err(shape(place, message, &at));
        }
        let kind = match (segment, not_segment) {
            (Some(s), _) => Kind::Segment(s.value),
            (_, Some(s)) => Kind::NotSegment(s.value),
            (None, None) => Kind::Attribute(self.attribute_test(&place, &at, attr, op, values)?),
        };
        Ok(proto::Condition { kind: Some(kind) })
    }

    fn attribute_test(
        &mut self,
        place: &Place,
        at: &Location,
        attr: Option<Spanned<String>>,
        op: Option<Spanned<String>>,
        values: Option<Spanned<Vec<Spanned<Node>>>>,
    ) -> Result<proto::AttributeTest, AuthoringError> {
        let Some(attr) = attr else {
            return Err(invalid(
                place.clone().field("attr"),
                ErrorKind::MissingField("attr"),
                at,
            ));
        };
        let Some(op) = op else {
            return Err(invalid(
                place.clone().field("op"),
                ErrorKind::MissingField("op"),
                at,
            ));
        };
        let Some(spec) = Spec::by_name(&op.value) else {
            return Err(invalid(
                place.clone().field("op"),
                ErrorKind::UnknownOperator(op.value),
                &op.referenced,
            ));
        };
        let op_name = spec.name;
        let operands = spec.family.operands();
        let vplace = || place.clone().field("values");
        let (values, vloc) = match values {
            Some(v) => (v.value, v.referenced),
            None => (Vec::new(), *at),
        };
        match operands {
            Operands::None if !values.is_empty() => {
                return Err(invalid(
                    vplace(),
                    ErrorKind::UnexpectedValues(op_name),
                    &vloc,
                ));
            }
            Operands::Typed(_) | Operands::Text if values.is_empty() => {
                return Err(invalid(vplace(), ErrorKind::EmptyValues(op_name), &vloc));
            }
            _ => {}
        }
        let values = values
            .iter()
            .map(|v| {
                let wrong = || {
                    invalid(
                        vplace(),
                        ErrorKind::WrongValueType {
                            op: op_name,
                            expected: operands.expected(),
                            got: v.value.describe(),
                        },
                        &v.referenced,
                    )
                };
                use proto::scalar::Kind as S;
                let kind = match operands {
                    Operands::Text => S::StringValue(text_of(self.src, v).ok_or_else(wrong)?),
                    // `None` has no values here (checked above).
                    Operands::Typed(_) | Operands::None => match typed(self.src, v) {
                        Node::Bool(b) => S::BoolValue(b),
                        Node::Int(i) => S::IntValue(i),
                        Node::Uint(u) => S::UintValue(u),
                        Node::Float(f) => S::FloatValue(f),
                        Node::Str(s) => S::StringValue(s),
                        Node::Null | Node::Seq(_) | Node::Map(_) => return Err(wrong()),
                    },
                };
                Ok(proto::Scalar { kind: Some(kind) })
            })
            .collect::<Result<_, AuthoringError>>()?;
        Ok(proto::AttributeTest {
            attr: attr.value,
            op: spec.op as i32,
            values,
        })
    }

    fn flag(
        &mut self,
        key: Spanned<String>,
        flag: Spanned<FlagDoc>,
    ) -> Result<proto::Flag, AuthoringError> {
        let place = Place::flag(&key.value);
        self.lines.add(place.clone(), &key.referenced);
        let FlagDoc {
            description,
            client,
            enabled,
            variants,
            default,
            off,
            requires,
            rules,
        } = flag.value;

        let mut out_variants = Vec::new();
        if let Some(vs) = variants {
            self.lines
                .add(place.clone().field("variants"), &vs.referenced);
            let OrderedMap(entries) = vs.value;
            check_unique(&entries)?;
            for (name, value) in entries {
                self.lines.add(
                    place.clone().field(format!("variants.{}", name.value)),
                    &name.referenced,
                );
                let json = to_json(self.src, &value)?;
                let value_json = serde_json::to_string(&json).map_err(|e| {
                    yaml_at(
                        format!("variant `{}`: {e}", name.value),
                        value.referenced.line(),
                        value.referenced.column(),
                    )
                })?;
                out_variants.push(proto::Variant {
                    name: name.value,
                    value_json,
                });
            }
        }

        let Some(default) = default else {
            return Err(invalid(
                place.field("default"),
                ErrorKind::MissingField("default"),
                &key.referenced,
            ));
        };
        self.lines
            .add(place.clone().field("default"), &default.referenced);
        if let Some(off) = &off {
            self.lines.add(place.clone().field("off"), &off.referenced);
        }

        let mut prerequisites = Vec::new();
        if let Some(reqs) = requires {
            self.lines
                .add(place.clone().field("requires"), &reqs.referenced);
            for r in reqs.value {
                self.lines.add(
                    place.clone().field(format!("requires.{}", r.value.flag)),
                    &r.referenced,
                );
                prerequisites.push(proto::Prerequisite {
                    flag: r.value.flag,
                    variant: r.value.variant,
                });
            }
        }

        let rules = rules
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(r, rule)| self.rule(place.clone().rule(r + 1), rule))
            .collect::<Result<_, _>>()?;

        Ok(proto::Flag {
            key: key.value,
            description: description.unwrap_or_default(),
            client,
            disabled: !enabled,
            variants: out_variants,
            default_variant: default.value,
            off_variant: off.map(|o| o.value).unwrap_or_default(),
            prerequisites,
            rules,
        })
    }

    fn rule(
        &mut self,
        rplace: Place,
        rule: Spanned<RuleDoc>,
    ) -> Result<proto::TargetingRule, AuthoringError> {
        use proto::targeting_rule::Serve;
        self.lines.add(rplace.clone(), &rule.referenced);
        let RuleDoc { when, serve } = rule.value;
        let conditions = match when {
            Some(w) => {
                self.lines.add(rplace.clone().field("when"), &w.referenced);
                self.conditions(&rplace, w.value)?
            }
            None => Vec::new(),
        };
        let Some(serve) = serve else {
            return Err(invalid(
                rplace.field("serve"),
                ErrorKind::NothingToServe,
                &rule.referenced,
            ));
        };
        self.lines
            .add(rplace.clone().field("serve"), &serve.referenced);
        let serve_node_text = |node: Node| {
            let spanned = Spanned::new(node, serve.referenced, serve.defined);
            text_of(self.src, &spanned)
        };
        let served = match serve.value {
            ServeDoc::Variant(node) => Serve::Variant(serve_node_text(node).unwrap_or_default()),
            ServeDoc::Rollout(ro) => Serve::Rollout(self.rollout(&rplace, ro)?),
        };
        Ok(proto::TargetingRule {
            conditions,
            serve: Some(served),
        })
    }

    fn rollout(
        &mut self,
        rplace: &Place,
        ro: RolloutDoc,
    ) -> Result<proto::Rollout, AuthoringError> {
        let field = "serve.rollout.weights";
        let wplace = || rplace.clone().field(field);
        self.lines.add(wplace(), &ro.weights.referenced);
        let OrderedMap(entries) = ro.weights.value;
        check_unique(&entries)?;
        let mut weights = Vec::with_capacity(entries.len());
        for (variant, w) in entries {
            self.lines.add(
                rplace.clone().field(format!("{field}.{}", variant.value)),
                &variant.referenced,
            );
            let Some(weight) = whole_number(self.src, &w) else {
                return Err(invalid(
                    wplace(),
                    ErrorKind::BadWeights(format!(
                        "the weight of `{}` must be a whole number ≥ 0, got {}",
                        variant.value,
                        typed(self.src, &w).describe()
                    )),
                    &w.referenced,
                ));
            };
            weights.push(proto::Weight {
                variant: variant.value,
                weight,
            });
        }
        Ok(proto::Rollout {
            by: ro.by.unwrap_or_default(),
            salt: ro.salt,
            weights,
        })
    }
}

// ---------------------------------------------------------------------------
// Lines of places, for compile errors.
// ---------------------------------------------------------------------------

/// The YAML line of each place this module has seen, so that a [`CompileError`]
/// (which names a [`Place`], not a line) can point at the YAML.
#[derive(Default)]
struct Lines(Vec<(Place, u64)>);

impl Lines {
    fn add(&mut self, place: Place, loc: &Location) {
        if let Some(line) = known(loc) {
            self.0.push((place, line));
        }
    }

    /// The last recorded line of exactly `place` (the last, so a name defined
    /// twice points at its second definition).
    fn get(&self, place: &Place) -> Option<u64> {
        self.0
            .iter()
            .rev()
            .find(|(p, _)| p == place)
            .map(|(_, l)| *l)
    }

    /// The line of the most specific place known: the named item inside the
    /// field (`variants.on`), the field, its dotted parents, then the
    /// condition, the rule, and the flag, segment or key.
    fn line_of(&self, err: &CompileError) -> Option<u64> {
        let place = err.place.as_ref();
        let with_field = |p: &Place, f: String| p.clone().field(f);
        // Errors that name an item inside the place's field.
        let named: Option<Place> = match (err.kind.as_ref(), place.field.as_deref()) {
            (ErrorKind::Duplicate { name, .. }, Some("keys")) if is_root(place) => {
                Some(Place::key(name))
            }
            (ErrorKind::Duplicate { name, .. }, Some("flags")) if is_root(place) => {
                Some(Place::flag(name))
            }
            (ErrorKind::Duplicate { name, .. }, Some("segments")) if is_root(place) => {
                Some(Place::segment(name))
            }
            (ErrorKind::Duplicate { name, .. }, Some(f))
            | (ErrorKind::UnknownVariant(name), Some(f))
            | (ErrorKind::UnknownFlag(name), Some(f))
            | (ErrorKind::BadOrigin(name), Some(f))
            | (ErrorKind::MixedVariantTypes { other: name, .. }, Some(f)) => {
                Some(with_field(place, format!("{f}.{name}")))
            }
            _ => None,
        };
        if let Some(line) = named.and_then(|p| self.get(&p)) {
            return Some(line);
        }
        let mut p = place.clone();
        loop {
            while let Some(f) = p.field.take() {
                let candidate = p.clone().field(f.clone());
                if let Some(line) = self.get(&candidate) {
                    return Some(line);
                }
                p.field = f
                    .rsplit_once('.')
                    .map(|(parent, _)| Cow::Owned(parent.to_owned()));
            }
            if let Some(line) = self.get(&p) {
                return Some(line);
            }
            if p.condition.take().is_none() && p.rule.take().is_none() {
                return None;
            }
        }
    }
}

fn is_root(place: &Place) -> bool {
    place.flag.is_none() && place.segment.is_none() && place.key.is_none()
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

    #[test]
    fn lines_fall_back_to_the_most_specific_place() {
        let mut lines = Lines::default();
        let at = |l| (Place::flag("f").rule(l as usize), l);
        lines.0.push((Place::flag("f"), 3));
        lines.0.push(at(9));
        lines.0.push((Place::flag("f").rule(9).field("serve"), 10));
        let err = |p: Place, k| CompileError::new(p, k);
        assert_eq!(
            lines.line_of(&err(
                Place::flag("f").rule(9).field("serve.rollout.weights"),
                ErrorKind::UnknownVariant("x".into())
            )),
            Some(10)
        );
        assert_eq!(
            lines.line_of(&err(
                Place::flag("f").rule(9).condition(2).field("values"),
                ErrorKind::NothingToServe
            )),
            Some(9)
        );
        assert_eq!(
            lines.line_of(&err(
                Place::flag("f").field("default"),
                ErrorKind::NoVariants
            )),
            Some(3)
        );
        assert_eq!(
            lines.line_of(&err(Place::flag("g"), ErrorKind::NoVariants)),
            None
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
