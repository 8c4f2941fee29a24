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
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_lock::Mutex;
use chatproto::irc::{encode_shared, Caps, Delivery, IrcSession};
use chatproto::server::{Answer, ConnId, Effect, Input, Outgoing, RequestId, Server, Time};
use chatproto::CloseReason;
use smol::Executor;

use crate::config::Config;
use crate::dialect::Dialect;
use crate::listener::peer_key;
use crate::outbox::{Outbox, SendBudget};
use crate::passwords::Asker;
use crate::store::{Seed, Store};

/// Slow consumers kicked per hold of the lock, at most. A kick costs a `PART`
/// to every user (below the presence limit), so [`WORK_PER_HOLD`] usually
/// stops a round first.
pub(crate) const KICKS_PER_HOLD: usize = 16;

/// Deliveries queued per hold of the lock, about: after an input or a kick
/// that reaches this many, the lock is released and taken again, so a
/// client's `/ping` waits for a fraction of a millisecond of fan-out, not for
/// a whole batch of broadcasts to thousands (64 lines to 2000 users held it
/// for tens of milliseconds). One input's own fan-out is never split.
pub(crate) const WORK_PER_HOLD: usize = 4096;

/// The time for the state machine: both clocks, so events carry a wall-clock
/// stamp (for history and IRC's `server-time`).
fn now() -> Time {
    Time::new(Instant::now(), SystemTime::now())
}

/// Answers handled per hold of the lock, at most, so a burst of answers
/// (history pages, logins) lets other inputs in between.
const ANSWERS_PER_HOLD: usize = 64;

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
    /// Where stored writes and requests go (never waits).
    store: Arc<Store>,
}

impl Shared {
    /// The shared state, and the receiving end of the kicker's wake-ups
    /// (for [`Self::kick_pending`]'s task).
    pub(crate) fn new(
        config: Config,
        ex: Arc<Executor<'static>>,
        store: Arc<Store>,
        seed: Seed,
    ) -> (Self, async_channel::Receiver<()>) {
        let mut server = Server::new(config.server.clone());
        seed.apply(&mut server);
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
                store,
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

    /// Adds a connection from `peer` and greets it, or, during shutdown,
    /// says goodbye.
    pub(crate) async fn connect(&self, outbox: Outbox, peer: Option<SocketAddr>) {
        let now = now();
        let mut hub = self.hub.lock().await;
        let id = outbox.io().id;
        if hub.shutting_down {
            let bye = if outbox.io().speaks_irc() {
                let irc = self.config.irc.clone();
                Dialect::Irc(irc).goodbye(CloseReason::ServerShutdown)
            } else {
                Dialect::Native.goodbye(CloseReason::ServerShutdown)
            };
            let _ = outbox.push(&bye.into());
            hub.spawn(outbox.close(CloseReason::ServerShutdown));
            return;
        }
        hub.outboxes.insert(id, outbox);
        let input = match peer {
            Some(peer) => Input::ConnectedFrom(id, peer_key(peer.ip(), self.config.ipv6_prefix)),
            None => Input::Connected(id),
        };
        let effects = hub.server.handle(now, input);
        let _ = hub.apply(now, effects, None, None);
    }

    /// Hands a batch of `conn`'s inputs to the state machine and queues the
    /// effects; returns how many bytes were queued for `conn` itself (its
    /// replies), which its pacing charges.
    pub(crate) async fn handle(&self, conn: ConnId, inputs: Vec<Input>) -> usize {
        let mut replies = 0;
        let mut inputs = inputs.into_iter().peekable();
        while inputs.peek().is_some() {
            let now = now();
            let mut hub = self.hub.lock().await;
            let mut work = 0;
            while work < WORK_PER_HOLD {
                let Some(input) = inputs.next() else { break };
                let (r, w) = hub.handle(now, input, Some(conn));
                replies += r;
                work += w + 1;
            }
            drop(hub);
            if inputs.peek().is_some() {
                // Let the others take the lock before the rest of the batch.
                futures_lite::future::yield_now().await;
            }
        }
        replies
    }

    /// Lets time pass in the state machine (timeouts).
    pub(crate) async fn tick(&self) {
        let now = now();
        let mut hub = self.hub.lock().await;
        let _ = hub.handle(now, Input::Tick, None);
        // So ids keep growing after a crash even if no line was stored lately.
        hub.store.record_next_id(hub.server.next_id());
    }

    /// Runs the answers task: each answer of the store or the password
    /// threads is an input, handled under the lock like a line.
    pub(crate) async fn answers(
        self: Arc<Self>,
        answers: async_channel::Receiver<(RequestId, Answer)>,
    ) {
        while let Ok(first) = answers.recv().await {
            let now = now();
            let mut hub = self.hub.lock().await;
            let mut next = Some(first);
            let mut handled = 0;
            while let Some((id, answer)) = next.take() {
                let _ = hub.handle(now, Input::Answer(id, answer), None);
                handled += 1;
                if handled < ANSWERS_PER_HOLD {
                    next = answers.try_recv().ok();
                }
            }
            drop(hub);
            futures_lite::future::yield_now().await;
        }
    }

    /// Kicks up to [`KICKS_PER_HOLD`] pending slow consumers; true if more
    /// are left. The kicker task calls it until none are.
    pub(crate) async fn kick_pending(&self) -> bool {
        let now = now();
        let mut hub = self.hub.lock().await;
        hub.kick_some(now, WORK_PER_HOLD);
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
        let _ = hub.apply(now, effects, None, None);
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
        let _ = hub.apply(now, effects, None, None);
        hub.store.record_next_id(hub.server.next_id());
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

    /// Handles one input; returns the bytes queued for `asker` (its replies)
    /// and the deliveries made.
    fn handle(&mut self, now: Time, input: Input, asker: Option<ConnId>) -> (usize, usize) {
        let newcomer = match &input {
            Input::Line(id, _) if self.server.name_of(*id).is_none() => Some(*id),
            _ => None,
        };
        // A reader that overflowed its own queue with a reply asks for a kick:
        // its BYE is then the last words, as for a kick from the fan-out.
        let kicked = match &input {
            Input::Kick(id, _) => Some(*id),
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
        let fanout = self.apply(now, effects, kicked, asker);
        (fanout.to_asker, fanout.deliveries)
    }

    /// Carries out effects in order. Queues over budget become pending kicks:
    /// some are kicked now, within what is left of [`WORK_PER_HOLD`], the
    /// kicker task takes care of the rest.
    fn apply(
        &mut self,
        now: Time,
        effects: Vec<Effect>,
        kicked: Option<ConnId>,
        asker: Option<ConnId>,
    ) -> Fanout {
        let mut fanout = self.apply_batch(effects, kicked, asker);
        let budget = WORK_PER_HOLD.saturating_sub(fanout.deliveries);
        fanout.deliveries += self.kick_some(now, budget);
        fanout
    }

    /// Kicks pending slow consumers, up to [`KICKS_PER_HOLD`] of them and
    /// while fewer than `budget` deliveries were made, carrying out each
    /// kick's own effects (its `BYE`, the others' `PART`, which may find
    /// more); wakes the kicker task if some are left. Returns the deliveries.
    fn kick_some(&mut self, now: Time, budget: usize) -> usize {
        let mut work = 0;
        for _ in 0..KICKS_PER_HOLD {
            if work >= budget {
                break;
            }
            let Some(id) = self.pending_kicks.pop_front() else {
                return work;
            };
            log::info!("{id:?} is a slow consumer: kicking");
            let effects = self
                .server
                .handle(now, Input::Kick(id, CloseReason::SendqExceeded));
            work += self.apply_batch(effects, Some(id), None).deliveries;
        }
        if !self.pending_kicks.is_empty() {
            // Full means a wake-up is already pending.
            let _ = self.kick_tx.try_send(());
        }
        work
    }

    /// Carries out effects in order; counts the deliveries, and the bytes
    /// queued for `asker` in its own dialect.
    fn apply_batch(
        &mut self,
        effects: Vec<Effect>,
        kicked: Option<ConnId>,
        asker: Option<ConnId>,
    ) -> Fanout {
        let mut fanout = Fanout::default();
        let mut irc = IrcEncodings::default();
        for effect in effects {
            match effect {
                Effect::Deliver { to, event } => {
                    let Some(outbox) = self.outboxes.get(&to) else {
                        continue; // Closed in this very batch; nothing to do.
                    };
                    fanout.deliveries += 1;
                    let owned;
                    let bytes = match outbox.io().irc() {
                        // Encoded on first use and shared by every recipient.
                        None => event.line(),
                        Some(mut session) => match session.on_event(&event) {
                            Delivery::Nothing => continue,
                            Delivery::Lines(lines) => {
                                owned = Arc::from(lines);
                                &owned
                            }
                            Delivery::Shared => {
                                owned = irc.get(&event, &session);
                                &owned
                            }
                        },
                    };
                    if Some(to) == asker {
                        fanout.to_asker += bytes.len();
                    }
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
                // Handed over without waiting; answers come back through
                // the answers task.
                Effect::Store(op) => self.store.store(op),
                // The asker's line made the request: if it closes before
                // its password is checked, the check is skipped.
                Effect::Request { id, request } => {
                    let asker = asker
                        .and_then(|a| self.outboxes.get(&a))
                        .map_or_else(Asker::default, |o| Asker::new(o.io()));
                    self.store.request(id, request, asker);
                }
            }
        }
        fanout
    }
}

/// What carrying out one input's effects did.
#[derive(Debug, Default)]
struct Fanout {
    /// Deliveries made: the work of this hold of the lock.
    deliveries: usize,
    /// Bytes queued for the connection whose input it was (its replies, which
    /// its pacing charges).
    to_asker: usize,
}

/// The IRC encodings of one batch's broadcasts: one per event and dialect
/// (capabilities that change the bytes), shared by every IRC recipient.
#[derive(Default)]
struct IrcEncodings(Vec<(Arc<Outgoing>, Caps, Arc<[u8]>)>);

impl IrcEncodings {
    fn get(&mut self, event: &Arc<Outgoing>, session: &IrcSession) -> Arc<[u8]> {
        let dialect = session.caps().dialect();
        let found = self
            .0
            .iter()
            .find(|(e, caps, _)| Arc::ptr_eq(e, event) && *caps == dialect);
        if let Some((_, _, bytes)) = found {
            return bytes.clone();
        }
        let bytes = encode_shared(event, dialect, session.config());
        self.0.push((event.clone(), dialect, bytes.clone()));
        bytes
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

    /// A connection on a local socket pair, registered as `name`; the client
    /// end is returned to keep the socket open.
    async fn user(shared: &Shared, listener: &TcpListener, name: &str) -> (ConnId, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let id = shared.next_id();
        let io = ConnIo::new(id, Async::new(server).unwrap(), shared.budget().clone());
        shared.connect(Outbox::new(Arc::new(io)), None).await;
        let name = Name::try_from(name).unwrap();
        shared
            .handle(id, vec![Input::Line(id, Command::Nick(name))])
            .await;
        (id, client)
    }

    fn shared_with(flags: &[&str]) -> (Arc<Shared>, async_channel::Receiver<()>) {
        let mut args = vec!["--ephemeral"];
        args.extend_from_slice(flags);
        let config = Config::from_args(Args::from_args(&["chatd"], &args).unwrap()).unwrap();
        new_shared(config)
    }

    /// Shared state with an in-memory store (answers are not handled).
    fn new_shared(config: Config) -> (Arc<Shared>, async_channel::Receiver<()>) {
        let (answers, _) = async_channel::unbounded();
        let (store, seed) = Store::open(&config.store, answers).unwrap();
        let (shared, wake) = Shared::new(config, Arc::new(Executor::new()), Arc::new(store), seed);
        (Arc::new(shared), wake)
    }

    /// A batch of broadcasts to 600 users is handed over in several holds of
    /// the lock, and another connection's line gets in between.
    #[test]
    fn a_batch_of_large_broadcasts_lets_others_in_between_holds() {
        let (shared, _wake) = shared_with(&["--presence-limit", "0"]);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ex = Executor::new();
        let order = smol::block_on(ex.run(async {
            let (sender, _s) = user(&shared, &listener, "sender").await;
            let (prober, _p) = user(&shared, &listener, "prober").await;
            let (watcher, _w) = user(&shared, &listener, "watcher").await;
            let mut crowd = Vec::new();
            for i in 0..600 {
                crowd.push(user(&shared, &listener, &format!("c{i}")).await);
            }
            let says: Vec<Input> = (0..16)
                .map(|i| {
                    Input::Line(
                        sender,
                        Command::Say(Text::try_from(format!("m{i}")).unwrap()),
                    )
                })
                .collect();
            let dm = Command::Msg {
                to: Name::try_from("watcher").unwrap(),
                text: Text::try_from("dm").unwrap(),
            };
            let batch = ex.spawn({
                let shared = shared.clone();
                async move { shared.handle(sender, says).await }
            });
            let probe = ex.spawn({
                let shared = shared.clone();
                async move { shared.handle(prober, vec![Input::Line(prober, dm)]).await }
            });
            batch.await;
            probe.await;
            // What the watcher was sent, in order: the MSGs and the DM.
            let hub = shared.hub.lock().await;
            hub.outboxes[&watcher].queued_lines()
        }));
        let dm_at = order
            .iter()
            .position(|l| l.starts_with("DM "))
            .expect("the DM");
        let msgs = order.iter().filter(|l| l.starts_with("MSG ")).count();
        assert_eq!(msgs, 16);
        assert!(dm_at < 16, "the DM waited for the whole batch: {order:?}");
    }

    /// A connection speaking IRC, registered as `nick`, its queue emptied.
    async fn irc_user(shared: &Shared, listener: &TcpListener, nick: &str) -> (ConnId, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let id = shared.next_id();
        let session = IrcSession::new(Arc::new(chatproto::irc::IrcConfig::default()));
        let io = ConnIo::new(id, Async::new(server).unwrap(), shared.budget().clone())
            .with_session(Some(session));
        let io = Arc::new(io);
        shared.connect(Outbox::new(io.clone()), None).await;
        for line in [format!("NICK {nick}"), format!("USER {nick} 0 * :{nick}")] {
            let from = io.irc().unwrap().on_line(Ok(line.as_str()));
            let inputs = from
                .commands
                .into_iter()
                .map(|c| Input::Line(id, c))
                .collect();
            shared.handle(id, inputs).await;
        }
        (id, client)
    }

    async fn shared_queue(shared: &Shared, id: ConnId) -> Vec<Arc<[u8]>> {
        shared.hub.lock().await.outboxes[&id].queued_shared()
    }

    /// A broadcast reaches IRC connections of one dialect as one allocation,
    /// as it reaches native ones as another.
    #[test]
    fn a_broadcast_is_encoded_once_per_dialect() {
        let (shared, _wake) = shared_with(&[]);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        smol::block_on(async {
            let (sender, _s) = user(&shared, &listener, "sender").await;
            let (n1, _a) = user(&shared, &listener, "n1").await;
            let (n2, _b) = user(&shared, &listener, "n2").await;
            let (i1, _c) = irc_user(&shared, &listener, "i1").await;
            let (i2, _d) = irc_user(&shared, &listener, "i2").await;
            // The registration lines went into queues nobody drains: skip them.
            let mut before = Vec::new();
            for id in [n1, n2, i1, i2] {
                before.push(shared_queue(&shared, id).await.len());
            }
            // Long enough that queues holding lines keep it as it came (shorter
            // lines behind others are copied into the queue's own chunks).
            let text = "y".repeat(600);
            let say = Input::Line(sender, Command::Say(Text::try_from(text.clone()).unwrap()));
            shared.handle(sender, vec![say]).await;
            let mut got = Vec::new();
            for (id, skip) in [n1, n2, i1, i2].into_iter().zip(before) {
                got.push(shared_queue(&shared, id).await.remove(skip));
            }
            let [n1, n2, i1, i2] = &got[..] else {
                unreachable!()
            };
            assert!(Arc::ptr_eq(n1, n2), "one native encoding");
            assert!(Arc::ptr_eq(i1, i2), "one IRC encoding");
            assert_eq!(&n1[..], format!("MSG * sender {text}\n").as_bytes());
            let irc = String::from_utf8_lossy(i1);
            assert!(
                irc.starts_with(":sender!") && irc.contains(" PRIVMSG &global "),
                "{irc}"
            );
        });
    }

    /// 41 users on queues nobody drains (no writer runs here), with a 16 KiB
    /// `--sendq`: a broadcast from the first overflows the other 40 at once.
    #[test]
    fn a_cascade_of_slow_consumers_is_kicked_in_rounds() {
        const SLOW: usize = 40;
        let args = Args::from_args(
            &["chatd"],
            &["--ephemeral", "--sendq", "16KiB", "--presence-limit", "0"],
        );
        let config = Config::from_args(args.unwrap()).unwrap();
        let (shared, wake) = new_shared(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peers = Vec::new();
        let mut ids = Vec::new();
        smol::block_on(async {
            for i in 0..=SLOW {
                peers.push(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
                let (server, _) = listener.accept().unwrap();
                let id = shared.next_id();
                let io = ConnIo::new(id, Async::new(server).unwrap(), shared.budget().clone());
                shared.connect(Outbox::new(Arc::new(io)), None).await;
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
