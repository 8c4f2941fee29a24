//! The connection to the server: bytes in, [`NetEvent`]s out; commands in, bytes out.
//!
//! No task of its own: [`Connection::next`] is one future the main loop races
//! against the keyboard, so everything runs on the one executor thread and the
//! reading stops when the client does.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use chatproto::{
    parse_event, Command, Event, FrameError, LineFramer, ParseError, EVENT_LINE_LIMIT,
};
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::TcpStream;
use smol::Timer;

/// What a connection's lines travel over: the TCP stream itself, or a layer on
/// it such as TLS. Only [`Connection::open`] chooses; the rest of the client
/// sees a [`Connection`].
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// How long a connection attempt may take. The operating system's own limit is
/// minutes, too long to look at a `[connecting]>` prompt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.socket.peer_addr().ok())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// What the server did.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// A line that parsed.
    Event(Event),
    /// A line that did not parse: shown sanitised, never dropped silently.
    Unparsed { raw: String, err: ParseError },
    /// A line the framer refused (too long, not UTF-8); it was skipped.
    Unframed(FrameError),
    /// The connection ended: `None` for an orderly close by the server.
    Closed(Option<io::Error>),
}

pub(crate) struct Connection {
    /// The socket under the transport, kept to shut it down at once (a TLS
    /// close would wait for the peer).
    socket: TcpStream,
    stream: Box<dyn Transport>,
    framer: LineFramer,
    buf: Box<[u8]>,
    closed: bool,
}

impl Connection {
    /// Connects to `addr` (`host:port`, resolved if needed), giving up after
    /// [`CONNECT_TIMEOUT`].
    pub(crate) async fn open(addr: &str) -> io::Result<Self> {
        let connect = TcpStream::connect(addr);
        let timeout = async {
            Timer::after(CONNECT_TIMEOUT).await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection timed out",
            ))
        };
        let socket = future::or(connect, timeout).await?;
        // Chat lines are small and typed by people: send each at once.
        socket.set_nodelay(true)?;
        // The one place where a transport is chosen (TLS would wrap `socket` here).
        let stream: Box<dyn Transport> = Box::new(socket.clone());
        Ok(Self::over(socket, stream))
    }

    /// A connection whose lines go over `stream`, which runs on `socket`.
    pub(crate) fn over(socket: TcpStream, stream: Box<dyn Transport>) -> Self {
        Self {
            socket,
            stream,
            framer: LineFramer::new(EVENT_LINE_LIMIT),
            buf: vec![0; 16 * 1024].into_boxed_slice(),
            closed: false,
        }
    }

    /// The next thing the server did. Cancel-safe: bytes read are in the framer
    /// before any await, so dropping this future loses nothing. After
    /// [`NetEvent::Closed`] it keeps returning `Closed(None)`.
    pub(crate) async fn next(&mut self) -> NetEvent {
        loop {
            if let Some(framed) = self.framer.next_line() {
                return match framed {
                    Ok(line) => match parse_event(line) {
                        Ok(event) => NetEvent::Event(event),
                        Err(err) => NetEvent::Unparsed {
                            raw: line.to_owned(),
                            err,
                        },
                    },
                    Err(err) => NetEvent::Unframed(err),
                };
            }
            if self.closed {
                return NetEvent::Closed(None);
            }
            // Every line is handed out: free what a long line (a big USERS
            // reply, up to 4 MiB) made the buffer grow to, unless a partial
            // line is held. Right after `push` the lines just framed still
            // hold the buffer, so it would never shrink there.
            self.framer.shrink();
            match self.stream.read(&mut self.buf).await {
                Ok(0) => {
                    self.closed = true;
                    // A last line without its LF is incomplete: the framer keeps it.
                    return NetEvent::Closed(None);
                }
                Ok(n) => self.framer.push(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.closed = true;
                    return NetEvent::Closed(Some(e));
                }
            }
        }
    }

    /// Sends one command.
    pub(crate) async fn send(&mut self, cmd: &Command) -> io::Result<()> {
        self.stream.write_all(&cmd.to_bytes()).await?;
        self.stream.flush().await
    }

    /// Closes both directions now; the peer sees EOF.
    pub(crate) fn close(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::net::TcpListener;

    /// A server that sends `script` and closes; the connection's events in order.
    fn events_for(script: &'static [u8]) -> Vec<String> {
        smol::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let server = smol::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                s.write_all(script).await.unwrap();
            });
            let mut conn = Connection::open(&addr).await.unwrap();
            server.await;
            let mut got = Vec::new();
            for _ in 0..100 {
                let ev = conn.next().await;
                let done = matches!(ev, NetEvent::Closed(_));
                got.push(match ev {
                    NetEvent::Event(e) => format!("event {e}"),
                    NetEvent::Unparsed { raw, .. } => format!("unparsed {raw:?}"),
                    NetEvent::Unframed(e) => format!("unframed {e}"),
                    NetEvent::Closed(e) => format!("closed {}", e.is_some()),
                });
                if done {
                    break;
                }
            }
            got
        })
    }

    #[test]
    fn frames_parses_and_reports_what_does_not_parse() {
        let got = events_for(b"HELLO x 1 hi\r\nMSG * bob \x1b[2J\nab\xffcd\nPING 3\nhalf");
        assert_eq!(
            got,
            [
                "event HELLO x 1 hi",
                "unparsed \"MSG * bob \\u{1b}[2J\"",
                "unframed line is not valid UTF-8 (byte 2), discarded",
                "event PING 3",
                "closed false",
            ]
        );
    }
}
