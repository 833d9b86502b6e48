//! Real clients and a real shared cache against the real binary, no mocks.
//!
//! - The OpenFeature OFREP providers people use (`@openfeature/ofrep-web-provider`
//!   with the web SDK under Node, `@openfeature/ofrep-provider` with the server
//!   SDK, and PyPI's `openfeature-provider-ofrep`) talk to `flagbelt demo`. The
//!   client scripts in `tests/clients/` print what the SDKs returned; the
//!   expectations are computed here from `examples/demo.yaml` with
//!   `authoring::compile_yaml` and `eval::evaluate_all`, never copied by hand.
//! - nginx (`proxy_cache`, configured by `tests/clients/nginx.conf`) stands in
//!   for a CDN in front of `flagbelt serve` with a 1 s `s-maxage`: hits,
//!   revalidation with `If-None-Match` answered by a 304, stale answers while
//!   flagbelt is down, and no sharing across keys, all counted at flagbelt's
//!   `/metrics` and read from the cache's `X-Cache` header.
//!
//! The tools come from `scripts/clients.sh install` (scripts/test runs it),
//! which exports the `FLAGBELT_TEST_*` variables read here. Without them a test
//! fails under CI (`CI` set) and is skipped with a notice on stderr otherwise.
//! Everything listens on 127.0.0.1, every wait is bounded, and every process is
//! killed when its guard drops (also when a test fails).

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::ExposeSecret as _;
use serde_json::{Map, Value, json};

use flagbelt::eval::model::KeyKind;
use flagbelt::eval::{self, Audience};
use flagbelt::ruleset::{authoring, keys};

/// The demo's keys (README, `examples/demo.yaml`).
const PUBLIC_KEY: &str = "fbp.demo.web.l1u83ftUtHOALf0O9eQLbzxoEVeG8ynnsGVGBX0fsRE";
const SERVER_KEY: &str = "fbs.demo.api.UDOFsxceYEcMLwUrLY76OqwMXlS9sohK3pjE9reiN5k";
const DEMO_YAML: &str = include_str!("../../examples/demo.yaml");

/// The only object-valued flag of the demo, which is server-only.
const SERVER_ONLY_FLAG: &str = "limits";
const UNKNOWN_FLAG: &str = "no-such-flag";
/// How long a client script may run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- helpers ---

/// A tool from `scripts/clients.sh install`. Missing: a failure under CI, a
/// printed skip locally.
fn tool(var: &str) -> Option<String> {
    crate::rig::provided(
        var,
        "install the client tools (scripts/clients.sh install, as scripts/test does)",
        "run `eval \"$(scripts/clients.sh install)\"` to test with the real clients and cache",
    )
}

/// A child process, killed and reaped when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.alive() {
            self.stop();
        }
    }
}

fn flagbelt() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flagbelt"));
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Starts `flagbelt` with `args` (which include `--listen 127.0.0.1:0`), waits
/// for its `flagbelt listening on http://ADDR` line and for `/readyz`, and
/// returns the guard and ADDR. Its stderr goes to `log`.
fn start_flagbelt(args: &[&str], log: &Path) -> (Proc, String) {
    let stderr = std::fs::File::create(log).expect("create the log file");
    // `flagbelt demo` keeps its store in the temp dir, and a killed process
    // cannot remove it: keep it in the test's own folder.
    let tmp = log.parent().expect("the log is in the test's folder");
    let child = flagbelt()
        .args(args)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn flagbelt");
    let mut proc = Proc { child };
    let stdout = proc.child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    // Reads every line (so the pipe never fills) and forwards the address.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("flagbelt listening on http://") {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let Ok(addr) = rx.recv_timeout(START_TIMEOUT) else {
        proc.stop();
        panic!(
            "flagbelt did not start within {START_TIMEOUT:?}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while get(&addr, "/readyz", &[]).status != 200 {
        assert!(Instant::now() < deadline, "flagbelt at {addr} never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    (proc, addr)
}

/// `flagbelt demo` on a free loopback port.
fn start_demo(dir: &Path) -> (Proc, String) {
    start_flagbelt(
        &["demo", "--listen", "127.0.0.1:0"],
        &dir.join("flagbelt.log"),
    )
}

/// An HTTP response, read whole.
struct Res {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Res {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The cache's verdict (`X-Cache`), or "" when it sent none.
    fn cache(&self) -> &str {
        self.header("x-cache").unwrap_or("")
    }
}

impl std::fmt::Debug for Res {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        for (k, v) in &self.headers {
            write!(f, "\n{k}: {v}")?;
        }
        write!(f, "\n\n{}", String::from_utf8_lossy(&self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), with a
/// 10 s bound on connecting and reading.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Res {
    let sock = addr.parse().expect("a socket address");
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).expect("write the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    parse_response(&raw)
}

fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Res {
    request(addr, "GET", path, headers, "")
}

fn parse_response(raw: &[u8]) -> Res {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Res {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).expect("a chunk size");
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&rest[start..start + size]);
        rest = &rest[(start + size + 2).min(rest.len())..];
    }
}

/// How many requests flagbelt counted (`flagbelt_http_requests_total`) for a
/// route template, method and status.
fn counted(addr: &str, route: &str, method: &str, status: u16) -> u64 {
    let res = get(addr, "/metrics", &[]);
    assert_eq!(res.status, 200, "{res:?}");
    let text = String::from_utf8_lossy(&res.body).into_owned();
    let want = [
        format!("route=\"{route}\""),
        format!("method=\"{method}\""),
        format!("status=\"{status}\""),
    ];
    text.lines()
        .filter_map(|l| l.strip_prefix("flagbelt_http_requests_total{"))
        .filter_map(|l| l.rsplit_once('}'))
        .filter(|(labels, _)| {
            let labels: Vec<&str> = labels.split(',').collect();
            want.iter().all(|w| labels.contains(&w.as_str()))
        })
        .map(|(_, value)| value.trim().parse::<f64>().expect("a counter value") as u64)
        .sum()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

// ------------------------------------------------------------ expectations ---

/// The contexts every client evaluates, in order. Together they reach every
/// reason flagbelt gives (checked in [`Expectations::new`]). The second keeps
/// the first's targetingKey (the web provider then re-sends the old ETag);
/// the last two have no targetingKey (the rollouts then serve their default).
fn cases() -> Vec<(&'static str, Value)> {
    vec![
        (
            "nz-staff",
            json!({"targetingKey": "user-1", "country": "NZ", "app": {"version": "2.4.0"},
                   "email": "kim@example.com", "plan": "pro"}),
        ),
        (
            "same-key-moved",
            json!({"targetingKey": "user-1", "country": "DE", "beta": true,
                   "signup": "2023-05-01T00:00:00Z"}),
        ),
        (
            "other-user",
            json!({"targetingKey": "user-2", "country": "AU", "app": {"version": "2.2.9"},
                   "plan": "enterprise"}),
        ),
        (
            "no-targeting-key",
            json!({"country": "DE", "email": "ops@example.com"}),
        ),
        ("empty", json!({})),
    ]
}

/// What `examples/demo.yaml` answers for each case, per audience, as the
/// clients report it: `{flag: {value, variant, reason, errorCode: null}}`;
/// computed with the library, and checked against `flagbelt eval --json`.
struct Expectations {
    /// Case name -> flag -> result, as a public key sees it.
    client: Map<String, Value>,
    /// Case name -> flag -> result, as a server key sees it.
    all: Map<String, Value>,
    /// Flag -> type name for the typed SDK calls, public view.
    client_types: Map<String, Value>,
    /// Flag -> type name, server view.
    all_types: Map<String, Value>,
}

impl Expectations {
    fn new() -> Self {
        let (_, rs) = authoring::compile_yaml(DEMO_YAML, 0).expect("the demo compiles");
        let mut reasons = BTreeSet::new();
        let mut view = |audience| {
            let mut by_case = Map::new();
            let mut types = Map::new();
            for (name, json_ctx) in cases() {
                let ctx = eval::context_from_json(&json_ctx.to_string()).expect("a valid context");
                let cli = cli_eval(&json_ctx, audience == Audience::Client);
                let mut flags = Map::new();
                for e in eval::evaluate_all(&rs, &ctx, audience) {
                    let value: Value = serde_json::from_str(e.value().get()).expect("a JSON value");
                    types.insert(e.key().to_owned(), json!(type_name(&value)));
                    reasons.insert(e.reason.as_str());
                    assert_eq!(
                        cli["flags"][e.key()],
                        json!({"value": value, "variant": &*e.variant.name,
                               "reason": e.reason.as_str()}),
                        "`flagbelt eval` and the library disagree on {} for {name}",
                        e.key()
                    );
                    flags.insert(
                        e.key().to_owned(),
                        json!({"value": value, "variant": &*e.variant.name,
                               "reason": e.reason.as_str(), "errorCode": null}),
                    );
                }
                assert_eq!(cli["flags"].as_object().map_or(0, Map::len), flags.len());
                by_case.insert(name.to_owned(), Value::Object(flags));
            }
            (by_case, types)
        };
        let (client, client_types) = view(Audience::Client);
        let (all, all_types) = view(Audience::All);
        assert_eq!(
            reasons,
            BTreeSet::from(["DEFAULT", "DISABLED", "SPLIT", "STATIC", "TARGETING_MATCH"]),
            "the cases should reach every reason"
        );
        assert!(
            !client_types.contains_key(SERVER_ONLY_FLAG)
                && all_types.contains_key(SERVER_ONLY_FLAG)
        );
        Self {
            client,
            all,
            client_types,
            all_types,
        }
    }

    /// The spec a client script reads on stdin.
    fn spec(&self, base_url: &str) -> Value {
        let cases: Vec<Value> = cases()
            .into_iter()
            .map(|(name, context)| json!({"name": name, "context": context}))
            .collect();
        json!({
            "baseUrl": base_url,
            "publicKey": PUBLIC_KEY,
            "serverKey": SERVER_KEY,
            "cases": cases,
            "clientFlags": self.client_types,
            "allFlags": self.all_types,
            "serverOnlyFlag": SERVER_ONLY_FLAG,
            "unknownFlag": UNKNOWN_FLAG,
            "pollIntervalMs": 150,
            "minPolls": 3,
        })
    }
}

/// `flagbelt eval examples/demo.yaml [--client] --context CTX --json`.
fn cli_eval(ctx: &Value, client: bool) -> Value {
    let yaml = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.yaml");
    let mut cmd = flagbelt();
    cmd.arg("eval")
        .arg(&yaml)
        .arg("--context")
        .arg(ctx.to_string())
        .arg("--json");
    if client {
        cmd.arg("--client");
    }
    let out = cmd.output().expect("run flagbelt eval");
    assert!(
        out.status.success(),
        "flagbelt eval: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("flagbelt eval --json prints JSON")
}

/// The SDK method family for a value: `boolean`, `string`, `integer`,
/// `float` or `object`.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "float",
        _ => "object",
    }
}

/// Runs a client script with the spec on stdin (bounded by
/// [`CLIENT_TIMEOUT`]) and returns the JSON line it printed.
fn run_client(program: &str, script: &str, spec: &Value, npm: Option<&str>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let mut cmd = Command::new(program);
    cmd.arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(npm) = npm {
        cmd.env("FLAGBELT_TEST_CLIENTS_NPM", npm);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} {}: {e}", script.display()));
    let mut proc = Proc { child };
    proc.child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(spec.to_string().as_bytes())
        .expect("write the spec");
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(proc.child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(proc.child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = proc.child.try_wait().expect("wait for the client") {
            break status;
        }
        if Instant::now() > deadline {
            proc.stop();
            panic!(
                "{} did not finish within {CLIENT_TIMEOUT:?}: {}",
                script.display(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().expect("stdout reader");
    let err = err.join().expect("stderr reader");
    assert!(
        status.success(),
        "{} failed ({status}):\n{err}\n{out}",
        script.display()
    );
    let line = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{}: not one JSON line ({e}):\n{out}\n{err}",
            script.display()
        )
    })
}

/// Every case and flag the client reported equals the expectation.
fn assert_results(client: &str, got: &Value, want: &Map<String, Value>) {
    for (case, flags) in want {
        let flags = flags.as_object().expect("an object");
        for (flag, expected) in flags {
            assert_eq!(
                &got[case][flag], expected,
                "{client}: case {case}, flag {flag}"
            );
        }
        assert_eq!(
            got[case].as_object().map_or(0, Map::len),
            flags.len(),
            "{client}: case {case}: {}",
            got[case]
        );
    }
}

/// The default came back, with FLAG_NOT_FOUND.
fn assert_not_found(client: &str, what: &str, got: &Value, default: &Value) {
    assert_eq!(
        got["errorCode"], "FLAG_NOT_FOUND",
        "{client}: {what}: {got}"
    );
    assert_eq!(&got["value"], default, "{client}: {what}: {got}");
    assert_eq!(got["reason"], "ERROR", "{client}: {what}: {got}");
}

// ------------------------------------------------------------ OFREP tests ---

/// The web provider: bulk evaluation per context with the public key, values,
/// variants and reasons as `flagbelt eval --client` gives them; the server-only
/// object flag invisible to it (and readable with the server key); and
/// polling with `If-None-Match` answered by 304s, counted on both sides.
#[test]
fn ofrep_web_provider_evaluates_in_bulk_and_polls_with_etags() {
    let Some(node) = tool("FLAGBELT_TEST_NODE") else {
        return;
    };
    let Some(npm) = tool("FLAGBELT_TEST_CLIENTS_NPM") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (_demo, addr) = start_demo(tmp.path());
    let want = Expectations::new();
    let spec = want.spec(&format!("http://{addr}"));
    let got = run_client(&node, "ofrep-web.mjs", &spec, Some(&npm));
    let name = got["client"].as_str().unwrap_or("web provider").to_owned();
    assert!(name.contains("ofrep-web-provider@0.4."), "{name}");

    assert_results(&name, &got["cases"], &want.client);
    let (first, _) = &cases()[0];
    assert_eq!(
        got["serverView"], want.all[*first],
        "{name}: the server key's bulk view"
    );
    assert_not_found(
        &name,
        "a server-only flag with the public key",
        &got["serverOnly"],
        &json!({"__default__": true}),
    );
    assert_not_found(&name, "an unknown flag", &got["unknown"], &json!(false));

    // What went over the wire (the public-key provider's bulk requests).
    let requests = got["requests"].as_array().unwrap();
    for r in requests {
        assert_eq!(r["method"], "POST", "{r}");
        assert_eq!(r["path"], "/ofrep/v1/evaluate/flags", "{r}");
    }
    let first_req = &requests[0];
    assert!(first_req["ifNoneMatch"].is_null(), "{first_req}");
    assert_eq!(first_req["status"], 200, "{first_req}");
    let etag0 = first_req["etag"].as_str().unwrap();
    assert!(etag0.starts_with("W/\""), "{etag0}");
    let polls = got["pollsBeforeContextChange"].as_u64().unwrap() as usize;
    assert!(polls > 3, "fewer than 3 re-polls: {requests:?}");
    for r in &requests[1..polls] {
        assert_eq!(r["ifNoneMatch"], etag0, "a poll re-sends the ETag: {r}");
        assert_eq!(r["status"], 304, "an unchanged poll is a 304: {r}");
    }
    // A new context with the same targetingKey: the provider re-sends the old
    // ETag, and flagbelt, whose ETags cover the relevant context, answers 200.
    let (_, moved) = &cases()[1];
    let r = requests
        .iter()
        .find(|r| r["body"]["context"] == *moved)
        .expect("a request for the second context");
    assert_eq!(r["ifNoneMatch"], etag0, "{r}");
    assert_eq!(r["status"], 200, "{r}");
    assert_ne!(r["etag"], etag0, "{r}");
    // A new targetingKey: unconditional.
    let (_, other) = &cases()[2];
    let r = requests
        .iter()
        .find(|r| r["body"]["context"] == *other)
        .expect("a request for the third context");
    assert!(r["ifNoneMatch"].is_null(), "{r}");
    assert_eq!(r["status"], 200, "{r}");
    // A 304 only ever confirms the answer for the same context.
    let mut context_of: HashMap<&str, &Value> = HashMap::new();
    for r in requests {
        match r["status"].as_u64() {
            Some(200) => {
                context_of.insert(r["etag"].as_str().unwrap(), &r["body"]["context"]);
            }
            Some(304) => {
                let tag = r["ifNoneMatch"].as_str().unwrap();
                assert_eq!(context_of.get(tag), Some(&&r["body"]["context"]), "{r}");
            }
            other => assert!(other.is_none(), "unexpected status: {r}"),
        }
    }

    // Server side: flagbelt answered as many 304s as the client saw (plus any
    // poll cut off by the provider's shutdown, which the client never saw).
    let seen_304 = requests.iter().filter(|r| r["status"] == 304).count() as u64;
    let unanswered = requests.iter().filter(|r| r["status"].is_null()).count() as u64;
    let served_304 = counted(&addr, "/ofrep/v1/evaluate/flags", "POST", 304);
    assert!(
        served_304 >= seen_304 && served_304 <= seen_304 + unanswered,
        "flagbelt counted {served_304} 304s, the client saw {seen_304} (+{unanswered} unanswered)"
    );
}

/// The Node server provider (single-flag route, old ofrep-core): every flag of
/// every case as `flagbelt eval` gives it, FLAG_NOT_FOUND for an unknown flag
/// and for a server-only flag asked with the public key.
#[test]
fn ofrep_node_server_provider_evaluates_single_flags() {
    let Some(node) = tool("FLAGBELT_TEST_NODE") else {
        return;
    };
    let Some(npm) = tool("FLAGBELT_TEST_CLIENTS_NPM") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (_demo, addr) = start_demo(tmp.path());
    let want = Expectations::new();
    let got = run_client(
        &node,
        "ofrep-server.mjs",
        &want.spec(&format!("http://{addr}")),
        Some(&npm),
    );
    let name = got["client"]
        .as_str()
        .unwrap_or("server provider")
        .to_owned();
    assert!(name.contains("ofrep-provider@0.1.3"), "{name}");
    assert!(name.contains("ofrep-core@0.1."), "{name}");
    assert_single_flag_client(&name, &got, &want, &addr);
}

/// The Python provider: the same checks, including contexts without a
/// targetingKey (it then sends none at all).
#[test]
fn ofrep_python_provider_evaluates_single_flags() {
    let Some(python) = tool("FLAGBELT_TEST_CLIENTS_PYTHON") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (_demo, addr) = start_demo(tmp.path());
    let want = Expectations::new();
    let got = run_client(
        &python,
        "ofrep_client.py",
        &want.spec(&format!("http://{addr}")),
        None,
    );
    let name = got["client"]
        .as_str()
        .unwrap_or("python provider")
        .to_owned();
    assert!(name.contains("openfeature-provider-ofrep@0.3.0"), "{name}");
    assert_single_flag_client(&name, &got, &want, &addr);
}

fn assert_single_flag_client(name: &str, got: &Value, want: &Expectations, addr: &str) {
    assert_results(name, &got["cases"], &want.all);
    assert_not_found(name, "an unknown flag", &got["unknown"], &json!(false));
    assert_not_found(
        name,
        "a server-only flag with the public key",
        &got["serverOnly"],
        &json!({"__default__": true}),
    );
    // One request per evaluation reached flagbelt.
    let route = "/ofrep/v1/evaluate/flags/{key}";
    let evaluations = (cases().len() * want.all_types.len()) as u64;
    assert_eq!(counted(addr, route, "POST", 200), evaluations);
    assert_eq!(counted(addr, route, "POST", 404), 2);
}

// ----------------------------------------------------- shared cache (nginx) ---

/// nginx with `tests/clients/nginx.conf` on a free loopback port in front of
/// `origin`. Returns the guard, its address and its folder (logs).
fn start_nginx(nginx: &str, origin: &str, dir: &Path) -> (Proc, String) {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/nginx.conf"),
    )
    .expect("read tests/clients/nginx.conf");
    std::fs::create_dir_all(dir.join("tmp")).expect("create the nginx folder");
    // A port picked by binding :0 may be taken again before nginx binds it:
    // try a few.
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let listen = format!("127.0.0.1:{port}");
        let conf = template
            .replace("@DIR@", dir.to_str().expect("a UTF-8 path"))
            .replace("@LISTEN@", &listen)
            .replace("@ORIGIN@", origin);
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {nginx}: {e}"));
        let mut proc = Proc { child };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !proc.alive() {
                break;
            }
            let sock = listen.parse().expect("a socket address");
            if TcpStream::connect_timeout(&sock, Duration::from_secs(1)).is_ok() {
                return (proc, listen);
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {listen}: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!(
        "nginx did not start: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
}

/// GETs `path` through the cache every 100 ms until the cache stops
/// answering from a fresh entry (`X-Cache` other than HIT); bounded.
fn until_not_a_hit(cache: &str, path: &str) -> Res {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = get(cache, path, &[]);
        if res.cache() != "HIT" {
            return res;
        }
        assert!(
            Instant::now() < deadline,
            "still a HIT after 10 s with s-maxage=1: {res:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// nginx's `proxy_cache` in front of `flagbelt serve --s-maxage 1
/// --stale-while-revalidate 1 --stale-if-error 60`, lifetimes taken from
/// flagbelt's headers alone:
/// (a) repeated GETs of one URL are hits (one request reaches flagbelt), and
///     a client's `If-None-Match` is answered 304 by the cache itself;
/// (b) once `s-maxage` has passed, the cache revalidates with `If-None-Match`
///     and flagbelt answers 304 (counted at flagbelt);
/// (d) a second public key's URL for the same context is its own entry,
///     401s for a bad key and the 4xx for a server key in the URL are
///     `no-store` and reach flagbelt every time, and POST answers are never
///     stored;
/// (c) with flagbelt stopped, the cache serves the stale entry (the header's
///     `stale-if-error`, which nginx honours without configuration) while a
///     URL it never stored gets a 502.
#[test]
fn a_shared_cache_hits_revalidates_serves_stale_and_keeps_keys_apart() {
    let Some(nginx) = tool("FLAGBELT_TEST_NGINX") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();

    // The demo environment plus a second public key, compiled to a folder.
    let web2 = keys::generate("demo", "web2", KeyKind::Frontend).expect("valid names");
    let web2_key = web2.token.expose_secret().to_owned();
    let yaml = DEMO_YAML.replacen(
        "\nkeys:\n",
        &format!(
            "\nkeys:\n  - {{id: web2, kind: frontend, secret_sha256: \"{}\", allowed_origins: [\"*\"]}}\n",
            web2.secret_sha256_hex
        ),
        1,
    );
    assert_ne!(yaml, DEMO_YAML, "the demo YAML has a `keys:` list");
    let yaml_path = tmp.path().join("demo.yaml");
    std::fs::write(&yaml_path, &yaml).unwrap();
    let out = tmp.path().join("rulesets");
    let compiled = flagbelt()
        .arg("compile")
        .arg(&yaml_path)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(compiled.success());
    let (_, rs) = authoring::compile_yaml(&yaml, 0).unwrap();

    let source = format!("file://{}", out.display());
    let (mut origin, origin_addr) = start_flagbelt(
        &[
            "serve",
            "--source",
            &source,
            "--listen",
            "127.0.0.1:0",
            "--preload",
            "demo",
            "--s-maxage",
            "1",
            "--stale-while-revalidate",
            "1",
            "--stale-if-error",
            "60",
        ],
        &tmp.path().join("flagbelt.log"),
    );
    let nginx_dir = tmp.path().join("nginx");
    let (_nginx, cache) = start_nginx(&nginx, &origin_addr, &nginx_dir);
    let access_log = || std::fs::read_to_string(nginx_dir.join("access.log")).unwrap_or_default();

    let eval_route = "/v1/eval/{public_key}/{context}";
    let at_origin = |status| counted(&origin_addr, eval_route, "GET", status);
    let ctx = json!({"targetingKey": "user-1", "country": "NZ", "app": {"version": "2.4.0"}});
    let url = |key: &str, ctx: &Value| format!("/v1/eval/{key}/{}", b64(ctx));
    let url_a = url(PUBLIC_KEY, &ctx);
    let expected = {
        let c = eval::context_from_json(&ctx.to_string()).unwrap();
        serde_json::to_value(eval::Answer::new(
            &rs,
            eval::evaluate_all(&rs, &c, Audience::Client),
        ))
        .unwrap()
    };

    // (a) One miss, then hits: flagbelt sees one request.
    let first = get(&cache, &url_a, &[]);
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.cache(), "MISS", "{first:?}");
    assert_eq!(first.json(), expected);
    assert_eq!(
        first.header("cache-control"),
        Some("public, max-age=0, s-maxage=1, stale-while-revalidate=1, stale-if-error=60")
    );
    let etag = first.header("etag").expect("an ETag").to_owned();
    for _ in 0..3 {
        let res = get(&cache, &url_a, &[]);
        assert_eq!(res.status, 200, "{res:?}");
        assert_eq!(res.cache(), "HIT", "{res:?}\n{}", access_log());
        assert_eq!(res.body, first.body);
        assert_eq!(res.header("etag"), Some(etag.as_str()));
    }
    // A browser's revalidation is answered by the cache.
    let res = get(&cache, &url_a, &[("If-None-Match", &etag)]);
    assert_eq!(res.status, 304, "{res:?}");
    assert!(res.body.is_empty());
    assert_eq!((at_origin(200), at_origin(304)), (1, 0), "{}", access_log());

    // (b) After s-maxage: a conditional request to flagbelt, answered 304.
    let res = until_not_a_hit(&cache, &url_a);
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.cache(), "REVALIDATED", "{res:?}\n{}", access_log());
    assert_eq!(res.body, first.body);
    assert_eq!((at_origin(200), at_origin(304)), (1, 1), "{}", access_log());

    // (d) Keys never share an entry. Another public key, same context: its
    // own URL, its own miss, flagbelt tags it with its own key id.
    let url_b = url(&web2_key, &ctx);
    let res = get(&cache, &url_b, &[]);
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.cache(), "MISS", "{res:?}");
    assert_eq!(res.json(), expected);
    assert!(
        res.header("surrogate-key")
            .is_some_and(|k| k.split(' ').any(|t| t == "key:web2")),
        "{res:?}"
    );
    assert_eq!(get(&cache, &url_b, &[]).cache(), "HIT");
    assert_eq!(at_origin(200), 2, "{}", access_log());
    // A wrong secret for the first key id: 401, no-store, never stored, so
    // every request reaches flagbelt.
    let wrong = format!("fbp.demo.web.{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
    let refusals = || at_origin(401) + at_origin(403);
    let before = refusals();
    for _ in 0..2 {
        let res = get(&cache, &url(&wrong, &ctx), &[]);
        assert_eq!(res.status, 401, "{res:?}");
        assert_eq!(res.header("cache-control"), Some("no-store"), "{res:?}");
        assert_eq!(res.cache(), "MISS", "{res:?}");
    }
    assert_eq!(refusals() - before, 2, "{}", access_log());
    // A server key in a URL is refused, and that refusal is not stored either.
    let before = refusals();
    for _ in 0..2 {
        let res = get(&cache, &url(SERVER_KEY, &ctx), &[]);
        assert!(matches!(res.status, 401 | 403), "{res:?}");
        assert_eq!(res.header("cache-control"), Some("no-store"), "{res:?}");
        assert_eq!(res.cache(), "MISS", "{res:?}");
    }
    assert_eq!(refusals() - before, 2, "{}", access_log());
    // POST answers are private: they pass through, never stored.
    let body = json!({"context": ctx}).to_string();
    for _ in 0..2 {
        let res = request(
            &cache,
            "POST",
            "/ofrep/v1/evaluate/flags",
            &[
                ("X-API-Key", PUBLIC_KEY),
                ("Content-Type", "application/json"),
            ],
            &body,
        );
        assert_eq!(res.status, 200, "{res:?}");
        assert_ne!(res.cache(), "HIT", "{res:?}");
    }
    assert_eq!(
        counted(&origin_addr, "/ofrep/v1/evaluate/flags", "POST", 200),
        2
    );

    // (c) flagbelt stops: the expired entry is served stale (stale-if-error),
    // and a URL the cache never stored fails.
    origin.stop();
    let res = until_not_a_hit(&cache, &url_a);
    assert_eq!(res.status, 200, "{res:?}\n{}", access_log());
    assert_eq!(res.cache(), "STALE", "{res:?}\n{}", access_log());
    assert_eq!(res.body, first.body);
    let other = json!({"targetingKey": "user-9", "country": "AU"});
    let res = get(&cache, &url(PUBLIC_KEY, &other), &[]);
    assert_eq!(res.status, 502, "the origin is really down: {res:?}");
    // The stale entry keeps being served while flagbelt is down.
    let res = get(&cache, &url_a, &[]);
    assert_eq!((res.status, res.cache()), (200, "STALE"), "{res:?}");
    assert!(
        access_log().contains("cache=STALE origin_status=502"),
        "{}",
        access_log()
    );
}
