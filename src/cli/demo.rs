//! `flagbelt demo`: the README's first command. Serves the bundled demo
//! environment (`examples/demo.yaml`, compiled into the binary) from a
//! temporary `file://` store, and prints ready-to-paste calls with the demo
//! keys. No cloud account, no emulator. The temporary folder is removed on exit.
//!
//! Must not: serve anything but the bundled demo environment, or leave its
//! temporary store behind.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;

use super::delivery_args::DeliveryArgs;
use super::logging::LogFormat;
use super::serve;
use crate::ruleset::{authoring, codec, layout};

/// The demo environment's authoring YAML.
const DEMO_YAML: &str = include_str!("../../examples/demo.yaml");
/// The demo's public (browser) key; its hash is in `examples/demo.yaml`.
pub const DEMO_PUBLIC_KEY: &str = "fbp.demo.web.l1u83ftUtHOALf0O9eQLbzxoEVeG8ynnsGVGBX0fsRE";
/// The demo's server (backend) key, printed for the calls that need one
/// (`POST /v1/eval`, `GET /v1/ruleset`); its hash is in `examples/demo.yaml`.
pub const DEMO_SERVER_KEY: &str = "fbs.demo.api.UDOFsxceYEcMLwUrLY76OqwMXlS9sohK3pjE9reiN5k";

/// Arguments of `flagbelt demo`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  flagbelt demo
  flagbelt demo -l 127.0.0.1:9090 --log-format json")]
pub struct Args {
    /// Address to listen on.
    #[arg(short, long, env = "FLAGBELT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Log line format on stderr (`RUST_LOG` filters, default `info`).
    #[arg(long, env = "FLAGBELT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

pub(super) fn run(args: &Args) -> anyhow::Result<()> {
    check_port(args.listen)?;
    let dir = TempStore::new()?;
    let (pb, model) = authoring::compile_yaml(DEMO_YAML, super::now_ms())
        .context("the bundled demo ruleset does not compile")?;
    let published_at = i64::try_from(super::now_ms()).unwrap_or(i64::MAX);
    let objects = codec::stored_objects(&pb, published_at, false, &[]);
    super::compile::write_layout(
        &dir.0,
        &layout::env_dir(&dir.0, model.environment()),
        &objects,
    )?;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = URL_SAFE_NO_PAD.encode(raw);
    let token_file = dir.0.join("admin-token");
    std::fs::write(&token_file, &token).context("cannot write the demo admin token")?;
    let source = url::Url::from_directory_path(&dir.0)
        .map_err(|()| anyhow::anyhow!("temporary folder {} is not absolute", dir.0.display()))?
        .to_string();

    print_usage(args.listen, &token, &pb.environment);
    let serve_args = serve::Args {
        delivery: DeliveryArgs {
            sources: vec![source],
            public_keys: Vec::new(),
            cache_dir: None,
            bootstrap: None,
            source_timeout_ms: 1000,
            hedge_delay_ms: 200,
            poll_interval_s: 10,
            idle_ttl_s: 600,
        },
        listen: args.listen,
        admin_listen: None,
        preload: vec![pb.environment.clone()],
        admin_token_file: Some(token_file),
        peers: None,
        s_maxage: 30,
        stale_while_revalidate: 30,
        stale_if_error: 86_400,
        max_concurrency: 1024,
        answer_cache_mib: 8,
        request_timeout_ms: 5000,
        min_version_wait_ms: 2000,
        log_format: args.log_format,
    };
    serve::run(&serve_args)
}

/// Fails when `listen` cannot be bound, before anything is printed: a busy
/// port (another demo still running) is the likeliest first mistake, and the
/// calls printed otherwise would point at whatever holds it. The test listener
/// is closed at once; serve binds again (a race with another process in
/// between only brings back serve's own error).
fn check_port(listen: SocketAddr) -> anyhow::Result<()> {
    std::net::TcpListener::bind(listen).map(drop).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {listen}: {e}; is another flagbelt already running there? \
             pick another address with --listen, e.g. --listen 127.0.0.1:{}",
            listen.port().wrapping_add(1).max(1)
        )
    })
}

fn print_usage(listen: SocketAddr, token: &str, env: &str) {
    use std::fmt::Write as _;
    let base = format!("http://{listen}");
    let ctx = URL_SAFE_NO_PAD
        .encode(r#"{"targetingKey":"user-1","country":"NZ","app":{"version":"2.4.0"}}"#);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "flagbelt demo: environment {env:?} (examples/demo.yaml), unsigned, from a temporary file:// store"
    );
    let _ = writeln!(text, "  public key  {DEMO_PUBLIC_KEY}");
    let _ = writeln!(text, "  server key  {DEMO_SERVER_KEY}");
    let _ = writeln!(text, "  admin token {token}");
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "Try (context = base64url of {{\"targetingKey\":\"user-1\",\"country\":\"NZ\",\"app\":{{\"version\":\"2.4.0\"}}}}):"
    );
    let _ = writeln!(text, "  curl -i {base}/v1/eval/{DEMO_PUBLIC_KEY}/{ctx}");
    let _ = writeln!(
        text,
        "  curl -s {base}/v1/eval -H 'Authorization: Bearer {DEMO_SERVER_KEY}' -H 'Content-Type: application/json' -d '{{\"context\":{{\"targetingKey\":\"user-1\",\"plan\":\"pro\"}}}}'"
    );
    let _ = writeln!(
        text,
        "  curl -s {base}/ofrep/v1/evaluate/flags -H 'X-API-Key: {DEMO_PUBLIC_KEY}' -H 'Content-Type: application/json' -d '{{\"context\":{{\"targetingKey\":\"user-1\"}}}}'"
    );
    let _ = writeln!(
        text,
        "  curl -s {base}/v1/ruleset -H 'Authorization: Bearer {DEMO_SERVER_KEY}' -H 'Accept: application/json'"
    );
    let _ = writeln!(
        text,
        "  curl -s {base}/admin/v1/status -H 'Authorization: Bearer {token}'"
    );
    let _ = writeln!(text, "Ctrl-C stops it.");
    let _ = writeln!(text);
    // The demo keeps serving if nobody reads its stdout.
    let _ = super::print_line(text.strip_suffix('\n').unwrap_or(&text));
}

/// A temporary folder removed on drop.
struct TempStore(PathBuf);

impl TempStore {
    fn new() -> anyhow::Result<Self> {
        let nanos = crate::util::clock_nanos();
        let path =
            std::env::temp_dir().join(format!("flagbelt-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
