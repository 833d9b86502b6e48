//! Failures say why (issue 9, section 2): each mistake a newcomer makes gets a
//! message that names it and says what to do, checked through the binary.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn flagbelt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args(args)
        .output()
        .expect("flagbelt runs")
}

fn ok(args: &[&str]) {
    let out = flagbelt(args);
    assert!(
        out.status.success(),
        "flagbelt {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command that must fail; returns its stdout and stderr.
fn fails(args: &[&str]) -> (String, String) {
    let out = flagbelt(args);
    assert!(!out.status.success(), "flagbelt {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn file_url(p: &Path) -> String {
    url::Url::from_directory_path(p)
        .expect("an absolute path")
        .to_string()
}

/// The demo compiled into `<tmp>/out`, signed by `<tmp>/signer.key`; also a
/// second key pair `<tmp>/other.*` that did not sign it.
fn signed_layout(tmp: &Path) -> PathBuf {
    ok(&["keys", "signing-new", "--out", s(&tmp.join("signer"))]);
    ok(&["keys", "signing-new", "--out", s(&tmp.join("other"))]);
    let out = tmp.join("out");
    let yaml = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.yaml");
    ok(&[
        "compile",
        s(&yaml),
        "--out",
        s(&out),
        "--signing-key",
        s(&tmp.join("signer.key")),
    ]);
    out
}

#[test]
fn fetch_says_why_an_environment_was_rejected_or_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = signed_layout(tmp.path());
    let source = file_url(&out);
    let fetch_trusting = |key: &Path| {
        fails(&[
            "fetch",
            "--source",
            &source,
            "--env",
            "demo",
            "--public-key",
            s(key),
        ])
        .1
    };
    let err = fetch_trusting(&tmp.path().join("other.pub"));
    assert!(err.contains("rejected"), "{err}");
    assert!(err.contains("signature"), "{err}");

    // Corrupt ruleset bytes: the digest is named.
    let ruleset = out.join("demo/rulesets/1.pb");
    let mut bytes = std::fs::read(&ruleset).unwrap();
    bytes[10] ^= 0x55;
    std::fs::write(&ruleset, &bytes).unwrap();
    let err = fetch_trusting(&tmp.path().join("signer.pub"));
    assert!(err.contains("rejected"), "{err}");
    assert!(
        err.to_lowercase().contains("sha-256") || err.contains("digest"),
        "{err}"
    );

    // No such environment: the exact manifest path looked for.
    let (_, err) = fails(&["fetch", "--source", &source, "--env", "nope"]);
    let want = format!("{}nope/manifest.pb", source);
    assert!(err.contains(&want), "{want} not in {err}");
}

#[test]
fn a_path_where_a_url_is_wanted_suggests_the_file_url() {
    let (_, err) = fails(&["fetch", "--source", "/srv/flags", "--env", "demo"]);
    assert!(err.contains("did you mean `file:///srv/flags`?"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let out = signed_layout(tmp.path());
    let (_, err) = fails(&["publish", s(&out), "--to", "/tmp/x"]);
    assert!(err.contains("did you mean `file:///tmp/x`?"), "{err}");

    // A file:// folder that does not exist: say to create it.
    let missing = tmp.path().join("store");
    let (_, err) = fails(&["publish", s(&out), "--to", &file_url(&missing)]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        err.contains(&format!("mkdir -p {}", missing.display())),
        "{err}"
    );
}

#[test]
fn demo_on_a_busy_port_fails_before_printing_and_suggests_listen() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args(["demo", "--listen", &addr])
        .env("TMPDIR", tmp.path())
        .output()
        .expect("flagbelt runs");
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && err.contains("--listen"), "{err}");
    // Nothing left behind in the temp dir either.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// `serve` with no `--public-key` warns that signatures are not checked, and a
/// preloaded environment no source has is named by its manifest path.
#[test]
fn serve_warns_without_a_public_key_and_names_missing_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let out = signed_layout(tmp.path());
    let source = file_url(&out);
    let mut child = Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args([
            "serve",
            "--source",
            &source,
            "--listen",
            "127.0.0.1:0",
            "--preload",
            "demo,nope",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.expect("text");
        let done = line.contains("serving");
        seen.push(line);
        if done || seen.len() > 200 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    let warned = seen
        .iter()
        .filter(|l| l.contains("signatures are not checked"))
        .count();
    assert_eq!(warned, 1, "{text}");
    assert!(
        text.contains(&format!("{source}nope/manifest.pb")),
        "{text}"
    );
}

/// An S3 source with no credentials at all says so before any network call
/// (the instance-metadata service is switched off, as the AWS SDKs allow), not
/// with a raw error from the metadata address.
#[test]
fn an_s3_source_without_credentials_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args([
            "fetch",
            "--source",
            "s3://some-bucket/flags",
            "--env",
            "demo",
        ])
        // No AWS_* of the test environment (scripts/test sets dummy keys).
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("flagbelt runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no AWS credentials found"), "{err}");
    assert!(
        err.contains("AWS_ACCESS_KEY_ID") && err.contains("anonymous=true"),
        "{err}"
    );
}

/// `serve` on a source that holds no environments says so at start, with the
/// path it looked for; requests for an environment no source has are logged
/// once per name (the negative cache's time), with the manifest path.
#[test]
fn serve_says_when_a_source_holds_no_environments() {
    use std::io::{Read as _, Write as _};
    let tmp = tempfile::tempdir().unwrap();
    let source = file_url(tmp.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args(["serve", "--source", &source, "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("flagbelt listening on http://")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let key = format!("fbp.nope.web.{}", "A".repeat(43));
    for _ in 0..3 {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            conn,
            "GET /v1/eval/{key}/e30 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
    let _ = child.kill();
    let mut text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = child.wait();
    assert!(text.contains("holds no environments"), "{text}");
    assert!(
        text.contains(&format!("{source}<env>/manifest.pb")),
        "{text}"
    );
    let nope = format!("{source}nope/manifest.pb");
    assert_eq!(text.matches(&nope).count(), 1, "{text}");
}

/// Where instance metadata is not switched off, an S3 source with no
/// credentials asks the metadata service; when that gives none, the error
/// says "no AWS credentials" rather than a raw connection error. Every
/// address is on loopback: the metadata address and the endpoint are ports
/// on which nothing listens.
#[test]
fn an_s3_source_whose_metadata_service_gives_no_credentials_says_so() {
    let closed = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let metadata = format!("http://127.0.0.1:{}", closed());
    let source = format!(
        "s3://some-bucket/flags?endpoint=http://127.0.0.1:{}&allow_http=true",
        closed()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args(["fetch", "--source", &source, "--env", "demo"])
        .env_clear()
        .env("AWS_METADATA_ENDPOINT", &metadata)
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("flagbelt runs");
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("no AWS credentials found"), "{all}");
    assert!(
        all.contains(&metadata) && all.contains("anonymous=true"),
        "{all}"
    );
}
