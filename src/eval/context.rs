//! Contexts and attribute lookup. (placeholder: being written)
use serde_json::Value;
use super::model::Attr;
/// A context: a JSON object.
pub type Context = serde_json::Map<String, Value>;
/// Error for a context that is not a JSON object.
#[derive(Debug, thiserror::Error)]
#[error("context must be a JSON object")]
pub struct ContextError;
/// Parses a context.
pub fn context_from_json(text: &str) -> Result<Context, ContextError> {
    match serde_json::from_str(text) { Ok(Value::Object(m)) => Ok(m), _ => Err(ContextError) }
}
/// Looks up an attribute.
pub fn lookup<'c>(ctx: &'c Context, attr: &Attr) -> Option<&'c Value> {
    ctx.get(&attr.name)
}
