//! End-to-end tests of `compile`: proto rulesets in, models or errors (with
//! their places) out.

use super::*;
use crate::eval::model::{self, Condition};
use crate::ruleset::proto::{self, Operator, condition, scalar, targeting_rule};

fn s(v: &str) -> proto::Scalar {
    proto::Scalar {
        kind: Some(scalar::Kind::StringValue(v.into())),
    }
}
fn i(v: i64) -> proto::Scalar {
    proto::Scalar {
        kind: Some(scalar::Kind::IntValue(v)),
    }
}
fn attr(name: &str, op: Operator, values: Vec<proto::Scalar>) -> proto::Condition {
    proto::Condition {
        kind: Some(condition::Kind::Attribute(proto::AttributeTest {
            attr: name.into(),
            op: op as i32,
            values,
        })),
    }
}
fn seg(name: &str) -> proto::Condition {
    proto::Condition {
        kind: Some(condition::Kind::Segment(name.into())),
    }
}
fn flag(key: &str, variants: &[(&str, &str)]) -> proto::Flag {
    proto::Flag {
        key: key.into(),
        variants: variants
            .iter()
            .map(|(n, v)| proto::Variant {
                name: (*n).into(),
                value_json: (*v).into(),
            })
            .collect(),
        default_variant: variants.first().map(|v| v.0).unwrap_or("on").into(),
        ..Default::default()
    }
}
fn rule(conditions: Vec<proto::Condition>, serve: &str) -> proto::TargetingRule {
    proto::TargetingRule {
        conditions,
        serve: Some(targeting_rule::Serve::Variant(serve.into())),
    }
}
fn ruleset(flags: Vec<proto::Flag>) -> proto::Ruleset {
    proto::Ruleset {
        format: 1,
        environment: "prod".into(),
        version: 3,
        flags,
        ..Default::default()
    }
}
fn bool_flag(key: &str) -> proto::Flag {
    flag(key, &[("on", "true"), ("off", "false")])
}
fn err(rs: &proto::Ruleset) -> CompileError {
    compile(rs).expect_err("must not compile")
}
fn with_rule(cond: proto::Condition) -> proto::Ruleset {
    let mut f = bool_flag("f");
    f.rules.push(rule(vec![cond], "on"));
    ruleset(vec![f])
}

#[test]
fn compiles_names_to_indices() {
    let mut a = bool_flag("a");
    a.client = true;
    let mut b = bool_flag("b");
    b.prerequisites.push(proto::Prerequisite {
        flag: "a".into(),
        variant: "off".into(),
    });
    b.rules.push(rule(vec![seg("staff")], "on"));
    let mut rs = ruleset(vec![a, b]);
    rs.segments.push(proto::Segment {
        name: "staff".into(),
        rules: vec![proto::Conjunction {
            conditions: vec![attr("email", Operator::EndsWith, vec![s("@x.com")])],
        }],
    });
    let m = compile(&rs).unwrap();
    assert_eq!(m.client_flags, vec![0]);
    let b = m.flag("b").unwrap();
    assert_eq!(b.prerequisites[0].flag, 0);
    assert_eq!(b.prerequisites[0].variant, 1);
    assert!(matches!(
        b.rules[0].conditions[0],
        Condition::Segment {
            segment: 0,
            negate: false
        }
    ));
    assert_eq!(b.off, b.default);
}

#[test]
fn unknown_references_name_the_place() {
    let mut f = bool_flag("f");
    f.rules.push(rule(vec![], "maybe"));
    let e = err(&ruleset(vec![f]));
    assert!(
        matches!(&*e.kind, ErrorKind::UnknownVariant { name, .. } if name == "maybe"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "flag `f`, rule 1, field `serve`: unknown variant \"maybe\"; valid: on, off"
    );

    let e = err(&with_rule(seg("nobody")));
    assert_eq!(*e.kind, ErrorKind::UnknownSegment("nobody".into()));
    assert_eq!(e.place.condition, Some(1));

    let mut f = bool_flag("f");
    f.prerequisites.push(proto::Prerequisite {
        flag: "ghost".into(),
        variant: "on".into(),
    });
    assert_eq!(
        *err(&ruleset(vec![f])).kind,
        ErrorKind::UnknownFlag("ghost".into())
    );
}

#[test]
fn cycles_are_rejected() {
    let mut a = bool_flag("a");
    let mut b = bool_flag("b");
    a.prerequisites.push(proto::Prerequisite {
        flag: "b".into(),
        variant: "on".into(),
    });
    b.prerequisites.push(proto::Prerequisite {
        flag: "a".into(),
        variant: "on".into(),
    });
    let e = err(&ruleset(vec![a, b]));
    assert_eq!(*e.kind, ErrorKind::PrerequisiteCycle("a -> b -> a".into()));

    let mut self_loop = bool_flag("s");
    self_loop.prerequisites.push(proto::Prerequisite {
        flag: "s".into(),
        variant: "on".into(),
    });
    assert!(matches!(
        *err(&ruleset(vec![self_loop])).kind,
        ErrorKind::PrerequisiteCycle(_)
    ));

    let mut rs = ruleset(vec![]);
    for (name, other) in [("x", "y"), ("y", "x")] {
        rs.segments.push(proto::Segment {
            name: name.into(),
            rules: vec![proto::Conjunction {
                conditions: vec![seg(other)],
            }],
        });
    }
    assert_eq!(
        *err(&rs).kind,
        ErrorKind::SegmentCycle("x -> y -> x".into())
    );
}

#[test]
fn layered_shared_prerequisites_or_segments_are_rejected() {
    // 20 layers of two flags, each requiring both flags of the next layer:
    // deciding the top tests 2^20 paths.
    let layers = 20;
    let name = |layer: usize, k: usize| format!("l{layer}-{k}");
    let mut flags = Vec::new();
    for layer in 0..layers {
        for k in 0..2 {
            let mut f = bool_flag(&name(layer, k));
            if layer + 1 < layers {
                for next in 0..2 {
                    f.prerequisites.push(proto::Prerequisite {
                        flag: name(layer + 1, next),
                        variant: "on".into(),
                    });
                }
            }
            flags.push(f);
        }
    }
    let e = err(&ruleset(flags));
    assert!(matches!(*e.kind, ErrorKind::TooCostly { visits } if visits > MAX_FLAG_COST));
    assert!(e.to_string().starts_with("flag `l0-0`"), "{e}");
    assert!(e.to_string().contains("flatten them"), "{e}");

    // The same with segments, under one flag.
    let mut rs = with_rule(seg("s0"));
    for layer in 0..layers {
        let conditions = if layer + 1 < layers {
            vec![
                seg(&format!("s{}", layer + 1)),
                seg(&format!("s{}", layer + 1)),
            ]
        } else {
            vec![attr("a", Operator::Exists, vec![])]
        };
        rs.segments.push(proto::Segment {
            name: format!("s{layer}"),
            rules: vec![proto::Conjunction { conditions }],
        });
    }
    let e = err(&rs);
    assert!(matches!(*e.kind, ErrorKind::TooCostly { .. }), "{e}");

    // Wide sharing without layers is fine: 500 flags requiring one base.
    let mut flags = vec![bool_flag("base")];
    for i in 0..500 {
        let mut f = bool_flag(&format!("f{i}"));
        f.prerequisites.push(proto::Prerequisite {
            flag: "base".into(),
            variant: "on".into(),
        });
        flags.push(f);
    }
    compile(&ruleset(flags)).expect("flat sharing compiles");

    // Each flag within its own limit, the whole ruleset not: 200 flags
    // each requiring a base that tests 10,000 conditions (in one rule).
    let mut base = bool_flag("base");
    base.rules.push(rule(
        (0..10_000)
            .map(|_| attr("a", Operator::Exists, vec![]))
            .collect(),
        "on",
    ));
    let mut flags = vec![base];
    for i in 0..200 {
        let mut f = bool_flag(&format!("f{i}"));
        f.prerequisites.push(proto::Prerequisite {
            flag: "base".into(),
            variant: "on".into(),
        });
        flags.push(f);
    }
    let e = err(&ruleset(flags.clone()));
    assert!(matches!(*e.kind, ErrorKind::RulesetTooCostly { .. }), "{e}");
    assert!(
        e.to_string().starts_with("ruleset: evaluating every flag"),
        "{e}"
    );
    // A disabled flag costs one step, and so do its prerequisites.
    for f in flags.iter_mut().skip(1) {
        f.disabled = true;
    }
    compile(&ruleset(flags)).expect("disabled flags look at nothing");
}

#[test]
fn operands_are_typed_and_parsed() {
    let cases = [
        (
            attr("a", Operator::Contains, vec![i(1)]),
            "needs string values",
        ),
        (attr("a", Operator::Matches, vec![s("(")]), "invalid regex"),
        (
            attr("a", Operator::SemverGte, vec![s("1.x")]),
            "invalid semver",
        ),
        (
            attr("a", Operator::Before, vec![s("2026-01-01 00:00:00Z")]),
            "invalid timestamp",
        ),
        (attr("a", Operator::Lt, vec![s("5")]), "needs number values"),
        (attr("a", Operator::In, vec![]), "needs at least one value"),
        (attr("a", Operator::Exists, vec![s("x")]), "takes no values"),
        (attr("", Operator::Eq, vec![s("x")]), "missing field"),
        (
            proto::Condition {
                kind: Some(condition::Kind::Attribute(proto::AttributeTest {
                    attr: "a".into(),
                    op: 999,
                    values: vec![s("x")],
                })),
            },
            "unknown operator",
        ),
    ];
    for (cond, want) in cases {
        let e = err(&with_rule(cond));
        assert!(e.to_string().contains(want), "{e} should contain {want}");
        assert_eq!(e.place.rule, Some(1), "{e}");
    }
    compile(&with_rule(attr(
        "t",
        Operator::After,
        vec![i(1_700_000_000_000)],
    )))
    .unwrap();
}

#[test]
fn variants_must_share_a_type_and_be_unique() {
    let e = err(&ruleset(vec![flag("f", &[("a", "1"), ("b", "\"x\"")])]));
    assert!(
        matches!(*e.kind, ErrorKind::MixedVariantTypes { .. }),
        "{e}"
    );
    compile(&ruleset(vec![flag("f", &[("a", "1"), ("b", "2.5")])])).unwrap();
    compile(&ruleset(vec![flag("f", &[("a", "{}"), ("b", "[1]")])])).unwrap();
    let e = err(&ruleset(vec![flag("f", &[("a", "1"), ("a", "2")])]));
    assert!(matches!(*e.kind, ErrorKind::Duplicate { .. }));
    assert!(matches!(
        *err(&ruleset(vec![flag("f", &[])])).kind,
        ErrorKind::NoVariants
    ));
    let e = err(&ruleset(vec![flag("f", &[("a", "null")])]));
    assert!(matches!(*e.kind, ErrorKind::BadValue(_)));
    let e = err(&ruleset(vec![bool_flag("f"), bool_flag("f")]));
    assert!(matches!(*e.kind, ErrorKind::Duplicate { what: "flag", .. }));
}

#[test]
fn weights_are_bounded() {
    let mk = |weights: &[(&str, u64)]| {
        let mut f = bool_flag("f");
        f.rules.push(proto::TargetingRule {
            conditions: vec![],
            serve: Some(targeting_rule::Serve::Rollout(proto::Rollout {
                by: String::new(),
                salt: None,
                weights: weights
                    .iter()
                    .map(|(v, w)| proto::Weight {
                        variant: (*v).into(),
                        weight: *w,
                    })
                    .collect(),
            })),
        });
        ruleset(vec![f])
    };
    let m = compile(&mk(&[("on", 25), ("off", 75)])).unwrap();
    let model::Serve::Rollout(r) = &m.flags[0].rules[0].serve else {
        panic!("rollout expected")
    };
    assert_eq!(r.buckets, vec![(0, 25), (1, 100)]);
    assert_eq!(r.salt_prefix, b"f:");
    assert_eq!(&*r.by.name, "targetingKey");
    compile(&mk(&[("on", 1 << 32), ("off", 0)])).unwrap();
    for bad in [
        vec![("on", 0), ("off", 0)],
        vec![("on", 1 << 32), ("off", 1)],
        vec![("on", u64::MAX), ("off", 2)],
        vec![],
        vec![("on", 1), ("on", 1)],
    ] {
        assert!(
            matches!(*err(&mk(&bad)).kind, ErrorKind::BadWeights(_)),
            "{bad:?}"
        );
    }
    assert!(matches!(
        *err(&mk(&[("maybe", 1)])).kind,
        ErrorKind::UnknownVariant { .. }
    ));
}

#[test]
fn keys_and_top_level_are_checked() {
    let mut rs = ruleset(vec![]);
    rs.format = 2;
    assert_eq!(*err(&rs).kind, ErrorKind::UnsupportedFormat(2));
    let mut rs = ruleset(vec![]);
    rs.environment = "bad env".into();
    assert!(matches!(*err(&rs).kind, ErrorKind::BadName { .. }));

    let key = |id: &str, kind: proto::KeyKind, hash: &str, origins: &[&str]| proto::ApiKey {
        id: id.into(),
        kind: kind as i32,
        secret_sha256: hash.into(),
        allowed_origins: origins.iter().map(|o| (*o).into()).collect(),
    };
    let h = "ab".repeat(32);
    let mut rs = ruleset(vec![]);
    rs.keys = vec![
        key(
            "web",
            proto::KeyKind::Frontend,
            &h,
            &["https://app.example.com:8443", "*"],
        ),
        key("api", proto::KeyKind::Backend, &h, &[]),
    ];
    let m = compile(&rs).unwrap();
    assert_eq!(m.keys["web"].kind, model::KeyKind::Frontend);
    assert_eq!(m.keys["api"].secret_sha256, [0xab; 32]);

    for (bad, want) in [
        (
            key("api", proto::KeyKind::Backend, "abc", &[]),
            "secret_sha256",
        ),
        (
            key("api", proto::KeyKind::Backend, &h, &["*"]),
            "allowed origin",
        ),
        (
            key("web", proto::KeyKind::Frontend, &h, &["https://x.com/path"]),
            "allowed origin",
        ),
        (key("web", proto::KeyKind::Unspecified, &h, &[]), "key kind"),
        (
            key("a.b", proto::KeyKind::Backend, &h, &[]),
            "invalid key id",
        ),
    ] {
        let mut rs = ruleset(vec![]);
        rs.keys = vec![bad];
        let e = err(&rs);
        assert!(e.to_string().contains(want), "{e} should contain {want}");
    }
    let mut rs = ruleset(vec![]);
    rs.keys = vec![
        key("a", proto::KeyKind::Backend, &h, &[]),
        key("a", proto::KeyKind::Backend, &h, &[]),
    ];
    assert!(matches!(*err(&rs).kind, ErrorKind::Duplicate { .. }));
}

#[test]
fn suggestions_only_when_close() {
    use super::error::closest;
    let ops = ["eq", "neq", "in", "semver_gt", "semver_gte", "starts_with"];
    let near = |name| closest(name, ops.iter().copied());
    assert_eq!(near("semver_greater"), Some("semver_gt"));
    assert_eq!(near("semver_gtee"), Some("semver_gte"));
    assert_eq!(near("startswith"), Some("starts_with"));
    assert_eq!(near("IN"), Some("in"));
    assert_eq!(near("equals"), Some("eq"));
    assert_eq!(near("banana"), None);
    assert_eq!(near(""), None);
    let variants = ["on", "off", "Big"];
    let near = |name| closest(name, variants.iter().copied());
    assert_eq!(near("of"), Some("off"));
    assert_eq!(near("BIG"), Some("Big"));
    assert_eq!(near("maybe"), None);
}
