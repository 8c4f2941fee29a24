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
use futures_rustls::TlsConnector;
use smol::net::TcpStream;
use smol::Timer;

use crate::tls::TlsError;

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

/// TLS for every connection the client makes: the connector built from the
/// flags (`tls.rs`) and the name the server's certificate must carry (the host
/// part of the address; also sent as SNI).
#[derive(Clone)]
pub(crate) struct TlsSetup {
    pub(crate) connector: TlsConnector,
    pub(crate) server_name: String,
    /// `--insecure`: nothing is verified; the client warns on every connect.
    pub(crate) insecure: bool,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("server_name", &self.server_name)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// Why a connection could not be made.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Connecting failed (refused, unreachable, timed out): worth trying again.
    Io(io::Error),
    /// The TLS handshake failed; [`TlsError::is_permanent`] says whether
    /// trying again could help.
    Tls(TlsError),
}

impl OpenError {
    /// Trying again cannot help: a certificate refused, a port without TLS.
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, Self::Tls(e) if e.is_permanent())
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::Tls(e) => e.fmt(f),
        }
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
    /// A plaintext connection's first bytes were a TLS record: this port
    /// wants TLS. Never a chat line (those start with a letter); trying again
    /// in plaintext cannot help.
    SpeaksTls,
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
    /// Plaintext, and nothing read yet: the first bytes are checked for a
    /// TLS record (see [`NetEvent::SpeaksTls`]).
    check_for_tls: bool,
}

/// The first bytes a TLS server sends a client that did not start a
/// handshake: a record header, alert (21) or handshake (22), version 3.x.
fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [21 | 22, 3, ..])
}

impl Connection {
    /// Connects to `addr` (`host:port`, resolved if needed), with TLS over the
    /// socket when `tls` is given, giving up after [`CONNECT_TIMEOUT`] (the
    /// handshake included: a server that accepts and then says nothing is as
    /// unreachable as one that drops packets).
    pub(crate) async fn open(addr: &str, tls: Option<&TlsSetup>) -> Result<Self, OpenError> {
        let attempt = async {
            let socket = TcpStream::connect(addr).await.map_err(OpenError::Io)?;
            // Chat lines are small and typed by people: send each at once.
            socket.set_nodelay(true).map_err(OpenError::Io)?;
            // The one place where a transport is chosen.
            let stream: Box<dyn Transport> = match tls {
                None => Box::new(socket.clone()),
                Some(tls) => Box::new(
                    crate::tls::connect(&tls.connector, &tls.server_name, socket.clone())
                        .await
                        .map_err(OpenError::Tls)?,
                ),
            };
            let mut conn = Self::over(socket, stream);
            conn.check_for_tls = tls.is_none();
            Ok(conn)
        };
        let timeout = async {
            Timer::after(CONNECT_TIMEOUT).await;
            Err(OpenError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection timed out",
            )))
        };
        future::or(attempt, timeout).await
    }

    /// A connection whose lines go over `stream`, which runs on `socket`.
    pub(crate) fn over(socket: TcpStream, stream: Box<dyn Transport>) -> Self {
        Self {
            socket,
            stream,
            framer: LineFramer::new(EVENT_LINE_LIMIT),
            buf: vec![0; 16 * 1024].into_boxed_slice(),
            closed: false,
            check_for_tls: false,
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
                Ok(n)
                    if std::mem::take(&mut self.check_for_tls)
                        && looks_like_tls(&self.buf[..n]) =>
                {
                    self.closed = true;
                    return NetEvent::SpeaksTls;
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
            let mut conn = Connection::open(&addr, None).await.unwrap();
            server.await;
            let mut got = Vec::new();
            for _ in 0..100 {
                let ev = conn.next().await;
                let done = matches!(ev, NetEvent::Closed(_) | NetEvent::SpeaksTls);
                got.push(match ev {
                    NetEvent::Event(e) => format!("event {e}"),
                    NetEvent::Unparsed { raw, .. } => format!("unparsed {raw:?}"),
                    NetEvent::Unframed(e) => format!("unframed {e}"),
                    NetEvent::Closed(e) => format!("closed {}", e.is_some()),
                    NetEvent::SpeaksTls => "speaks TLS".to_owned(),
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

    #[test]
    fn a_tls_alert_on_a_plaintext_connection_says_the_port_wants_tls() {
        // What chatd's TLS listener sends a client that wrote a plain line.
        assert_eq!(events_for(b"\x15\x03\x03\x00\x02\x02\x32"), ["speaks TLS"]);
        // Only as the first bytes: later they are a line that is not UTF-8.
        let got = events_for(b"PING 1\n\x15\x03\x03\n");
        assert_eq!(got[0], "event PING 1");
        assert!(
            got[1].starts_with("unparsed") || got[1].starts_with("unframed"),
            "{got:?}"
        );
    }
}
