//! A socket-free harness for the server state machine: named fake connections,
//! an explicit clock, and delivered lines as text.

#![allow(dead_code, unreachable_pub)] // each test file uses its own part of the harness

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use chatproto::server::{
    Answer, ConnId, Effect, Input, PeerKey, Request, RequestId, Server, ServerConfig, StoreOp, Time,
};
use chatproto::{parse_line, CloseReason, Refusal};

pub struct World {
    pub server: Server,
    pub now: Instant,
    /// The wall clock given with every input, in ms since the Unix epoch;
    /// 0 (unknown) unless a test sets it. `advance` moves it too.
    pub unix_ms: u64,
    next_id: u64,
    ids: HashMap<String, ConnId>,
    inbox: HashMap<ConnId, VecDeque<String>>,
    pub closed: BTreeSet<ConnId>,
    /// Requests returned and not answered yet, oldest first.
    pub requests: VecDeque<(RequestId, Request)>,
    /// Store writes returned, in order.
    pub stored: Vec<StoreOp>,
}

impl World {
    pub fn new() -> Self {
        Self::with_config(ServerConfig::default())
    }

    pub fn with_config(config: ServerConfig) -> Self {
        Self {
            server: Server::new(config),
            now: Instant::now(),
            unix_ms: 0,
            next_id: 1,
            ids: HashMap::new(),
            inbox: HashMap::new(),
            closed: BTreeSet::new(),
            requests: VecDeque::new(),
            stored: Vec::new(),
        }
    }

    /// The connection called `label`, connecting it on first use.
    pub fn conn(&mut self, label: &str) -> ConnId {
        if let Some(id) = self.ids.get(label) {
            return *id;
        }
        let id = ConnId::new(self.next_id);
        self.next_id += 1;
        self.ids.insert(label.to_owned(), id);
        self.input(Input::Connected(id));
        id
    }

    /// Connects `label` from `peer` (it must not be connected yet).
    pub fn conn_from(&mut self, label: &str, peer: u64) -> ConnId {
        assert!(
            !self.ids.contains_key(label),
            "{label} is connected already"
        );
        let id = ConnId::new(self.next_id);
        self.next_id += 1;
        self.ids.insert(label.to_owned(), id);
        self.input(Input::ConnectedFrom(id, PeerKey::new(peer)));
        id
    }

    /// The oldest unanswered request.
    pub fn request(&mut self) -> (RequestId, Request) {
        self.requests.pop_front().expect("a request was returned")
    }

    /// Answers the oldest unanswered request.
    pub fn answer(&mut self, answer: Answer) -> Request {
        let (id, request) = self.request();
        self.input(Input::Answer(id, answer));
        request
    }

    /// Connects `label` and registers it as `label`, discarding the greeting
    /// lines it and others receive.
    pub fn user(&mut self, label: &str) -> ConnId {
        let id = self.conn(label);
        self.send(label, label);
        self.take_all();
        id
    }

    /// Sends one client line as the driver would: parsed, or refused.
    pub fn send(&mut self, label: &str, line: &str) {
        let id = self.conn(label);
        let input = match parse_line(line) {
            Ok(cmd) => Input::Line(id, cmd),
            Err(e) => Input::Refused(id, Refusal::from(e)),
        };
        self.input(input);
    }

    pub fn drop_conn(&mut self, label: &str, reason: CloseReason) {
        let id = self.conn(label);
        self.input(Input::Disconnected(id, reason));
    }

    /// Lets `by` pass, ticking once a second as a driver does.
    pub fn advance(&mut self, by: Duration) {
        let mut left = by;
        while !left.is_zero() {
            let step = left.min(Duration::from_secs(1));
            left -= step;
            self.now += step;
            if self.unix_ms != 0 {
                self.unix_ms += u64::try_from(step.as_millis()).expect("a second fits");
            }
            self.input(Input::Tick);
        }
    }

    /// Lets `by` pass with no tick until its end: the driver did not run.
    pub fn stall(&mut self, by: Duration) {
        self.now += by;
        self.input(Input::Tick);
    }

    pub fn input(&mut self, input: Input) -> Vec<Effect> {
        let time = Time {
            instant: self.now,
            unix_ms: self.unix_ms,
        };
        let effects = self.server.handle(time, input);
        for e in &effects {
            match e {
                Effect::Deliver { to, event } => {
                    assert!(!self.closed.contains(to), "delivery to closed {to:?}");
                    let text = std::str::from_utf8(event.line()).expect("server output is UTF-8");
                    let queue = self.inbox.entry(*to).or_default();
                    for line in text.split_terminator('\n') {
                        queue.push_back(line.to_owned());
                    }
                }
                Effect::Close { conn, .. } => {
                    self.closed.insert(*conn);
                }
                Effect::Store(op) => self.stored.push(op.clone()),
                Effect::Request { id, request } => {
                    self.requests.push_back((*id, request.clone()));
                }
            }
        }
        if let Err(e) = self.server.check_invariants() {
            panic!("invariant broken: {e}");
        }
        effects
    }

    /// Lines delivered to `label` since the last take.
    pub fn take(&mut self, label: &str) -> Vec<String> {
        let id = self.conn(label);
        self.inbox.entry(id).or_default().drain(..).collect()
    }

    /// The next line delivered to `label`, if any.
    pub fn next(&mut self, label: &str) -> Option<String> {
        let id = self.conn(label);
        self.inbox.entry(id).or_default().pop_front()
    }

    pub fn take_all(&mut self) {
        self.inbox.clear();
    }

    pub fn is_closed(&mut self, label: &str) -> bool {
        let id = self.conn(label);
        self.closed.contains(&id)
    }

    /// Labels with undelivered lines, for checking nothing unexpected arrived.
    pub fn pending(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = self
            .ids
            .iter()
            .filter_map(|(label, id)| {
                let q = self.inbox.get(id)?;
                (!q.is_empty()).then(|| (label.clone(), q.iter().cloned().collect()))
            })
            .collect();
        out.sort();
        out
    }
}
