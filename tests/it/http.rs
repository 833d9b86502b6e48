//! The HTTP surface in-process (`oneshot` on the router over fault-injected
//! in-memory stores), asserting status and cache headers on every route; and
//! the real `flagbelt serve` binary end to end over a `file://` source, with a
//! graceful SIGTERM.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW, CACHE_CONTROL, CONTENT_TYPE,
    ETAG, IF_NONE_MATCH, RETRY_AFTER, VARY, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Request, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use flagbelt::delivery::faults::{FaultyStore, Mode};
use flagbelt::delivery::{Delivery, DeliveryOptions};
use flagbelt::eval::model::KeyKind;
use flagbelt::http::{AdminToken, AppState, HttpConfig, admin_router, public_router, router};
use flagbelt::ruleset::{authoring, codec, keys};

const ENV: &str = "prod";
const ADMIN: &str = "s3cr3t-admin-token";
const APP_ORIGIN: &str = "https://app.example.com";

/// Stores, a signing key and three API keys: `web` (public, one origin),
/// `any` (public, `*`) and `api` (server).
struct Rig {
    stores: Vec<Arc<FaultyStore>>,
    signer: SigningKey,
    web: String,
    any: String,
    api: String,
    digests: [String; 3],
}

impl Rig {
    fn new() -> Self {
        let gen_key = |id: &str, kind| keys::generate(ENV, id, kind).expect("valid names");
        let web = gen_key("web", KeyKind::Frontend);
        let any = gen_key("any", KeyKind::Frontend);
        let api = gen_key("api", KeyKind::Backend);
        Self {
            stores: vec![Arc::new(FaultyStore::new()), Arc::new(FaultyStore::new())],
            signer: keys::new_signing_key(),
            web: web.token.expose_secret().to_owned(),
            any: any.token.expose_secret().to_owned(),
            api: api.token.expose_secret().to_owned(),
            digests: [
                web.secret_sha256_hex,
                any.secret_sha256_hex,
                api.secret_sha256_hex,
            ],
        }
    }

    fn yaml(&self, version: u64) -> String {
        let [web, any, api] = &self.digests;
        format!(
            r#"
environment: {ENV}
version: {version}
keys:
  - {{id: web, kind: frontend, secret_sha256: "{web}", allowed_origins: ["{APP_ORIGIN}"]}}
  - {{id: any, kind: frontend, secret_sha256: "{any}", allowed_origins: ["*"]}}
  - {{id: api, kind: backend, secret_sha256: "{api}"}}
segments:
  staff:
    - [{{attr: email, op: ends_with, values: ["@example.com"]}}]
flags:
  server-only:
    variants: {{on: true, off: false}}
    default: on
  banner:
    client: true
    variants: {{a: "Welcome", b: "Hello"}}
    default: a
    rules:
      - when: [{{attr: country, op: in, values: [NZ]}}]
        serve: b
  limits:
    client: true
    variants: {{small: {{max_items: 10}}, big: {{max_items: 1000}}}}
    default: small
    rules:
      - when: [{{segment: staff}}]
        serve: big
"#
        )
    }

    /// Publishes `version` to every store.
    async fn publish(&self, version: u64) {
        self.publish_yaml(&self.yaml(version)).await;
    }

    /// Publishes `yaml` to every store.
    async fn publish_yaml(&self, yaml: &str) {
        let (pb, _) = authoring::compile_yaml(yaml, 0).expect("valid yaml");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .expect("clock after 1970");
        let objects = codec::stored_objects(&pb, now, false, std::slice::from_ref(&self.signer));
        for s in &self.stores {
            s.publish(ENV, &objects).await.expect("in-memory put");
        }
    }

    fn delivery(&self) -> Arc<Delivery> {
        let stores: Vec<(String, Arc<FaultyStore>)> = self
            .stores
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("mem://store{i}"), Arc::clone(s)))
            .collect();
        let opts = DeliveryOptions {
            poll_interval: Duration::from_secs(3600),
            failure_ttl: Duration::from_millis(1),
            ..DeliveryOptions::default()
        };
        crate::rig::memory_delivery(&stores, &self.signer, opts)
    }

    /// Every secret the rig knows (must never appear in a response).
    fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = [&self.web, &self.any, &self.api]
            .iter()
            .filter_map(|k| k.rsplit('.').next().map(str::to_owned))
            .collect();
        out.push(ADMIN.to_owned());
        out
    }
}

fn config() -> HttpConfig {
    HttpConfig {
        preload: vec![ENV.to_owned()],
        admin_token: Some(AdminToken::new(&SecretString::from(ADMIN))),
        metrics: Some(prometheus()),
        min_version_wait: Duration::from_millis(500),
        ..HttpConfig::default()
    }
}

/// One recorder for the whole test binary (a process has one global recorder).
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
        })
        .clone()
}

/// A published, preloaded rig and its router.
async fn app() -> (Rig, Arc<Delivery>, Router) {
    app_with(config()).await
}

async fn app_with(config: HttpConfig) -> (Rig, Arc<Delivery>, Router) {
    let rig = Rig::new();
    rig.publish(1).await;
    let delivery = rig.delivery();
    assert!(delivery.preload(&[ENV.to_owned()]).await.is_empty());
    let app = router(AppState::new(Arc::clone(&delivery), config));
    (rig, delivery, app)
}

struct Res {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Res {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: impl http::header::AsHeaderName) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
            .unwrap_or("")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A JSON error that no cache may keep, with this status.
    fn assert_error(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.header(CONTENT_TYPE), "application/json");
        assert_eq!(self.header(CACHE_CONTROL), "no-store");
        assert!(self.headers.get(ETAG).is_none());
        self.json()
    }

    fn assert_no_secrets(&self, rig: &Rig) {
        let text = self.text();
        for s in rig.secrets() {
            assert!(!text.contains(&s), "a secret leaked into {text}");
        }
        for v in self.headers.values() {
            let v = v.to_str().unwrap_or("");
            for s in rig.secrets() {
                assert!(!v.contains(&s), "a secret leaked into a header");
            }
        }
    }
}

async fn send(app: &Router, req: Request<Body>) -> Res {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    Res {
        status: parts.status,
        headers: parts.headers,
        body: axum::body::to_bytes(body, usize::MAX)
            .await
            .expect("in-memory body"),
    }
}

fn b64(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

fn get(uri: &str) -> http::request::Builder {
    Request::get(uri)
}

fn eval_uri(key: &str, ctx: &Value) -> String {
    format!("/v1/eval/{key}/{}", b64(ctx))
}

fn post_json(uri: &str) -> http::request::Builder {
    Request::post(uri).header(CONTENT_TYPE, "application/json")
}

async fn post(app: &Router, uri: &str, auth: (&str, &str), body: &Value) -> Res {
    send(
        app,
        post_json(uri)
            .header(auth.0, auth.1)
            .body(Body::from(body.to_string()))
            .expect("valid request"),
    )
    .await
}

fn bearer(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

/// What a response header must be, in a table case.
enum Want {
    /// Exactly this value.
    Is(String),
    /// Present, and containing this text.
    Has(&'static str),
    /// Not sent.
    Absent,
    /// A weak entity tag, `W/"<32 hex>"`.
    WeakTag,
}

fn is(value: impl Into<String>) -> Want {
    Want::Is(value.into())
}

/// The headers of a JSON error no cache may keep ([`Res::assert_error`]).
fn error_headers() -> Vec<(&'static str, Want)> {
    vec![
        ("content-type", is("application/json")),
        ("cache-control", is("no-store")),
        ("etag", Want::Absent),
    ]
}

/// One row of a route x status x cache-headers table: a request, the status
/// and headers its answer must carry, and further checks of the answer.
struct Case<'a> {
    name: &'a str,
    req: Request<Body>,
    status: StatusCode,
    headers: Vec<(&'static str, Want)>,
    then: Box<dyn Fn(&Res) + 'a>,
}

impl<'a> Case<'a> {
    fn new(name: &'a str, req: Request<Body>, status: StatusCode) -> Self {
        Self {
            name,
            req,
            status,
            headers: Vec::new(),
            then: Box::new(|_| {}),
        }
    }

    /// Adds header expectations.
    fn headers(mut self, headers: impl IntoIterator<Item = (&'static str, Want)>) -> Self {
        self.headers.extend(headers);
        self
    }

    /// Further checks of the answer (body, secrets).
    fn then(mut self, then: impl Fn(&Res) + 'a) -> Self {
        self.then = Box::new(then);
        self
    }

    /// Sends the request and checks the row; every failure names the case.
    async fn check(self, app: &Router) -> Res {
        let name = self.name;
        let res = send(app, self.req).await;
        assert_eq!(res.status, self.status, "{name}: {}", res.text());
        for (header, want) in &self.headers {
            let got = res
                .headers
                .get(*header)
                .map(|v| v.to_str().expect("ASCII header"));
            match want {
                Want::Is(v) => assert_eq!(got, Some(v.as_str()), "{name}: {header}"),
                Want::Has(v) => assert!(
                    got.is_some_and(|g| g.contains(v)),
                    "{name}: {header} is {got:?}, should contain {v:?}"
                ),
                Want::Absent => assert!(
                    got.is_none(),
                    "{name}: {header} is {got:?}, should be absent"
                ),
                Want::WeakTag => assert!(
                    got.is_some_and(|t| t.starts_with("W/\"") && t.ends_with('"') && t.len() == 36),
                    "{name}: {header} is {got:?}, should be a weak tag"
                ),
            }
        }
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.then)(&res)));
        if let Err(e) = checked {
            let why = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("a check failed");
            panic!("{name}: {why}");
        }
        res
    }
}

/// Checks every row of `cases` in order.
async fn check_all(app: &Router, cases: Vec<Case<'_>>) {
    for case in cases {
        case.check(app).await;
    }
}

const CDN_CC: &str =
    "public, max-age=0, s-maxage=30, stale-while-revalidate=30, stale-if-error=86400";
const CDN_CDN_CC: &str = "s-maxage=30, stale-while-revalidate=30, stale-if-error=86400";

#[tokio::test]
async fn get_eval_is_cdn_cacheable_with_a_weak_etag_and_purge_tags() {
    let (rig, _, app) = app().await;
    let ctx = json!({"targetingKey": "u1", "country": "NZ"});
    let cdn = || {
        [
            ("cache-control", is(CDN_CC)),
            ("cdn-cache-control", is(CDN_CDN_CC)),
        ]
    };
    check_all(
        &app,
        vec![
            Case::new(
                "GET",
                get(&eval_uri(&rig.web, &ctx)).body(Body::empty()).unwrap(),
                StatusCode::OK,
            )
            .headers(cdn())
            .headers([
                ("content-type", is("application/json")),
                ("etag", Want::WeakTag),
                ("surrogate-key", is("env:prod key:web v:1")),
                ("cache-tag", is("env:prod,key:web,v:1")),
                ("vary", Want::Has("Accept-Encoding")),
                ("ruleset-version", is("1")),
                (
                    "access-control-expose-headers",
                    is("ETag, Ruleset-Version, Ruleset-Age, Flagbelt-Stale"),
                ),
            ])
            .then(|res| {
                assert!(res.header("ruleset-age").parse::<u64>().unwrap() < 60);
                assert_eq!(
                    res.json(),
                    json!({"environment": "prod", "version": 1, "flags": {
                        "banner": {"value": "Hello", "variant": "b", "reason": "TARGETING_MATCH"},
                        "limits": {"value": {"max_items": 10}, "variant": "small", "reason": "DEFAULT"},
                    }}),
                    "a public key sees client flags only"
                );
                res.assert_no_secrets(&rig);
            }),
            // HEAD is answered like GET, without a body.
            Case::new(
                "HEAD",
                Request::head(eval_uri(&rig.web, &ctx))
                    .body(Body::empty())
                    .unwrap(),
                StatusCode::OK,
            )
            .headers([("cache-control", is(CDN_CC))])
            .then(|res| assert!(res.body.is_empty())),
        ],
    )
    .await;
}

#[tokio::test]
async fn if_none_match_gives_304_and_only_relevant_attributes_change_the_etag() {
    let (rig, _, app) = app().await;
    let ctx = json!({"targetingKey": "u1", "country": "NZ", "email": "a@b.c"});
    let uri = eval_uri(&rig.web, &ctx);
    let first = send(&app, get(&uri).body(Body::empty()).unwrap()).await;
    let etag = first.header(ETAG).to_owned();

    for inm in [
        etag.clone(),
        etag.trim_start_matches("W/").to_owned(),
        format!("\"nope\", {etag}"),
        "*".to_owned(),
    ] {
        let res = send(
            &app,
            get(&uri)
                .header(IF_NONE_MATCH, &inm)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(res.status, StatusCode::NOT_MODIFIED, "If-None-Match: {inm}");
        assert!(res.body.is_empty());
        // A 304 carries what the 200 carried.
        assert_eq!(res.header(ETAG), etag);
        assert_eq!(res.header(CACHE_CONTROL), CDN_CC);
        assert_eq!(res.header("cdn-cache-control"), CDN_CDN_CC);
        assert_eq!(res.header("surrogate-key"), "env:prod key:web v:1");
        assert_eq!(res.header(VARY), first.header(VARY));
        assert_eq!(res.header("ruleset-version"), "1");
    }
    let miss = send(
        &app,
        get(&uri)
            .header(IF_NONE_MATCH, "W/\"other\"")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(miss.status, StatusCode::OK);

    let etag_of = |ctx: Value| {
        let app = app.clone();
        let uri = eval_uri(&rig.web, &ctx);
        async move {
            send(&app, get(&uri).body(Body::empty()).unwrap())
                .await
                .header(ETAG)
                .to_owned()
        }
    };
    // An attribute no visible flag reads, and a different key order: same tag.
    assert_eq!(
        etag_of(json!({"email": "a@b.c", "country": "NZ", "targetingKey": "u1", "noise": 42}))
            .await,
        etag
    );
    // A relevant attribute (directly, and through a segment): another tag.
    assert_ne!(
        etag_of(json!({"targetingKey": "u1", "country": "AU", "email": "a@b.c"})).await,
        etag
    );
    assert_ne!(
        etag_of(json!({"targetingKey": "u1", "country": "NZ", "email": "a@example.com"})).await,
        etag
    );
    // Another key sees the same flags, but the tag is per key.
    let other = send(
        &app,
        get(&eval_uri(&rig.any, &ctx)).body(Body::empty()).unwrap(),
    )
    .await;
    assert_ne!(other.header(ETAG), etag);
}

#[tokio::test]
async fn post_eval_is_private_and_server_keys_see_every_flag() {
    let (rig, _, app) = app().await;
    let body = json!({"context": {"targetingKey": "u1", "email": "x@example.com"}});
    let (h, v) = bearer(&rig.api);
    let request = |auth: (&str, &str), inm: Option<&str>, body: &Value| {
        let mut b = post_json("/v1/eval").header(auth.0, auth.1);
        if let Some(tag) = inm {
            b = b.header(IF_NONE_MATCH, tag);
        }
        b.body(Body::from(body.to_string())).unwrap()
    };
    let private = || [("cache-control", is("private, no-cache"))];
    let res = Case::new("server key", request((h, &v), None, &body), StatusCode::OK)
        .headers(private())
        .headers([
            ("cdn-cache-control", Want::Absent),
            ("surrogate-key", Want::Absent),
            // No CORS grant for server keys.
            ("access-control-allow-origin", Want::Absent),
            ("ruleset-version", is("1")),
            // ETag and 304 on POST.
            ("etag", Want::WeakTag),
        ])
        .then(|res| {
            let flags = res.json()["flags"].clone();
            assert_eq!(flags["server-only"]["value"], true);
            assert_eq!(flags["limits"]["variant"], "big");
            assert_eq!(flags.as_object().unwrap().len(), 3);
        })
        .check(&app)
        .await;
    let etag = res.header(ETAG).to_owned();
    check_all(
        &app,
        vec![
            Case::new(
                "If-None-Match",
                request((h, &v), Some(&etag), &body),
                StatusCode::NOT_MODIFIED,
            )
            .headers(private()),
            // A public key over POST (X-API-Key) sees client flags only.
            Case::new(
                "public key",
                request(("x-api-key", &rig.web), None, &body),
                StatusCode::OK,
            )
            .headers(private())
            .then(|res| {
                let flags = res.json()["flags"].clone();
                assert!(flags.get("server-only").is_none());
                assert_eq!(flags.as_object().unwrap().len(), 2);
            }),
            // `{}` is an empty context.
            Case::new(
                "empty body",
                request(("x-api-key", &rig.web), None, &json!({})),
                StatusCode::OK,
            )
            .then(|res| assert_eq!(res.json()["flags"]["banner"]["reason"], "DEFAULT")),
        ],
    )
    .await;
}

/// A table of cases: longer than a function should be, by its rows.
#[tokio::test]
async fn ofrep_bulk_has_an_etag_and_answers_304_to_a_post() {
    let (rig, _, app) = app().await;
    let body = json!({"context": {"targetingKey": "u1", "country": "NZ"}});
    const BULK: &str = "/ofrep/v1/evaluate/flags";
    let request = |auth: (&str, &str), body: &Value| {
        post_json(BULK)
            .header(auth.0, auth.1)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let res = Case::new(
        "public key",
        request(("x-api-key", &rig.web), &body),
        StatusCode::OK,
    )
    .headers([
        ("cache-control", is("private, no-cache")),
        ("ruleset-version", is("1")),
    ])
    .then(|res| {
        assert_eq!(
            res.json(),
            json!({"flags": [
                {"key": "banner", "value": "Hello", "reason": "TARGETING_MATCH", "variant": "b"},
                {"key": "limits", "value": {"max_items": 10}, "reason": "DEFAULT", "variant": "small"},
            ], "eventStreams": [{
                "type": "sse",
                "endpoint": {"requestUri": format!("/v1/stream?key={}", rig.web)},
                "inactivityDelaySec": 120,
            }]})
        );
    })
    .check(&app)
    .await;
    let etag = res.header(ETAG).to_owned();
    let (h, v) = bearer(&rig.web);
    // Both empty request shapes real clients send.
    let empty = |res: &Res| {
        let flags = res.json()["flags"].as_array().unwrap().clone();
        assert_eq!(flags.len(), 3);
        assert!(flags.iter().all(|f| f.get("variant").is_some()));
        // A server key never goes into a URL: no stream is advertised to it.
        assert!(res.json().get("eventStreams").is_none(), "{}", res.text());
    };
    check_all(
        &app,
        vec![
            Case::new(
                "If-None-Match",
                post_json(BULK)
                    .header(h, &v)
                    .header(IF_NONE_MATCH, &etag)
                    .body(Body::from(body.to_string()))
                    .unwrap(),
                StatusCode::NOT_MODIFIED,
            )
            .headers([("etag", is(&etag))])
            .then(|res| assert!(res.body.is_empty())),
            Case::new(
                "{}",
                request(("x-api-key", &rig.api), &json!({})),
                StatusCode::OK,
            )
            .then(empty),
            Case::new(
                "{\"context\": {}}",
                request(("x-api-key", &rig.api), &json!({"context": {}})),
                StatusCode::OK,
            )
            .then(empty),
            // Bulk errors: `{errorCode, errorDetails}`, no key.
            Case::new(
                "body not JSON",
                Request::post(BULK)
                    .header("x-api-key", &rig.web)
                    .body(Body::from("{not json"))
                    .unwrap(),
                StatusCode::BAD_REQUEST,
            )
            .headers(error_headers())
            .then(|res| {
                let err = res.json();
                assert_eq!(err["errorCode"], "PARSE_ERROR");
                assert!(err["errorDetails"].is_string());
                assert!(err.get("key").is_none());
            }),
            Case::new(
                "malformed key",
                request(("x-api-key", "fbp.nope"), &body),
                StatusCode::UNAUTHORIZED,
            )
            .headers(error_headers())
            .then(|res| assert_eq!(res.json()["errorCode"], "UNAUTHORIZED")),
        ],
    )
    .await;
}

/// A table of cases: longer than a function should be, by its rows.
#[tokio::test]
async fn ofrep_single_flag_shapes() {
    let (rig, _, app) = app().await;
    let body = json!({"context": {"targetingKey": "u1", "country": "NZ"}});
    let flag = |path: &str, key: &str, body: &Value| {
        post_json(&format!("/ofrep/v1/evaluate/flags/{path}"))
            .header("x-api-key", key)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let private = || [("cache-control", is("private, no-cache"))];
    // Unknown flag, and a server-only flag asked by a public key: the same 404.
    let not_found = |key: &'static str| {
        move |res: &Res| {
            let err = res.json();
            assert_eq!(err["key"], key);
            assert_eq!(err["errorCode"], "FLAG_NOT_FOUND");
            assert!(err["errorDetails"].is_string());
        }
    };
    check_all(
        &app,
        vec![
            Case::new("banner", flag("banner", &rig.web, &body), StatusCode::OK)
                .headers(private())
                .headers([("etag", Want::Absent)])
                .then(|res| {
                    assert_eq!(
                        res.json(),
                        json!({"key": "banner", "value": "Hello", "reason": "TARGETING_MATCH", "variant": "b"})
                    );
                }),
            Case::new(
                "server-only, server key",
                flag("server-only", &rig.api, &json!({})),
                StatusCode::OK,
            )
            .headers(private())
            .then(|res| {
                assert_eq!(
                    res.json(),
                    json!({"key": "server-only", "value": true, "reason": "STATIC", "variant": "on"})
                );
            }),
            Case::new("unknown flag", flag("nope", &rig.web, &body), StatusCode::NOT_FOUND)
                .headers(error_headers())
                .headers([("ruleset-version", is("1"))])
                .then(not_found("nope")),
            Case::new(
                "server-only, public key",
                flag("server-only", &rig.web, &body),
                StatusCode::NOT_FOUND,
            )
            .headers(error_headers())
            .headers([("ruleset-version", is("1"))])
            .then(not_found("server-only")),
            // A key with a slash (sent unencoded by some clients) is a 404 of that key.
            Case::new(
                "key with a slash",
                flag("a%20b/c", &rig.web, &body),
                StatusCode::NOT_FOUND,
            )
            .headers(error_headers())
            .then(|res| {
                assert_eq!(
                    res.json(),
                    json!({"key": "a b/c", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "flag not found"})
                );
            }),
            // 400 shapes carry the key.
            Case::new(
                "empty body",
                Request::post("/ofrep/v1/evaluate/flags/banner")
                    .header("x-api-key", &rig.web)
                    .body(Body::from(""))
                    .unwrap(),
                StatusCode::BAD_REQUEST,
            )
            .headers(error_headers())
            .then(|res| {
                let err = res.json();
                assert_eq!(err["key"], "banner");
                assert_eq!(err["errorCode"], "PARSE_ERROR");
            }),
            Case::new(
                "context not an object",
                flag("banner", &rig.web, &json!({"context": [1]})),
                StatusCode::BAD_REQUEST,
            )
            .headers(error_headers())
            .then(|res| {
                let err = res.json();
                assert_eq!(err["errorCode"], "INVALID_CONTEXT");
                assert_eq!(err["key"], "banner");
            }),
        ],
    )
    .await;
}

/// A table of cases: longer than a function should be, by its rows.
#[tokio::test]
async fn ruleset_download_by_accept() {
    let (rig, delivery, app) = app().await;
    let snap = delivery.get(ENV).await.unwrap().snapshot();
    let req = |accept: Option<&str>, key: &str| {
        let mut b = get("/v1/ruleset").header("x-api-key", key);
        if let Some(a) = accept {
            b = b.header("accept", a);
        }
        b.body(Body::empty()).unwrap()
    };
    let pb = Case::new(
        "protobuf",
        req(Some("application/x-protobuf"), &rig.api),
        StatusCode::OK,
    )
    .headers([
        ("content-type", is("application/x-protobuf")),
        ("cache-control", is("private, no-cache")),
        ("vary", Want::Has("Accept")),
        ("ruleset-version", is("1")),
        ("etag", Want::WeakTag),
    ])
    .then(|res| assert_eq!(res.body, snap.ruleset_bytes))
    .check(&app)
    .await;
    let pb_tag = pb.header(ETAG).to_owned();
    let error_code =
        |code: &'static str| move |res: &Res| assert_eq!(res.json()["error"]["code"], code);
    check_all(
        &app,
        vec![
            Case::new("no Accept", req(None, &rig.api), StatusCode::OK)
                .headers([("content-type", is("application/x-protobuf"))]),
            Case::new(
                "JSON",
                req(Some("application/json"), &rig.api),
                StatusCode::OK,
            )
            .headers([("content-type", is("application/json"))])
            .then(|res| {
                let v = res.json();
                assert_eq!(v["environment"], ENV);
                assert_eq!(v["version"], 1);
                assert_eq!(v["flags"][0]["variants"][0]["value"], true);
                assert_ne!(res.header(ETAG), pb_tag, "one tag per representation");
            }),
            Case::new(
                "If-None-Match",
                get("/v1/ruleset")
                    .header("x-api-key", &rig.api)
                    .header(IF_NONE_MATCH, &pb_tag)
                    .body(Body::empty())
                    .unwrap(),
                StatusCode::NOT_MODIFIED,
            )
            .then(|res| assert!(res.body.is_empty())),
            Case::new(
                "unsupported Accept",
                req(Some("text/html"), &rig.api),
                StatusCode::NOT_ACCEPTABLE,
            )
            .headers(error_headers())
            .then(error_code("not_acceptable")),
            Case::new(
                "public key",
                req(Some("application/json"), &rig.web),
                StatusCode::FORBIDDEN,
            )
            .headers(error_headers())
            .headers([("ruleset-version", is("1"))])
            .then(|res| {
                assert_eq!(res.json()["error"]["code"], "wrong_key_kind");
                res.assert_no_secrets(&rig);
            }),
            Case::new(
                "no key",
                get("/v1/ruleset").body(Body::empty()).unwrap(),
                StatusCode::UNAUTHORIZED,
            )
            .headers(error_headers())
            .then(error_code("missing_key")),
        ],
    )
    .await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let rig = Rig::new();
    rig.publish(1).await;
    let delivery = rig.delivery();
    let app = router(AppState::new(Arc::clone(&delivery), config()));

    let res = send(&app, get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header(CACHE_CONTROL), "no-store");

    let res = send(&app, get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready before preload"
    );
    assert_eq!(res.header(CACHE_CONTROL), "no-store");
    assert_eq!(res.json()["ready"], false);

    assert!(delivery.preload(&[ENV.to_owned()]).await.is_empty());
    let res = send(&app, get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header(CACHE_CONTROL), "no-store");

    // Storage failing later does not flip readiness.
    for s in &rig.stores {
        s.set_mode(Mode::Error);
    }
    delivery.refresh_all().await;
    let res = send(&app, get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::OK);

    let res = send(&app, get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header(CACHE_CONTROL), "no-store");
    assert!(res.header(CONTENT_TYPE).starts_with("text/plain"));
    assert!(
        res.text().contains("flagbelt_environments_loaded"),
        "{}",
        res.text()
    );
}

#[tokio::test]
async fn admin_needs_the_token() {
    let (rig, _, app) = app().await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic czNjcjN0"),
        Some(&*format!("Bearer {}", rig.api)),
    ] {
        let mut b = get("/admin/v1/status");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        let res = send(&app, b.body(Body::empty()).unwrap()).await;
        res.assert_error(StatusCode::UNAUTHORIZED);
        assert!(res.header(WWW_AUTHENTICATE).starts_with("Bearer"));
        res.assert_no_secrets(&rig);
    }
    let res = send(
        &app,
        get("/admin/v1/status")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header(CACHE_CONTROL), "no-store");
    let v = res.json();
    assert_eq!(v["ready"], true);
    assert_eq!(v["environments"][0]["environment"], ENV);
    assert_eq!(v["environments"][0]["version"], 1);
    assert_eq!(v["sources"].as_array().unwrap().len(), 2);
    res.assert_no_secrets(&rig);

    rig.publish(2).await;
    let reload = Request::post("/admin/v1/reload");
    let res = send(&app, reload.body(Body::empty()).unwrap()).await;
    res.assert_error(StatusCode::UNAUTHORIZED);
    let res = send(
        &app,
        Request::post("/admin/v1/reload")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header(CACHE_CONTROL), "no-store");
    let v = res.json();
    assert_eq!(v["refreshed"], 1);
    assert_eq!(
        v["environments"][0],
        json!({"environment": ENV, "previous_version": 1, "version": 2, "changed": true, "last_error": null})
    );

    // Without a token the admin API does not exist.
    let (_, _, app) = app_with(HttpConfig {
        admin_token: None,
        ..config()
    })
    .await;
    let res = send(
        &app,
        get("/admin/v1/status")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        res.assert_error(StatusCode::NOT_FOUND)["error"]["code"],
        "admin_disabled"
    );
}

#[tokio::test]
async fn bad_input_is_a_json_error_never_cached_and_never_echoes_keys() {
    let (rig, _, app) = app().await;
    let ctx = json!({"targetingKey": "u1"});
    let secret = rig.web.rsplit('.').next().unwrap().to_owned();
    let wrong_secret = rig.web.replace(&secret, &URL_SAFE_NO_PAD.encode([9u8; 32]));
    let other_env = rig.web.replacen("prod", "nope", 1);
    let huge = "A".repeat(9 * 1024);
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "malformed base64",
            get(&format!("/v1/eval/{}/!!!", rig.web))
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "not JSON",
            get(&format!(
                "/v1/eval/{}/{}",
                rig.web,
                URL_SAFE_NO_PAD.encode("{nope")
            ))
            .body(Body::empty())
            .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "not an object",
            get(&eval_uri(&rig.web, &json!([1, 2])))
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_context",
        ),
        (
            "oversized context segment",
            get(&format!("/v1/eval/{}/{huge}", rig.web))
                .body(Body::empty())
                .unwrap(),
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
        ),
        (
            "oversized body",
            Request::post("/v1/eval")
                .header("x-api-key", &rig.web)
                .body(Body::from(format!(
                    "{{\"context\": {{\"pad\": \"{}\"}}}}",
                    "x".repeat(70 * 1024)
                )))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "body not JSON",
            Request::post("/v1/eval")
                .header("x-api-key", &rig.web)
                .body(Body::from("nope"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "context not an object",
            Request::post("/v1/eval")
                .header("x-api-key", &rig.web)
                .body(Body::from(r#"{"context": "x"}"#))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_context",
        ),
        (
            "malformed key",
            get(&eval_uri(&format!("fbp.prod.web.{}x", &secret[..10]), &ctx))
                .body(Body::empty())
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "malformed_key",
        ),
        (
            "unknown environment",
            get(&eval_uri(&other_env, &ctx))
                .body(Body::empty())
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "unknown_key",
        ),
        (
            "wrong secret",
            get(&eval_uri(&wrong_secret, &ctx))
                .body(Body::empty())
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "unknown_key",
        ),
        (
            "unknown key id",
            get(&eval_uri(&rig.web.replacen(".web.", ".zzz.", 1), &ctx))
                .body(Body::empty())
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "unknown_key",
        ),
        (
            "missing key",
            Request::post("/v1/eval").body(Body::from("{}")).unwrap(),
            StatusCode::UNAUTHORIZED,
            "missing_key",
        ),
        (
            "server key in the URL",
            get(&eval_uri(&rig.api, &ctx)).body(Body::empty()).unwrap(),
            StatusCode::FORBIDDEN,
            "wrong_key_kind",
        ),
        (
            "bad Flagbelt-Min-Version",
            get(&eval_uri(&rig.web, &ctx))
                .header("flagbelt-min-version", "soon")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "wrong method",
            Request::delete("/v1/eval").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "unknown route",
            get("/v2/nothing").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (what, req, status, code) in cases {
        let res = send(&app, req).await;
        assert_eq!(res.status, status, "{what}: {}", res.text());
        let err = res.assert_error(status);
        assert_eq!(err["error"]["code"], code, "{what}");
        assert!(err["error"]["message"].is_string(), "{what}");
        res.assert_no_secrets(&rig);
    }

    let res = send(
        &app,
        Request::put("/v1/ruleset").body(Body::empty()).unwrap(),
    )
    .await;
    res.assert_error(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.header(ALLOW), "GET,HEAD");
}

#[tokio::test]
async fn cors_preflights_and_per_key_origins() {
    let (rig, _, app) = app().await;
    for path in [
        "/v1/eval/anything/e30".to_owned(),
        "/v1/eval".to_owned(),
        "/ofrep/v1/evaluate/flags".to_owned(),
        "/ofrep/v1/evaluate/flags/banner".to_owned(),
    ] {
        let res = send(
            &app,
            Request::options(&path)
                .header("origin", "https://evil.example")
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(res.status, StatusCode::NO_CONTENT, "{path}");
        assert_eq!(res.header(ACCESS_CONTROL_ALLOW_ORIGIN), "*");
        assert_eq!(
            res.header(ACCESS_CONTROL_ALLOW_METHODS),
            "GET, POST, OPTIONS"
        );
        assert_eq!(
            res.header(ACCESS_CONTROL_ALLOW_HEADERS),
            "Authorization, X-API-Key, Content-Type, If-None-Match, Flagbelt-Min-Version"
        );
        assert_eq!(res.header(ACCESS_CONTROL_MAX_AGE), "7200");
    }

    let ctx = json!({"targetingKey": "u1"});
    let with_origin = |key: &str, origin: Option<&str>| {
        let mut b = get(&eval_uri(key, &ctx));
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        b.body(Body::empty()).unwrap()
    };
    // Listed origin: echoed, and the answer varies by Origin.
    let res = send(&app, with_origin(&rig.web, Some(APP_ORIGIN))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header(ACCESS_CONTROL_ALLOW_ORIGIN), APP_ORIGIN);
    assert!(res.header(VARY).contains("Origin"));
    assert!(res.header(ACCESS_CONTROL_EXPOSE_HEADERS).contains("ETag"));
    // Unlisted origin, or none: no grant, still Vary: Origin (a shared cache
    // must not hand the grant-less answer to a listed origin).
    for origin in [Some("https://evil.example"), None] {
        let res = send(&app, with_origin(&rig.web, origin)).await;
        assert_eq!(res.status, StatusCode::OK);
        assert!(res.headers.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(res.header(VARY).contains("Origin"));
    }
    // `*`: any origin, no Vary: Origin (one cache entry for all).
    let res = send(&app, with_origin(&rig.any, Some("https://evil.example"))).await;
    assert_eq!(res.header(ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert!(!res.header(VARY).contains("Origin"));
    // Errors can be read by any page (they say nothing secret).
    let res = send(
        &app,
        with_origin(&rig.web.replacen("prod", "nope", 1), Some(APP_ORIGIN)),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.header(ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    // POST with a public key gets the same per-key grant.
    let res = send(
        &app,
        Request::post("/ofrep/v1/evaluate/flags")
            .header("x-api-key", &rig.web)
            .header("origin", APP_ORIGIN)
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(res.header(ACCESS_CONTROL_ALLOW_ORIGIN), APP_ORIGIN);
}

#[tokio::test]
async fn min_version_catches_up_or_answers_stale() {
    let (rig, _, app) = app().await;
    let ctx = json!({"targetingKey": "u1"});
    rig.publish(2).await;
    let eval = |min: Option<&str>| {
        let mut b = get(&eval_uri(&rig.web, &ctx));
        if let Some(v) = min {
            b = b.header("flagbelt-min-version", v);
        }
        b.body(Body::empty()).unwrap()
    };
    check_all(
        &app,
        vec![
            // Without the header the instance serves what it holds (polls are
            // hourly here).
            Case::new("no header", eval(None), StatusCode::OK)
                .headers([("ruleset-version", is("1"))]),
            // With it, the instance catches up before answering.
            Case::new("min version 2", eval(Some("2")), StatusCode::OK)
                .headers([
                    ("ruleset-version", is("2")),
                    ("cache-control", is(CDN_CC)),
                    ("flagbelt-stale", Want::Absent),
                ])
                .then(|res| assert_eq!(res.json()["version"], 2)),
        ],
    )
    .await;
    // A version nobody published: answered from what it has, marked stale,
    // never cacheable and without a validator; OFREP too.
    let stale = || {
        [
            ("flagbelt-stale", is("true")),
            ("cache-control", is("no-store")),
        ]
    };
    let start = std::time::Instant::now();
    Case::new("min version 99", eval(Some("99")), StatusCode::OK)
        .headers(stale())
        .headers([
            ("etag", Want::Absent),
            ("surrogate-key", Want::Absent),
            ("ruleset-version", is("2")),
        ])
        .then(|res| {
            let v = res.json();
            assert!(
                v["flags"]
                    .as_object()
                    .unwrap()
                    .values()
                    .all(|f| f["reason"] == "STALE"),
                "{v}"
            );
        })
        .check(&app)
        .await;
    assert!(start.elapsed() < Duration::from_secs(3));
    Case::new(
        "OFREP, min version 99",
        Request::post("/ofrep/v1/evaluate/flags")
            .header("x-api-key", &rig.api)
            .header("flagbelt-min-version", "99")
            .body(Body::from("{}"))
            .unwrap(),
        StatusCode::OK,
    )
    .headers(stale())
    .then(|res| {
        let flags = res.json()["flags"].as_array().unwrap().clone();
        assert!(
            flags
                .iter()
                .all(|f| f["reason"] == "STALE" && f.get("variant").is_some())
        );
    })
    .check(&app)
    .await;
}

#[tokio::test]
async fn storage_down_with_nothing_cached_is_503_with_retry_after() {
    let rig = Rig::new();
    rig.publish(1).await;
    for s in &rig.stores {
        s.set_mode(Mode::Error);
    }
    let app = router(AppState::new(rig.delivery(), config()));
    let res = send(
        &app,
        get(&eval_uri(&rig.web, &json!({})))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let err = res.assert_error(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(err["error"]["code"], "unavailable");
    assert_eq!(res.header(RETRY_AFTER), "1");
    res.assert_no_secrets(&rig);
}

#[tokio::test]
async fn slow_requests_time_out_and_excess_requests_are_shed() {
    let rig = Rig::new();
    rig.publish(1).await;
    // The first load takes 250 ms (under the 300 ms source deadline).
    for s in &rig.stores {
        s.set_mode(Mode::Delay(Duration::from_millis(250)));
    }
    let app = router(AppState::new(
        rig.delivery(),
        HttpConfig {
            request_timeout: Duration::from_millis(50),
            ..config()
        },
    ));
    let res = send(
        &app,
        get(&eval_uri(&rig.web, &json!({})))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        res.assert_error(StatusCode::SERVICE_UNAVAILABLE)["error"]["code"],
        "timeout"
    );
    assert_eq!(
        res.header(ACCESS_CONTROL_ALLOW_ORIGIN),
        "*",
        "readable by the page"
    );
    assert!(res.header(ACCESS_CONTROL_EXPOSE_HEADERS).contains("ETag"));
    // Health is outside the limits.
    let res = send(&app, get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::OK);

    let app = router(AppState::new(
        rig.delivery(),
        HttpConfig {
            max_concurrency: 1,
            ..config()
        },
    ));
    let slow = {
        let app = app.clone();
        let uri = eval_uri(&rig.web, &json!({}));
        tokio::spawn(async move {
            send(&app, get(&uri).body(Body::empty()).unwrap())
                .await
                .status
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let res = send(
        &app,
        get(&eval_uri(&rig.any, &json!({})))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        res.assert_error(StatusCode::SERVICE_UNAVAILABLE)["error"]["code"],
        "overloaded"
    );
    assert_eq!(res.header(RETRY_AFTER), "1");
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn responses_are_compressed_when_asked_and_large_enough() {
    let (rig, _, app) = app().await;
    // This rig's answers are a few hundred bytes: under the threshold, sent
    // as they are, still weakly tagged and varying by coding for caches.
    let res = send(
        &app,
        get(&eval_uri(&rig.web, &json!({"targetingKey": "u1"})))
            .header("accept-encoding", "gzip, br")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body.len() < 512, "{} bytes", res.body.len());
    assert!(res.headers.get("content-encoding").is_none());
    assert!(
        res.header(ETAG).starts_with("W/"),
        "weak: one tag for every coding"
    );
    assert!(res.header(VARY).contains("Accept-Encoding"));
    assert_eq!(res.header(CACHE_CONTROL), CDN_CC);
    // A large body is compressed in the coding asked for.
    for coding in ["gzip", "br"] {
        let res = send(
            &app,
            get("/openapi.json")
                .header("accept-encoding", coding)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.header("content-encoding"), coding);
        assert!(
            res.body.len() < 20_000,
            "{coding}: {} bytes",
            res.body.len()
        );
    }
}

/// The server-side answer cache keeps answers from their second request on;
/// it must never hand one caller's answer to another audience, key or
/// version, nor keep a stale answer.
#[tokio::test]
async fn cached_answers_follow_audience_key_version_and_staleness() {
    let (rig, delivery, app) = app().await;
    let ctx = json!({"targetingKey": "u1", "country": "NZ"});
    let auth = |key: &str| ("authorization".to_owned(), format!("Bearer {key}"));
    let eval_get = |key: &str| {
        let app = app.clone();
        let uri = eval_uri(key, &ctx);
        async move { send(&app, get(&uri).body(Body::empty()).unwrap()).await }
    };
    let eval_post = |key: &str| {
        let (h, v) = auth(key);
        let app = app.clone();
        let ctx = ctx.clone();
        async move { post(&app, "/v1/eval", (&h, &v), &json!({"context": ctx})).await }
    };
    let bulk = |key: &str| {
        let (h, v) = auth(key);
        let app = app.clone();
        let ctx = ctx.clone();
        async move {
            post(
                &app,
                "/ofrep/v1/evaluate/flags",
                (&h, &v),
                &json!({"context": ctx}),
            )
            .await
        }
    };
    // Three rounds: computed, computed and kept, served from the cache.
    for _ in 0..3 {
        let web = eval_get(&rig.web).await.json();
        assert_eq!(web["version"], 1);
        assert_eq!(web["flags"]["banner"]["variant"], "b");
        assert!(web["flags"].get("server-only").is_none(), "{web}");
        let api = eval_post(&rig.api).await.json();
        assert_eq!(api["flags"]["server-only"]["value"], true, "{api}");
        // The OFREP bulk answer names the key's own stream URL.
        for key in [&rig.web, &rig.any] {
            let v = bulk(key).await.json();
            let uri = v["eventStreams"][0]["endpoint"]["requestUri"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(uri, format!("/v1/stream?key={key}"));
        }
        assert!(bulk(&rig.api).await.json().get("eventStreams").is_none());
    }
    // The GET path is now remembered with its tag: revalidations are 304s
    // with the full headers, and another secret for the same key id, with
    // the same context, is still refused (paths are compared whole).
    // `GET` with `If-None-Match` (and another header), for `key`.
    let eval_with = |key: &str, header: &'static str, value: &str| {
        let app = app.clone();
        let req = get(&eval_uri(key, &ctx))
            .header(header, value)
            .body(Body::empty())
            .unwrap();
        async move { send(&app, req).await }
    };
    let tag = eval_get(&rig.web).await.header(ETAG).to_owned();
    for _ in 0..3 {
        let res = eval_with(&rig.web, "if-none-match", &tag).await;
        assert_eq!(res.status, StatusCode::NOT_MODIFIED);
        assert_eq!(res.header(ETAG), tag);
        assert_eq!(res.header(CACHE_CONTROL), CDN_CC);
        assert_eq!(res.header("ruleset-version"), "1");
        assert!(res.header("surrogate-key").contains("key:web"));
    }
    let (id, secret) = rig.web.rsplit_once('.').unwrap();
    let forged = format!("{id}.{}", secret.chars().rev().collect::<String>());
    for _ in 0..3 {
        send(
            &app,
            get(&eval_uri(&forged, &ctx)).body(Body::empty()).unwrap(),
        )
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    }
    // A new version: the same context is evaluated again.
    rig.publish(2).await;
    delivery.refresh_all().await;
    for _ in 0..3 {
        assert_eq!(eval_get(&rig.web).await.json()["version"], 2);
    }
    // Asking for a version this instance cannot reach: STALE, never cached,
    // and the next fresh answer is not STALE.
    for _ in 0..3 {
        let res = eval_with(&rig.web, "flagbelt-min-version", "9").await;
        assert_eq!(res.json()["flags"]["banner"]["reason"], "STALE");
    }
    assert_eq!(
        eval_get(&rig.web).await.json()["flags"]["banner"]["reason"],
        "TARGETING_MATCH"
    );
    // Revoking the key: the remembered path (and its tag) stop working as
    // soon as the snapshot without the key is loaded.
    let tag = eval_get(&rig.web).await.header(ETAG).to_owned();
    for _ in 0..3 {
        let res = eval_with(&rig.web, "if-none-match", &tag).await;
        assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    }
    let revoked: String = rig
        .yaml(3)
        .lines()
        .filter(|l| !l.contains("{id: web,"))
        .map(|l| format!("{l}\n"))
        .collect();
    rig.publish_yaml(&revoked).await;
    delivery.refresh_all().await;
    for inm in [None, Some(tag.as_str()), Some("*")] {
        let mut req = get(&eval_uri(&rig.web, &ctx));
        if let Some(v) = inm {
            req = req.header(IF_NONE_MATCH, v);
        }
        send(&app, req.body(Body::empty()).unwrap())
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn with_an_admin_listener_admin_and_metrics_leave_the_public_one() {
    let rig = Rig::new();
    rig.publish(1).await;
    let delivery = rig.delivery();
    assert!(delivery.preload(&[ENV.to_owned()]).await.is_empty());
    let state = AppState::new(delivery, config());
    let public = public_router(state.clone());
    let admin = admin_router(state);
    let status = || {
        get("/admin/v1/status")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap()
    };
    let metrics = || get("/metrics").body(Body::empty()).unwrap();
    let eval = || {
        get(&eval_uri(&rig.web, &json!({})))
            .body(Body::empty())
            .unwrap()
    };

    send(&public, status())
        .await
        .assert_error(StatusCode::NOT_FOUND);
    send(&public, metrics())
        .await
        .assert_error(StatusCode::NOT_FOUND);
    assert_eq!(send(&public, eval()).await.status, StatusCode::OK);
    assert_eq!(send(&admin, status()).await.status, StatusCode::OK);
    assert_eq!(send(&admin, metrics()).await.status, StatusCode::OK);
    send(&admin, eval())
        .await
        .assert_error(StatusCode::NOT_FOUND);
    for app in [&public, &admin] {
        let res = send(app, get("/readyz").body(Body::empty()).unwrap()).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.json(), json!({"ready": true}));
    }
}

#[tokio::test]
async fn an_unsatisfiable_accept_encoding_is_an_uncacheable_406() {
    let (rig, _, app) = app().await;
    let res = send(
        &app,
        get(&eval_uri(&rig.web, &json!({})))
            .header("accept-encoding", "identity;q=0, *;q=0")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let err = res.assert_error(StatusCode::NOT_ACCEPTABLE);
    assert_eq!(err["error"]["code"], "not_acceptable");
    assert!(res.headers.get("cdn-cache-control").is_none());
    assert!(res.headers.get("surrogate-key").is_none());
    assert_eq!(res.header("ruleset-version"), "1");
}

#[test]
fn serve_rejects_bad_configuration_clearly() {
    use std::process::Command;
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty-token");
    std::fs::write(&empty, " \n").unwrap();
    let source = format!("file://{}", tmp.path().display());
    let missing = tmp.path().join("missing");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--admin-token-file", missing.to_str().unwrap()],
            "cannot read the admin token file",
        ),
        (
            vec!["--admin-token-file", empty.to_str().unwrap()],
            "admin token file",
        ),
        (vec!["--preload", "a/b"], "not an environment name"),
        (vec!["--listen", "nowhere"], "invalid value"),
        (
            vec!["--min-version-wait-ms", "6000"],
            "must be less than --request-timeout-ms",
        ),
        (
            vec!["--listen", "127.0.0.1:1", "--admin-listen", "127.0.0.1:1"],
            "must differ",
        ),
    ];
    for (extra, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_flagbelt"))
            .args(["serve", "--source", &source])
            .args(&extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The real binary: compile, serve over `file://`, wait for readiness, one
/// evaluation over a plain HTTP/1.1 connection, then SIGTERM and exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_and_stops_gracefully() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};

    let tmp = tempfile::tempdir().unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/design-example.yaml");
    let out = tmp.path().join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args([
            "compile",
            fixture.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let token = tmp.path().join("admin-token");
    std::fs::write(&token, "  t0ken\n").unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_flagbelt"))
        .args([
            "serve",
            "--source",
            &format!("file://{}", out.display()),
            "--listen",
            "127.0.0.1:0",
            "--preload",
            "production",
            "--admin-token-file",
            token.to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("flagbelt listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res = http1(&addr, "GET", "/readyz", &[]).await;
        if res.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready: {res}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The public key of tests/fixtures/design-example.yaml.
    let key = "fbp.production.web.AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA";
    let ctx = b64(&json!({"targetingKey": "u1", "country": "NZ", "app.version": "2.4.0"}));
    let res = http1(&addr, "GET", &format!("/v1/eval/{key}/{ctx}"), &[]).await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    let lower = res.to_ascii_lowercase();
    assert!(
        lower.contains("\r\ncache-control: public, max-age=0, s-maxage=30"),
        "{res}"
    );
    assert!(lower.contains("\r\netag: w/\""), "{res}");
    assert!(lower.contains("\r\nruleset-version: 42\r\n"), "{res}");
    assert!(
        res.contains(r#""new-checkout":{"value":true,"variant":"on","reason":"TARGETING_MATCH"}"#),
        "{res}"
    );

    // The trimmed token works.
    let res = http1(
        &addr,
        "GET",
        "/admin/v1/status",
        &[("authorization", "Bearer t0ken")],
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("flagbelt did not stop after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "graceful exit");
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); the whole
/// response as text.
async fn http1(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /v1/stream`: one OFREP `refetchEvaluation` event per new version, to
/// a listener authenticated by header or by `?key=` (EventSource), never
/// cacheable; no key is 401.
#[tokio::test]
async fn stream_notifies_version_changes() {
    use futures::StreamExt as _;
    let (rig, delivery, app) = app().await;
    let res = app
        .clone()
        .oneshot(
            get(&format!("/v1/stream?key={}", rig.web))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[CACHE_CONTROL], "no-store");
    assert!(
        res.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = res.into_body().into_data_stream();
    rig.publish(2).await;
    delivery.refresh(ENV).await.unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains("refetchEvaluation") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("an event within 5 s")
            .expect("stream open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: message"), "{seen}");
    assert!(seen.contains(r#""version":2"#), "{seen}");
    assert!(seen.contains(r#""environment":"prod""#), "{seen}");
    for secret in rig.secrets() {
        assert!(!seen.contains(&secret));
    }

    let res = send(&app, get("/v1/stream").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.header(CACHE_CONTROL), "no-store");
    let (h, v) = bearer(&rig.api);
    let res = app
        .clone()
        .oneshot(get("/v1/stream").header(h, v).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "server keys may listen too");
}

/// `POST /v1/eval` wants `{"context": {...}}`: a bare context is a 400 that
/// says so, not an evaluation of the empty context (`{}` stays the empty
/// context). OFREP keeps taking `{}` (the real clients send it) but answers a
/// bare context `INVALID_CONTEXT`.
#[tokio::test]
async fn a_body_without_context_is_refused_and_says_why() {
    let (rig, _, app) = app().await;
    let (h, v) = bearer(&rig.api);
    let bare = json!({"targetingKey": "u1", "email": "x@example.com"});
    let res = post(&app, "/v1/eval", (h, &v), &bare).await;
    let err = res.assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "invalid_body", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("no `context` member"), "{message}");
    assert!(
        res.text().contains("\\\"targetingKey\\\""),
        "{}",
        res.text()
    );
    assert!(!res.text().contains("x@example.com"), "{}", res.text());

    for uri in [
        "/ofrep/v1/evaluate/flags",
        "/ofrep/v1/evaluate/flags/banner",
    ] {
        let res = post(&app, uri, (h, &v), &bare).await;
        let err = res.assert_error(StatusCode::BAD_REQUEST);
        assert_eq!(err["errorCode"], "INVALID_CONTEXT", "{uri}: {err}");
        assert!(
            err["errorDetails"].as_str().unwrap().contains("`context`"),
            "{err}"
        );
        let res = post(&app, uri, (h, &v), &json!({})).await;
        assert_eq!(res.status, StatusCode::OK, "{uri}: {}", res.text());
        let res = post(&app, uri, (h, &v), &json!({"context": {}})).await;
        assert_eq!(res.status, StatusCode::OK, "{uri}: {}", res.text());
    }
}
