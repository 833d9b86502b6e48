//! Contexts and attribute lookup.
//!
//! Owns what a context is (a JSON object), how one is parsed from text, and how an
//! attribute name finds its value in it (DESIGN.md, "Evaluation semantics": a flat
//! key equal to the whole name wins, otherwise dots walk nested objects, never into
//! arrays; `null` is missing). It must not interpret values: typing and operators
//! belong to `operators`, hashing to `rollout`. No I/O, no allocation on lookup.

use serde_json::Value;

use super::model::Attr;

/// A context: a JSON object of attributes.
///
/// Callers build it from a request (see [`context_from_json`]); evaluation only
/// reads it.
pub type Context = serde_json::Map<String, Value>;

/// Why text could not be read as a context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The text is not JSON at all; the source holds serde_json's message with the
    /// line and column.
    #[error("context is not valid JSON")]
    InvalidJson(#[source] serde_json::Error),
    /// The text is JSON but not an object (`found` names the JSON type it is).
    #[error("context must be a JSON object, not {found}")]
    NotAnObject {
        /// The JSON type found instead: `null`, `a boolean`, `a number`,
        /// `a string` or `an array`.
        found: &'static str,
    },
}

/// Parses a context from JSON text, which must be one JSON object.
///
/// Duplicate keys keep the last value (serde_json's behaviour). serde_json's
/// recursion limit bounds nesting, so hostile input cannot overflow the stack.
///
/// ```
/// use flagbelt::eval::context_from_json;
///
/// let ctx = context_from_json(r#"{"targetingKey": "u1"}"#).unwrap();
/// assert_eq!(ctx["targetingKey"], "u1");
/// assert!(context_from_json("[1]").is_err());
/// ```
pub fn context_from_json(text: &str) -> Result<Context, ContextError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ContextError::NotAnObject {
            found: json_type_name(&other),
        }),
        Err(e) => Err(ContextError::InvalidJson(e)),
    }
}

/// The JSON type of `v`, as error messages name it (`an array`, `null`).
pub fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Finds the value of `attr` in `ctx`, or `None` when it is missing.
///
/// - A top-level key equal to the whole name wins (`"app.version"` sent flat, as
///   OFREP contexts do).
/// - Otherwise, if the name has dots, its parts walk nested objects
///   (`{"app": {"version": ..}}`). The walk never enters arrays, and each part is
///   one key (a dotted key inside a nested object is not split again).
/// - JSON `null` counts as missing, at the end of the walk and for the flat key:
///   a flat key holding `null` is treated as absent, so the nested walk is tried.
///
/// ```
/// use flagbelt::eval::{context_from_json, lookup, model::Attr};
///
/// let ctx = context_from_json(r#"{"app": {"version": "2.3.0"}}"#).unwrap();
/// assert_eq!(lookup(&ctx, &Attr::new("app.version")).unwrap(), "2.3.0");
/// assert!(lookup(&ctx, &Attr::new("app.build")).is_none());
/// ```
pub fn lookup<'c>(ctx: &'c Context, attr: &Attr) -> Option<&'c Value> {
    if let Some(v) = ctx.get(&*attr.name).filter(|v| !v.is_null()) {
        return Some(v);
    }
    if !attr.nested {
        // No dots: the flat lookup above was the whole story.
        return None;
    }
    let mut parts = attr.name.split('.');
    let mut current = ctx.get(parts.next()?)?;
    for part in parts {
        match current {
            Value::Object(map) => current = map.get(part)?,
            // Arrays and scalars have no named members.
            _ => return None,
        }
    }
    (!current.is_null()).then_some(current)
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)] // tests may panic and index
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx(v: Value) -> Context {
        match v {
            Value::Object(m) => m,
            _ => panic!("test context must be an object"),
        }
    }

    #[test]
    fn parses_objects_and_distinguishes_errors() {
        assert!(context_from_json("{}").is_ok_and(|c| c.is_empty()));
        let c = context_from_json(r#"{"a": {"b": [1, null]}}"#).unwrap();
        assert_eq!(c["a"]["b"][0], 1);

        let err = context_from_json("{\"a\": ").unwrap_err();
        assert!(matches!(err, ContextError::InvalidJson(_)));
        let source = std::error::Error::source(&err).expect("keeps the serde_json cause");
        assert!(source.to_string().contains("line 1"), "{source}");

        for (text, found) in [
            ("null", "null"),
            ("true", "a boolean"),
            ("1.5", "a number"),
            ("\"x\"", "a string"),
            ("[]", "an array"),
        ] {
            match context_from_json(text) {
                Err(ContextError::NotAnObject { found: f }) => assert_eq!(f, found, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert_eq!(
            context_from_json("[]").unwrap_err().to_string(),
            "context must be a JSON object, not an array"
        );
    }

    #[test]
    fn lookup_table() {
        let c = ctx(json!({
            "country": "NZ",
            "app.version": "flat",
            "app": {"version": "nested", "build": null, "deep": {"x": 1}},
            "list": [{"a": 1}],
            "nul": null,
            "obj": {"k.dotted": 5},
            "scalar": 3,
            "shadow.n": null,
            "shadow": {"n": "walked"},
            "": {"": "empty-parts"},
        }));
        let cases: &[(&str, Option<Value>)] = &[
            ("country", Some(json!("NZ"))),
            ("missing", None),
            // Flat key equal to the whole name wins over nesting.
            ("app.version", Some(json!("flat"))),
            ("app.deep.x", Some(json!(1))),
            ("app.deep", Some(json!({"x": 1}))),
            ("app.deep.x.y", None),
            ("app.nope", None),
            // null counts as missing, nested and flat.
            ("app.build", None),
            ("nul", None),
            // A flat null is absent, so the nested walk applies.
            ("shadow.n", Some(json!("walked"))),
            // Never into arrays, not even by index.
            ("list.0", None),
            ("list.0.a", None),
            ("list.a", None),
            // Scalars have no members.
            ("scalar.x", None),
            // Each part is one key: dotted keys inside objects are not re-split.
            ("obj.k.dotted", None),
            (".", Some(json!("empty-parts"))),
        ];
        for (name, want) in cases {
            assert_eq!(lookup(&c, &Attr::new(name)), want.as_ref(), "attr {name:?}");
        }
    }
}
