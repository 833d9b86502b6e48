//! The ruleset format: authoring YAML, the protobuf wire form, compilation into
//! the evaluable model, the stored layout ([`layout`]), manifests, signatures,
//! API keys and verification.
//!
//! Everything here is pure (no I/O, no clock: times are passed in). The one path
//! from any input to an evaluable model is `compile`: YAML is first turned into
//! the proto message ([`authoring`]), stored bytes are decoded into it
//! ([`codec`]), and both go through [`compile::compile`], so a stored ruleset is
//! validated exactly like a freshly authored one. Proto types stop here: the rest
//! of the crate sees [`crate::eval::model`] types, bytes and errors.

pub mod authoring;
pub mod codec;
pub mod compile;
pub mod hex;
pub mod keys;
pub mod layout;
pub mod manifest;
pub mod operator;
pub mod proto;
pub mod verify;

/// Current `format` of both `Ruleset` and `ManifestBody`.
pub const FORMAT: u32 = 1;

/// Checks an environment name: `[A-Za-z0-9_-]{1,64}`.
pub fn valid_env_name(name: &str) -> bool {
    valid_name(name, 64, false)
}

/// Checks a key id: `[A-Za-z0-9_-]{1,32}`.
pub fn valid_key_id(id: &str) -> bool {
    valid_name(id, 32, false)
}

/// Checks a flag key: `[A-Za-z0-9._-]{1,128}`.
pub fn valid_flag_key(key: &str) -> bool {
    valid_name(key, 128, true)
}

fn valid_name(s: &str, max: usize, dots: bool) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (dots && b == b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_env_name("prod_eu-1"));
        assert!(!valid_env_name("prod.eu"));
        assert!(!valid_env_name(""));
        assert!(!valid_env_name(&"a".repeat(65)));
        assert!(valid_flag_key("checkout.v2-new_x"));
        assert!(!valid_flag_key("a b"));
        assert!(!valid_flag_key("a/b"));
        assert!(valid_key_id(&"k".repeat(32)));
        assert!(!valid_key_id(&"k".repeat(33)));
    }
}
