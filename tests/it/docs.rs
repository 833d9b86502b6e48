//! The docs stay true: every YAML example in `docs/format.md` and `README.md`
//! compiles, every operator the compiler knows is documented, and the messages
//! the format reference promises (unknown operator or variant with a
//! suggestion, the no-keys warning) are what users get.
//!
//! Fences: a block fenced as ```` ```yaml ```` must be a whole ruleset and is
//! compiled with `compile_yaml`; a block that shows only a piece (a rule, a
//! `serve:`) is fenced as ```` ```yaml fragment ```` and is skipped.

use std::path::Path;
use std::process::Command;

use flagbelt::ruleset::authoring::{AuthoringError, compile_yaml};
use flagbelt::ruleset::operator::Spec;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The bodies of the fenced blocks whose info string is exactly `info`, with
/// the line each starts on (1-based, the fence line).
fn fenced(text: &str, info: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String, bool)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                if let Some(rest) = trimmed.strip_prefix("```") {
                    open = Some((n + 1, String::new(), rest.trim() == info));
                }
            }
            Some((start, body, wanted)) => {
                if trimmed.starts_with("```") {
                    if *wanted {
                        out.push((*start, std::mem::take(body)));
                    }
                    open = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "an unclosed fence");
    out
}

#[test]
fn every_yaml_example_in_the_docs_compiles() {
    let mut compiled = 0;
    for file in ["docs/format.md", "README.md"] {
        for (line, yaml) in fenced(&read(file), "yaml") {
            if let Err(e) = compile_yaml(&yaml, 1) {
                panic!("{file}:{line}: the example does not compile: {e}\n{yaml}");
            }
            compiled += 1;
        }
    }
    // The reference has at least the whole ruleset and the operator table.
    assert!(compiled >= 2, "only {compiled} examples found");
}

#[test]
fn every_operator_is_documented() {
    let doc = read("docs/format.md");
    let missing: Vec<&str> = Spec::all()
        .map(|s| s.name)
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "docs/format.md lacks {missing:?}");
    // ...and has a `yaml` example using each.
    let examples: String = fenced(&doc, "yaml").into_iter().map(|(_, y)| y).collect();
    let unused: Vec<&str> = Spec::all()
        .map(|s| s.name)
        .filter(|name| {
            !examples.contains(&format!("op: {name},"))
                && !examples.contains(&format!("op: {name}}}"))
        })
        .collect();
    assert!(unused.is_empty(), "no compiled example uses {unused:?}");
}

const FLAG: &str = "environment: e
version: 1
flags:
  f:
    variants: {on: true, off: false}
    default: off
";

fn message(yaml: &str) -> String {
    let e = compile_yaml(yaml, 1).expect_err("must not compile");
    assert!(matches!(e, AuthoringError::Invalid { .. }), "{e}");
    e.to_string()
}

#[test]
fn an_unknown_operator_lists_the_valid_ones_and_suggests_a_close_one() {
    let valid = Spec::all().map(|s| s.name).collect::<Vec<_>>().join(", ");
    let with_op = |op: &str| {
        format!(
            "{FLAG}    rules:\n      - when: [{{attr: v, op: {op}, values: [\"1.0.0\"]}}]\n        serve: on\n"
        )
    };
    for (typed, meant) in [
        ("semver_greater", "semver_gt"),
        ("semver_gtee", "semver_gte"),
        ("startswith", "starts_with"),
        ("IN", "in"),
        ("equals", "eq"),
    ] {
        let e = message(&with_op(typed));
        assert!(
            e.ends_with(&format!(
                "unknown operator \"{typed}\"; did you mean `{meant}`? valid: {valid}"
            )),
            "{e}"
        );
    }
    // Nothing close: the list only, no wild guess.
    let e = message(&with_op("banana"));
    assert!(
        e.ends_with(&format!("unknown operator \"banana\"; valid: {valid}")),
        "{e}"
    );
}

#[test]
fn an_unknown_variant_lists_the_flags_variants_and_suggests_a_close_one() {
    let cases = [
        (
            "    off: of\n",
            "unknown variant \"of\"; did you mean `off`? valid: on, off",
        ),
        (
            "    rules:\n      - serve: no\n",
            "unknown variant \"no\"; valid: on, off",
        ),
        (
            "    rules:\n      - serve: {rollout: {weights: {on: 1, offf: 1}}}\n",
            "unknown variant \"offf\"; did you mean `off`? valid: on, off",
        ),
    ];
    for (extra, want) in cases {
        let e = message(&format!("{FLAG}{extra}"));
        assert!(e.ends_with(want), "{e}");
    }
    let e = message(&FLAG.replace("default: off", "default: onn"));
    assert!(
        e.ends_with("unknown variant \"onn\"; did you mean `on`? valid: on, off"),
        "{e}"
    );
    let prereq = format!(
        "{FLAG}  g:\n    variants: {{a: 1, b: 2}}\n    default: a\n    requires: [{{flag: f, variant: yes}}]\n"
    );
    let e = message(&prereq);
    assert!(
        e.ends_with("unknown variant \"yes\" of flag \"f\"; valid: on, off"),
        "{e}"
    );
}

#[test]
fn a_ruleset_without_keys_compiles_and_the_cli_warns_that_nobody_can_call_it() {
    let (_, model) = compile_yaml(FLAG, 1).expect("compiles without keys");
    assert_eq!(model.keys().len(), 0);

    let tmp = tempfile::tempdir().unwrap();
    let yaml = tmp.path().join("flags.yaml");
    std::fs::write(&yaml, FLAG).unwrap();
    let run = |file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_flagbelt"))
            .arg("compile")
            .arg(file)
            .arg("--out")
            .arg(tmp.path().join("out"))
            .output()
            .expect("flagbelt runs")
    };
    let out = run(&yaml);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("warning: environment e has no API keys: nobody can call it"),
        "{stderr}"
    );

    // The demo has keys: no warning.
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.yaml");
    let out = run(&demo);
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}
