//! `openapi/flagbelt.json` kept true: it is served at `GET /openapi.json`, its
//! operations are exactly the router's table ([`flagbelt::http::ROUTES`], the
//! list the routers are built from), and real answers through the router match
//! what it documents (status, required headers and their values, media type,
//! body schema), with every documented success response exercised.
//!
//! The schema check is a small JSON Schema subset (`type`, `enum`, `const`,
//! `required`, `properties`, `additionalProperties`, `propertyNames`, `items`,
//! `minimum`, `maxLength`, `pattern`, `$ref`); a keyword outside it fails the
//! test, so the document cannot promise what nothing checks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG};
use http::{HeaderMap, Method, Request, StatusCode};
use metrics_exporter_prometheus::PrometheusBuilder;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use flagbelt::delivery::DeliveryOptions;
use flagbelt::delivery::faults::FaultyStore;
use flagbelt::eval::model::KeyKind;
use flagbelt::http::{AdminToken, AppState, HttpConfig, ROUTES, router};
use flagbelt::ruleset::{authoring, codec, keys};

const DOC: &str = include_str!("../../openapi/flagbelt.json");
const ENV: &str = "docs";
const ADMIN: &str = "openapi-admin-token";

/// The OpenAPI document.
pub(crate) fn doc() -> Value {
    serde_json::from_str(DOC).expect("openapi/flagbelt.json is JSON")
}

// ---------------------------------------------------------------------------
// A served environment: one public key (`web`, one origin), one server key.

struct Rig {
    app: Router,
    web: String,
    api: String,
}

async fn rig() -> Rig {
    let web = keys::generate(ENV, "web", KeyKind::Frontend).expect("valid names");
    let api = keys::generate(ENV, "api", KeyKind::Backend).expect("valid names");
    let yaml = format!(
        r#"
environment: {ENV}
version: 7
keys:
  - {{id: web, kind: frontend, secret_sha256: "{}", allowed_origins: ["https://app.example.com"]}}
  - {{id: api, kind: backend, secret_sha256: "{}"}}
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
  split:
    client: true
    variants: {{x: 1, y: 2.5}}
    default: x
    rules:
      - serve: {{rollout: {{weights: {{x: 50, y: 50}}}}}}
"#,
        web.secret_sha256_hex, api.secret_sha256_hex
    );
    let signer: SigningKey = keys::new_signing_key();
    let (pb, _) = authoring::compile_yaml(&yaml, 0).expect("valid yaml");
    let objects =
        codec::stored_objects(&pb, 1_700_000_000_000, false, std::slice::from_ref(&signer));
    let store = Arc::new(FaultyStore::new());
    store.publish(ENV, &objects).await.expect("in-memory put");
    let delivery = crate::rig::memory_delivery(
        &[("mem://docs".to_owned(), store)],
        &signer,
        DeliveryOptions {
            poll_interval: Duration::from_secs(3600),
            ..DeliveryOptions::default()
        },
    );
    assert!(delivery.preload(&[ENV.to_owned()]).await.is_empty());
    let config = HttpConfig {
        preload: vec![ENV.to_owned()],
        admin_token: Some(AdminToken::new(&SecretString::from(ADMIN))),
        // A recorder of our own, never installed: the process-wide one
        // belongs to the http tests.
        metrics: Some(PrometheusBuilder::new().build_recorder().handle()),
        min_version_wait: Duration::from_millis(50),
        stream_max_age: Duration::from_millis(50),
        ..HttpConfig::default()
    };
    Rig {
        app: router(AppState::new(Arc::clone(&delivery), config)),
        web: web.token.expose_secret().to_owned(),
        api: api.token.expose_secret().to_owned(),
    }
}

struct Res {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
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

// ---------------------------------------------------------------------------
// The document: references and a JSON Schema subset.

/// Follows `$ref`s (local, `#/...` only) until a non-reference object.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return v;
        };
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references: {r}"));
        v = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {r}"));
    }
    panic!("$ref chain too long")
}

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &["description", "title", "contentMediaType", "examples"];

fn type_matches(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        other => panic!("unknown JSON Schema type {other:?}"),
    }
}

/// Checks `v` against `schema`; every failure is pushed with its JSON path.
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    let Some(s) = schema.as_object() else {
        panic!("schema at {at} is not an object: {schema}");
    };
    let mut fail = |msg: String| errors.push(format!("{at}: {msg}"));
    for (kw, arg) in s {
        match kw.as_str() {
            "type" => {
                let types: Vec<&str> = match arg {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => panic!("bad `type` at {at}"),
                };
                if !types.iter().any(|t| type_matches(v, t)) {
                    fail(format!("{v} is not of type {types:?}"));
                }
            }
            "enum" => {
                let options = arg.as_array().expect("`enum` is an array");
                if !options.contains(v) {
                    fail(format!("{v} is not one of {arg}"));
                }
            }
            "const" => {
                if v != arg {
                    fail(format!("{v} is not {arg}"));
                }
            }
            "required" => {
                if let Some(o) = v.as_object() {
                    for name in arg.as_array().expect("`required` is an array") {
                        let name = name.as_str().expect("required names are strings");
                        if !o.contains_key(name) {
                            fail(format!("missing required member {name:?}"));
                        }
                    }
                }
            }
            "minimum" => {
                if let (Some(n), Some(min)) = (v.as_f64(), arg.as_f64())
                    && n < min
                {
                    fail(format!("{n} is below the minimum {min}"));
                }
            }
            "maxLength" => {
                if let (Some(text), Some(max)) = (v.as_str(), arg.as_u64())
                    && text.chars().count() as u64 > max
                {
                    fail(format!("longer than {max}"));
                }
            }
            "pattern" => {
                let re = regex::Regex::new(arg.as_str().expect("`pattern` is a string"))
                    .unwrap_or_else(|e| panic!("bad pattern at {at}: {e}"));
                if let Some(text) = v.as_str()
                    && !re.is_match(text)
                {
                    fail(format!("{text:?} does not match {re}"));
                }
            }
            // Checked below, with the members they apply to.
            "properties" | "additionalProperties" | "propertyNames" | "items" => {}
            other if ANNOTATIONS.contains(&other) => {}
            other => panic!("schema keyword {other:?} at {at} is not checked by this test"),
        }
    }
    if let Some(o) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for (name, member) in o {
            let here = format!("{at}.{name}");
            if let Some(names) = s.get("propertyNames") {
                validate(doc, names, &Value::String(name.clone()), &here, errors);
            }
            match (
                props.and_then(|p| p.get(name)),
                s.get("additionalProperties"),
            ) {
                (Some(sub), _) => validate(doc, sub, member, &here, errors),
                (None, Some(Value::Bool(false))) => {
                    errors.push(format!("{here}: not a documented member"));
                }
                (None, Some(Value::Bool(true)) | None) => {}
                (None, Some(sub)) => validate(doc, sub, member, &here, errors),
            }
        }
    }
    if let (Some(items), Some(a)) = (s.get("items"), v.as_array()) {
        for (i, item) in a.iter().enumerate() {
            validate(doc, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Asserts that `v` matches `schema` of `doc` (also used by the peers tests).
pub(crate) fn assert_valid(doc: &Value, schema: &Value, v: &Value, what: &str) {
    let mut errors = Vec::new();
    validate(doc, schema, v, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{what}: the answer does not match the documented schema:\n  {}\nanswer: {v}",
        errors.join("\n  ")
    );
}

/// Every (METHOD, path) the document describes.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (key, _) in item.as_object().expect("path item") {
            if METHODS.contains(&key.as_str()) {
                out.insert((key.to_ascii_uppercase(), path.clone()));
            } else {
                assert!(
                    ["parameters", "summary", "description"].contains(&key.as_str()),
                    "unexpected member {key:?} under {path}"
                );
            }
        }
    }
    out
}

fn route_table() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
        .collect()
}

/// The parameter objects of an operation, path-level ones included.
fn parameters<'a>(doc: &'a Value, path: &str, method: &str) -> Vec<&'a Value> {
    let item = &doc["paths"][path];
    let op = &item[method];
    [item.get("parameters"), op.get("parameters")]
        .into_iter()
        .flatten()
        .flat_map(|ps| ps.as_array().expect("parameters is an array"))
        .map(|p| resolve(doc, p))
        .collect()
}

/// `{name}` segments of a path template.
fn template_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// Walks every `$ref` in the document and resolves it.
fn check_refs(doc: &Value, v: &Value) {
    match v {
        Value::Object(o) => {
            if o.contains_key("$ref") {
                resolve(doc, v);
            }
            o.values().for_each(|c| check_refs(doc, c));
        }
        Value::Array(a) => a.iter().for_each(|c| check_refs(doc, c)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Conformance of one real answer.

/// Checks `res` (answer to `method` on the route `template`, where the
/// template's parameters took `args`) against the document; returns the
/// documented response key it matched (its status).
fn conform(
    doc: &Value,
    method: &Method,
    template: &str,
    args: &[(&str, &str)],
    res: &Res,
) -> String {
    let m = method.as_str().to_ascii_lowercase();
    let what = format!("{method} {template} -> {}", res.status.as_u16());
    let op = doc["paths"][template]
        .get(&m)
        .unwrap_or_else(|| panic!("{method} {template} is not documented"));

    for (name, value) in args {
        let p = parameters(doc, template, &m)
            .into_iter()
            .find(|p| p["in"] == "path" && p["name"] == *name)
            .unwrap_or_else(|| panic!("{what}: path parameter {name} is not documented"));
        assert_valid(doc, &p["schema"], &json!(value), &format!("{what}: {name}"));
    }

    let status = res.status.as_u16().to_string();
    let response = op["responses"].get(&status).unwrap_or_else(|| {
        panic!(
            "{what}: status not documented (documented: {:?}); body {}",
            op["responses"]
                .as_object()
                .map(|o| o.keys().collect::<Vec<_>>()),
            String::from_utf8_lossy(&res.body)
        )
    });
    let response = resolve(doc, response);

    if let Some(headers) = response.get("headers").and_then(Value::as_object) {
        for (name, h) in headers {
            let h = resolve(doc, h);
            let Some(value) = res.headers.get(name.as_str()) else {
                assert!(
                    h.get("required") != Some(&Value::Bool(true)),
                    "{what}: required header {name} is missing"
                );
                continue;
            };
            let text = value.to_str().expect("ASCII header");
            let schema = resolve(doc, &h["schema"]);
            let is_integer = schema["type"] == "integer";
            let v = if is_integer {
                json!(
                    text.parse::<i64>()
                        .unwrap_or_else(|_| panic!("{what}: {name}: {text:?} is not an integer"))
                )
            } else {
                json!(text)
            };
            assert_valid(doc, schema, &v, &format!("{what}: header {name}"));
        }
    }

    match response.get("content").and_then(Value::as_object) {
        None => assert!(
            res.body.is_empty(),
            "{what}: documented without a body, but got {:?}",
            String::from_utf8_lossy(&res.body)
        ),
        Some(content) => {
            let ct = res
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{what}: no Content-Type"));
            let essence = ct.split(';').next().unwrap_or("").trim();
            let media = content
                .get(essence)
                .unwrap_or_else(|| panic!("{what}: Content-Type {ct} is not documented"));
            if essence == "application/json" {
                let body: Value = serde_json::from_slice(&res.body)
                    .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
                assert_valid(doc, &media["schema"], &body, &what);
            }
        }
    }
    status
}

// ---------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn the_document_is_served_as_openapi_3_1() {
    let rig = rig().await;
    let res = send(
        &rig.app,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers[CONTENT_TYPE], "application/json");
    assert_eq!(res.headers[CACHE_CONTROL], "public, max-age=3600");
    assert!(res.headers.get(ETAG).is_none());
    let served: Value = serde_json::from_slice(&res.body).expect("served document is JSON");
    assert_eq!(served, doc(), "the served document is the file");
    let version = served["openapi"].as_str().expect("`openapi` is a string");
    assert!(version.starts_with("3.1."), "OpenAPI 3.1.x, not {version}");
    for member in ["info", "paths", "components"] {
        assert!(served[member].is_object(), "{member}");
    }
    assert!(served["info"]["title"].is_string() && served["info"]["version"].is_string());
}

#[tokio::test]
async fn documented_operations_are_exactly_the_route_table() {
    let doc = doc();
    let documented = documented_operations(&doc);
    let served = route_table();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "openapi/flagbelt.json and flagbelt::http::ROUTES disagree:\n  served but not documented: {undocumented:?}\n  documented but not served: {unserved:?}"
    );
    assert_eq!(served.len(), ROUTES.len(), "ROUTES has a duplicate");

    check_refs(&doc, &doc);
    let mut operation_ids = BTreeSet::new();
    for (method, path) in &documented {
        let m = method.to_ascii_lowercase();
        let op = &doc["paths"][path][&m];
        let id = op["operationId"]
            .as_str()
            .expect("every operation has an id");
        assert!(operation_ids.insert(id.to_owned()), "duplicate id {id}");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path}: no responses"
        );
        // Path parameters: exactly the template's, each required.
        let declared: BTreeSet<String> = parameters(&doc, path, &m)
            .into_iter()
            .filter(|p| p["in"] == "path")
            .inspect(|p| assert_eq!(p["required"], true, "{method} {path}: {p}"))
            .map(|p| p["name"].as_str().expect("named").to_owned())
            .collect();
        let in_template: BTreeSet<String> = template_params(path)
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, in_template, "{method} {path}: path parameters");
        // Every scheme an operation names exists.
        for requirement in op["security"].as_array().into_iter().flatten() {
            for scheme in requirement.as_object().expect("requirement").keys() {
                assert!(
                    doc["components"]["securitySchemes"].get(scheme).is_some(),
                    "{method} {path}: unknown security scheme {scheme}"
                );
            }
        }
    }

    // And the router really answers every entry of the table (no entry of a
    // group that is not mounted): anything but "no such route".
    let rig = rig().await;
    for r in ROUTES {
        let uri = r
            .path
            .replace("{public_key}", &rig.web)
            .replace("{context}", "e30")
            .replace("{key}", "banner");
        let req = Request::builder()
            .method(r.method.clone())
            .uri(&uri)
            .body(Body::from("{}"))
            .unwrap();
        let res = send(&rig.app, req).await;
        let body: Value = serde_json::from_slice(&res.body).unwrap_or(Value::Null);
        let unrouted = res.status == StatusCode::METHOD_NOT_ALLOWED
            || body["error"]["code"] == "not_found"
            || body["errorCode"] == "NOT_FOUND";
        assert!(
            !unrouted,
            "{} {}: not routed ({})",
            r.method, r.path, res.status
        );
    }
}

/// One request through the router, and the route it is for.
struct Case {
    method: Method,
    template: &'static str,
    args: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl Case {
    fn new(method: Method, template: &'static str) -> Self {
        Self {
            method,
            template,
            args: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn arg(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.args.retain(|(k, _)| *k != name);
        self.args.push((name, value.into()));
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn uri(&self) -> String {
        self.args
            .iter()
            .fold(self.template.to_owned(), |uri, (k, v)| {
                uri.replace(&format!("{{{k}}}"), v)
            })
    }

    fn request(&self) -> Request<Body> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(self.uri());
        for (k, v) in &self.headers {
            b = b.header(*k, v);
        }
        let body = match &self.body {
            Some(v) => Body::from(v.to_string()),
            None => Body::empty(),
        };
        b.body(body).expect("valid request")
    }
}

fn ctx_segment(ctx: &Value) -> String {
    URL_SAFE_NO_PAD.encode(ctx.to_string())
}

#[tokio::test]
async fn real_answers_match_the_documented_responses() {
    let doc = doc();
    let rig = rig().await;
    let (web, api) = (rig.web.clone(), rig.api.clone());
    let bearer = |k: &str| format!("Bearer {k}");
    let ctx = json!({"targetingKey": "u1", "country": "NZ"});
    let body = json!({"context": ctx});
    let eval_get = || {
        Case::new(Method::GET, "/v1/eval/{public_key}/{context}")
            .arg("public_key", web.clone())
            .arg("context", ctx_segment(&ctx))
    };
    let post = |template: &'static str, key: &str| {
        Case::new(Method::POST, template)
            .header("content-type", "application/json")
            .header("x-api-key", key)
            .body(body.clone())
    };
    let single = |key: &str, flag: &str| {
        post("/ofrep/v1/evaluate/flags/{key}", key).arg("key", flag.to_owned())
    };
    let ruleset = |accept: &str, key: &str| {
        Case::new(Method::GET, "/v1/ruleset")
            .header("accept", accept)
            .header("authorization", bearer(key))
    };
    let admin = |method: Method, template: &'static str| {
        Case::new(method, template).header("authorization", bearer(ADMIN))
    };
    let preflight = |template: &'static str, args: &[(&'static str, &str)]| {
        args.iter().fold(
            Case::new(Method::OPTIONS, template)
                .header("origin", "https://app.example.com")
                .header("access-control-request-method", "POST"),
            |c, &(k, v)| c.arg(k, v),
        )
    };

    // Validators to revalidate with.
    let etag_of = |case: Case| {
        let app = rig.app.clone();
        async move {
            let res = send(&app, case.request()).await;
            res.headers[ETAG].to_str().unwrap().to_owned()
        }
    };
    let get_tag = etag_of(eval_get()).await;
    let post_tag = etag_of(post("/v1/eval", &api)).await;
    let bulk_tag = etag_of(post("/ofrep/v1/evaluate/flags", &web)).await;
    let ruleset_tag = etag_of(ruleset("application/json", &api)).await;

    let cases: Vec<(Case, u16)> = vec![
        // GET /v1/eval
        (eval_get(), 200),
        (eval_get().header("origin", "https://app.example.com"), 200),
        (eval_get().header("if-none-match", get_tag), 304),
        (eval_get().header("flagbelt-min-version", "99"), 200),
        (eval_get().arg("public_key", api.clone()), 403),
        (
            eval_get().arg("public_key", web.replacen(".web.", ".zzz.", 1)),
            401,
        ),
        (eval_get().arg("context", ctx_segment(&json!([1]))), 400),
        (eval_get().arg("context", "A".repeat(9000)), 414),
        (
            preflight(
                "/v1/eval/{public_key}/{context}",
                &[("public_key", web.as_str()), ("context", "e30")],
            ),
            204,
        ),
        // POST /v1/eval
        (post("/v1/eval", &api), 200),
        (post("/v1/eval", &web).body(json!({})), 200),
        (
            post("/v1/eval", &api).header("if-none-match", post_tag),
            304,
        ),
        (
            post("/v1/eval", &api).header("flagbelt-min-version", "99"),
            200,
        ),
        (post("/v1/eval", &api).body(json!({"context": "nope"})), 400),
        (Case::new(Method::POST, "/v1/eval").body(json!({})), 401),
        (
            post("/v1/eval", &api).body(json!({"context": {"pad": "x".repeat(70_000)}})),
            413,
        ),
        (preflight("/v1/eval", &[]), 204),
        // OFREP bulk
        (post("/ofrep/v1/evaluate/flags", &web), 200),
        (post("/ofrep/v1/evaluate/flags", &api).body(json!({})), 200),
        (
            post("/ofrep/v1/evaluate/flags", &web).header("if-none-match", bulk_tag),
            304,
        ),
        (
            post("/ofrep/v1/evaluate/flags", &web).body(json!({"context": 1})),
            400,
        ),
        (post("/ofrep/v1/evaluate/flags", "fbp.nope"), 401),
        (preflight("/ofrep/v1/evaluate/flags", &[]), 204),
        // OFREP single
        (single(&web, "banner"), 200),
        (single(&web, "split"), 200),
        (single(&api, "server-only"), 200),
        (
            single(&api, "limits").header("flagbelt-min-version", "99"),
            200,
        ),
        (single(&web, "server-only"), 404),
        (single(&web, "nope"), 404),
        (single(&web, "banner").body(json!({"context": [1]})), 400),
        (single("fbs.docs.api.nope", "banner"), 401),
        (
            preflight("/ofrep/v1/evaluate/flags/{key}", &[("key", "banner")]),
            204,
        ),
        // GET /v1/stream (the rig's streams end after 50 ms)
        (
            Case::new(Method::GET, "/v1/stream").header("authorization", bearer(&web)),
            200,
        ),
        (Case::new(Method::GET, "/v1/stream"), 401),
        // GET /v1/ruleset
        (ruleset("application/json", &api), 200),
        (ruleset("application/x-protobuf", &api), 200),
        (
            ruleset("application/json", &api).header("if-none-match", ruleset_tag),
            304,
        ),
        (ruleset("text/html", &api), 406),
        (ruleset("application/json", &web), 403),
        (Case::new(Method::GET, "/v1/ruleset"), 401),
        // Operations
        (Case::new(Method::GET, "/healthz"), 200),
        (Case::new(Method::GET, "/readyz"), 200),
        (Case::new(Method::GET, "/metrics"), 200),
        (Case::new(Method::GET, "/openapi.json"), 200),
        (admin(Method::GET, "/admin/v1/status"), 200),
        (Case::new(Method::GET, "/admin/v1/status"), 401),
        (admin(Method::POST, "/admin/v1/reload"), 200),
        (
            Case::new(Method::POST, "/admin/v1/reload").header("authorization", "Bearer wrong"),
            401,
        ),
    ];

    // Every documented success (2xx and 304) must be exercised below.
    let mut exercised: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (case, expected) in &cases {
        // Requests meant to succeed must be what the document asks for (the
        // others are wrong on purpose).
        let success = *expected < 300 || *expected == 304;
        if success
            && let Some(b) = &case.body
            && let Some(rb) = doc["paths"][case.template][case.method.as_str().to_ascii_lowercase()]
                .get("requestBody")
        {
            let rb = resolve(&doc, rb);
            assert_valid(
                &doc,
                &rb["content"]["application/json"]["schema"],
                b,
                &format!("request body of {} {}", case.method, case.template),
            );
        }
        let res = send(&rig.app, case.request()).await;
        assert_eq!(
            res.status.as_u16(),
            *expected,
            "{} {}: {}",
            case.method,
            case.uri(),
            String::from_utf8_lossy(&res.body)
        );
        let args: Vec<(&str, &str)> = if success {
            case.args.iter().map(|(k, v)| (*k, v.as_str())).collect()
        } else {
            Vec::new()
        };
        let status = conform(&doc, &case.method, case.template, &args, &res);
        exercised
            .entry((case.method.as_str().to_owned(), case.template.to_owned()))
            .or_default()
            .insert(status);
    }

    let mut missing = Vec::new();
    for (method, path) in documented_operations(&doc) {
        let op = &doc["paths"][&path][method.to_ascii_lowercase()];
        for status in op["responses"].as_object().expect("responses").keys() {
            let success = status.starts_with('2') || status == "304";
            let seen = exercised
                .get(&(method.clone(), path.clone()))
                .is_some_and(|s| s.contains(status));
            if success && !seen {
                missing.push(format!("{method} {path} {status}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documented success responses no case exercises: {missing:?}"
    );
}
