//! Reading scalar nodes the way the format says: YAML 1.2 core-schema types
//! (`012` is an integer), the source text of a bare scalar where a string is
//! expected (`1.50` stays `"1.50"`), whole numbers for versions and weights, and
//! variant values as JSON with their key order kept.
//!
//! It must not decide where a value is allowed (that is `builder`).

use serde::Serialize;
use serde_saphyr::Spanned;

use super::AuthoringError;
use super::shapes::{Node, check_unique};

/// The text of a scalar node as written, without its tag or anchor (quoted
/// scalars keep their quotes). Uses `defined`, so that an alias `*a` yields the
/// anchored node's text.
pub(super) fn source_text<'a>(src: &'a str, node: &Spanned<Node>) -> Option<&'a str> {
    let span = node.defined.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    src.get(start..start.checked_add(len)?)
}

/// The node's value, with one correction: serde-saphyr reads a decimal integer
/// with leading zeros (`012`, `-007`) as a float, but YAML 1.2's core schema
/// makes it an integer.
pub(super) fn typed(src: &str, node: &Spanned<Node>) -> Node {
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
pub(super) fn whole_number(src: &str, node: &Spanned<Node>) -> Option<u64> {
    match typed(src, node) {
        Node::Int(i) => u64::try_from(i).ok(),
        Node::Uint(u) => Some(u),
        _ => None,
    }
}

/// A scalar where a string is expected: a YAML string as is, any other bare
/// scalar as its source text (`1.50` -> "1.50", `2` -> "2", `true` -> "true").
/// `None` for null, lists and mappings.
pub(super) fn text_of(src: &str, node: &Spanned<Node>) -> Option<String> {
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
pub(super) enum Json {
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

/// A variant value as JSON (YAML 1.2 typed), its mappings in the order written.
pub(super) fn to_json(src: &str, node: &Spanned<Node>) -> Result<Json, AuthoringError> {
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
