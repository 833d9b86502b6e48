//! YAML authoring. (placeholder: being written)
use crate::eval::model;
use crate::ruleset::compile::CompileError;
use crate::ruleset::proto;
/// An authoring error.
#[derive(Debug, thiserror::Error)]
pub enum AuthoringError {
    /// YAML syntax or shape error.
    #[error("line {line}, column {column}: {message}")]
    Yaml {
        /// Message.
        message: String,
        /// Line (1-based).
        line: u64,
        /// Column (1-based).
        column: u64,
    },
    /// Semantic error.
    #[error("{}{error}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Invalid {
        /// The error.
        error: CompileError,
        /// Line, when known.
        line: Option<u64>,
    },
}
/// Parses YAML into the proto ruleset.
pub fn parse(text: &str, now_ms: u64) -> Result<proto::Ruleset, AuthoringError> {
    let _ = (text, now_ms);
    Err(AuthoringError::Yaml { message: "not yet".into(), line: 0, column: 0 })
}
/// Parses and compiles.
pub fn compile_yaml(text: &str, now_ms: u64) -> Result<(proto::Ruleset, model::Ruleset), AuthoringError> {
    let pb = parse(text, now_ms)?;
    let m = crate::ruleset::compile::compile(&pb).map_err(|error| AuthoringError::Invalid { error, line: None })?;
    Ok((pb, m))
}
