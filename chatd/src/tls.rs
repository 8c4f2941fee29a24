//! TLS for the listeners: the server's certificate ([`TlsSetup`]: read from PEM
//! files or made self-signed, re-read on SIGHUP) and one connection's session
//! ([`TlsSession`]), which its reader and writer share.
//!
//! rustls runs with the ring provider only, TLS 1.2 and 1.3, through its
//! unbuffered API (`UnbufferedServerConnection`): rustls holds keys and state,
//! this module the bytes, and an idle connection keeps no buffer (only the
//! start of a record that has not fully arrived, as the line framer keeps
//! only a partial line). The handshake polls the borrowed `&Async<TcpStream>`
//! with the session in its own future; once it is done the session moves
//! into a `std::sync::Mutex` that the reader and the writer hold only inside
//! non-blocking calls (decrypting what a read brought, encrypting and
//! writing), never across an `.await`: a rustls session is one state machine
//! for both directions. Reads and writes go through one record's room per
//! executor thread. Plaintext connections have no session and never touch
//! this module.

use std::cell::RefCell;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::task::{ready, Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_rustls::pki_types::pem::{self, PemObject};
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::crypto::ring as ring_provider;
use futures_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use futures_rustls::rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use futures_rustls::rustls::sign::CertifiedKey;
use futures_rustls::rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, WriteTraffic,
};
use futures_rustls::rustls::{self, ServerConfig};
use smol::Async;

use crate::config::Config;

/// The file names `--tls-self-signed` uses in `--data-dir`.
pub(crate) const SELF_SIGNED_CERT: &str = "tls-self-signed.crt";
pub(crate) const SELF_SIGNED_KEY: &str = "tls-self-signed.key";

/// The server's TLS configuration and where its certificate comes from.
#[derive(Debug)]
pub(crate) struct TlsSetup {
    config: Arc<ServerConfig>,
    cert: Arc<ReloadableCert>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

/// Hands every new handshake the certificate loaded last. A SIGHUP replaces
/// it; handshakes under way and established sessions keep what they have.
#[derive(Debug)]
struct ReloadableCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Held for an Arc clone only; a poisoned lock still holds a whole Arc.
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// A certificate chain and key that were read and checked.
struct Loaded {
    key: CertifiedKey,
    fingerprint: String,
    /// Something an operator should hear about that does not stop us.
    warning: Option<String>,
}

impl TlsSetup {
    /// Reads the TLS flags: `None` without TLS listeners. Makes the
    /// self-signed certificate if asked and absent. Errors are one line each,
    /// naming the flag or file; `main` exits 2 on them.
    pub(crate) fn from_config(config: &Config) -> Result<Option<Self>, String> {
        let tls = &config.tls;
        let listeners = !config.tls_listen.is_empty() || !config.irc_tls_listen.is_empty();
        let (cert_path, key_path) = match (&tls.cert, &tls.key, tls.self_signed) {
            (Some(_), _, true) | (_, Some(_), true) => {
                return Err("--tls-self-signed and --tls-cert/--tls-key exclude each other".into())
            }
            (Some(_), None, false) => return Err("--tls-cert needs --tls-key".into()),
            (None, Some(_), false) => return Err("--tls-key needs --tls-cert".into()),
            (None, None, false) if listeners => {
                return Err("--tls-listen and --irc-tls-listen need a certificate: \
                            --tls-cert PEM and --tls-key PEM, or --tls-self-signed"
                    .into())
            }
            (None, None, false) => return Ok(None),
            (Some(c), Some(k), false) => (c.clone(), k.clone()),
            (None, None, true) => {
                if !listeners {
                    log::warn!(
                        "--tls-self-signed without --tls-listen or --irc-tls-listen: no TLS"
                    );
                    return Ok(None);
                }
                ensure_self_signed(&tls.data_dir)?
            }
        };
        if !listeners {
            log::warn!("--tls-cert without --tls-listen or --irc-tls-listen: no TLS");
            return Ok(None);
        }
        let loaded = load(&cert_path, &key_path)?;
        log_loaded(&loaded, &cert_path);
        let cert = Arc::new(ReloadableCert(RwLock::new(Arc::new(loaded.key))));
        let provider = Arc::new(ring_provider::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        // No resumption: a cache costs memory per past client (and a ticket
        // key would need rotating), while a chat client connects once and
        // stays. With nothing to resume, TLS 1.3 tickets would be wasted bytes.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Some(Self {
            config: Arc::new(config),
            cert,
            cert_path,
            key_path,
        }))
    }

    /// What every TLS listener's connections handshake with.
    pub(crate) fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Re-reads the certificate and key (SIGHUP). New handshakes use the new
    /// ones; on any error the old ones stay and the error is logged.
    pub(crate) fn reload(&self) {
        match load(&self.cert_path, &self.key_path) {
            Ok(loaded) => {
                log_loaded(&loaded, &self.cert_path);
                let new = Arc::new(loaded.key);
                *self.cert.0.write().unwrap_or_else(PoisonError::into_inner) = new;
                log::info!("SIGHUP: new TLS handshakes use the reloaded certificate");
            }
            Err(e) => log::error!("SIGHUP: {e}; keeping the certificate in use"),
        }
    }
}

fn log_loaded(loaded: &Loaded, path: &Path) {
    if let Some(w) = &loaded.warning {
        log::warn!("{w}");
    }
    // The format of `openssl x509 -noout -fingerprint -sha256`, so users can
    // compare the two and pin it (chatcli --fingerprint).
    log::info!(
        "TLS certificate {}: SHA-256 fingerprint {}",
        path.display(),
        loaded.fingerprint
    );
}

/// Reads and checks a PEM certificate chain (leaf first) and its key.
fn load(cert_path: &Path, key_path: &Path) -> Result<Loaded, String> {
    let what = |flag: &str, path: &Path, e: pem::Error| match e {
        pem::Error::Io(e) => format!("{flag} {}: cannot read: {e}", path.display()),
        pem::Error::NoItemsFound => format!("{flag} {}: no PEM data in it", path.display()),
        e => format!("{flag} {}: not valid PEM: {e}", path.display()),
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| what("--tls-cert", cert_path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what("--tls-cert", cert_path, e))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no CERTIFICATE in it",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            format!("--tls-key {}: no PRIVATE KEY in it", key_path.display())
        }
        e => what("--tls-key", key_path, e),
    })?;
    let provider = ring_provider::default_provider();
    let private = provider.key_provider.load_private_key(key).map_err(|e| {
        format!(
            "--tls-key {}: unusable private key: {e}",
            key_path.display()
        )
    })?;
    let certified = CertifiedKey::new(chain, private);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(format!(
                "--tls-key {} does not match the certificate in --tls-cert {}",
                key_path.display(),
                cert_path.display()
            ))
        }
        Err(e) => {
            return Err(format!(
                "--tls-cert {}: unusable certificate: {e}",
                cert_path.display()
            ))
        }
    }
    let leaf = &certified.cert[0];
    let warning = match not_after(leaf) {
        Some(end) if end < unix_now() => Some(format!(
            "--tls-cert {}: the certificate has expired; clients will refuse it",
            cert_path.display()
        )),
        Some(_) => None,
        None => Some(format!(
            "--tls-cert {}: cannot read its expiry date",
            cert_path.display()
        )),
    };
    Ok(Loaded {
        fingerprint: fingerprint(leaf),
        key: certified,
        warning,
    })
}

/// SHA-256 of the DER certificate as `openssl x509 -fingerprint -sha256`
/// prints it: uppercase hex pairs joined by colons.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The certificate and key paths in `dir`, made (with a fresh key, the key
/// file readable by its owner only) if neither exists yet. One without the
/// other is an error rather than overwritten.
fn ensure_self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let cert = dir.join(SELF_SIGNED_CERT);
    let key = dir.join(SELF_SIGNED_KEY);
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok((cert, key)),
        (false, false) => {}
        (true, false) | (false, true) => {
            return Err(format!(
                "--tls-self-signed: {} and {} must both exist or both be absent \
                 (delete the other to make a new pair)",
                cert.display(),
                key.display()
            ))
        }
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        // Owner only when chatd makes it: it holds keys (and later accounts).
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("--data-dir {}: cannot create: {e}", dir.display()))?;
    }
    let made = rcgen::generate_simple_self_signed(self_signed_names())
        .map_err(|e| format!("--tls-self-signed: cannot make a certificate: {e}"))?;
    let write = |path: &Path, text: &str, mode: u32| {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .map_err(|e| format!("--tls-self-signed: cannot write {}: {e}", path.display()))
    };
    // The key first: a crash in between leaves a key without a certificate,
    // which the check above reports instead of silently using.
    write(&key, &made.signing_key.serialize_pem(), 0o600)?;
    write(&cert, &made.cert.pem(), 0o644)?;
    log::info!(
        "--tls-self-signed: made {} and {}",
        cert.display(),
        key.display()
    );
    Ok((cert, key))
}

/// The names a self-signed certificate is for: loopback and this host's
/// name, so a client that trusts the file (`--ca-file`) can also check the
/// name it connects to. (Pinning the fingerprint needs no name.)
fn self_signed_names() -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let dns_like = |h: &str| {
        !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if dns_like(host) && host != "localhost" {
        names.push(host.to_owned());
    }
    names
}

/// The largest TLS record on the wire: header, 16 KiB of payload and the most
/// expansion TLS 1.2 allows (RFC 5246 6.2.3). rustls refuses records whose
/// header says more; a handshake message longer than this (one that spans
/// records) is refused here. Reads use a buffer of this size per executor
/// thread (see [`READ_ROOM`]), so no connection keeps one.
const MAX_RECORD: usize = 5 + 16 * 1024 + 2048;

/// Plaintext encrypted per call while writing: one full record.
const MAX_PLAINTEXT: usize = 16 * 1024;

/// Room to encrypt [`MAX_PLAINTEXT`] bytes into, with the record overhead
/// and what rustls may queue before them (an alert, a key update).
const WRITE_ROOM_LEN: usize = MAX_PLAINTEXT + 1024;

thread_local! {
    /// Each executor thread's room to read records into and to encrypt
    /// into: no connection keeps one, and none is zeroed on every call
    /// (as an 18 KiB array on the stack would be, on every read and write).
    static READ_ROOM: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_RECORD].into_boxed_slice());
    static WRITE_ROOM: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; WRITE_ROOM_LEN].into_boxed_slice());
}

/// Runs `f` with this thread's `room`, or with a fresh buffer of `len`
/// bytes should the room be in use (it cannot be: nothing that runs with it
/// calls back into this module; a fallback rather than a panic).
fn with_room<R>(
    room: &'static std::thread::LocalKey<RefCell<Box<[u8]>>>,
    len: usize,
    f: impl FnOnce(&mut [u8]) -> R,
) -> R {
    room.with(|room| match room.try_borrow_mut() {
        Ok(mut room) => f(&mut room),
        Err(_) => f(&mut vec![0; len]),
    })
}

/// One connection's TLS state: the configuration until the handshake is
/// done, then the session the reader and writer share.
#[derive(Debug)]
pub(crate) struct TlsSession {
    config: Arc<ServerConfig>,
    session: OnceLock<Mutex<Session>>,
}

/// A session after its handshake. rustls's unbuffered API: rustls keeps no
/// buffers of its own (its buffered `ServerConnection` keeps a 4 KiB receive
/// buffer for good once a record was read), so an idle connection keeps only
/// its keys and state here, plus what is in flight.
struct Session {
    conn: UnbufferedServerConnection,
    /// The start of a record not yet complete (at most [`MAX_RECORD`]);
    /// empty, without an allocation, between records.
    incoming: Vec<u8>,
    /// Encrypted bytes the socket did not take yet (at most about one
    /// record, plus alerts); empty, without an allocation, once sent.
    outgoing: Vec<u8>,
    /// The peer sent close_notify (rustls reports it once, to whichever of
    /// reader and writer asks first).
    peer_closed: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.outgoing.len())
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

/// What the handshake does after one step of rustls.
enum Next {
    /// Ask rustls again.
    Again,
    /// Send what rustls encoded.
    Send,
    /// Read more from the client.
    Read,
    /// rustls is ready for application data (the handshake may still wait
    /// for the client's Finished).
    Traffic,
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn too_large() -> io::Error {
    invalid(format!(
        "TLS record or handshake message over {MAX_RECORD} bytes"
    ))
}

impl TlsSession {
    pub(crate) fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            config,
            session: OnceLock::new(),
        }
    }

    /// Runs the handshake over `stream`. Nothing else uses the socket
    /// meanwhile (the connection's reader and writer start after it), so the
    /// state is this future's own until it is done.
    pub(crate) async fn handshake(&self, stream: &Async<TcpStream>) -> io::Result<()> {
        let mut conn = UnbufferedServerConnection::new(self.config.clone()).map_err(invalid)?;
        let mut incoming = Vec::new();
        let mut outgoing = Vec::new();
        loop {
            let status = conn.process_tls_records(&mut incoming);
            let discard = status.discard;
            let next = match status.state {
                Err(e) => {
                    // rustls queued an alert saying why: best effort.
                    let _ = send_alert(&mut conn, &mut outgoing, stream.get_ref());
                    return Err(invalid(e));
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut data, &mut outgoing)?;
                    Next::Again
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    // Sent below, before rustls is asked again.
                    data.done();
                    Next::Send
                }
                Ok(ConnectionState::BlockedHandshake) => Next::Read,
                // Also reported before the client's Finished (TLS 1.3's
                // half round trip): the handshake is over once rustls says
                // so. Application data that came right behind it stays in
                // rustls for the reader's first call.
                Ok(ConnectionState::WriteTraffic(_) | ConnectionState::ReadTraffic(_)) => {
                    Next::Traffic
                }
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed by the client",
                    ))
                }
                Ok(other) => return Err(invalid(format!("unexpected TLS state {other:?}"))),
            };
            incoming.drain(..discard);
            match next {
                Next::Again => {}
                Next::Send => {
                    write_all_async(stream, &outgoing).await?;
                    outgoing = Vec::new();
                }
                Next::Traffic if !conn.is_handshaking() => break,
                Next::Traffic | Next::Read => read_more(stream, &mut incoming).await?,
            }
        }
        let session = Session {
            conn,
            // Whatever followed the handshake, without its read buffer.
            incoming: incoming.as_slice().to_vec(),
            outgoing,
            peer_closed: false,
        };
        // Set once: the handshake runs once per connection.
        let _ = self.session.set(Mutex::new(session));
        Ok(())
    }

    fn session(&self) -> io::Result<MutexGuard<'_, Session>> {
        let session = self
            .session
            .get()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "TLS handshake not done"))?;
        // rustls does not panic on input; a poisoned session is still whole.
        Ok(session.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// One non-blocking read: decrypts what the socket has (and what was
    /// left of a record before) and hands the plaintext to `sink`. Returns
    /// how many bytes it read from the socket, what pacing charges: record
    /// overhead and records without text (empty ones, key updates) cost the
    /// client too, not only the text they carry. `Ok(0)` only at the end (the
    /// peer's close_notify, or EOF); `WouldBlock` when nothing is there.
    pub(crate) fn read(
        &self,
        stream: &TcpStream,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<usize> {
        let mut guard = self.session()?;
        let session = &mut *guard;
        if session.peer_closed {
            return Ok(0);
        }
        with_room(&READ_ROOM, MAX_RECORD, |buf| {
            read_records(session, stream, buf, sink)
        })
    }

    /// Encrypts and writes `bytes`, advancing it past what was taken, until
    /// all of it and everything encrypted before went to the socket
    /// (`Ready`), or the socket is full (`Pending`, woken when it is
    /// writable). The session is locked only within this call, and holds at
    /// most about one record the socket did not take.
    pub(crate) fn poll_write_all(
        &self,
        stream: &Async<TcpStream>,
        cx: &mut Context<'_>,
        bytes: &mut &[u8],
    ) -> Poll<io::Result<()>> {
        loop {
            let blocked = {
                let mut guard = self.session()?;
                let session = &mut *guard;
                match flush(&mut session.outgoing, stream.get_ref()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                    Err(e) => return Poll::Ready(Err(e)),
                    Ok(()) if bytes.is_empty() => return Poll::Ready(Ok(())),
                    Ok(()) => {
                        let n = bytes.len().min(MAX_PLAINTEXT);
                        encrypt(session, Some(stream.get_ref()), |traffic, out| {
                            traffic.encrypt(&bytes[..n], out)
                        })?;
                        *bytes = &bytes[n..];
                        false
                    }
                }
            };
            if blocked {
                // Ready means the socket became writable since: try again.
                ready!(stream.poll_writable(cx))?;
            }
        }
    }

    /// Queues close_notify after everything written so far; a write (of
    /// nothing) sends it.
    pub(crate) fn queue_close_notify(&self) {
        // Without a session (cannot happen: the writer starts after the
        // handshake) there is nothing to close, and the write reports it.
        if let Ok(mut session) = self.session() {
            // On an error the connection is ending anyway: the write that
            // follows reports what is wrong, or sends what there is.
            let _ = encrypt(&mut session, None, |traffic, out| {
                traffic.queue_close_notify(out)
            });
        }
    }
}

/// [`TlsSession::read`] with `buf` (one record's room) to work in.
fn read_records(
    session: &mut Session,
    mut stream: &TcpStream,
    buf: &mut [u8],
    sink: &mut dyn FnMut(&[u8]),
) -> io::Result<usize> {
    let mut used = session.incoming.len();
    buf[..used].copy_from_slice(&session.incoming);
    // First what is there already (what followed the handshake), then
    // the socket: one read of it, so that whatever it brought is charged
    // even when it holds no text.
    let mut read = 0;
    loop {
        let (taken, plain) = decrypt(session, stream, &mut buf[..used], sink)?;
        buf.copy_within(taken..used, 0);
        used -= taken;
        if read > 0 || plain > 0 {
            // After a close_notify the next call says so: the text before it
            // is taken first. Text left from the handshake was not charged.
            keep_incoming(session, &buf[..used]);
            return Ok(read.max(plain));
        }
        if session.peer_closed {
            return Ok(0);
        }
        if used == buf.len() {
            return Err(too_large());
        }
        match stream.read(&mut buf[used..]) {
            Ok(0) => return Ok(0),
            Ok(n) => {
                used += n;
                read = n;
            }
            Err(e) => {
                keep_incoming(session, &buf[..used]);
                return Err(e);
            }
        }
    }
}

/// Keeps the start of an incomplete record for the next read, in an
/// allocation of its size (none when empty).
fn keep_incoming(session: &mut Session, rest: &[u8]) {
    session.incoming = rest.to_vec();
}

/// Decrypts the complete records in `buf`, handing their plaintext to
/// `sink`, and answers what rustls wants answered (alerts, key updates) if
/// the socket takes it now (else the writer's next write sends it). Returns
/// the bytes of `buf` used up and the plaintext bytes handed over.
fn decrypt(
    session: &mut Session,
    stream: &TcpStream,
    buf: &mut [u8],
    sink: &mut dyn FnMut(&[u8]),
) -> io::Result<(usize, usize)> {
    let (mut taken, mut plain) = (0, 0);
    loop {
        let status = session.conn.process_tls_records(&mut buf[taken..]);
        let discard = status.discard;
        let mut transmit = false;
        match status.state {
            Err(e) => {
                let _ = send_alert(&mut session.conn, &mut session.outgoing, stream);
                return Err(invalid(e));
            }
            Ok(ConnectionState::ReadTraffic(mut records)) => {
                while let Some(record) = records.next_record() {
                    let record = record.map_err(invalid)?;
                    sink(record.payload);
                    plain += record.payload.len();
                }
            }
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                encode(&mut data, &mut session.outgoing)?
            }
            Ok(ConnectionState::TransmitTlsData(data)) => {
                data.done();
                transmit = true;
            }
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                session.peer_closed = true;
                return Ok((taken + discard, plain));
            }
            // Nothing more to decrypt without more bytes.
            Ok(ConnectionState::WriteTraffic(_) | ConnectionState::BlockedHandshake) => {
                return Ok((taken + discard, plain))
            }
            Ok(other) => return Err(invalid(format!("unexpected TLS state {other:?}"))),
        }
        taken += discard;
        if transmit {
            match flush(&mut session.outgoing, stream) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }
}

/// Runs `op` (encrypting data, or close_notify) once rustls is ready for
/// application data. With a `stream`, writes the records to it if nothing
/// waits before them; what it does not take waits in `outgoing`.
fn encrypt(
    session: &mut Session,
    stream: Option<&TcpStream>,
    mut op: impl FnMut(
        &mut WriteTraffic<'_, ServerConnectionData>,
        &mut [u8],
    ) -> Result<usize, EncryptError>,
) -> io::Result<()> {
    with_room(&WRITE_ROOM, WRITE_ROOM_LEN, |room| {
        encrypt_in(session, stream, &mut op, room)
    })
}

/// [`encrypt`] with `room` (a record's room) to encrypt into.
fn encrypt_in(
    session: &mut Session,
    stream: Option<&TcpStream>,
    op: &mut impl FnMut(
        &mut WriteTraffic<'_, ServerConnectionData>,
        &mut [u8],
    ) -> Result<usize, EncryptError>,
    room: &mut [u8],
) -> io::Result<()> {
    let mut spill = Vec::new();
    // Bounded: each turn either finishes or hands rustls's queued records
    // (alerts, a key update) to `outgoing`, which it does a few at most.
    for _ in 0..8 {
        // The reader decrypts every complete record before it lets go of
        // the session, so `incoming` holds at most part of one and nothing
        // is decrypted here; rustls is given it all the same, as it expects.
        let status = session.conn.process_tls_records(&mut session.incoming);
        let discard = status.discard;
        let written = match status.state.map_err(invalid)? {
            ConnectionState::WriteTraffic(mut traffic) => {
                let out = match op(&mut traffic, room) {
                    Ok(n) => &room[..n],
                    Err(EncryptError::InsufficientSize(s)) => {
                        spill.resize(s.required_size, 0);
                        let n = op(&mut traffic, &mut spill).map_err(invalid)?;
                        &spill[..n]
                    }
                    Err(e) => return Err(invalid(e)),
                };
                // Straight from the room if nothing waits before it: the
                // usual case costs no allocation.
                let sent = match stream {
                    Some(stream) if session.outgoing.is_empty() => write_some(stream, out)?,
                    _ => 0,
                };
                session.outgoing.extend_from_slice(&out[sent..]);
                true
            }
            ConnectionState::EncodeTlsData(mut data) => {
                encode(&mut data, &mut session.outgoing)?;
                false
            }
            // What was encoded goes out before the records that follow.
            ConnectionState::TransmitTlsData(data) => {
                data.done();
                false
            }
            ConnectionState::PeerClosed => {
                session.peer_closed = true;
                false
            }
            ConnectionState::Closed => {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "TLS session closed",
                ))
            }
            other => return Err(invalid(format!("TLS not ready to write: {other:?}"))),
        };
        session.incoming.drain(..discard);
        if written {
            return Ok(());
        }
    }
    Err(invalid("TLS session not ready to write"))
}

/// Appends what rustls wants sent to `out`.
fn encode(data: &mut EncodeTlsData<'_, ServerConnectionData>, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    let mut room = 512;
    loop {
        out.resize(start + room, 0);
        match data.encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) if s.required_size > room => {
                room = s.required_size;
            }
            Err(e) => {
                out.truncate(start);
                return Err(invalid(e));
            }
        }
    }
}

/// Writes `outgoing` to the socket until it is empty (freeing it) or the
/// socket is full (`WouldBlock`, the rest kept).
fn flush(outgoing: &mut Vec<u8>, mut stream: &TcpStream) -> io::Result<()> {
    let mut sent = 0;
    let result = loop {
        if sent == outgoing.len() {
            break Ok(());
        }
        match stream.write(&outgoing[sent..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    if sent == outgoing.len() {
        *outgoing = Vec::new();
    } else {
        outgoing.drain(..sent);
    }
    result
}

/// Writes what of `bytes` the socket takes now; `WouldBlock` is 0.
fn write_some(mut stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Best effort, after rustls failed: sends the alert it queued saying why,
/// if the socket takes it now, after what waits in `outgoing`.
fn send_alert(
    conn: &mut UnbufferedServerConnection,
    outgoing: &mut Vec<u8>,
    stream: &TcpStream,
) -> io::Result<()> {
    if let Ok(ConnectionState::EncodeTlsData(mut data)) = conn.process_tls_records(&mut []).state {
        encode(&mut data, outgoing)?;
    }
    flush(outgoing, stream)
}

/// Writes all of `bytes`, waiting for the socket as needed (handshake only).
async fn write_all_async(stream: &Async<TcpStream>, bytes: &[u8]) -> io::Result<()> {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.get_ref().write(&bytes[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads more of the handshake into `incoming`, waiting for the socket as
/// needed; EOF is an error here. Grows the buffer 4 KiB at a time, up to
/// [`MAX_RECORD`].
async fn read_more(stream: &Async<TcpStream>, incoming: &mut Vec<u8>) -> io::Result<()> {
    let used = incoming.len();
    if used >= MAX_RECORD {
        return Err(too_large());
    }
    incoming.resize((used + 4096).min(MAX_RECORD), 0);
    let result = loop {
        match stream.get_ref().read(&mut incoming[used..]) {
            Ok(0) => {
                break Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed by the client",
                ))
            }
            Ok(n) => break Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = stream.readable().await {
                    break Err(e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    incoming.truncate(used + *result.as_ref().unwrap_or(&0));
    result.map(drop)
}

/// The end of a certificate's validity (notAfter) in seconds since the
/// epoch, read from its DER (RFC 5280: Certificate, TBSCertificate,
/// Validity). `None` if it does not parse; only used for a warning, so this
/// reads the fields it needs and no more.
fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2; // version [0], absent for v1
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serialNumber, signature, issuer
    }
    let (_, validity, _) = tlv(rest)?;
    let (_, _, after) = tlv(validity)?; // notBefore
    let (tag, time, _) = tlv(after)?;
    parse_time(tag, time)
}

/// One DER tag-length-value: (tag, value, what follows).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &d| (acc << 8) | usize::from(d));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) in seconds
/// since the epoch.
fn parse_time(tag: u8, t: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(t).ok()?.strip_suffix('Z')?;
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy = num(0..2)?;
            // RFC 5280: 50..99 are 19xx, 00..49 are 20xx.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 14) => (num(0..4)?, 4),
        _ => return None,
    };
    let field = |i: usize| num(rest + 2 * i..rest + 2 * i + 2);
    let (month, day) = (field(0)?, field(1)?);
    let (h, m, sec) = (field(2)?, field(3)?, field(4)?);
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        for bad in [&b"7001010000Z"[..], b"700101000000", b"7001010000xxZ"] {
            assert_eq!(parse_time(0x17, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn expiry_is_read_from_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2001, 2, 3);
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            not_after(cert.der()),
            Some(days_from_civil(2001, 2, 3) * 86_400)
        );
        params.not_after = rcgen::date_time_ymd(2060, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            not_after(cert.der()),
            Some(days_from_civil(2060, 1, 1) * 86_400)
        );
        assert_eq!(not_after(&cert.der()[..40]), None, "truncated");
    }

    #[test]
    fn fingerprint_is_openssl_style() {
        let f = fingerprint(b"");
        assert!(f.starts_with("E3:B0:C4:42:98:FC:1C:14"), "{f}");
        assert_eq!(f.len(), 32 * 3 - 1);
    }
}
