//! API keys: each key's id, kind and secret hash checked, CORS origins allowed
//! on frontend keys only, ids unique (DESIGN.md, "Environments and API keys").
//!
//! It must not see secrets (only their SHA-256) nor check a presented key (that
//! is `ruleset::keys`).

use std::collections::HashMap;

use crate::eval::model;
use crate::ruleset::{hex, proto, valid_key_id};

use super::{CompileError, ErrorKind, Place, duplicate};

/// API key id -> the stored key, every key checked.
pub(super) fn compile_keys(
    keys: &[proto::ApiKey],
) -> Result<HashMap<String, model::ApiKey>, CompileError> {
    let mut out = HashMap::with_capacity(keys.len());
    for key in keys {
        let place = Place::key(&key.id);
        if !valid_key_id(&key.id) {
            return Err(CompileError::new(
                place.field("id"),
                ErrorKind::BadName {
                    what: "key id",
                    name: key.id.clone(),
                    pattern: "[A-Za-z0-9_-]{1,32}",
                },
            ));
        }
        let kind = match proto::KeyKind::try_from(key.kind) {
            Ok(proto::KeyKind::Frontend) => model::KeyKind::Frontend,
            Ok(proto::KeyKind::Backend) => model::KeyKind::Backend,
            _ => {
                return Err(CompileError::new(
                    place.field("kind"),
                    ErrorKind::BadKeyKind(key.kind.to_string()),
                ));
            }
        };
        let secret_sha256 = hex::decode_array::<32>(&key.secret_sha256).ok_or_else(|| {
            CompileError::new(
                place.clone().field("secret_sha256"),
                ErrorKind::BadSecretHash,
            )
        })?;
        for origin in &key.allowed_origins {
            if kind != model::KeyKind::Frontend || !valid_origin(origin) {
                return Err(CompileError::new(
                    place.field("allowed_origins"),
                    ErrorKind::BadOrigin(origin.clone()),
                ));
            }
        }
        let stored = model::ApiKey {
            id: key.id.clone(),
            kind,
            secret_sha256,
            allowed_origins: key.allowed_origins.clone(),
        };
        if out.insert(key.id.clone(), stored).is_some() {
            return Err(duplicate(Place::root().field("keys"), "key id", &key.id));
        }
    }
    Ok(out)
}

/// `*`, or `http(s)://host[:port]` with no path, as browsers send in `Origin`.
fn valid_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}
