//! API keys, signing keys, manifests and the verification gate, through the
//! public API only.
//!
//! Tests marked `needs compile` call `verify::verify_ruleset` on a ruleset that
//! is valid, so they pass only once `ruleset::compile::compile` accepts a
//! minimal ruleset (format 1, an environment, a version, no flags).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use flagbelt::eval::model::{ApiKey, KeyKind};
use flagbelt::ruleset::keys::{self, KeyFileError, KeyFormatError, PresentedKey};
use flagbelt::ruleset::verify::{self, Held, Mover, TrustedKeys, VerifyError, VersionDecision};
use flagbelt::ruleset::{codec, hex, manifest, proto};
use secrecy::ExposeSecret as _;

// ---------------------------------------------------------------- API keys

fn secret() -> String {
    URL_SAFE_NO_PAD.encode([0x5au8; 32])
}

fn stored(id: &str, kind: KeyKind, secret_text: &str) -> ApiKey {
    ApiKey {
        id: id.into(),
        kind,
        secret_sha256: keys::secret_sha256(secret_text),
        allowed_origins: vec![],
    }
}

#[test]
fn api_key_round_trip() {
    let s = secret();
    let text = format!("fbp.production.web.{s}");
    let k = PresentedKey::parse(&text).unwrap();
    assert_eq!(k.kind(), KeyKind::Frontend);
    assert_eq!(k.env(), "production");
    assert_eq!(k.key_id(), "web");
    assert_eq!(k.secret_digest(), keys::secret_sha256(&s));

    let k = PresentedKey::parse(&format!("fbs.prod_eu-1.api-2_x.{s}")).unwrap();
    assert_eq!(k.kind(), KeyKind::Backend);
    assert_eq!(k.env(), "prod_eu-1");
    assert_eq!(k.key_id(), "api-2_x");

    // Longest names allowed.
    let env = "e".repeat(64);
    let id = "k".repeat(32);
    assert!(PresentedKey::parse(&format!("fbs.{env}.{id}.{s}")).is_ok());
}

#[test]
fn secret_sha256_is_sha256_of_the_text() {
    // SHA-256("abc"), the FIPS 180-2 example.
    assert_eq!(
        hex::encode(&keys::secret_sha256("abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn every_malformed_key_is_rejected_without_echoing_it() {
    let s = secret();
    let cases: Vec<(String, KeyFormatError)> = vec![
        (format!("fbx.prod.web.{s}"), KeyFormatError::UnknownPrefix),
        (format!("FBP.prod.web.{s}"), KeyFormatError::UnknownPrefix),
        (s.clone(), KeyFormatError::UnknownPrefix),
        (String::new(), KeyFormatError::UnknownPrefix),
        (format!(".prod.web.{s}"), KeyFormatError::UnknownPrefix),
        (
            format!("fbp.prod.{s}"),
            KeyFormatError::WrongPartCount { found: 3 },
        ),
        (
            "fbp.prod.web".into(),
            KeyFormatError::WrongPartCount { found: 3 },
        ),
        ("fbp".into(), KeyFormatError::WrongPartCount { found: 1 }),
        (
            format!("fbp.prod.web.{s}.x"),
            KeyFormatError::WrongPartCount { found: 5 },
        ),
        (
            format!("fbp.prod.eu.web.{s}"),
            KeyFormatError::WrongPartCount { found: 5 },
        ),
        (
            format!("fbp..web.{s}"),
            KeyFormatError::InvalidEnv { len: 0 },
        ),
        (
            format!("fbp.pr od.web.{s}"),
            KeyFormatError::InvalidEnv { len: 5 },
        ),
        (
            format!("fbp.prød.web.{s}"),
            KeyFormatError::InvalidEnv { len: 5 },
        ),
        (
            format!("fbp.{}.web.{s}", "e".repeat(65)),
            KeyFormatError::InvalidEnv { len: 65 },
        ),
        (
            format!("fbp.prod..{s}"),
            KeyFormatError::InvalidKeyId { len: 0 },
        ),
        (
            format!("fbp.prod.w/b.{s}"),
            KeyFormatError::InvalidKeyId { len: 3 },
        ),
        (
            format!("fbp.prod.{}.{s}", "k".repeat(33)),
            KeyFormatError::InvalidKeyId { len: 33 },
        ),
        (
            "fbp.prod.web.".into(),
            KeyFormatError::SecretLength { found: 0 },
        ),
        (
            format!("fbp.prod.web.{}", &s[..42]),
            KeyFormatError::SecretLength { found: 42 },
        ),
        (
            format!("fbp.prod.web.{s}A"),
            KeyFormatError::SecretLength { found: 44 },
        ),
        (
            format!("fbp.prod.web.{s}{s}"),
            KeyFormatError::SecretLength { found: 86 },
        ),
        (
            format!("fbp.prod.web.{}", URL_SAFE_NO_PAD.encode([1u8; 16])),
            KeyFormatError::SecretLength { found: 22 },
        ),
        // Standard (not url-safe) alphabet, padding, whitespace.
        (
            format!("fbp.prod.web.{}+", &s[..42]),
            KeyFormatError::SecretEncoding,
        ),
        (
            format!("fbp.prod.web.{}/", &s[..42]),
            KeyFormatError::SecretEncoding,
        ),
        (format!("fbp.prod.web.{s}="), KeyFormatError::SecretEncoding),
        (format!("fbp.prod.web.{s} "), KeyFormatError::SecretEncoding),
        (format!(" fbp.prod.web.{s}"), KeyFormatError::UnknownPrefix),
    ];
    for (text, want) in cases {
        let err = PresentedKey::parse(&text).unwrap_err();
        assert_eq!(err, want, "key {text:?}");
        let shown = format!("{err} / {err:?}");
        assert!(!shown.contains(&s), "{shown} leaks the secret");
        assert!(
            !shown.contains(&s[..20]),
            "{shown} leaks part of the secret"
        );
        // Short texts ("fbp") are legitimately part of the format description.
        assert!(
            text.len() < 8 || !shown.contains(&text),
            "{shown} echoes the key"
        );
    }
}

#[test]
fn debug_of_presented_key_redacts_the_secret() {
    let s = secret();
    let k = PresentedKey::parse(&format!("fbs.prod.api.{s}")).unwrap();
    let shown = format!("{k:?} {k:#?}");
    assert!(!shown.contains(&s), "{shown}");
    assert!(shown.contains("REDACTED"), "{shown}");
    assert!(shown.contains("api"), "{shown}");
}

#[test]
fn matches_needs_same_kind_id_and_secret() {
    let s = secret();
    let other = URL_SAFE_NO_PAD.encode([0x5bu8; 32]);
    let k = PresentedKey::parse(&format!("fbp.prod.web.{s}")).unwrap();
    assert!(k.matches(&stored("web", KeyKind::Frontend, &s)));
    assert!(
        !k.matches(&stored("web", KeyKind::Frontend, &other)),
        "wrong secret"
    );
    assert!(
        !k.matches(&stored("web", KeyKind::Backend, &s)),
        "wrong kind"
    );
    assert!(
        !k.matches(&stored("web2", KeyKind::Frontend, &s)),
        "wrong id"
    );
    assert!(
        !k.matches(&stored("we", KeyKind::Frontend, &s)),
        "id prefix"
    );

    let b = PresentedKey::parse(&format!("fbs.prod.web.{s}")).unwrap();
    assert!(b.matches(&stored("web", KeyKind::Backend, &s)));
    assert!(!b.matches(&stored("web", KeyKind::Frontend, &s)));
}

#[test]
fn generated_keys_are_fresh_and_match_their_digest() {
    for kind in [KeyKind::Frontend, KeyKind::Backend] {
        let a = keys::generate("production", "web", kind).unwrap();
        let b = keys::generate("production", "web", kind).unwrap();
        assert_ne!(a.token.expose_secret(), b.token.expose_secret());
        let token = a.token.expose_secret();
        let prefix = if kind == KeyKind::Frontend {
            "fbp"
        } else {
            "fbs"
        };
        assert!(
            token.starts_with(&format!("{prefix}.production.web.")),
            "{token}"
        );
        assert_eq!(token.rsplit('.').next().map(str::len), Some(43));

        let k = PresentedKey::parse(token).unwrap();
        let digest = hex::decode_array::<32>(&a.secret_sha256_hex).unwrap();
        assert!(k.matches(&ApiKey {
            id: "web".into(),
            kind,
            secret_sha256: digest,
            allowed_origins: vec![],
        }));
        assert!(
            a.yaml_stanza.starts_with("- {id: web, kind: "),
            "{}",
            a.yaml_stanza
        );
        assert!(
            a.yaml_stanza
                .contains(&format!("secret_sha256: \"{}\"", a.secret_sha256_hex))
        );
        assert!(!a.yaml_stanza.contains(token));
        assert!(!format!("{a:?}").contains(token));
    }
    assert!(matches!(
        keys::generate("prod.eu", "web", KeyKind::Backend),
        Err(KeyFormatError::InvalidEnv { .. })
    ));
    assert!(matches!(
        keys::generate("prod", &"k".repeat(33), KeyKind::Backend),
        Err(KeyFormatError::InvalidKeyId { .. })
    ));
}

// ------------------------------------------------------------ signing keys

/// Generated with `openssl genpkey -algorithm ed25519` (a throwaway test key).
const OPENSSL_ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIFUkcNcVakkFjuMhxBqEhgd5w/gUq4L17pjGhv25yicA
-----END PRIVATE KEY-----
";
/// `openssl pkey -pubout` of the key above.
const OPENSSL_ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAVMFZ3sw44bgV64RaiRzca8E3l2vm+1VpVC9sE59N8IM=
-----END PUBLIC KEY-----
";
/// A P-256 key (`openssl genpkey -algorithm EC`), valid PKCS#8 but not Ed25519.
const P256_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggujYRiGzCeYgbrBD
1ElTl44sOB7mL/F77iZxvPCWj2OhRANCAARwUk/jRcNMELoepoyedIgZjKRyOolD
C58kdaDZuRu+MvYVAeeH4I2W+GpFx4O1dgOOEUCsOM/SLOIj670TWaH1
-----END PRIVATE KEY-----
";
const P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsIinvF4z+7BzaDyl3mc17k+WGLtT
UBXvRIgzYRskuBUKMnSI6hLpY+30+1a31O21P8WwppLVa3eHkvLbM/gY2g==
-----END PUBLIC KEY-----
";

#[test]
fn signing_key_pem_round_trip() {
    let key = keys::new_signing_key();
    let pem = keys::signing_key_to_pem(&key).unwrap();
    assert!(
        pem.expose_secret()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    let back = keys::signing_key_from_pem(pem.expose_secret()).unwrap();
    assert_eq!(back.to_bytes(), key.to_bytes());
    // Surrounding whitespace (an editor's trailing newline, CRLF) is fine.
    let padded = format!("\n{}\r\n", pem.expose_secret());
    assert!(keys::signing_key_from_pem(&padded).is_ok());
    let crlf = pem.expose_secret().replace('\n', "\r\n");
    assert_eq!(
        keys::signing_key_from_pem(&crlf).unwrap().to_bytes(),
        key.to_bytes()
    );
    // Fresh keys differ.
    assert_ne!(keys::new_signing_key().to_bytes(), key.to_bytes());
}

#[test]
fn verifying_key_pem_round_trip() {
    let key = keys::new_signing_key().verifying_key();
    let pem = keys::verifying_key_to_pem(&key);
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(
        pem.trim_end().ends_with("-----END PUBLIC KEY-----"),
        "{pem}"
    );
    assert_eq!(keys::verifying_key_from_pem(&pem).unwrap(), key);
}

#[test]
fn reads_openssl_keys() {
    let sk = keys::signing_key_from_pem(OPENSSL_ED25519_PRIVATE).unwrap();
    let vk = keys::verifying_key_from_pem(OPENSSL_ED25519_PUBLIC).unwrap();
    assert_eq!(sk.verifying_key(), vk);
    assert_eq!(keys::verifying_key_to_pem(&vk), OPENSSL_ED25519_PUBLIC);
}

#[test]
fn key_id_is_hex_of_sha256_prefix() {
    let vk = keys::verifying_key_from_pem(OPENSSL_ED25519_PUBLIC).unwrap();
    let id = keys::key_id(&vk);
    assert_eq!(id.len(), 16);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(id, keys::key_id(&vk), "stable");
    assert_ne!(id, keys::key_id(&keys::new_signing_key().verifying_key()));
}

#[test]
fn garbage_pem_is_rejected_with_a_useful_message() {
    let private_pem = keys::signing_key_to_pem(&keys::new_signing_key()).unwrap();
    let private_pem = private_pem.expose_secret();
    let body_line = private_pem.lines().nth(1).unwrap().to_owned();

    // Not PEM at all.
    for text in [
        "",
        "hello",
        "MC4CAQAwBQYDK2VwBCIEI",
        "-----BEGIN PRIVATE KEY",
    ] {
        let e = keys::signing_key_from_pem(text).unwrap_err();
        assert!(matches!(e, KeyFileError::NotPem { .. }), "{text:?}: {e}");
        let e = keys::verifying_key_from_pem(text).unwrap_err();
        assert!(matches!(e, KeyFileError::NotPem { .. }), "{text:?}: {e}");
    }
    // A public key where a private one is expected, and the other way round.
    let e = keys::signing_key_from_pem(OPENSSL_ED25519_PUBLIC).unwrap_err();
    assert!(
        matches!(&e, KeyFileError::WrongLabel { found, .. } if found == "PUBLIC KEY"),
        "{e}"
    );
    let e = keys::verifying_key_from_pem(private_pem).unwrap_err();
    assert!(
        matches!(&e, KeyFileError::WrongLabel { found, .. } if found == "PRIVATE KEY"),
        "{e}"
    );
    assert!(!e.to_string().contains(&body_line), "{e}");
    // Other algorithms.
    let e = keys::signing_key_from_pem(P256_PRIVATE).unwrap_err();
    assert!(matches!(e, KeyFileError::WrongAlgorithm { .. }), "{e}");
    let e = keys::verifying_key_from_pem(P256_PUBLIC).unwrap_err();
    assert!(matches!(e, KeyFileError::WrongAlgorithm { .. }), "{e}");
    // The right label around garbage.
    let garbage = "-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n";
    let e = keys::signing_key_from_pem(garbage).unwrap_err();
    assert!(matches!(e, KeyFileError::Malformed { .. }), "{e}");
    let not_base64 = "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n";
    assert!(keys::verifying_key_from_pem(not_base64).is_err());
    // A truncated private key never echoes what it did read.
    let truncated: String = private_pem.lines().take(2).collect::<Vec<_>>().join("\n");
    let e = keys::signing_key_from_pem(&truncated).unwrap_err();
    let shown = format!("{e} / {e:?}");
    assert!(!shown.contains(&body_line), "{shown}");
    // An odd label is not echoed verbatim.
    let odd = "-----BEGIN secret stuff here-----\nAAAA\n-----END secret stuff here-----";
    let e = keys::signing_key_from_pem(odd).unwrap_err();
    assert!(!e.to_string().contains("secret stuff"), "{e}");
}

// --------------------------------------------------------------- manifests

const NOW_MS: i64 = 1_767_225_600_000;

fn signer(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn trust(keys: &[&SigningKey]) -> TrustedKeys {
    TrustedKeys::from_keys(keys.iter().map(|k| k.verifying_key()).collect())
}

fn ruleset_bytes(env: &str, version: u64) -> Vec<u8> {
    codec::encode_ruleset(&proto::Ruleset {
        format: 1,
        environment: env.into(),
        version,
        ..Default::default()
    })
}

/// Manifest bytes for `rs_bytes`, as the publisher writes them.
fn manifest_bytes(
    env: &str,
    version: u64,
    rs_bytes: &[u8],
    rollback: bool,
    signers: &[SigningKey],
) -> Vec<u8> {
    codec::encode_manifest(&manifest::build(
        env, version, rs_bytes, NOW_MS, rollback, signers,
    ))
}

#[test]
fn ruleset_path_layout() {
    assert_eq!(manifest::ruleset_path(42), "rulesets/42.pb");
    assert_eq!(manifest::ruleset_path(0), "rulesets/0.pb");
    assert_eq!(manifest::SIGNING_CONTEXT, b"flagbelt-manifest-v1\0");
}

#[test]
fn signed_manifest_round_trip() {
    let rs = ruleset_bytes("prod", 42);
    let bytes = manifest_bytes("prod", 42, &rs, false, &[signer(1)]);
    let m = verify::verify_manifest(&bytes, "prod", &trust(&[&signer(1)])).unwrap();
    assert_eq!(m.environment(), "prod");
    assert_eq!(m.version(), 42);
    assert_eq!(m.ruleset_path(), "rulesets/42.pb");
    assert_eq!(m.ruleset_size(), rs.len() as u64);
    assert_eq!(m.published_at_ms(), NOW_MS);
    assert!(!m.rollback());
    assert_eq!(
        m.signed_by(),
        vec![keys::key_id(&signer(1).verifying_key())]
    );
    assert_eq!(m.sha256(), digest(&rs));
}

#[test]
fn unsigned_manifest_is_accepted_only_without_trusted_keys() {
    let rs = ruleset_bytes("prod", 1);
    let bytes = manifest_bytes("prod", 1, &rs, false, &[]);
    let m = verify::verify_manifest(&bytes, "prod", &TrustedKeys::none()).unwrap();
    assert!(m.signed_by().is_empty());
    assert!(TrustedKeys::none().is_empty());

    let e = verify::verify_manifest(&bytes, "prod", &trust(&[&signer(1)])).unwrap_err();
    assert!(
        matches!(e, VerifyError::Unsigned { signatures: 0, .. }),
        "{e}"
    );
}

#[test]
fn signatures_by_untrusted_keys_only_count_as_unsigned() {
    let rs = ruleset_bytes("prod", 1);
    let bytes = manifest_bytes("prod", 1, &rs, false, &[signer(9)]);
    let e = verify::verify_manifest(&bytes, "prod", &trust(&[&signer(1)])).unwrap_err();
    assert!(
        matches!(e, VerifyError::Unsigned { signatures: 1, .. }),
        "{e}"
    );
    // The message names the key that signed and the keys trusted (ids only).
    let text = e.to_string();
    assert!(
        text.contains(&keys::key_id(&signer(9).verifying_key())),
        "{text}"
    );
    assert!(
        text.contains(&keys::key_id(&signer(1).verifying_key())),
        "{text}"
    );

    // An untrusted signature next to a trusted one is ignored.
    let bytes = manifest_bytes("prod", 1, &rs, false, &[signer(9), signer(1)]);
    let m = verify::verify_manifest(&bytes, "prod", &trust(&[&signer(1)])).unwrap();
    assert_eq!(
        m.signed_by(),
        vec![keys::key_id(&signer(1).verifying_key())]
    );
}

#[test]
fn tampered_body_is_a_bad_signature() {
    let rs = ruleset_bytes("prod", 5);
    let mut m = manifest::build("prod", 5, &rs, NOW_MS, false, &[signer(1)]);
    // Re-encode the body with a higher version and path: still a valid body,
    // but not the one that was signed.
    let mut body: proto::ManifestBody = prost::Message::decode(m.body.as_slice()).unwrap();
    body.version = 6;
    body.ruleset_path = manifest::ruleset_path(6);
    m.body = prost::Message::encode_to_vec(&body);
    let bytes = codec::encode_manifest(&m);
    let e = verify::verify_manifest(&bytes, "prod", &trust(&[&signer(1)])).unwrap_err();
    let id = keys::key_id(&signer(1).verifying_key());
    assert!(
        matches!(&e, VerifyError::BadSignature { key_id } if *key_id == id),
        "{e}"
    );
    assert!(e.to_string().contains(&id), "{e}");

    // A flipped signature bit, too.
    let mut m = manifest::build("prod", 5, &rs, NOW_MS, false, &[signer(1)]);
    m.signatures[0].signature[0] ^= 1;
    let e = verify::verify_manifest(&codec::encode_manifest(&m), "prod", &trust(&[&signer(1)]))
        .unwrap_err();
    assert!(matches!(e, VerifyError::BadSignature { .. }), "{e}");

    // A trusted key id on another key's signature.
    let mut m = manifest::build("prod", 5, &rs, NOW_MS, false, &[signer(2)]);
    m.signatures[0].key_id = id.clone();
    let e = verify::verify_manifest(&codec::encode_manifest(&m), "prod", &trust(&[&signer(1)]))
        .unwrap_err();
    assert!(matches!(e, VerifyError::BadSignature { .. }), "{e}");
}

#[test]
fn truncated_manifest_is_a_decode_error() {
    let rs = ruleset_bytes("prod", 1);
    let bytes = manifest_bytes("prod", 1, &rs, false, &[signer(1)]);
    for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
        let e = verify::verify_manifest(&bytes[..cut], "prod", &trust(&[&signer(1)])).unwrap_err();
        assert!(matches!(e, VerifyError::Decode(_)), "cut at {cut}: {e}");
    }
    let e = verify::verify_manifest(b"\xff\xff\xff", "prod", &TrustedKeys::none()).unwrap_err();
    assert!(matches!(e, VerifyError::Decode(_)), "{e}");
}

#[test]
fn manifest_for_another_environment_is_rejected() {
    let rs = ruleset_bytes("staging", 1);
    let bytes = manifest_bytes("staging", 1, &rs, false, &[signer(1)]);
    let e = verify::verify_manifest(&bytes, "prod", &trust(&[&signer(1)])).unwrap_err();
    match &e {
        VerifyError::EnvMismatch {
            object,
            expected,
            found,
        } => {
            assert_eq!(*object, "manifest");
            assert_eq!(expected, "prod");
            assert_eq!(found, "staging");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(
        e.to_string().contains("staging") && e.to_string().contains("prod"),
        "{e}"
    );
}

#[test]
fn tampered_ruleset_bytes_are_a_digest_mismatch() {
    let rs = ruleset_bytes("prod", 3);
    let bytes = manifest_bytes("prod", 3, &rs, false, &[signer(1)]);
    let m = verify::verify_manifest(&bytes, "prod", &trust(&[&signer(1)])).unwrap();

    let mut tampered = rs.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let e = verify::verify_ruleset(&m, &tampered).unwrap_err();
    assert!(matches!(e, VerifyError::DigestMismatch { .. }), "{e}");

    let mut longer = rs.clone();
    longer.push(0);
    let e = verify::verify_ruleset(&m, &longer).unwrap_err();
    assert!(matches!(e, VerifyError::SizeMismatch { .. }), "{e}");
    let e = verify::verify_ruleset(&m, &rs[..rs.len() - 1]).unwrap_err();
    assert!(matches!(e, VerifyError::SizeMismatch { .. }), "{e}");
}

#[test]
fn ruleset_must_match_the_manifest_env_and_version() {
    // A correctly signed manifest pointing at a ruleset of another env/version
    // (a publisher bug): the digest holds, the contents do not.
    let rs = ruleset_bytes("staging", 3);
    let bytes = manifest_bytes("prod", 3, &rs, false, &[]);
    let m = verify::verify_manifest(&bytes, "prod", &TrustedKeys::none()).unwrap();
    let e = verify::verify_ruleset(&m, &rs).unwrap_err();
    assert!(
        matches!(&e, VerifyError::EnvMismatch { object: "ruleset", found, .. } if found == "staging"),
        "{e}"
    );

    let rs = ruleset_bytes("prod", 4);
    let bytes = manifest_bytes("prod", 3, &rs, false, &[]);
    let m = verify::verify_manifest(&bytes, "prod", &TrustedKeys::none()).unwrap();
    let e = verify::verify_ruleset(&m, &rs).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::VersionMismatch {
                manifest: 3,
                ruleset: 4
            }
        ),
        "{e}"
    );
}

#[test]
fn undecodable_ruleset_with_matching_digest_is_a_load_error() {
    let rs = b"\xff\xff\xff not a ruleset".to_vec();
    let bytes = manifest_bytes("prod", 3, &rs, false, &[]);
    let m = verify::verify_manifest(&bytes, "prod", &TrustedKeys::none()).unwrap();
    let e = verify::verify_ruleset(&m, &rs).unwrap_err();
    assert!(
        matches!(e, VerifyError::Load(codec::LoadError::Decode(_))),
        "{e}"
    );
}

/// needs compile: `compile::compile` must accept a minimal ruleset.
#[test]
fn verified_ruleset_round_trip() {
    let rs = ruleset_bytes("prod", 42);
    let bytes = manifest_bytes("prod", 42, &rs, false, &[signer(1)]);
    let m = verify::verify_manifest(&bytes, "prod", &trust(&[&signer(1)])).unwrap();
    let (pb, model) = verify::verify_ruleset(&m, &rs).unwrap();
    assert_eq!(pb.environment, "prod");
    assert_eq!(pb.version, 42);
    assert_eq!(model.environment(), "prod");
    assert_eq!(model.version(), 42);
}

// ------------------------------------------------------------ version rules

fn verified(
    version: u64,
    rs: &[u8],
    rollback: bool,
    signers: &[SigningKey],
    trusted: &TrustedKeys,
) -> verify::VerifiedManifest {
    let bytes = manifest_bytes("prod", version, rs, rollback, signers);
    verify::verify_manifest(&bytes, "prod", trusted).expect("manifest verifies")
}

/// What a reader holds: `version` of ruleset `rs`, published just before the
/// offers these tests make (they are published at `NOW_MS`).
fn held(version: u64, rs: &[u8]) -> Option<Held> {
    Some(Held {
        version,
        sha256: digest(rs),
        published_at_ms: NOW_MS - 1,
    })
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    // The manifest's digest is SHA-256 of the ruleset bytes.
    sha2::Sha256::digest(bytes).into()
}

#[test]
fn newer_or_first_version_activates() {
    let t = trust(&[&signer(1)]);
    let rs = ruleset_bytes("prod", 10);
    let m = verified(10, &rs, false, &[signer(1)], &t);
    assert_eq!(
        verify::check_version(None, &m, Mover::Reader).unwrap(),
        VersionDecision::Activate
    );
    let old = ruleset_bytes("prod", 9);
    assert_eq!(
        verify::check_version(held(9, &old), &m, Mover::Reader).unwrap(),
        VersionDecision::Activate
    );
}

#[test]
fn same_version_same_digest_is_unchanged_and_other_digest_conflicts() {
    let t = TrustedKeys::none();
    let rs = ruleset_bytes("prod", 10);
    let m = verified(10, &rs, false, &[], &t);
    assert_eq!(
        verify::check_version(held(10, &rs), &m, Mover::Reader).unwrap(),
        VersionDecision::Unchanged
    );
    let other = codec::encode_ruleset(&proto::Ruleset {
        format: 1,
        environment: "prod".into(),
        version: 10,
        flags: vec![proto::Flag {
            key: "x".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let e = verify::check_version(held(10, &other), &m, Mover::Reader).unwrap_err();
    assert!(
        matches!(e, VerifyError::VersionConflict { version: 10, .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&hex::encode(&digest(&rs))), "{e}");

    // Even a signed rollback manifest cannot reuse a version for other bytes.
    let t = trust(&[&signer(1)]);
    let m = verified(10, &rs, true, &[signer(1)], &t);
    assert!(matches!(
        verify::check_version(held(10, &other), &m, Mover::Reader),
        Err(VerifyError::VersionConflict { .. })
    ));
}

#[test]
fn older_version_is_refused_unless_signed_rollback() {
    let held = held(10, &ruleset_bytes("prod", 10));
    let rs = ruleset_bytes("prod", 7);

    // Plain older manifest, signed: refused.
    let t = trust(&[&signer(1)]);
    let m = verified(7, &rs, false, &[signer(1)], &t);
    let e = verify::check_version(held, &m, Mover::Reader).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::OlderVersion {
                held: 10,
                offered: 7
            }
        ),
        "{e}"
    );

    // Signed rollback: allowed.
    let m = verified(7, &rs, true, &[signer(1)], &t);
    assert_eq!(
        verify::check_version(held, &m, Mover::Reader).unwrap(),
        VersionDecision::Activate
    );

    // Rollback flag on an unsigned manifest (reader trusts no keys): refused.
    let m = verified(7, &rs, true, &[], &TrustedKeys::none());
    let e = verify::check_version(held, &m, Mover::Reader).unwrap_err();
    assert!(matches!(e, VerifyError::OlderVersion { .. }), "{e}");

    // Signed, but the reader trusts no keys, so nobody vouches for it: refused.
    let m = verified(7, &rs, true, &[signer(1)], &TrustedKeys::none());
    assert!(m.signed_by().is_empty());
    assert!(matches!(
        verify::check_version(held, &m, Mover::Reader),
        Err(VerifyError::OlderVersion { .. })
    ));
}
