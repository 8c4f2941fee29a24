//! Each connection's outbound queue ([`Outbox`]), with a byte budget, and the
//! writer that drains it ([`write_loop`]).
//!
//! The fan-out side only ever calls [`Outbox::push`], which never waits: a
//! broadcast costs one push per recipient while the server lock is held, so
//! every queue receives lines in the state machine's order. The writer takes
//! whatever is queued (up to 64 KiB) and writes it with one `write_all`.
//!
//! The budget charges what a queued line really costs in memory, not just its
//! bytes: a line pushed into an empty queue is kept as the shared `Arc` it
//! came in (no copy on the hot path of a client that keeps up), while lines
//! queued behind others are copied into chunks of up to 16 KiB that the queue
//! owns, so a backlog of small lines (a client that sends `/ping` and never
//! reads) costs its bytes plus a little, not an allocation and a slot each.
//! Each entry is charged its bytes (a chunk: its capacity) plus [`ENTRY_COST`]
//! for its slot. On top of the per-connection budget (`--sendq`) a global one
//! (`--sendq-total`) bounds all queues together: when it is reached, a push to
//! a connection that already has a backlog counts as an overflow too, while a
//! connection whose queue is empty (it keeps up) always gets its line.
//!
//! The queue is a `VecDeque` behind a `std::sync::Mutex` with the writer's
//! waker, not an `async_channel`: a channel costs about 1.5 KiB per connection
//! even when idle (a 128-byte-aligned, cache-padded allocation of ~770 bytes,
//! plus the unbounded queue's 31-slot block of ~750 bytes, which stays
//! allocated once a line has passed), three times the rest of an idle
//! connection. This queue frees its buffer whenever it runs empty. The policy
//! is the same as with a channel: over budget means a slow consumer (kick it),
//! closed means it is already leaving (ignore it).

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use chatproto::irc::IrcSession;
use chatproto::server::ConnId;
use chatproto::CloseReason;
use futures_rustls::rustls::ServerConfig;
use smol::{Async, Timer};

use crate::tls::TlsSession;

/// How long a closing connection may take to flush its queue before its socket
/// is shut down regardless (a peer that stops reading must not pin it), and
/// how long its reader drains input waiting for the peer to close.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// At most this much is gathered into one write; the rest waits for the next.
const MAX_COALESCE: usize = 64 * 1024;

/// Lines shorter than this are copied into an owned chunk when they queue
/// behind others; longer ones stay shared (copying them would cost more than
/// the slot they take).
const SMALL_LINE: usize = 512;

/// An owned chunk grows (by doubling) up to this many bytes.
const CHUNK_MAX: usize = 16 * 1024;

/// A new owned chunk starts with room for at least this much.
const CHUNK_MIN: usize = 256;

/// What a queue entry costs beyond its bytes: its 32-byte slot, twice over
/// for the slack a growing `VecDeque` keeps, and the allocator's header.
pub(crate) const ENTRY_COST: usize = 64;

/// The byte budgets every queue is held to: one per connection, one for all.
#[derive(Debug)]
pub(crate) struct SendBudget {
    per_conn: usize,
    total_cap: usize,
    /// Bytes charged to all queues together.
    total: AtomicUsize,
}

impl SendBudget {
    pub(crate) fn new(per_conn: usize, total_cap: usize) -> Self {
        Self {
            per_conn,
            total_cap,
            total: AtomicUsize::new(0),
        }
    }

    /// Bytes charged to all queues together.
    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    fn release(&self, cost: usize) {
        self.total.fetch_sub(cost, Ordering::Relaxed);
    }
}

/// What the reader, the writer and the fan-out share about one connection.
#[derive(Debug)]
pub(crate) struct ConnIo {
    pub(crate) id: ConnId,
    pub(crate) stream: Async<TcpStream>,
    budget: Arc<SendBudget>,
    queue: Mutex<Queue>,
    /// The IRC adapter's state, for a connection that speaks IRC: the reader
    /// hands it the client's lines, the fan-out the server's events. Boxed, so
    /// a native connection pays one pointer.
    irc: Option<Box<Mutex<IrcSession>>>,
    /// The TLS session, for a connection accepted on a TLS listener. Boxed,
    /// so a plaintext connection pays one pointer, and its reads and writes
    /// one branch: no lock, no copy.
    tls: Option<Box<TlsSession>>,
    /// Why the server closed it, once it did (for the reader to stop, and for logs).
    closed: OnceLock<CloseReason>,
}

/// One queued piece of output.
#[derive(Debug)]
enum Chunk {
    /// A line as the fan-out handed it over, shared with other recipients.
    Shared(Arc<[u8]>),
    /// Small lines copied together, owned by this queue.
    Owned(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Shared(b) => b,
            Self::Owned(v) => v,
        }
    }

    /// What it is charged against the budgets.
    fn cost(&self) -> usize {
        ENTRY_COST
            + match self {
                Self::Shared(b) => b.len(),
                Self::Owned(v) => v.capacity(),
            }
    }
}

#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// Bytes charged for what is queued or being written: pushes add, the
    /// writer subtracts once written.
    queued: usize,
    /// The budget was exceeded: the backlog is gone and only `last_words`
    /// will be written.
    overflowed: bool,
    /// No more lines will come: the writer stops once `chunks` is empty.
    closed: bool,
    /// The writer, waiting for lines.
    waker: Option<Waker>,
    /// `BYE sendq-exceeded`, sent best effort instead of the backlog.
    last_words: Option<Arc<[u8]>>,
}

impl Queue {
    /// Drops everything queued and returns what it was charged.
    fn discard(&mut self) -> usize {
        let freed: usize = self.chunks.iter().map(Chunk::cost).sum();
        self.chunks = VecDeque::new();
        self.queued -= freed;
        freed
    }

    /// Where `bytes` will go and what that costs.
    fn plan(&self, bytes: &[u8]) -> (Place, usize) {
        let len = bytes.len();
        if self.chunks.is_empty() || len >= SMALL_LINE {
            return (Place::Shared, len + ENTRY_COST);
        }
        match self.chunks.back() {
            Some(Chunk::Owned(v)) if v.len() + len <= CHUNK_MAX => {
                let need = v.len() + len;
                let cap = if need <= v.capacity() {
                    v.capacity()
                } else {
                    need.max(v.capacity() * 2).min(CHUNK_MAX)
                };
                (Place::Append { cap }, cap - v.capacity())
            }
            _ => (Place::NewChunk, CHUNK_MIN + ENTRY_COST),
        }
    }
}

/// Where a pushed line goes.
#[derive(Debug)]
enum Place {
    /// Its own entry, sharing the caller's allocation.
    Shared,
    /// Copied onto the last owned chunk, grown to `cap` bytes if need be.
    Append { cap: usize },
    /// Copied into a new owned chunk.
    NewChunk,
}

impl ConnIo {
    pub(crate) fn new(id: ConnId, stream: Async<TcpStream>, budget: Arc<SendBudget>) -> Self {
        Self {
            id,
            stream,
            budget,
            queue: Mutex::default(),
            irc: None,
            tls: None,
            closed: OnceLock::new(),
        }
    }

    /// The same connection speaking IRC through `session`, if given.
    pub(crate) fn with_session(mut self, session: Option<IrcSession>) -> Self {
        self.irc = session.map(|s| Box::new(Mutex::new(s)));
        self
    }

    /// The same connection over TLS, if given a configuration.
    pub(crate) fn with_tls(mut self, config: Option<Arc<ServerConfig>>) -> Self {
        self.tls = config.map(|c| Box::new(TlsSession::new(c)));
        self
    }

    /// The TLS session, for a connection accepted on a TLS listener.
    pub(crate) fn tls(&self) -> Option<&TlsSession> {
        self.tls.as_deref()
    }

    /// Waits until the server closes this connection (a register timeout, a
    /// shutdown), for a TLS handshake to give up at once. Uses the writer's
    /// waker slot: the writer has not started while the handshake runs.
    pub(crate) async fn closed(&self) {
        poll_fn(|cx| {
            let mut q = self.queue();
            if q.closed {
                return Poll::Ready(());
            }
            match &q.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => q.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await;
    }

    /// Writes all of `bytes` to the socket, through TLS if it has it. One
    /// `poll_fn` for both, so the writer's future (part of every idle
    /// connection) stores two pointers here and no nested future.
    fn write_all<'a>(&'a self, mut bytes: &'a [u8]) -> impl Future<Output = io::Result<()>> + 'a {
        poll_fn(move |cx| match &self.tls {
            None => poll_write_plain(&self.stream, cx, &mut bytes),
            Some(tls) => tls.poll_write_all(&self.stream, cx, &mut bytes),
        })
    }

    /// True for a connection that speaks IRC.
    pub(crate) fn speaks_irc(&self) -> bool {
        self.irc.is_some()
    }

    /// The IRC adapter, locked, for a connection that speaks IRC.
    pub(crate) fn irc(&self) -> Option<MutexGuard<'_, IrcSession>> {
        // The adapter does not panic on any input; a poisoned one is still whole.
        let irc = self.irc.as_ref()?;
        Some(irc.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Why the server closed this connection, if it did.
    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.get()
    }

    /// Sends a FIN after what is already written; reading goes on.
    /// Errors mean it is already closed.
    pub(crate) fn end_writes(&self) {
        let _ = self.stream.get_ref().shutdown(Shutdown::Write);
    }

    /// Ends the socket both ways: wakes a reader waiting for input and a writer
    /// blocked on a full send buffer. Errors mean it is already closed.
    pub(crate) fn shut_down(&self) {
        let _ = self.stream.get_ref().shutdown(Shutdown::Both);
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the queue closed and wakes the writer. With `discard`, drops
    /// what is queued and gives back its charge, in flight included (the
    /// writer is gone).
    fn close_queue(&self, discard: bool) {
        let waker = {
            let mut q = self.queue();
            q.closed = true;
            if discard {
                // Everything charged goes back: the queue and what was in flight.
                q.chunks = VecDeque::new();
                self.budget.release(std::mem::take(&mut q.queued));
            }
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Moves the next chunks (at least one, up to about [`MAX_COALESCE`]
    /// bytes) into `batch`, waiting for one; returns what they were charged.
    /// `None` once the queue is closed and empty, or overflowed and closed.
    async fn next_batch(&self, batch: &mut Vec<Chunk>) -> Option<usize> {
        poll_fn(|cx| {
            let mut q = self.queue();
            if !q.overflowed {
                let mut cost = 0;
                let mut bytes = 0;
                while bytes < MAX_COALESCE {
                    let Some(chunk) = q.chunks.pop_front() else {
                        break;
                    };
                    cost += chunk.cost();
                    bytes += chunk.bytes().len();
                    batch.push(chunk);
                }
                if cost > 0 {
                    return Poll::Ready(Some(cost));
                }
            }
            if q.closed {
                return Poll::Ready(None);
            }
            // Empty: give the buffer back so an idle connection holds none.
            q.chunks = VecDeque::new();
            match &q.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => q.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// Queues `bytes` without waiting. A push that would take the queue past
    /// its budget, or all queues past theirs, is refused unless the queue is
    /// empty (so one big listing always fits, and a client that keeps up is
    /// never cut): the backlog is dropped at once and the caller must kick
    /// the connection.
    pub(crate) fn push(&self, bytes: &Arc<[u8]>) -> Result<(), Overflow> {
        let io = self;
        let budget = &io.budget;
        let waker = {
            let mut q = io.queue();
            if q.overflowed || q.closed {
                // Being kicked (the backlog is dropped anyway), or the writer
                // is gone (the reader will report it).
                return Ok(());
            }
            let (place, cost) = q.plan(bytes);
            let busy = q.queued > 0;
            if busy
                && (q.queued + cost > budget.per_conn || budget.total() + cost > budget.total_cap)
            {
                q.overflowed = true;
                let freed = q.discard();
                budget.release(freed);
                return Err(Overflow);
            }
            let charged = match (place, q.chunks.back_mut()) {
                (Place::Append { cap }, Some(Chunk::Owned(v))) => {
                    let before = v.capacity();
                    v.reserve_exact(cap - v.len());
                    v.extend_from_slice(bytes);
                    v.capacity() - before
                }
                (Place::Shared, _) => {
                    q.chunks.push_back(Chunk::Shared(bytes.clone()));
                    cost
                }
                _ => {
                    let mut v = Vec::with_capacity(CHUNK_MIN.max(bytes.len()));
                    v.extend_from_slice(bytes);
                    let chunk = Chunk::Owned(v);
                    let cost = chunk.cost();
                    q.chunks.push_back(chunk);
                    cost
                }
            };
            q.queued += charged;
            budget.total.fetch_add(charged, Ordering::Relaxed);
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Gives back the charge of chunks that were written.
    fn release(&self, cost: usize) {
        self.queue().queued -= cost;
        self.budget.release(cost);
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        // Whatever is still charged (a task that ended abnormally) goes back
        // to the global budget.
        let q = self.queue.get_mut().unwrap_or_else(PoisonError::into_inner);
        self.budget.release(q.queued);
    }
}

/// The queue was over budget; the connection must be kicked.
#[derive(Debug)]
pub(crate) struct Overflow;

/// The fan-out's handle on one connection's queue.
#[derive(Debug)]
pub(crate) struct Outbox {
    io: Arc<ConnIo>,
}

impl Outbox {
    pub(crate) fn new(io: Arc<ConnIo>) -> Self {
        Self { io }
    }

    /// Queues `bytes` without waiting: see [`ConnIo::push`].
    pub(crate) fn push(&self, bytes: &Arc<[u8]>) -> Result<(), Overflow> {
        self.io.push(bytes)
    }

    /// For a connection being kicked after an [`Overflow`]: the line to send
    /// instead of the backlog (the first one wins).
    pub(crate) fn set_last_words(&self, bytes: &Arc<[u8]>) {
        self.io
            .queue()
            .last_words
            .get_or_insert_with(|| bytes.clone());
    }

    /// Flush what is queued, then close: ends the queue (the writer stops after
    /// the last line) and returns a task that shuts the socket down if the
    /// peer has not taken it all within [`CLOSE_GRACE`].
    pub(crate) fn close(self, reason: CloseReason) -> impl Future<Output = ()> + Send + 'static {
        let _ = self.io.closed.set(reason);
        self.io.close_queue(false);
        reap(Arc::downgrade(&self.io))
    }

    pub(crate) fn io(&self) -> &Arc<ConnIo> {
        &self.io
    }

    /// The shared allocations waiting in the queue, for tests.
    #[cfg(test)]
    pub(crate) fn queued_shared(&self) -> Vec<Arc<[u8]>> {
        let q = self.io.queue();
        q.chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Shared(b) => Some(b.clone()),
                Chunk::Owned(_) => None,
            })
            .collect()
    }

    /// The lines waiting in the queue, for tests.
    #[cfg(test)]
    pub(crate) fn queued_lines(&self) -> Vec<String> {
        let q = self.io.queue();
        let bytes: Vec<u8> = q.chunks.iter().flat_map(|c| c.bytes().to_vec()).collect();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Shuts a closing connection's socket down after the grace period, unless
/// its tasks have already finished and dropped it.
async fn reap(io: Weak<ConnIo>) {
    Timer::after(CLOSE_GRACE).await;
    if let Some(io) = io.upgrade() {
        log::debug!("{:?} did not flush within {CLOSE_GRACE:?}", io.id);
        io.shut_down();
    }
}

/// Writes everything queued for `io` until the queue is closed, one write per
/// batch. After an overflow it writes only the last words. Returns on a write
/// error (the peer is gone); either way the queue is closed when it returns,
/// so later pushes are dropped.
pub(crate) async fn write_loop(io: &ConnIo) -> io::Result<()> {
    let result = write_all_queued(io).await;
    io.close_queue(true);
    result
}

async fn write_all_queued(io: &ConnIo) -> io::Result<()> {
    let mut batch = Vec::new();
    while let Some(cost) = io.next_batch(&mut batch).await {
        if let [only] = &batch[..] {
            io.write_all(only.bytes()).await?;
        } else {
            // One write for the lot. The copy and the chunks are dropped
            // after the write, so an idle connection holds no write buffer.
            let mut buf = Vec::with_capacity(batch.iter().map(|c| c.bytes().len()).sum());
            for chunk in batch.drain(..) {
                buf.extend_from_slice(chunk.bytes());
            }
            io.write_all(&buf).await?;
        }
        batch = Vec::new();
        io.release(cost);
    }
    let last = {
        let mut q = io.queue();
        if q.overflowed {
            q.last_words.take()
        } else {
            None
        }
    };
    if let Some(bye) = last {
        io.write_all(&bye).await?;
    }
    if let Some(tls) = &io.tls {
        // The TLS way to say the stream ends here (not cut off).
        tls.queue_close_notify();
        io.write_all(&[]).await?;
    }
    Ok(())
}

/// Writes `bytes` to a plaintext socket, advancing it past what was written,
/// waiting for writability as needed: what `AsyncWriteExt::write_all` does
/// over `Async`, the same system calls.
fn poll_write_plain(
    stream: &Async<TcpStream>,
    cx: &mut Context<'_>,
    bytes: &mut &[u8],
) -> Poll<io::Result<()>> {
    while !bytes.is_empty() {
        match stream.get_ref().write(bytes) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => *bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready!(stream.poll_writable(cx))?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn conn_io(budget: &Arc<SendBudget>) -> (Arc<ConnIo>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let io = ConnIo::new(ConnId::new(1), Async::new(server).unwrap(), budget.clone());
        (Arc::new(io), client)
    }

    fn budget(per_conn: usize, total: usize) -> Arc<SendBudget> {
        Arc::new(SendBudget::new(per_conn, total))
    }

    fn line(s: &str) -> Arc<[u8]> {
        s.as_bytes().into()
    }

    /// Runs the writer to its end and returns what the peer received.
    fn written(io: &ConnIo, mut peer: TcpStream) -> String {
        smol::block_on(write_loop(io)).unwrap();
        io.shut_down();
        let mut got = String::new();
        peer.read_to_string(&mut got).unwrap();
        got
    }

    #[test]
    fn budget_counts_bytes_and_an_empty_queue_takes_anything() {
        let b = budget(100, usize::MAX);
        let (io, _peer) = conn_io(&b);
        let outbox = Outbox::new(io.clone());
        // One line larger than the budget fits into an empty queue.
        let big = line(&"x".repeat(1000));
        assert!(outbox.push(&big).is_ok());
        assert_eq!(b.total(), 1000 + ENTRY_COST);
        assert!(outbox.push(&line("x")).is_err(), "over budget");
        assert!(io.queue().overflowed);
        assert!(
            io.queue().chunks.is_empty(),
            "the backlog is dropped at once"
        );
        assert_eq!((io.queue().queued, b.total()), (0, 0), "and its charge");
        // Once overflowed, pushes are dropped quietly (the kick is under way).
        assert!(outbox.push(&line("y")).is_ok());
        assert!(io.queue().chunks.is_empty());
    }

    #[test]
    fn small_lines_behind_others_share_chunks_and_are_charged_what_they_hold() {
        let b = budget(1 << 20, usize::MAX);
        let (io, _peer) = conn_io(&b);
        let outbox = Outbox::new(io.clone());
        let pong = line("PONG a\n");
        for _ in 0..10_000 {
            outbox.push(&pong).unwrap();
        }
        let q = io.queue();
        // 70,000 bytes in a few 16 KiB chunks, not 10,000 entries.
        assert!(q.chunks.len() <= 7, "{} chunks", q.chunks.len());
        let held: usize = q.chunks.iter().map(|c| c.bytes().len()).sum();
        assert_eq!(held, 70_000);
        let real: usize = q.chunks.iter().map(Chunk::cost).sum();
        assert_eq!(q.queued, real, "charged exactly what the chunks cost");
        assert!(q.queued < held * 13 / 10, "charge {} for {held}", q.queued);
        assert_eq!(b.total(), q.queued);
    }

    #[test]
    fn the_global_budget_cuts_backlogs_but_not_clients_that_keep_up() {
        let b = budget(1 << 20, 4096);
        let (slow, _p1) = conn_io(&b);
        let (fast, _p2) = conn_io(&b);
        let slow_box = Outbox::new(slow.clone());
        let fast_box = Outbox::new(fast.clone());
        let chunk = line(&"z".repeat(1000));
        let mut cut = false;
        for _ in 0..10 {
            if slow_box.push(&chunk).is_err() {
                cut = true;
                break;
            }
        }
        assert!(cut, "a backlog past the global budget is an overflow");
        assert_eq!(b.total(), 0, "its charge is given back");
        for _ in 0..3 {
            slow_box.push(&chunk).unwrap(); // already overflowed: ignored
        }
        // An empty queue always takes its line, even when the total is high.
        let (other, _p3) = conn_io(&b);
        let other_box = Outbox::new(other);
        for _ in 0..3 {
            other_box.push(&chunk).unwrap();
        }
        assert!(b.total() + chunk.len() > 4096);
        assert!(fast_box.push(&chunk).is_ok());
        drop((other_box, fast_box));
    }

    #[test]
    fn a_writer_that_fails_gives_back_the_whole_charge() {
        let b = budget(1 << 20, usize::MAX);
        let (io, peer) = conn_io(&b);
        let outbox = Outbox::new(io.clone());
        outbox.push(&line("first\n")).unwrap();
        for _ in 0..100 {
            outbox.push(&line("queued behind\n")).unwrap();
        }
        assert!(b.total() > 0);
        // The peer is gone: the first write fails and the writer stops.
        drop(peer);
        io.shut_down();
        assert!(smol::block_on(write_loop(&io)).is_err() || io.queue().closed);
        assert_eq!(io.queue().queued, 0);
        assert_eq!(b.total(), 0, "the global budget got everything back");
    }

    #[test]
    fn writer_flushes_everything_then_stops_when_closed() {
        let b = budget(1 << 20, usize::MAX);
        let (io, peer) = conn_io(&b);
        let outbox = Outbox::new(io.clone());
        for s in ["a\n", "b\n", "c\n"] {
            outbox.push(&line(s)).unwrap();
        }
        let reap = outbox.close(CloseReason::Quit);
        drop(reap); // the writer finishes on its own here
        assert_eq!(written(&io, peer), "a\nb\nc\n");
        assert_eq!(io.queue().queued, 0, "budget given back");
        assert_eq!(b.total(), 0);
        // A closed queue drops later pushes.
        let late = Outbox::new(io.clone());
        assert!(late.push(&line("late\n")).is_ok());
        assert!(io.queue().chunks.is_empty());
    }

    #[test]
    fn after_an_overflow_only_the_last_words_are_written() {
        let b = budget(8, usize::MAX);
        let (io, peer) = conn_io(&b);
        let outbox = Outbox::new(io.clone());
        outbox.push(&line("queued\n")).unwrap();
        assert!(outbox.push(&line("too much\n")).is_err());
        outbox.set_last_words(&line("BYE sendq-exceeded\n"));
        drop(outbox.close(CloseReason::SendqExceeded));
        assert_eq!(written(&io, peer), "BYE sendq-exceeded\n");
        assert_eq!(b.total(), 0);
    }
}
