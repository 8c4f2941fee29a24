//! Each connection's outbound queue ([`Outbox`]), with a byte budget, and the
//! writer that drains it ([`write_loop`]).
//!
//! The fan-out side only ever calls [`Outbox::push`], which never waits: a
//! broadcast costs one `try_send` per recipient while the server lock is held,
//! so every queue receives lines in the state machine's order. The writer
//! coalesces whatever is queued into one buffer and one `write_all`.

use std::future::Future;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_channel::{Receiver, Sender, TrySendError};
use chatproto::server::ConnId;
use chatproto::CloseReason;
use futures_lite::AsyncWriteExt;
use smol::{Async, Timer};

/// How long a closing connection may take to flush its queue before its socket
/// is shut down regardless (a peer that stops reading must not pin it).
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// At most this much is gathered into one write; the rest waits for the next.
const MAX_COALESCE: usize = 64 * 1024;

/// What the reader, the writer and the fan-out share about one connection.
#[derive(Debug)]
pub(crate) struct ConnIo {
    pub(crate) id: ConnId,
    pub(crate) stream: Async<TcpStream>,
    /// Bytes queued or being written: [`Outbox::push`] adds, the writer subtracts.
    queued: AtomicUsize,
    /// Set when the budget was exceeded: the writer drops the backlog and
    /// sends only `last_words`.
    overflowed: AtomicBool,
    /// `BYE sendq-exceeded`, sent best effort instead of the backlog.
    last_words: Mutex<Option<Arc<[u8]>>>,
    /// Why the server closed it, once it did (for the reader to stop, and for logs).
    closed: OnceLock<CloseReason>,
}

impl ConnIo {
    pub(crate) fn new(id: ConnId, stream: Async<TcpStream>) -> Self {
        Self {
            id,
            stream,
            queued: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            last_words: Mutex::new(None),
            closed: OnceLock::new(),
        }
    }

    /// Why the server closed this connection, if it did.
    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.get()
    }

    /// Ends the socket both ways: wakes a reader waiting for input and a writer
    /// blocked on a full send buffer. Errors mean it is already closed.
    pub(crate) fn shut_down(&self) {
        let _ = self.stream.get_ref().shutdown(Shutdown::Both);
    }

    fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }
}

/// The queue was over budget; the connection must be kicked.
#[derive(Debug)]
pub(crate) struct Overflow;

/// The fan-out's handle on one connection's queue.
#[derive(Debug)]
pub(crate) struct Outbox {
    tx: Sender<Arc<[u8]>>,
    io: Arc<ConnIo>,
    budget: usize,
}

impl Outbox {
    /// A queue for `io` holding at most `budget` bytes, and its receiving end
    /// for [`write_loop`].
    pub(crate) fn new(io: Arc<ConnIo>, budget: usize) -> (Self, Receiver<Arc<[u8]>>) {
        // Unbounded in messages, bounded in bytes by `budget`; a bounded channel
        // would allocate its slots up front for every idle connection.
        let (tx, rx) = async_channel::unbounded();
        (Self { tx, io, budget }, rx)
    }

    /// Queues `bytes` without waiting. Past the budget (unless the queue is
    /// empty, so one big listing always fits) nothing more is queued and the
    /// caller must kick the connection.
    pub(crate) fn push(&self, bytes: &Arc<[u8]>) -> Result<(), Overflow> {
        if self.io.overflowed() {
            return Ok(()); // Already being kicked; the backlog is dropped anyway.
        }
        let len = bytes.len();
        let before = self.io.queued.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.budget {
            self.io.queued.fetch_sub(len, Ordering::AcqRel);
            self.io.overflowed.store(true, Ordering::Release);
            return Err(Overflow);
        }
        match self.tx.try_send(bytes.clone()) {
            Ok(()) => Ok(()),
            // The writer is gone (write error): the reader will report it.
            Err(TrySendError::Closed(_)) => {
                self.io.queued.fetch_sub(len, Ordering::AcqRel);
                Ok(())
            }
            // Unbounded channels are never full; treat it as a slow consumer anyway.
            Err(TrySendError::Full(_)) => {
                self.io.queued.fetch_sub(len, Ordering::AcqRel);
                self.io.overflowed.store(true, Ordering::Release);
                Err(Overflow)
            }
        }
    }

    /// For a connection being kicked after an [`Overflow`]: the line to send
    /// instead of the backlog (the first one wins).
    pub(crate) fn set_last_words(&self, bytes: &Arc<[u8]>) {
        if let Ok(mut slot) = self.io.last_words.lock() {
            slot.get_or_insert_with(|| bytes.clone());
        }
    }

    /// Flush what is queued, then close: ends the queue (the writer stops after
    /// the last line) and, if the peer does not read it within
    /// [`CLOSE_GRACE`], `reap` shuts the socket down.
    pub(crate) fn close(self, reason: CloseReason) -> impl Future<Output = ()> + Send + 'static {
        let _ = self.io.closed.set(reason);
        self.tx.close();
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
/// the last words. Returns on a write error (the peer is gone).
pub(crate) async fn write_loop(io: &ConnIo, rx: Receiver<Arc<[u8]>>) -> io::Result<()> {
    let mut stream = &io.stream;
    while let Ok(first) = rx.recv().await {
        if io.overflowed() {
            break;
        }
        let mut len = first.len();
        match rx.try_recv() {
            Err(_) => stream.write_all(&first).await?,
            Ok(second) => {
                // The buffer is dropped after the write, so an idle connection
                // holds no write buffer.
                let mut buf = Vec::with_capacity((len + second.len()).max(1024));
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&second);
                drop((first, second));
                while buf.len() < MAX_COALESCE {
                    match rx.try_recv() {
                        Ok(more) => buf.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                len = buf.len();
                stream.write_all(&buf).await?;
            }
        }
        io.queued.fetch_sub(len, Ordering::AcqRel);
    }
    if io.overflowed() {
        // Drop the backlog; the kick closes the queue after setting the BYE.
        while rx.recv().await.is_ok() {}
        let last = io.last_words.lock().ok().and_then(|mut s| s.take());
        if let Some(bye) = last {
            stream.write_all(&bye).await?;
        }
    }
    stream.flush().await
}
