//! Flags: variants (decoded, one JSON type per flag), `default` and `off`,
//! prerequisites resolved to flag and variant indices, and rules with what they
//! serve (a variant, or a rollout with bounded weights).
//!
//! It must not check cycles or costs across flags (that is `graph`), nor build
//! conditions (that is `conditions`).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::eval::model;
use crate::ruleset::proto;

use super::conditions::Names;
use super::intern::Interner;
use super::{CompileError, ErrorKind, Place, duplicate};

/// Largest total of rollout weights (`2^32`), so `point = (h * T) >> 32` fits u64.
pub const MAX_WEIGHT_TOTAL: u64 = 1 << 32;

/// Every flag, in order. Variant names of all flags are read first, so that a
/// prerequisite can name a variant of any flag.
pub(super) fn compile_flags(
    flags: &[proto::Flag],
    names: &Names<'_>,
    flag_index: &HashMap<&str, usize>,
) -> Result<Vec<model::Flag>, CompileError> {
    let mut variant_names = Vec::with_capacity(flags.len());
    let mut variant_values = Vec::with_capacity(flags.len());
    for flag in flags {
        let (n, v) = variant_map(flag, &names.strings)?;
        variant_names.push(n);
        variant_values.push(v);
    }
    let mut out = Vec::with_capacity(flags.len());
    for ((flag, own_names), values) in flags.iter().zip(&variant_names).zip(variant_values) {
        out.push(compile_flag(
            flag,
            own_names,
            values,
            names,
            flag_index,
            &variant_names,
        )?);
    }
    Ok(out)
}

/// The JSON type family of a variant value; all variants of a flag share one.
fn value_type(v: &Value) -> Option<&'static str> {
    match v {
        Value::Bool(_) => Some("a boolean"),
        Value::String(_) => Some("a string"),
        Value::Number(_) => Some("a number"),
        Value::Object(_) | Value::Array(_) => Some("JSON (object/array)"),
        Value::Null => None,
    }
}

/// Resolves a variant name of the flag being compiled; the place is built only
/// on error.
type VariantLookup<'a> = dyn Fn(&str, &dyn Fn() -> Place) -> Result<usize, CompileError> + 'a;

/// Variant name -> index, for one flag.
type VariantNames = HashMap<String, usize>;

/// Decodes and type-checks one flag's variants.
fn variant_map(
    flag: &proto::Flag,
    strings: &Interner,
) -> Result<(VariantNames, Vec<model::Variant>), CompileError> {
    let place = Place::flag(&flag.key);
    if flag.variants.is_empty() {
        return Err(CompileError::new(
            place.field("variants"),
            ErrorKind::NoVariants,
        ));
    }
    let mut names = HashMap::with_capacity(flag.variants.len());
    let mut values: Vec<model::Variant> = Vec::with_capacity(flag.variants.len());
    let mut first: Option<(&str, &'static str)> = None;
    for (i, v) in flag.variants.iter().enumerate() {
        let vplace = || place.clone().field(format!("variants.{}", v.name));
        if v.name.is_empty() || v.name.len() > 128 {
            return Err(CompileError::new(
                vplace(),
                ErrorKind::BadName {
                    what: "variant name",
                    name: v.name.clone(),
                    pattern: "1 to 128 bytes",
                },
            ));
        }
        if names.insert(v.name.clone(), i).is_some() {
            return Err(duplicate(
                place.clone().field("variants"),
                "variant",
                &v.name,
            ));
        }
        let value: Value = serde_json::from_str(&v.value_json)
            .map_err(|e| CompileError::new(vplace(), ErrorKind::BadValue(e.to_string())))?;
        let Some(ty) = value_type(&value) else {
            return Err(CompileError::new(
                vplace(),
                ErrorKind::BadValue("null is not a variant value".to_owned()),
            ));
        };
        match &first {
            None => first = Some((v.name.as_str(), ty)),
            Some((first_name, first_type)) if *first_type != ty => {
                return Err(CompileError::new(
                    place.clone().field("variants"),
                    ErrorKind::MixedVariantTypes {
                        first: (*first_name).to_owned(),
                        first_type,
                        other: v.name.clone(),
                        other_type: ty,
                    },
                ));
            }
            Some(_) => {}
        }
        // Re-serialised compact (authored key order kept): what answers serve.
        let value = serde_json::value::to_raw_value(&value)
            .map_err(|e| CompileError::new(vplace(), ErrorKind::BadValue(e.to_string())))?;
        values.push(model::Variant {
            name: strings.get(&v.name),
            value,
        });
    }
    Ok((names, values))
}

/// One flag, its variants already decoded by [`variant_map`].
fn compile_flag(
    flag: &proto::Flag,
    own_names: &VariantNames,
    variants: Vec<model::Variant>,
    names: &Names<'_>,
    flag_index: &HashMap<&str, usize>,
    all_variants: &[VariantNames],
) -> Result<model::Flag, CompileError> {
    let place = Place::flag(&flag.key);
    let variant = |name: &str, at: &dyn Fn() -> Place| {
        own_names
            .get(name)
            .copied()
            .ok_or_else(|| CompileError::new(at(), unknown_variant(name, Some(own_names))))
    };
    if flag.default_variant.is_empty() {
        return Err(CompileError::new(
            place.field("default"),
            ErrorKind::MissingField("default"),
        ));
    }
    let default = variant(&flag.default_variant, &|| place.clone().field("default"))?;
    let off = if flag.off_variant.is_empty() {
        default
    } else {
        variant(&flag.off_variant, &|| place.clone().field("off"))?
    };

    let prerequisites = prerequisites(flag, &place, flag_index, all_variants)?;

    let mut rules = Vec::with_capacity(flag.rules.len());
    for (r, rule) in flag.rules.iter().enumerate() {
        let rplace = place.clone().rule(r + 1);
        let conditions = names.conditions(&rplace, &rule.conditions)?;
        let serve = match &rule.serve {
            Some(proto::targeting_rule::Serve::Variant(name)) => {
                model::Serve::Variant(variant(name, &|| rplace.clone().field("serve"))?)
            }
            Some(proto::targeting_rule::Serve::Rollout(ro)) => model::Serve::Rollout(Box::new(
                rollout(&flag.key, &rplace, ro, &variant, &names.strings)?,
            )),
            None => {
                return Err(CompileError::new(
                    rplace.field("serve"),
                    ErrorKind::NothingToServe,
                ));
            }
        };
        rules.push(model::Rule { conditions, serve });
    }

    Ok(model::Flag {
        key: Arc::from(flag.key.as_str()),
        client: flag.client,
        enabled: !flag.disabled,
        variants,
        default,
        off,
        prerequisites,
        rules,
    })
}

/// `name` is not one of `names`: the error lists them in authoring order.
/// (`None`: the flag's names are not at hand, the list is left empty.)
fn unknown_variant(name: &str, names: Option<&VariantNames>) -> ErrorKind {
    let mut valid: Vec<(&String, usize)> =
        names.into_iter().flatten().map(|(n, &i)| (n, i)).collect();
    valid.sort_by_key(|&(_, i)| i);
    ErrorKind::UnknownVariant {
        name: name.to_owned(),
        of_flag: None,
        valid: valid.into_iter().map(|(n, _)| n.clone()).collect(),
    }
}

/// A flag's `requires`, each naming a flag and one of its variants.
fn prerequisites(
    flag: &proto::Flag,
    place: &Place,
    flag_index: &HashMap<&str, usize>,
    all_variants: &[VariantNames],
) -> Result<Vec<model::Prerequisite>, CompileError> {
    let mut out = Vec::with_capacity(flag.prerequisites.len());
    for p in &flag.prerequisites {
        let at = || place.clone().field("requires");
        let &pf = flag_index
            .get(p.flag.as_str())
            .ok_or_else(|| CompileError::new(at(), ErrorKind::UnknownFlag(p.flag.clone())))?;
        let pv = all_variants
            .get(pf)
            .and_then(|vs| vs.get(&p.variant))
            .copied()
            .ok_or_else(|| {
                let mut kind = unknown_variant(&p.variant, all_variants.get(pf));
                if let ErrorKind::UnknownVariant { of_flag, .. } = &mut kind {
                    *of_flag = Some(p.flag.clone());
                }
                CompileError::new(at(), kind)
            })?;
        out.push(model::Prerequisite {
            flag: pf,
            variant: pv,
        });
    }
    Ok(out)
}

/// A rule's `serve: {rollout: ...}`: weights in the order written, the `by`
/// attribute (`targetingKey` unless given) and the salt (the flag key unless given).
fn rollout(
    flag_key: &str,
    rplace: &Place,
    ro: &proto::Rollout,
    variant: &VariantLookup<'_>,
    strings: &Interner,
) -> Result<model::Rollout, CompileError> {
    let wplace = || rplace.clone().field("serve.rollout.weights");
    let bad = |msg: String| CompileError::new(wplace(), ErrorKind::BadWeights(msg));
    if ro.weights.is_empty() {
        return Err(bad("a rollout needs at least one weight".to_owned()));
    }
    let mut seen = HashMap::with_capacity(ro.weights.len());
    let mut total: u64 = 0;
    let mut buckets = Vec::with_capacity(ro.weights.len());
    for w in &ro.weights {
        let idx = variant(&w.variant, &wplace)?;
        if seen.insert(idx, ()).is_some() {
            return Err(bad(format!("variant {:?} is weighted twice", w.variant)));
        }
        total = total
            .checked_add(w.weight)
            .filter(|t| *t <= MAX_WEIGHT_TOTAL)
            .ok_or_else(|| {
                bad(format!(
                    "the total must be at most 2^32 ({MAX_WEIGHT_TOTAL})"
                ))
            })?;
        buckets.push((idx, total));
    }
    if total == 0 {
        return Err(bad("the total must be at least 1".to_owned()));
    }
    let by = if ro.by.is_empty() {
        "targetingKey"
    } else {
        ro.by.as_str()
    };
    let salt = ro.salt.as_deref().unwrap_or(flag_key);
    let mut salt_prefix = Vec::with_capacity(salt.len() + 1);
    salt_prefix.extend_from_slice(salt.as_bytes());
    salt_prefix.push(b':');
    Ok(model::Rollout {
        by: strings.attr(by),
        salt_prefix,
        buckets,
    })
}
