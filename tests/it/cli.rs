//! The `flagbelt` binary end to end: compile, inspect, eval, keys, and every bad
//! input the foundation issue lists (clear error, non-zero exit, nothing written).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn flagbelt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args(args)
        .output()
        .expect("flagbelt runs")
}

fn ok(args: &[&str]) -> String {
    let out = flagbelt(args);
    assert!(
        out.status.success(),
        "flagbelt {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Runs a command that must fail; returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = flagbelt(args);
    assert!(!out.status.success(), "flagbelt {args:?} should fail");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn demo_yaml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.yaml")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every file below `dir`, relative, sorted (to prove nothing was written).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(
                p.strip_prefix(base)
                    .expect("below base")
                    .display()
                    .to_string(),
            );
            if p.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn compile_inspect_eval_the_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let stdout = ok(&["compile", s(&demo_yaml()), "--out", s(&out)]);
    assert!(stdout.contains("environment demo version 1"), "{stdout}");
    assert_eq!(
        tree(&out),
        [
            "demo",
            "demo/manifest.pb",
            "demo/rulesets",
            "demo/rulesets/1.pb"
        ]
    );

    let m: Value =
        serde_json::from_str(&ok(&["inspect", s(&out.join("demo/manifest.pb"))])).unwrap();
    assert_eq!(m["kind"], "manifest");
    assert_eq!(m["body"]["environment"], "demo");
    assert_eq!(m["body"]["version"], 1);
    assert_eq!(m["body"]["ruleset_path"], "rulesets/1.pb");
    assert_eq!(m["body"]["ruleset_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(m["signatures"], json!([]));

    let r: Value =
        serde_json::from_str(&ok(&["inspect", s(&out.join("demo/rulesets/1.pb"))])).unwrap();
    assert_eq!(r["kind"], "ruleset");
    assert_eq!(r["environment"], "demo");
    let limits = r["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "limits")
        .unwrap();
    assert_eq!(
        limits["variants"][0]["value"],
        json!({"max_items": 10, "burst": 2})
    );
    assert_eq!(r["keys"][0]["kind"], "frontend");

    // The compiled folder and the YAML evaluate alike.
    let ctx = r#"{"targetingKey":"u1","country":"NZ","app":{"version":"2.4.1"},"plan":"pro"}"#;
    let from_dir: Value =
        serde_json::from_str(&ok(&["eval", s(&out), "--context", ctx, "--json"])).unwrap();
    let from_yaml: Value =
        serde_json::from_str(&ok(&["eval", s(&demo_yaml()), "--context", ctx, "--json"])).unwrap();
    assert_eq!(from_dir, from_yaml);
    assert_eq!(from_dir["environment"], "demo");
    assert_eq!(from_dir["version"], 1);
    assert_eq!(
        from_dir["flags"]["new-checkout"],
        json!({"value": true, "variant": "on", "reason": "TARGETING_MATCH"})
    );
    assert_eq!(
        from_dir["flags"]["dark-mode"],
        json!({"value": false, "variant": "off", "reason": "DISABLED"})
    );
    assert_eq!(
        from_dir["flags"]["max-items"],
        json!({"value": 1000, "variant": "big", "reason": "TARGETING_MATCH"})
    );
    assert_eq!(
        from_dir["flags"]["checkout-v2"],
        json!({"value": true, "variant": "on", "reason": "STATIC"})
    );

    // --client hides server-only flags; --flag picks one; the table names reasons.
    let client: Value = serde_json::from_str(&ok(&[
        "eval",
        s(&out),
        "--context",
        ctx,
        "--json",
        "--client",
    ]))
    .unwrap();
    assert!(client["flags"].get("checkout-v2").is_none());
    assert!(client["flags"].get("new-checkout").is_some());
    let table = ok(&[
        "eval",
        s(&demo_yaml()),
        "--context",
        ctx,
        "--flag",
        "banner-text",
    ]);
    assert!(table.contains("banner-text"), "{table}");
    assert!(table.contains("TARGETING_MATCH"), "{table}");
    assert!(table.contains("\"Kia ora\""), "{table}");
    assert_eq!(table.lines().count(), 2, "{table}");
}

#[test]
fn signed_layout_is_verified_on_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("signer");
    let other = tmp.path().join("other");
    ok(&["keys", "signing-new", "--out", s(&key)]);
    ok(&["keys", "signing-new", "--out", s(&other)]);
    let err = fails(&["keys", "signing-new", "--out", s(&key)]);
    assert!(err.contains("already exists"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(tmp.path().join("signer.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let private = tmp.path().join("signer.key");
    let public = tmp.path().join("signer.pub");
    let other_public = tmp.path().join("other.pub");

    let out = tmp.path().join("out");
    let stdout = ok(&[
        "compile",
        s(&demo_yaml()),
        "--out",
        s(&out),
        "--signing-key",
        s(&private),
    ]);
    assert!(stdout.contains("signed by"), "{stdout}");
    let env_dir = out.join("demo");
    ok(&["eval", s(&env_dir), "--public-key", s(&public)]);

    // A wrong signature: the manifest is signed, but not by a trusted key.
    let err = fails(&["eval", s(&env_dir), "--public-key", s(&other_public)]);
    assert!(err.contains("manifest.pb rejected"), "{err}");
    // An environment mismatch.
    let err = fails(&["eval", s(&out), "--env", "prod"]);
    assert!(err.contains("prod"), "{err}");
    let moved = out.join("staging");
    std::fs::rename(&env_dir, &moved).unwrap();
    let err = fails(&["eval", s(&moved), "--public-key", s(&public)]);
    assert!(err.contains("staging") && err.contains("demo"), "{err}");
    std::fs::rename(&moved, &env_dir).unwrap();

    // Corrupt ruleset bytes: the digest no longer matches.
    let ruleset = env_dir.join("rulesets/1.pb");
    let good = std::fs::read(&ruleset).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 0x55;
    std::fs::write(&ruleset, &bad).unwrap();
    let err = fails(&["eval", s(&env_dir), "--public-key", s(&public)]);
    assert!(err.contains("1.pb rejected"), "{err}");
    assert!(
        err.to_lowercase().contains("sha-256") || err.contains("digest"),
        "{err}"
    );
    std::fs::write(&ruleset, &good).unwrap();

    // A truncated manifest.
    let manifest = env_dir.join("manifest.pb");
    let m = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &m[..m.len() / 2]).unwrap();
    let err = fails(&["eval", s(&env_dir), "--public-key", s(&public)]);
    assert!(err.contains("truncated or corrupt"), "{err}");
    let err = fails(&["inspect", s(&manifest)]);
    assert!(err.contains("truncated or corrupt"), "{err}");

    // A garbage key file.
    std::fs::write(tmp.path().join("junk.pub"), "not a key").unwrap();
    let err = fails(&[
        "eval",
        s(&env_dir),
        "--public-key",
        s(&tmp.path().join("junk.pub")),
    ]);
    assert!(err.contains("junk.pub is not a usable public key"), "{err}");
}

#[test]
fn bad_yaml_is_a_clear_error_and_writes_nothing() {
    let base = std::fs::read_to_string(demo_yaml()).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed YAML", "environment: demo\nflags: [\n".into(), "line"),
        (
            "unknown operator",
            base.replace("op: in, values: [NZ, AU]", "op: inside, values: [NZ, AU]"),
            "unknown operator",
        ),
        (
            "unknown variant",
            base.replace("        serve: c\n", "        serve: d\n"),
            "unknown variant",
        ),
        (
            "unknown segment",
            base.replace("{segment: beta-testers}", "{segment: nobody}"),
            "unknown segment",
        ),
        (
            "unknown flag",
            base.replace("{flag: checkout-v2, variant: on}", "{flag: checkout-v3, variant: on}"),
            "unknown flag",
        ),
        (
            "bad regex",
            base.replace(
                "{attr: beta, op: eq, values: [true]}",
                "{attr: email, op: matches, values: [\"(\"]}",
            ),
            "invalid regex",
        ),
        (
            "bad semver",
            base.replace("values: [\"2.3.0\"]", "values: [\"2.x\"]"),
            "invalid semver",
        ),
        (
            "bad timestamp",
            base.replace("2024-01-01T00:00:00Z", "2024-01-01 00:00:00Z"),
            "invalid timestamp",
        ),
        (
            "prerequisite cycle",
            base.replace(
                "    variants: {on: true, off: false}\n    default: on\n  new-checkout:",
                "    variants: {on: true, off: false}\n    default: on\n    requires: [{flag: new-checkout, variant: on}]\n  new-checkout:",
            ),
            "prerequisite cycle",
        ),
        (
            "mixed variant types",
            base.replace("{small: 10, big: 1000}", "{small: 10, big: \"1000\"}"),
            "mix types",
        ),
        (
            "duplicate keys",
            base.replace("  dark-mode:\n", "  banner-text:\n"),
            "duplicate",
        ),
    ];
    for (what, yaml, want) in cases {
        assert_ne!(yaml, base, "{what}: the replacement did not apply");
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("flags.yaml");
        std::fs::write(&file, &yaml).unwrap();
        let out = tmp.path().join("out");
        let err = fails(&["compile", s(&file), "--out", s(&out)]);
        assert!(err.contains(want), "{what}: {err}");
        assert!(
            err.contains("flags.yaml"),
            "{what}: the error names the file: {err}"
        );
        assert!(!out.exists(), "{what}: nothing may be written");
    }
}

#[test]
fn versions_are_immutable_and_never_go_back_silently() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let base = std::fs::read_to_string(demo_yaml()).unwrap();
    let write = |name: &str, yaml: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, yaml).unwrap();
        p
    };
    let v1 = write("v1.yaml", &base);
    let v1_changed = write("v1b.yaml", &base.replace("default: small", "default: big"));
    let v2 = write("v2.yaml", &base.replace("version: 1", "version: 2"));
    ok(&["compile", s(&v1), "--out", s(&out)]);
    // Same version, same content: idempotent.
    ok(&["compile", s(&v1), "--out", s(&out)]);
    let before = tree(&out);
    let err = fails(&["compile", s(&v1_changed), "--out", s(&out)]);
    assert!(err.contains("immutable"), "{err}");
    assert_eq!(tree(&out), before);
    ok(&["compile", s(&v2), "--out", s(&out)]);
    let manifest_v2 = std::fs::read(out.join("demo/manifest.pb")).unwrap();
    let err = fails(&["compile", s(&v1), "--out", s(&out)]);
    assert!(err.contains("--rollback"), "{err}");
    assert_eq!(
        std::fs::read(out.join("demo/manifest.pb")).unwrap(),
        manifest_v2
    );
    ok(&["compile", s(&v1), "--out", s(&out), "--rollback"]);
    let m: Value =
        serde_json::from_str(&ok(&["inspect", s(&out.join("demo/manifest.pb"))])).unwrap();
    assert_eq!(m["body"]["version"], 1);
    assert_eq!(m["body"]["rollback"], true);
    // No temp folders are left behind.
    assert!(
        tree(&out).iter().all(|p| !p.contains("tmp")),
        "{:?}",
        tree(&out)
    );
}

#[test]
fn keys_new_prints_a_working_key_and_stanza() {
    let out = ok(&[
        "keys", "new", "--env", "prod", "--id", "api", "--kind", "backend",
    ]);
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("a key line")
        .to_owned();
    assert!(token.starts_with("fbs.prod.api."), "{out}");
    let stanza = out
        .lines()
        .find(|l| l.starts_with("- {id: api"))
        .expect("a stanza");
    let yaml = format!(
        "environment: prod\nversion: 1\nkeys:\n  {stanza}\nflags:\n  f:\n    variants: {{on: true}}\n    default: on\n"
    );
    let (_, model) = flagbelt::ruleset::authoring::compile_yaml(&yaml, 0).unwrap();
    let presented = flagbelt::ruleset::keys::PresentedKey::parse(&token).unwrap();
    assert!(presented.matches(model.key("api").unwrap()));

    let err = fails(&[
        "keys", "new", "--env", "bad env", "--id", "api", "--kind", "backend",
    ]);
    assert!(err.contains("env"), "{err}");
    let front = ok(&[
        "keys", "new", "--env", "prod", "--id", "web", "--kind", "frontend",
    ]);
    assert!(front.contains("key: fbp.prod.web."), "{front}");
    assert!(front.contains("allowed_origins"), "{front}");
}

#[test]
fn eval_rejects_bad_arguments() {
    let demo = demo_yaml();
    let err = fails(&["eval", s(&demo), "--flag", "nope"]);
    assert!(err.contains("no flag \"nope\""), "{err}");
    let err = fails(&["eval", s(&demo), "--flag", "checkout-v2", "--client"]);
    assert!(err.contains("not client-visible"), "{err}");
    let err = fails(&["eval", s(&demo), "--context", "[1,2]"]);
    assert!(err.contains("--context"), "{err}");
    let err = fails(&["eval", s(&demo), "--context", "{\"a\":"]);
    assert!(err.contains("--context"), "{err}");
    let err = fails(&["eval", "/definitely/not/here.yaml"]);
    assert!(err.contains("cannot read"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = fails(&["eval", s(empty.path())]);
    assert!(err.contains("no <env>/manifest.pb"), "{err}");
}

/// `flagbelt demo`, the README's first command: it starts, prints calls that
/// work as printed, and serves the bundled environment.
/// `flagbelt demo` on a free port: the process, its port, its temp folder
/// and the lines it printed up to "listening".
fn start_demo() -> (std::process::Child, u16, tempfile::TempDir, Vec<String>) {
    use std::io::BufRead as _;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    // The demo's store goes to the temp dir; a killed demo cannot remove it,
    // so it goes to a folder of this test's.
    let tmp = tempfile::tempdir().expect("a temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("demo starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("the demo prints text");
        let done = line.starts_with("flagbelt listening on");
        printed.push(line);
        if done {
            break;
        }
        assert!(printed.len() < 100, "no listening line: {printed:?}");
    }
    (child, port, tmp, printed)
}

/// Sends `request` as is and reads the answer until the server closes.
fn raw_http(port: u16, request: &[u8]) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the server listens");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("a read timeout");
    // The server may answer and close before reading everything we send.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn oversized_or_too_many_request_headers_get_431() {
    let (mut child, port, _tmp, _) = start_demo();
    let many: String = (0..150).map(|i| format!("X-Filler-{i}: 1\r\n")).collect();
    let too_many = raw_http(
        port,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n").as_bytes(),
    );
    let huge = "a".repeat(512 * 1024);
    let too_large = raw_http(
        port,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let fine = raw_http(
        port,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(too_many.starts_with("HTTP/1.1 431"), "{too_many}");
    assert!(
        too_large.starts_with("HTTP/1.1 431"),
        "{}",
        &too_large[..too_large.len().min(200)]
    );
    assert!(
        fine.starts_with("HTTP/1.1 200"),
        "the server survived: {fine}"
    );
}

#[test]
fn demo_serves_the_bundled_environment_and_prints_working_calls() {
    use std::io::{Read as _, Write as _};
    let (mut child, port, _tmp, printed) = start_demo();
    let url = printed
        .iter()
        .find_map(|l| l.trim().strip_prefix("curl -i "))
        .expect("a GET example")
        .to_owned();
    assert!(
        printed.iter().any(|l| l.contains("fbs.demo.api.")),
        "{printed:?}"
    );
    let path = url
        .strip_prefix(&format!("http://127.0.0.1:{port}"))
        .expect("the example targets the listener");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.to_lowercase().contains("cache-control: public"),
        "{response}"
    );
    assert!(
        response
            .contains(r#""new-checkout":{"value":true,"variant":"on","reason":"TARGETING_MATCH"}"#),
        "{response}"
    );
}

#[test]
fn help_describes_each_subcommand_on_its_own_line() {
    let help = ok(&["--help"]);
    let line = |cmd: &str| {
        help.lines()
            .find(|l| l.trim_start().starts_with(&format!("{cmd} ")))
            .unwrap_or_else(|| panic!("no line for {cmd} in:\n{help}"))
            .to_owned()
    };
    assert!(line("serve").contains("Run the edge server"), "{help}");
    assert!(line("demo").contains("demo environment"), "{help}");
    for cmd in ["compile", "inspect", "eval", "fetch", "keys", "publish"] {
        assert!(
            line(cmd).len() > cmd.len() + 10,
            "{cmd} has no summary:\n{help}"
        );
    }
}

#[test]
fn publish_refuses_a_rollback_decided_before_the_store_moved_on() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let to = format!("file://{}", s(&store));
    let compile = |version: u64, out: &str, rollback: bool| {
        let src = tmp.path().join(format!("v{version}.yaml"));
        std::fs::write(
            &src,
            format!("environment: prod\nversion: {version}\nflags:\n  f:\n    variants: {{a: 1, b: 2}}\n    default: a\n"),
        )
        .unwrap();
        let out = tmp.path().join(out);
        let mut args = vec!["compile", s(&src), "--out", s(&out)];
        if rollback {
            args.push("--rollback");
        }
        ok(&args);
        out
    };
    // A rollback to v19 is compiled, then v20 is published after it.
    let early_rollback = compile(19, "early", true);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let v20 = compile(20, "v20", false);
    ok(&["publish", s(&v20), "--to", &to]);

    let out = flagbelt(&["publish", s(&early_rollback), "--to", &to]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("never replayed"), "{stdout}");
    assert_eq!(
        std::fs::read(store.join("prod/manifest.pb")).unwrap(),
        std::fs::read(v20.join("prod/manifest.pb")).unwrap()
    );

    // The same rollback decided now moves the store back.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let rollback = compile(19, "late", true);
    ok(&["publish", s(&rollback), "--to", &to]);
    assert_eq!(
        std::fs::read(store.join("prod/manifest.pb")).unwrap(),
        std::fs::read(rollback.join("prod/manifest.pb")).unwrap()
    );
}

#[test]
fn publish_never_moves_back_a_store_manifest_it_cannot_verify() {
    use flagbelt::ruleset::{codec, proto};
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir_all(store.join("prod")).unwrap();
    // A newer publisher's manifest: another format, version 30.
    let body = proto::ManifestBody {
        format: 99,
        environment: "prod".into(),
        version: 30,
        ruleset_path: "rulesets/30.pb".into(),
        ruleset_sha256: vec![1; 32],
        ..Default::default()
    };
    let theirs = codec::encode_manifest(&proto::SignedManifest {
        body: prost::Message::encode_to_vec(&body),
        signatures: vec![],
    });
    std::fs::write(store.join("prod/manifest.pb"), &theirs).unwrap();
    let src = tmp.path().join("v20.yaml");
    std::fs::write(
        &src,
        "environment: prod\nversion: 20\nflags:\n  f:\n    variants: {a: 1, b: 2}\n    default: a\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    ok(&["compile", s(&src), "--out", s(&out)]);
    let res = flagbelt(&["publish", s(&out), "--to", &format!("file://{}", s(&store))]);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert_eq!(res.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("the store holds version 30, newer than 20"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(store.join("prod/manifest.pb")).unwrap(),
        theirs
    );
}

/// Runs `flagbelt args` with stdout a pipe whose reader is already gone, as in
/// `flagbelt inspect … | head` once `head` has had enough.
fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args(args)
        .stdout(writer)
        .output()
        .expect("flagbelt runs")
}

#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    ok(&["compile", s(&demo_yaml()), "--out", s(&out)]);
    let manifest = out.join("demo/manifest.pb");
    let source = format!("file://{}", s(&out));
    let runs: Vec<Vec<String>> = vec![
        vec![
            "compile".into(),
            s(&demo_yaml()).into(),
            "--out".into(),
            s(&tmp.path().join("again")).into(),
        ],
        vec!["inspect".into(), s(&manifest).into()],
        vec!["eval".into(), s(&demo_yaml()).into()],
        vec!["eval".into(), s(&demo_yaml()).into(), "--json".into()],
        vec![
            "keys".into(),
            "new".into(),
            "--env".into(),
            "demo".into(),
            "--id".into(),
            "x".into(),
            "--kind".into(),
            "backend".into(),
        ],
        vec![
            "fetch".into(),
            "--source".into(),
            source,
            "--env".into(),
            "demo".into(),
        ],
        vec!["--help".into()],
    ];
    for args in runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let res = with_closed_stdout(&args);
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(res.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

#[test]
fn exit_codes_tell_usage_errors_from_failures() {
    let usage = flagbelt(&["inspect", "--no-such-flag", "x"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("Usage:"));
    assert_eq!(flagbelt(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(flagbelt(&["compile"]).status.code(), Some(2));
    let err = fails(&["inspect", "/no/such/file.pb"]);
    assert!(err.contains("cannot read"), "{err}");
    assert_eq!(flagbelt(&["--version"]).status.code(), Some(0));
}

/// A server started with `args` and a free port: the process and the port it
/// printed. Its stderr is piped, for [`stop_server`].
fn start_server(args: &[&str]) -> (std::process::Child, u16) {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .env_remove("FLAGBELT_LOG_FORMAT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the server starts");
    let stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    for line in stdout.lines() {
        let line = line.expect("text on stdout");
        if let Some(addr) = line.strip_prefix("flagbelt listening on http://") {
            let addr = addr.split_whitespace().next().unwrap_or_default();
            let port = addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
            return (child, port.expect("a port in the listening line"));
        }
    }
    let logs = stop_server(child);
    panic!("the server printed no listening line: {logs}");
}

/// Stops the server and returns everything it logged.
fn stop_server(mut child: std::process::Child) -> String {
    use std::io::Read as _;
    let _ = child.kill();
    let _ = child.wait();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut logs)
        .expect("utf-8 logs");
    logs
}

fn get(port: u16, path: &str) -> String {
    raw_http(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn logs_to_a_pipe_are_plain_and_json_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let (child, port) = start_server(&["demo", "--log-format", "json"]);
    assert!(get(port, "/no/such/route").starts_with("HTTP/1.1 404"));
    assert!(get(port, "/v1/eval/fbp.demo.web.wrong/e30").starts_with("HTTP/1.1 401"));
    let json_logs = stop_server(child);
    assert!(!json_logs.contains("\x1b["), "{json_logs}");
    let lines: Vec<Value> = json_logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "serving"),
        "{json_logs}"
    );

    // Expected answers (404, 401, and 503 from /readyz before the preload)
    // are not errors; the text format to a pipe has no colours.
    let (child, port) = start_server(&[
        "serve",
        "--source",
        &format!("file://{}", s(tmp.path())),
        "--preload",
        "missing",
    ]);
    assert!(get(port, "/readyz").starts_with("HTTP/1.1 503"));
    assert!(get(port, "/no/such/route").starts_with("HTTP/1.1 404"));
    let text_logs = stop_server(child);
    assert!(!text_logs.contains("\x1b["), "{text_logs}");
    assert!(text_logs.contains(" INFO "), "{text_logs}");
    assert!(!text_logs.contains("ERROR"), "{text_logs}");
}

#[test]
fn metrics_explain_themselves() {
    let (child, port) = start_server(&["demo"]);
    assert!(get(port, "/healthz").starts_with("HTTP/1.1 200"));
    let metrics = get(port, "/metrics");
    stop_server(child);
    for name in [
        "flagbelt_http_requests_total",
        "flagbelt_http_request_seconds",
        "flagbelt_env_loads_total",
        "flagbelt_environments_loaded",
    ] {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "no help for {name}:\n{metrics}"
        );
    }
}

#[test]
fn every_subcommand_help_has_an_example_and_fetch_lists_only_its_flags() {
    for cmd in [
        &["compile"][..],
        &["inspect"],
        &["eval"],
        &["fetch"],
        &["keys", "new"],
        &["keys", "signing-new"],
        &["publish"],
        &["serve"],
        &["demo"],
    ] {
        let help = ok(&[cmd, &["--help"]].concat());
        assert!(help.contains("Example"), "{cmd:?}:\n{help}");
        assert!(
            help.contains(&format!("flagbelt {}", cmd.join(" "))),
            "{cmd:?}:\n{help}"
        );
    }
    let fetch = ok(&["fetch", "--help"]);
    for server_only in [
        "--poll-interval-s",
        "--idle-ttl-s",
        "--log-format",
        "--listen",
    ] {
        assert!(!fetch.contains(server_only), "{server_only}:\n{fetch}");
    }
    assert!(fetch.contains("-s, --source"), "{fetch}");
    // Still accepted, so one set of FLAGBELT_* variables serves both commands.
    let tmp = tempfile::tempdir().unwrap();
    let err = fails(&[
        "fetch",
        "-s",
        &format!("file://{}", s(tmp.path())),
        "-e",
        "absent",
        "--poll-interval-s",
        "5",
        "--idle-ttl-s",
        "60",
    ]);
    assert!(err.contains("absent"), "{err}");
}

#[test]
fn short_flags_and_the_key_kind_aliases_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    ok(&["compile", s(&demo_yaml()), "-o", s(&out)]);
    let answer = ok(&[
        "eval",
        s(&out),
        "-e",
        "demo",
        "-c",
        r#"{"targetingKey":"user-1","country":"NZ","app":{"version":"2.4.0"}}"#,
        "-f",
        "new-checkout",
    ]);
    assert!(answer.contains("new-checkout"), "{answer}");
    assert!(
        ok(&[
            "inspect",
            "-k",
            "manifest",
            s(&out.join("demo/manifest.pb"))
        ])
        .contains("demo")
    );
    for (kind, prefix) in [
        ("frontend", "key: fbp."),
        ("public", "key: fbp."),
        ("backend", "key: fbs."),
        ("server", "key: fbs."),
    ] {
        let printed = ok(&["keys", "new", "-e", "demo", "--id", "k", "-k", kind]);
        assert!(printed.starts_with(prefix), "{kind}: {printed}");
    }
}
