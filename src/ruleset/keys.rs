//! API keys and manifest signing keys: their text formats, generation and
//! matching.
//!
//! Owns:
//! - the API key format `fbp.<env>.<key_id>.<secret>` (frontend/public) and
//!   `fbs.<env>.<key_id>.<secret>` (backend/server): parsing a presented key
//!   ([`PresentedKey`]), matching it against a stored [`model::ApiKey`] in
//!   constant time, and generating new keys ([`generate`]);
//! - Ed25519 signing keys: generation, PKCS#8 / SPKI PEM text, and the key id
//!   that names a public key in manifest signatures ([`key_id`]).
//!
//! Must not: do I/O (callers read and write files), echo key material in errors
//! or `Debug` output (a secret never appears in a message, a log line or a panic),
//! or compare secrets with early-exit equality.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
};
use ed25519_dalek::{SigningKey, VerifyingKey, pkcs8};
use rand::Rng as _;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq as _};

use crate::eval::model::{self, KeyKind};
use crate::ruleset::{hex, valid_env_name, valid_key_id};

/// Prefix of frontend (public) API keys.
pub const FRONTEND_PREFIX: &str = "fbp";
/// Prefix of backend (server) API keys.
pub const BACKEND_PREFIX: &str = "fbs";
/// Number of random bytes in an API key secret.
pub const SECRET_BYTES: usize = 32;
/// Length of a secret's unpadded base64url text (`ceil(32 * 4 / 3)`).
pub const SECRET_CHARS: usize = 43;

/// Why a text is not a well-formed API key (or why a key cannot be generated).
///
/// Messages say which part is wrong and how, using only lengths and the rules;
/// they never contain any text of the key (which may be a mistyped secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// The first part is neither `fbp` nor `fbs`.
    #[error("API key must start with `fbp.` (frontend) or `fbs.` (backend)")]
    UnknownPrefix,
    /// The key does not have exactly four dot-separated parts.
    #[error(
        "API key must have 4 dot-separated parts (`fbp|fbs.<env>.<key_id>.<secret>`), found {found}"
    )]
    WrongPartCount {
        /// Number of parts found.
        found: usize,
    },
    /// The environment part is not `[A-Za-z0-9_-]{1,64}`.
    #[error("API key environment is invalid ({len} chars): expected [A-Za-z0-9_-]{{1,64}}")]
    InvalidEnv {
        /// Length of the environment part in bytes.
        len: usize,
    },
    /// The key id part is not `[A-Za-z0-9_-]{1,32}`.
    #[error("API key id is invalid ({len} chars): expected [A-Za-z0-9_-]{{1,32}}")]
    InvalidKeyId {
        /// Length of the key id part in bytes.
        len: usize,
    },
    /// The secret is not canonical unpadded base64url.
    #[error("API key secret is not unpadded base64url")]
    SecretEncoding,
    /// The secret does not encode 32 bytes.
    #[error("API key secret must be 43 base64url characters (32 bytes), found {found} characters")]
    SecretLength {
        /// Length of the secret part in bytes.
        found: usize,
    },
}

/// An API key as presented by a caller, parsed but not yet authenticated.
///
/// The fields are private so that a `PresentedKey` is always well-formed; the
/// secret is held as a [`SecretString`] and `Debug` shows `[REDACTED]` for it.
pub struct PresentedKey {
    kind: KeyKind,
    env: String,
    key_id: String,
    secret: SecretString,
}

impl fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedKey")
            .field("kind", &self.kind)
            .field("env", &self.env)
            .field("key_id", &self.key_id)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl PresentedKey {
    /// Parses `fbp.<env>.<key_id>.<secret>` or `fbs.<env>.<key_id>.<secret>`.
    ///
    /// The text is taken exactly as given (no trimming). Neither the environment
    /// nor the key id may contain a dot, and base64url has none, so the key
    /// splits into exactly four parts. The secret must be the canonical unpadded
    /// base64url form of 32 bytes (43 characters).
    pub fn parse(text: &str) -> Result<PresentedKey, KeyFormatError> {
        let mut parts = text.split('.');
        let kind = match parts.next() {
            Some(FRONTEND_PREFIX) => KeyKind::Frontend,
            Some(BACKEND_PREFIX) => KeyKind::Backend,
            _ => return Err(KeyFormatError::UnknownPrefix),
        };
        // At most three more parts are collected, so a hostile key made of
        // many dots allocates nothing in proportion; the count in the error is
        // computed separately.
        let rest: Vec<&str> = parts.by_ref().take(3).collect();
        let ([env, key_id, secret], None) = (rest.as_slice(), parts.next()) else {
            return Err(KeyFormatError::WrongPartCount {
                found: text.bytes().filter(|&b| b == b'.').count() + 1,
            });
        };
        if !valid_env_name(env) {
            return Err(KeyFormatError::InvalidEnv { len: env.len() });
        }
        if !valid_key_id(key_id) {
            return Err(KeyFormatError::InvalidKeyId { len: key_id.len() });
        }
        check_secret(secret)?;
        Ok(PresentedKey {
            kind,
            env: (*env).to_owned(),
            key_id: (*key_id).to_owned(),
            secret: SecretString::from(*secret),
        })
    }

    /// Frontend (`fbp.`) or backend (`fbs.`).
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The environment the key claims to belong to. Callers pick the ruleset of
    /// this environment and then call [`PresentedKey::matches`] on its keys, so
    /// the environment is matched by that lookup, not by `matches`.
    pub fn env(&self) -> &str {
        &self.env
    }

    /// The key id (`[A-Za-z0-9_-]{1,32}`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// SHA-256 of the secret's base64url text, as stored in rulesets. Useful as a
    /// cache key for authentication results, since it reveals nothing usable.
    pub fn secret_digest(&self) -> [u8; 32] {
        secret_sha256(self.secret.expose_secret())
    }

    /// True when `stored` is this key: same kind, same id and the same secret
    /// digest. The digest is compared in constant time, and all three checks are
    /// always evaluated, so timing does not reveal which one failed.
    pub fn matches(&self, stored: &model::ApiKey) -> bool {
        let digest = self.secret_digest();
        let same_digest = digest.ct_eq(&stored.secret_sha256);
        let same_id = self.key_id.as_bytes().ct_eq(stored.id.as_bytes());
        let same_kind = Choice::from(u8::from(self.kind == stored.kind));
        bool::from(same_digest & same_id & same_kind)
    }
}

/// Checks that `secret` is the canonical unpadded base64url text of 32 bytes.
fn check_secret(secret: &str) -> Result<(), KeyFormatError> {
    let alphabet = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if !secret.bytes().all(alphabet) {
        return Err(KeyFormatError::SecretEncoding);
    }
    if secret.len() != SECRET_CHARS {
        return Err(KeyFormatError::SecretLength {
            found: secret.len(),
        });
    }
    // The decoder's own error names the offending character and offset, which
    // would leak part of the secret, so it is dropped here on purpose. Decoding
    // also rejects non-zero trailing bits (a non-canonical spelling).
    let decoded = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(secret)
            .map_err(|_| KeyFormatError::SecretEncoding)?,
    );
    if decoded.len() != SECRET_BYTES {
        return Err(KeyFormatError::SecretLength {
            found: secret.len(),
        });
    }
    Ok(())
}

/// SHA-256 of a secret's base64url text: the value rulesets store (as hex) in
/// `secret_sha256`.
pub fn secret_sha256(secret_text: &str) -> [u8; 32] {
    Sha256::digest(secret_text.as_bytes()).into()
}

/// A freshly generated API key.
pub struct GeneratedKey {
    /// The full key to hand to the caller, e.g. `fbp.production.web.<secret>`.
    /// Shown once; only its digest is stored.
    pub token: SecretString,
    /// Lower-case hex SHA-256 of the secret's text, for the ruleset.
    pub secret_sha256_hex: String,
    /// A line to paste under `keys:` in the authoring YAML (one flow mapping,
    /// starting with `- `, no trailing newline).
    pub yaml_stanza: String,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("token", &"[REDACTED]")
            .field("secret_sha256_hex", &self.secret_sha256_hex)
            .field("yaml_stanza", &self.yaml_stanza)
            .finish()
    }
}

/// Generates a new API key for `env` with id `key_id`: 32 bytes from the
/// thread-local CSPRNG (seeded from the OS), unpadded base64url.
///
/// The YAML stanza for a frontend key carries the placeholder origin
/// `https://app.example.com` plus a comment asking to replace it. That is a
/// deliberate fail-closed choice: a forgotten edit breaks CORS visibly in
/// development instead of silently shipping `"*"` (any origin) to production.
pub fn generate(env: &str, key_id: &str, kind: KeyKind) -> Result<GeneratedKey, KeyFormatError> {
    if !valid_env_name(env) {
        return Err(KeyFormatError::InvalidEnv { len: env.len() });
    }
    if !valid_key_id(key_id) {
        return Err(KeyFormatError::InvalidKeyId { len: key_id.len() });
    }
    let mut raw = Zeroizing::new([0u8; SECRET_BYTES]);
    rand::rng().fill_bytes(raw.as_mut_slice());
    let secret = Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_slice()));
    let digest_hex = hex::encode(&secret_sha256(&secret));
    let (prefix, stanza) = match kind {
        KeyKind::Frontend => (
            FRONTEND_PREFIX,
            format!(
                "- {{id: {key_id}, kind: frontend, secret_sha256: \"{digest_hex}\", \
                 allowed_origins: [\"https://app.example.com\"]}}  \
                 # replace with your sites' origins; \"*\" allows any"
            ),
        ),
        KeyKind::Backend => (
            BACKEND_PREFIX,
            format!("- {{id: {key_id}, kind: backend, secret_sha256: \"{digest_hex}\"}}"),
        ),
    };
    let token = Zeroizing::new(format!("{prefix}.{env}.{key_id}.{}", secret.as_str()));
    Ok(GeneratedKey {
        token: SecretString::from(token.as_str()),
        secret_sha256_hex: digest_hex,
        yaml_stanza: stanza,
    })
}

/// Why a signing or verifying key could not be read or written.
///
/// Messages say what is wrong (not PEM, wrong block, wrong algorithm,
/// malformed) and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// No PEM block could be read.
    #[error("not a PEM file: expected a `-----BEGIN {expected}-----` block")]
    NotPem {
        /// The label that was expected (`PRIVATE KEY` or `PUBLIC KEY`).
        expected: &'static str,
    },
    /// A PEM block of another kind (e.g. a public key given as a signing key).
    #[error("wrong kind of PEM block: expected `{expected}`, found `{found}`")]
    WrongLabel {
        /// The label that was expected.
        expected: &'static str,
        /// The label found (only if it looks like a label; else a placeholder).
        found: String,
    },
    /// A well-formed key of another algorithm (RSA, ECDSA, ...).
    #[error("{what} is not an Ed25519 key")]
    WrongAlgorithm {
        /// `private key` or `public key`.
        what: &'static str,
    },
    /// The PEM block holds something that is not a valid Ed25519 key.
    #[error("{what} is malformed (not a valid Ed25519 PKCS#8/SPKI document)")]
    Malformed {
        /// `private key` or `public key`.
        what: &'static str,
        /// The ASN.1 decoder's error (positions and tags, no key bytes).
        #[source]
        source: pkcs8::Error,
    },
    /// The key could not be encoded (should not happen for a valid key).
    #[error("cannot encode the {what} as PEM")]
    Encode {
        /// `private key` or `public key`.
        what: &'static str,
        /// The PKCS#8/SPKI encoder's error (like the decoder's, it holds no
        /// key bytes).
        #[source]
        source: pkcs8::Error,
    },
}

const PRIVATE_LABEL: &str = "PRIVATE KEY";
const PUBLIC_LABEL: &str = "PUBLIC KEY";

/// Generates a new Ed25519 signing key from the thread-local CSPRNG.
pub fn new_signing_key() -> SigningKey {
    SigningKey::generate(&mut rand::rng())
}

/// The signing key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, LF line
/// endings), held in a [`SecretString`] so it is zeroized when dropped.
pub fn signing_key_to_pem(key: &SigningKey) -> Result<SecretString, KeyFileError> {
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|source| KeyFileError::Encode {
            what: "private key",
            source,
        })?;
    Ok(SecretString::from(pem.as_str()))
}

/// Reads a PKCS#8 PEM Ed25519 signing key (as written by
/// [`signing_key_to_pem`] or `openssl genpkey -algorithm ed25519`).
/// Surrounding whitespace is ignored.
pub fn signing_key_from_pem(text: &str) -> Result<SigningKey, KeyFileError> {
    let text = text.trim();
    check_label(text, PRIVATE_LABEL)?;
    SigningKey::from_pkcs8_pem(text).map_err(|e| classify(e, "private key", PRIVATE_LABEL))
}

/// The verifying (public) key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`, LF).
pub fn verifying_key_to_pem(key: &VerifyingKey) -> String {
    // Encoding 32 fixed bytes into a fixed SPKI structure cannot fail; if it
    // ever did, fall back to building the PEM by hand from the same DER layout.
    key.to_public_key_pem(LineEnding::LF)
        .unwrap_or_else(|_| manual_public_pem(key))
}

/// SPKI for Ed25519 is a fixed 12-byte header followed by the 32 key bytes
/// (RFC 8410 §4), so it can be written without the ASN.1 encoder.
fn manual_public_pem(key: &VerifyingKey) -> String {
    const SPKI_HEADER: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let mut der = SPKI_HEADER.to_vec();
    der.extend_from_slice(key.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
}

/// Reads an SPKI PEM Ed25519 public key (`-----BEGIN PUBLIC KEY-----`).
/// Surrounding whitespace is ignored.
pub fn verifying_key_from_pem(text: &str) -> Result<VerifyingKey, KeyFileError> {
    let text = text.trim();
    check_label(text, PUBLIC_LABEL)?;
    VerifyingKey::from_public_key_pem(text)
        .map_err(|e| classify(pkcs8::Error::PublicKey(e), "public key", PUBLIC_LABEL))
}

/// The id that names a public key in manifest signatures: lower-case hex of the
/// first 8 bytes of SHA-256 over the 32 raw public-key bytes (16 characters).
pub fn key_id(key: &VerifyingKey) -> String {
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    hex::encode(&digest[..8])
}

/// Checks the first PEM line before decoding, so that "wrong kind of file"
/// gets a clear message instead of an ASN.1 error.
fn check_label(text: &str, expected: &'static str) -> Result<(), KeyFileError> {
    let first = text.lines().next().unwrap_or("").trim_end();
    let Some(label) = first
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.strip_suffix("-----"))
    else {
        return Err(KeyFileError::NotPem { expected });
    };
    if label == expected {
        return Ok(());
    }
    // Labels are short upper-case words (`RSA PRIVATE KEY`, `CERTIFICATE`); show
    // one only if it looks like that, so arbitrary input is never echoed.
    let looks_like_label = label.len() <= 40
        && label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
    Err(KeyFileError::WrongLabel {
        expected,
        found: if looks_like_label {
            label.to_owned()
        } else {
            "(unrecognised label)".to_owned()
        },
    })
}

/// Maps a decoder error to what the user needs to know.
fn classify(e: pkcs8::Error, what: &'static str, expected: &'static str) -> KeyFileError {
    use pkcs8::spki::Error as SpkiError;
    match e {
        pkcs8::Error::PublicKey(SpkiError::OidUnknown { .. }) => {
            KeyFileError::WrongAlgorithm { what }
        }
        pkcs8::Error::Asn1(ref der) | pkcs8::Error::PublicKey(SpkiError::Asn1(ref der))
            if matches!(der.kind(), pkcs8::spki::der::ErrorKind::Pem(_)) =>
        {
            KeyFileError::NotPem { expected }
        }
        source => KeyFileError::Malformed { what, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> String {
        URL_SAFE_NO_PAD.encode([7u8; 32])
    }

    #[test]
    fn parses_both_kinds() {
        let k = PresentedKey::parse(&format!("fbp.prod.web.{}", secret())).unwrap();
        assert_eq!(k.kind(), KeyKind::Frontend);
        assert_eq!(k.env(), "prod");
        assert_eq!(k.key_id(), "web");
        let k = PresentedKey::parse(&format!("fbs.prod-eu_1.api.{}", secret())).unwrap();
        assert_eq!(k.kind(), KeyKind::Backend);
        assert_eq!(k.secret_digest(), secret_sha256(&secret()));
    }

    #[test]
    fn rejects_non_canonical_secret() {
        // 43 chars whose last char carries non-zero trailing bits.
        let mut s = secret();
        s.pop();
        s.push('B');
        assert!(URL_SAFE_NO_PAD.decode(&s).is_err());
        assert_eq!(check_secret(&s), Err(KeyFormatError::SecretEncoding));
    }

    #[test]
    fn generated_keys_parse_and_match_their_stanza() {
        let g = generate("prod", "web", KeyKind::Frontend).unwrap();
        let k = PresentedKey::parse(g.token.expose_secret()).unwrap();
        assert_eq!(hex::encode(&k.secret_digest()), g.secret_sha256_hex);
        assert!(g.yaml_stanza.contains(&g.secret_sha256_hex));
        assert!(!format!("{g:?}").contains(g.token.expose_secret()));
        // The stanza is valid YAML of the documented shape.
        let v: serde_json::Value =
            serde_saphyr::from_str(&format!("keys:\n  {}\n", g.yaml_stanza)).unwrap();
        let key = &v["keys"][0];
        assert_eq!(key["id"], "web");
        assert_eq!(key["kind"], "frontend");
        assert_eq!(key["secret_sha256"], g.secret_sha256_hex.as_str());
        assert_eq!(key["allowed_origins"][0], "https://app.example.com");

        let g = generate("prod", "api", KeyKind::Backend).unwrap();
        assert!(g.token.expose_secret().starts_with("fbs.prod.api."));
        let v: serde_json::Value =
            serde_saphyr::from_str(&format!("keys:\n  {}\n", g.yaml_stanza)).unwrap();
        assert_eq!(v["keys"][0]["kind"], "backend");
        assert!(v["keys"][0].get("allowed_origins").is_none());
    }

    #[test]
    fn generate_rejects_bad_names() {
        assert_eq!(
            generate("a.b", "web", KeyKind::Backend).unwrap_err(),
            KeyFormatError::InvalidEnv { len: 3 }
        );
        assert_eq!(
            generate("prod", "", KeyKind::Backend).unwrap_err(),
            KeyFormatError::InvalidKeyId { len: 0 }
        );
    }

    #[test]
    fn manual_public_pem_matches_the_encoder() {
        let vk = new_signing_key().verifying_key();
        assert_eq!(manual_public_pem(&vk), verifying_key_to_pem(&vk));
    }

    #[test]
    fn key_id_is_16_hex_chars() {
        let vk = SigningKey::from_bytes(&[1u8; 32]).verifying_key();
        let id = key_id(&vk);
        assert_eq!(id.len(), 16);
        let digest: [u8; 32] = Sha256::digest(vk.as_bytes()).into();
        assert_eq!(id, hex::encode(&digest[..8]));
    }
}
