//! The state every task shares ([`Shared`]): the state machine and the map from
//! connection to [`Outbox`] behind one `async_lock::Mutex`, and the fan-out of
//! effects.
//!
//! The lock is taken for one batch of inputs, the effects are queued with
//! [`Outbox::push`] (never waiting) while it is held, and it is released before
//! anything awaits a socket. One lock for both the state and the queues makes
//! the state machine's order the order of every queue.
//!
//! Slow consumers found while fanning out are kicked at most
//! [`KICKS_PER_HOLD`] per lock hold; the rest are left to the kicker task
//! ([`Shared::kick_pending`]), so when thousands overflow at once (each kick
//! tells everyone with a `PART`) the others' lines still get the lock between
//! rounds instead of waiting for the whole cascade.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_lock::Mutex;
use chatproto::server::{ConnId, Effect, Input, Server, Time};
use chatproto::{CloseReason, Event};
use smol::Executor;

use crate::config::Config;
use crate::outbox::{Outbox, SendBudget};

/// Slow consumers kicked per hold of the lock. A kick costs a `PART` to every
/// user (below the presence limit), so this bounds a hold to a few
/// milliseconds at 1000 users.
pub(crate) const KICKS_PER_HOLD: usize = 16;

/// The time for the state machine: both clocks, so events carry a wall-clock
/// stamp (for history and IRC's `server-time`).
fn now() -> Time {
    Time::new(Instant::now(), SystemTime::now())
}

/// Shared by the listeners, every connection task and the ticker.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    hub: Mutex<Hub>,
    next_id: AtomicU64,
    budget: Arc<SendBudget>,
}

#[derive(Debug)]
struct Hub {
    server: Server,
    outboxes: HashMap<ConnId, Outbox>,
    shutting_down: bool,
    /// Slow consumers found and not kicked yet, oldest first.
    pending_kicks: VecDeque<ConnId>,
    kick_tx: async_channel::Sender<()>,
    /// Runs the tasks that reap connections too slow to close.
    ex: Arc<Executor<'static>>,
}

impl Shared {
    /// The shared state, and the receiving end of the kicker's wake-ups
    /// (for [`Self::kick_pending`]'s task).
    pub(crate) fn new(
        config: Config,
        ex: Arc<Executor<'static>>,
    ) -> (Self, async_channel::Receiver<()>) {
        let server = Server::new(config.server.clone());
        let budget = Arc::new(SendBudget::new(config.sendq, config.sendq_total));
        let (kick_tx, kick_rx) = async_channel::bounded(1);
        let shared = Self {
            config,
            hub: Mutex::new(Hub {
                server,
                outboxes: HashMap::new(),
                shutting_down: false,
                pending_kicks: VecDeque::new(),
                kick_tx,
                ex,
            }),
            next_id: AtomicU64::new(1),
            budget,
        };
        (shared, kick_rx)
    }

    /// The byte budgets of every connection's queue.
    pub(crate) fn budget(&self) -> &Arc<SendBudget> {
        &self.budget
    }

    /// A connection id no other connection had.
    pub(crate) fn next_id(&self) -> ConnId {
        ConnId::new(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Adds a connection and greets it, or, during shutdown, says goodbye.
    pub(crate) async fn connect(&self, outbox: Outbox) {
        let now = now();
        let mut hub = self.hub.lock().await;
        let id = outbox.io().id;
        if hub.shutting_down {
            let bye = Event::Bye(CloseReason::ServerShutdown).to_bytes();
            let _ = outbox.push(&bye.into());
            hub.spawn(outbox.close(CloseReason::ServerShutdown));
            return;
        }
        hub.outboxes.insert(id, outbox);
        let effects = hub.server.handle(now, Input::Connected(id));
        hub.apply(now, effects);
    }

    /// Hands a batch of `conn`'s inputs to the state machine and queues the
    /// effects; returns how many bytes were queued for `conn` itself (its
    /// replies), which its pacing charges.
    pub(crate) async fn handle(&self, conn: ConnId, inputs: Vec<Input>) -> usize {
        let now = now();
        let mut hub = self.hub.lock().await;
        inputs
            .into_iter()
            .map(|input| hub.handle(now, input, Some(conn)))
            .sum()
    }

    /// Lets time pass in the state machine (timeouts).
    pub(crate) async fn tick(&self) {
        let now = now();
        self.hub.lock().await.handle(now, Input::Tick, None);
    }

    /// Kicks up to [`KICKS_PER_HOLD`] pending slow consumers; true if more
    /// are left. The kicker task calls it until none are.
    pub(crate) async fn kick_pending(&self) -> bool {
        let now = now();
        let mut hub = self.hub.lock().await;
        hub.kick_some(now);
        !hub.pending_kicks.is_empty()
    }

    /// Runs the kicker: after each wake-up, kicks in rounds until no slow
    /// consumer is left, letting other tasks take the lock between rounds.
    pub(crate) async fn kicker(self: Arc<Self>, wake: async_channel::Receiver<()>) {
        while wake.recv().await.is_ok() {
            while self.kick_pending().await {
                futures_lite::future::yield_now().await;
            }
        }
    }

    /// The connection is gone (EOF, error, panic): tell the others, and let its
    /// writer flush what is queued and stop.
    pub(crate) async fn disconnect(&self, id: ConnId, reason: CloseReason) {
        let now = now();
        let mut hub = self.hub.lock().await;
        let effects = hub
            .server
            .handle(now, Input::Disconnected(id, reason.clone()));
        hub.apply(now, effects);
        if let Some(outbox) = hub.outboxes.remove(&id) {
            hub.spawn(outbox.close(reason));
        }
    }

    /// Stops admitting connections and closes every one with `BYE server-shutdown`.
    pub(crate) async fn shutdown(&self) {
        let now = now();
        let mut hub = self.hub.lock().await;
        hub.shutting_down = true;
        let effects = hub.server.handle(now, Input::Shutdown);
        hub.apply(now, effects);
        // Any outbox left was not known to the server (cannot happen, but they
        // must not outlive the shutdown either).
        let left: Vec<Outbox> = hub.outboxes.drain().map(|(_, o)| o).collect();
        for outbox in left {
            hub.spawn(outbox.close(CloseReason::ServerShutdown));
        }
    }

    /// Connections, users and groups, plus the state machine's invariant
    /// check: for logs after a caught panic.
    pub(crate) async fn health(&self) -> String {
        let hub = self.hub.lock().await;
        let s = &hub.server;
        format!(
            "{} connections, {} users, {} groups, invariants: {:?}",
            s.connection_count(),
            s.user_count(),
            s.group_count(),
            s.check_invariants()
        )
    }
}

impl Hub {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.ex.spawn(task).detach();
    }

    /// Handles one input; returns the bytes queued for `asker` (its replies).
    fn handle(&mut self, now: Time, input: Input, asker: Option<ConnId>) -> usize {
        let newcomer = match &input {
            Input::Line(id, _) if self.server.name_of(*id).is_none() => Some(*id),
            _ => None,
        };
        let stalled = self.server.stalled();
        let effects = self.server.handle(now, input);
        let stall = self.server.stalled() - stalled;
        if !stall.is_zero() {
            log::warn!(
                "nothing ran for {stall:.1?} (process stopped or starved); \
                 not counted against clients' timeouts"
            );
        }
        if let Some(id) = newcomer {
            if let Some(name) = self.server.name_of(id) {
                log::info!("{id:?} registered as {name}");
            }
        }
        let replies = effects
            .iter()
            .map(|e| match e {
                Effect::Deliver { to, event } if Some(*to) == asker => event.line().len(),
                _ => 0,
            })
            .sum();
        self.apply(now, effects);
        replies
    }

    /// Carries out effects in order. Queues over budget become pending kicks;
    /// a few are kicked now, the kicker task takes care of the rest.
    fn apply(&mut self, now: Time, effects: Vec<Effect>) {
        self.apply_batch(effects, None);
        self.kick_some(now);
    }

    /// Kicks up to [`KICKS_PER_HOLD`] pending slow consumers, carrying out
    /// each kick's own effects (its `BYE`, the others' `PART`, which may find
    /// more); wakes the kicker task if some are left.
    fn kick_some(&mut self, now: Time) {
        for _ in 0..KICKS_PER_HOLD {
            let Some(id) = self.pending_kicks.pop_front() else {
                return;
            };
            log::info!("{id:?} is a slow consumer: kicking");
            let effects = self
                .server
                .handle(now, Input::Kick(id, CloseReason::SendqExceeded));
            self.apply_batch(effects, Some(id));
        }
        if !self.pending_kicks.is_empty() {
            // Full means a wake-up is already pending.
            let _ = self.kick_tx.try_send(());
        }
    }

    fn apply_batch(&mut self, effects: Vec<Effect>, kicked: Option<ConnId>) {
        for effect in effects {
            match effect {
                Effect::Deliver { to, event } => {
                    let Some(outbox) = self.outboxes.get(&to) else {
                        continue; // Closed in this very batch; nothing to do.
                    };
                    // Encoded on first use and shared by every recipient.
                    let bytes = event.line();
                    if Some(to) == kicked {
                        outbox.set_last_words(bytes);
                    } else if outbox.push(bytes).is_err() {
                        self.pending_kicks.push_back(to);
                    }
                }
                Effect::Close { conn, reason } => {
                    if let Some(outbox) = self.outboxes.remove(&conn) {
                        log::debug!("{conn:?} closing: {reason}");
                        let reap = outbox.close(reason);
                        self.spawn(reap);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Args;
    use crate::outbox::ConnIo;
    use argh::FromArgs;
    use chatproto::{Command, Name, Text};
    use smol::Async;
    use std::net::{TcpListener, TcpStream};

    /// 41 users on queues nobody drains (no writer runs here), with a 16 KiB
    /// `--sendq`: a broadcast from the first overflows the other 40 at once.
    #[test]
    fn a_cascade_of_slow_consumers_is_kicked_in_rounds() {
        const SLOW: usize = 40;
        let args = Args::from_args(&["chatd"], &["--sendq", "16KiB", "--presence-limit", "0"]);
        let config = Config::from_args(args.unwrap()).unwrap();
        let (shared, wake) = Shared::new(config, Arc::new(Executor::new()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peers = Vec::new();
        let mut ids = Vec::new();
        smol::block_on(async {
            for i in 0..=SLOW {
                peers.push(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
                let (server, _) = listener.accept().unwrap();
                let id = shared.next_id();
                let io = ConnIo::new(id, Async::new(server).unwrap(), shared.budget().clone());
                shared.connect(Outbox::new(Arc::new(io))).await;
                let name = Name::try_from(format!("u{i:02}")).unwrap();
                shared
                    .handle(id, vec![Input::Line(id, Command::Nick(name))])
                    .await;
                ids.push(id);
            }
            let users = || async { shared.hub.lock().await.server.user_count() };
            assert_eq!(users().await, SLOW + 1);
            let line = Text::try_from("x".repeat(1000)).unwrap();
            let mut sent = 0;
            while users().await == SLOW + 1 && sent < 100 {
                let say = Input::Line(ids[0], Command::Say(line.clone()));
                shared.handle(ids[0], vec![say]).await;
                sent += 1;
            }
            // The broadcast that overflowed all 40 kicked only one round of
            // them under that hold of the lock, and woke the kicker.
            assert_eq!(users().await, SLOW + 1 - KICKS_PER_HOLD);
            assert!(wake.try_recv().is_ok(), "the kicker was woken");
            let mut rounds = 0;
            while shared.kick_pending().await {
                rounds += 1;
                assert!(rounds < 10);
            }
            assert_eq!(users().await, 1, "every slow consumer kicked in the end");
            assert_eq!(rounds, SLOW.div_ceil(KICKS_PER_HOLD) - 2);
        });
    }
}
