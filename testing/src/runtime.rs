//! What every scenario shares: the executor, the target address, run-wide
//! counters, start/stop signals and the progress line.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_lock::Semaphore;
use chatproto::GroupName;
use futures_lite::future;
use serde::Serialize;
use smol::{Executor, Timer};

use crate::client::{Behavior, Conn, Dialect, DialectMode, End, Quiet};
use crate::report::{latency_cell, Table};
use crate::stats::{Batch, SharedLatency, Summary};
use crate::transport::TlsSettings;

/// Process-wide settings and handles, shared by every client task.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) ex: Arc<Executor<'static>>,
    pub(crate) addr: SocketAddr,
    /// chatd's IRC listener (`--irc-addr`).
    pub(crate) irc_addr: Option<SocketAddr>,
    /// Which clients speak IRC (`--dialect`).
    pub(crate) dialect: DialectMode,
    /// `--tls`: every connection (native and IRC) does a TLS handshake first.
    pub(crate) tls: Option<TlsSettings>,
    /// The clock every timestamp in a message is relative to.
    pub(crate) epoch: Instant,
    /// Bounds connects (and registrations) in flight, so that thousands of
    /// clients do not overrun the server's listen backlog at once.
    pub(crate) connect_slots: Semaphore,
    /// How long one connect plus registration may take.
    pub(crate) connect_timeout: Duration,
    /// The whole run ends by then, whatever happens.
    pub(crate) deadline: Instant,
    /// Distinguishes this process's user names from another run's.
    pub(crate) tag: String,
    pub(crate) progress: bool,
}

impl Ctx {
    /// A unique user name: `prefix`, this process's tag, `i`.
    pub(crate) fn name(&self, prefix: &str, i: usize) -> String {
        format!("{prefix}{}-{i}", self.tag)
    }

    /// `t`, but never past the run's deadline.
    pub(crate) fn bound(&self, t: Instant) -> Instant {
        t.min(self.deadline)
    }

    /// The same settings with `n` connects in flight at once: `storm`
    /// measures a burst of connects far wider than the global default.
    pub(crate) fn with_connect_concurrency(&self, n: usize) -> Self {
        Self {
            ex: self.ex.clone(),
            addr: self.addr,
            irc_addr: self.irc_addr,
            dialect: self.dialect,
            tls: self.tls.clone(),
            epoch: self.epoch,
            connect_slots: Semaphore::new(n.max(1)),
            connect_timeout: self.connect_timeout,
            deadline: self.deadline,
            tag: self.tag.clone(),
            progress: self.progress,
        }
    }
}

/// Runs `make(executor)` to completion on `threads` threads (the calling
/// thread included). Tasks still alive afterwards are dropped, which closes
/// their sockets.
pub(crate) fn run_on_threads<T, F>(
    threads: usize,
    make: impl FnOnce(Arc<Executor<'static>>) -> F,
) -> T
where
    F: Future<Output = T>,
{
    let ex = Arc::new(Executor::new());
    let (done_tx, done_rx) = async_channel::bounded::<()>(1);
    std::thread::scope(|s| {
        for _ in 1..threads.max(1) {
            let (ex, done_rx) = (ex.clone(), done_rx.clone());
            // Runs tasks until `done_tx` is dropped (recv then fails).
            s.spawn(move || smol::block_on(ex.run(done_rx.recv())));
        }
        let out = smol::block_on(ex.run(make(ex.clone())));
        drop(done_tx);
        out
    })
}

/// A one-shot signal to many tasks: firing closes a channel, which wakes
/// every waiter at once.
#[derive(Debug)]
pub(crate) struct Signal {
    tx: async_channel::Sender<()>,
    rx: async_channel::Receiver<()>,
}

impl Signal {
    pub(crate) fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Self { tx, rx }
    }

    pub(crate) fn fire(&self) {
        self.tx.close();
    }

    /// A handle whose `recv()` completes (with an error) once fired.
    pub(crate) fn waiter(&self) -> async_channel::Receiver<()> {
        self.rx.clone()
    }
}

/// Counters of one run, updated by every client (once per socket read, not
/// per line) and read by the progress line and the report.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Connects that failed with EMFILE/ENFILE (out of file descriptors).
    pub(crate) fd_exhausted: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) lines_in: AtomicU64,
    /// Lines that did not frame or parse as server events.
    pub(crate) malformed: AtomicU64,
    /// Requests or messages sent.
    pub(crate) sent: AtomicU64,
    /// Responses or (first-time) deliveries received.
    pub(crate) received: AtomicU64,
    /// Connections the server closed before the run ended.
    pub(crate) closed_early: AtomicU64,
    /// Per connection that registered: TCP connect plus TLS handshake.
    connect: SharedLatency,
    /// The connections were TLS.
    tls: AtomicBool,
    /// The first few distinct failures, for the report.
    errors: Mutex<Vec<String>>,
}

/// Failures kept verbatim in a report; the rest are only counted.
const MAX_ERRORS_KEPT: usize = 8;

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Relaxed);
        }
    }

    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }

    /// Records how long a connection took to become usable (`tls`: its
    /// handshake included).
    pub(crate) fn record_connect(&self, took: Duration, tls: bool) {
        let mut batch = Batch::default();
        batch.push(took);
        self.connect.flush(&mut batch);
        if tls {
            self.set_tls();
        }
    }

    /// Marks the run's connections as TLS.
    pub(crate) fn set_tls(&self) {
        self.tls.store(true, Relaxed);
    }

    pub(crate) fn error(&self, what: String) {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() < MAX_ERRORS_KEPT && !e.contains(&what) {
            e.push(what);
        }
    }

    pub(crate) fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// An error naming the first failure if no connection succeeded: such a
    /// run measured nothing, and must not pass for one that did.
    pub(crate) fn require_connected(&self, addr: SocketAddr) -> Result<(), String> {
        if Self::get(&self.connected) > 0 {
            return Ok(());
        }
        let why = self
            .errors()
            .into_iter()
            .next()
            .unwrap_or_else(|| "no connect finished in time".to_owned());
        Err(format!("no connection to {addr} succeeded ({why})"))
    }

    pub(crate) fn totals(&self) -> Totals {
        Totals {
            connections_ok: Self::get(&self.connected),
            connections_failed: Self::get(&self.failed),
            fd_exhausted: Self::get(&self.fd_exhausted),
            bytes_sent: Self::get(&self.bytes_out),
            bytes_received: Self::get(&self.bytes_in),
            lines_received: Self::get(&self.lines_in),
            malformed_lines: Self::get(&self.malformed),
            closed_early: Self::get(&self.closed_early),
            tls: self.tls.load(Relaxed),
            connect: self.connect.snapshot().summary(),
            errors: self.errors(),
        }
    }
}

/// The counters every report carries.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Totals {
    pub(crate) connections_ok: u64,
    pub(crate) connections_failed: u64,
    pub(crate) fd_exhausted: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) lines_received: u64,
    pub(crate) malformed_lines: u64,
    pub(crate) closed_early: u64,
    /// The connections were TLS (`--tls`).
    pub(crate) tls: bool,
    /// TCP connect (plus, with TLS, the handshake) of each connection that
    /// registered: the time before a TLS client counts as connected, kept
    /// apart from the latencies measured once it is.
    pub(crate) connect: Summary,
    pub(crate) errors: Vec<String>,
}

impl Totals {
    /// Adds the notes every report's table ends with: file descriptors running
    /// out, and each error seen.
    pub(crate) fn add_notes(&self, mut table: Table) -> Table {
        if self.tls && self.connect.count > 0 {
            table = table.note(format!(
                "TLS: connect + handshake p50 / p90 / p95 / p99 / max: {}",
                latency_cell(&self.connect)
            ));
        }
        if self.fd_exhausted > 0 {
            table = table.note(format!(
                "{} connects ran out of file descriptors (EMFILE): raise `ulimit -n`",
                self.fd_exhausted
            ));
        }
        for e in &self.errors {
            table = table.note(e.clone());
        }
        table
    }
}

/// What a run and its client tasks share: the counters, the clients'
/// reports of whether they registered, the start and stop signals, and the
/// measurement window, set when the start fires.
#[derive(Debug)]
pub(crate) struct Stage {
    pub(crate) counters: Arc<Counters>,
    ready_tx: async_channel::Sender<bool>,
    ready_rx: async_channel::Receiver<bool>,
    pub(crate) start: Signal,
    pub(crate) stop: Signal,
    window: OnceLock<(Instant, Instant)>,
}

impl Stage {
    pub(crate) fn new() -> Self {
        let (ready_tx, ready_rx) = async_channel::unbounded();
        Self {
            counters: Arc::new(Counters::default()),
            ready_tx,
            ready_rx,
            start: Signal::new(),
            stop: Signal::new(),
            window: OnceLock::new(),
        }
    }

    /// Opens a connection and reports whether it registered, which
    /// [`Stage::await_ready`] counts.
    pub(crate) async fn open(
        &self,
        ctx: &Ctx,
        name: String,
        group: Option<&GroupName>,
        rcvbuf: Option<usize>,
    ) -> Option<Conn> {
        self.open_as(ctx, Dialect::Native, name, group, rcvbuf)
            .await
    }

    /// [`Stage::open`] in `dialect`.
    pub(crate) async fn open_as(
        &self,
        ctx: &Ctx,
        dialect: Dialect,
        name: String,
        group: Option<&GroupName>,
        rcvbuf: Option<usize>,
    ) -> Option<Conn> {
        let opened = Conn::open(ctx, &self.counters, dialect, name, group, rcvbuf).await;
        self.report_ready(opened.is_ok()).await;
        opened.ok()
    }

    /// Reports whether a client registered, for one that opens its
    /// connection itself.
    pub(crate) async fn report_ready(&self, registered: bool) {
        let _ = self.ready_tx.send(registered).await;
    }

    /// Reads `conn` (and drops what arrives: other registrations' `JOIN`s)
    /// until the start fires or the run's deadline passes; the window if it
    /// was set by then.
    pub(crate) async fn await_start(
        &self,
        ctx: &Ctx,
        conn: &mut Conn,
    ) -> Option<(Instant, Instant)> {
        let waiter = self.start.waiter();
        let _ = conn
            .drive(
                &self.counters,
                &mut Quiet,
                pin!(waiter.recv()),
                ctx.deadline,
            )
            .await;
        self.window()
    }

    /// [`Stage::open`], then [`Stage::await_start`]: the prelude of a client
    /// that acts only once the measurement starts.
    pub(crate) async fn open_and_await_start(
        &self,
        ctx: &Ctx,
        name: String,
        rcvbuf: Option<usize>,
    ) -> Option<(Conn, (Instant, Instant))> {
        let mut conn = self.open(ctx, name, None, rcvbuf).await?;
        let window = self.await_start(ctx, &mut conn).await?;
        Some((conn, window))
    }

    /// Runs `b` on `conn` (see [`Conn::drive`]) until the stop fires, the
    /// run's deadline passes, or the server closes the connection.
    pub(crate) async fn drive_until_stop<B: Behavior>(
        &self,
        ctx: &Ctx,
        conn: &mut Conn,
        b: &mut B,
    ) -> End {
        let waiter = self.stop.waiter();
        conn.drive(&self.counters, b, pin!(waiter.recv()), ctx.deadline)
            .await
    }

    /// [`Stage::drive_until_stop`] for a client that sends as fast as the
    /// server lets it (see [`Conn::pump`]).
    pub(crate) async fn pump_until_stop<B: Behavior>(
        &self,
        ctx: &Ctx,
        conn: &mut Conn,
        b: &mut B,
    ) -> End {
        let waiter = self.stop.waiter();
        conn.pump(&self.counters, b, pin!(waiter.recv()), ctx.deadline)
            .await
    }

    /// Starts the progress line of this run's counters, in phase `phase`.
    pub(crate) fn progress(&self, ctx: &Ctx, label: String, phase: &'static str) -> Progress {
        Progress::spawn(ctx, label, phase, self.counters.clone())
    }

    /// Waits until `n` clients have reported whether they registered, or
    /// `deadline` passes.
    pub(crate) async fn await_ready(&self, n: usize, deadline: Instant) {
        for _ in 0..n {
            if until(deadline, self.ready_rx.recv()).await.is_none() {
                break;
            }
        }
    }

    /// Sets the window, from now for `duration` (never past the run's
    /// deadline), and fires the start; returns the window.
    pub(crate) fn begin(&self, ctx: &Ctx, duration: Duration) -> (Instant, Instant) {
        let from = Instant::now();
        let window = (from, ctx.bound(from + duration));
        let _ = self.window.set(window);
        self.start.fire();
        window
    }

    /// The window, once [`Stage::begin`] set it.
    pub(crate) fn window(&self) -> Option<(Instant, Instant)> {
        self.window.get().copied()
    }
}

/// The progress line on stderr: printed every second (rewritten in place on
/// a terminal, one line per 5 s otherwise) until [`Progress::finish`].
#[derive(Debug)]
pub(crate) struct Progress {
    phase: Arc<Mutex<&'static str>>,
    stop: Signal,
    task: Option<smol::Task<()>>,
}

impl Progress {
    /// Starts the line (unless `--quiet`) in phase `phase`.
    pub(crate) fn spawn(
        ctx: &Ctx,
        label: String,
        phase: &'static str,
        counters: Arc<Counters>,
    ) -> Self {
        let phase = Arc::new(Mutex::new(phase));
        let stop = Signal::new();
        let task = spawn_progress(ctx, label, phase.clone(), counters, &stop);
        Self { phase, stop, task }
    }

    /// Sets the phase shown on the line.
    pub(crate) fn set_phase(&self, now: &'static str) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    /// Stops the line and waits until it is cleared.
    pub(crate) async fn finish(self) {
        self.stop.fire();
        if let Some(t) = self.task {
            t.await;
        }
    }
}

/// Prints the progress line until `stop` fires.
fn spawn_progress(
    ctx: &Ctx,
    label: String,
    phase: Arc<Mutex<&'static str>>,
    counters: Arc<Counters>,
    stop: &Signal,
) -> Option<smol::Task<()>> {
    if !ctx.progress {
        return None;
    }
    let stop = stop.waiter();
    let deadline = ctx.deadline;
    Some(ctx.ex.spawn(async move {
        let tty = std::io::stderr().is_terminal();
        let every = if tty { 1 } else { 5 };
        let mut tick = 0u64;
        let mut last = (0u64, 0u64);
        while Instant::now() < deadline {
            let stopped = future::or(async { stop.recv().await.is_err() }, async {
                Timer::after(Duration::from_secs(every)).await;
                false
            })
            .await;
            if stopped {
                break;
            }
            tick += every;
            let c = &counters;
            let (sent, recv) = (Counters::get(&c.sent), Counters::get(&c.received));
            let phase = *phase.lock().unwrap_or_else(|p| p.into_inner());
            let line = format!(
                "{label} {tick:>4}s {phase:<10} conns {}+{} failed, sent {sent} (+{}/s), received {recv} (+{}/s), in {:.1} MB",
                Counters::get(&c.connected),
                Counters::get(&c.failed),
                (sent - last.0) / every,
                (recv - last.1) / every,
                Counters::get(&c.bytes_in) as f64 / 1e6,
            );
            last = (sent, recv);
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
        }
        if tty {
            eprint!("\r\x1b[2K");
        }
    }))
}

/// Waits until no line has arrived at any client for `quiet` (the burst of
/// `JOIN`s that follows many registrations has been delivered), or `max` has
/// passed. Returns how long it waited.
pub(crate) async fn settle(counters: &Counters, quiet: Duration, max: Duration) -> Duration {
    let start = Instant::now();
    let mut last = Counters::get(&counters.lines_in);
    let step = Duration::from_millis(50);
    let mut still = Duration::ZERO;
    while start.elapsed() < max && still < quiet {
        Timer::after(step).await;
        let now = Counters::get(&counters.lines_in);
        if now == last {
            still += step;
        } else {
            still = Duration::ZERO;
            last = now;
        }
    }
    start.elapsed()
}

/// `fut`'s output, or `None` if `deadline` comes first.
pub(crate) async fn until<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        Timer::at(deadline).await;
        None
    })
    .await
}

/// A byte count as chatd's flags write it: `65536`, `64KiB`, `1MiB`, `1GiB`
/// (also `k`, `KB`, `M`, ... as powers of 1024).
pub(crate) fn parse_size(what: &str, s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return Err(format!(
                "{what}: unknown unit in {s:?} (use KiB, MiB or GiB)"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{what}: {s:?} is not a size like 65536 or 64KiB"))?;
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{what}: {s:?} is zero or too large"))
}

/// Seconds as a `Duration`, refusing negative, NaN or absurd values.
pub(crate) fn secs(what: &str, s: f64) -> Result<Duration, String> {
    if s.is_finite() && (0.0..=86_400.0).contains(&s) {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!(
            "{what} must be between 0 and 86400 seconds, not {s}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_chatd_flags() {
        assert_eq!(parse_size("--sendq", "65536"), Ok(65536));
        assert_eq!(parse_size("--sendq", "64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("--sendq", "1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("--sendq", " 2 g "), Ok(2 << 30));
        for bad in ["", "MiB", "0", "1 TiB", "-1", "1.5MiB", "99999999999999GiB"] {
            assert!(parse_size("--sendq", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_connection_is_an_error_naming_the_first_failure() {
        let c = Counters::default();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        c.error("connect: Connection refused (os error 111)".into());
        let e = c.require_connected(addr).unwrap_err();
        assert_eq!(
            e,
            "no connection to 127.0.0.1:9 succeeded (connect: Connection refused (os error 111))"
        );
        Counters::add(&c.connected, 1);
        assert!(c.require_connected(addr).is_ok());
    }
}
