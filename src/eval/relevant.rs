//! Which context attributes can change an answer, and a fingerprint of a
//! context over just those attributes.
//!
//! Owns the rule that makes caching effective: contexts that differ only in
//! attributes no visible flag reads get the same ETag and the same server-side
//! cache entry. "Visible" follows evaluation exactly: the audience's flags, the
//! segments they use (transitively), their rollouts' `by` attributes, and their
//! prerequisites evaluated from the full ruleset. Pure: no I/O, no clock; the
//! fingerprint is stable across processes and instances (SHA-256, not a
//! per-process hasher), so every instance behind a CDN computes the same ETag.

use std::collections::HashSet;

use sha2::{Digest as _, Sha256};

use super::context::{Context, lookup};
use super::evaluate::Audience;
use super::model::{Attr, Condition, FlagIdx, Ruleset, SegmentIdx, Serve};

/// The attributes `audience`'s evaluation can read, computed once per ruleset
/// (a walk of every visible rule) and kept with it.
pub fn relevant_attrs_cached(rs: &Ruleset, audience: Audience) -> &[Attr] {
    let cell = match audience {
        Audience::Client => &rs.relevant_client,
        Audience::All => &rs.relevant_all,
    };
    cell.get_or_init(|| relevant_attrs(rs, audience))
}

/// Every attribute that evaluating `audience`'s flags can read, each once, in
/// first-seen order.
///
/// ```
/// use flagbelt::eval::{Audience, relevant_attrs};
/// use flagbelt::ruleset::authoring;
///
/// let yaml = "environment: e\nversion: 1\nflags:\n  f:\n    client: true\n    variants: {a: 1, b: 2}\n    default: a\n    rules:\n      - when: [{attr: plan, op: eq, values: [pro]}]\n        serve: b\n";
/// let (_, rs) = authoring::compile_yaml(yaml, 0).unwrap();
/// let names: Vec<String> = relevant_attrs(&rs, Audience::Client).iter().map(|a| a.name.to_string()).collect();
/// assert_eq!(names, ["plan"]);
/// ```
pub fn relevant_attrs(rs: &Ruleset, audience: Audience) -> Vec<Attr> {
    let mut walk = Walk {
        rs,
        flags: HashSet::new(),
        segments: HashSet::new(),
        names: HashSet::new(),
        out: Vec::new(),
    };
    match audience {
        Audience::Client => {
            for &f in &rs.client_flags {
                walk.flag(f);
            }
        }
        Audience::All => {
            for f in 0..rs.flags.len() {
                walk.flag(f);
            }
        }
    }
    walk.out
}

/// A 128-bit fingerprint of `ctx` restricted to `attrs` (as looked up, so a
/// flat `"app.version"` and a nested `{"app": {"version"}}` holding the same
/// value fingerprint alike). Missing and `null` attributes count as absent.
pub fn context_fingerprint(attrs: &[Attr], ctx: &Context) -> u128 {
    // One buffer, hashed once: per attribute its name, then `\x01`, the JSON
    // text's length and the text (or `\x00` when absent), then the name's
    // length. Lengths make the encoding unambiguous without escaping.
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    for attr in attrs {
        buf.extend_from_slice(attr.name.as_bytes());
        match lookup(ctx, attr) {
            Some(value) => {
                buf.push(1);
                let at = buf.len();
                buf.extend_from_slice(&[0; 8]);
                // Writing JSON into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut buf, value);
                let len = (buf.len() - at - 8) as u64;
                if let Some(slot) = buf.get_mut(at..at + 8) {
                    slot.copy_from_slice(&len.to_le_bytes());
                }
            }
            None => buf.push(0),
        }
        buf.extend_from_slice(&(attr.name.len() as u64).to_le_bytes());
    }
    let digest: [u8; 32] = Sha256::digest(&buf).into();
    let first = digest.first_chunk::<16>().copied().unwrap_or_default();
    u128::from_be_bytes(first)
}

struct Walk<'r> {
    rs: &'r Ruleset,
    flags: HashSet<FlagIdx>,
    segments: HashSet<SegmentIdx>,
    names: HashSet<&'r str>,
    out: Vec<Attr>,
}

impl<'r> Walk<'r> {
    fn attr(&mut self, attr: &'r Attr) {
        if self.names.insert(&attr.name) {
            self.out.push(attr.clone());
        }
    }

    fn flag(&mut self, idx: FlagIdx) {
        if !self.flags.insert(idx) {
            return;
        }
        let Some(flag) = self.rs.flags.get(idx) else {
            return;
        };
        if !flag.enabled {
            // A disabled flag serves `off` whatever the context.
            return;
        }
        for p in &flag.prerequisites {
            self.flag(p.flag);
        }
        for rule in &flag.rules {
            self.conditions(&rule.conditions);
            if let Serve::Rollout(r) = &rule.serve {
                self.attr(&r.by);
            }
        }
    }

    fn conditions(&mut self, conditions: &'r [Condition]) {
        for c in conditions {
            match c {
                Condition::Attr(t) => self.attr(&t.attr),
                Condition::Segment { segment, .. } => self.segment(*segment),
            }
        }
    }

    fn segment(&mut self, idx: SegmentIdx) {
        if !self.segments.insert(idx) {
            return;
        }
        if let Some(seg) = self.rs.segments.get(idx) {
            for rule in &seg.rules {
                self.conditions(rule);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::eval::context_from_json;
    use crate::ruleset::authoring;

    const YAML: &str = r#"
environment: e
version: 1
segments:
  staff:
    - [{attr: email, op: ends_with, values: ["@x.com"]}]
flags:
  base:
    variants: {on: true, off: false}
    default: on
    rules:
      - when: [{attr: region, op: eq, values: [eu]}]
        serve: off
  gated:
    client: true
    variants: {on: true, off: false}
    default: off
    requires: [{flag: base, variant: on}]
    rules:
      - when: [{segment: staff}]
        serve: {rollout: {weights: {on: 1, off: 1}}}
      - when: [{attr: app.version, op: semver_gte, values: ["2.0.0"]}]
        serve: on
  server-only:
    variants: {a: 1}
    default: a
    rules:
      - when: [{attr: secret_attr, op: exists}]
        serve: a
  disabled:
    client: true
    enabled: false
    variants: {a: 1}
    default: a
    rules:
      - when: [{attr: never_read, op: exists}]
        serve: a
"#;

    fn names(attrs: &[Attr]) -> Vec<String> {
        attrs.iter().map(|a| a.name.to_string()).collect()
    }

    #[test]
    fn visible_flags_segments_rollouts_and_prerequisites_count() {
        let (_, rs) = authoring::compile_yaml(YAML, 0).unwrap();
        assert_eq!(
            names(&relevant_attrs(&rs, Audience::Client)),
            ["region", "email", "targetingKey", "app.version"]
        );
        assert_eq!(
            names(&relevant_attrs(&rs, Audience::All)),
            [
                "region",
                "email",
                "targetingKey",
                "app.version",
                "secret_attr"
            ]
        );
    }

    #[test]
    fn fingerprints_ignore_irrelevant_attributes_only() {
        let (_, rs) = authoring::compile_yaml(YAML, 0).unwrap();
        let attrs = relevant_attrs(&rs, Audience::Client);
        let fp = |json: &str| context_fingerprint(&attrs, &context_from_json(json).unwrap());
        let base = fp(r#"{"targetingKey":"u1","email":"a@x.com","noise":1}"#);
        assert_eq!(
            base,
            fp(r#"{"noise":2,"targetingKey":"u1","email":"a@x.com"}"#)
        );
        assert_eq!(
            base,
            fp(r#"{"targetingKey":"u1","email":"a@x.com","secret_attr":true}"#)
        );
        assert_ne!(base, fp(r#"{"targetingKey":"u2","email":"a@x.com"}"#));
        assert_ne!(base, fp(r#"{"targetingKey":"u1","email":"a@y.com"}"#));
        // Nested and flat spellings of one attribute are the same input.
        assert_eq!(
            fp(r#"{"app":{"version":"2.1.0"}}"#),
            fp(r#"{"app.version":"2.1.0"}"#)
        );
        // Absent, null and a string "null" are told apart correctly.
        assert_eq!(fp(r#"{}"#), fp(r#"{"region":null}"#));
        assert_ne!(fp(r#"{}"#), fp(r#"{"region":"null"}"#));
        // Types matter: 1 and "1" may evaluate differently.
        assert_ne!(fp(r#"{"region":1}"#), fp(r#"{"region":"1"}"#));
    }

    #[test]
    fn the_fingerprint_encoding_is_pinned() {
        // ETags carry it, and instances of two releases behind one CDN must
        // agree: SHA-256 over `country \x01 len "NZ" len(country)` then
        // `plan \x00 len(plan)` (lengths u64 little-endian), first 16 bytes;
        // computed independently with Python's hashlib.
        let attrs = [Attr::new("country"), Attr::new("plan")];
        let ctx = context_from_json(r#"{"country":"NZ","other":1}"#).unwrap();
        assert_eq!(
            format!("{:032x}", context_fingerprint(&attrs, &ctx)),
            "66302c8503a38430c1d1a0ad5e789813"
        );
    }
}
