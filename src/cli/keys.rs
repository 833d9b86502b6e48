//! `flagbelt keys new` (API keys) and `flagbelt keys signing-new` (Ed25519
//! signing keypairs). Secrets are printed once or written with owner-only
//! permissions; existing files are never overwritten.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use secrecy::ExposeSecret as _;

use crate::eval::model::KeyKind;
use crate::ruleset::keys;

/// `keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a new API key and the YAML stanza (with `secret_sha256`) for the ruleset.
    #[command(after_help = "Example:
  flagbelt keys new -e production --id web -k public")]
    New {
        /// Environment the key belongs to.
        #[arg(short, long)]
        env: String,
        /// Key id, unique within the environment (`[A-Za-z0-9_-]{1,32}`).
        #[arg(long)]
        id: String,
        /// `public` (`fbp.`, browser-safe) or `server` (`fbs.`, servers only);
        /// the YAML stanza names them `frontend` and `backend`.
        #[arg(short, long, value_enum)]
        kind: Kind,
    },
    /// Write a new Ed25519 keypair: `<out>.key` (PKCS#8 PEM, mode 0600) and
    /// `<out>.pub` (SPKI PEM, give it to servers with `--public-key`).
    #[command(after_help = "Example:
  flagbelt keys signing-new -o release
  flagbelt compile flags.yaml -o out --signing-key release.key")]
    SigningNew {
        /// Path prefix for the two files.
        #[arg(short, long)]
        out: PathBuf,
    },
}

/// Key kinds on the command line, in the words of the key prefixes, the HTTP
/// errors and the demo (`fbp.` public, `fbs.` server). The ruleset's `keys`
/// say `kind: frontend|backend`, accepted here as aliases so older commands
/// keep working.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    /// Browser-safe key (`fbp.`): client-visible flags only.
    #[value(alias = "frontend")]
    Public,
    /// Key for servers (`fbs.`): every flag, `POST /v1/eval`, `GET /v1/ruleset`.
    #[value(alias = "backend")]
    Server,
}

pub(super) fn run(cmd: &Command) -> anyhow::Result<()> {
    match cmd {
        Command::New { env, id, kind } => {
            let kind = match kind {
                Kind::Public => KeyKind::Frontend,
                Kind::Server => KeyKind::Backend,
            };
            let key = keys::generate(env, id, kind)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "key: {}", key.token.expose_secret())?;
            writeln!(
                out,
                "# Shown once; store it as a secret. Add this under `keys:` in the YAML:"
            )?;
            writeln!(out, "{}", key.yaml_stanza)?;
            Ok(())
        }
        Command::SigningNew { out } => {
            let private = with_suffix(out, "key");
            let public = with_suffix(out, "pub");
            for p in [&private, &public] {
                if p.exists() {
                    bail!(
                        "{} already exists; refusing to overwrite a key",
                        p.display()
                    );
                }
            }
            let key = keys::new_signing_key();
            let pem = keys::signing_key_to_pem(&key)?;
            write_new(&private, pem.expose_secret().as_bytes(), 0o600)?;
            let pub_pem = keys::verifying_key_to_pem(&key.verifying_key());
            if let Err(e) = write_new(&public, pub_pem.as_bytes(), 0o644) {
                // Keep the pair whole: no private key without its public half.
                let _ = std::fs::remove_file(&private);
                return Err(e);
            }
            super::print_line(format_args!(
                "wrote {} (private, keep secret) and {} (public; key id {})",
                private.display(),
                public.display(),
                keys::key_id(&key.verifying_key())
            ))?;
            Ok(())
        }
    }
}

fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Creates `path` (failing if it exists) with `mode` and writes `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
