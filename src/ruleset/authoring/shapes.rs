//! The shapes of the authoring document as serde reads them: the ruleset, API
//! keys, segments, flags, rules, conditions and rollouts (`deny_unknown_fields`
//! on each, so an unknown field is an error at its line), mappings kept in the
//! order written, duplicate keys rejected, and [`Node`], any YAML value with its
//! location.
//!
//! It must not interpret values (that is `scalars` and `builder`): every field
//! that needs the YAML type or the source text of a scalar is read as a `Node`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::{AuthoringError, yaml_at};

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a ruleset: a mapping with `environment`, `version`, `keys`, `segments` and `flags`"
)]
pub(super) struct Doc {
    pub(super) environment: Spanned<String>,
    pub(super) version: Option<Spanned<Node>>,
    pub(super) keys: Option<Vec<Spanned<KeyDoc>>>,
    pub(super) segments: Option<OrderedMap<SegmentRules>>,
    pub(super) flags: Option<OrderedMap<FlagDoc>>,
}

/// A segment's rules: each a list of conditions.
pub(super) type SegmentRules = Vec<Spanned<Vec<Spanned<ConditionDoc>>>>;

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an API key: a mapping with `id`, `kind`, `secret_sha256` and `allowed_origins`"
)]
pub(super) struct KeyDoc {
    pub(super) id: Spanned<String>,
    pub(super) kind: Spanned<String>,
    pub(super) secret_sha256: Spanned<String>,
    pub(super) allowed_origins: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a condition: `{attr, op, values}`, `{segment}` or `{not_segment}`"
)]
pub(super) struct ConditionDoc {
    pub(super) attr: Option<Spanned<String>>,
    pub(super) op: Option<Spanned<String>>,
    pub(super) values: Option<Spanned<Vec<Spanned<Node>>>>,
    pub(super) segment: Option<Spanned<String>>,
    pub(super) not_segment: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a flag: a mapping with `variants`, `default` and optionally `description`, `client`, `enabled`, `off`, `requires`, `rules`"
)]
pub(super) struct FlagDoc {
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) client: bool,
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    pub(super) variants: Option<Spanned<OrderedMap<Node>>>,
    pub(super) default: Option<Spanned<String>>,
    pub(super) off: Option<Spanned<String>>,
    pub(super) requires: Option<Spanned<Vec<Spanned<PrerequisiteDoc>>>>,
    pub(super) rules: Option<Vec<Spanned<RuleDoc>>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a prerequisite: a mapping with `flag` and `variant`"
)]
pub(super) struct PrerequisiteDoc {
    pub(super) flag: String,
    pub(super) variant: String,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a rule: a mapping with `serve` and optionally `when`"
)]
pub(super) struct RuleDoc {
    pub(super) when: Option<Spanned<Vec<Spanned<ConditionDoc>>>>,
    pub(super) serve: Option<Spanned<ServeDoc>>,
}

/// `serve: <variant name>` or `serve: {rollout: {...}}`.
pub(super) enum ServeDoc {
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
pub(super) struct RolloutDoc {
    pub(super) by: Option<String>,
    pub(super) salt: Option<String>,
    pub(super) weights: Spanned<OrderedMap<Node>>,
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
pub(super) struct OrderedMap<V>(pub(super) Vec<(Spanned<String>, Spanned<V>)>);

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

/// A mapping's entries in the order written.
pub(super) type Entries<V> = Vec<(Spanned<String>, Spanned<V>)>;

/// Reads a mapping's entries in order (serde's maps would sort or hash).
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
pub(super) fn check_unique<V>(entries: &Entries<V>) -> Result<(), AuthoringError> {
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
pub(super) enum Node {
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
    /// A whole number: `Int` if it fits i64, else `Uint`.
    fn from_u64(v: u64) -> Self {
        i64::try_from(v).map_or(Node::Uint(v), Node::Int)
    }

    /// For messages: `null`, `a list`, `number 1.5`...
    pub(super) fn describe(&self) -> String {
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
