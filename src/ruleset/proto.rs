//! Generated wire types (`proto/flagbelt/v1/*.proto`) plus the serde helpers the
//! generated code names for readable JSON (`flagbelt inspect`, `GET /v1/ruleset`
//! as JSON). Proto types never leave `ruleset/`'s public API except as the
//! authoring output and the input to `compile`.

#![allow(missing_docs, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/flagbelt.v1.rs"));

/// Serialises bytes as lower-case hex.
pub(crate) fn hex_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::ruleset::hex::encode(bytes))
}

/// Serialises a `KeyKind` number by its authoring name.
pub(crate) fn key_kind_name<S: serde::Serializer>(kind: &i32, s: S) -> Result<S::Ok, S::Error> {
    match KeyKind::try_from(*kind) {
        Ok(KeyKind::Frontend) => s.serialize_str("frontend"),
        Ok(KeyKind::Backend) => s.serialize_str("backend"),
        _ => s.serialize_i32(*kind),
    }
}

/// Serialises an `Operator` number by its authoring name (`semver_gte`).
pub(crate) fn operator_name<S: serde::Serializer>(op: &i32, s: S) -> Result<S::Ok, S::Error> {
    match crate::ruleset::operator::Spec::from_wire(*op) {
        Some(spec) => s.serialize_str(spec.name),
        None => s.serialize_i32(*op),
    }
}
