//! The verification gate: what every reader (the CLI, the delivery layer)
//! runs on stored bytes before activating anything.
//!
//! Owns the reader-side rules of the stored layout:
//! 1. [`verify_manifest`]: the manifest decodes, has a known format, is for the
//!    expected environment, names `rulesets/<version>.pb`, carries a 32-byte
//!    digest, and satisfies the signature policy of [`TrustedKeys`];
//! 2. [`verify_ruleset`]: the ruleset bytes have the manifest's size and SHA-256,
//!    decode, are for the manifest's environment and version, and compile;
//! 3. [`check_version`]: THE version rule, the one place that compares a held
//!    version with an offered one (never a lower version unless it is a
//!    rollback published after what is held, and signed for a reader; one
//!    version never names two different rulesets). Readers, the last-known-good
//!    cache, `compile --out` and `publish` all call it.
//!
//! Every check is all-or-nothing: a model comes back only when everything
//! holds, so a caller that activates only `Ok` results never half-applies a
//! ruleset. Must not: do I/O, read the clock, or activate/cache anything (that
//! is the caller's job); must not panic on any input.

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::eval::model;
use crate::ruleset::codec::{self, DecodeError, LoadError};
use crate::ruleset::layout::ruleset_path;
use crate::ruleset::manifest::signed_message;
use crate::ruleset::{FORMAT, compile, hex, keys, proto};

/// The public keys whose signatures a reader accepts.
///
/// Empty ([`TrustedKeys::none`]) means "accept unsigned manifests": meant only
/// for local and demo use, where nobody could tamper with the store. With any
/// key configured, a manifest needs at least one valid signature by one of them.
#[derive(Clone, Default)]
pub struct TrustedKeys {
    /// `(key id, key)`; ids are computed once here.
    keys: Vec<(String, VerifyingKey)>,
}

impl fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(id, _)| id))
            .finish()
    }
}

impl TrustedKeys {
    /// No trusted keys: unsigned manifests are accepted (local/demo use only).
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts exactly these keys (duplicates are dropped).
    pub fn from_keys(keys: Vec<VerifyingKey>) -> Self {
        let mut out: Vec<(String, VerifyingKey)> = Vec::with_capacity(keys.len());
        for key in keys {
            if !out.iter().any(|(_, k)| *k == key) {
                out.push((keys::key_id(&key), key));
            }
        }
        Self { keys: out }
    }

    /// True when no key is trusted (unsigned manifests are then accepted).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Ids ([`keys::key_id`]) of the trusted keys, in the order given.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }
}

/// A manifest that passed [`verify_manifest`]. Its proto body stays inside
/// `ruleset/`; callers read it through the accessors.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedManifest {
    body: proto::ManifestBody,
    signed_by: Vec<String>,
    sha256: [u8; 32],
}

impl VerifiedManifest {
    /// The environment the manifest is for.
    pub fn environment(&self) -> &str {
        &self.body.environment
    }

    /// The ruleset version it announces.
    pub fn version(&self) -> u64 {
        self.body.version
    }

    /// When it was published (signed, milliseconds since the epoch).
    pub fn published_at_ms(&self) -> i64 {
        self.body.published_at_ms
    }

    /// True when the publisher marked it as a deliberate move to a lower
    /// version (`compile --rollback`).
    pub fn rollback(&self) -> bool {
        self.body.rollback
    }

    /// The ruleset object's path below the environment folder
    /// (`rulesets/<version>.pb`, checked by [`verify_manifest`]).
    pub fn ruleset_path(&self) -> &str {
        &self.body.ruleset_path
    }

    /// The ruleset object's size in bytes.
    pub fn ruleset_size(&self) -> u64 {
        self.body.ruleset_size
    }

    /// The ruleset SHA-256 the manifest commits to.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// Ids of the trusted keys whose signatures verified (empty when the
    /// reader trusts no keys, even if the manifest carries signatures).
    pub fn signed_by(&self) -> &[String] {
        &self.signed_by
    }

    /// What holding this manifest's ruleset means to [`check_version`].
    pub fn held(&self) -> Held {
        Held {
            version: self.body.version,
            sha256: self.sha256,
            published_at_ms: self.body.published_at_ms,
        }
    }
}

/// What is held for an environment (by an instance, a cache folder or a
/// store): the side of [`check_version`] that an offer is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The held ruleset version.
    pub version: u64,
    /// The held ruleset's SHA-256.
    pub sha256: [u8; 32],
    /// When the held ruleset's manifest was published (signed, ms since the
    /// epoch): a rollback is honoured only if published after it, so an old
    /// rollback manifest left in a lagging store cannot roll anyone back.
    pub published_at_ms: i64,
}

/// What a stored manifest claims to hold, decoded but not verified: for a
/// writer comparing with what a store, a folder or the cache already holds.
/// A manifest this build cannot verify (another format, a bad path) still
/// counts, so that a writer never moves it back by mistake; a digest of
/// another length never equals a real one (it reads as all zeroes).
pub fn held_in(manifest_bytes: &[u8]) -> Result<Held, DecodeError> {
    let (_, body) = codec::decode_manifest(manifest_bytes)?;
    Ok(Held {
        version: body.version,
        sha256: body.ruleset_sha256.as_slice().try_into().unwrap_or([0; 32]),
        published_at_ms: body.published_at_ms,
    })
}

/// Who applies [`check_version`]: what a rollback needs besides its mark and
/// being published after what is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mover {
    /// An instance activating what a source offers: a rollback must also be
    /// signed by a key the reader trusts (`signed_by` not empty).
    Reader,
    /// Something that writes what was already decided: `compile --out`,
    /// `publish` (signatures are the readers' to judge) and the
    /// last-known-good cache (it saves what a reader activated).
    Writer,
}

/// Whether a verified manifest should replace what is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionDecision {
    /// Newer than what is held (or nothing is held, or an accepted rollback):
    /// fetch, verify and activate (or write) it.
    Activate,
    /// The same version and digest as what is held: nothing to do.
    Unchanged,
}

/// Why stored bytes were rejected. Messages say what failed and where; none
/// carries key material.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The manifest does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The ruleset does not decode or does not compile.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The manifest's format revision is not one this build reads.
    #[error("manifest format {found} is not supported (this build reads format {supported})")]
    UnsupportedFormat {
        /// The format found.
        found: u32,
        /// The format this build reads.
        supported: u32,
    },
    /// The manifest or ruleset is for another environment.
    #[error("{object} is for environment {found:?}, expected {expected:?}")]
    EnvMismatch {
        /// `manifest` or `ruleset`.
        object: &'static str,
        /// The environment expected (asked for, or the manifest's).
        expected: String,
        /// The environment found.
        found: String,
    },
    /// The ruleset's own version differs from the manifest's.
    #[error("ruleset has version {ruleset}, but the manifest says {manifest}")]
    VersionMismatch {
        /// The manifest's version.
        manifest: u64,
        /// The ruleset's version.
        ruleset: u64,
    },
    /// The manifest's `ruleset_sha256` is not 32 bytes.
    #[error("manifest ruleset_sha256 has {found} bytes, expected 32")]
    BadDigestLength {
        /// The number of bytes it has instead.
        found: usize,
    },
    /// The ruleset bytes do not hash to the manifest's digest.
    #[error("ruleset SHA-256 is {found}, but the manifest says {expected}")]
    DigestMismatch {
        /// The manifest's digest (hex).
        expected: String,
        /// The digest of the bytes received (hex).
        found: String,
    },
    /// The ruleset bytes are not the manifest's size.
    #[error("ruleset is {found} bytes, but the manifest says {expected}")]
    SizeMismatch {
        /// The manifest's size.
        expected: u64,
        /// The size received.
        found: u64,
    },
    /// A signature names a trusted key but does not verify under it: the
    /// manifest was altered after signing, or signed wrongly.
    #[error("manifest signature by trusted key {key_id} does not verify (altered or mis-signed)")]
    BadSignature {
        /// The trusted key's id.
        key_id: String,
    },
    /// Keys are trusted but no signature is by one of them.
    #[error(
        "manifest has no signature by a trusted key ({signatures} signature(s), by key ids [{}]; trusted key ids [{}])",
        signed_by.join(", "),
        trusted.join(", ")
    )]
    Unsigned {
        /// How many signatures the manifest carries (by unknown keys).
        signatures: usize,
        /// The key ids those signatures name (public key ids, not secrets), so
        /// an operator sees which key signed and which ones they trust.
        signed_by: Vec<String>,
        /// The key ids this reader trusts.
        trusted: Vec<String>,
    },
    /// The manifest names a ruleset path other than `rulesets/<version>.pb`.
    #[error("manifest names ruleset path {found:?}, expected {expected:?}")]
    BadPath {
        /// The path the manifest's own version calls for,
        /// `rulesets/<version>.pb`.
        expected: String,
        /// The path in the manifest.
        found: String,
    },
    /// The offered manifest claims the held version with a different ruleset.
    #[error(
        "two different rulesets claim version {version} (held SHA-256 {held}, offered {offered})"
    )]
    VersionConflict {
        /// The version both claim.
        version: u64,
        /// Digest of the held ruleset (hex).
        held: String,
        /// Digest the offered manifest names (hex).
        offered: String,
    },
    /// The offered version is lower than the held one and is not a rollback
    /// (for a reader: not a signed one).
    #[error(
        "offered version {offered} is older than held version {held} (only a signed manifest with rollback set may go back)"
    )]
    OlderVersion {
        /// The version held.
        held: u64,
        /// The version offered.
        offered: u64,
    },
    /// The offered version is a rollback, but published no later than what is
    /// held: an old decision replayed (or left in a lagging store), never acted
    /// on.
    #[error(
        "offered rollback to version {offered} was published at {offered_published_at_ms} ms, not after held version {held} (published at {held_published_at_ms} ms): an old rollback is never replayed"
    )]
    StaleRollback {
        /// The version held.
        held: u64,
        /// When the held version was published (ms since the epoch).
        held_published_at_ms: i64,
        /// The version offered.
        offered: u64,
        /// When the rollback was published (ms since the epoch).
        offered_published_at_ms: i64,
    },
}

impl VerifyError {
    /// True for the refusals that mean "lower than what is held"
    /// ([`Self::OlderVersion`], [`Self::StaleRollback`]): nothing to do, as
    /// opposed to an offer that is wrong.
    pub fn is_older(&self) -> bool {
        matches!(self, Self::OlderVersion { .. } | Self::StaleRollback { .. })
    }
}

/// Verifies manifest bytes read from `<prefix>/<expected_env>/manifest.pb`.
///
/// Checks, in order: it decodes; its format is [`FORMAT`] (before signatures,
/// so that a newer publisher gets an "upgrade" message rather than a signature
/// error); the signature policy of `trusted`; the environment; the ruleset path
/// is `rulesets/<version>.pb`; the digest is 32 bytes. The checks made before
/// the signatures only ever reject, so reading unverified fields is harmless.
///
/// Signature policy with trusted keys: signatures by unknown key ids are
/// ignored; a signature whose key id is trusted must verify (strictly, no
/// malleable encodings), else [`VerifyError::BadSignature`]; at least one must
/// verify, else [`VerifyError::Unsigned`]. With no trusted keys, signatures are
/// not examined and `signed_by` is empty.
pub fn verify_manifest(
    bytes: &[u8],
    expected_env: &str,
    trusted: &TrustedKeys,
) -> Result<VerifiedManifest, VerifyError> {
    let (signed, body) = codec::decode_manifest(bytes)?;
    if body.format != FORMAT {
        return Err(VerifyError::UnsupportedFormat {
            found: body.format,
            supported: FORMAT,
        });
    }
    let signed_by = check_signatures(&signed, trusted)?;
    if body.environment != expected_env {
        return Err(VerifyError::EnvMismatch {
            object: "manifest",
            expected: expected_env.to_owned(),
            found: body.environment,
        });
    }
    let expected_path = ruleset_path(body.version);
    if body.ruleset_path != expected_path {
        return Err(VerifyError::BadPath {
            expected: expected_path,
            found: body.ruleset_path,
        });
    }
    let sha256: [u8; 32] =
        body.ruleset_sha256
            .as_slice()
            .try_into()
            .map_err(|_| VerifyError::BadDigestLength {
                found: body.ruleset_sha256.len(),
            })?;
    Ok(VerifiedManifest {
        body,
        signed_by,
        sha256,
    })
}

/// Applies the signature policy; returns the ids of trusted keys that signed.
fn check_signatures(
    signed: &proto::SignedManifest,
    trusted: &TrustedKeys,
) -> Result<Vec<String>, VerifyError> {
    if trusted.is_empty() {
        return Ok(Vec::new());
    }
    let message = signed_message(&signed.body);
    let mut signed_by: Vec<String> = Vec::new();
    for sig in &signed.signatures {
        let mut candidates = trusted
            .keys
            .iter()
            .filter(|(id, _)| *id == sig.key_id)
            .peekable();
        if candidates.peek().is_none() {
            // Not one of ours (e.g. another team's key, or a key being rotated
            // in elsewhere): it neither helps nor hurts.
            continue;
        }
        let verified = Signature::from_slice(&sig.signature)
            .ok()
            .is_some_and(|s| candidates.any(|(_, key)| key.verify_strict(&message, &s).is_ok()));
        if !verified {
            return Err(VerifyError::BadSignature {
                key_id: sig.key_id.clone(),
            });
        }
        if !signed_by.contains(&sig.key_id) {
            signed_by.push(sig.key_id.clone());
        }
    }
    if signed_by.is_empty() {
        return Err(VerifyError::Unsigned {
            signatures: signed.signatures.len(),
            signed_by: signed.signatures.iter().map(|s| s.key_id.clone()).collect(),
            trusted: trusted.ids().map(str::to_owned).collect(),
        });
    }
    Ok(signed_by)
}

/// Verifies ruleset bytes against their verified manifest and compiles them.
///
/// Checks, in order: size, SHA-256, decoding, the ruleset's environment and
/// version against the manifest's (before compiling, so that a misplaced
/// ruleset gets that message rather than a compile error, and costs no
/// compile), then compilation. Returns both the proto (for re-serving the
/// exact ruleset) and the model only when everything holds.
pub fn verify_ruleset(
    m: &VerifiedManifest,
    bytes: &[u8],
) -> Result<(proto::Ruleset, model::Ruleset), VerifyError> {
    // usize -> u64 is lossless on every supported target.
    let size = bytes.len() as u64;
    if size != m.body.ruleset_size {
        return Err(VerifyError::SizeMismatch {
            expected: m.body.ruleset_size,
            found: size,
        });
    }
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    if digest != m.sha256 {
        return Err(VerifyError::DigestMismatch {
            expected: hex::encode(&m.sha256),
            found: hex::encode(&digest),
        });
    }
    let pb = codec::decode_ruleset(bytes).map_err(LoadError::from)?;
    if pb.environment != m.body.environment {
        return Err(VerifyError::EnvMismatch {
            object: "ruleset",
            expected: m.body.environment.clone(),
            found: pb.environment,
        });
    }
    if pb.version != m.body.version {
        return Err(VerifyError::VersionMismatch {
            manifest: m.body.version,
            ruleset: pb.version,
        });
    }
    let model = compile::compile(&pb).map_err(LoadError::from)?;
    Ok((pb, model))
}

/// THE version rule: decides whether verified manifest `m` may replace what
/// is held. Every place that compares a held version with an offered one
/// calls this (readers, the last-known-good cache, `compile --out`, `publish`).
///
/// - nothing held, or a higher version: [`VersionDecision::Activate`];
/// - the same version and digest: [`VersionDecision::Unchanged`];
/// - the same version with another digest: [`VerifyError::VersionConflict`]
///   (rulesets are immutable per version; two publishers collided);
/// - a lower version: [`VerifyError::OlderVersion`], unless the manifest has
///   `rollback` set (and, for a [`Mover::Reader`], was signed by a trusted
///   key); such a rollback activates only if it was published after the held
///   version, else [`VerifyError::StaleRollback`] (a replayed or lagging old
///   decision).
///
/// A signed rollback published after the held version stays valid for as long
/// as its key is trusted: whoever can replay it into a source can roll a
/// reader that holds an older publish back. Rotate the signing key (or
/// publish a higher version) to retire one.
pub fn check_version(
    held: Option<Held>,
    m: &VerifiedManifest,
    mover: Mover,
) -> Result<VersionDecision, VerifyError> {
    let offered = m.version();
    let Some(held) = held else {
        return Ok(VersionDecision::Activate);
    };
    match offered.cmp(&held.version) {
        std::cmp::Ordering::Greater => Ok(VersionDecision::Activate),
        std::cmp::Ordering::Equal if held.sha256 == m.sha256 => Ok(VersionDecision::Unchanged),
        std::cmp::Ordering::Equal => Err(VerifyError::VersionConflict {
            version: offered,
            held: hex::encode(&held.sha256),
            offered: hex::encode(&m.sha256),
        }),
        std::cmp::Ordering::Less => {
            let vouched = match mover {
                Mover::Reader => !m.signed_by.is_empty(),
                Mover::Writer => true,
            };
            if !(m.rollback() && vouched) {
                return Err(VerifyError::OlderVersion {
                    held: held.version,
                    offered,
                });
            }
            if m.published_at_ms() <= held.published_at_ms {
                return Err(VerifyError::StaleRollback {
                    held: held.version,
                    held_published_at_ms: held.published_at_ms,
                    offered,
                    offered_published_at_ms: m.published_at_ms(),
                });
            }
            Ok(VersionDecision::Activate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::manifest;
    use ed25519_dalek::SigningKey;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn duplicate_trusted_keys_are_dropped() {
        let t = TrustedKeys::from_keys(vec![key(1).verifying_key(), key(1).verifying_key()]);
        assert_eq!(t.ids().count(), 1);
        assert!(format!("{t:?}").contains(&keys::key_id(&key(1).verifying_key())));
    }

    #[test]
    fn signature_of_wrong_length_under_trusted_id_is_bad() {
        let mut m = manifest::build("prod", 1, b"x", 0, false, &[key(1)]);
        m.signatures[0].signature.truncate(10);
        let bytes = codec::encode_manifest(&m);
        let t = TrustedKeys::from_keys(vec![key(1).verifying_key()]);
        assert!(matches!(
            verify_manifest(&bytes, "prod", &t),
            Err(VerifyError::BadSignature { .. })
        ));
    }

    #[test]
    fn two_trusted_signers_are_both_reported() {
        let m = manifest::build("prod", 1, b"x", 0, false, &[key(1), key(2), key(3)]);
        let bytes = codec::encode_manifest(&m);
        let t = TrustedKeys::from_keys(vec![key(2).verifying_key(), key(1).verifying_key()]);
        let v = verify_manifest(&bytes, "prod", &t).unwrap();
        assert_eq!(
            v.signed_by,
            vec![
                keys::key_id(&key(1).verifying_key()),
                keys::key_id(&key(2).verifying_key())
            ]
        );
    }

    #[test]
    fn bad_path_and_digest_length_are_rejected() {
        let body = proto::ManifestBody {
            format: FORMAT,
            environment: "prod".into(),
            version: 3,
            ruleset_path: "rulesets/4.pb".into(),
            ruleset_sha256: vec![0; 32],
            ..Default::default()
        };
        let enc = |b: &proto::ManifestBody| {
            codec::encode_manifest(&proto::SignedManifest {
                body: prost::Message::encode_to_vec(b),
                signatures: vec![],
            })
        };
        let err = verify_manifest(&enc(&body), "prod", &TrustedKeys::none()).unwrap_err();
        assert!(matches!(err, VerifyError::BadPath { .. }), "{err}");
        let body = proto::ManifestBody {
            ruleset_path: "rulesets/3.pb".into(),
            ruleset_sha256: vec![0; 31],
            ..body
        };
        let err = verify_manifest(&enc(&body), "prod", &TrustedKeys::none()).unwrap_err();
        assert!(
            matches!(err, VerifyError::BadDigestLength { found: 31 }),
            "{err}"
        );
        let body = proto::ManifestBody { format: 2, ..body };
        let err = verify_manifest(&enc(&body), "prod", &TrustedKeys::none()).unwrap_err();
        assert!(
            matches!(err, VerifyError::UnsupportedFormat { found: 2, .. }),
            "{err}"
        );
    }

    /// Every case of the version rule, for both movers.
    #[test]
    fn the_version_rule_case_by_case() {
        use VersionDecision::{Activate, Unchanged};
        let trusted = TrustedKeys::from_keys(vec![key(1).verifying_key()]);
        // An offer: version, ruleset bytes, published at, rollback, signed.
        let offer = |version: u64, rs: &[u8], at: i64, rollback: bool, signed: bool| {
            let signers = if signed { vec![key(1)] } else { vec![] };
            let trust = if signed {
                &trusted
            } else {
                &TrustedKeys::none()
            };
            let m = manifest::build("prod", version, rs, at, rollback, &signers);
            verify_manifest(&codec::encode_manifest(&m), "prod", trust).unwrap()
        };
        let held_m = offer(10, b"ten", 1_000, false, true);
        let held = Some(held_m.held());
        type Expect = Result<VersionDecision, &'static str>;
        let cases: [(&str, VerifiedManifest, Expect, Expect); 10] = [
            (
                "same digest",
                offer(10, b"ten", 1_000, false, true),
                Ok(Unchanged),
                Ok(Unchanged),
            ),
            (
                "same digest, republished",
                offer(10, b"ten", 2_000, false, false),
                Ok(Unchanged),
                Ok(Unchanged),
            ),
            (
                "same version, other digest",
                offer(10, b"other", 2_000, true, true),
                Err("conflict"),
                Err("conflict"),
            ),
            (
                "higher",
                offer(11, b"eleven", 500, false, false),
                Ok(Activate),
                Ok(Activate),
            ),
            (
                "lower",
                offer(9, b"nine", 2_000, false, true),
                Err("older"),
                Err("older"),
            ),
            (
                "signed rollback, newer",
                offer(9, b"nine", 2_000, true, true),
                Ok(Activate),
                Ok(Activate),
            ),
            (
                "signed rollback, as old",
                offer(9, b"nine", 1_000, true, true),
                Err("stale"),
                Err("stale"),
            ),
            (
                "signed rollback, older (replayed)",
                offer(9, b"nine", 900, true, true),
                Err("stale"),
                Err("stale"),
            ),
            (
                "unsigned rollback, newer",
                offer(9, b"nine", 2_000, true, false),
                Err("older"),
                Ok(Activate),
            ),
            (
                "unsigned rollback, older",
                offer(9, b"nine", 900, true, false),
                Err("older"),
                Err("stale"),
            ),
        ];
        let kind = |r: Result<VersionDecision, VerifyError>| -> Expect {
            r.map_err(|e| match e {
                VerifyError::VersionConflict { .. } => "conflict",
                VerifyError::OlderVersion { .. } => "older",
                VerifyError::StaleRollback { .. } => "stale",
                other => panic!("unexpected {other}"),
            })
        };
        for (name, m, reader, writer) in cases {
            assert_eq!(
                kind(check_version(held, &m, Mover::Reader)),
                reader,
                "reader: {name}"
            );
            assert_eq!(
                kind(check_version(held, &m, Mover::Writer)),
                writer,
                "writer: {name}"
            );
            assert_eq!(
                check_version(None, &m, Mover::Reader).unwrap(),
                Activate,
                "{name}"
            );
        }
    }

    #[test]
    fn a_replayed_rollback_is_refused_with_both_publish_times() {
        let t = TrustedKeys::from_keys(vec![key(1).verifying_key()]);
        let signed = |v, rs: &[u8], at, rb| {
            let m = manifest::build("prod", v, rs, at, rb, &[key(1)]);
            verify_manifest(&codec::encode_manifest(&m), "prod", &t).unwrap()
        };
        // v5 rolled back to v4 at t=2000, then v6 published at t=3000: the
        // old rollback, replayed into a store, must not take v6 back to v4.
        let rollback = signed(4, b"four", 2_000, true);
        let v6 = signed(6, b"six", 3_000, false);
        let e = check_version(Some(v6.held()), &rollback, Mover::Reader).unwrap_err();
        assert!(e.is_older(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("2000") && text.contains("3000") && text.contains("never replayed"),
            "{text}"
        );
    }

    #[test]
    fn held_in_reads_what_a_manifest_claims_without_verifying_it() {
        let body = proto::ManifestBody {
            format: FORMAT + 1,
            environment: "prod".into(),
            version: 30,
            ruleset_path: "elsewhere.pb".into(),
            ruleset_sha256: vec![7; 31],
            published_at_ms: 5,
            ..Default::default()
        };
        let bytes = codec::encode_manifest(&proto::SignedManifest {
            body: prost::Message::encode_to_vec(&body),
            signatures: vec![],
        });
        assert!(verify_manifest(&bytes, "prod", &TrustedKeys::none()).is_err());
        let held = held_in(&bytes).unwrap();
        assert_eq!(
            (held.version, held.sha256, held.published_at_ms),
            (30, [0; 32], 5)
        );
        assert!(held_in(b"\xff\xff not a manifest").is_err());
    }
}
