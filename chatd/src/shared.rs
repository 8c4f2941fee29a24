//! The state every task shares ([`Shared`]): the state machine and the map from
//! connection to [`Outbox`] behind one `async_lock::Mutex`, and the fan-out of
//! effects.
//!
//! The lock is taken for one batch of inputs, the effects are queued with
//! [`Outbox::push`] (never waiting) while it is held, and it is released before
//! anything awaits a socket. One lock for both the state and the queues makes
//! the state machine's order the order of every queue.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_lock::Mutex;
use chatproto::server::{ConnId, Effect, Input, Server};
use chatproto::{CloseReason, Event};
use smol::Executor;

use crate::config::Config;
use crate::outbox::Outbox;

/// Shared by the listeners, every connection task and the ticker.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    hub: Mutex<Hub>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Hub {
    server: Server,
    outboxes: HashMap<ConnId, Outbox>,
    shutting_down: bool,
    /// Bytes one connection may have queued (`--sendq`).
    sendq: usize,
    /// Runs the tasks that reap connections too slow to close.
    ex: Arc<Executor<'static>>,
}

impl Shared {
    pub(crate) fn new(config: Config, ex: Arc<Executor<'static>>) -> Self {
        let server = Server::new(config.server.clone());
        let sendq = config.sendq;
        Self {
            config,
            hub: Mutex::new(Hub {
                server,
                outboxes: HashMap::new(),
                shutting_down: false,
                sendq,
                ex,
            }),
            next_id: AtomicU64::new(1),
        }
    }

    /// A connection id no other connection had.
    pub(crate) fn next_id(&self) -> ConnId {
        ConnId::new(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Adds a connection and greets it, or, during shutdown, says goodbye.
    pub(crate) async fn connect(&self, outbox: Outbox) {
        let now = Instant::now();
        let mut hub = self.hub.lock().await;
        let id = outbox.io().id;
        if hub.shutting_down {
            let bye = Event::Bye(CloseReason::ServerShutdown).to_bytes();
            let _ = outbox.push(&bye.into(), usize::MAX);
            hub.spawn(outbox.close(CloseReason::ServerShutdown));
            return;
        }
        hub.outboxes.insert(id, outbox);
        let effects = hub.server.handle(now, Input::Connected(id));
        hub.apply(now, effects);
    }

    /// Hands a batch of inputs to the state machine and queues the effects.
    pub(crate) async fn handle(&self, inputs: Vec<Input>) {
        let now = Instant::now();
        let mut hub = self.hub.lock().await;
        for input in inputs {
            hub.handle(now, input);
        }
    }

    /// The connection is gone (EOF, error, panic): tell the others, and let its
    /// writer flush what is queued and stop.
    pub(crate) async fn disconnect(&self, id: ConnId, reason: CloseReason) {
        let now = Instant::now();
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
        let now = Instant::now();
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

    fn handle(&mut self, now: Instant, input: Input) {
        let newcomer = match &input {
            Input::Line(id, _) if self.server.name_of(*id).is_none() => Some(*id),
            _ => None,
        };
        let effects = self.server.handle(now, input);
        if let Some(id) = newcomer {
            if let Some(name) = self.server.name_of(id) {
                log::info!("{id:?} registered as {name}");
            }
        }
        self.apply(now, effects);
    }

    /// Carries out effects in order. Queues over budget are kicked, and the
    /// kick's own effects (its `BYE`, everyone's `PART`) are carried out too.
    fn apply(&mut self, now: Instant, effects: Vec<Effect>) {
        let mut kicks = Vec::new();
        self.apply_batch(effects, None, &mut kicks);
        while let Some(id) = kicks.pop() {
            log::info!("{id:?} is a slow consumer: kicking");
            let effects = self
                .server
                .handle(now, Input::Kick(id, CloseReason::SendqExceeded));
            self.apply_batch(effects, Some(id), &mut kicks);
        }
    }

    fn apply_batch(
        &mut self,
        effects: Vec<Effect>,
        kicked: Option<ConnId>,
        kicks: &mut Vec<ConnId>,
    ) {
        for effect in effects {
            match effect {
                Effect::Deliver { to, bytes } => {
                    let Some(outbox) = self.outboxes.get(&to) else {
                        continue; // Closed in this very batch; nothing to do.
                    };
                    if Some(to) == kicked {
                        outbox.set_last_words(&bytes);
                    } else if outbox.push(&bytes, self.sendq).is_err() {
                        kicks.push(to);
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
