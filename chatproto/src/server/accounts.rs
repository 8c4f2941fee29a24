//! Accounts as the state machine knows them: the set of account names (with
//! each one's count of stored offline messages), and the memory of failed
//! logins that slows guessing down.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::PeerKey;
use crate::{Name, NameKey};

/// Settings of accounts, for [`ServerConfig::accounts`](super::ServerConfig::accounts).
/// Built with [`AccountsConfig::default`] and changed field by field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AccountsConfig {
    /// `DM`s kept per offline account, for its next login. A `/msg` to an
    /// offline account that has this many waiting is refused with `ERR
    /// mailbox-full` (the sender knows it was not stored; the oldest are
    /// kept, as they were promised). 0: none are kept and such a `/msg` gets
    /// `ERR no-such-user` as before. Default 100, as the issue asks.
    pub offline_dms: usize,
    /// The delay of the answer to a first failed login (or `/passwd`,
    /// `/unregister` with a wrong password); each further failure for the
    /// same account or from the same peer doubles it. Default 1 s.
    pub failure_delay: Duration,
    /// The longest such delay. Default 16 s: a guesser gets at most one
    /// answer per 16 s per connection, while a user who mistyped waits 1 s.
    pub max_failure_delay: Duration,
    /// Failures older than this are forgotten. Default 15 minutes.
    pub failure_memory: Duration,
    /// Accounts and peers whose failures are remembered at most; past it the
    /// oldest are forgotten. Default 10,000 (about 1 MB).
    pub max_failure_keys: usize,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            offline_dms: 100,
            failure_delay: Duration::from_secs(1),
            max_failure_delay: Duration::from_secs(16),
            failure_memory: Duration::from_secs(15 * 60),
            max_failure_keys: 10_000,
        }
    }
}

#[derive(Debug)]
pub(super) struct Account {
    /// As registered.
    pub(super) name: Name,
    /// Offline `DM`s stored for it (as far as this server told the store).
    pub(super) stored_dms: usize,
}

/// Every account name, by case-folded name.
#[derive(Debug, Default)]
pub(super) struct Accounts {
    by_key: HashMap<NameKey, Account>,
}

impl Accounts {
    pub(super) fn get(&self, key: &NameKey) -> Option<&Account> {
        self.by_key.get(key)
    }

    pub(super) fn get_mut(&mut self, key: &NameKey) -> Option<&mut Account> {
        self.by_key.get_mut(key)
    }

    pub(super) fn contains(&self, key: &NameKey) -> bool {
        self.by_key.contains_key(key)
    }

    pub(super) fn insert(&mut self, name: Name, stored_dms: usize) {
        self.by_key.insert(name.key(), Account { name, stored_dms });
    }

    pub(super) fn remove(&mut self, key: &NameKey) {
        self.by_key.remove(key);
    }

    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// What failed logins are counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum FailKey {
    Account(NameKey),
    Peer(PeerKey),
}

#[derive(Clone, Copy, Debug)]
struct Failed {
    count: u32,
    last: Instant,
}

/// Recent failures per account and per peer.
#[derive(Debug, Default)]
pub(super) struct Failures {
    by_key: HashMap<FailKey, Failed>,
}

impl Failures {
    /// Failures of `key` still remembered at `now`.
    fn recent(&self, key: &FailKey, now: Instant, cfg: &AccountsConfig) -> Option<Failed> {
        self.by_key
            .get(key)
            .copied()
            .filter(|f| now.saturating_duration_since(f.last) < cfg.failure_memory)
    }

    /// The delay after `count` failures: `failure_delay` doubled per failure
    /// after the first, capped.
    pub(super) fn delay(count: u32, cfg: &AccountsConfig) -> Duration {
        if count == 0 {
            return Duration::ZERO;
        }
        let doubled = cfg
            .failure_delay
            .saturating_mul(1u32 << (count - 1).min(20));
        doubled.min(cfg.max_failure_delay)
    }

    /// Counts a failure against every key; returns the delay its answer gets
    /// (the longest any key has earned).
    pub(super) fn fail(
        &mut self,
        keys: &[FailKey],
        now: Instant,
        cfg: &AccountsConfig,
    ) -> Duration {
        let mut worst = 0;
        for key in keys {
            let count = self.recent(key, now, cfg).map_or(0, |f| f.count) + 1;
            worst = worst.max(count);
            self.make_room(key, now, cfg);
            self.by_key.insert(key.clone(), Failed { count, last: now });
        }
        Self::delay(worst, cfg)
    }

    /// When a login from `peer` may be tried: after the delay its failures
    /// earned, counted from the last one.
    pub(super) fn gate(
        &self,
        peer: PeerKey,
        now: Instant,
        cfg: &AccountsConfig,
    ) -> Option<Instant> {
        let f = self.recent(&FailKey::Peer(peer), now, cfg)?;
        let open = f.last + Self::delay(f.count, cfg);
        (open > now).then_some(open)
    }

    pub(super) fn forget(&mut self, key: &FailKey) {
        self.by_key.remove(key);
    }

    /// Keeps at most `max_failure_keys`: forgets stale entries, then the oldest.
    fn make_room(&mut self, adding: &FailKey, now: Instant, cfg: &AccountsConfig) {
        if self.by_key.len() < cfg.max_failure_keys || self.by_key.contains_key(adding) {
            return;
        }
        self.by_key
            .retain(|_, f| now.saturating_duration_since(f.last) < cfg.failure_memory);
        while self.by_key.len() >= cfg.max_failure_keys.max(1) {
            let Some(oldest) = self
                .by_key
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.by_key.remove(&oldest);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_are_forgotten() {
        let cfg = AccountsConfig::default();
        let mut f = Failures::default();
        let t0 = Instant::now();
        let key = [FailKey::Peer(PeerKey::new(1))];
        let delays: Vec<u64> = (0..7).map(|_| f.fail(&key, t0, &cfg).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(
            f.gate(PeerKey::new(1), t0, &cfg),
            Some(t0 + Duration::from_secs(16))
        );
        assert_eq!(f.gate(PeerKey::new(2), t0, &cfg), None);
        let later = t0 + cfg.failure_memory;
        assert_eq!(f.fail(&key, later, &cfg), Duration::from_secs(1));
    }

    #[test]
    fn the_worst_key_decides_and_memory_is_bounded() {
        let cfg = AccountsConfig {
            max_failure_keys: 3,
            ..AccountsConfig::default()
        };
        let mut f = Failures::default();
        let t0 = Instant::now();
        let acct = FailKey::Account(Name::try_from("ann").unwrap().key());
        for _ in 0..3 {
            let _ = f.fail(std::slice::from_ref(&acct), t0, &cfg);
        }
        let d = f.fail(&[acct.clone(), FailKey::Peer(PeerKey::new(9))], t0, &cfg);
        assert_eq!(d, Duration::from_secs(8));
        for p in 0..10 {
            let _ = f.fail(
                &[FailKey::Peer(PeerKey::new(p))],
                t0 + Duration::from_secs(p),
                &cfg,
            );
            assert!(f.len() <= 3);
        }
    }
}
