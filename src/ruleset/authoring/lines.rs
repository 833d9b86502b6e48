//! Lines of places: the YAML line of every place the builder has seen, so that
//! a [`CompileError`] (which names a [`Place`], not a line) can point at the
//! YAML, falling back from the most specific place to its parents.
//!
//! It must not change an error, only find its line.

use std::borrow::Cow;

use serde_saphyr::Location;

use crate::ruleset::compile::{CompileError, ErrorKind, Place};

/// The line of `loc`, if the YAML reader gave one (lines are 1-based; 0 is none).
pub(super) fn known(loc: &Location) -> Option<u64> {
    Some(loc.line()).filter(|&l| l > 0)
}

/// The YAML line of each place this module has seen, so that a [`CompileError`]
/// (which names a [`Place`], not a line) can point at the YAML.
#[derive(Default)]
pub(super) struct Lines(Vec<(Place, u64)>);

impl Lines {
    /// Records that `place` is at the line of `loc`.
    pub(super) fn add(&mut self, place: Place, loc: &Location) {
        if let Some(line) = known(loc) {
            self.0.push((place, line));
        }
    }

    /// The last recorded line of exactly `place` (the last, so a name defined
    /// twice points at its second definition).
    fn get(&self, place: &Place) -> Option<u64> {
        self.0
            .iter()
            .rev()
            .find(|(p, _)| p == place)
            .map(|(_, l)| *l)
    }

    /// The line of the most specific place known: the named item inside the
    /// field (`variants.on`), the field, its dotted parents, then the
    /// condition, the rule, and the flag, segment or key.
    pub(super) fn line_of(&self, err: &CompileError) -> Option<u64> {
        let place = err.place.as_ref();
        let with_field = |p: &Place, f: String| p.clone().field(f);
        // Errors that name an item inside the place's field.
        let named: Option<Place> = match (err.kind.as_ref(), place.field.as_deref()) {
            (ErrorKind::Duplicate { name, .. }, Some("keys")) if is_root(place) => {
                Some(Place::key(name))
            }
            (ErrorKind::Duplicate { name, .. }, Some("flags")) if is_root(place) => {
                Some(Place::flag(name))
            }
            (ErrorKind::Duplicate { name, .. }, Some("segments")) if is_root(place) => {
                Some(Place::segment(name))
            }
            (ErrorKind::Duplicate { name, .. }, Some(f))
            | (ErrorKind::UnknownVariant { name, .. }, Some(f))
            | (ErrorKind::UnknownFlag(name), Some(f))
            | (ErrorKind::BadOrigin(name), Some(f))
            | (ErrorKind::MixedVariantTypes { other: name, .. }, Some(f)) => {
                Some(with_field(place, format!("{f}.{name}")))
            }
            _ => None,
        };
        if let Some(line) = named.and_then(|p| self.get(&p)) {
            return Some(line);
        }
        let mut p = place.clone();
        loop {
            while let Some(f) = p.field.take() {
                let candidate = p.clone().field(f.clone());
                if let Some(line) = self.get(&candidate) {
                    return Some(line);
                }
                p.field = f
                    .rsplit_once('.')
                    .map(|(parent, _)| Cow::Owned(parent.to_owned()));
            }
            if let Some(line) = self.get(&p) {
                return Some(line);
            }
            if p.condition.take().is_none() && p.rule.take().is_none() {
                return None;
            }
        }
    }
}

/// A place outside every flag, segment and key.
fn is_root(place: &Place) -> bool {
    place.flag.is_none() && place.segment.is_none() && place.key.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fall_back_to_the_most_specific_place() {
        let mut lines = Lines::default();
        let at = |l| (Place::flag("f").rule(l as usize), l);
        lines.0.push((Place::flag("f"), 3));
        lines.0.push(at(9));
        lines.0.push((Place::flag("f").rule(9).field("serve"), 10));
        let err = |p: Place, k| CompileError::new(p, k);
        assert_eq!(
            lines.line_of(&err(
                Place::flag("f").rule(9).field("serve.rollout.weights"),
                ErrorKind::UnknownVariant {
                    name: "x".into(),
                    of_flag: None,
                    valid: vec![],
                }
            )),
            Some(10)
        );
        assert_eq!(
            lines.line_of(&err(
                Place::flag("f").rule(9).condition(2).field("values"),
                ErrorKind::NothingToServe
            )),
            Some(9)
        );
        assert_eq!(
            lines.line_of(&err(
                Place::flag("f").field("default"),
                ErrorKind::NoVariants
            )),
            Some(3)
        );
        assert_eq!(
            lines.line_of(&err(Place::flag("g"), ErrorKind::NoVariants)),
            None
        );
    }
}
