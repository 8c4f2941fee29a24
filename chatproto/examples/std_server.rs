//! A small chat server on `chatproto`'s state machine, with std only: a
//! teaching example of the driver duties listed in `chatproto::guide`, not a
//! production server (that is chatd).
//!
//! ```text
//! cargo run -p chatproto --example std_server -- 127.0.0.1:8080
//! ```
//!
//! One reader and one writer thread per connection, a ticker thread, and one
//! `Mutex<Shared>` holding the `Server` and each connection's outgoing queue.
//! Type `quit` on its stdin to shut down cleanly.

use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use chatproto::server::{ConnId, Effect, Input, Server, ServerConfig};
use chatproto::{CloseReason, LineFramer, TokenBucket};

/// Bytes queued for one client beyond which it is a slow consumer.
const SENDQ: usize = 1 << 20;
/// How long a closing connection is drained after its final `BYE`.
const LINGER: Duration = Duration::from_secs(3);
/// A write stalled this long ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines a client may send at once, then per second.
const BURST: u32 = 50;
const RATE: u32 = 20;

/// What a connection's writer thread is told.
enum Out {
    Bytes(Arc<[u8]>),
    /// Flush, then close (with a linger).
    Close,
}

/// One connection's outgoing queue. The channel is unbounded, but `queued`
/// (raised here, lowered by the writer) bounds the bytes in it to `SENDQ`.
struct Outbox {
    tx: Sender<Out>,
    queued: Arc<AtomicUsize>,
    /// Over budget and about to be kicked: drop what else comes for it.
    over: bool,
}

struct Shared {
    server: Server,
    outboxes: HashMap<ConnId, Outbox>,
}

type State = Arc<Mutex<Shared>>;

fn lock(state: &State) -> MutexGuard<'_, Shared> {
    // Server::handle does not panic; if some thread did, serve the others on.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Passes one input to the server and queues its effects, all under the lock,
/// so every connection gets its lines in the server's order.
fn handle(sh: &mut Shared, input: Input) {
    // The answer to a Kick sends the kicked connection only its final BYE,
    // which goes out whatever its budget.
    let kicked = match input {
        Input::Kick(conn, _) => Some(conn),
        _ => None,
    };
    let mut slow = Vec::new();
    for effect in sh.server.handle(Instant::now(), input) {
        match effect {
            Effect::Deliver { to, event } => {
                // This server speaks only the native protocol: one encoding,
                // made once per broadcast and shared.
                let bytes = event.line().clone();
                // No outbox: the connection is already closing.
                let Some(ob) = sh.outboxes.get_mut(&to) else {
                    continue;
                };
                let bye = kicked == Some(to);
                if ob.over && !bye {
                    continue;
                }
                if !bye && ob.queued.load(Relaxed) + bytes.len() > SENDQ {
                    ob.over = true;
                    slow.push(to);
                    continue;
                }
                ob.queued.fetch_add(bytes.len(), Relaxed);
                // Fails only if the writer is gone; its reader then reports it.
                let _ = ob.tx.send(Out::Bytes(bytes));
            }
            Effect::Close { conn, .. } => {
                if let Some(ob) = sh.outboxes.remove(&conn) {
                    let _ = ob.tx.send(Out::Close);
                }
            }
            // This server keeps no store: accounts and history are off in
            // its ServerConfig, so the state machine returns neither.
            Effect::Store(_) | Effect::Request { .. } => {}
        }
    }
    for conn in slow {
        handle(sh, Input::Kick(conn, CloseReason::SendqExceeded));
    }
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1);
    let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8080"))?;
    println!("listening on {}", listener.local_addr()?);
    let state = Arc::new(Mutex::new(Shared {
        server: Server::new(ServerConfig::default()),
        outboxes: HashMap::new(),
    }));

    let ticker = Arc::clone(&state);
    thread::spawn(move || loop {
        thread::sleep(Duration::from_secs(1));
        handle(&mut lock(&ticker), Input::Tick);
    });

    let accepting = Arc::clone(&state);
    let acceptor = thread::spawn(move || {
        for (n, stream) in (1..).zip(listener.incoming()) {
            match stream {
                Ok(stream) => {
                    let state = Arc::clone(&accepting);
                    thread::spawn(move || serve(&state, ConnId::new(n), stream));
                }
                // Out of file descriptors, say: wait rather than spin.
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    });

    for line in io::stdin().lock().lines() {
        if line?.trim() == "quit" {
            // Everyone gets BYE server-shutdown. Connections accepted from now
            // on get the same from the server, so the acceptor needs no flag;
            // exiting below stops it.
            handle(&mut lock(&state), Input::Shutdown);
            thread::sleep(LINGER); // writers flush and linger meanwhile
            return Ok(());
        }
    }
    // stdin closed (run in the background, say): serve until killed.
    let _ = acceptor.join();
    Ok(())
}

/// One connection: its outbox and writer, then its reader on this thread.
fn serve(state: &State, id: ConnId, stream: TcpStream) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let _ = writer.set_write_timeout(Some(WRITE_TIMEOUT));
    let (tx, rx) = channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let written = Arc::clone(&queued);
    thread::spawn(move || write_loop(writer, rx, &written));
    {
        let mut sh = lock(state);
        let outbox = Outbox {
            tx,
            queued,
            over: false,
        };
        sh.outboxes.insert(id, outbox);
        handle(&mut sh, Input::Connected(id));
    }
    read_loop(state, id, &stream);
    // The connection ended (EOF, reset, or the writer gave up). The server
    // forgets it and tells the others; no Effect::Close follows Disconnected,
    // so free the outbox here. If the server closed it first, both are no-ops.
    let mut sh = lock(state);
    handle(
        &mut sh,
        Input::Disconnected(id, CloseReason::ConnectionLost),
    );
    sh.outboxes.remove(&id); // drops the sender: the writer drains and exits
}

fn read_loop(state: &State, id: ConnId, mut stream: &TcpStream) {
    let mut framer = LineFramer::for_server();
    let mut pace = TokenBucket::new(BURST, RATE, Instant::now());
    let mut buf = [0; 4096];
    // 0 is EOF. An error is a reset, or, once the connection is closing, the
    // linger's read timeout (set on the socket, so this read has it too).
    // Lines read while closing reach the server for an id it has forgotten,
    // which it ignores.
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        framer.push(&buf[..n]);
        while let Some(frame) = framer.next_line() {
            // Too fast: stop reading for a while rather than drop the line;
            // the kernel's buffers fill and TCP slows the sender down.
            while let Err(wait) = pace.take(Instant::now()) {
                thread::sleep(wait);
            }
            // A parsed line, or a refusal; an empty line is a refusal the
            // server answers with nothing.
            handle(&mut lock(state), Input::from_frame(id, frame));
        }
        framer.shrink();
    }
}

/// Writes what is queued, as many lines per write as are waiting.
fn write_loop(mut stream: TcpStream, rx: Receiver<Out>, queued: &AtomicUsize) {
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut closing = false;
        for out in std::iter::once(first).chain(rx.try_iter()) {
            match out {
                Out::Bytes(bytes) => batch.extend_from_slice(&bytes),
                Out::Close => {
                    closing = true;
                    break; // nothing follows a Close
                }
            }
        }
        if stream.write_all(&batch).is_err() {
            break;
        }
        queued.fetch_sub(batch.len(), Relaxed);
        batch.clear();
        if closing {
            linger(&stream);
            break;
        }
    }
    // Wakes the reader if it is blocked in read, so it ends too.
    let _ = stream.shutdown(Shutdown::Both);
}

/// After the final `BYE`: half-close, then read and drop input until the
/// client closes, for at most `LINGER`. Closing a socket that has unread input
/// makes the kernel send a reset, which can discard the `BYE` before the
/// client reads it.
fn linger(mut stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut sink = [0; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // A zero timeout is refused (it would mean "none"): time is up then.
        if stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        if let Ok(0) | Err(_) = stream.read(&mut sink) {
            return;
        }
    }
}
