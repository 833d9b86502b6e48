//! YAML authoring: DESIGN.md's example parses to the expected proto (order, YAML
//! 1.2 types, source text), and every bad input is one clear line naming the
//! place and the YAML line.

use flagbelt::ruleset::authoring::{self, AuthoringError};
use flagbelt::ruleset::compile::{ErrorKind, Place};
use flagbelt::ruleset::proto::{
    self, AttributeTest, Condition, Conjunction, Flag, KeyKind, Operator, Prerequisite, Rollout,
    Scalar, TargetingRule, Variant, Weight, condition, scalar, targeting_rule,
};

const DESIGN_EXAMPLE: &str = include_str!("../fixtures/design-example.yaml");

fn parse(yaml: &str) -> proto::Ruleset {
    authoring::parse(yaml, 1_700_000_000_000).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn parse_err(yaml: &str) -> AuthoringError {
    match authoring::parse(yaml, 0) {
        Ok(_) => panic!("should not parse:\n{yaml}"),
        Err(e) => e,
    }
}

fn compile_err(yaml: &str) -> AuthoringError {
    match authoring::compile_yaml(yaml, 0) {
        Ok(_) => panic!("should not compile:\n{yaml}"),
        Err(e) => e,
    }
}

/// The 1-based line of the first line of `yaml` containing `needle`.
fn line_of(yaml: &str, needle: &str) -> u64 {
    let i = yaml
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the YAML"));
    i as u64 + 1
}

/// Every error is one line that starts with its location.
fn assert_one_line(e: &AuthoringError) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "not one line: {s:?}");
    assert!(
        s.starts_with("line "),
        "does not start with the line: {s:?}"
    );
    s
}

fn attr(attr: &str, op: Operator, values: Vec<scalar::Kind>) -> Condition {
    Condition {
        kind: Some(condition::Kind::Attribute(AttributeTest {
            attr: attr.into(),
            op: op as i32,
            values: values
                .into_iter()
                .map(|k| Scalar { kind: Some(k) })
                .collect(),
        })),
    }
}

fn s(v: &str) -> scalar::Kind {
    scalar::Kind::StringValue(v.into())
}

fn variants(pairs: &[(&str, &str)]) -> Vec<Variant> {
    pairs
        .iter()
        .map(|(n, v)| Variant {
            name: (*n).into(),
            value_json: (*v).into(),
        })
        .collect()
}

fn on_off() -> Vec<Variant> {
    variants(&[("on", "true"), ("off", "false")])
}

fn the_test(rs: &proto::Ruleset, flag: usize, rule: usize, cond: usize) -> &AttributeTest {
    match &rs.flags[flag].rules[rule].conditions[cond].kind {
        Some(condition::Kind::Attribute(t)) => t,
        other => panic!("not an attribute test: {other:?}"),
    }
}

fn kinds(t: &AttributeTest) -> Vec<scalar::Kind> {
    t.values
        .iter()
        .map(|v| v.kind.clone().expect("a typed scalar"))
        .collect()
}

#[test]
fn design_example_parses_to_the_expected_proto() {
    let rs = parse(DESIGN_EXAMPLE);
    let expected = proto::Ruleset {
        format: flagbelt::ruleset::FORMAT,
        environment: "production".into(),
        version: 42,
        keys: vec![
            proto::ApiKey {
                id: "web".into(),
                kind: KeyKind::Frontend as i32,
                secret_sha256: "eb9f16800c9029ffca85695763d23c3ace71011cf40e9354acd810205e250f87"
                    .into(),
                allowed_origins: vec!["https://app.example.com".into()],
            },
            proto::ApiKey {
                id: "api".into(),
                kind: KeyKind::Backend as i32,
                secret_sha256: "082c46be7ba0c393d3b790cfbb5b2eaee6d55f7f746dd7332fd8da5e16ca85be"
                    .into(),
                allowed_origins: vec![],
            },
        ],
        segments: vec![proto::Segment {
            name: "staff".into(),
            rules: vec![Conjunction {
                conditions: vec![attr("email", Operator::EndsWith, vec![s("@example.com")])],
            }],
        }],
        flags: vec![
            Flag {
                key: "checkout-v2".into(),
                variants: on_off(),
                default_variant: "on".into(),
                ..Flag::default()
            },
            Flag {
                key: "new-checkout".into(),
                client: true,
                disabled: false,
                variants: on_off(),
                default_variant: "off".into(),
                off_variant: "off".into(),
                prerequisites: vec![Prerequisite {
                    flag: "checkout-v2".into(),
                    variant: "on".into(),
                }],
                rules: vec![
                    TargetingRule {
                        conditions: vec![
                            attr("country", Operator::In, vec![s("NZ"), s("AU")]),
                            attr("app.version", Operator::SemverGte, vec![s("2.3.0")]),
                        ],
                        serve: Some(targeting_rule::Serve::Variant("on".into())),
                    },
                    TargetingRule {
                        conditions: vec![Condition {
                            kind: Some(condition::Kind::Segment("staff".into())),
                        }],
                        serve: Some(targeting_rule::Serve::Rollout(Rollout {
                            by: "targetingKey".into(),
                            salt: Some("nc-1".into()),
                            weights: vec![
                                Weight {
                                    variant: "on".into(),
                                    weight: 25,
                                },
                                Weight {
                                    variant: "off".into(),
                                    weight: 75,
                                },
                            ],
                        })),
                    },
                ],
                ..Flag::default()
            },
            Flag {
                key: "banner-text".into(),
                client: true,
                variants: variants(&[("a", "\"Welcome\""), ("b", "\"Hello\"")]),
                default_variant: "a".into(),
                ..Flag::default()
            },
            Flag {
                key: "limits".into(),
                variants: variants(&[
                    ("small", r#"{"max_items":10}"#),
                    ("big", r#"{"max_items":1000}"#),
                ]),
                default_variant: "small".into(),
                ..Flag::default()
            },
        ],
    };
    assert_eq!(rs, expected);
}

/// Needs `compile::compile`.
#[test]
fn design_example_compiles() {
    let (pb, model) = authoring::compile_yaml(DESIGN_EXAMPLE, 0).unwrap();
    assert_eq!(pb, parse(DESIGN_EXAMPLE));
    assert_eq!(model.environment(), "production");
    assert_eq!(model.version(), 42);
    assert_eq!(model.flags().len(), 4);
    assert_eq!(model.keys().len(), 2);
}

#[test]
fn version_defaults_to_now_and_optional_parts_are_empty() {
    let rs = authoring::parse("environment: e\n", 123).unwrap();
    assert_eq!(rs.version, 123);
    assert_eq!(rs.format, flagbelt::ruleset::FORMAT);
    assert!(rs.keys.is_empty() && rs.segments.is_empty() && rs.flags.is_empty());
}

#[test]
fn order_of_flags_variants_and_weights_is_the_order_written() {
    let rs = parse(
        "environment: e
flags:
  zz: {variants: {z: 1, a: 2, m: 3}, default: z}
  aa:
    variants: {b: 1, a: 2}
    default: b
    rules:
      - serve: {rollout: {weights: {b: 1, a: 2}}}
  mm: {variants: {x: {z: 1, a: [3, 2, 1], m: {y: 1, b: 2}}}, default: x}
",
    );
    let keys: Vec<_> = rs.flags.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["zz", "aa", "mm"]);
    let names: Vec<_> = rs.flags[0]
        .variants
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(names, ["z", "a", "m"]);
    let Some(targeting_rule::Serve::Rollout(ro)) = &rs.flags[1].rules[0].serve else {
        panic!("not a rollout")
    };
    let w: Vec<_> = ro
        .weights
        .iter()
        .map(|w| (w.variant.as_str(), w.weight))
        .collect();
    assert_eq!(w, [("b", 1), ("a", 2)]);
    assert_eq!(ro.by, "", "no `by` = targetingKey");
    assert_eq!(ro.salt, None, "no salt = the flag key");
    // Object keys in variant values keep their order too.
    assert_eq!(
        rs.flags[2].variants[0].value_json,
        r#"{"z":1,"a":[3,2,1],"m":{"y":1,"b":2}}"#
    );
}

#[test]
fn yaml_1_2_types_on_off_yes_no_are_strings() {
    let rs = parse(
        "environment: e
flags:
  f:
    variants: {on: yes, off: NO, y: True, n: false}
    default: on
    off: off
    rules:
      - when: [{attr: a, op: in, values: [on, off, yes, no, True, FALSE]}]
        serve: off
",
    );
    let f = &rs.flags[0];
    assert_eq!(
        f.variants,
        variants(&[
            ("on", "\"yes\""),
            ("off", "\"NO\""),
            ("y", "true"),
            ("n", "false")
        ])
    );
    assert_eq!(f.default_variant, "on");
    assert_eq!(f.off_variant, "off");
    assert_eq!(
        kinds(the_test(&rs, 0, 0, 0)),
        [
            s("on"),
            s("off"),
            s("yes"),
            s("no"),
            scalar::Kind::BoolValue(true),
            scalar::Kind::BoolValue(false)
        ]
    );
    assert_eq!(
        f.rules[0].serve,
        Some(targeting_rule::Serve::Variant("off".into()))
    );
}

#[test]
fn typed_operands_keep_their_yaml_type() {
    let rs = parse(
        r#"environment: e
flags:
  f:
    variants: {a: 1}
    default: a
    rules:
      - when:
          - {attr: n, op: eq, values: [42, "42", 1.5, true, -3, 18446744073709551615, 1_000, 012]}
          - {attr: n, op: gte, values: [1.50]}
          - {attr: t, op: before, values: [2026-01-31T12:00:00Z, 1700000000000]}
          - {attr: t, op: exists}
        serve: a
"#,
    );
    use scalar::Kind::*;
    assert_eq!(
        kinds(the_test(&rs, 0, 0, 0)),
        [
            IntValue(42),
            s("42"),
            FloatValue(1.5),
            BoolValue(true),
            IntValue(-3),
            UintValue(u64::MAX),
            s("1_000"),
            IntValue(12),
        ]
    );
    assert_eq!(kinds(the_test(&rs, 0, 0, 1)), [FloatValue(1.5)]);
    assert_eq!(
        kinds(the_test(&rs, 0, 0, 2)),
        [s("2026-01-31T12:00:00Z"), IntValue(1_700_000_000_000)]
    );
    assert!(the_test(&rs, 0, 0, 3).values.is_empty());
    assert_eq!(the_test(&rs, 0, 0, 3).op, Operator::Exists as i32);
}

#[test]
fn string_operands_are_the_source_text_of_bare_scalars() {
    let rs = parse(
        r#"environment: e
flags:
  f:
    variants: {a: 1}
    default: a
    rules:
      - when:
          - {attr: price, op: contains, values: [1.50, "1.50", 2, 1e3, true, 0x1F]}
          - {attr: v, op: semver_gte, values: [2, 2.3, v2.3.0]}
          - {attr: v, op: starts_with, values: [&ver 10.10]}
          - {attr: v, op: ends_with, values: [*ver]}
        serve: a
"#,
    );
    assert_eq!(
        kinds(the_test(&rs, 0, 0, 0)),
        [s("1.50"), s("1.50"), s("2"), s("1e3"), s("true"), s("0x1F")]
    );
    assert_eq!(
        kinds(the_test(&rs, 0, 0, 1)),
        [s("2"), s("2.3"), s("v2.3.0")]
    );
    assert_eq!(kinds(the_test(&rs, 0, 0, 2)), [s("10.10")]);
    assert_eq!(
        kinds(the_test(&rs, 0, 0, 3)),
        [s("10.10")],
        "an alias gives the anchored text"
    );
}

#[test]
fn names_are_the_source_text_of_bare_scalars() {
    let rs = parse(
        "environment: e
segments:
  1.50:
    - [{not_segment: 2.0}]
flags:
  f:
    description: 1.50
    variants: {1.50: a, 2: b, true: c}
    default: 1.50
    off: 2
    requires: [{flag: 1.0, variant: 010}]
    rules:
      - {when: [{segment: 1.50}], serve: true}
      - serve: 2
",
    );
    assert_eq!(rs.segments[0].name, "1.50");
    assert_eq!(
        rs.segments[0].rules[0].conditions[0].kind,
        Some(condition::Kind::NotSegment("2.0".into()))
    );
    let f = &rs.flags[0];
    assert_eq!(f.description, "1.50");
    let names: Vec<_> = f.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["1.50", "2", "true"]);
    assert_eq!(
        (f.default_variant.as_str(), f.off_variant.as_str()),
        ("1.50", "2")
    );
    assert_eq!(
        f.prerequisites,
        [Prerequisite {
            flag: "1.0".into(),
            variant: "010".into()
        }]
    );
    let served: Vec<_> = f.rules.iter().map(|r| r.serve.clone().unwrap()).collect();
    assert_eq!(
        served,
        [
            targeting_rule::Serve::Variant("true".into()),
            targeting_rule::Serve::Variant("2".into())
        ]
    );
}

#[test]
fn flag_fields_map_to_the_proto() {
    let rs = parse(
        r#"environment: e
flags:
  f:
    description: "Shown to humans"
    enabled: false
    variants: {a: 1, b: 2.5, c: 10000000000000000000}
    default: a
    rules:
      - serve: {rollout: {by: user.id, salt: "", weights: {a: 0, b: 1}}}
      - when: []
        serve: {rollout: {salt: s, weights: {a: 1}}}
"#,
    );
    let f = &rs.flags[0];
    assert_eq!(f.description, "Shown to humans");
    assert!(f.disabled && !f.client);
    assert_eq!(
        f.variants,
        variants(&[("a", "1"), ("b", "2.5"), ("c", "10000000000000000000")])
    );
    assert_eq!(f.off_variant, "", "no `off` = default");
    let rollouts: Vec<_> = f
        .rules
        .iter()
        .map(|r| match &r.serve {
            Some(targeting_rule::Serve::Rollout(ro)) => (ro.by.as_str(), ro.salt.as_deref()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(rollouts, [("user.id", Some("")), ("", Some("s"))]);
    assert!(f.rules[1].conditions.is_empty());
}

#[test]
fn anchors_and_merge_keys_work() {
    let rs = parse(
        "environment: e
flags:
  a: &base
    client: true
    variants: {on: true, off: false}
    default: off
  b:
    <<: *base
    default: on
",
    );
    assert_eq!(rs.flags[1].variants, on_off());
    assert!(rs.flags[1].client);
    assert_eq!(rs.flags[1].default_variant, "on");
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The DESIGN.md example with one text replaced (which must apply).
fn example_with(from: &str, to: &str) -> String {
    assert!(DESIGN_EXAMPLE.contains(from), "{from:?} not in the example");
    DESIGN_EXAMPLE.replacen(from, to, 1)
}

fn yaml_error(e: &AuthoringError) -> (String, u64, u64) {
    match e {
        AuthoringError::Yaml {
            message,
            line,
            column,
        } => (message.clone(), *line, *column),
        other => panic!("not a YAML error: {other:?}"),
    }
}

fn invalid(e: &AuthoringError) -> (Place, ErrorKind, Option<u64>) {
    match e {
        AuthoringError::Invalid { error, line } => {
            ((*error.place).clone(), (*error.kind).clone(), *line)
        }
        other => panic!("not an Invalid error: {other}"),
    }
}

#[test]
fn malformed_yaml_is_a_yaml_error_with_line_and_column() {
    let yaml = "environment: e\nflags:\n  f: {variants: [1, 2}\n";
    let e = parse_err(yaml);
    let (message, line, column) = yaml_error(&e);
    assert_eq!(line, 3);
    assert!(column > 0);
    assert!(!message.is_empty());
    let text = assert_one_line(&e);
    assert!(text.starts_with("line 3, column "), "{text}");
}

#[test]
fn empty_or_non_mapping_documents_are_errors() {
    for yaml in ["", "# only a comment\n", "- a\n- b\n", "just text\n"] {
        let e = parse_err(yaml);
        let (_, line, _) = yaml_error(&e);
        assert!(line >= 1, "{yaml:?}: {e}");
        assert_one_line(&e);
    }
    let e = parse_err("flags: {}\n");
    assert!(e.to_string().contains("missing field `environment`"), "{e}");
}

#[test]
fn unknown_fields_are_errors_with_their_line() {
    let yaml = example_with("    default: off ", "    defualt: off ");
    let e = parse_err(&yaml);
    let (message, line, column) = yaml_error(&e);
    assert_eq!(line, line_of(&yaml, "defualt"));
    assert_eq!(column, 5);
    assert!(message.contains("unknown field `defualt`"), "{message}");
    assert!(message.contains("default"), "lists the fields: {message}");
    assert!(
        !message.contains("FlagDoc"),
        "no Rust type names: {message}"
    );
    assert_one_line(&e);

    // In a condition, a rollout, a key and at the top level.
    for (from, to, needle) in [
        (
            "{attr: country, op: in,",
            "{attr: country, op: in, value: 1,",
            "value: 1",
        ),
        ("salt: \"nc-1\",", "salt: \"nc-1\", seed: 3,", "seed: 3"),
        (
            "{id: api, kind: backend,",
            "{id: api, kind: backend, origins: [],",
            "origins: []",
        ),
        ("version: 42", "versio: 42", "versio"),
        (
            "  staff:\n",
            "  staff:\n    - [{attr: a, op: exists, description: x}]\n",
            "op: exists",
        ),
    ] {
        let yaml = example_with(from, to);
        let e = parse_err(&yaml);
        let (message, line, _) = yaml_error(&e);
        assert_eq!(line, line_of(&yaml, needle), "{message}");
        assert!(message.contains("unknown field"), "{message}");
    }
}

#[test]
fn description_is_allowed_on_flags_only() {
    parse(&example_with(
        "  limits:\n",
        "  limits:\n    description: JSON values\n",
    ));
    let yaml = example_with("segments:\n", "description: x\nsegments:\n");
    let (message, line, _) = yaml_error(&parse_err(&yaml));
    assert_eq!(line, line_of(&yaml, "description"));
    assert!(message.contains("unknown field `description`"), "{message}");
}

#[test]
fn unknown_operator_names_flag_rule_condition_field_and_line() {
    let yaml = example_with(
        "{segment: staff}]",
        "{attr: plan, op: equals, values: [pro]}]",
    );
    let e = parse_err(&yaml);
    let (place, kind, line) = invalid(&e);
    assert_eq!(
        place,
        Place::flag("new-checkout").rule(2).condition(1).field("op")
    );
    assert_eq!(kind, ErrorKind::UnknownOperator("equals".into()));
    let line = line.unwrap();
    assert_eq!(line, line_of(&yaml, "op: equals"));
    assert_eq!(
        e.to_string(),
        format!(
            "line {line}: flag `new-checkout`, rule 2, condition 1, field `op`: unknown operator \"equals\"; did you mean `eq`? valid: {}",
            flagbelt::ruleset::operator::Spec::all()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    );
    // Operator names are lower case only.
    let yaml = example_with("op: in,", "op: IN,");
    let (_, kind, _) = invalid(&parse_err(&yaml));
    assert_eq!(kind, ErrorKind::UnknownOperator("IN".into()));
}

#[test]
fn duplicate_flag_key_is_an_error_at_the_second_one() {
    let yaml = example_with("  limits:\n", "  banner-text:\n");
    let e = parse_err(&yaml);
    let (message, line, column) = yaml_error(&e);
    let second = yaml
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("  banner-text:"))
        .map(|(i, _)| i as u64 + 1)
        .nth(1)
        .unwrap();
    assert_eq!((line, column), (second, 3));
    assert!(message.contains("duplicate"), "{message}");
    assert!(message.contains("banner-text"), "{message}");
    assert_one_line(&e);
}

#[test]
fn duplicate_variant_key_is_an_error() {
    let yaml = example_with(
        "{a: \"Welcome\", b: \"Hello\"}",
        "{a: \"Welcome\", a: \"Hello\"}",
    );
    let e = parse_err(&yaml);
    let (message, line, _) = yaml_error(&e);
    assert_eq!(line, line_of(&yaml, "a: \"Hello\""));
    assert!(message.contains("duplicate mapping key `a`"), "{message}");
    // Keys that differ only in YAML type are the same name.
    let yaml = example_with(
        "{a: \"Welcome\", b: \"Hello\"}",
        "{1: \"Welcome\", \"1\": \"Hello\"}",
    );
    let (message, line, _) = yaml_error(&parse_err(&yaml));
    assert_eq!(line, line_of(&yaml, "\"1\": \"Hello\""));
    assert!(message.contains("duplicate mapping key `1`"), "{message}");
    // Also in weights and inside JSON values.
    for (from, to) in [
        ("{on: 25, off: 75}", "{on: 25, on: 75}"),
        ("{max_items: 10}", "{max_items: 10, max_items: 11}"),
    ] {
        let yaml = example_with(from, to);
        let (message, line, _) = yaml_error(&parse_err(&yaml));
        assert_eq!(line, line_of(&yaml, to), "{message}");
        assert!(message.contains("duplicate"), "{message}");
    }
}

#[test]
fn a_condition_is_exactly_one_kind() {
    let cases = [
        (
            "{attr: email, op: eq, values: [x], segment: staff}",
            "has `attr`/`op`/`values` and `segment`",
        ),
        (
            "{segment: staff, not_segment: staff}",
            "has `segment` and `not_segment`",
        ),
        ("{}", "needs `attr` and `op`"),
    ];
    for (cond, want) in cases {
        let yaml = example_with("{segment: staff}]", &format!("{cond}]"));
        let e = parse_err(&yaml);
        let AuthoringError::Shape {
            place,
            message,
            line,
        } = &e
        else {
            panic!("{cond}: not a shape error: {e}")
        };
        assert_eq!(**place, Place::flag("new-checkout").rule(2).condition(1));
        assert_eq!(*line, line_of(&yaml, cond));
        assert!(message.contains(want), "{cond}: {message}");
        let text = assert_one_line(&e);
        assert!(
            text.starts_with(&format!(
                "line {line}: flag `new-checkout`, rule 2, condition 1: "
            )),
            "{text}"
        );
    }
    // Half an attribute test.
    let yaml = example_with("{segment: staff}]", "{attr: email}]");
    let (place, kind, line) = invalid(&parse_err(&yaml));
    assert_eq!(
        place,
        Place::flag("new-checkout").rule(2).condition(1).field("op")
    );
    assert_eq!(kind, ErrorKind::MissingField("op"));
    assert_eq!(line, Some(line_of(&yaml, "{attr: email}")));
}

#[test]
fn values_must_be_scalars() {
    for (values, got) in [
        ("[NZ, {a: 1}]", "a mapping"),
        ("[[NZ]]", "a list"),
        ("[NZ, ~]", "null"),
    ] {
        let yaml = example_with("values: [NZ, AU]", &format!("values: {values}"));
        let e = parse_err(&yaml);
        let (place, kind, line) = invalid(&e);
        assert_eq!(
            place,
            Place::flag("new-checkout")
                .rule(1)
                .condition(1)
                .field("values")
        );
        let ErrorKind::WrongValueType { op, got: g, .. } = kind else {
            panic!("{kind:?}")
        };
        assert_eq!((op, g.as_str()), ("in", got));
        assert_eq!(line, Some(line_of(&yaml, values)));
        assert_one_line(&e);
    }
    // Also where strings are expected.
    let yaml = example_with("values: [\"2.3.0\"]", "values: [{v: 2}]");
    let (_, kind, _) = invalid(&parse_err(&yaml));
    assert!(
        matches!(
            kind,
            ErrorKind::WrongValueType {
                op: "semver_gte",
                expected: "string",
                ..
            }
        ),
        "{kind:?}"
    );
    // A single value is still a list.
    let yaml = example_with("values: [NZ, AU]", "values: NZ");
    let (_, line, _) = yaml_error(&parse_err(&yaml));
    assert_eq!(line, line_of(&yaml, "values: NZ"));
}

#[test]
fn values_must_match_the_operator_arity() {
    let yaml = example_with("values: [NZ, AU]", "values: []");
    let (place, kind, _) = invalid(&parse_err(&yaml));
    assert_eq!(place.field.as_deref(), Some("values"));
    assert_eq!(kind, ErrorKind::EmptyValues("in"));
    let yaml = example_with("op: in, values: [NZ, AU]", "op: exists, values: [NZ]");
    let (_, kind, _) = invalid(&parse_err(&yaml));
    assert_eq!(kind, ErrorKind::UnexpectedValues("exists"));
    let yaml = example_with("op: in, values: [NZ, AU]", "op: in");
    let (_, kind, _) = invalid(&parse_err(&yaml));
    assert_eq!(kind, ErrorKind::EmptyValues("in"));
}

#[test]
fn weights_are_whole_numbers_at_least_zero() {
    for (weights, got) in [
        ("{on: -25, off: 75}", "number -25"),
        ("{on: 2.5, off: 75}", "number 2.5"),
        ("{on: \"25\", off: 75}", "string \"25\""),
        ("{on: ~, off: 75}", "null"),
    ] {
        let yaml = example_with("{on: 25, off: 75}", weights);
        let e = parse_err(&yaml);
        let (place, kind, line) = invalid(&e);
        assert_eq!(
            place,
            Place::flag("new-checkout")
                .rule(2)
                .field("serve.rollout.weights")
        );
        let ErrorKind::BadWeights(msg) = kind else {
            panic!("{kind:?}")
        };
        assert!(msg.contains("`on`") && msg.contains(got), "{msg}");
        assert_eq!(line, Some(line_of(&yaml, weights)));
        assert_one_line(&e);
    }
}

#[test]
fn unknown_key_kind_names_the_key() {
    let yaml = example_with("{id: api, kind: backend,", "{id: api, kind: server,");
    let e = parse_err(&yaml);
    let (place, kind, line) = invalid(&e);
    assert_eq!(place, Place::key("api").field("kind"));
    assert_eq!(kind, ErrorKind::BadKeyKind("server".into()));
    assert_eq!(line, Some(line_of(&yaml, "kind: server")));
    assert!(
        assert_one_line(&e).contains("key `api`, field `kind`: invalid key kind \"server\""),
        "{e}"
    );
}

#[test]
fn shape_errors_of_flags_and_rules() {
    // `default` is required.
    let yaml = example_with("    default: small\n", "");
    let (place, kind, line) = invalid(&parse_err(&yaml));
    assert_eq!(place, Place::flag("limits").field("default"));
    assert_eq!(kind, ErrorKind::MissingField("default"));
    assert_eq!(line, Some(line_of(&yaml, "  limits:")));
    // A rule must serve something.
    let yaml = example_with("        serve: on\n", "");
    let (place, kind, _) = invalid(&parse_err(&yaml));
    assert_eq!(place, Place::flag("new-checkout").rule(1).field("serve"));
    assert_eq!(kind, ErrorKind::NothingToServe);
    // `serve` is a name or a rollout, nothing else.
    let yaml = example_with("        serve: on\n", "        serve: ~\n");
    assert_eq!(invalid(&parse_err(&yaml)).1, ErrorKind::NothingToServe);
    for serve in [
        "[on]",
        "{variant: on}",
        "{rollout: {weights: {on: 1}}, extra: 1}",
    ] {
        let yaml = example_with("        serve: on\n", &format!("        serve: {serve}\n"));
        let (message, line, _) = yaml_error(&parse_err(&yaml));
        assert_eq!(
            line,
            line_of(&yaml, &format!("serve: {serve}")),
            "{serve}: {message}"
        );
    }
    // Booleans are YAML 1.2 only.
    let yaml = example_with("enabled: true ", "enabled: yes ");
    let (_, line, _) = yaml_error(&parse_err(&yaml));
    assert_eq!(line, line_of(&yaml, "enabled: yes"));
    // The environment name is checked.
    let yaml = example_with("environment: production", "environment: prod.eu");
    let (place, kind, line) = invalid(&parse_err(&yaml));
    assert_eq!(place, Place::root().field("environment"));
    assert!(matches!(
        kind,
        ErrorKind::BadName {
            what: "environment",
            ..
        }
    ));
    assert_eq!(line, Some(line_of(&yaml, "environment: prod.eu")));
}

// ---------------------------------------------------------------------------
// End to end through compile (these need `compile::compile`).
// ---------------------------------------------------------------------------

#[test]
fn compile_errors_point_at_the_most_specific_line() {
    struct Case {
        from: &'static str,
        to: &'static str,
        place: Place,
        line_has: &'static str,
        says: &'static str,
    }
    let cases = [
        Case {
            from: "        serve: on\n",
            to: "        serve: maybe\n",
            place: Place::flag("new-checkout").rule(1).field("serve"),
            line_has: "serve: maybe",
            says: "unknown variant \"maybe\"",
        },
        Case {
            from: "{segment: staff}]",
            to: "{segment: nobody}]",
            place: Place::flag("new-checkout")
                .rule(2)
                .condition(1)
                .field("segment"),
            line_has: "{segment: nobody}",
            says: "unknown segment \"nobody\"",
        },
        Case {
            from: "weights: {on: 25, off: 75}",
            to: "weights: {on: 25,\n          maybe: 75}",
            place: Place::flag("new-checkout")
                .rule(2)
                .field("serve.rollout.weights"),
            line_has: "maybe: 75",
            says: "unknown variant \"maybe\"",
        },
        Case {
            from: "{a: \"Welcome\", b: \"Hello\"}",
            to: "\n      a: \"Welcome\"\n      b: 2",
            place: Place::flag("banner-text").field("variants"),
            line_has: "b: 2",
            says: "variants mix types",
        },
        Case {
            from: "op: ends_with, values: [\"@example.com\"]",
            to: "op: matches, values: [\"(\"]",
            place: Place::segment("staff").rule(1).condition(1).field("values"),
            line_has: "values: [\"(\"]",
            says: "",
        },
        Case {
            from: "    default: small\n",
            to: "    default: medium\n",
            place: Place::flag("limits").field("default"),
            line_has: "default: medium",
            says: "unknown variant \"medium\"",
        },
        Case {
            from: "{id: api,",
            to: "{id: web,",
            place: Place::root().field("keys"),
            line_has: "{id: web, kind: backend",
            says: "duplicate",
        },
        Case {
            from: "{flag: checkout-v2, variant: on}",
            to: "{flag: checkout-v3, variant: on}",
            place: Place::flag("new-checkout").field("requires"),
            line_has: "checkout-v3",
            says: "unknown flag \"checkout-v3\"",
        },
    ];
    for c in cases {
        let yaml = example_with(c.from, c.to);
        let e = compile_err(&yaml);
        let (place, _, line) = invalid(&e);
        assert_eq!(place, c.place, "{}: {e}", c.to);
        let want = line_of(&yaml, c.line_has);
        assert_eq!(line, Some(want), "{}: {e}", c.to);
        let text = assert_one_line(&e);
        assert!(text.starts_with(&format!("line {want}: ")), "{text}");
        assert!(text.contains(c.says), "{text}");
    }
}

#[test]
fn compile_yaml_reports_parse_errors_unchanged() {
    let yaml = example_with("op: in,", "op: equals,");
    let a = parse_err(&yaml).to_string();
    let b = compile_err(&yaml).to_string();
    assert_eq!(a, b);
}

/// Large environments compile: 10,000 flags is beyond serde-saphyr's default
/// node budget (250k nodes), which `authoring` raises.
#[test]
fn ten_thousand_flags_compile() {
    use std::fmt::Write as _;
    let mut yaml = String::from("environment: big\nversion: 1\nflags:\n");
    for i in 0..10_000 {
        let _ = write!(
            yaml,
            "  f{i}:\n    variants: {{on: true, off: false}}\n    default: off\n    rules:\n      - when: [{{attr: country, op: in, values: [NZ, AU, GB]}}, {{attr: plan, op: eq, values: [pro]}}]\n        serve: {{rollout: {{weights: {{on: 10, off: 90}}}}}}\n"
        );
    }
    let (pb, model) = flagbelt::ruleset::authoring::compile_yaml(&yaml, 0).unwrap();
    assert_eq!(pb.flags.len(), 10_000);
    assert_eq!(model.flags().len(), 10_000);
}
