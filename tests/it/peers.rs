//! `POST /admin/v1/reload` fanned out to `--peers`: real servers on
//! 127.0.0.1 (each its own in-memory store, delivery and router, behind a
//! counter of the reloads it receives), called over HTTP. A reload reloads
//! every peer once and reports each one; a forwarded reload (or
//! `?fanout=false`) never fans out, so peers that list each other, or a name
//! that resolves to the caller itself, cannot loop; every failure (no such
//! name, refused, silent, wrong token) is a line of the report, in bounded
//! time, under a 200; the token is never answered nor logged; and
//! `flagbelt serve` rejects a bad `--peers` at start.
//!
//! The answers are also checked against the `AdminReload` schema of
//! `openapi/flagbelt.json`: `tests/it/openapi.rs` exercises the reload without
//! peers only (its rig has none), so the `peers` member is checked here, with
//! that test's schema checker.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use ed25519_dalek::SigningKey;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use flagbelt::delivery::faults::FaultyStore;
use flagbelt::delivery::{Delivery, DeliveryOptions};
use flagbelt::http::{AdminToken, AppState, HttpConfig, router};
use flagbelt::ruleset::{authoring, codec, keys};

const ENV: &str = "prod";
const TOKEN: &str = "peer-admin-t0ken-do-not-leak";
const OTHER_TOKEN: &str = "another-admin-t0ken";

/// One flagbelt instance serving on 127.0.0.1.
struct Node {
    addr: SocketAddr,
    store: Arc<FaultyStore>,
    signer: SigningKey,
    delivery: Arc<Delivery>,
    /// `Flagbelt-Forwarded` of every `POST /admin/v1/reload` received (empty
    /// string: none), in order.
    reloads: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// A node on a port of its own holding version 1, with the admin `token`
    /// and `--peers` set to `peers`.
    async fn start(token: &str, peers: Option<String>) -> Self {
        Self::serve(bind().await, token, peers).await
    }

    /// A node serving on `listener` (bound beforehand, so peers can name each
    /// other, or themselves).
    async fn serve(listener: TcpListener, token: &str, peers: Option<String>) -> Self {
        let addr = listener.local_addr().expect("bound");
        let store = Arc::new(FaultyStore::new());
        let signer = keys::new_signing_key();
        let delivery = crate::rig::memory_delivery(
            &[(format!("mem://{addr}"), Arc::clone(&store))],
            &signer,
            DeliveryOptions {
                poll_interval: Duration::from_secs(3600),
                ..DeliveryOptions::default()
            },
        );
        let node = Self {
            addr,
            store,
            signer,
            delivery,
            reloads: Arc::new(Mutex::new(Vec::new())),
        };
        node.publish(1).await;
        assert!(node.delivery.preload(&[ENV.to_owned()]).await.is_empty());
        let config = HttpConfig {
            preload: vec![ENV.to_owned()],
            admin_token: Some(AdminToken::new(&SecretString::from(token))),
            peers,
            ..HttpConfig::default()
        };
        let reloads = Arc::clone(&node.reloads);
        let app = router(AppState::new(Arc::clone(&node.delivery), config)).layer(
            axum::middleware::from_fn(move |req: Request, next: Next| {
                let reloads = Arc::clone(&reloads);
                async move {
                    if req.method() == http::Method::POST && req.uri().path() == "/admin/v1/reload"
                    {
                        let forwarded = req
                            .headers()
                            .get("flagbelt-forwarded")
                            .map(|v| v.to_str().expect("ASCII header").to_owned())
                            .unwrap_or_default();
                        reloads.lock().expect("not poisoned").push(forwarded);
                    }
                    next.run(req).await
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        node
    }

    async fn publish(&self, version: u64) {
        let yaml = format!(
            r#"
environment: {ENV}
version: {version}
flags:
  banner:
    client: true
    variants: {{a: "Welcome", b: "Hello"}}
    default: a
"#
        );
        let (pb, _) = authoring::compile_yaml(&yaml, 0).expect("valid yaml");
        let objects = codec::stored_objects(
            &pb,
            1_700_000_000_000,
            false,
            std::slice::from_ref(&self.signer),
        );
        self.store
            .publish(ENV, &objects)
            .await
            .expect("in-memory put");
    }

    fn version(&self) -> u64 {
        self.delivery.environments()[0].version
    }

    fn reloads(&self) -> Vec<String> {
        self.reloads.lock().expect("not poisoned").clone()
    }

    fn name(&self) -> String {
        self.addr.to_string()
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("a free port")
}

/// `POST /admin/v1/reload{query}` on `node` with the admin `token` and
/// `headers`; the status and JSON body, after checking the body never holds
/// a token.
async fn reload(node: &Node, token: &str, query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain HTTP client");
    let mut req = client
        .post(format!("http://{}/admin/v1/reload{query}", node.addr))
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("the node answers");
    let status = res.status().as_u16();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let text = res.text().await.expect("a text body");
    for secret in [TOKEN, OTHER_TOKEN] {
        assert!(!text.contains(secret), "a token leaked into {text}");
    }
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    if status == 200 {
        assert_documented(&body);
    }
    (status, body)
}

// ---------------------------------------------------------------------------
// The reload answer against openapi/flagbelt.json, with the checker of
// tests/it/openapi.rs.

fn assert_documented(v: &Value) {
    let schema = json!({"$ref": "#/components/schemas/AdminReload"});
    crate::openapi::assert_valid(&crate::openapi::doc(), &schema, v, "POST /admin/v1/reload");
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_reload_reloads_the_peer_once_and_reports_it() {
    let b = Node::start(TOKEN, None).await;
    let a = Node::start(TOKEN, Some(b.name())).await;
    b.publish(2).await;
    a.publish(3).await;

    let (status, v) = reload(&a, TOKEN, "", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(v["refreshed"], 1);
    assert_eq!(v["environments"][0]["version"], 3, "the local reload: {v}");
    assert_eq!(
        v["peers"],
        json!({"name": b.name(), "addresses": 1, "results": [
            {"address": b.name(), "status": 200, "refreshed": 1},
        ], "failed": 0})
    );
    assert_eq!(b.version(), 2, "B reloaded");
    assert_eq!(b.reloads(), ["1"], "one forwarded reload, marked");
    assert_eq!(a.reloads(), [""]);
}

#[tokio::test]
async fn peers_that_name_each_other_or_themselves_do_not_loop() {
    let (la, lb) = (bind().await, bind().await);
    let (a_name, b_name) = (
        la.local_addr().unwrap().to_string(),
        lb.local_addr().unwrap().to_string(),
    );
    let a = Node::serve(la, TOKEN, Some(b_name.clone())).await;
    let b = Node::serve(lb, TOKEN, Some(a_name.clone())).await;
    let (status, v) = reload(&a, TOKEN, "", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(v["peers"]["results"][0]["status"], 200, "{v}");
    // Every forwarded call finished before A answered, so these are final.
    assert_eq!(a.reloads(), [""], "B did not forward back to A");
    assert_eq!(b.reloads(), ["1"]);
    let (status, _) = reload(&b, TOKEN, "", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(a.reloads(), ["", "1"]);
    assert_eq!(b.reloads(), ["1", ""]);

    // A headless service lists the caller too: it reloads itself once more.
    let l = bind().await;
    let own = l.local_addr().unwrap().to_string();
    let me = Node::serve(l, TOKEN, Some(own.clone())).await;
    let (status, v) = reload(&me, TOKEN, "", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["peers"],
        json!({"name": own, "addresses": 1, "results": [
            {"address": own, "status": 200, "refreshed": 1},
        ], "failed": 0})
    );
    assert_eq!(me.reloads(), ["", "1"], "one forwarded reload, no more");
}

#[tokio::test]
async fn forwarded_or_fanout_false_reloads_stay_local() {
    let b = Node::start(TOKEN, None).await;
    let a = Node::start(TOKEN, Some(b.name())).await;

    let (status, v) = reload(&a, TOKEN, "", &[("flagbelt-forwarded", "1")]).await;
    assert_eq!(status, 200);
    assert_eq!(v["refreshed"], 1, "the local reload happened");
    assert!(v.get("peers").is_none(), "no fan-out, no peers member: {v}");
    let (status, v) = reload(&a, TOKEN, "?fanout=false", &[]).await;
    assert_eq!(status, 200);
    assert!(v.get("peers").is_none(), "{v}");
    assert!(b.reloads().is_empty(), "B was never called");

    let (status, v) = reload(&a, TOKEN, "?fanout=true", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(v["peers"]["failed"], 0, "{v}");
    assert_eq!(b.reloads(), ["1"]);

    // Anything else is a 400, before anything is reloaded or forwarded.
    for (query, headers) in [
        ("?fanout=no", &[][..]),
        ("", &[("flagbelt-forwarded", "yes")][..]),
    ] {
        let (status, v) = reload(&a, TOKEN, query, headers).await;
        assert_eq!(status, 400, "{query} {headers:?}: {v}");
        assert_eq!(v["error"]["code"], "bad_request");
    }
    assert_eq!(b.reloads(), ["1"]);

    // Without --peers there is no peers member either.
    let (status, v) = reload(&b, TOKEN, "", &[]).await;
    assert_eq!(status, 200);
    assert!(v.get("peers").is_none(), "{v}");
}

#[tokio::test]
async fn a_dns_name_is_resolved_and_each_distinct_address_called_once() {
    let b = Node::start(TOKEN, None).await;
    let name = format!("localhost:{}", b.addr.port());
    let a = Node::start(TOKEN, Some(name.clone())).await;
    // What the system resolver says, deduplicated and sorted as the report is
    // (127.0.0.1 and maybe ::1, where B does not listen).
    let expected: std::collections::BTreeSet<SocketAddr> =
        tokio::net::lookup_host(&name).await.unwrap().collect();
    assert!(expected.contains(&b.addr), "localhost is 127.0.0.1 here");

    let (status, v) = reload(&a, TOKEN, "", &[]).await;
    assert_eq!(status, 200, "{v}");
    let peers = &v["peers"];
    assert_eq!(peers["name"], name);
    assert_eq!(peers["addresses"], expected.len());
    let results = peers["results"].as_array().unwrap();
    let listed: Vec<&str> = results
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    let want: Vec<String> = expected.iter().map(SocketAddr::to_string).collect();
    assert_eq!(listed, want, "one result per distinct address, in order");
    for r in results {
        if r["address"] == b.name() {
            assert_eq!(r["status"], 200, "{r}");
            assert_eq!(r["refreshed"], 1, "{r}");
        } else {
            // Another address of localhost (::1): B is not there, and the
            // report says so for that address only.
            assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
            assert!(r.get("refreshed").is_none(), "{r}");
        }
    }
    assert_eq!(peers["failed"], expected.len() - 1);
    assert_eq!(b.reloads(), ["1"], "B was called exactly once");
}

#[tokio::test]
async fn an_unresolvable_name_is_reported_under_a_200() {
    let a = Node::start(TOKEN, Some("no-such-host.invalid:8081".to_owned())).await;
    a.publish(2).await;
    let started = Instant::now();
    let (status, v) = reload(&a, TOKEN, "", &[]).await;
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");
    assert_eq!(status, 200);
    assert_eq!(
        v["environments"][0]["version"], 2,
        "the local reload happened"
    );
    let peers = v["peers"].as_object().unwrap();
    assert_eq!(peers["name"], "no-such-host.invalid:8081");
    let error = peers["error"].as_str().unwrap();
    assert!(
        error.starts_with("cannot resolve no-such-host.invalid:8081: "),
        "{error}"
    );
    assert_eq!(peers.len(), 2, "name and error only: {v}");
}

#[tokio::test]
async fn a_dead_peer_is_reported_quickly() {
    let dead = bind().await.local_addr().unwrap(); // bound, then closed
    let a = Node::start(TOKEN, Some(dead.to_string())).await;
    let started = Instant::now();
    let (status, v) = reload(&a, TOKEN, "", &[]).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no waiting on a refused connection"
    );
    assert_eq!(status, 200);
    assert_eq!(
        v["peers"],
        json!({"name": dead.to_string(), "addresses": 1, "results": [
            {"address": dead.to_string(), "error": "connection refused"},
        ], "failed": 1})
    );
}

#[tokio::test]
async fn a_silent_peer_times_out_in_bounded_time() {
    // Accepts connections and never answers.
    let silent = bind().await;
    let addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let a = Node::start(TOKEN, Some(addr.to_string())).await;
    let started = Instant::now();
    let (status, v) = reload(&a, TOKEN, "", &[]).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(status, 200);
    assert_eq!(
        v["peers"]["results"],
        json!([{"address": addr.to_string(), "error": "timed out after 3 s"}])
    );
    assert_eq!(v["peers"]["failed"], 1);
}

#[tokio::test]
async fn a_peer_with_another_token_is_reported_as_401() {
    let b = Node::start(OTHER_TOKEN, None).await;
    b.publish(2).await;
    let a = Node::start(TOKEN, Some(b.name())).await;
    let (status, v) = reload(&a, TOKEN, "", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["peers"],
        json!({"name": b.name(), "addresses": 1, "results": [
            {"address": b.name(), "status": 401, "error": "HTTP 401"},
        ], "failed": 1})
    );
    assert_eq!(b.version(), 1, "B did not reload");
    assert_eq!(b.reloads(), ["1"]);
}

/// The token is in no answer (checked by [`reload`] everywhere) and in no log
/// line, whatever the peers answered; the fan-out logs one line with counts.
#[tokio::test]
async fn the_token_is_never_logged() {
    #[derive(Clone)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = Capture(Arc::new(Mutex::new(Vec::new())));
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // This test's runtime is single-threaded: every task of every node runs
    // on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let good = Node::start(TOKEN, None).await;
    let wrong = Node::start(OTHER_TOKEN, None).await;
    let dead = bind().await.local_addr().unwrap();
    // Three peers behind one name is a DNS matter; three callers stand in.
    for peer in [good.name(), wrong.name(), dead.to_string()] {
        let a = Node::start(TOKEN, Some(peer)).await;
        let (status, _) = reload(&a, TOKEN, "", &[]).await;
        assert_eq!(status, 200);
    }
    let a = Node::start(TOKEN, Some("no-such-host.invalid:1".to_owned())).await;
    assert_eq!(reload(&a, TOKEN, "", &[]).await.0, 200);

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.matches("reload fanned out to peers").count(),
        3,
        "one line per fan-out:\n{text}"
    );
    assert!(text.contains("failed=1"), "{text}");
    assert!(
        text.contains("cannot resolve no-such-host.invalid:1"),
        "{text}"
    );
    for secret in [TOKEN, OTHER_TOKEN] {
        assert!(!text.contains(secret), "a token was logged:\n{text}");
    }
}

#[test]
fn serve_rejects_bad_peers_clearly() {
    use std::process::Command;
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let token = token.to_str().unwrap();
    let source = format!("file://{}", tmp.path().display());
    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (
            vec!["--admin-token-file", token, "--peers", "bad"],
            None,
            r#"--peers: "bad" is not host:port"#,
        ),
        (
            vec!["--admin-token-file", token, "--peers", "peers.local:0"],
            None,
            r#"--peers: "0" in "peers.local:0" is not a port"#,
        ),
        (
            vec!["--admin-token-file", token, "--peers", "peers.local:99999"],
            None,
            "is not a port (1-65535)",
        ),
        (
            vec![
                "--admin-token-file",
                token,
                "--peers",
                "http://peers.local:8081",
            ],
            None,
            "--peers: \"http://peers.local\" in \"http://peers.local:8081\" is not a host name",
        ),
        (
            vec!["--admin-token-file", token, "--peers", "[nope]:8081"],
            None,
            "is not a host name",
        ),
        (
            vec!["--admin-token-file", token],
            Some("peers local:8081"),
            "--peers: \"peers local\"",
        ),
        (
            vec!["--peers", "x:1"],
            None,
            "--peers needs --admin-token-file",
        ),
    ];
    for (extra, env, expected) in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flagbelt"));
        cmd.args(["serve", "--source", &source, "--listen", "127.0.0.1:0"])
            .args(&extra)
            .env_remove("FLAGBELT_PEERS");
        if let Some(v) = env {
            cmd.env("FLAGBELT_PEERS", v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{extra:?} {env:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{extra:?} {env:?}: {err}");
        assert!(!err.contains("t0ken") && !err.contains("panicked"), "{err}");
    }
}
