//! Entity tags: how a validator is derived from what an answer depends on, and
//! how `If-None-Match` is matched against it.
//!
//! ETags are weak because compression runs after the handler (the same tag then
//! names the gzip, br and identity bodies), and they are derived from inputs
//! (environment, version, ruleset digest, key id, audience, the fingerprint of
//! the relevant context attributes), never from body bytes or the clock. The
//! first 128 bits of a tag also key the server-side answer cache
//! ([`super::answer_cache`]), so a validator and a cached body can never
//! disagree about what they name.
//!
//! Must not: write headers (that is [`super::caching`]), or hash a body.

use http::header::IF_NONE_MATCH;
use http::{HeaderMap, HeaderValue};
use sha2::{Digest as _, Sha256};

use crate::delivery::Snapshot;
use crate::eval::Audience;
use crate::ruleset::hex;

/// A weak entity tag, `W/"<32 hex>"`: the first 128 bits of a SHA-256 over
/// what the answer depends on; the same bits key the server-side
/// [`super::answer_cache::AnswerCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ETag {
    value: HeaderValue,
    id: u128,
}

impl ETag {
    fn from_digest(h: Sha256) -> Self {
        let digest: [u8; 32] = h.finalize().into();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        let text = format!("W/\"{}\"", hex::encode(&first));
        Self {
            // Hex inside quotes is always a valid header value.
            value: HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static("W/\"0\"")),
            id: u128::from_be_bytes(first),
        }
    }

    /// A tag with this text and id, for tests that need a known tag.
    #[cfg(test)]
    pub(crate) fn for_test(value: HeaderValue, id: u128) -> Self {
        Self { value, id }
    }

    /// The header value as sent.
    pub(crate) fn into_header_value(self) -> HeaderValue {
        self.value
    }

    /// The tag's first 128 bits: the answer cache's key for the body it names.
    pub(crate) fn id(&self) -> u128 {
        self.id
    }

    /// The tag's text as sent, e.g. `W/"ab12..."`.
    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        self.value.to_str().unwrap_or_default()
    }

    /// The opaque tag without `W/` and quotes.
    fn opaque(&self) -> &[u8] {
        let b = self.value.as_bytes();
        let b = b.strip_prefix(b"W/").unwrap_or(b);
        b.strip_prefix(b"\"")
            .and_then(|b| b.strip_suffix(b"\""))
            .unwrap_or(b)
    }
}

/// Which kind of evaluation answer a tag names: the same inputs give different
/// bodies on different routes, so each route gets its own tag space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerKind {
    /// `GET /v1/eval/...` and `POST /v1/eval` (the DESIGN answer shape).
    Eval,
    /// `POST /ofrep/v1/evaluate/flags` (OFREP bulk shape).
    OfrepBulk,
}

/// The ETag of an evaluation answer: environment, version and digest of the
/// ruleset, the key id, the audience and the fingerprint of the context
/// restricted to the attributes the audience's flags read.
pub(crate) fn answer_etag(
    kind: AnswerKind,
    snap: &Snapshot,
    key_id: &str,
    audience: Audience,
    fingerprint: u128,
) -> ETag {
    let mut h = Sha256::new();
    h.update(match kind {
        AnswerKind::Eval => b"eval\0".as_slice(),
        AnswerKind::OfrepBulk => b"ofrep-bulk\0".as_slice(),
    });
    h.update((snap.environment.len() as u64).to_le_bytes());
    h.update(snap.environment.as_bytes());
    h.update(snap.version.to_le_bytes());
    h.update(snap.sha256);
    h.update((key_id.len() as u64).to_le_bytes());
    h.update(key_id.as_bytes());
    h.update([match audience {
        Audience::Client => 1u8,
        Audience::All => 2u8,
    }]);
    h.update(fingerprint.to_le_bytes());
    ETag::from_digest(h)
}

/// The ETag of `GET /v1/ruleset` in one format: version and digest of the
/// stored bytes, plus the format (two representations of one URL).
pub(crate) fn ruleset_etag(snap: &Snapshot, format: &'static str) -> ETag {
    let mut h = Sha256::new();
    h.update(b"ruleset\0");
    h.update(format.as_bytes());
    h.update(b"\0");
    h.update(snap.environment.as_bytes());
    h.update(b"\0");
    h.update(snap.version.to_le_bytes());
    h.update(snap.sha256);
    ETag::from_digest(h)
}

/// True when `If-None-Match` matches `tag` by weak comparison: `*`, or any
/// entity tag in any of the header's lines whose opaque part equals ours,
/// `W/` or not.
pub(crate) fn if_none_match(req: &HeaderMap, tag: &ETag) -> bool {
    let ours = tag.opaque();
    req.get_all(IF_NONE_MATCH).iter().any(|line| {
        let mut rest = line.as_bytes();
        loop {
            rest = rest.trim_ascii_start();
            if let Some(r) = rest.strip_prefix(b",") {
                rest = r;
                continue;
            }
            if rest.is_empty() {
                return false;
            }
            if rest.first() == Some(&b'*') {
                return true;
            }
            let r = rest.strip_prefix(b"W/").unwrap_or(rest);
            let Some(r) = r.strip_prefix(b"\"") else {
                // Not an entity tag: skip to the next list element.
                match rest.iter().position(|&b| b == b',') {
                    Some(i) => {
                        rest = &rest[i + 1..];
                        continue;
                    }
                    None => return false,
                }
            };
            let Some(end) = r.iter().position(|&b| b == b'"') else {
                return false;
            };
            if &r[..end] == ours {
                return true;
            }
            rest = &r[end + 1..];
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(hex32: &str) -> ETag {
        ETag::for_test(HeaderValue::try_from(format!("W/\"{hex32}\"")).unwrap(), 0)
    }

    fn req(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn if_none_match_uses_weak_comparison_lists_and_star() {
        let t = tag("abc");
        assert_eq!(t.as_str(), "W/\"abc\"");
        assert!(if_none_match(&req(&["W/\"abc\""]), &t));
        assert!(if_none_match(&req(&["\"abc\""]), &t), "weak matches strong");
        assert!(if_none_match(&req(&["*"]), &t));
        assert!(if_none_match(&req(&["\"x\", W/\"abc\""]), &t));
        assert!(if_none_match(&req(&["\"x\",W/\"y\" ,  \"abc\""]), &t));
        assert!(
            if_none_match(&req(&["\"x\"", "\"abc\""]), &t),
            "several lines"
        );
        assert!(!if_none_match(&req(&["W/\"abcd\""]), &t));
        assert!(!if_none_match(&req(&["\"ab\""]), &t));
        assert!(!if_none_match(&req(&[]), &t));
        assert!(!if_none_match(&req(&["abc"]), &t), "unquoted is not a tag");
        assert!(!if_none_match(&req(&["\"abc"]), &t), "unterminated");
        assert!(if_none_match(&req(&["junk, \"abc\""]), &t));
    }
}
