//! Conditions: `{segment}`/`{not_segment}` resolved to segment indices, and
//! attribute tests turned into typed [`Test`]s. The operator's family (from the
//! table in `ruleset::operator`) picks one small builder per operand family:
//! equality, text, regex, number, semver, time. Each checks its operands' types
//! and parses them with the evaluator's own parsers, so authoring and evaluation
//! can never disagree on a format.
//!
//! It must not evaluate a condition (that is `eval::operators`) nor spell an
//! operator name (that is `ruleset::operator`).

use std::collections::HashMap;

use crate::eval::model::{self, Cmp, Condition, Test, TextOp};
use crate::eval::{epoch_millis_to_nanos, parse_rfc3339, parse_semver};
use crate::ruleset::operator::{self, Family, Spec};
use crate::ruleset::proto::{self, scalar};

use super::intern::Interner;
use super::regex_cache::shared_regex;
use super::{CompileError, ErrorKind, Place};

/// Name lookups shared by flag and segment conditions.
pub(super) struct Names<'a> {
    /// Segment name -> index.
    pub(super) segments: &'a HashMap<&'a str, usize>,
    /// One shared `Arc<str>` per distinct string (attribute and variant
    /// names, operands): rulesets repeat them, and every allocation costs.
    pub(super) strings: Interner,
}

impl Names<'_> {
    /// One rule's conditions (a segment rule or a flag rule's `when`).
    pub(super) fn conditions(
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

/// One attribute test's operands being compiled, with what their errors need.
struct Operands<'a> {
    place: &'a Place,
    /// The operator's authoring name, for messages.
    op: &'static str,
    /// What the operator takes.
    takes: operator::Operands,
    values: &'a [proto::Scalar],
    strings: &'a Interner,
}

impl<'a> Operands<'a> {
    /// An error about the operands (field `values`).
    fn error(&self, kind: ErrorKind) -> CompileError {
        CompileError::new(self.place.clone().field("values"), kind)
    }

    /// `got` is not of a type the operator takes.
    fn wrong(&self, got: &proto::Scalar) -> CompileError {
        self.error(ErrorKind::WrongValueType {
            op: self.op,
            expected: self.takes.expected(),
            got: describe(got),
        })
    }

    /// Every operand as a string, or the first that is not one.
    fn texts(&self) -> Result<Vec<&'a str>, CompileError> {
        self.values
            .iter()
            .map(|v| match &v.kind {
                Some(scalar::Kind::StringValue(s)) => Ok(s.as_str()),
                _ => Err(self.wrong(v)),
            })
            .collect()
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
    let spec = Spec::from_wire(t.op).ok_or_else(|| {
        CompileError::new(
            place.clone().field("op"),
            ErrorKind::UnknownOperator(t.op.to_string()),
        )
    })?;
    let ops = Operands {
        place,
        op: spec.name,
        takes: spec.family.operands(),
        values: &t.values,
        strings,
    };
    spec.check_count(t.values.len())
        .map_err(|kind| ops.error(kind))?;
    let mut test = match spec.family {
        Family::Presence { exists: true } => Test::Exists,
        Family::Presence { exists: false } => Test::NotExists,
        Family::Equality { negate } => equality(&ops, negate)?,
        Family::Text { op, negate } => text(&ops, op, negate)?,
        Family::Regex => regex(&ops)?,
        Family::Number(cmp) => number(&ops, cmp)?,
        Family::Semver(cmp) => semver(&ops, cmp)?,
        Family::Time { after } => time(&ops, after)?,
    };
    shrink_operands(&mut test);
    Ok(model::AttrTest {
        attr: strings.attr(&t.attr),
        test,
    })
}

/// `eq in neq not_in`: strings, numbers and booleans, typed as authored.
fn equality(ops: &Operands<'_>, negate: bool) -> Result<Test, CompileError> {
    let values = ops
        .values
        .iter()
        .map(|v| match &v.kind {
            Some(scalar::Kind::BoolValue(b)) => Ok(model::Scalar::Bool(*b)),
            Some(scalar::Kind::StringValue(s)) => Ok(model::Scalar::Str(ops.strings.get(s))),
            _ => scalar_number(v)
                .map(model::Scalar::Num)
                .ok_or_else(|| ops.wrong(v)),
        })
        .collect::<Result<_, _>>()?;
    Ok(Test::Equals { values, negate })
}

/// `contains not_contains starts_with ends_with`: strings.
fn text(ops: &Operands<'_>, op: TextOp, negate: bool) -> Result<Test, CompileError> {
    let values = ops
        .texts()?
        .into_iter()
        .map(|s| ops.strings.get(s))
        .collect();
    Ok(Test::Text { op, values, negate })
}

/// `matches`: patterns that compile within the size limit, shared process-wide.
fn regex(ops: &Operands<'_>) -> Result<Test, CompileError> {
    let regexes = ops
        .texts()?
        .into_iter()
        .map(|pattern| {
            shared_regex(pattern).map_err(|e| {
                // The regex crate's message ends with its one-line reason.
                let reason = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                ops.error(ErrorKind::BadRegex {
                    reason,
                    pattern: pattern.to_owned(),
                })
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Test::Matches(regexes))
}

/// `lt lte gt gte`: finite numbers, compared as f64.
fn number(ops: &Operands<'_>, cmp: Cmp) -> Result<Test, CompileError> {
    let values = ops
        .values
        .iter()
        .map(|v| {
            scalar_number(v)
                .and_then(|n| n.as_f64())
                .filter(|f| f.is_finite())
                .ok_or_else(|| ops.wrong(v))
        })
        .collect::<Result<_, _>>()?;
    Ok(Test::Number { cmp, values })
}

/// `semver_*`: strings that are lenient SemVer.
fn semver(ops: &Operands<'_>, cmp: Cmp) -> Result<Test, CompileError> {
    let values = ops
        .texts()?
        .into_iter()
        .map(|s| parse_semver(s).ok_or_else(|| ops.error(ErrorKind::BadSemver(s.to_owned()))))
        .collect::<Result<_, _>>()?;
    Ok(Test::Semver { cmp, values })
}

/// `before after`: strict RFC 3339 strings or numbers of epoch milliseconds.
fn time(ops: &Operands<'_>, after: bool) -> Result<Test, CompileError> {
    let values = ops
        .values
        .iter()
        .map(|v| match &v.kind {
            Some(scalar::Kind::StringValue(s)) => {
                parse_rfc3339(s).ok_or_else(|| ops.error(ErrorKind::BadTimestamp(s.clone())))
            }
            _ => scalar_number(v)
                .and_then(|n| epoch_millis_to_nanos(&n))
                .ok_or_else(|| ops.wrong(v)),
        })
        .collect::<Result<_, _>>()?;
    Ok(Test::Time { after, values })
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

/// A scalar's number, if it is one (non-finite floats are not numbers).
fn scalar_number(v: &proto::Scalar) -> Option<serde_json::Number> {
    match &v.kind {
        Some(scalar::Kind::IntValue(i)) => Some((*i).into()),
        Some(scalar::Kind::UintValue(u)) => Some((*u).into()),
        Some(scalar::Kind::FloatValue(f)) => serde_json::Number::from_f64(*f),
        _ => None,
    }
}

/// A scalar as error messages name it: `string "x"`, `number 1.5`.
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
