//! The README's command samples, run against the binary they describe, so the
//! quick start cannot drift from what `flagbelt` does.
//!
//! Markers in `README.md` (HTML comments: invisible when rendered), each on
//! the line right before a fenced block:
//!
//! - `<!-- readme-test -->` before a ```` ```sh ```` block: the block runs as one
//!   bash script (`set -euo pipefail`) in the repository root and must exit 0
//!   within [`BLOCK_TIMEOUT`]. Blocks run in README order (later ones use what
//!   earlier ones wrote). In the script, `target/release/flagbelt` means this
//!   build's binary, `127.0.0.1:8080` the address of a `flagbelt demo` the test
//!   started on a free port, and `/tmp/` a temporary folder of the test's own
//!   (runs never collide and leave nothing behind).
//! - `<!-- readme-output -->` before a ```` ```text ```` or ```` ```json ````
//!   block: what the last runnable block above it prints on stdout, with the
//!   test's folder written `/tmp`. Text is compared line by line (trailing
//!   spaces ignored), where `…` in an expected line stands for any text (keys,
//!   tokens); JSON as the same sequence of JSON values.
//! - `<!-- readme-output demo -->`: what `flagbelt demo` prints before it
//!   serves, with its port written 8080 (compared as text, as above).
//!
//! Blocks without a marker (cloud stores, a production `serve`) are not run.

use std::fs::File;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest one README block may run (the demo's calls included).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The address the README's samples use for the demo server.
const README_DEMO_ADDR: &str = "127.0.0.1:8080";

/// One fenced block of the README that carries a marker.
#[derive(Debug)]
enum Block {
    /// A runnable `sh` block: its text and its first line number.
    Run { line: usize, script: String },
    /// Expected stdout of the last runnable block (or of the demo when
    /// `demo`): its language (`text` or `json`) and text.
    Output {
        line: usize,
        demo: bool,
        lang: String,
        text: String,
    },
}

/// The marked blocks of `readme`, in order.
fn marked_blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let marker = lines[i].trim();
        let run = marker == "<!-- readme-test -->";
        let output = marker.strip_prefix("<!-- readme-output").map(str::trim);
        if !run && output.is_none() {
            i += 1;
            continue;
        }
        let fence = lines.get(i + 1).copied().unwrap_or_default();
        let lang = fence
            .strip_prefix("```")
            .unwrap_or_else(|| panic!("README line {}: a marker must precede a fence", i + 1));
        let end = (i + 2..lines.len())
            .find(|&j| lines[j].starts_with("```"))
            .unwrap_or_else(|| panic!("README line {}: unclosed block", i + 2));
        let text = lines[i + 2..end].join("\n") + "\n";
        if run {
            assert_eq!(lang, "sh", "README line {}: a runnable block is sh", i + 2);
            blocks.push(Block::Run {
                line: i + 3,
                script: text,
            });
        } else {
            let demo = match output.unwrap_or_default() {
                "-->" => false,
                "demo -->" => true,
                other => panic!("README line {}: unknown marker {other}", i + 1),
            };
            assert!(
                lang == "text" || lang == "json",
                "README line {}: an output block is text or json",
                i + 2
            );
            blocks.push(Block::Output {
                line: i + 3,
                demo,
                lang: lang.to_owned(),
                text,
            });
        }
        i = end + 1;
    }
    blocks
}

/// A child process killed (with its process group) and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        kill_group(&mut self.0);
    }
}

/// Kills `child`'s process group (it was started as its own group leader, so
/// this reaches whatever the script started too) and reaps `child`.
fn kill_group(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Starts `flagbelt demo` on a free port: the guard, its address and what it
/// printed before "flagbelt listening on".
fn start_demo(tmp: &Path) -> (Guard, String, String) {
    use std::os::unix::process::CommandExt as _;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args(["demo", "--listen", &addr])
        // A killed demo cannot remove its store: keep it in the test's folder.
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("flagbelt demo starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = Guard(child);
    let mut printed = String::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("the demo prints text");
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("flagbelt listening on") {
            return (guard, addr, printed);
        }
    }
    panic!("flagbelt demo stopped before listening: {printed}");
}

/// Runs one README block as a bash script with the substitutions of the module
/// doc; returns its stdout with the test's folder written `/tmp`.
fn run_block(script: &str, line: usize, tmp: &Path, demo_addr: &str) -> String {
    use std::os::unix::process::CommandExt as _;
    let tmp_text = tmp.to_str().expect("a UTF-8 temp path");
    // `/tmp/` first: the binary's own path may be below /tmp (a checkout
    // there) and must not be rewritten.
    let script = script
        .replace("/tmp/", &format!("{tmp_text}/"))
        .replace("target/release/flagbelt", env!("CARGO_BIN_EXE_flagbelt"))
        .replace(README_DEMO_ADDR, demo_addr);
    let out_path = tmp.join(format!("block-{line}.out"));
    let err_path = tmp.join(format!("block-{line}.err"));
    let child = Command::new("bash")
        .args(["-c", &format!("set -euo pipefail\n{script}")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TMPDIR", tmp)
        .env("RUST_LOG", "warn")
        // The demo is on loopback: no proxy, no user's `.curlrc` in the way.
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .env("CURL_HOME", tmp)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create the stdout file"))
        .stderr(File::create(&err_path).expect("create the stderr file"))
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let mut guard = Guard(child);
    let deadline = Instant::now() + BLOCK_TIMEOUT;
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait for bash") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "README block at line {line} still runs after {BLOCK_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).expect("read the block's stdout");
    let stderr = std::fs::read_to_string(&err_path).expect("read the block's stderr");
    assert!(
        status.success(),
        "README block at line {line} failed ({status}):\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout.replace(&format!("{tmp_text}/"), "/tmp/")
}

/// Whether `actual` fits `pattern`, where every `…` stands for any text.
fn fits(pattern: &str, actual: &str) -> bool {
    let mut parts = pattern.split('…');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Compares a block's stdout with the README's expected output at `line`.
fn compare(lang: &str, expected: &str, actual: &str, line: usize) {
    if lang == "json" {
        let values = |s: &str| {
            serde_json::Deserializer::from_str(s)
                .into_iter::<serde_json::Value>()
                .collect::<Result<Vec<_>, _>>()
        };
        let want = values(expected).unwrap_or_else(|e| panic!("README line {line}: {e}"));
        let got = values(actual).unwrap_or_else(|e| panic!("not JSON ({e}):\n{actual}"));
        assert_eq!(got, want, "README output block at line {line}");
        return;
    }
    let want: Vec<&str> = expected.lines().map(str::trim_end).collect();
    let got: Vec<&str> = actual.lines().map(str::trim_end).collect();
    let same = want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| fits(w, g));
    assert!(
        same,
        "README output block at line {line} does not match.\nREADME:\n{expected}\nprinted:\n{actual}"
    );
}

#[test]
fn readme_command_blocks_run_and_print_what_the_readme_shows() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let blocks = marked_blocks(&readme);
    let runs = blocks
        .iter()
        .filter(|b| matches!(b, Block::Run { .. }))
        .count();
    assert!(runs >= 5, "the README lost its runnable blocks: {blocks:?}");

    let tmp = tempfile::tempdir().expect("a temp dir");
    let (_demo, demo_addr, demo_printed) = start_demo(tmp.path());
    let demo_printed = demo_printed.replace(&demo_addr, README_DEMO_ADDR);
    let mut last: Option<(usize, String)> = None;
    for block in &blocks {
        match block {
            Block::Run { line, script } => {
                last = Some((*line, run_block(script, *line, tmp.path(), &demo_addr)));
            }
            Block::Output {
                line,
                demo,
                lang,
                text,
            } => {
                let actual = if *demo {
                    &demo_printed
                } else {
                    let (_, out) = last
                        .as_ref()
                        .unwrap_or_else(|| panic!("README line {line}: no runnable block above"));
                    out
                };
                compare(lang, text, actual, *line);
            }
        }
    }
}

#[test]
fn an_ellipsis_stands_for_any_text() {
    assert!(fits(
        "key: fbp.production.web.…",
        "key: fbp.production.web.abc"
    ));
    assert!(fits("a…c…e", "abcde"));
    assert!(fits("same", "same"));
    assert!(!fits("same", "same but longer"));
    assert!(!fits("a…b", "ab-a"));
    assert!(!fits("ab…ba", "aba"));
}
