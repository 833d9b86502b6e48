//! Bytes <-> proto messages for stored objects (`rulesets/<version>.pb`,
//! `manifest.pb`), and bytes -> evaluable model in one call.
//!
//! Decoding never trusts its input: a truncated or corrupt object is an error that
//! says which object failed, never a panic. Signature and digest checks are not
//! done here (see `verify`).

use prost::Message;

use crate::eval::model;
use crate::ruleset::compile::{self, CompileError};
use crate::ruleset::proto;

/// A stored object that is not a valid encoding of its message.
#[derive(Debug, thiserror::Error)]
#[error("{what} is not a valid protobuf message (truncated or corrupt)")]
pub struct DecodeError {
    /// Which object (`ruleset`, `manifest`, `manifest body`).
    pub what: &'static str,
    /// The protobuf decoder's error.
    #[source]
    pub source: prost::DecodeError,
}

/// Stored ruleset bytes that cannot be turned into an evaluable model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes do not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The message decodes but is not a valid ruleset.
    #[error("ruleset is invalid: {0}")]
    Invalid(#[from] CompileError),
}

/// Encodes a ruleset message.
pub fn encode_ruleset(rs: &proto::Ruleset) -> Vec<u8> {
    rs.encode_to_vec()
}

/// Decodes a ruleset message (no validation).
pub fn decode_ruleset(bytes: &[u8]) -> Result<proto::Ruleset, DecodeError> {
    proto::Ruleset::decode(bytes).map_err(|source| DecodeError {
        what: "ruleset",
        source,
    })
}

/// Decodes and compiles stored ruleset bytes into the evaluable model.
pub fn load_ruleset(bytes: &[u8]) -> Result<(proto::Ruleset, model::Ruleset), LoadError> {
    let pb = decode_ruleset(bytes)?;
    let model = compile::compile(&pb)?;
    Ok((pb, model))
}

/// A ruleset as readable JSON (`flagbelt inspect`, `GET /v1/ruleset` as
/// JSON): the proto's fields, with each variant's `value_json` text replaced
/// by the JSON value it holds.
pub fn ruleset_to_json(rs: &proto::Ruleset) -> Result<serde_json::Value, serde_json::Error> {
    use serde_json::Value;
    let mut out = serde_json::to_value(rs)?;
    if let Some(flags) = out.get_mut("flags").and_then(Value::as_array_mut) {
        for variant in flags
            .iter_mut()
            .filter_map(|f| f.get_mut("variants").and_then(Value::as_array_mut))
            .flatten()
        {
            if let Value::Object(v) = variant
                && let Some(Value::String(text)) = v.remove("value_json")
            {
                let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                v.insert("value".into(), value);
            }
        }
    }
    Ok(out)
}

/// Why a stored object cannot be shown as JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonViewError {
    /// The bytes do not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The decoded message does not serialise (a bug, not bad input).
    #[error("cannot render the decoded object as JSON")]
    Json(#[source] serde_json::Error),
}

/// Stored ruleset bytes as readable JSON ([`ruleset_to_json`]): what
/// `GET /v1/ruleset` serves as JSON and `flagbelt inspect` prints, without
/// the proto type leaving `ruleset/`.
pub fn ruleset_json(bytes: &[u8]) -> Result<serde_json::Value, JsonViewError> {
    ruleset_to_json(&decode_ruleset(bytes)?).map_err(JsonViewError::Json)
}

/// Stored manifest bytes as readable JSON: `{"kind": "manifest", "body": {...},
/// "signatures": [{"key_id", "signature" (hex)}]}`. Decoded only: nothing is
/// verified.
pub fn manifest_json(bytes: &[u8]) -> Result<serde_json::Value, JsonViewError> {
    let (signed, body) = decode_manifest(bytes)?;
    let signatures: Vec<serde_json::Value> = signed
        .signatures
        .iter()
        .map(|s| {
            serde_json::json!({
                "key_id": s.key_id,
                "signature": crate::ruleset::hex::encode(&s.signature),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "kind": "manifest",
        "body": serde_json::to_value(&body).map_err(JsonViewError::Json)?,
        "signatures": signatures,
    }))
}

/// The environment and version stored ruleset bytes say they are (decoded,
/// not compiled): what a publisher checks an older ruleset object against
/// its file name.
pub fn ruleset_identity(bytes: &[u8]) -> Result<(String, u64), DecodeError> {
    let pb = decode_ruleset(bytes)?;
    Ok((pb.environment, pb.version))
}

/// The two objects a ruleset is stored as, ready to write: the ruleset (first)
/// and its manifest (last), with their paths relative to the environment folder.
#[derive(Debug, Clone)]
pub struct StoredObjects {
    /// `rulesets/<version>.pb`.
    pub ruleset_path: String,
    /// The encoded ruleset.
    pub ruleset: Vec<u8>,
    /// The encoded signed manifest describing it.
    pub manifest: Vec<u8>,
}

/// Encodes `rs` and builds its manifest, signed by `signers`: what `flagbelt
/// compile` writes and a publisher uploads.
pub fn stored_objects(
    rs: &proto::Ruleset,
    published_at_ms: i64,
    rollback: bool,
    signers: &[ed25519_dalek::SigningKey],
) -> StoredObjects {
    let ruleset = encode_ruleset(rs);
    let signed = crate::ruleset::manifest::build(
        &rs.environment,
        rs.version,
        &ruleset,
        published_at_ms,
        rollback,
        signers,
    );
    StoredObjects {
        ruleset_path: crate::ruleset::layout::ruleset_path(rs.version),
        ruleset,
        manifest: encode_manifest(&signed),
    }
}

/// Encodes a signed manifest.
pub fn encode_manifest(m: &proto::SignedManifest) -> Vec<u8> {
    m.encode_to_vec()
}

/// Decodes a signed manifest and its body (no signature check).
pub fn decode_manifest(
    bytes: &[u8],
) -> Result<(proto::SignedManifest, proto::ManifestBody), DecodeError> {
    let signed = proto::SignedManifest::decode(bytes).map_err(|source| DecodeError {
        what: "manifest",
        source,
    })?;
    let body =
        proto::ManifestBody::decode(signed.body.as_slice()).map_err(|source| DecodeError {
            what: "manifest body",
            source,
        })?;
    Ok((signed, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_ruleset_is_an_error_naming_the_object() {
        let rs = proto::Ruleset {
            format: 1,
            environment: "prod".into(),
            version: 7,
            ..Default::default()
        };
        let bytes = encode_ruleset(&rs);
        assert_eq!(decode_ruleset(&bytes).unwrap(), rs);
        let err = decode_ruleset(&bytes[..bytes.len() - 1]).unwrap_err();
        assert_eq!(err.what, "ruleset");
        assert!(decode_manifest(&[0xff, 0xff, 0xff]).is_err());
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic any decoder; at worst they are an error.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = load_ruleset(&bytes);
            let _ = decode_manifest(&bytes);
        }

        /// Flipping bytes of a valid ruleset gives a valid ruleset or an error,
        /// never a panic (decode and compile both run).
        #[test]
        fn corrupted_rulesets_never_panic(flips in proptest::collection::vec((0usize..4096, 1u8..=255), 1..8)) {
            let mut bytes = sample_bytes();
            for (at, mask) in flips {
                let len = bytes.len();
                bytes[at % len] ^= mask;
            }
            let _ = load_ruleset(&bytes);
        }
    }

    fn sample_bytes() -> Vec<u8> {
        let yaml = include_str!("../../examples/demo.yaml");
        let (pb, _) = crate::ruleset::authoring::compile_yaml(yaml, 0).unwrap();
        encode_ruleset(&pb)
    }
}
