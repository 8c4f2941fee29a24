//! Groups and their members, with cached `USERS <group>` and `GROUPS` replies.
//! A group exists while it has members: the last one out removes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ConnId, Outgoing};
use crate::{Event, GroupName, Name, NameKey, Scope};

#[derive(Debug)]
pub(super) struct Group {
    /// The name as its creator spelled it; the scope everyone sees.
    pub(super) name: GroupName,
    members: BTreeMap<NameKey, (Name, ConnId)>,
    /// `USERS <group> ...`, rebuilt only after a change.
    listing: Option<Arc<Outgoing>>,
}

impl Group {
    pub(super) fn conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.members.values().map(|(_, c)| *c)
    }

    pub(super) fn len(&self) -> usize {
        self.members.len()
    }

    pub(super) fn listing(&mut self, stamp: impl FnOnce(Event) -> Arc<Outgoing>) -> Arc<Outgoing> {
        let (name, members) = (&self.name, &self.members);
        self.listing
            .get_or_insert_with(|| {
                stamp(Event::Users {
                    scope: Scope::Group(name.clone()),
                    names: members.values().map(|(n, _)| n.clone()).collect(),
                })
            })
            .clone()
    }
}

#[derive(Debug, Default)]
pub(super) struct Groups {
    by_key: BTreeMap<NameKey, Group>,
    /// `GROUPS ...`, rebuilt only after a change.
    listing: Option<Arc<Outgoing>>,
}

impl Groups {
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(super) fn get(&self, key: &NameKey) -> Option<&Group> {
        self.by_key.get(key)
    }

    pub(super) fn get_mut(&mut self, key: &NameKey) -> Option<&mut Group> {
        self.by_key.get_mut(key)
    }

    /// Adds a member, creating the group if needed; returns the group.
    pub(super) fn join(&mut self, group: &GroupName, name: &Name, conn: ConnId) -> &Group {
        self.listing = None;
        let g = self.by_key.entry(group.key()).or_insert_with(|| Group {
            name: group.clone(),
            members: BTreeMap::new(),
            listing: None,
        });
        g.listing = None;
        g.members.insert(name.key(), (name.clone(), conn));
        g
    }

    /// Removes a member; removes the group when it empties.
    pub(super) fn leave(&mut self, group: &NameKey, name: &NameKey) {
        self.listing = None;
        if let Some(g) = self.by_key.get_mut(group) {
            g.listing = None;
            g.members.remove(name);
            if g.members.is_empty() {
                self.by_key.remove(group);
            }
        }
    }

    /// Renames a member in place.
    pub(super) fn rename(&mut self, group: &NameKey, old: &NameKey, new: &Name) {
        if let Some(g) = self.by_key.get_mut(group) {
            if let Some((_, conn)) = g.members.remove(old) {
                g.listing = None;
                g.members.insert(new.key(), (new.clone(), conn));
            }
        }
    }

    pub(super) fn listing(&mut self, stamp: impl FnOnce(Event) -> Arc<Outgoing>) -> Arc<Outgoing> {
        let by_key = &self.by_key;
        self.listing
            .get_or_insert_with(|| {
                stamp(Event::Groups(
                    by_key
                        .values()
                        .map(|g| (g.name.clone(), u32::try_from(g.len()).unwrap_or(u32::MAX)))
                        .collect(),
                ))
            })
            .clone()
    }

    /// Every group with its members' connections, for invariant checks.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Group> {
        self.by_key.values()
    }

    pub(super) fn members(
        &self,
        group: &NameKey,
    ) -> Option<impl Iterator<Item = (&NameKey, ConnId)>> {
        self.by_key
            .get(group)
            .map(|g| g.members.iter().map(|(k, (_, c))| (k, *c)))
    }
}
