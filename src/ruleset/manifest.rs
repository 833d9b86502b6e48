//! Building and signing manifests (`<prefix>/<env>/manifest.pb`, see
//! [`crate::ruleset::layout`]).
//!
//! Owns the manifest's construction: the body fields derived from the ruleset
//! bytes (path, SHA-256, size), the signing context, and one Ed25519 signature
//! per signing key over `SIGNING_CONTEXT || body`. Signatures cover the exact
//! encoded body bytes, so verification never needs a canonical re-encoding.
//!
//! Must not: do I/O or read the clock (the publish time is passed in), or
//! verify anything (see [`crate::ruleset::verify`], the only reader-side gate).

use ed25519_dalek::{Signer as _, SigningKey};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::ruleset::{FORMAT, keys, proto};

/// Domain-separation prefix of every manifest signature: signatures are
/// Ed25519 over `SIGNING_CONTEXT || body`, so a flagbelt manifest signature can
/// never be replayed as a signature over anything else (and vice versa).
pub const SIGNING_CONTEXT: &[u8] = b"flagbelt-manifest-v1\0";

/// The ruleset object's path, from [`crate::ruleset::layout`] (re-exported:
/// callers and tests name it here too).
pub use crate::ruleset::layout::ruleset_path;

/// The exact bytes that are signed for an encoded manifest body.
pub fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(body);
    msg
}

/// Signs an encoded manifest body with `signer`, naming the key by
/// [`keys::key_id`]. Useful to add a signature to an existing manifest
/// (`signed.signatures.push(sign_body(&signed.body, &key))`).
pub fn sign_body(body: &[u8], signer: &SigningKey) -> proto::Signature {
    proto::Signature {
        key_id: keys::key_id(&signer.verifying_key()),
        signature: signer.sign(&signed_message(body)).to_bytes().to_vec(),
    }
}

/// Builds the signed manifest for `ruleset_bytes` (the exact bytes stored at
/// [`ruleset_path`]`(version)`), signed by every key in `signers` in order.
///
/// With no signers the manifest is unsigned; readers accept that only when
/// they trust no keys (local or demo use).
pub fn build(
    env: &str,
    version: u64,
    ruleset_bytes: &[u8],
    published_at_ms: i64,
    rollback: bool,
    signers: &[SigningKey],
) -> proto::SignedManifest {
    let body = proto::ManifestBody {
        format: FORMAT,
        environment: env.to_owned(),
        version,
        ruleset_path: ruleset_path(version),
        ruleset_sha256: Sha256::digest(ruleset_bytes).to_vec(),
        // usize -> u64 is lossless on every supported target.
        ruleset_size: ruleset_bytes.len() as u64,
        published_at_ms,
        rollback,
    }
    .encode_to_vec();
    let signatures = signers.iter().map(|s| sign_body(&body, s)).collect();
    proto::SignedManifest { body, signatures }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier as _;

    #[test]
    fn body_describes_the_ruleset_and_signatures_cover_it() {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let m = build(
            "prod",
            42,
            b"ruleset bytes",
            1_700_000_000_000,
            false,
            std::slice::from_ref(&key),
        );
        let body = proto::ManifestBody::decode(m.body.as_slice()).unwrap();
        assert_eq!(body.format, FORMAT);
        assert_eq!(body.environment, "prod");
        assert_eq!(body.version, 42);
        assert_eq!(body.ruleset_path, "rulesets/42.pb");
        assert_eq!(
            body.ruleset_sha256,
            Sha256::digest(b"ruleset bytes").to_vec()
        );
        assert_eq!(body.ruleset_size, 13);
        assert_eq!(body.published_at_ms, 1_700_000_000_000);
        assert!(!body.rollback);

        assert_eq!(m.signatures.len(), 1);
        let sig = &m.signatures[0];
        assert_eq!(sig.key_id, keys::key_id(&key.verifying_key()));
        let sig = ed25519_dalek::Signature::from_slice(&sig.signature).unwrap();
        let vk = key.verifying_key();
        assert!(vk.verify(&signed_message(&m.body), &sig).is_ok());
        // The context is part of what is signed.
        assert!(vk.verify(&m.body, &sig).is_err());
    }

    #[test]
    fn no_signers_means_unsigned() {
        assert!(build("prod", 1, b"", 0, false, &[]).signatures.is_empty());
    }
}
