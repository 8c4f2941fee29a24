//! The latest lines of each scope, kept in memory for replay on `/join` and on
//! registration: a bounded ring per scope, and a bounded number of scopes
//! (the least recently spoken-in group is forgotten first; global never is).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::Outgoing;
use crate::{Event, NameKey, Past, Scope};

/// Settings of history, for [`ServerConfig::history`](super::ServerConfig::history).
/// Built with [`HistoryConfig::default`] and changed field by field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HistoryConfig {
    /// Lines kept in memory per scope and replayed on `/join` (the group's)
    /// and on registration (global's). Default 20 (`--history-replay`).
    pub replay: usize,
    /// Scopes whose latest lines are kept in memory, global included. Past
    /// it, the group spoken in least recently is forgotten: its next `/join`
    /// replays nothing until it is spoken in again (`/history` still reads
    /// the store). Default 1000: at most 20,000 lines, a few MB at typical
    /// line lengths (80 MB if every line were 4 KB).
    pub max_scopes: usize,
    /// Lines per `/history` when the count is not given. Default 20.
    pub page: u32,
    /// The most lines one `/history` returns. Default 200.
    pub max_page: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            replay: 20,
            max_scopes: 1000,
            page: 20,
            max_page: 200,
        }
    }
}

/// A scope's key: `None` for global, else the group's case-folded name.
pub(super) type ScopeKey = Option<NameKey>;

pub(super) fn scope_key(scope: &Scope) -> ScopeKey {
    scope.group().map(|g| g.key())
}

#[derive(Debug, Default)]
struct Ring {
    /// `HISTORY` events, oldest first; each shared by every replay.
    lines: VecDeque<Arc<Outgoing>>,
    last_id: u64,
}

#[derive(Debug, Default)]
pub(super) struct Rings {
    by_scope: HashMap<ScopeKey, Ring>,
    /// Groups by the id of their last line, to find the least recent.
    recent: BTreeMap<u64, NameKey>,
}

impl Rings {
    /// Keeps `past` (a `MSG` or `ME`) as its scope's latest line.
    pub(super) fn push(&mut self, past: Past, cfg: &HistoryConfig) {
        let Some(scope) = past.scope() else { return };
        if cfg.replay == 0 {
            return;
        }
        let key = scope_key(scope);
        if !self.by_scope.contains_key(&key) && key.is_some() {
            // Global is never evicted, so at least one group must fit beside it.
            if self.by_scope.len() >= cfg.max_scopes.max(2) {
                self.evict_least_recent();
            }
        }
        let ring = self.by_scope.entry(key.clone()).or_default();
        if let Some(group) = &key {
            self.recent.remove(&ring.last_id);
            self.recent.insert(past.id(), group.clone());
        }
        ring.last_id = ring.last_id.max(past.id());
        let (id, unix_ms) = (past.id(), past.unix_ms());
        ring.lines
            .push_back(Arc::new(Outgoing::new(Event::History(past), id, unix_ms)));
        while ring.lines.len() > cfg.replay {
            ring.lines.pop_front();
        }
    }

    fn evict_least_recent(&mut self) {
        if let Some((_, group)) = self.recent.pop_first() {
            self.by_scope.remove(&Some(group));
        }
    }

    /// The scope's kept lines, oldest first.
    pub(super) fn lines(&self, key: &ScopeKey) -> impl Iterator<Item = &Arc<Outgoing>> {
        self.by_scope
            .get(key)
            .into_iter()
            .flat_map(|r| r.lines.iter())
    }

    /// The latest `limit` kept lines with ids below `before`, if the ring
    /// holds all of them (it holds a contiguous latest part of the scope's
    /// history): then no store read is needed.
    pub(super) fn page(
        &self,
        key: &ScopeKey,
        before: Option<u64>,
        limit: usize,
    ) -> Option<Vec<Arc<Outgoing>>> {
        let ring = self.by_scope.get(key)?;
        let below: Vec<&Arc<Outgoing>> = ring
            .lines
            .iter()
            .filter(|o| before.is_none_or(|b| o.id() < b))
            .collect();
        (below.len() >= limit).then(|| {
            below[below.len() - limit..]
                .iter()
                .map(|o| (*o).clone())
                .collect()
        })
    }

    pub(super) fn scopes(&self) -> usize {
        self.by_scope.len()
    }
}
