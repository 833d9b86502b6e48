//! Rollout hashing: MurmurHash3 x86_32 and weighted bucketing.
//!
//! Owns the exact split function of DESIGN.md ("Rollout"): which bytes are hashed
//! (`"<salt>:<value>"`, the value being a string or an integer's decimal digits),
//! the hash, and how the hash picks a variant from cumulative weights. Every SDK
//! and every instance must agree with it bit for bit, so it must not change
//! without a new format version. It must not allocate, hash floats or any other
//! JSON type, choose fallbacks (`evaluate` serves the default), or panic.

use serde_json::Value;

use super::context::{Context, lookup};
use super::model::{Rollout, VariantIdx};

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// MurmurHash3 x86_32 of the concatenation of `parts`, without allocating.
///
/// The parts are streamed: a 4-byte block may straddle two parts, and the result
/// equals the hash of the concatenated bytes (the length mixed in is the total
/// length modulo 2^32, as in the reference implementation).
///
/// ```
/// use flagbelt::eval::murmur3_x86_32;
///
/// // Unleash's published vector: "gr1:123" lands in bucket 73 of 1..=100.
/// assert_eq!(murmur3_x86_32(&[b"gr1:", b"123"], 0) % 100 + 1, 73);
/// assert_eq!(murmur3_x86_32(&[b"gr1:123"], 0), murmur3_x86_32(&[b"gr", b"1:12", b"3"], 0));
/// ```
pub fn murmur3_x86_32(parts: &[&[u8]], seed: u32) -> u32 {
    let mut h = seed;
    let mut total_len: u32 = 0;
    // Bytes of an unfinished block, little-endian, and how many there are (0..4).
    let mut carry: u32 = 0;
    let mut carried: u32 = 0;

    for part in parts {
        // Truncation is the reference behaviour: the length is mixed in as u32.
        total_len = total_len.wrapping_add(part.len() as u32);
        let mut rest: &[u8] = part;

        // Complete a block left over from earlier parts, byte by byte.
        while carried > 0 {
            let Some((&byte, tail)) = rest.split_first() else {
                break;
            };
            carry |= u32::from(byte) << (8 * carried);
            carried += 1;
            rest = tail;
            if carried == 4 {
                h = mix_block(h, carry);
                carry = 0;
                carried = 0;
            }
        }

        let (blocks, tail) = rest.as_chunks::<4>();
        for block in blocks {
            h = mix_block(h, u32::from_le_bytes(*block));
        }
        for &byte in tail {
            carry |= u32::from(byte) << (8 * carried);
            carried += 1;
        }
    }

    if carried > 0 {
        h ^= mix_k(carry);
    }
    fmix32(h ^ total_len)
}

fn mix_k(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

fn mix_block(h: u32, k: u32) -> u32 {
    (h ^ mix_k(k))
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Decimal digits of an integer, written into a stack buffer.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    /// `i64::MIN` is `-` plus 19 digits and `u64::MAX` is 20 digits: both fit.
    fn new(negative: bool, mut magnitude: u64) -> Self {
        let mut d = Self {
            buf: [0; 20],
            start: 20,
        };
        loop {
            d.push(b'0' + (magnitude % 10) as u8);
            magnitude /= 10;
            if magnitude == 0 {
                break;
            }
        }
        if negative {
            d.push(b'-');
        }
        d
    }

    fn push(&mut self, byte: u8) {
        if let Some(i) = self.start.checked_sub(1)
            && let Some(slot) = self.buf.get_mut(i)
        {
            *slot = byte;
            self.start = i;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }
}

/// The variant a rollout serves for `ctx`, or `None` when the `by` attribute is
/// missing or neither a string nor a JSON integer (or the weights total 0, which
/// compile rules out).
///
/// `h = murmur3_x86_32("<salt>:<value>", 0)`, `point = (h * T) >> 32` with `T` the
/// total weight, and the variant is the first whose cumulative weight exceeds the
/// point. An integer is hashed as its decimal digits (`-12`), a string as its UTF-8
/// bytes exactly as sent.
pub(crate) fn bucket(rollout: &Rollout, ctx: &Context) -> Option<VariantIdx> {
    let digits;
    let value: &[u8] = match lookup(ctx, &rollout.by)? {
        Value::String(s) => s.as_bytes(),
        Value::Number(n) => {
            digits = if let Some(i) = n.as_i64() {
                Digits::new(i < 0, i.unsigned_abs())
            } else {
                // Not an i64 and not a u64 means a float: never hashed.
                Digits::new(false, n.as_u64()?)
            };
            digits.as_bytes()
        }
        _ => return None,
    };
    let h = murmur3_x86_32(&[&rollout.salt_prefix, value], 0);
    pick(&rollout.buckets, h)
}

/// Maps a hash to a bucket. u128 keeps this exact even if a model broke the
/// `T <= 2^32` invariant.
fn pick(buckets: &[(VariantIdx, u64)], h: u32) -> Option<VariantIdx> {
    let &(_, total) = buckets.last()?;
    let point = (u128::from(h) * u128::from(total)) >> 32;
    buckets
        .iter()
        .find(|&&(_, cumulative)| u128::from(cumulative) > point)
        .map(|&(variant, _)| variant)
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)] // tests may panic and index
mod tests {
    use std::io::Cursor;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::eval::model::Attr;

    fn reference(bytes: &[u8], seed: u32) -> u32 {
        murmur3::murmur3_32(&mut Cursor::new(bytes), seed).unwrap()
    }

    fn rollout(salt: &str, weights: &[u64]) -> Rollout {
        let mut cumulative = 0;
        Rollout {
            by: Attr::new("targetingKey"),
            salt_prefix: format!("{salt}:").into_bytes(),
            buckets: weights
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    cumulative += w;
                    (i, cumulative)
                })
                .collect(),
        }
    }

    fn ctx(v: serde_json::Value) -> Context {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn known_vectors() {
        assert_eq!(murmur3_x86_32(&[b"gr1:123"], 0) % 100 + 1, 73);
        assert_eq!(murmur3_x86_32(&[b"groupX:999"], 0) % 100 + 1, 25);
        // Reference vectors of MurmurHash3_x86_32 (SMHasher).
        assert_eq!(murmur3_x86_32(&[], 0), 0);
        assert_eq!(murmur3_x86_32(&[], 1), 0x514e_28b7);
        assert_eq!(murmur3_x86_32(&[], 0xffff_ffff), 0x81f1_6f39);
        assert_eq!(murmur3_x86_32(&[b"\xff\xff\xff\xff"], 0), 0x7629_3b50);
        assert_eq!(murmur3_x86_32(&[b"!Ce\x87"], 0), 0xf55b_516b);
        assert_eq!(murmur3_x86_32(&[b"!Ce"], 0), 0x7e4a_8634);
        assert_eq!(murmur3_x86_32(&[b"!C"], 0), 0xa0f7_b07a);
        assert_eq!(murmur3_x86_32(&[b"!"], 0), 0x7266_1cf4);
        assert_eq!(murmur3_x86_32(&[b"Hello, world!"], 1234), 0xfaf6_cdb3);
        assert_eq!(
            murmur3_x86_32(
                &[b"The quick brown fox jumps over the lazy dog"],
                0x9747_b28c
            ),
            0x2fa8_26cd
        );
    }

    #[test]
    fn matches_the_murmur3_crate_at_every_split() {
        let data: Vec<u8> = (0u8..=40)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        for len in 0..=data.len() {
            let bytes = &data[..len];
            for seed in [0, 1, 0x9747_b28c, u32::MAX] {
                let want = reference(bytes, seed);
                assert_eq!(murmur3_x86_32(&[bytes], seed), want, "len {len}");
                for a in 0..=len {
                    for b in a..=len {
                        let parts: [&[u8]; 4] = [&bytes[..a], &[], &bytes[a..b], &bytes[b..]];
                        assert_eq!(murmur3_x86_32(&parts, seed), want, "len {len} at {a},{b}");
                    }
                }
            }
        }
    }

    #[test]
    fn integer_digits() {
        for (n, s) in [
            (json!(0), "0"),
            (json!(7), "7"),
            (json!(-7), "-7"),
            (json!(1234567890), "1234567890"),
            (json!(i64::MIN), "-9223372036854775808"),
            (json!(i64::MAX), "9223372036854775807"),
            (json!(u64::MAX), "18446744073709551615"),
        ] {
            let Value::Number(num) = &n else { panic!() };
            let d = match num.as_i64() {
                Some(i) => Digits::new(i < 0, i.unsigned_abs()),
                None => Digits::new(false, num.as_u64().unwrap()),
            };
            assert_eq!(d.as_bytes(), s.as_bytes());
        }
    }

    #[test]
    fn hashes_salt_colon_value() {
        let r = rollout("nc-1", &[25, 75]);
        for key in ["u1", "user-42", "", "ünïcode"] {
            let h = reference(format!("nc-1:{key}").as_bytes(), 0);
            let want = if (u64::from(h) * 100) >> 32 < 25 {
                0
            } else {
                1
            };
            assert_eq!(
                bucket(&r, &ctx(json!({"targetingKey": key}))),
                Some(want),
                "{key}"
            );
        }
        // Integers hash as their decimal digits, identical to the string form.
        for (int, text) in [
            (json!(123), "123"),
            (json!(-5), "-5"),
            (json!(u64::MAX), "18446744073709551615"),
        ] {
            let wide = rollout("s", &[1; 1000]);
            assert_eq!(
                bucket(&wide, &ctx(json!({"targetingKey": int}))),
                bucket(&wide, &ctx(json!({"targetingKey": text}))),
                "{int}"
            );
        }
    }

    #[test]
    fn unusable_by_values_give_none() {
        let r = rollout("s", &[1, 1]);
        for c in [
            json!({}),
            json!({"targetingKey": null}),
            json!({"targetingKey": 1.5}),
            json!({"targetingKey": 1.0}), // a float, even if integral
            json!({"targetingKey": true}),
            json!({"targetingKey": ["a"]}),
            json!({"targetingKey": {"a": 1}}),
            json!({"other": "a"}),
        ] {
            assert_eq!(bucket(&r, &ctx(c.clone())), None, "{c}");
        }
        // Nested `by` names go through lookup.
        let mut nested = rollout("s", &[0, 1]);
        nested.by = Attr::new("user.id");
        assert_eq!(bucket(&nested, &ctx(json!({"user": {"id": "x"}}))), Some(1));
        assert_eq!(bucket(&nested, &ctx(json!({"user.id": 3}))), Some(1));
        // Total 0 (compile rejects it) and no buckets serve nothing.
        assert_eq!(
            bucket(&rollout("s", &[0, 0]), &ctx(json!({"targetingKey": "a"}))),
            None
        );
        assert_eq!(
            bucket(&rollout("s", &[]), &ctx(json!({"targetingKey": "a"}))),
            None
        );
    }

    #[test]
    fn zero_weights_are_never_served() {
        let a_only = rollout("s", &[1, 0]);
        let b_only = rollout("s", &[0, 1]);
        let middle_only = rollout("s", &[0, 5, 0]);
        for i in 0..2000 {
            let c = ctx(json!({"targetingKey": format!("k{i}")}));
            assert_eq!(bucket(&a_only, &c), Some(0));
            assert_eq!(bucket(&b_only, &c), Some(1));
            assert_eq!(bucket(&middle_only, &c), Some(1));
        }
    }

    #[test]
    fn point_exactly_at_a_boundary_goes_to_the_next_variant() {
        // With T = 2^32 the point is the hash itself.
        let key = "boundary-key";
        let h = u64::from(reference(format!("s:{key}").as_bytes(), 0));
        let c = ctx(json!({"targetingKey": key}));
        let t = 1u64 << 32;
        // Cumulative weight == point: not exceeded, so the next variant.
        assert_eq!(bucket(&rollout("s", &[h, t - h]), &c), Some(1));
        // One more and it is exceeded.
        assert_eq!(bucket(&rollout("s", &[h + 1, t - h - 1]), &c), Some(0));
        assert_eq!(pick(&[(0, 10), (1, 20)], 0), Some(0));
        assert_eq!(pick(&[(0, 10), (1, 20)], u32::MAX), Some(1));
        // (2^31 * 20) >> 32 = 10: exactly at the first boundary.
        assert_eq!(pick(&[(0, 10), (1, 20)], 1 << 31), Some(1));
        assert_eq!(pick(&[(0, 10), (1, 20)], (1 << 31) - 1), Some(0));
        assert_eq!(pick(&[(7, 1)], u32::MAX), Some(7));
        assert_eq!(pick(&[(0, u64::MAX)], u32::MAX), Some(0)); // no overflow
    }

    #[test]
    fn split_ratio_is_close_to_the_weights() {
        let r = rollout("nc-1", &[25, 75]);
        let mut counts = [0usize; 2];
        for i in 0..10_000 {
            let c = ctx(json!({"targetingKey": format!("user-{i}")}));
            counts[bucket(&r, &c).unwrap()] += 1;
        }
        assert!((2300..=2700).contains(&counts[0]), "{counts:?}");
        assert_eq!(counts[0] + counts[1], 10_000);
    }

    proptest! {
        #[test]
        fn streaming_equals_the_crate(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                      cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
                                      seed in any::<u32>()) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut parts: Vec<&[u8]> = Vec::new();
            let mut prev = 0;
            for p in points {
                parts.push(&bytes[prev..p]);
                prev = p;
            }
            parts.push(&bytes[prev..]);
            prop_assert_eq!(murmur3_x86_32(&parts, seed), reference(&bytes, seed));
        }

        #[test]
        fn bucketing_is_stable_and_total(key in "\\PC{0,24}",
                                         weights in proptest::collection::vec(0u64..1000, 1..8),
                                         extra in 1u64..1000) {
            let mut weights = weights;
            // Ensure T >= 1.
            if let Some(last) = weights.last_mut() { *last += extra; }
            let r = rollout("salt", &weights);
            let c = ctx(json!({"targetingKey": key}));
            let first = bucket(&r, &c);
            prop_assert!(first.is_some());
            prop_assert_eq!(first, bucket(&r, &c));
            let v = first.unwrap();
            prop_assert!(weights[v] > 0, "zero-weight variant {} served", v);
        }

        #[test]
        fn integer_keys_are_stable(n in any::<i64>()) {
            let r = rollout("s", &[3, 3, 3]);
            let c = ctx(json!({"targetingKey": n}));
            prop_assert_eq!(bucket(&r, &c), bucket(&r, &ctx(json!({"targetingKey": n.to_string()}))));
        }
    }
}
