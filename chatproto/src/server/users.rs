//! The registry of registered names, with the cached global `USERS` reply.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ConnId, Outgoing};
use crate::{Event, Name, NameKey, Scope};

/// Registered users by case-folded name, sorted, so listings are stable.
#[derive(Debug, Default)]
pub(super) struct Users {
    by_key: BTreeMap<NameKey, (Name, ConnId)>,
    /// `USERS * ...`, rebuilt only after a change.
    listing: Option<Arc<Outgoing>>,
}

impl Users {
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(super) fn get(&self, key: &NameKey) -> Option<&(Name, ConnId)> {
        self.by_key.get(key)
    }

    pub(super) fn insert(&mut self, name: Name, conn: ConnId) {
        self.listing = None;
        self.by_key.insert(name.key(), (name, conn));
    }

    pub(super) fn remove(&mut self, key: &NameKey) {
        self.listing = None;
        self.by_key.remove(key);
    }

    /// Every registered connection.
    pub(super) fn conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.by_key.values().map(|(_, c)| *c)
    }

    pub(super) fn listing(&mut self, stamp: impl FnOnce(Event) -> Arc<Outgoing>) -> Arc<Outgoing> {
        let by_key = &self.by_key;
        self.listing
            .get_or_insert_with(|| {
                stamp(Event::Users {
                    scope: Scope::Global,
                    names: by_key.values().map(|(n, _)| n.clone()).collect(),
                })
            })
            .clone()
    }
}
