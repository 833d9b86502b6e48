//! Evaluation: which variant a flag serves for a context, and why.
//!
//! Owns the order of decisions of DESIGN.md ("Evaluation semantics"): disabled,
//! then prerequisites, then rules (first match wins) with segments and rollouts,
//! then the default; the OFREP reasons; and the answer's JSON shape. Operators
//! live in `operators`, lookup in `context`, hashing in `rollout`.
//!
//! It must not do I/O, read the clock, allocate per flag (evaluating everything
//! allocates exactly one `Vec`), or panic: a model whose invariants are broken
//! (an index out of range, a cycle) degrades to "condition false" or "no answer
//! for that flag", never to a crash or a stack overflow.

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};

use super::context::{Context, lookup};
use super::model::{
    Condition, Flag, FlagIdx, Rule, Ruleset, SegmentIdx, Serve, Variant, VariantIdx,
};
use super::operators::test_holds;
use super::rollout::bucket;

/// Why a variant was served (OFREP names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// No rules and no prerequisites: the default is all there is.
    Static,
    /// A rule served a variant.
    TargetingMatch,
    /// A rollout served.
    Split,
    /// Default served: no rule matched, a prerequisite was unmet, or a rollout's
    /// `by` attribute was missing or unusable.
    Default,
    /// The flag is disabled and served `off`.
    Disabled,
}

impl Reason {
    /// The OFREP name: `STATIC`, `TARGETING_MATCH`, `SPLIT`, `DEFAULT` or
    /// `DISABLED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "STATIC",
            Self::TargetingMatch => "TARGETING_MATCH",
            Self::Split => "SPLIT",
            Self::Default => "DEFAULT",
            Self::Disabled => "DISABLED",
        }
    }
}

/// Which flags an evaluate-all sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Client-visible flags only (public keys).
    Client,
    /// Every flag (server keys).
    All,
}

impl Audience {
    /// Whether this audience sees `flag`: a server key every flag, a public
    /// key those marked `client: true`. The one visibility rule: the model's
    /// client list, the HTTP routes and the CLI all ask this.
    pub fn sees(self, flag: &Flag) -> bool {
        self == Self::All || flag.client
    }
}

/// One flag's result, borrowing from the ruleset.
#[derive(Debug, Clone, Copy)]
pub struct Evaluation<'r> {
    /// The flag evaluated; answers name it by its key.
    pub flag: &'r Flag,
    /// The variant served.
    pub variant: &'r Variant,
    /// Why it was served.
    pub reason: Reason,
}

impl<'r> Evaluation<'r> {
    /// The flag's key.
    pub fn key(&self) -> &'r str {
        &self.flag.key
    }

    /// The value served, as compact JSON text (`RawValue::get` gives the
    /// text; serialising it with serde_json writes it as is).
    pub fn value(&self) -> &'r serde_json::value::RawValue {
        &self.variant.value
    }
}

/// An evaluation answer, serialized (without building a `serde_json::Value`) as
/// `{"environment": .., "version": .., "flags": {"<key>": {"value": ..,
/// "variant": .., "reason": ..}}}`, flags in evaluation order.
#[derive(Debug)]
pub struct Answer<'r> {
    /// The environment whose ruleset answered (the answer's `environment`).
    pub environment: &'r str,
    /// The version of the ruleset that answered (the answer's `version`; HTTP
    /// answers also carry it as `Ruleset-Version`).
    pub version: u64,
    /// Results, in the order they are written out.
    pub flags: Vec<Evaluation<'r>>,
}

impl<'r> Answer<'r> {
    /// An answer for `flags` evaluated from `rs`.
    ///
    /// ```
    /// use flagbelt::eval::{Answer, Ruleset};
    ///
    /// let rs = Ruleset::new("production".into(), 42, Default::default(), vec![], vec![]);
    /// let json = serde_json::to_string(&Answer::new(&rs, vec![])).unwrap();
    /// assert_eq!(json, r#"{"environment":"production","version":42,"flags":{}}"#);
    /// ```
    pub fn new(rs: &'r Ruleset, flags: Vec<Evaluation<'r>>) -> Self {
        Self {
            environment: &rs.environment,
            version: rs.version,
            flags,
        }
    }
}

impl Serialize for Answer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut answer = serializer.serialize_struct("Answer", 3)?;
        answer.serialize_field("environment", self.environment)?;
        answer.serialize_field("version", &self.version)?;
        answer.serialize_field("flags", &FlagsMap(&self.flags))?;
        answer.end()
    }
}

/// `{"<key>": {...}}` in slice order.
struct FlagsMap<'a, 'r>(&'a [Evaluation<'r>]);

impl Serialize for FlagsMap<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for e in self.0 {
            map.serialize_entry(e.key(), &FlagResult(e))?;
        }
        map.end()
    }
}

/// `{"value": .., "variant": .., "reason": ..}`.
struct FlagResult<'a, 'r>(&'a Evaluation<'r>);

impl Serialize for FlagResult<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut result = serializer.serialize_struct("FlagResult", 3)?;
        result.serialize_field("value", self.0.value())?;
        result.serialize_field("variant", &self.0.variant.name)?;
        result.serialize_field("reason", self.0.reason.as_str())?;
        result.end()
    }
}

/// Evaluates one flag (by index into `rs.flags`) for `ctx`.
///
/// `None` only when `flag` is out of range, or when the model breaks its own
/// invariants (a variant index out of range), which `ruleset::compile` rules out.
pub fn evaluate_flag<'r>(rs: &'r Ruleset, flag: FlagIdx, ctx: &Context) -> Option<Evaluation<'r>> {
    let f = rs.flags.get(flag)?;
    let (variant, reason) = decide(rs, f, ctx, 0)?;
    Some(Evaluation {
        flag: f,
        variant: f.variants.get(variant)?,
        reason,
    })
}

/// Evaluates the flag with this key; `None` if the ruleset has no such flag
/// (or, as for [`evaluate_flag`], if the model is broken).
pub fn evaluate_key<'r>(rs: &'r Ruleset, key: &str, ctx: &Context) -> Option<Evaluation<'r>> {
    evaluate_flag(rs, *rs.flag_index.get(key)?, ctx)
}

/// Evaluates every flag the audience sees, in authoring order: the client-visible
/// flags (`rs.client_flags`) for [`Audience::Client`], all flags for
/// [`Audience::All`].
///
/// Allocates only the returned `Vec`, with exact capacity. Prerequisites are
/// evaluated against the full ruleset whatever the audience.
pub fn evaluate_all<'r>(rs: &'r Ruleset, ctx: &Context, audience: Audience) -> Vec<Evaluation<'r>> {
    match audience {
        Audience::Client => {
            let mut out = Vec::with_capacity(rs.client_flags.len());
            out.extend(
                rs.client_flags
                    .iter()
                    .filter_map(|&i| evaluate_flag(rs, i, ctx)),
            );
            out
        }
        Audience::All => {
            let mut out = Vec::with_capacity(rs.flags.len());
            out.extend((0..rs.flags.len()).filter_map(|i| evaluate_flag(rs, i, ctx)));
            out
        }
    }
}

/// The variant index and reason for `flag`. `depth` counts prerequisite hops; it
/// cannot legitimately exceed the number of flags, so beyond that the chain must
/// be a cycle (which compile rejects) and the prerequisite is unmet.
fn decide(rs: &Ruleset, flag: &Flag, ctx: &Context, depth: usize) -> Option<(VariantIdx, Reason)> {
    if !flag.enabled {
        return Some((flag.off, Reason::Disabled));
    }
    let unmet = flag
        .prerequisites
        .iter()
        .any(|p| !prerequisite_met(rs, p.flag, p.variant, ctx, depth));
    if unmet {
        return Some((flag.default, Reason::Default));
    }
    if let Some(rule) = flag.rules.iter().find(|r| rule_holds(rs, r, ctx)) {
        return Some(match &rule.serve {
            Serve::Variant(v) => (*v, Reason::TargetingMatch),
            Serve::Rollout(rollout) => match bucket(rollout, ctx) {
                Some(v) => (v, Reason::Split),
                None => (flag.default, Reason::Default),
            },
        });
    }
    let reason = if flag.rules.is_empty() && flag.prerequisites.is_empty() {
        Reason::Static
    } else {
        Reason::Default
    };
    Some((flag.default, reason))
}

fn prerequisite_met(
    rs: &Ruleset,
    flag: FlagIdx,
    required: VariantIdx,
    ctx: &Context,
    depth: usize,
) -> bool {
    let depth = depth + 1;
    if depth > rs.flags.len() {
        return false;
    }
    rs.flags
        .get(flag)
        .and_then(|f| decide(rs, f, ctx, depth))
        .is_some_and(|(served, _)| served == required)
}

fn rule_holds(rs: &Ruleset, rule: &Rule, ctx: &Context) -> bool {
    // `None` (a broken segment reference) makes the rule not match.
    all_hold(rs, &rule.conditions, ctx, 0).unwrap_or(false)
}

/// Whether every condition holds (an empty list holds). `None` when one that had
/// to be evaluated refers to a segment that is missing or nested deeper than the
/// number of segments (only a cycle, which compile rejects, could do that).
/// Short-circuits like `Iterator::all`.
fn all_hold(rs: &Ruleset, conditions: &[Condition], ctx: &Context, depth: usize) -> Option<bool> {
    for condition in conditions {
        if !condition_holds(rs, condition, ctx, depth)? {
            return Some(false);
        }
    }
    Some(true)
}

/// `depth` counts segment-in-segment hops. A broken segment reference gives
/// `None`, which poisons the whole rule: both `segment` and `not_segment` are
/// then false, like a condition on a missing attribute.
fn condition_holds(
    rs: &Ruleset,
    condition: &Condition,
    ctx: &Context,
    depth: usize,
) -> Option<bool> {
    match condition {
        Condition::Attr(t) => Some(test_holds(&t.test, lookup(ctx, &t.attr))),
        Condition::Segment { segment, negate } => {
            Some(segment_member(rs, *segment, ctx, depth)? != *negate)
        }
    }
}

/// Membership of a segment: any of its rules (each an AND of conditions) holds.
fn segment_member(rs: &Ruleset, segment: SegmentIdx, ctx: &Context, depth: usize) -> Option<bool> {
    if depth >= rs.segments.len() {
        return None;
    }
    let s = rs.segments.get(segment)?;
    for rule in &s.rules {
        if all_hold(rs, rule, ctx, depth + 1)? {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)] // tests may panic and index
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use regex::Regex;
    use serde_json::{Value, json};

    use super::*;
    use crate::eval::model::{
        Attr, AttrTest, Cmp, Prerequisite, Rollout, Scalar, Segment, Test, TextOp,
    };
    use crate::eval::operators::{parse_rfc3339, parse_semver};

    // ---- tiny model builders -------------------------------------------------

    struct FlagSpec {
        key: &'static str,
        client: bool,
        enabled: bool,
        variants: Vec<(&'static str, Value)>,
        default: VariantIdx,
        off: VariantIdx,
        requires: Vec<Prerequisite>,
        rules: Vec<Rule>,
    }

    /// An enabled, server-only bool flag: variants `on` (0) and `off` (1),
    /// default and off both `off`.
    fn flag(key: &'static str) -> FlagSpec {
        FlagSpec {
            key,
            client: false,
            enabled: true,
            variants: vec![("on", json!(true)), ("off", json!(false))],
            default: 1,
            off: 1,
            requires: vec![],
            rules: vec![],
        }
    }

    impl FlagSpec {
        fn client(mut self) -> Self {
            self.client = true;
            self
        }
        fn disabled(mut self) -> Self {
            self.enabled = false;
            self
        }
        fn variants(mut self, v: Vec<(&'static str, Value)>) -> Self {
            self.variants = v;
            self
        }
        fn default(mut self, v: VariantIdx) -> Self {
            self.default = v;
            self
        }
        fn off(mut self, v: VariantIdx) -> Self {
            self.off = v;
            self
        }
        fn requires(mut self, flag: FlagIdx, variant: VariantIdx) -> Self {
            self.requires.push(Prerequisite { flag, variant });
            self
        }
        fn rule(mut self, conditions: Vec<Condition>, serve: Serve) -> Self {
            self.rules.push(Rule { conditions, serve });
            self
        }
    }

    fn ruleset(segments: Vec<Segment>, specs: Vec<FlagSpec>) -> Ruleset {
        let mut flags = vec![];
        for s in specs {
            flags.push(Flag {
                key: s.key.into(),
                client: s.client,
                enabled: s.enabled,
                variants: s
                    .variants
                    .into_iter()
                    .map(|(name, value)| Variant {
                        name: (*name).into(),
                        value: serde_json::value::to_raw_value(&value).unwrap(),
                    })
                    .collect(),
                default: s.default,
                off: s.off,
                prerequisites: s.requires,
                rules: s.rules,
            });
        }
        Ruleset::new("test".into(), 42, HashMap::new(), segments, flags)
    }

    fn segment(name: &str, rules: Vec<Vec<Condition>>) -> Segment {
        Segment {
            name: name.to_owned(),
            rules,
        }
    }

    fn attr(name: &str, test: Test) -> Condition {
        Condition::Attr(AttrTest {
            attr: Attr::new(name),
            test,
        })
    }

    fn is_in(name: &str, values: &[&str]) -> Condition {
        attr(
            name,
            Test::Equals {
                values: values.iter().map(|v| Scalar::Str((*v).into())).collect(),
                negate: false,
            },
        )
    }

    fn in_segment(segment: SegmentIdx) -> Condition {
        Condition::Segment {
            segment,
            negate: false,
        }
    }

    fn not_in_segment(segment: SegmentIdx) -> Condition {
        Condition::Segment {
            segment,
            negate: true,
        }
    }

    fn split(by: &str, salt: &str, weights: &[(VariantIdx, u64)]) -> Serve {
        let mut total = 0;
        Serve::Rollout(Box::new(Rollout {
            by: Attr::new(by),
            salt_prefix: format!("{salt}:").into_bytes(),
            buckets: weights
                .iter()
                .map(|&(v, w)| {
                    total += w;
                    (v, total)
                })
                .collect(),
        }))
    }

    fn ctx(v: Value) -> Context {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    /// `(variant name, reason)` of the flag at `i`.
    fn eval(rs: &Ruleset, i: FlagIdx, c: &Value) -> (String, Reason) {
        let e = evaluate_flag(rs, i, &ctx(c.clone())).expect("flag exists");
        (e.variant.name.to_string(), e.reason)
    }

    fn want(name: &str, reason: Reason) -> (String, Reason) {
        (name.to_owned(), reason)
    }

    // ---- reasons and rule order ----------------------------------------------

    #[test]
    fn reasons() {
        let rs = ruleset(
            vec![],
            vec![
                flag("static").default(0),
                flag("disabled").disabled().default(1).off(0),
                flag("disabled-with-rules")
                    .disabled()
                    .rule(vec![], Serve::Variant(0)),
                flag("targeted").rule(vec![is_in("country", &["NZ"])], Serve::Variant(0)),
                flag("prereq-only").requires(0, 0),
                flag("everyone").rule(vec![], Serve::Variant(0)),
            ],
        );
        let c = json!({"country": "NZ"});
        let other = json!({"country": "US"});
        assert_eq!(eval(&rs, 0, &c), want("on", Reason::Static));
        assert_eq!(eval(&rs, 1, &c), want("on", Reason::Disabled));
        assert_eq!(eval(&rs, 2, &c), want("off", Reason::Disabled));
        assert_eq!(eval(&rs, 3, &c), want("on", Reason::TargetingMatch));
        assert_eq!(eval(&rs, 3, &other), want("off", Reason::Default));
        assert_eq!(eval(&rs, 3, &json!({})), want("off", Reason::Default));
        // Prerequisites met and no rules: the default, but not STATIC.
        assert_eq!(eval(&rs, 4, &c), want("off", Reason::Default));
        assert_eq!(eval(&rs, 5, &json!({})), want("on", Reason::TargetingMatch));

        for (r, s) in [
            (Reason::Static, "STATIC"),
            (Reason::TargetingMatch, "TARGETING_MATCH"),
            (Reason::Split, "SPLIT"),
            (Reason::Default, "DEFAULT"),
            (Reason::Disabled, "DISABLED"),
        ] {
            assert_eq!(r.as_str(), s);
            assert_eq!(serde_json::to_value(r).unwrap(), json!(s));
        }
    }

    #[test]
    fn first_matching_rule_wins_and_conditions_are_anded() {
        let three = vec![("a", json!("A")), ("b", json!("B")), ("c", json!("C"))];
        let rs = ruleset(
            vec![],
            vec![
                flag("f")
                    .variants(three)
                    .default(2)
                    .rule(
                        vec![is_in("country", &["NZ"]), is_in("plan", &["gold"])],
                        Serve::Variant(0),
                    )
                    .rule(vec![is_in("country", &["NZ", "AU"])], Serve::Variant(1))
                    .rule(vec![], Serve::Variant(0)),
            ],
        );
        let cases = [
            (json!({"country": "NZ", "plan": "gold"}), "a"),
            (json!({"country": "NZ", "plan": "free"}), "b"),
            (json!({"country": "AU", "plan": "gold"}), "b"),
            (json!({"country": "US"}), "a"), // falls through to the catch-all
        ];
        for (c, v) in cases {
            assert_eq!(eval(&rs, 0, &c), want(v, Reason::TargetingMatch), "{c}");
        }
    }

    // ---- prerequisites -------------------------------------------------------

    #[test]
    fn prerequisites() {
        let rs = ruleset(
            vec![],
            vec![
                // 0: serves on for NZ, off otherwise.
                flag("base").rule(vec![is_in("country", &["NZ"])], Serve::Variant(0)),
                // 1: disabled, serves its off variant `on`.
                flag("disabled-on").disabled().off(0),
                // 2: disabled, serves `off`.
                flag("disabled-off").disabled(),
                // 3: requires base=on.
                flag("needs-base-on")
                    .default(1)
                    .requires(0, 0)
                    .rule(vec![], Serve::Variant(0)),
                // 4: requires base=off (a DEFAULT result still counts).
                flag("needs-base-off")
                    .requires(0, 1)
                    .rule(vec![], Serve::Variant(0)),
                // 5: requires a disabled flag's off variant: met whatever the reason.
                flag("needs-disabled-on")
                    .requires(1, 0)
                    .rule(vec![], Serve::Variant(0)),
                // 6: requires disabled flag to serve on: never.
                flag("needs-disabled-flag-on")
                    .requires(2, 0)
                    .rule(vec![], Serve::Variant(0)),
                // 7: chain: requires 3 = on.
                flag("chain").requires(3, 0).rule(vec![], Serve::Variant(0)),
                // 8: all prerequisites must be met.
                flag("both")
                    .requires(0, 0)
                    .requires(1, 0)
                    .rule(vec![], Serve::Variant(0)),
                // 9: disabled beats unmet prerequisites.
                flag("disabled-first").disabled().off(0).requires(0, 0),
                // 10: out-of-range prerequisite (broken model) is unmet.
                flag("dangling")
                    .requires(99, 0)
                    .rule(vec![], Serve::Variant(0)),
            ],
        );
        let nz = json!({"country": "NZ"});
        let us = json!({"country": "US"});
        assert_eq!(eval(&rs, 3, &nz), want("on", Reason::TargetingMatch));
        assert_eq!(eval(&rs, 3, &us), want("off", Reason::Default));
        assert_eq!(eval(&rs, 4, &nz), want("off", Reason::Default));
        assert_eq!(eval(&rs, 4, &us), want("on", Reason::TargetingMatch));
        assert_eq!(eval(&rs, 5, &us), want("on", Reason::TargetingMatch));
        assert_eq!(eval(&rs, 6, &nz), want("off", Reason::Default));
        assert_eq!(eval(&rs, 7, &nz), want("on", Reason::TargetingMatch));
        assert_eq!(eval(&rs, 7, &us), want("off", Reason::Default));
        assert_eq!(eval(&rs, 8, &nz), want("on", Reason::TargetingMatch));
        assert_eq!(eval(&rs, 8, &us), want("off", Reason::Default));
        assert_eq!(eval(&rs, 9, &us), want("on", Reason::Disabled));
        assert_eq!(eval(&rs, 10, &nz), want("off", Reason::Default));
    }

    #[test]
    fn prerequisites_of_client_flags_see_server_flags() {
        let rs = ruleset(
            vec![],
            vec![
                flag("server-only").rule(vec![is_in("country", &["NZ"])], Serve::Variant(0)),
                flag("client")
                    .client()
                    .requires(0, 0)
                    .rule(vec![], Serve::Variant(0)),
            ],
        );
        let all = evaluate_all(&rs, &ctx(json!({"country": "NZ"})), Audience::Client);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].key(), "client");
        assert_eq!(all[0].reason, Reason::TargetingMatch);
    }

    #[test]
    fn prerequisite_cycles_cannot_overflow_the_stack() {
        // Compile rejects cycles; a hand-built one must still terminate.
        let rs = ruleset(
            vec![],
            vec![
                flag("a").requires(1, 0).rule(vec![], Serve::Variant(0)),
                flag("b").requires(0, 0).rule(vec![], Serve::Variant(0)),
                flag("self").requires(2, 0).rule(vec![], Serve::Variant(0)),
            ],
        );
        assert_eq!(eval(&rs, 0, &json!({})), want("off", Reason::Default));
        assert_eq!(eval(&rs, 2, &json!({})), want("off", Reason::Default));
        // A long legitimate chain is fine: each flag requires the next one.
        let n = 300;
        let specs = (0..n)
            .map(|i| {
                let f = flag("chain").rule(vec![], Serve::Variant(0));
                if i + 1 < n { f.requires(i + 1, 0) } else { f }
            })
            .collect();
        let chain = ruleset(vec![], specs);
        assert_eq!(
            eval(&chain, 0, &json!({})),
            want("on", Reason::TargetingMatch)
        );
    }

    // ---- segments ------------------------------------------------------------

    #[test]
    fn segments() {
        let ends_with = |suffix: &str| {
            attr(
                "email",
                Test::Text {
                    op: TextOp::EndsWith,
                    values: vec![suffix.into()],
                    negate: false,
                },
            )
        };
        let segments = vec![
            // 0 staff: example.com, or (contractor AND NZ)
            segment(
                "staff",
                vec![
                    vec![ends_with("@example.com")],
                    vec![is_in("role", &["contractor"]), is_in("country", &["NZ"])],
                ],
            ),
            // 1 staff-but-not-nz: uses segment 0
            segment(
                "staff-not-nz",
                vec![vec![
                    in_segment(0),
                    Condition::Attr(AttrTest {
                        attr: Attr::new("country"),
                        test: Test::Equals {
                            values: vec![Scalar::Str("NZ".into())],
                            negate: true,
                        },
                    }),
                ]],
            ),
            // 2 empty: no rules, nobody is a member
            segment("nobody", vec![]),
            // 3 everyone: one empty rule
            segment("everyone", vec![vec![]]),
            // 4, 5: a cycle (compile rejects it)
            segment("loop-a", vec![vec![in_segment(5)]]),
            segment("loop-b", vec![vec![in_segment(4)]]),
        ];
        let rs = ruleset(
            segments,
            vec![
                flag("staff").rule(vec![in_segment(0)], Serve::Variant(0)),
                flag("not-staff").rule(vec![not_in_segment(0)], Serve::Variant(0)),
                flag("staff-not-nz").rule(vec![in_segment(1)], Serve::Variant(0)),
                flag("nobody").rule(vec![in_segment(2)], Serve::Variant(0)),
                flag("not-nobody").rule(vec![not_in_segment(2)], Serve::Variant(0)),
                flag("everyone").rule(vec![in_segment(3)], Serve::Variant(0)),
                flag("loop").rule(vec![in_segment(4)], Serve::Variant(0)),
                flag("not-loop").rule(vec![not_in_segment(4)], Serve::Variant(0)),
                flag("dangling").rule(vec![not_in_segment(77)], Serve::Variant(0)),
            ],
        );
        let cases: &[(Value, [bool; 9])] = &[
            (
                json!({"email": "a@example.com", "country": "NZ"}),
                [true, false, false, false, true, true, false, false, false],
            ),
            (
                json!({"email": "a@example.com", "country": "US"}),
                [true, false, true, false, true, true, false, false, false],
            ),
            (
                json!({"role": "contractor", "country": "NZ"}),
                [true, false, false, false, true, true, false, false, false],
            ),
            (
                json!({"role": "contractor", "country": "AU"}),
                [false, true, false, false, true, true, false, false, false],
            ),
            (
                json!({}),
                [false, true, false, false, true, true, false, false, false],
            ),
        ];
        for (c, expected) in cases {
            for (i, &on) in expected.iter().enumerate() {
                let got = eval(&rs, i, c).0 == "on";
                assert_eq!(got, on, "flag {} on {c}", rs.flags[i].key);
            }
        }
    }

    // ---- rollouts ------------------------------------------------------------

    #[test]
    fn rollout_serves_split_or_default() {
        let rs = ruleset(
            vec![],
            vec![
                flag("all-on").rule(vec![], split("targetingKey", "s", &[(0, 1), (1, 0)])),
                flag("all-off")
                    .default(0)
                    .rule(vec![], split("targetingKey", "s", &[(0, 0), (1, 1)])),
                flag("by-user-id")
                    .rule(
                        vec![is_in("country", &["NZ"])],
                        split("user.id", "s", &[(0, 1)]),
                    )
                    .rule(vec![], Serve::Variant(0)),
            ],
        );
        assert_eq!(
            eval(&rs, 0, &json!({"targetingKey": "u"})),
            want("on", Reason::Split)
        );
        assert_eq!(
            eval(&rs, 0, &json!({"targetingKey": 17})),
            want("on", Reason::Split)
        );
        assert_eq!(
            eval(&rs, 1, &json!({"targetingKey": "u"})),
            want("off", Reason::Split)
        );
        // `by` missing or unusable: default with DEFAULT.
        assert_eq!(eval(&rs, 0, &json!({})), want("off", Reason::Default));
        assert_eq!(
            eval(&rs, 0, &json!({"targetingKey": 1.5})),
            want("off", Reason::Default)
        );
        assert_eq!(
            eval(&rs, 1, &json!({"targetingKey": null})),
            want("on", Reason::Default)
        );
        // The matching rule's rollout decides; later rules are not consulted.
        assert_eq!(
            eval(&rs, 2, &json!({"country": "NZ"})),
            want("off", Reason::Default)
        );
        assert_eq!(
            eval(&rs, 2, &json!({"country": "NZ", "user": {"id": "x"}})),
            want("on", Reason::Split)
        );
        assert_eq!(eval(&rs, 2, &json!({})), want("on", Reason::TargetingMatch));
    }

    #[test]
    fn rollout_split_ratio_through_evaluate() {
        let rs = ruleset(
            vec![],
            vec![flag("nc").rule(vec![], split("targetingKey", "nc-1", &[(0, 25), (1, 75)]))],
        );
        let mut on = 0;
        for i in 0..10_000 {
            let c = ctx(json!({"targetingKey": format!("k-{i}")}));
            let e = evaluate_flag(&rs, 0, &c).unwrap();
            assert_eq!(e.reason, Reason::Split);
            if &*e.variant.name == "on" {
                on += 1;
            }
        }
        assert!((2300..=2700).contains(&on), "{on} of 10000 on");
    }

    // ---- API surface ---------------------------------------------------------

    #[test]
    fn evaluate_all_audiences_and_order() {
        let rs = ruleset(
            vec![],
            vec![
                flag("z-client").client(),
                flag("server"),
                flag("a-client").client().default(0),
            ],
        );
        let c = ctx(json!({}));
        let client: Vec<_> = evaluate_all(&rs, &c, Audience::Client)
            .iter()
            .map(Evaluation::key)
            .collect();
        assert_eq!(client, ["z-client", "a-client"]);
        let all = evaluate_all(&rs, &c, Audience::All);
        assert_eq!(all.capacity(), 3);
        let keys: Vec<_> = all.iter().map(Evaluation::key).collect();
        assert_eq!(keys, ["z-client", "server", "a-client"]);

        assert!(evaluate_flag(&rs, 3, &c).is_none());
        assert_eq!(
            evaluate_key(&rs, "a-client", &c).unwrap().value().get(),
            "true"
        );
        assert!(evaluate_key(&rs, "nope", &c).is_none());
    }

    #[test]
    fn answer_serializes_in_evaluation_order() {
        let rs = ruleset(
            vec![],
            vec![
                flag("zeta").client().rule(vec![], Serve::Variant(0)),
                flag("limits")
                    .client()
                    .variants(vec![
                        ("small", json!({"max_items": 10})),
                        ("big", json!([1, 2.5])),
                    ])
                    .default(0),
                flag("alpha")
                    .client()
                    .variants(vec![("n", json!(3)), ("f", json!(0.5))])
                    .disabled()
                    .off(0),
            ],
        );
        let c = ctx(json!({}));
        let answer = Answer::new(&rs, evaluate_all(&rs, &c, Audience::Client));
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"environment":"test","version":42,"flags":{"#,
                r#""zeta":{"value":true,"variant":"on","reason":"TARGETING_MATCH"},"#,
                r#""limits":{"value":{"max_items":10},"variant":"small","reason":"STATIC"},"#,
                r#""alpha":{"value":3,"variant":"n","reason":"DISABLED"}}}"#
            )
        );
        let empty = Answer::new(&rs, vec![]);
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"environment":"test","version":42,"flags":{}}"#
        );
    }

    #[test]
    fn broken_variant_indices_do_not_panic() {
        let rs = ruleset(
            vec![],
            vec![
                flag("bad-default").default(9),
                flag("bad-rule").rule(vec![], Serve::Variant(5)),
                flag("bad-off").disabled().off(7),
                flag("fine").client(),
            ],
        );
        let c = ctx(json!({}));
        assert!(evaluate_flag(&rs, 0, &c).is_none());
        assert!(evaluate_flag(&rs, 1, &c).is_none());
        assert!(evaluate_flag(&rs, 2, &c).is_none());
        let all = evaluate_all(&rs, &c, Audience::All);
        assert_eq!(
            all.iter().map(Evaluation::key).collect::<Vec<_>>(),
            ["fine"]
        );
    }

    // ---- properties ----------------------------------------------------------

    /// One flag per operator family, plus segments, prerequisites and rollouts, all
    /// reading a small set of attribute names that the generated contexts use too.
    fn kitchen_sink() -> Ruleset {
        let names = ["a", "b", "a.b", "targetingKey", "x.y.z"];
        let mut tests: Vec<Box<dyn Fn() -> Test>> = vec![
            Box::new(|| Test::Exists),
            Box::new(|| Test::NotExists),
            Box::new(|| Test::Equals {
                values: vec![
                    Scalar::Str("a".into()),
                    Scalar::Num(serde_json::Number::from(1)),
                    Scalar::Num(serde_json::Number::from_f64(2.5).unwrap()),
                    Scalar::Bool(true),
                ],
                negate: false,
            }),
            Box::new(|| Test::Equals {
                values: vec![
                    Scalar::Str("b".into()),
                    Scalar::Num(serde_json::Number::from(-3)),
                ],
                negate: true,
            }),
            Box::new(|| Test::Matches(vec![std::sync::Arc::new(Regex::new("^a.*z$").unwrap())])),
            Box::new(|| Test::Number {
                cmp: Cmp::Gte,
                values: vec![0.0, -1e300],
            }),
            Box::new(|| Test::Semver {
                cmp: Cmp::Lt,
                values: vec![parse_semver("1.2.3-rc.1").unwrap()],
            }),
            Box::new(|| Test::Time {
                after: true,
                values: vec![parse_rfc3339("2026-01-01T00:00:00Z").unwrap()],
            }),
        ];
        for (op, negate) in [
            (TextOp::Contains, false),
            (TextOp::Contains, true),
            (TextOp::StartsWith, false),
            (TextOp::EndsWith, false),
        ] {
            tests.push(Box::new(move || Test::Text {
                op,
                values: vec!["a".into(), "".into()],
                negate,
            }));
        }
        let mut specs = vec![];
        let mut segment_rules = vec![];
        for (i, make) in tests.iter().enumerate() {
            let name = names[i % names.len()];
            segment_rules.push(vec![attr(name, make())]);
            specs.push(
                flag("t")
                    .client()
                    .rule(vec![attr(name, make())], Serve::Variant(0))
                    .rule(
                        vec![attr(names[(i + 1) % names.len()], make())],
                        split(names[(i + 2) % names.len()], "salt", &[(0, 3), (1, 1)]),
                    ),
            );
        }
        let n = specs.len();
        specs.push(flag("seg").rule(vec![in_segment(1)], Serve::Variant(0)));
        specs.push(flag("not-seg").rule(
            vec![not_in_segment(0)],
            split("targetingKey", "x", &[(1, 1)]),
        ));
        specs.push(flag("pre").requires(n, 0).requires(0, 1));
        specs.push(
            flag("pre2")
                .client()
                .requires(n + 2, 1)
                .rule(vec![], Serve::Variant(0)),
        );
        let segments = vec![
            segment("ops", segment_rules),
            segment(
                "nested",
                vec![vec![in_segment(0), not_in_segment(0)], vec![in_segment(0)]],
            ),
        ];
        ruleset(segments, specs)
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            prop_oneof![
                "[a-z.]{0,6}",
                "\\PC{0,12}",
                Just("2026-01-01T00:00:00Z".to_owned()),
                Just("2030-02-28t12:00:00.5+13:00".to_owned()),
                Just("v1.2.3-rc.2+b".to_owned()),
                Just("1.2".to_owned()),
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z.]{0,3}|targetingKey", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn context_strategy() -> impl Strategy<Value = Context> {
        proptest::collection::btree_map(
            prop_oneof![
                Just("a".to_owned()),
                Just("b".to_owned()),
                Just("a.b".to_owned()),
                Just("x".to_owned()),
                Just("targetingKey".to_owned()),
                "[a-z.]{0,4}",
            ],
            json_value(),
            0..6,
        )
        .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #[test]
        fn evaluate_all_never_panics(c in context_strategy()) {
            let rs = kitchen_sink();
            let all = evaluate_all(&rs, &c, Audience::All);
            prop_assert_eq!(all.len(), rs.flags.len());
            let client = evaluate_all(&rs, &c, Audience::Client);
            prop_assert_eq!(client.len(), rs.client_flags.len());
            // Deterministic, and serializable.
            let again = evaluate_all(&rs, &c, Audience::All);
            for (x, y) in all.iter().zip(&again) {
                prop_assert_eq!(&x.variant.name, &y.variant.name);
                prop_assert_eq!(x.reason, y.reason);
            }
            prop_assert!(serde_json::to_string(&Answer::new(&rs, all)).is_ok());
        }

        #[test]
        fn rollout_is_stable_and_always_serves(key in prop_oneof![
                "\\PC{0,20}".prop_map(Value::String),
                any::<i64>().prop_map(|n| json!(n)),
                any::<u64>().prop_map(|n| json!(n)),
            ],
            weights in proptest::collection::vec(0u64..=100, 1..6),
            bump in 1u64..=100) {
            let mut weights = weights;
            if let Some(w) = weights.first_mut() { *w += bump; } // T >= 1
            let buckets: Vec<(VariantIdx, u64)> = weights.iter().copied().enumerate().collect();
            let variants: Vec<(&'static str, Value)> =
                (0..weights.len()).map(|i| ("v", json!(i))).collect();
            let rs = ruleset(vec![], vec![
                flag("r").variants(variants).default(0).rule(vec![], split("targetingKey", "p", &buckets)),
            ]);
            let c = ctx(json!({"targetingKey": key}));
            let first = evaluate_flag(&rs, 0, &c).unwrap();
            prop_assert_eq!(first.reason, Reason::Split);
            let served: usize = first.value().get().parse().unwrap();
            prop_assert!(weights[served] > 0);
            for _ in 0..3 {
                let again = evaluate_flag(&rs, 0, &c).unwrap();
                prop_assert_eq!(again.value().get(), first.value().get());
            }
        }
    }
}
