//! Each connection's outbound queue ([`Outbox`]), with a byte budget, and the
//! writer that drains it ([`write_loop`]).
//!
//! The fan-out side only ever calls [`Outbox::push`], which never waits: a
//! broadcast costs one push per recipient while the server lock is held, so
//! every queue receives lines in the state machine's order. The writer
//! coalesces whatever is queued into one buffer and one `write_all`.
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
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use chatproto::server::ConnId;
use chatproto::CloseReason;
use futures_lite::AsyncWriteExt;
use smol::{Async, Timer};

/// How long a closing connection may take to flush its queue before its socket
/// is shut down regardless (a peer that stops reading must not pin it), and
/// how long its reader drains input waiting for the peer to close.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// At most this much is gathered into one write; the rest waits for the next.
const MAX_COALESCE: usize = 64 * 1024;

/// What the reader, the writer and the fan-out share about one connection.
#[derive(Debug)]
pub(crate) struct ConnIo {
    pub(crate) id: ConnId,
    pub(crate) stream: Async<TcpStream>,
    queue: Mutex<Queue>,
    /// Bytes queued or being written: [`Outbox::push`] adds, the writer subtracts.
    queued: AtomicUsize,
    /// Set when the budget was exceeded: the writer drops the backlog and
    /// sends only `last_words`.
    overflowed: AtomicBool,
    /// Why the server closed it, once it did (for the reader to stop, and for logs).
    closed: OnceLock<CloseReason>,
}

#[derive(Debug, Default)]
struct Queue {
    lines: VecDeque<Arc<[u8]>>,
    /// No more lines will come: the writer stops once `lines` is empty.
    closed: bool,
    /// The writer, waiting for lines.
    waker: Option<Waker>,
    /// `BYE sendq-exceeded`, sent best effort instead of the backlog.
    last_words: Option<Arc<[u8]>>,
}

impl ConnIo {
    pub(crate) fn new(id: ConnId, stream: Async<TcpStream>) -> Self {
        Self {
            id,
            stream,
            queue: Mutex::default(),
            queued: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            closed: OnceLock::new(),
        }
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

    fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the queue closed and wakes the writer. With `discard`, drops
    /// what is queued too (the writer is gone).
    fn close_queue(&self, discard: bool) {
        let waker = {
            let mut q = self.queue();
            q.closed = true;
            if discard {
                q.lines = VecDeque::new();
            }
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The next line, waiting for one; `None` once the queue is closed and empty.
    async fn next(&self) -> Option<Arc<[u8]>> {
        poll_fn(|cx| {
            let mut q = self.queue();
            if let Some(line) = q.lines.pop_front() {
                return Poll::Ready(Some(line));
            }
            if q.closed {
                return Poll::Ready(None);
            }
            // Empty: give the buffer back so an idle connection holds none.
            q.lines = VecDeque::new();
            match &q.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => q.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// Appends queued lines to `buf` without waiting, up to about `max` bytes.
    fn drain_into(&self, buf: &mut Vec<u8>, max: usize) {
        let mut q = self.queue();
        while buf.len() < max {
            match q.lines.pop_front() {
                Some(line) => buf.extend_from_slice(&line),
                None => break,
            }
        }
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

    /// Queues `bytes` without waiting. Past `budget` bytes (unless the queue is
    /// empty, so one big listing always fits) nothing more is queued and the
    /// caller must kick the connection.
    pub(crate) fn push(&self, bytes: &Arc<[u8]>, budget: usize) -> Result<(), Overflow> {
        let io = &self.io;
        if io.overflowed() {
            return Ok(()); // Already being kicked; the backlog is dropped anyway.
        }
        let len = bytes.len();
        let before = io.queued.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > budget {
            io.queued.fetch_sub(len, Ordering::AcqRel);
            io.overflowed.store(true, Ordering::Release);
            return Err(Overflow);
        }
        let waker = {
            let mut q = io.queue();
            if q.closed {
                // The writer is gone (write error): the reader will report it.
                drop(q);
                io.queued.fetch_sub(len, Ordering::AcqRel);
                return Ok(());
            }
            q.lines.push_back(bytes.clone());
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
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

/// Writes everything queued for `io` until the queue is closed, one coalesced
/// buffer per write. After an overflow it skips the backlog and writes only
/// the last words. Returns on a write error (the peer is gone); either way the
/// queue is closed when it returns, so later pushes are dropped.
pub(crate) async fn write_loop(io: &ConnIo) -> io::Result<()> {
    let result = write_all_queued(io).await;
    io.close_queue(true);
    result
}

async fn write_all_queued(io: &ConnIo) -> io::Result<()> {
    let mut stream = &io.stream;
    while let Some(first) = io.next().await {
        if io.overflowed() {
            break;
        }
        let len = if io.queue().lines.is_empty() {
            stream.write_all(&first).await?;
            first.len()
        } else {
            // One write for everything queued. The buffer is dropped after the
            // write, so an idle connection holds no write buffer.
            let mut buf = Vec::with_capacity(MAX_COALESCE.min(first.len() * 4).max(1024));
            buf.extend_from_slice(&first);
            drop(first);
            io.drain_into(&mut buf, MAX_COALESCE);
            stream.write_all(&buf).await?;
            buf.len()
        };
        io.queued.fetch_sub(len, Ordering::AcqRel);
    }
    if io.overflowed() {
        // Drop the backlog; the kick closes the queue after setting the BYE.
        while io.next().await.is_some() {}
        let last = io.queue().last_words.take();
        if let Some(bye) = last {
            stream.write_all(&bye).await?;
        }
    }
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn conn_io() -> (Arc<ConnIo>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let io = ConnIo::new(ConnId::new(1), Async::new(server).unwrap());
        (Arc::new(io), client)
    }

    fn line(s: &str) -> Arc<[u8]> {
        s.as_bytes().into()
    }

    #[test]
    fn budget_counts_bytes_and_an_empty_queue_takes_anything() {
        let (io, _peer) = conn_io();
        let outbox = Outbox::new(io.clone());
        // One line larger than the budget fits into an empty queue.
        assert!(outbox.push(&line("0123456789"), 4).is_ok());
        assert!(outbox.push(&line("x"), 4).is_err(), "over budget");
        assert!(io.overflowed());
        // Once overflowed, pushes are dropped quietly (the kick is under way).
        assert!(outbox.push(&line("y"), 4).is_ok());
        assert_eq!(io.queue().lines.len(), 1);
    }

    #[test]
    fn writer_flushes_everything_then_stops_when_closed() {
        use std::io::Read;
        let (io, mut peer) = conn_io();
        let outbox = Outbox::new(io.clone());
        for s in ["a\n", "b\n", "c\n"] {
            outbox.push(&line(s), 1 << 20).unwrap();
        }
        let reap = outbox.close(CloseReason::Quit);
        drop(reap); // the writer finishes on its own here
        smol::block_on(write_loop(&io)).unwrap();
        io.shut_down();
        let mut got = String::new();
        peer.read_to_string(&mut got).unwrap();
        assert_eq!(got, "a\nb\nc\n");
        assert_eq!(io.queued.load(Ordering::Acquire), 0, "budget given back");
        // A closed queue drops later pushes.
        let late = Outbox::new(io.clone());
        assert!(late.push(&line("late\n"), 1 << 20).is_ok());
        assert!(io.queue().lines.is_empty());
    }

    #[test]
    fn after_an_overflow_only_the_last_words_are_written() {
        use std::io::Read;
        let (io, mut peer) = conn_io();
        let outbox = Outbox::new(io.clone());
        outbox.push(&line("queued\n"), 8).unwrap();
        assert!(outbox.push(&line("too much\n"), 8).is_err());
        outbox.set_last_words(&line("BYE sendq-exceeded\n"));
        drop(outbox.close(CloseReason::SendqExceeded));
        smol::block_on(write_loop(&io)).unwrap();
        io.shut_down();
        let mut got = String::new();
        peer.read_to_string(&mut got).unwrap();
        assert_eq!(got, "BYE sendq-exceeded\n");
    }
}
