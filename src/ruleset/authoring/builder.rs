//! The builder: the authoring document (`shapes`) -> the proto ruleset, with the
//! YAML line of every flag, segment, key, rule, condition and field recorded in
//! [`Lines`] as it goes. It reads operator names and what they take from
//! `ruleset::operator`, and reports here what it can point at precisely
//! (operand counts and types, key kinds, missing `default`/`serve`, the
//! environment name, weights); everything else is left to `compile`.
//!
//! It must not re-check what `compile` checks (unknown variants, cycles,
//! regexes, ...): stored rulesets skip this module, so `compile` stays the gate.

use serde_saphyr::{Location, Spanned};

use crate::ruleset::compile::{CompileError, ErrorKind, Place};
use crate::ruleset::operator::{Operands, Spec};
use crate::ruleset::proto;

use super::lines::{Lines, known};
use super::scalars::{text_of, to_json, typed, whole_number};
use super::shapes::{
    ConditionDoc, Doc, FlagDoc, KeyDoc, Node, OrderedMap, PrerequisiteDoc, RolloutDoc, RuleDoc,
    SegmentRules, ServeDoc, check_unique,
};
use super::{AuthoringError, yaml_at};

/// Builds one proto ruleset from one document.
pub(super) struct Builder<'a> {
    /// The YAML text, for the source text of scalars.
    src: &'a str,
    lines: Lines,
}

/// A semantic error found here, at the line of `loc`.
fn invalid(place: Place, kind: ErrorKind, loc: &Location) -> AuthoringError {
    AuthoringError::Invalid {
        error: CompileError::new(place, kind),
        line: known(loc),
    }
}

/// A construct the format does not allow, at the line of `loc`.
fn shape(place: Place, message: impl Into<String>, loc: &Location) -> AuthoringError {
    AuthoringError::Shape {
        place: Box::new(place),
        message: message.into(),
        line: loc.line(),
    }
}

impl<'a> Builder<'a> {
    /// A builder for the document read from `src`.
    pub(super) fn new(src: &'a str) -> Self {
        Self {
            src,
            lines: Lines::default(),
        }
    }

    /// The proto ruleset, and the lines of its places for compile errors.
    /// `now_ms` is the version when the document gives none.
    pub(super) fn build(
        mut self,
        doc: Doc,
        now_ms: u64,
    ) -> Result<(proto::Ruleset, Lines), AuthoringError> {
        let pb = self.ruleset(doc, now_ms)?;
        Ok((pb, self.lines))
    }

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
        let (values, vloc) = match values {
            Some(v) => (v.value, v.referenced),
            None => (Vec::new(), *at),
        };
        if let Err(kind) = spec.check_count(values.len()) {
            return Err(invalid(place.clone().field("values"), kind, &vloc));
        }
        let values = values
            .iter()
            .map(|v| self.operand(place, spec, v))
            .collect::<Result<_, AuthoringError>>()?;
        Ok(proto::AttributeTest {
            attr: attr.value,
            op: spec.op as i32,
            values,
        })
    }

    /// One of `values`, read as the operator takes it: a string (a bare scalar
    /// gives its source text) or a scalar typed as authored.
    fn operand(
        &self,
        place: &Place,
        spec: Spec,
        v: &Spanned<Node>,
    ) -> Result<proto::Scalar, AuthoringError> {
        use proto::scalar::Kind as S;
        let operands = spec.family.operands();
        let wrong = || {
            invalid(
                place.clone().field("values"),
                ErrorKind::WrongValueType {
                    op: spec.name,
                    expected: operands.expected(),
                    got: v.value.describe(),
                },
                &v.referenced,
            )
        };
        let kind = match operands {
            Operands::Text => S::StringValue(text_of(self.src, v).ok_or_else(wrong)?),
            // `None` has no values to read (the caller checked).
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

        let out_variants = self.variants(&place, variants)?;

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

        let prerequisites = self.prerequisites(&place, requires);

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

    /// A flag's variants in the order written, each value as compact JSON.
    fn variants(
        &mut self,
        place: &Place,
        variants: Option<Spanned<OrderedMap<Node>>>,
    ) -> Result<Vec<proto::Variant>, AuthoringError> {
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
        Ok(out_variants)
    }

    /// A flag's `requires`, as written (`compile` resolves the names).
    fn prerequisites(
        &mut self,
        place: &Place,
        requires: Option<Spanned<Vec<Spanned<PrerequisiteDoc>>>>,
    ) -> Vec<proto::Prerequisite> {
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
        prerequisites
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
