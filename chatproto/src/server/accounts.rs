//! Accounts as the state machine knows them: the set of account names (with
//! each one's count of stored offline messages), the memory of failed
//! logins that slows guessing down, and the memory of recent registrations
//! that limits how many accounts one peer makes.

use std::collections::{HashMap, VecDeque};
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
    /// `/register`s one peer ([`PeerKey`]) may make within
    /// `registration_window`; the next is refused at once with `ERR
    /// rate-limited`, saying when to try again, and reaches no store. Every
    /// `/register` that is asked of the driver counts, whatever its answer:
    /// each costs a password hash. Connections without a peer key
    /// ([`Input::Connected`](super::Input::Connected)) are not limited. 0
    /// refuses every `/register` from a peer. Default 5: a household or an
    /// office behind one address can still register together, while one
    /// address makes at most 480 accounts a day instead of one per round trip,
    /// and costs at most 5 hashes per window.
    pub max_registrations: usize,
    /// The window of `max_registrations`: a registration is forgotten this
    /// long after it was asked. Zero turns the limit off. Default 15 minutes,
    /// as long as failures are remembered.
    pub registration_window: Duration,
    /// Peers whose registrations are remembered at most; past it those whose
    /// registrations are all older than the window are forgotten, then those
    /// that registered least recently. Default 10,000 (at most
    /// `max_registrations` times per peer: about 1.5 MB).
    pub max_registration_peers: usize,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            offline_dms: 100,
            failure_delay: Duration::from_secs(1),
            max_failure_delay: Duration::from_secs(16),
            failure_memory: Duration::from_secs(15 * 60),
            max_failure_keys: 10_000,
            max_registrations: 5,
            registration_window: Duration::from_secs(15 * 60),
            max_registration_peers: 10_000,
        }
    }
}

#[derive(Debug)]
pub(super) struct Account {
    /// As registered.
    pub(super) name: Name,
    /// Offline `DM`s stored for it (as far as this server told the store).
    pub(super) stored_dms: usize,
    /// The highest id of an offline `DM` delivered to it: a second login
    /// checked at the same time, or a store read that predates the deletion,
    /// may bring it again, and it must not be delivered twice.
    pub(super) delivered_through: u64,
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
        self.by_key.insert(
            name.key(),
            Account {
                name,
                stored_dms,
                delivered_through: 0,
            },
        );
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

/// Recent registrations per peer, each peer's oldest first, at most
/// `max_registrations` each.
#[derive(Debug, Default)]
pub(super) struct Registrations {
    by_peer: HashMap<PeerKey, VecDeque<Instant>>,
}

impl Registrations {
    /// Counts a registration by `peer` at `now`, if its limit allows one;
    /// else returns when the next one will be allowed.
    pub(super) fn admit(
        &mut self,
        peer: PeerKey,
        now: Instant,
        cfg: &AccountsConfig,
    ) -> Result<(), Instant> {
        let window = cfg.registration_window;
        if window.is_zero() {
            return Ok(()); // No limit: nothing to remember.
        }
        let recent = |t: &Instant| now.saturating_duration_since(*t) < window;
        if let Some(times) = self.by_peer.get_mut(&peer) {
            times.retain(recent);
            if times.len() >= cfg.max_registrations {
                // The earliest recent one frees a place when it expires (the
                // minimum, not the front: a driver's clock may step back).
                let oldest = times.iter().min().copied().unwrap_or(now);
                return Err(oldest + window);
            }
        } else if cfg.max_registrations == 0 {
            return Err(now + window);
        } else {
            self.make_room(now, cfg);
        }
        self.by_peer.entry(peer).or_default().push_back(now);
        Ok(())
    }

    /// Makes room for one more peer within `max_registration_peers`:
    /// forgets peers with no recent registration, then those that registered
    /// least recently.
    fn make_room(&mut self, now: Instant, cfg: &AccountsConfig) {
        let max = cfg.max_registration_peers.max(1);
        if self.by_peer.len() < max {
            return;
        }
        let window = cfg.registration_window;
        self.by_peer.retain(|_, times| {
            times
                .iter()
                .any(|t| now.saturating_duration_since(*t) < window)
        });
        while self.by_peer.len() >= max {
            let Some(stalest) = self
                .by_peer
                .iter()
                .min_by_key(|(_, times)| times.iter().max().copied())
                .map(|(peer, _)| *peer)
            else {
                break;
            };
            self.by_peer.remove(&stalest);
        }
    }

    /// Peers remembered (for [`Server::check_invariants`](super::Server::check_invariants)).
    pub(super) fn len(&self) -> usize {
        self.by_peer.len()
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

    #[test]
    fn registrations_are_limited_per_peer_in_a_sliding_window() {
        let cfg = AccountsConfig {
            max_registrations: 2,
            registration_window: Duration::from_secs(60),
            ..AccountsConfig::default()
        };
        let mut r = Registrations::default();
        let t0 = Instant::now();
        let (a, b) = (PeerKey::new(1), PeerKey::new(2));
        let sec = Duration::from_secs;
        assert_eq!(r.admit(a, t0, &cfg), Ok(()));
        assert_eq!(r.admit(a, t0 + sec(10), &cfg), Ok(()));
        assert_eq!(r.admit(a, t0 + sec(20), &cfg), Err(t0 + sec(60)));
        assert_eq!(
            r.admit(b, t0 + sec(20), &cfg),
            Ok(()),
            "other peers are not"
        );
        // The first expires at 60 s: one place, not two.
        assert_eq!(r.admit(a, t0 + sec(60), &cfg), Ok(()));
        assert_eq!(r.admit(a, t0 + sec(61), &cfg), Err(t0 + sec(70)));
    }

    #[test]
    fn registration_memory_is_bounded_and_zero_settings_mean_what_they_say() {
        let cfg = AccountsConfig {
            max_registration_peers: 3,
            ..AccountsConfig::default()
        };
        let mut r = Registrations::default();
        let t0 = Instant::now();
        for p in 0..10 {
            assert_eq!(
                r.admit(PeerKey::new(p), t0 + Duration::from_secs(p), &cfg),
                Ok(())
            );
            assert!(r.len() <= 3);
        }
        let closed = AccountsConfig {
            max_registrations: 0,
            ..AccountsConfig::default()
        };
        assert_eq!(
            r.admit(PeerKey::new(99), t0, &closed),
            Err(t0 + closed.registration_window)
        );
        let off = AccountsConfig {
            registration_window: Duration::ZERO,
            max_registrations: 0,
            ..AccountsConfig::default()
        };
        assert_eq!(r.admit(PeerKey::new(99), t0, &off), Ok(()));
    }
}
