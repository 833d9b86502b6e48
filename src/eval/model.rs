//! The evaluable model: a ruleset after compilation.
//!
//! Owns the in-memory shape that [`super::evaluate_all`] walks: names are resolved to
//! indices, regexes compiled, semvers and timestamps parsed, rollout salts
//! prepared. It is built only by `ruleset::compile` (from YAML or from the proto),
//! which guarantees the invariants documented on each type; nothing here does I/O
//! or validation of its own. A [`Ruleset`] is immutable once built and is shared
//! across threads behind an `Arc`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use regex::Regex;
use serde_json::value::RawValue;

/// Index of a flag in [`Ruleset::flags`].
pub type FlagIdx = usize;
/// Index of a segment in [`Ruleset::segments`].
pub type SegmentIdx = usize;
/// Index of a variant in [`Flag::variants`].
pub type VariantIdx = usize;

/// One environment's compiled ruleset.
///
/// Its fields are crate-private: `ruleset::compile` is the one producer (it
/// guarantees that every index is in range and that segments and
/// prerequisites are acyclic), through [`Ruleset::new`], and everyone else
/// reads it through the accessors.
#[derive(Debug)]
pub struct Ruleset {
    pub(crate) environment: String,
    pub(crate) version: u64,
    /// API keys by key id.
    pub(crate) keys: HashMap<String, ApiKey>,
    /// Segments; conditions refer to them by index.
    pub(crate) segments: Vec<Segment>,
    /// Flags in authoring order.
    pub(crate) flags: Vec<Flag>,
    /// Flag key to index in `flags`.
    pub(crate) flag_index: HashMap<Arc<str>, FlagIdx>,
    /// Indices of the flags a public key sees, in authoring order.
    pub(crate) client_flags: Vec<FlagIdx>,
    /// Attributes client-visible evaluation can read (computed on first use;
    /// see [`crate::eval::relevant_attrs`]).
    pub(crate) relevant_client: OnceLock<Vec<Attr>>,
    /// Attributes evaluating every flag can read (computed on first use).
    pub(crate) relevant_all: OnceLock<Vec<Attr>>,
}

impl Ruleset {
    /// A ruleset of `flags` (in authoring order) and `segments`, with the
    /// indexes derived from them. The caller guarantees the invariants on
    /// each type (indices in range, no cycles): `ruleset::compile` is the
    /// producer; evaluating a model that breaks them gives wrong answers,
    /// never a panic.
    ///
    /// ```
    /// use flagbelt::eval::Ruleset;
    ///
    /// let rs = Ruleset::new("production".into(), 42, Default::default(), vec![], vec![]);
    /// assert_eq!((rs.environment(), rs.version(), rs.flags().len()), ("production", 42, 0));
    /// ```
    pub fn new(
        environment: String,
        version: u64,
        keys: HashMap<String, ApiKey>,
        segments: Vec<Segment>,
        flags: Vec<Flag>,
    ) -> Self {
        let client_flags = flags
            .iter()
            .enumerate()
            .filter(|(_, f)| crate::eval::Audience::Client.sees(f))
            .map(|(i, _)| i)
            .collect();
        let flag_index = flags
            .iter()
            .enumerate()
            .map(|(i, f)| (Arc::clone(&f.key), i))
            .collect();
        Self {
            environment,
            version,
            keys,
            segments,
            flags,
            flag_index,
            client_flags,
            relevant_client: OnceLock::new(),
            relevant_all: OnceLock::new(),
        }
    }

    /// The environment this ruleset is for.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The version the publisher gave this ruleset (authored, or the compile
    /// time in epoch milliseconds); `ruleset::verify::check_version` decides
    /// whether one replaces another.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The API key with this id, if the ruleset holds one.
    pub fn key(&self, id: &str) -> Option<&ApiKey> {
        self.keys.get(id)
    }

    /// Every API key, in no particular order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &ApiKey> {
        self.keys.values()
    }

    /// Segments, indexed by [`SegmentIdx`].
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Flags in authoring order, indexed by [`FlagIdx`].
    pub fn flags(&self) -> &[Flag] {
        &self.flags
    }

    /// The index of the flag with this key, if any.
    pub fn flag_idx(&self, key: &str) -> Option<FlagIdx> {
        self.flag_index.get(key).copied()
    }

    /// The flag with this key, if any.
    pub fn flag(&self, key: &str) -> Option<&Flag> {
        self.flag_index.get(key).and_then(|&i| self.flags.get(i))
    }

    /// Indices of the flags a public key sees, in authoring order.
    pub fn client_flags(&self) -> &[FlagIdx] {
        &self.client_flags
    }
}

/// Who a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// Public key (`fbp.`): client-visible flags only.
    Frontend,
    /// Server key (`fbs.`): every flag, may download the ruleset.
    Backend,
}

/// A stored API key. Holds only the hash of the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Key id (`[A-Za-z0-9_-]{1,32}`).
    pub id: String,
    /// What the key may see and do; a presented key matches only if its
    /// prefix (`fbp.`/`fbs.`) names the same kind.
    pub kind: KeyKind,
    /// SHA-256 of the secret's base64url text.
    pub secret_sha256: [u8; 32],
    /// Allowed CORS origins (frontend keys); `*` allows any.
    pub allowed_origins: Vec<String>,
}

/// A named segment: a member matches any of `rules`.
#[derive(Debug)]
pub struct Segment {
    /// The name under `segments:` in the YAML. Conditions refer to a segment
    /// by index ([`SegmentIdx`]), so evaluation never reads it; it names the
    /// segment for whoever inspects the model.
    pub name: String,
    /// Alternatives; each is an AND of conditions.
    pub rules: Vec<Vec<Condition>>,
}

/// A feature flag: its variants and what decides which one a context gets.
#[derive(Debug)]
pub struct Flag {
    /// Flag key (`[A-Za-z0-9._-]{1,128}`); the ruleset's index by key, which
    /// [`Ruleset::flag_idx`] reads, shares this `Arc`.
    pub key: Arc<str>,
    /// Visible to frontend keys.
    pub client: bool,
    /// False = always serve `off` with reason `DISABLED`.
    pub enabled: bool,
    /// Variants in authoring order (at least one).
    pub variants: Vec<Variant>,
    /// Served when no rule matches or a prerequisite is unmet.
    pub default: VariantIdx,
    /// Served, with reason `DISABLED`, when `enabled` is false: the authored
    /// `off`, or `default` when none was given.
    pub off: VariantIdx,
    /// Prerequisites, all of which must be met.
    pub prerequisites: Vec<Prerequisite>,
    /// Targeting rules; the first whose conditions all hold wins.
    pub rules: Vec<Rule>,
}

/// A named variant value.
#[derive(Debug)]
pub struct Variant {
    /// Variant name (one shared `Arc` per distinct name in a ruleset).
    pub name: Arc<str>,
    /// Its value as compact JSON text. Evaluation never looks inside a value,
    /// it only serves it; raw text is served as is and is much smaller than
    /// a parsed `Value`, which matters with thousands of environments loaded
    /// (README "Benchmarks", what moved memory).
    pub value: Box<RawValue>,
}

/// `requires: {flag, variant}`: met when `flag`, evaluated for the same
/// context, serves `variant` (whatever its reason).
#[derive(Debug, Clone, Copy)]
pub struct Prerequisite {
    /// Index into [`Ruleset::flags`] of the flag evaluated first; in range,
    /// and the prerequisite graph acyclic, by construction.
    pub flag: FlagIdx,
    /// Index into that flag's `variants` (not the dependent flag's) of the
    /// variant it must serve.
    pub variant: VariantIdx,
}

/// A targeting rule.
#[derive(Debug)]
pub struct Rule {
    /// ANDed conditions; empty matches everyone.
    pub conditions: Vec<Condition>,
    /// What a match serves.
    pub serve: Serve,
}

/// What a rule serves.
#[derive(Debug)]
pub enum Serve {
    /// Always this variant (index into the flag's `variants`), reason
    /// `TARGETING_MATCH`.
    Variant(VariantIdx),
    /// A variant chosen by hashing an attribute, reason `SPLIT`. Boxed so that
    /// the common fixed-variant rule stays small.
    Rollout(Box<Rollout>),
}

/// A weighted split, hashed with murmur3 x86_32 (seed 0) over `"<salt>:<value>"`.
#[derive(Debug)]
pub struct Rollout {
    /// The attribute hashed (`targetingKey` unless authored otherwise).
    pub by: Attr,
    /// `"<salt>:"` as bytes, ready to be hashed before the value.
    pub salt_prefix: Vec<u8>,
    /// `(variant, cumulative weight)` in authoring order; the last cumulative
    /// weight is the total `T`, with `1 <= T <= 2^32`.
    pub buckets: Vec<(VariantIdx, u64)>,
}

/// One condition of a rule or segment.
#[derive(Debug)]
pub enum Condition {
    /// An attribute test.
    Attr(AttrTest),
    /// Membership (`negate: false`) or non-membership of a segment.
    Segment {
        /// Index into [`Ruleset::segments`], in range by construction.
        segment: SegmentIdx,
        /// True for `not_segment`.
        negate: bool,
    },
}

/// An attribute name. Compilation shares one `Arc<str>` per distinct name
/// within a ruleset; the dotted walk splits the name at lookup time, which
/// allocates nothing and keeps the model small.
#[derive(Debug, Clone)]
pub struct Attr {
    /// The whole name, looked up first as one top-level key.
    pub name: Arc<str>,
    /// The name has a dot, so a nested walk is tried when the flat key is absent.
    pub nested: bool,
}

impl Attr {
    /// An attribute named `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            nested: name.contains('.'),
        }
    }
}

/// `attr` tested by `test`.
#[derive(Debug)]
pub struct AttrTest {
    /// The context attribute the test reads; when it is missing (or `null`)
    /// only `not_exists` holds.
    pub attr: Attr,
    /// The operator with its compiled operands.
    pub test: Test,
}

/// An operator with its operands, compiled for its type. Every list is non-empty.
#[derive(Debug)]
pub enum Test {
    /// `exists`.
    Exists,
    /// `not_exists`.
    NotExists,
    /// `eq`/`in` (`negate: false`) and `neq`/`not_in` (`negate: true`): typed equality.
    Equals {
        /// The operands with their authored JSON type; positive: the attribute
        /// equals one of them.
        values: Vec<Scalar>,
        /// True for `neq`/`not_in`: holds when the attribute equals none of
        /// them (so also when its type differs).
        negate: bool,
    },
    /// `contains`/`not_contains`, `starts_with`, `ends_with`.
    Text {
        /// Which string test.
        op: TextOp,
        /// The strings the attribute is tested against, byte for byte (no case
        /// folding or normalisation).
        values: Vec<Arc<str>>,
        /// Negated form (`not_contains`).
        negate: bool,
    },
    /// `matches`: unanchored regex search. Shared (`Arc`), so every use of one
    /// pattern shares one compiled automaton and one cache pool.
    Matches(Vec<Arc<Regex>>),
    /// `lt lte gt gte` on f64.
    Number {
        /// How the attribute must compare to an operand; compile never puts
        /// `Eq` here (numeric equality is the typed `eq`).
        cmp: Cmp,
        /// The numbers compared against; the test holds if any one does.
        values: Vec<f64>,
    },
    /// `semver_*` by SemVer precedence (build metadata ignored).
    Semver {
        /// Comparison (`Eq` included).
        cmp: Cmp,
        /// Versions read at compile time by [`crate::eval::parse_semver`], the
        /// same lenient reader the attribute goes through.
        values: Vec<semver::Version>,
    },
    /// `before` (`after: false`) and `after`: instants compared exactly.
    Time {
        /// True for `after`.
        after: bool,
        /// Operands as nanoseconds since the Unix epoch.
        values: Vec<i128>,
    },
}

/// String test kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    /// `contains`/`not_contains`: the operand occurs anywhere in the attribute.
    Contains,
    /// `starts_with`: the attribute begins with the operand.
    StartsWith,
    /// `ends_with`: the attribute ends with the operand.
    EndsWith,
}

/// How an attribute compares to an operand, attribute on the left
/// (`Lt`: attribute < operand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `==` (semver only).
    Eq,
    /// `<`.
    Lt,
    /// `<=`.
    Lte,
    /// `>`.
    Gt,
    /// `>=`.
    Gte,
}

/// A typed scalar operand for `eq`/`in` and their negations.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Equals only a JSON boolean of the same value.
    Bool(bool),
    /// Equals only a JSON string with the same bytes.
    Str(Arc<str>),
    /// A number (integers kept exact).
    Num(serde_json::Number),
}

// A compiled ruleset is shared across request threads behind an `Arc` and
// swapped whole; this fails to compile if a field ever stops being Send + Sync.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Ruleset>();
};
