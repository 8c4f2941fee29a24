//! One connection: its task ([`serve`]) joins the reader ([`read_loop`]) and the
//! writer ([`crate::outbox::write_loop`]), catches panics, and cleans up.

use std::future::Future;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatproto::server::Input;
use chatproto::{CloseReason, FrameError, LineFramer, ParseError, Refusal, TokenBucket};
use futures_lite::future::{self, CatchUnwind, FutureExt};
use smol::{Async, Timer};

use crate::listener::Permit;
use crate::outbox::{write_loop, ConnIo, Outbox, CLOSE_GRACE};
use crate::shared::Shared;

/// Most lines handed to the state machine under one lock acquisition, so one
/// busy client cannot hold the lock for long.
const MAX_BATCH: usize = 64;

/// Bytes read per system call. Lives on the stack of a synchronous function
/// only, never in the connection's future, so idle connections do not keep it.
const READ_CHUNK: usize = 8 * 1024;

/// Pacing charges bytes as well as lines: every byte read costs a
/// 250th of a token (a 4000-byte line costs 17 tokens with its own), so at
/// the default 20 tokens/s one client cannot make the server send more than
/// about 5 KB/s of its text to anyone. Bytes are charged as they are read, so
/// a line that never ends costs as much as one that does.
const INPUT_BYTES_PER_TOKEN: u64 = 250;

/// Replies cost too, more lightly (they reach one connection, not a scope):
/// a token per 4000 bytes, so a `/users` of 100 KB costs 25 tokens.
const REPLY_BYTES_PER_TOKEN: u64 = 4000;

/// Thousandths of a token for `bytes` at `per_token` bytes a token.
fn cost(bytes: usize, per_token: u64) -> u64 {
    u64::try_from(bytes)
        .unwrap_or(u64::MAX)
        .saturating_mul(1000)
        / per_token
}

/// Runs one accepted connection to its end. A panic in its reader or writer is
/// caught here and ends only this connection.
///
/// A plain function returning an `async move` block, not an `async fn`: an
/// `async fn` moves its arguments into locals, so the task would store
/// `shared`, `peer` and `permit` twice (72 bytes on every idle connection).
/// The accept loop builds `io` (with its IRC adapter, for an IRC listener).
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice"
)]
pub(crate) fn serve(
    shared: Arc<Shared>,
    io: Arc<ConnIo>,
    peer: SocketAddr,
    permit: Permit,
) -> impl Future<Output = ()> + Send {
    async move {
        let id = io.id;
        log::info!("{id:?} connected from {peer}");
        shared.connect(Outbox::new(io.clone()), Some(peer)).await;
        // Boxed: only TLS connections have this state, and only until the
        // handshake is done; inline it would enlarge every idle connection.
        if io.tls().is_some() && !Box::pin(start_tls(&shared, &io)).await {
            drop(permit);
            return;
        }
        // Built inside the call: a future bound to a local first would be stored
        // twice in this task (once moved-from), doubling an idle connection's cost.
        let outcome = guarded(future::zip(read_loop(&shared, &io), async {
            let result = write_loop(&io).await;
            match result {
                // Flushed: a FIN follows the last line. The socket stays open for
                // reading until the client closes its end (see `discard_input`).
                Ok(()) => io.end_writes(),
                // The peer is gone: end both ways, which also wakes the reader.
                Err(_) => io.shut_down(),
            }
            result
        }))
        .await;
        let reason = match outcome {
            Ok(((), Err(e))) => format!("write failed: {e}"),
            Ok(((), Ok(()))) => io
                .close_reason()
                .map_or_else(|| "connection-lost".to_owned(), ToString::to_string),
            Err(_) => Box::pin(panicked(&shared, &io)).await,
        };
        log::info!("{id:?} closed: {reason}");
        drop(permit);
    }
}

/// A connection's task panicked (the panic hook already printed the message
/// and location): drop the connection, log the state machine's health.
/// Called boxed: its state would otherwise enlarge every connection's task.
async fn panicked(shared: &Shared, io: &ConnIo) -> String {
    shared.disconnect(io.id, CloseReason::ConnectionLost).await;
    io.shut_down();
    log::error!(
        "{:?} task panicked; connection dropped; {}",
        io.id,
        shared.health().await
    );
    "panic".to_owned()
}

/// Runs a TLS connection's handshake (see [`tls_handshake`]); true if the
/// connection goes on. If not, it is dropped and its close logged here.
async fn start_tls(shared: &Shared, io: &ConnIo) -> bool {
    let reason = match guarded(tls_handshake(io)).await {
        Ok(Ok(())) => return true,
        // No TLS, no goodbye: the client sees the connection end.
        Ok(Err(e)) => {
            shared.disconnect(io.id, CloseReason::ConnectionLost).await;
            io.shut_down();
            e.to_string()
        }
        Err(_) => panicked(shared, io).await,
    };
    log::info!("{:?} closed: {reason}", io.id);
    false
}

/// Runs a TLS connection's handshake, until it is done or the server closes
/// the connection meanwhile: the state machine's register timeout runs from
/// `connect`, so a client that never finishes the handshake is dropped then,
/// and a shutdown does not wait for handshakes. The socket is only polled,
/// so a stalled handshake holds no thread and no lock. The error says why
/// it failed, for the log.
async fn tls_handshake(io: &ConnIo) -> io::Result<()> {
    let Some(tls) = io.tls() else { return Ok(()) };
    let handshake = async {
        tls.handshake(&io.stream)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake failed: {e}")))
    };
    let closed = async {
        io.closed().await;
        let why = io
            .close_reason()
            .map_or_else(|| "closed".to_owned(), ToString::to_string);
        Err(io::Error::other(format!("{why} during the TLS handshake")))
    };
    future::or(handshake, closed).await
}

/// Runs `fut`, turning a panic inside it into `Err` (the panic hook has
/// already printed it) so that it ends only the task it happened in. The
/// server's state is behind an `async_lock::Mutex`, which does not poison: the
/// caller logs the state machine's invariant check instead. A plain function,
/// not an `async fn`, so `fut` is stored once, not twice.
pub(crate) fn guarded<F: Future>(fut: F) -> CatchUnwind<AssertUnwindSafe<F>> {
    AssertUnwindSafe(fut).catch_unwind()
}

/// Reads lines until EOF, an error, or the server closing the connection,
/// pacing the client with its token bucket; then reports the disconnection.
async fn read_loop(shared: &Shared, io: &ConnIo) {
    let cfg = &shared.config;
    // IRC lines are bounded by IRC's limits, which the adapter answers with 417.
    let mut framer = if io.speaks_irc() {
        chatproto::irc::line_framer()
    } else {
        LineFramer::new(cfg.max_line)
    };
    let mut bucket = TokenBucket::new(cfg.flood_burst, cfg.flood_rate, Instant::now());
    let client_done = 'reading: loop {
        // What was read and replied so far must be paid for before reading on.
        if let Err(wait) = bucket.ready(Instant::now()) {
            pace(wait).await;
            if io.close_reason().is_some() {
                break 'reading false;
            }
            continue;
        }
        match read_when_ready(&io.stream, |s| read_into(io, s, &mut framer)).await {
            Ok(0) | Err(_) => break 'reading true,
            Ok(n) => bucket.charge(Instant::now(), cost(n, INPUT_BYTES_PER_TOKEN)),
        }
        while framer.has_line() {
            let (inputs, wait) = if io.speaks_irc() {
                take_lines(&mut framer, &mut bucket, |line, inputs| {
                    irc_inputs(io, line, inputs);
                })
            } else {
                take_lines(&mut framer, &mut bucket, |line, inputs| {
                    inputs.push(Input::from_frame(io.id, line));
                })
            };
            if !inputs.is_empty() {
                let replies = shared.handle(io.id, inputs).await;
                bucket.charge(Instant::now(), cost(replies, REPLY_BYTES_PER_TOKEN));
            }
            if io.close_reason().is_some() {
                break 'reading false;
            }
            if let Some(wait) = wait {
                // Out of tokens: stop reading until one is due, so TCP pushes
                // back on the sender and nothing is dropped.
                pace(wait).await;
            }
        }
        framer.shrink();
        // A read that finds data never waits, so a client that keeps its
        // socket full would hold this executor thread forever: let the other
        // tasks run between reads.
        future::yield_now().await;
    };
    // Boxed: this runs once per connection, and the states of `disconnect`
    // and `discard_input`, held inline, would make every idle connection's
    // future 96 bytes larger.
    Box::pin(finish_reading(shared, io, client_done)).await;
}

/// Longest single pacing sleep. A client deep in debt (a batch of large
/// replies) may owe minutes; sleeping in slices lets the reader notice that
/// the server closed the connection meanwhile and free its place.
const MAX_PACING_SLEEP: Duration = Duration::from_secs(1);

/// Sleeps for `wait`, or [`MAX_PACING_SLEEP`] if that is shorter.
async fn pace(wait: Duration) {
    Timer::after(wait.min(MAX_PACING_SLEEP)).await;
}

/// The reader's end: reports the disconnection (a partial line left in the
/// framer is dropped with the connection) and, if the server closed it,
/// drains what the client still sends.
async fn finish_reading(shared: &Shared, io: &ConnIo, client_done: bool) {
    shared.disconnect(io.id, CloseReason::ConnectionLost).await;
    if !client_done {
        discard_input(io).await;
    }
}

/// After the server closed the connection, reads and drops what the client
/// still sends until it closes its end, for at most [`CLOSE_GRACE`]. Closing
/// a socket with unread input makes the kernel send a reset, and a reset
/// discards the lines not yet delivered to the client, its `BYE` included.
/// The time limit is needed: a shutdown does not end reads on Linux while
/// the client keeps sending.
async fn discard_input(io: &ConnIo) {
    let drain = async {
        while let Ok(n) = read_when_ready(&io.stream, read_and_drop).await {
            if n == 0 {
                break;
            }
            // As in `read_loop`: a client that keeps sending must not hold
            // the thread (nor keep the time limit below from being polled).
            future::yield_now().await;
        }
    };
    future::or(drain, async {
        Timer::after(CLOSE_GRACE).await;
    })
    .await;
}

/// Runs the non-blocking read `op`, waiting for readability while it would
/// block. Unlike `Async::read_with`, the wait survives being polled again
/// without an event: a connection's task polls its reader each time its writer
/// is woken, and `read_with` would answer each such poll with a failing `recv`
/// and an `epoll_ctl` to re-register, two system calls per delivered line.
async fn read_when_ready<R>(
    stream: &Async<TcpStream>,
    mut op: impl FnMut(&TcpStream) -> io::Result<R>,
) -> io::Result<R> {
    loop {
        match op(stream.get_ref()) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.readable().await?,
            result => return result,
        }
    }
}

/// One non-blocking read whose bytes are dropped.
fn read_and_drop(mut stream: &TcpStream) -> io::Result<usize> {
    stream.read(&mut [0u8; READ_CHUNK])
}

/// One non-blocking read into `framer`, decrypted for TLS. The buffer lives
/// only in this call (TLS decrypts whole records, into the framer).
fn read_into(io: &ConnIo, mut stream: &TcpStream, framer: &mut LineFramer) -> io::Result<usize> {
    if let Some(tls) = io.tls() {
        return tls.read(stream, &mut |plain| framer.push(plain));
    }
    let mut buf = [0u8; READ_CHUNK];
    let n = stream.read(&mut buf)?;
    framer.push(&buf[..n]);
    Ok(n)
}

/// Turns ready lines into inputs, one token each, up to [`MAX_BATCH`]; returns
/// the inputs and, if the bucket ran dry, how long until the next token.
/// Empty lines cost no token (their bytes were charged when read) and become
/// at most one input per batch: the server counts them as activity only.
/// `convert` turns one framed line into inputs.
fn take_lines(
    framer: &mut LineFramer,
    bucket: &mut TokenBucket,
    mut convert: impl FnMut(Result<&str, FrameError>, &mut Vec<Input>),
) -> (Vec<Input>, Option<Duration>) {
    let mut inputs = Vec::new();
    let mut empty_seen = false;
    let now = Instant::now();
    let mut wait = None;
    while inputs.len() < MAX_BATCH && framer.has_line() {
        if let Err(w) = bucket.check(now) {
            wait = Some(w);
            break;
        }
        match framer.next_line() {
            Some(Ok("")) if empty_seen => {}
            Some(Ok("")) => {
                empty_seen = true;
                // As an empty native line, which the server takes as activity.
                convert(Ok(""), &mut inputs);
            }
            Some(line) => {
                bucket.charge(now, 1000);
                convert(line, &mut inputs);
            }
            None => break,
        }
    }
    (inputs, wait)
}

/// One IRC line through the connection's adapter: its replies are queued at
/// once, its commands become inputs in order. A line that makes no command
/// (CAP, MODE, a client's PING, an empty line) still counts as activity. The
/// adapter's own `close` needs nothing here: it comes with a `/quit`, after
/// which the server closes the connection.
fn irc_inputs(io: &ConnIo, line: Result<&str, FrameError>, inputs: &mut Vec<Input>) {
    let Some(mut session) = io.irc() else {
        return;
    };
    let from = session.on_line(line);
    drop(session);
    if !from.reply.is_empty() && io.push(&Arc::from(from.reply)).is_err() {
        inputs.push(Input::Kick(io.id, CloseReason::SendqExceeded));
        return;
    }
    if from.commands.is_empty() {
        inputs.push(Input::Refused(io.id, Refusal::from(ParseError::Empty)));
    }
    inputs.extend(from.commands.into_iter().map(|c| Input::Line(io.id, c)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatproto::server::ConnId;

    /// The native conversion, as the reader does it.
    fn native(id: ConnId) -> impl FnMut(Result<&str, FrameError>, &mut Vec<Input>) {
        move |line, inputs| inputs.push(Input::from_frame(id, line))
    }

    #[test]
    fn lines_cost_tokens_and_empty_lines_only_count_as_activity() {
        let id = ConnId::new(1);
        let mut framer = LineFramer::new(16);
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3, 10, start);
        framer.push(b"a\n\nb\n\n/frob\nc\n");
        let (inputs, wait) = take_lines(&mut framer, &mut bucket, native(id));
        // "a", "b" and "/frob" take the three tokens; the two empty lines are
        // free and become one activity-only input; "c" waits.
        assert_eq!(inputs.len(), 4, "{inputs:?}");
        assert!(matches!(&inputs[1], Input::Refused(_, r) if r.is_empty_line()));
        assert!(
            matches!(&inputs[3], Input::Refused(_, r) if r.code().as_str() == "unknown-command")
        );
        assert!(wait.is_some());
        assert!(framer.has_line(), "nothing dropped while paced");
        let mut bucket = TokenBucket::new(10, 0, start);
        let (inputs, wait) = take_lines(&mut framer, &mut bucket, native(id));
        assert_eq!(wait, None);
        assert!(matches!(&inputs[..], [Input::Line(_, _)]));
        assert!(!framer.has_line());
    }

    #[test]
    fn a_flood_of_empty_lines_is_one_input_and_costs_no_token() {
        let mut framer = LineFramer::new(16);
        framer.push(&[b'\n'; 8192]);
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1, 10, start);
        let (inputs, wait) = take_lines(&mut framer, &mut bucket, native(ConnId::new(1)));
        assert_eq!((inputs.len(), wait), (1, None));
        assert!(!framer.has_line());
        assert!(bucket.take(start).is_ok(), "the token is still there");
    }

    #[test]
    fn bytes_cost_tokens() {
        assert_eq!(cost(250, INPUT_BYTES_PER_TOKEN), 1000);
        assert_eq!(cost(4000, REPLY_BYTES_PER_TOKEN), 1000);
        assert_eq!(cost(usize::MAX, INPUT_BYTES_PER_TOKEN), u64::MAX / 250);
    }

    #[test]
    fn a_panic_ends_only_its_own_task() {
        let ex = smol::Executor::new();
        let survivor = ex.spawn(async { 42 });
        let doomed = ex.spawn(guarded(async {
            Timer::after(Duration::from_millis(1)).await;
            panic!("test panic in a connection task");
        }));
        let (doomed, survivor) = smol::block_on(ex.run(async { (doomed.await, survivor.await) }));
        assert!(doomed.is_err());
        assert_eq!(survivor, 42);
        let ok = smol::block_on(guarded(async { 7 }));
        assert_eq!(ok.ok(), Some(7));
    }

    #[test]
    fn batches_are_bounded() {
        let mut framer = LineFramer::new(16);
        framer.push("x\n".repeat(MAX_BATCH * 2).as_bytes());
        let mut bucket = TokenBucket::new(1, 0, Instant::now());
        let (inputs, wait) = take_lines(&mut framer, &mut bucket, native(ConnId::new(1)));
        assert_eq!((inputs.len(), wait), (MAX_BATCH, None));
        assert!(framer.has_line());
    }
}
