//! Evaluation. (placeholder: being written)
use super::context::Context;
use super::model::{Flag, FlagIdx, Ruleset, Variant};
/// Why a variant was served (OFREP names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// No rules and no prerequisites.
    Static,
    /// A rule served a variant.
    TargetingMatch,
    /// A rollout served.
    Split,
    /// Default served.
    Default,
    /// Flag disabled.
    Disabled,
}
/// Which flags an evaluate-all sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Client-visible flags only (public keys).
    Client,
    /// Every flag (server keys).
    All,
}
/// One flag's result.
#[derive(Debug, Clone, Copy)]
pub struct Evaluation<'r> {
    /// The flag.
    pub flag: &'r Flag,
    /// The variant served.
    pub variant: &'r Variant,
    /// Why.
    pub reason: Reason,
}
impl<'r> Evaluation<'r> {
    /// Flag key.
    pub fn key(&self) -> &'r str { &self.flag.key }
    /// Value served.
    pub fn value(&self) -> &'r serde_json::Value { &self.variant.value }
}
/// The answer shape.
#[derive(Debug)]
pub struct Answer<'r> {
    /// Environment.
    pub environment: &'r str,
    /// Version.
    pub version: u64,
    /// Results.
    pub flags: Vec<Evaluation<'r>>,
}
/// Evaluates one flag.
pub fn evaluate_flag<'r>(rs: &'r Ruleset, flag: FlagIdx, ctx: &Context) -> Option<Evaluation<'r>> {
    let _ = (rs, flag, ctx);
    None
}
/// Evaluates all flags.
pub fn evaluate_all<'r>(rs: &'r Ruleset, ctx: &Context, audience: Audience) -> Vec<Evaluation<'r>> {
    let _ = (rs, ctx, audience);
    Vec::new()
}
