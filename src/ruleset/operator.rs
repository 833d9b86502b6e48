//! The condition operators: the one table of their authoring names, the operands
//! each takes and the test family it compiles to (DESIGN.md, "Evaluation
//! semantics", operators and their types).
//!
//! Authoring reads a name with [`Spec::by_name`], compile turns an operator into
//! its test with [`Spec::of`], and the proto's readable JSON writes the name back;
//! nothing else in the crate spells an operator name (tests aside). The wire
//! numbers are the proto's [`Operator`] enum, whose variant names are these
//! names in upper case (a unit test pins that they agree).
//!
//! It must not read or check operand values (that is `compile` and `authoring`),
//! nor evaluate anything (that is `eval::operators`).

use crate::eval::model::{Cmp, TextOp};
use crate::ruleset::compile::ErrorKind;
use crate::ruleset::proto::Operator;

/// The test an operator compiles to, with what distinguishes it within its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `eq in` and the negated `neq not_in`: typed JSON equality.
    Equality {
        /// True for `neq`/`not_in`.
        negate: bool,
    },
    /// `contains starts_with ends_with` and the negated `not_contains`.
    Text {
        /// Which string test.
        op: TextOp,
        /// True for `not_contains`.
        negate: bool,
    },
    /// `matches`: an unanchored regex search.
    Regex,
    /// `lt lte gt gte`: numbers compared as f64.
    Number(Cmp),
    /// `semver_eq semver_lt semver_lte semver_gt semver_gte`: SemVer precedence.
    Semver(Cmp),
    /// `before after`: instants compared exactly.
    Time {
        /// True for `after`.
        after: bool,
    },
    /// `exists not_exists`: whether the attribute is present.
    Presence {
        /// True for `exists`.
        exists: bool,
    },
}

/// What an operator's `values` must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operands {
    /// No values at all.
    None,
    /// At least one string. In YAML a bare scalar where a string is expected
    /// gives its source text (`1.50` stays `"1.50"`).
    Text,
    /// At least one scalar, typed as authored (`42` a number, `"42"` a string);
    /// the text names the accepted types in error messages.
    Typed(&'static str),
}

impl Family {
    /// What this family's operators take as `values`.
    pub fn operands(self) -> Operands {
        match self {
            Self::Presence { .. } => Operands::None,
            Self::Text { .. } | Self::Regex | Self::Semver(_) => Operands::Text,
            Self::Equality { .. } => Operands::Typed("string, number or boolean"),
            Self::Number(_) => Operands::Typed("number"),
            Self::Time { .. } => Operands::Typed("timestamp (RFC 3339 string or epoch ms)"),
        }
    }
}

impl Operands {
    /// What the values must be, as error messages say it ("needs {expected}
    /// values"): `no` for none, `string` for text.
    pub fn expected(self) -> &'static str {
        match self {
            Self::None => "no",
            Self::Text => "string",
            Self::Typed(types) => types,
        }
    }
}

/// One operator: its authoring name and the test it compiles to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The operator's number in the proto ([`Operator`]): what stored
    /// rulesets hold.
    pub op: Operator,
    /// The authoring name (`semver_gte`).
    pub name: &'static str,
    /// The test it compiles to.
    pub family: Family,
}

impl Spec {
    /// The table: every operator's name and family. `None` for
    /// `Operator::Unspecified`, which is not an operator but a missing one.
    ///
    /// An exhaustive `match`, so an operator the proto adds cannot be missed.
    pub fn of(op: Operator) -> Option<Self> {
        use Family as F;
        use Operator as O;
        let (name, family) = match op {
            O::Unspecified => return None,
            O::Eq => ("eq", F::Equality { negate: false }),
            O::Neq => ("neq", F::Equality { negate: true }),
            O::In => ("in", F::Equality { negate: false }),
            O::NotIn => ("not_in", F::Equality { negate: true }),
            O::Contains => ("contains", text(TextOp::Contains, false)),
            O::NotContains => ("not_contains", text(TextOp::Contains, true)),
            O::StartsWith => ("starts_with", text(TextOp::StartsWith, false)),
            O::EndsWith => ("ends_with", text(TextOp::EndsWith, false)),
            O::Matches => ("matches", F::Regex),
            O::Lt => ("lt", F::Number(Cmp::Lt)),
            O::Lte => ("lte", F::Number(Cmp::Lte)),
            O::Gt => ("gt", F::Number(Cmp::Gt)),
            O::Gte => ("gte", F::Number(Cmp::Gte)),
            O::SemverEq => ("semver_eq", F::Semver(Cmp::Eq)),
            O::SemverLt => ("semver_lt", F::Semver(Cmp::Lt)),
            O::SemverLte => ("semver_lte", F::Semver(Cmp::Lte)),
            O::SemverGt => ("semver_gt", F::Semver(Cmp::Gt)),
            O::SemverGte => ("semver_gte", F::Semver(Cmp::Gte)),
            O::Before => ("before", F::Time { after: false }),
            O::After => ("after", F::Time { after: true }),
            O::Exists => ("exists", F::Presence { exists: true }),
            O::NotExists => ("not_exists", F::Presence { exists: false }),
        };
        Some(Self { op, name, family })
    }

    /// Whether `count` values suit this operator: none for `exists` and
    /// `not_exists`, at least one for every other (the error names the operator).
    pub fn check_count(self, count: usize) -> Result<(), ErrorKind> {
        match self.family.operands() {
            Operands::None if count > 0 => Err(ErrorKind::UnexpectedValues(self.name)),
            Operands::Text | Operands::Typed(_) if count == 0 => {
                Err(ErrorKind::EmptyValues(self.name))
            }
            _ => Ok(()),
        }
    }

    /// The operator whose wire number is `n`, if there is one (`0`, unspecified,
    /// is none).
    pub fn from_wire(n: i32) -> Option<Self> {
        Operator::try_from(n).ok().and_then(Self::of)
    }

    /// Every operator, in wire-number order (the order the docs and the
    /// "valid: ..." list of an unknown-operator error use).
    pub fn all() -> impl Iterator<Item = Self> + Clone {
        // The wire numbers run from 1 without gaps (a unit test checks it), so
        // this walks every operator.
        (1..).map_while(Self::from_wire)
    }

    /// The operator whose authoring name is `name` (exactly: names are lower case).
    pub fn by_name(name: &str) -> Option<Self> {
        Self::all().find(|spec| spec.name == name)
    }
}

fn text(op: TextOp, negate: bool) -> Family {
    Family::Text { op, negate }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_number_is_in_the_table_and_found_by_name() {
        let mut found = 0;
        for n in 0..1000 {
            let Ok(op) = Operator::try_from(n) else {
                continue;
            };
            let Some(spec) = Spec::of(op) else {
                assert_eq!(op, Operator::Unspecified);
                continue;
            };
            found += 1;
            assert_eq!(Spec::by_name(spec.name), Some(spec), "{n} is reachable");
            assert_eq!(Spec::from_wire(n), Some(spec));
            // The proto's names are the authoring names in upper case.
            assert_eq!(
                op.as_str_name(),
                format!("OPERATOR_{}", spec.name.to_ascii_uppercase())
            );
        }
        assert_eq!(found, 22);
        assert_eq!(Spec::all().count(), 22);
        assert_eq!(Spec::by_name("EQ"), None);
        assert_eq!(Spec::by_name("unspecified"), None);
        assert_eq!(Spec::from_wire(0), None);
    }

    #[test]
    fn families_say_what_values_are() {
        let operands = |name| Spec::by_name(name).map(|s| s.family.operands());
        assert_eq!(operands("exists"), Some(Operands::None));
        assert_eq!(operands("not_contains"), Some(Operands::Text));
        assert_eq!(operands("matches"), Some(Operands::Text));
        assert_eq!(operands("semver_lt"), Some(Operands::Text));
        assert_eq!(operands("lt"), Some(Operands::Typed("number")));
        assert!(matches!(operands("not_in"), Some(Operands::Typed(_))));
        assert!(matches!(operands("after"), Some(Operands::Typed(_))));
    }

    #[test]
    fn value_counts() {
        let spec = |name| Spec::by_name(name).unwrap();
        assert_eq!(spec("exists").check_count(0), Ok(()));
        assert_eq!(
            spec("not_exists").check_count(1),
            Err(ErrorKind::UnexpectedValues("not_exists"))
        );
        assert_eq!(spec("in").check_count(0), Err(ErrorKind::EmptyValues("in")));
        assert_eq!(spec("matches").check_count(2), Ok(()));
    }
}
