//! Runs the published, language-neutral test vectors (`tests/vectors/*.json`)
//! against the engine: YAML compiled by `ruleset::authoring`, every case's context
//! evaluated with `eval::evaluate_all`, and each expected flag's value, variant
//! and reason compared. The file format is described in `tests/vectors/README.md`.
//!
//! All mismatches across all files are collected and reported at once, so one
//! engine bug does not hide the next. The total case count is asserted, so a
//! missing or renamed folder cannot pass silently.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use flagbelt::eval::{self, Audience};
use flagbelt::ruleset::authoring;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The published vectors hold more than this many cases; fewer means files were lost.
const MIN_CASES: usize = 150;

/// One `tests/vectors/*.json` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    /// What the file pins.
    #[allow(dead_code)]
    description: String,
    /// The authoring YAML: one string, or an array of lines joined with `\n`.
    yaml: YamlText,
    /// The cases, all evaluated against `yaml`.
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum YamlText {
    Text(String),
    Lines(Vec<String>),
}

impl YamlText {
    fn text(&self) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::Lines(lines) => {
                let mut t = lines.join("\n");
                t.push('\n');
                t
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Free text for readers (e.g. the hash behind a rollout expectation).
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
    context: Map<String, Value>,
    /// Flag key -> expected answer; flags not listed are not checked.
    expect: BTreeMap<String, Expected>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    value: Value,
    variant: String,
    reason: String,
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("vectors")
}

/// Every `*.json` file in the vectors folder, parsed, in file-name order.
fn load_all() -> Vec<(String, VectorFile)> {
    let dir = vectors_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no vector files in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let file: VectorFile = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name}: not a vector file: {e}"));
            (name, file)
        })
        .collect()
}

/// JSON equality where numbers are equal only if both are integers with the same
/// value or both are floats with the same value: an engine that turns `10` into
/// `10.0` (or `3.0` into `3`) fails.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let int = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            match (int(x), int(y)) {
                (Some(i), Some(j)) => i == j,
                (None, None) => x.as_f64() == y.as_f64(),
                _ => false,
            }
        }
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| same_json(x, y)))
        }
        _ => a == b,
    }
}

#[test]
fn vectors_yaml_compiles() {
    let mut failures = String::new();
    for (file, vf) in load_all() {
        if let Err(e) = authoring::compile_yaml(&vf.yaml.text(), 0) {
            let _ = writeln!(failures, "  {file}: {e}");
        }
    }
    assert!(
        failures.is_empty(),
        "vector YAML that does not compile:\n{failures}"
    );
}

#[test]
fn vectors_pass() {
    let files = load_all();
    let mut cases = 0usize;
    let mut checks = 0usize;
    let mut mismatches: Vec<String> = Vec::new();

    for (file, vf) in &files {
        let mut names = HashSet::new();
        for case in &vf.cases {
            assert!(
                names.insert(case.name.as_str()),
                "{file}: duplicate case name {:?}",
                case.name
            );
            assert!(
                !case.expect.is_empty(),
                "{file}: case {:?} expects nothing",
                case.name
            );
        }
        cases += vf.cases.len();

        let ruleset = match authoring::compile_yaml(&vf.yaml.text(), 0) {
            Ok((_, ruleset)) => ruleset,
            Err(e) => {
                mismatches.push(format!(
                    "{file}: YAML does not compile ({e}); its {} cases were not run",
                    vf.cases.len()
                ));
                continue;
            }
        };

        for case in &vf.cases {
            let evaluations = eval::evaluate_all(&ruleset, &case.context, Audience::All);
            for (flag, expected) in &case.expect {
                checks += 1;
                let where_ = format!("{file} / {:?} / {flag}", case.name);
                let Some(got) = evaluations.iter().find(|e| e.key() == flag) else {
                    mismatches.push(format!("{where_}: flag missing from evaluate_all"));
                    continue;
                };
                let reason = match serde_json::to_value(got.reason) {
                    Ok(Value::String(s)) => s,
                    other => format!("{other:?}"),
                };
                let got_value: Value =
                    serde_json::from_str(got.value().get()).expect("served values are JSON");
                if !same_json(&got_value, &expected.value)
                    || *got.variant.name != *expected.variant
                    || reason != expected.reason
                {
                    mismatches.push(format!(
                        "{where_}:\n      context  {}\n      expected {} {:?} {}\n      got      {} {:?} {}",
                        Value::Object(case.context.clone()),
                        expected.value,
                        expected.variant,
                        expected.reason,
                        got.value(),
                        got.variant.name,
                        reason,
                    ));
                }
            }
        }
    }

    assert!(
        cases >= MIN_CASES,
        "only {cases} vector cases found in {} (expected at least {MIN_CASES})",
        vectors_dir().display()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {checks} vector checks failed ({cases} cases in {} files):\n  {}",
        mismatches.len(),
        files.len(),
        mismatches.join("\n  ")
    );
}

#[test]
fn same_json_keeps_integers_apart_from_floats() {
    use serde_json::json;
    assert!(same_json(&json!(10), &json!(10)));
    assert!(same_json(&json!(-7), &json!(-7)));
    assert!(same_json(&json!(2.5), &json!(2.5)));
    assert!(!same_json(&json!(10), &json!(10.0)));
    assert!(!same_json(&json!(3.0), &json!(3)));
    assert!(same_json(
        &json!({"a": [1, 0.5, "x"]}),
        &json!({"a": [1, 0.5, "x"]})
    ));
    assert!(!same_json(&json!({"a": [1]}), &json!({"a": [1.0]})));
    assert!(!same_json(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
}
