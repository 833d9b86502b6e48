//! String sharing within one compilation: rulesets repeat attribute names,
//! variant names and operands, and every separate allocation costs memory for as
//! long as the model lives.
//!
//! It must not outlive one `compile` call (the `RefCell` is not `Sync`).

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

use crate::eval::model::Attr;

/// Shares one `Arc<str>` per distinct string within one compilation.
#[derive(Default)]
pub(super) struct Interner(RefCell<HashSet<Arc<str>>>);

impl Interner {
    /// The shared copy of `s`.
    pub(super) fn get(&self, s: &str) -> Arc<str> {
        let mut set = self.0.borrow_mut();
        if let Some(shared) = set.get(s) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(s);
        set.insert(Arc::clone(&shared));
        shared
    }

    /// An attribute named `name`, its name shared.
    pub(super) fn attr(&self, name: &str) -> Attr {
        Attr {
            name: self.get(name),
            nested: name.contains('.'),
        }
    }
}
