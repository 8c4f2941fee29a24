//! The byte stream under one client connection: plain TCP, or TLS with rustls
//! driven by hand over the same non-blocking socket.
//!
//! client.rs waits for socket readiness and then reads or writes without
//! blocking; a `futures-rustls` stream would hide the socket behind polls. So a
//! TLS connection here is a `rustls::ClientConnection` fed from the socket on
//! each non-blocking read and drained into it on each write, and "readable" also
//! counts plaintext rustls already decrypted. The plain path is what it was: one
//! `match` per call.

use std::io::{self, Read as _, Write as _};
use std::net::TcpStream as StdStream;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{ring as ring_provider, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use smol::Async;

/// How clients reach the server: `--tls`, `--ca-file`, `--tls-insecure`, `--tls-name`.
#[derive(Clone, Debug)]
pub(crate) struct TlsSettings {
    pub(crate) config: Arc<ClientConfig>,
    /// The name sent as SNI and checked against the certificate (with `--ca-file`).
    pub(crate) name: ServerName<'static>,
}

impl TlsSettings {
    /// Verifying against `ca_file` (its certificates are the only roots), or not at
    /// all without one. Session resumption is off: every connection is a full
    /// handshake, as for that many distinct clients, the server's worst case.
    pub(crate) fn new(ca_file: Option<&Path>, name: &str) -> Result<Self, String> {
        let provider = Arc::new(ring_provider::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match ca_file {
            Some(path) => {
                let what = |e: String| format!("--ca-file {}: {e}", path.display());
                let bytes = std::fs::read(path).map_err(|e| what(e.to_string()))?;
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&bytes) {
                    let cert = cert.map_err(|e| what(format!("not a valid PEM file ({e})")))?;
                    roots.add(cert).map_err(|e| what(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(what("holds no PEM certificate".to_owned()));
                }
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| what(e.to_string()))?
            }
            None => Arc::new(AnyCertificate(provider.clone())),
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        let name = ServerName::try_from(name.to_owned())
            .map_err(|_| format!("--tls-name {name:?} is neither a DNS name nor an IP address"))?;
        Ok(Self {
            config: Arc::new(config),
            name,
        })
    }
}

/// `--tls-insecure` (and `--tls` alone): any certificate. The handshake's
/// signature is still checked against it, as a client that verifies would.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One connection's bytes.
pub(crate) enum Stream {
    Plain(Async<StdStream>),
    Tls(Box<Tls>),
}

/// A TLS session over a non-blocking socket.
pub(crate) struct Tls {
    sock: Async<StdStream>,
    conn: ClientConnection,
    /// rustls holds decrypted bytes (or the peer's close) not yet read: a read
    /// can proceed without the socket being readable.
    ready: bool,
}

fn tls_error(e: rustls::Error) -> io::Error {
    let hint = match e {
        rustls::Error::InvalidMessage(_) => " (is it a plaintext port?)",
        rustls::Error::InvalidCertificate(_) => {
            " (pass the server's certificate or CA as --ca-file)"
        }
        _ => "",
    };
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}{hint}"))
}

impl Tls {
    /// Runs the handshake over `sock` (connected, non-blocking).
    pub(crate) async fn handshake(
        sock: Async<StdStream>,
        settings: &TlsSettings,
    ) -> io::Result<Self> {
        let conn = ClientConnection::new(settings.config.clone(), settings.name.clone())
            .map_err(tls_error)?;
        let mut tls = Self {
            sock,
            conn,
            ready: false,
        };
        while tls.conn.is_handshaking() {
            if !tls.flush_records()? {
                tls.sock.writable().await?;
                continue;
            }
            match tls.conn.read_tls(&mut tls.sock.get_ref()) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection during the TLS handshake",
                    ))
                }
                Ok(_) => tls.process()?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => tls.sock.readable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // The client's last flight (its Finished) must reach the server.
        while !tls.flush_records()? {
            tls.sock.writable().await?;
        }
        Ok(tls)
    }

    /// Decrypts what read_tls buffered; on a TLS error the alert goes out first.
    fn process(&mut self) -> io::Result<()> {
        match self.conn.process_new_packets() {
            Ok(state) => {
                self.ready = state.plaintext_bytes_to_read() > 0 || state.peer_has_closed();
                Ok(())
            }
            Err(e) => {
                let _ = self.flush_records();
                Err(tls_error(e))
            }
        }
    }

    /// Writes pending TLS records without blocking: true once none is left.
    fn flush_records(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock.get_ref()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => {
                    // A full buffer may have left more behind.
                    self.ready = n == buf.len() && n > 0;
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: an end like any other here.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(0)),
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(&mut self.sock.get_ref()) {
                // TCP EOF: the reader reports it on the next turn.
                Ok(_) => self.process()?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready = false;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            // Replies rustls owes (alerts, key updates): now if the socket
            // takes them, else with the next write.
            self.flush_records()?;
        }
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.flush_records()?;
        // rustls takes what fits its buffer limit (64 KiB of records).
        let n = if buf.is_empty() {
            0
        } else {
            self.conn.writer().write(buf)?
        };
        self.flush_records()?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        loop {
            if !buf.is_empty() {
                let n = self.conn.writer().write(buf)?;
                buf = &buf[n..];
            }
            let flushed = self.flush_records()?;
            if flushed && buf.is_empty() {
                return Ok(());
            }
            if !flushed {
                self.sock.writable().await?;
            }
        }
    }

    /// Sends close_notify if the socket takes it at once (a polite end that
    /// must not hold up a closing client).
    pub(crate) fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush_records();
    }
}

impl Stream {
    /// The socket under the stream (for its options).
    pub(crate) fn socket(&self) -> &Async<StdStream> {
        match self {
            Self::Plain(s) => s,
            Self::Tls(t) => &t.sock,
        }
    }

    /// Waits until a read may find something: the socket is readable, or
    /// rustls holds plaintext already.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.readable().await,
            Self::Tls(t) if t.ready => Ok(()),
            Self::Tls(t) => t.sock.readable().await,
        }
    }

    /// Waits until the socket takes more bytes.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.socket().writable().await
    }

    /// One non-blocking read of at most `buf.len()` bytes: `None` if nothing
    /// was waiting, `Some(0)` at the end.
    pub(crate) fn try_read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            Self::Plain(s) => loop {
                match s.get_ref().read(buf) {
                    Ok(n) => return Ok(Some(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            Self::Tls(t) => t.try_read(buf),
        }
    }

    /// One non-blocking write: how much of `buf` was taken (WouldBlock if
    /// none). With TLS, also pushes out records written earlier.
    pub(crate) fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.get_ref().write(buf),
            Self::Tls(t) => t.try_write(buf),
        }
    }

    /// Bytes taken by [`Stream::try_write`] that still wait for the socket.
    pub(crate) fn pending(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls(t) => t.conn.wants_write(),
        }
    }

    /// Writes all of `buf` (and, with TLS, anything still pending).
    pub(crate) async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(s) => futures_lite::AsyncWriteExt::write_all(s, buf).await,
            Self::Tls(t) => t.write_all(buf).await,
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Self::Tls(t) = self {
            t.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use rustls::pki_types::PrivateKeyDer;

    use super::*;

    /// A rustls server in a thread on 127.0.0.1 that sends `greeting`, then
    /// echoes every byte back until the client closes.
    fn echo_server(
        greeting: &'static [u8],
    ) -> (
        std::net::SocketAddr,
        String,
        std::thread::JoinHandle<io::Result<u64>>,
    ) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let pem = ck.cert.pem();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            ring_provider::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![ck.cert.der().clone()],
            PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept()?;
            tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
            let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            tls.write_all(greeting)?;
            let mut echoed = 0u64;
            let mut buf = [0u8; 4096];
            loop {
                match tls.read(&mut buf) {
                    Ok(0) => return Ok(echoed),
                    Ok(n) => {
                        tls.write_all(&buf[..n])?;
                        echoed += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(echoed),
                    Err(e) => return Err(e),
                }
            }
        });
        (addr, pem, server)
    }

    /// Reads until `want` bytes came, through readiness and try_read as
    /// client.rs does; bounded by a 10 s timer.
    async fn read_n(stream: &mut Stream, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1000];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while got.len() < want && std::time::Instant::now() < deadline {
            let ready = crate::runtime::until(deadline, stream.readable()).await;
            assert!(matches!(ready, Some(Ok(()))), "not readable in time");
            if let Some(n) = stream.try_read(&mut buf).unwrap() {
                assert!(n > 0, "closed early");
                got.extend_from_slice(&buf[..n]);
            }
        }
        got
    }

    #[test]
    fn tls_carries_a_greeting_and_a_large_echo_with_the_ca_file() {
        let (addr, pem, server) = echo_server(b"HELLO tls\n");
        let path = std::env::temp_dir().join(format!("chatload-ca-{}.pem", std::process::id()));
        std::fs::write(&path, pem).unwrap();
        let settings = TlsSettings::new(Some(&path), "localhost");
        let _ = std::fs::remove_file(&path);
        let settings = settings.unwrap();
        // Larger than rustls's 64 KiB buffer limit and than one read.
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        smol::block_on(async {
            let sock = Async::<StdStream>::connect(addr).await.unwrap();
            let mut stream = Stream::Tls(Box::new(Tls::handshake(sock, &settings).await.unwrap()));
            assert_eq!(read_n(&mut stream, 10).await, b"HELLO tls\n");
            // Half through write_all, half through try_write as pump does.
            let (a, b) = payload.split_at(payload.len() / 2);
            stream.write_all(a).await.unwrap();
            let mut rest = b;
            let mut echoed = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while (!rest.is_empty() || stream.pending()) && std::time::Instant::now() < deadline {
                match stream.try_write(rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
                // Keep reading meanwhile, or both sides fill up.
                let mut buf = [0u8; 16384];
                if let Ok(Some(n)) = stream.try_read(&mut buf) {
                    echoed.extend_from_slice(&buf[..n]);
                }
                smol::Timer::after(Duration::from_micros(200)).await;
            }
            assert!(rest.is_empty());
            let more = read_n(&mut stream, payload.len() - echoed.len()).await;
            echoed.extend_from_slice(&more);
            assert_eq!(echoed, payload);
        });
        assert_eq!(server.join().unwrap().unwrap(), 300_000);
    }

    #[test]
    fn an_untrusted_certificate_fails_the_handshake_and_no_ca_accepts_it() {
        let (addr, _pem, server) = echo_server(b"x");
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let path = std::env::temp_dir().join(format!("chatload-other-{}.pem", std::process::id()));
        std::fs::write(&path, other.cert.pem()).unwrap();
        let settings = TlsSettings::new(Some(&path), "localhost");
        let _ = std::fs::remove_file(&path);
        let err = smol::block_on(async {
            let sock = Async::<StdStream>::connect(addr).await.unwrap();
            Tls::handshake(sock, &settings.unwrap())
                .await
                .err()
                .unwrap()
        });
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // rcgen names every self-signed certificate alike, so this one is taken
        // for the issuer and its signature fails.
        assert!(
            err.to_string().contains("invalid peer certificate"),
            "{err}"
        );
        assert!(server.join().unwrap().is_err());

        let (addr, _pem, server) = echo_server(b"hi\n");
        let insecure = TlsSettings::new(None, "localhost").unwrap();
        smol::block_on(async {
            let sock = Async::<StdStream>::connect(addr).await.unwrap();
            let mut stream = Stream::Tls(Box::new(Tls::handshake(sock, &insecure).await.unwrap()));
            assert_eq!(read_n(&mut stream, 3).await, b"hi\n");
        });
        assert_eq!(server.join().unwrap().unwrap(), 0);
    }

    #[test]
    fn bad_settings_are_one_line_errors() {
        let path = std::env::temp_dir().join(format!("chatload-notpem-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate").unwrap();
        let err = TlsSettings::new(Some(&path), "localhost").unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let err = TlsSettings::new(Some(Path::new("/nonexistent.pem")), "localhost").unwrap_err();
        assert!(err.starts_with("--ca-file /nonexistent.pem: "), "{err}");
        let err = TlsSettings::new(None, "not a name!").unwrap_err();
        assert!(err.contains("--tls-name"), "{err}");
    }
}
