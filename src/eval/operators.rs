//! Operators: how one condition's test judges one attribute value.
//!
//! Owns the typing rules of DESIGN.md ("Evaluation semantics", operators and
//! list attributes), the lenient SemVer reader, the strict RFC 3339 reader and the
//! epoch-milliseconds conversion. `ruleset::compile` uses the same parsers for
//! operands, so authoring and evaluation can never disagree on a format.
//!
//! It must not look attributes up (that is `context`), know about rules, segments
//! or flags (that is `evaluate`), read the clock, or panic on any input.

use std::cmp::Ordering;

use semver::{BuildMetadata, Prerelease, Version};
use serde_json::{Number, Value};

use super::model::{Cmp, Scalar, Test, TextOp};

/// Reads a version leniently: SemVer 2.0 plus an optional leading `v` and
/// missing minor/patch numbers (which are 0).
///
/// `2` is `2.0.0`, `v2.3` is `2.3.0`, `2.3-rc.1` is `2.3.0-rc.1`, and
/// `1.0.0-beta+exp.sha.5114f85` keeps its prerelease and build metadata as SemVer
/// defines them. Everything else is rejected: whitespace anywhere, an uppercase
/// `V`, leading zeros in a number (`01.2.3`) or in a numeric prerelease
/// identifier, empty parts (`1.`, `1.0.0-`, `1.0.0+`), more than three numbers,
/// numbers that do not fit `u64`, and the empty string.
///
/// ```
/// use flagbelt::eval::parse_semver;
///
/// assert_eq!(parse_semver("v2").unwrap(), semver::Version::new(2, 0, 0));
/// assert_eq!(parse_semver("2.3-rc.1").unwrap().to_string(), "2.3.0-rc.1");
/// assert!(parse_semver(" 1.2.3").is_none());
/// ```
pub fn parse_semver(s: &str) -> Option<Version> {
    let s = s.strip_prefix('v').unwrap_or(s);
    let core_end = s.find(['-', '+']).unwrap_or(s.len());
    let (core, suffix) = s.split_at(core_end);

    // Missing minor/patch stay 0; a fourth number has no slot and is rejected.
    let mut numbers = [0u64; 3];
    for (i, part) in core.split('.').enumerate() {
        *numbers.get_mut(i)? = parse_numeric_identifier(part)?;
    }
    let [major, minor, patch] = numbers;

    let (pre, build) = match suffix.strip_prefix('-') {
        Some(rest) => match rest.split_once('+') {
            Some((pre, build)) => (Some(pre), Some(build)),
            None => (Some(rest), None),
        },
        None => (None, suffix.strip_prefix('+')),
    };
    // `Prerelease::new("")` is the empty prerelease; a written `-` needs content.
    let pre = match pre {
        Some("") => return None,
        Some(p) => Prerelease::new(p).ok()?,
        None => Prerelease::EMPTY,
    };
    let build = match build {
        Some("") => return None,
        Some(b) => BuildMetadata::new(b).ok()?,
        None => BuildMetadata::EMPTY,
    };
    Some(Version {
        major,
        minor,
        patch,
        pre,
        build,
    })
}

/// A SemVer numeric identifier: ASCII digits, no leading zero, fits `u64`.
fn parse_numeric_identifier(s: &str) -> Option<u64> {
    let bytes = s.as_bytes();
    match bytes {
        [] => None,
        [b'0', _, ..] => None,
        _ if bytes.iter().all(u8::is_ascii_digit) => s.parse().ok(),
        _ => None,
    }
}

/// Reads a strict RFC 3339 timestamp as nanoseconds since the Unix epoch.
///
/// Accepted: `YYYY-MM-DD(T|t)HH:MM:SS(.f{1,9})?(Z|z|±HH:MM)` with a real
/// calendar day (leap years included), hours 00–23, minutes and seconds 00–59 (no
/// leap second `60`), and offsets up to ±23:59 (`-00:00` is UTC). The result is
/// exact. Rejected: a space or anything else instead of `T`, lowercase or missing
/// parts, second 60, days such as Feb 30, and **more than 9 fraction digits**
/// (finer than a nanosecond would need rounding, and comparisons are exact).
///
/// ```
/// use flagbelt::eval::parse_rfc3339;
///
/// assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
/// assert_eq!(parse_rfc3339("1970-01-01t01:00:00+01:00"), Some(0));
/// assert_eq!(parse_rfc3339("1970-01-01 00:00:00Z"), None);
/// ```
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let (date, after_date) = s.as_bytes().split_at_checked(10)?;
    let (time, rest) = after_date.split_at_checked(9)?;
    let [y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1] = *date else {
        return None;
    };
    let [b'T' | b't', h0, h1, b':', mi0, mi1, b':', s0, s1] = *time else {
        return None;
    };
    let year = digits(&[y0, y1, y2, y3])?;
    let month = digits(&[mo0, mo1])?;
    let day = digits(&[d0, d1])?;
    let hour = digits(&[h0, h1])?;
    let minute = digits(&[mi0, mi1])?;
    let second = digits(&[s0, s1])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    // Optional fraction: 1 to 9 digits, scaled to nanoseconds.
    let (nanos, rest) = match rest.split_first() {
        Some((b'.', after)) => {
            let n = after.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return None;
            }
            let (frac, rest) = after.split_at(n);
            let value = digits(frac)?;
            let scale = 10i64.pow(u32::try_from(9 - n).ok()?);
            (value * scale, rest)
        }
        _ => (0, rest),
    };

    let offset_seconds = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), oh0, oh1, b':', om0, om1] => {
            let oh = digits(&[*oh0, *oh1])?;
            let om = digits(&[*om0, *om1])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let magnitude = oh * 3600 + om * 60;
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };

    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
}

/// ASCII digits as a number; `None` for anything else or more than 18 digits.
fn digits(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 18 {
        return None;
    }
    bytes.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`); valid for every year this module accepts (0000–9999).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Converts a JSON number of epoch milliseconds to epoch nanoseconds.
///
/// Integers (`i64` and `u64`) are exact. A float's integer part is converted
/// exactly and its fraction is multiplied by 1e6 and rounded to the nearest
/// nanosecond (halves away from zero), so `1.5` is `1_500_000` and `1e12` is
/// exactly `1e18`. `None` for a non-finite float and for a float of ±1e32 ms or
/// more, whose nanoseconds could overflow an `i128` (no RFC 3339 instant is
/// anywhere near; such a number is treated as "not a time", like a wrong type).
///
/// ```
/// use flagbelt::eval::epoch_millis_to_nanos;
///
/// let n = serde_json::Number::from(1_700_000_000_000u64);
/// assert_eq!(epoch_millis_to_nanos(&n), Some(1_700_000_000_000_000_000));
/// let f = serde_json::Number::from_f64(-0.0078125).unwrap(); // -7812.5 ns
/// assert_eq!(epoch_millis_to_nanos(&f), Some(-7813));
/// ```
pub fn epoch_millis_to_nanos(n: &Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i) * 1_000_000);
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u) * 1_000_000);
    }
    let f = n.as_f64()?;
    if !f.is_finite() {
        return None;
    }
    let whole = f.trunc();
    // Below 1e32 ms, |nanos| < 1e38 < i128::MAX (about 1.7e38).
    const LIMIT: f64 = 1.0e32;
    if whole.abs() >= LIMIT {
        return None;
    }
    // `whole` is integral and below 1e32, so the cast is exact.
    let whole_ms = whole as i128;
    // `f - whole` is exact and below 1 in magnitude, so this is below 1e6 ns.
    let fraction_ns = ((f - whole) * 1e6).round() as i128;
    Some(whole_ms * 1_000_000 + fraction_ns)
}

/// Whether `test` holds for an attribute value (`None` = missing).
///
/// - Missing (or `null`): only `not_exists` holds; `exists` holds for any present
///   value, an empty list or object included.
/// - A list attribute holds a positive operator if any element does, and a negative
///   one (`neq`/`not_in`, `not_contains`) if no element matches its operands, so an
///   empty list holds every negative and no positive operator. An element of
///   another type, a `null`, an object or a nested list matches nothing: it never
///   makes a positive operator hold, and never stops a negative one from holding.
/// - A scalar of the wrong type makes the condition false, negated ones too, except
///   for `neq`/`not_in`, which hold across types (different types are never equal).
/// - Each operand list is "any operand holds" for positive operators and "no
///   operand matches" for negative ones.
pub(crate) fn test_holds(test: &Test, value: Option<&Value>) -> bool {
    let value = match value {
        None | Some(Value::Null) => return matches!(test, Test::NotExists),
        Some(v) => v,
    };
    match (test, value) {
        (Test::Exists, _) => true,
        (Test::NotExists, _) => false,
        (_, Value::Array(items)) => {
            if is_negative(test) {
                !items.iter().any(|item| operands_match(test, item))
            } else {
                items.iter().any(|item| value_holds(test, item))
            }
        }
        _ => value_holds(test, value),
    }
}

/// `neq`, `not_in`, `not_contains` (and any negated text test).
fn is_negative(test: &Test) -> bool {
    matches!(
        test,
        Test::Equals { negate: true, .. } | Test::Text { negate: true, .. }
    )
}

/// Whether `value` matches one of the operands of an equality or text test, read
/// positively (its `negate` ignored). A value of another type matches nothing;
/// the other tests have no operands to match here and answer `false`.
///
/// The negative operators are "no operand matches", over a list "no element
/// matches": both are the negation of this one function, so a list element of
/// another type can never stop them from holding.
fn operands_match(test: &Test, value: &Value) -> bool {
    match test {
        Test::Equals { values, .. } => values.iter().any(|s| scalar_equals(s, value)),
        Test::Text { op, values, .. } => match value {
            Value::String(s) => values.iter().any(|operand| text_holds(*op, s, operand)),
            _ => false,
        },
        _ => false,
    }
}

/// One (non-list, or list element) value against `test`.
fn value_holds(test: &Test, value: &Value) -> bool {
    match test {
        Test::Exists => !value.is_null(),
        Test::NotExists => value.is_null(),
        // Different types are never equal, so `neq`/`not_in` hold across types.
        Test::Equals { negate, .. } => operands_match(test, value) != *negate,
        Test::Text { negate, .. } => {
            if !value.is_string() {
                return false; // a scalar of the wrong type: false, negated or not
            }
            operands_match(test, value) != *negate
        }
        Test::Matches(regexes) => match value {
            Value::String(s) => regexes.iter().any(|re| re.is_match(s)),
            _ => false,
        },
        Test::Number { cmp, values } => match value {
            Value::Number(n) => n.as_f64().is_some_and(|x| {
                values
                    .iter()
                    .any(|&y| x.partial_cmp(&y).is_some_and(|o| cmp_holds(*cmp, o)))
            }),
            _ => false,
        },
        Test::Semver { cmp, values } => match value {
            Value::String(s) => parse_semver(s).is_some_and(|v| {
                values
                    .iter()
                    .any(|operand| cmp_holds(*cmp, v.cmp_precedence(operand)))
            }),
            _ => false,
        },
        Test::Time { after, values } => {
            let instant = match value {
                Value::String(s) => parse_rfc3339(s),
                Value::Number(n) => epoch_millis_to_nanos(n),
                _ => None,
            };
            instant.is_some_and(|t| {
                values
                    .iter()
                    .any(|&operand| if *after { t > operand } else { t < operand })
            })
        }
    }
}

fn text_holds(op: TextOp, s: &str, operand: &str) -> bool {
    match op {
        TextOp::Contains => s.contains(operand),
        TextOp::StartsWith => s.starts_with(operand),
        TextOp::EndsWith => s.ends_with(operand),
    }
}

fn cmp_holds(cmp: Cmp, ordering: Ordering) -> bool {
    match cmp {
        Cmp::Eq => ordering.is_eq(),
        Cmp::Lt => ordering.is_lt(),
        Cmp::Lte => ordering.is_le(),
        Cmp::Gt => ordering.is_gt(),
        Cmp::Gte => ordering.is_ge(),
    }
}

/// Typed JSON equality: same JSON type, numbers numerically.
fn scalar_equals(operand: &Scalar, value: &Value) -> bool {
    match (operand, value) {
        (Scalar::Bool(a), Value::Bool(b)) => a == b,
        (Scalar::Str(a), Value::String(b)) => **a == **b,
        (Scalar::Num(a), Value::Number(b)) => numbers_equal(a, b),
        _ => false,
    }
}

/// Integers compare exactly (across the `i64`/`u64` split); anything involving a
/// float compares as f64, so `1 == 1.0`.
fn numbers_equal(a: &Number, b: &Number) -> bool {
    match (exact_integer(a), exact_integer(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

fn exact_integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)] // tests may panic and index
mod tests {
    use regex::Regex;
    use serde_json::json;

    use super::*;

    fn num(v: Value) -> Number {
        match v {
            Value::Number(n) => n,
            other => panic!("not a number: {other}"),
        }
    }

    fn s(v: &str) -> Scalar {
        Scalar::Str(v.into())
    }

    fn n(v: Value) -> Scalar {
        Scalar::Num(num(v))
    }

    fn eq(values: Vec<Scalar>) -> Test {
        Test::Equals {
            values,
            negate: false,
        }
    }

    fn neq(values: Vec<Scalar>) -> Test {
        Test::Equals {
            values,
            negate: true,
        }
    }

    fn text(op: TextOp, values: &[&str], negate: bool) -> Test {
        Test::Text {
            op,
            values: values.iter().map(|v| (*v).into()).collect(),
            negate,
        }
    }

    fn number(cmp: Cmp, values: &[f64]) -> Test {
        Test::Number {
            cmp,
            values: values.to_vec(),
        }
    }

    fn semver(cmp: Cmp, values: &[&str]) -> Test {
        Test::Semver {
            cmp,
            values: values.iter().map(|v| parse_semver(v).unwrap()).collect(),
        }
    }

    fn time(after: bool, values: &[&str]) -> Test {
        Test::Time {
            after,
            values: values.iter().map(|v| parse_rfc3339(v).unwrap()).collect(),
        }
    }

    fn matches(patterns: &[&str]) -> Test {
        Test::Matches(
            patterns
                .iter()
                .map(|p| std::sync::Arc::new(Regex::new(p).unwrap()))
                .collect(),
        )
    }

    /// Runs `(attribute value, expected)` rows; `Value::Null` stands for missing.
    fn table(test: &Test, rows: &[(Value, bool)]) {
        for (value, want) in rows {
            let got = test_holds(test, (!value.is_null()).then_some(value));
            assert_eq!(got, *want, "{test:?} on {value}");
        }
        // Explicit `null` and a real `None` behave alike.
        let missing = test_holds(test, None);
        assert_eq!(missing, test_holds(test, Some(&Value::Null)), "{test:?}");
        assert_eq!(missing, matches!(test, Test::NotExists), "{test:?} missing");
    }

    #[test]
    fn exists_and_not_exists() {
        let rows = [
            (json!("x"), true),
            (json!(""), true),
            (json!(0), true),
            (json!(false), true),
            (json!([]), true),
            (json!({}), true),
            (json!([null]), true),
        ];
        table(&Test::Exists, &rows);
        let inverted: Vec<_> = rows.iter().map(|(v, b)| (v.clone(), !b)).collect();
        table(&Test::NotExists, &inverted);
        table(&Test::NotExists, &[(Value::Null, true)]);
        table(&Test::Exists, &[(Value::Null, false)]);
    }

    #[test]
    fn equals_is_typed() {
        let t = eq(vec![s("NZ"), s("AU"), n(json!(1)), Scalar::Bool(true)]);
        table(
            &t,
            &[
                (json!("NZ"), true),
                (json!("AU"), true),
                (json!("nz"), false), // no case folding
                (json!("US"), false),
                (json!(1), true),
                (json!(1.0), true), // numerically
                (json!(1.5), false),
                (json!("1"), false), // different types never equal
                (json!(true), true),
                (json!(false), false),
                (json!("true"), false),
                (json!({"NZ": 1}), false),
                (Value::Null, false),
            ],
        );
        let by_float = eq(vec![n(json!(1.0))]);
        table(&by_float, &[(json!(1), true), (json!(1u64), true)]);
        // Integers compare exactly, also beyond f64 precision and across i64/u64.
        let big = eq(vec![n(json!(9_007_199_254_740_993u64))]);
        table(
            &big,
            &[
                (json!(9_007_199_254_740_993i64), true),
                (json!(9_007_199_254_740_992i64), false),
            ],
        );
        let huge = eq(vec![n(json!(u64::MAX))]);
        table(&huge, &[(json!(u64::MAX), true), (json!(-1), false)]);
        table(&eq(vec![n(json!(-0.0))]), &[(json!(0), true)]);
    }

    #[test]
    fn not_equals_holds_across_types_and_needs_none_equal() {
        let t = neq(vec![s("NZ"), s("AU")]);
        table(
            &t,
            &[
                (json!("NZ"), false),
                (json!("AU"), false),
                (json!("US"), true),
                (json!(1), true),
                (json!(true), true),
                (json!({"country": "NZ"}), true), // an object attribute included
                (Value::Null, false),             // missing: false
            ],
        );
        table(
            &neq(vec![n(json!(1)), n(json!(2))]),
            &[(json!(1.0), false), (json!(2), false), (json!(3), true)],
        );
    }

    #[test]
    fn equals_on_lists() {
        let t = eq(vec![s("a"), s("b")]);
        let not_t = neq(vec![s("a"), s("b")]);
        let rows = [
            (json!(["x", "b"]), true, false),
            (json!(["x", "y"]), false, true),
            (json!([]), false, true), // empty: no positive, every negative
            (json!([1, "a"]), true, false),
            (json!([["a"]]), false, true), // a nested list matches nothing
            (json!([null]), false, true),  // a null element equals nothing
            (json!([{"a": 1}]), false, true),
        ];
        for (v, pos, negative) in rows {
            assert_eq!(test_holds(&t, Some(&v)), pos, "eq {v}");
            assert_eq!(test_holds(&not_t, Some(&v)), negative, "neq {v}");
        }
    }

    #[test]
    fn text_operators() {
        let contains = text(TextOp::Contains, &["@example", "corp"], false);
        table(
            &contains,
            &[
                (json!("a@example.com"), true),
                (json!("megacorp.io"), true),
                (json!("a@EXAMPLE.com"), false),
                (json!("x"), false),
                (json!(12), false),
                (json!(["x", "y@example"]), true),
                (json!([]), false),
                (json!([1]), false),
            ],
        );
        let not_contains = text(TextOp::Contains, &["@example", "corp"], true);
        table(
            &not_contains,
            &[
                (json!("a@example.com"), false),
                (json!("megacorp.io"), false),
                (json!("x"), true),
                (json!(""), true),
                (json!(12), false), // wrong type: false even negated
                (json!({"a": 1}), false),
                (json!(true), false),
                (json!(["x", "y"]), true),
                (json!(["x", "corp"]), false),
                (json!(["x", 1]), true), // an element of another type matches nothing
                (json!(["x", ["corp"]]), true), // nor does a nested list
                (json!([null, {"a": "corp"}]), true),
                (json!([1, "corp"]), false),
                (json!([]), true),
            ],
        );
        let starts = text(TextOp::StartsWith, &["ab"], false);
        table(
            &starts,
            &[
                (json!("abc"), true),
                (json!("cab"), false),
                (json!("Abc"), false),
            ],
        );
        let ends = text(TextOp::EndsWith, &[".nz", ".au"], false);
        table(
            &ends,
            &[
                (json!("x.nz"), true),
                (json!("x.au"), true),
                (json!("x.nz.uk"), false),
                (json!(["a", "b.au"]), true),
            ],
        );
        // Empty operand: every string contains it.
        table(
            &text(TextOp::Contains, &[""], false),
            &[(json!(""), true), (json!(1), false)],
        );
        // No normalisation: precomposed vs combining é differ.
        table(
            &text(TextOp::Contains, &["\u{e9}"], false),
            &[(json!("caf\u{e9}"), true), (json!("cafe\u{301}"), false)],
        );
    }

    #[test]
    fn matches_is_an_unanchored_search() {
        let t = matches(&["^beta-\\d+$", "gold"]);
        table(
            &t,
            &[
                (json!("beta-12"), true),
                (json!("xbeta-12"), false),
                (json!("is-golden"), true),
                (json!("GOLD"), false),
                (json!(5), false),
                (json!(["no", "beta-1"]), true),
                (json!([]), false),
            ],
        );
    }

    #[test]
    fn number_comparisons() {
        table(
            &number(Cmp::Lt, &[10.0]),
            &[
                (json!(9), true),
                (json!(10), false),
                (json!(9.999), true),
                (json!(-1e300), true),
                (json!("5"), false), // numbers only
                (json!(true), false),
                (json!([20, 5]), true),
                (json!([20]), false),
                (json!([]), false),
            ],
        );
        table(
            &number(Cmp::Lte, &[10.0]),
            &[(json!(10), true), (json!(10.0), true), (json!(10.5), false)],
        );
        table(
            &number(Cmp::Gt, &[10.0, 100.0]),
            &[
                (json!(11), true),
                (json!(10), false),
                (json!(u64::MAX), true),
            ],
        );
        table(
            &number(Cmp::Gte, &[0.5]),
            &[(json!(0.5), true), (json!(0), false), (json!(1), true)],
        );
        // `Eq` is not authored for numbers, but it must still be well-defined.
        table(
            &number(Cmp::Eq, &[3.0]),
            &[(json!(3), true), (json!(4), false)],
        );
    }

    #[test]
    fn semver_parsing() {
        let ok = [
            ("1.2.3", "1.2.3"),
            ("v1.2.3", "1.2.3"),
            ("2", "2.0.0"),
            ("v2", "2.0.0"),
            ("2.3", "2.3.0"),
            ("2.3-rc.1", "2.3.0-rc.1"),
            ("2-alpha", "2.0.0-alpha"),
            ("2+build.7", "2.0.0+build.7"),
            ("1.0.0-beta+exp.sha.5114f85", "1.0.0-beta+exp.sha.5114f85"),
            ("1.0.0+20130313144700", "1.0.0+20130313144700"),
            ("1.0.0-x-y-z.--", "1.0.0-x-y-z.--"),
            ("1.0.0+001", "1.0.0+001"), // build metadata may have leading zeros
            ("0.0.0", "0.0.0"),
            ("18446744073709551615", "18446744073709551615.0.0"),
        ];
        for (text, want) in ok {
            let got = parse_semver(text).unwrap_or_else(|| panic!("{text} should parse"));
            assert_eq!(got.to_string(), want, "{text}");
        }
        let bad = [
            "",
            "v",
            "V1.2.3",
            " 1.2.3",
            "1.2.3 ",
            "1 .2",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "1.2.3.4",
            "1.",
            "1..2",
            ".1",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-+b",
            "1.2.3-01",
            "1.2.3-a..b",
            "1.2.3+a+b",
            "1.2.3-a_b",
            "vv1",
            "-1",
            "+1",
            "1.x",
            "18446744073709551616",
            "1.2.3-é",
            "١.٢.٣", // non-ASCII digits
        ];
        for text in bad {
            assert_eq!(parse_semver(text), None, "{text:?} should be rejected");
        }
    }

    #[test]
    fn semver_prerelease_ordering_and_build_metadata() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "v1.0.1",
            "1.1",
            "2",
        ];
        for pair in ordered.windows(2) {
            let [lo, hi] = pair else { unreachable!() };
            assert!(
                test_holds(&semver(Cmp::Lt, &[hi]), Some(&json!(lo))),
                "{lo} < {hi}"
            );
            assert!(
                test_holds(&semver(Cmp::Gt, &[lo]), Some(&json!(hi))),
                "{hi} > {lo}"
            );
            assert!(!test_holds(&semver(Cmp::Gte, &[hi]), Some(&json!(lo))));
        }
        // Build metadata is ignored by every comparison.
        let eq_b = semver(Cmp::Eq, &["1.0.0+a"]);
        table(
            &eq_b,
            &[
                (json!("1.0.0+b"), true),
                (json!("1.0.0"), true),
                (json!("v1+zzz"), true),
                (json!("1.0.0-rc.1+a"), false),
            ],
        );
        assert!(!test_holds(
            &semver(Cmp::Gt, &["1.0.0+a"]),
            Some(&json!("1.0.0+b"))
        ));
        assert!(!test_holds(
            &semver(Cmp::Lt, &["1.0.0+b"]),
            Some(&json!("1.0.0+a"))
        ));
    }

    #[test]
    fn semver_operator_types() {
        table(
            &semver(Cmp::Gte, &["2.3.0"]),
            &[
                (json!("2.3.0"), true),
                (json!("v2.3"), true),
                (json!("2.10"), true),
                (json!("2.3.0-rc.1"), false),
                (json!("2.2.9"), false),
                (json!("banana"), false), // unparseable
                (json!(" 2.3.0"), false),
                (json!(3), false), // numbers are not versions
                (json!(["1.0", "3.0"]), true),
                (json!(["1.0", 3]), false),
            ],
        );
        table(
            &semver(Cmp::Lte, &["1.0.0", "2.0.0"]),
            &[
                (json!("1.5"), true),
                (json!("2.0.0"), true),
                (json!("2.0.1"), false),
            ],
        );
        table(
            &semver(Cmp::Eq, &["2"]),
            &[(json!("2.0.0"), true), (json!("2.0.1"), false)],
        );
    }

    #[test]
    fn rfc3339_accepts() {
        let ok: &[(&str, i128)] = &[
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01t00:00:00z", 0),
            ("1970-01-01T00:00:00+00:00", 0),
            ("1970-01-01T00:00:00-00:00", 0),
            ("1970-01-01T01:00:00+01:00", 0),
            ("1969-12-31T19:00:00-05:00", 0),
            ("1970-01-01T00:00:00.000000001Z", 1),
            ("1970-01-01T00:00:00.1Z", 100_000_000),
            ("1970-01-01T00:00:00.123456789Z", 123_456_789),
            ("1969-12-31T23:59:59.5Z", -500_000_000),
            ("2000-02-29T00:00:00Z", 951_782_400_000_000_000),
            ("2024-02-29T12:00:00Z", 1_709_208_000_000_000_000),
            ("2026-01-01T10:00:00+10:00", 1_767_225_600_000_000_000),
            ("2026-01-01T00:00:00Z", 1_767_225_600_000_000_000),
            ("2026-12-31T23:59:59Z", 1_798_761_599_000_000_000),
            ("0000-01-01T00:00:00Z", -62_167_219_200_000_000_000),
            (
                "9999-12-31T23:59:59.999999999+23:59",
                253_402_214_459_999_999_999,
            ),
        ];
        for (text, want) in ok {
            assert_eq!(parse_rfc3339(text), Some(*want), "{text}");
        }
        // Offsets change the instant.
        let utc = parse_rfc3339("2026-06-01T12:00:00Z").unwrap();
        let plus = parse_rfc3339("2026-06-01T12:00:00+02:00").unwrap();
        let minus = parse_rfc3339("2026-06-01T12:00:00-02:30").unwrap();
        assert_eq!(utc - plus, 2 * 3600 * 1_000_000_000);
        assert_eq!(minus - utc, 9000 * 1_000_000_000);
    }

    #[test]
    fn rfc3339_rejects() {
        let bad = [
            "",
            "2026-01-01",
            "2026-01-01T00:00Z",
            "2026-01-01 00:00:00Z", // space separator
            "2026-01-01_00:00:00Z",
            "2026-01-01T00:00:00",  // no offset
            "2026-01-01T23:59:60Z", // leap second
            "2026-02-30T00:00:00Z", // Feb 30
            "2026-02-29T00:00:00Z", // not a leap year
            "1900-02-29T00:00:00Z", // century, not leap
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00.1234567891Z", // 10 fraction digits
            "2026-01-01T00:00:00,5Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00+01:60",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00+01",
            "2026-01-01T00:00:00Zjunk",
            "2026-01-01T00:00:00ZZ",
            " 2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z ",
            "+2026-01-01T00:00:00Z",
            "26-01-01T00:00:00Z",
            "2026-1-01T00:00:00Z",
            "2026-01-01T00:00:00UTC",
            "2026-01-01T00:00:00+1:00",
            "２026-01-01T00:00:00Z", // non-ASCII digit
            "2026-01-01T00:00:00.+01:00",
            "2026-01-01T00:00:00-+1:00",
        ];
        for text in bad {
            assert_eq!(parse_rfc3339(text), None, "{text:?} should be rejected");
        }
    }

    #[test]
    fn epoch_millis() {
        let cases: &[(Value, Option<i128>)] = &[
            (json!(0), Some(0)),
            (json!(1), Some(1_000_000)),
            (json!(-1), Some(-1_000_000)),
            (json!(i64::MIN), Some(i128::from(i64::MIN) * 1_000_000)),
            (json!(u64::MAX), Some(i128::from(u64::MAX) * 1_000_000)),
            (json!(1.5), Some(1_500_000)),
            (json!(-1.5), Some(-1_500_000)),
            (json!(0.0078125), Some(7813)), // exactly 7812.5 ns: half away from zero
            (json!(-0.0078125), Some(-7813)),
            (json!(0.5), Some(500_000)),
            (json!(1_700_000_000_000.0), Some(1_700_000_000_000_000_000)),
            (json!(1e20), Some(10i128.pow(26))),
            (json!(1e22), Some(10i128.pow(28))), // exact in f64, converted exactly
            (json!(1e32), None),
            (json!(-1e300), None),
        ];
        for (v, want) in cases {
            assert_eq!(epoch_millis_to_nanos(&num(v.clone())), *want, "{v}");
        }
    }

    #[test]
    fn time_operators() {
        let before = time(false, &["2026-01-01T00:00:00Z"]);
        let after = time(true, &["2026-01-01T00:00:00Z"]);
        let at_ms: i64 = 1_767_225_600_000;
        let rows: &[(Value, bool, bool)] = &[
            (json!("2025-12-31T23:59:59.999999999Z"), true, false),
            (json!("2026-01-01T00:00:00Z"), false, false), // equal: neither
            (json!("2026-01-01T10:00:00+10:00"), false, false),
            (json!("2026-01-01T09:59:59+10:00"), true, false),
            (json!("2026-01-01t00:00:00.000000001z"), false, true),
            // Epoch milliseconds, compared exactly.
            (json!(at_ms), false, false),
            (json!(at_ms - 1), true, false),
            (json!(at_ms + 1), false, true),
            (json!(1_767_225_599_999.999), true, false), // .999023.. in f64
            (json!(1_767_225_600_000.001), false, true),
            (json!(-5), true, false),
            // Anything else is false, both ways.
            (json!("2026-01-01 00:00:00Z"), false, false),
            (json!("2026-01-01T23:59:60Z"), false, false),
            (json!("1767225600000"), false, false), // a numeric string is not a time
            (json!(true), false, false),
            (json!({}), false, false),
            (
                json!(["2020-01-01T00:00:00Z", "2030-01-01T00:00:00Z"]),
                true,
                true,
            ),
            (json!([]), false, false),
        ];
        for (v, b, a) in rows {
            assert_eq!(test_holds(&before, Some(v)), *b, "before on {v}");
            assert_eq!(test_holds(&after, Some(v)), *a, "after on {v}");
        }
        // Several operands: any holds.
        let either = time(false, &["2020-01-01T00:00:00Z", "2030-01-01T00:00:00Z"]);
        assert!(test_holds(&either, Some(&json!("2025-01-01T00:00:00Z"))));
        assert!(!test_holds(&before, None));
    }
}
