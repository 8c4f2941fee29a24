//! TLS for the listeners: the server's certificate ([`TlsSetup`]: read from PEM
//! files or made self-signed, re-read on SIGHUP) and one connection's session
//! ([`TlsSession`]), which its reader and writer share.
//!
//! rustls runs with the ring provider only, TLS 1.2 and 1.3. The handshake is
//! futures-rustls's acceptor over a borrowed `&Async<TcpStream>`; once it is
//! done the `ServerConnection` moves into a `std::sync::Mutex` that the reader
//! and the writer hold only inside non-blocking calls (`read_tls`,
//! `process_new_packets`, `write_tls`), never across an `.await`: a rustls
//! session is one state machine for both directions. Plaintext connections
//! have no session and never touch this module.

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
use futures_rustls::rustls::sign::CertifiedKey;
use futures_rustls::rustls::{self, ServerConfig, ServerConnection};
use futures_rustls::TlsAcceptor;
use smol::Async;

use crate::config::Config;

/// The file names `--tls-self-signed` uses in `--data-dir`.
pub(crate) const SELF_SIGNED_CERT: &str = "tls-self-signed.crt";
pub(crate) const SELF_SIGNED_KEY: &str = "tls-self-signed.key";

/// Encrypted bytes rustls keeps ready to send per connection before the
/// writer must pass them to the socket (its default is 64 KiB). The queue in
/// `outbox.rs` holds the backlog; this is only the hand-over.
const SEND_BUFFER_LIMIT: usize = 16 * 1024;

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

/// One connection's TLS state: the configuration until the handshake is
/// done, then the session the reader and writer share.
#[derive(Debug)]
pub(crate) struct TlsSession {
    config: Arc<ServerConfig>,
    session: OnceLock<Mutex<ServerConnection>>,
}

impl TlsSession {
    pub(crate) fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            config,
            session: OnceLock::new(),
        }
    }

    /// Runs the handshake over `stream`. Nothing else uses the socket
    /// meanwhile (the connection's reader and writer start after it).
    pub(crate) async fn handshake(&self, stream: &Async<TcpStream>) -> io::Result<()> {
        let done = TlsAcceptor::from(self.config.clone())
            .accept(stream)
            .await?;
        let (_, mut session) = done.into_inner();
        session.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        // Set once: the handshake runs once per connection.
        let _ = self.session.set(Mutex::new(session));
        Ok(())
    }

    fn session(&self) -> io::Result<MutexGuard<'_, ServerConnection>> {
        let session = self
            .session
            .get()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "TLS handshake not done"))?;
        // rustls does not panic on input; a poisoned session is still whole.
        Ok(session.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// One non-blocking read of decrypted bytes into `buf`: what rustls has
    /// decrypted already, else what the socket has. `Ok(0)` at the end (the
    /// peer's close_notify, or EOF); `WouldBlock` when nothing is there.
    pub(crate) fn read(&self, mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        let mut session = self.session()?;
        loop {
            match session.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            if session.read_tls(&mut stream)? == 0 {
                return Ok(0);
            }
            if let Err(e) = session.process_new_packets() {
                // rustls queued an alert saying why: best effort.
                let _ = send_queued(&mut session, stream);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // The peer's records may want an answer (a key update): send it
            // now if the socket takes it, else the writer's next write does.
            match send_queued(&mut session, stream) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }

    /// Encrypts and writes `bytes`, advancing it past what was taken, until
    /// all of it and everything rustls holds went to the socket (`Ready`), or
    /// the socket is full (`Pending`, woken when it is writable). The session
    /// is locked only within this call.
    pub(crate) fn poll_write_all(
        &self,
        stream: &Async<TcpStream>,
        cx: &mut Context<'_>,
        bytes: &mut &[u8],
    ) -> Poll<io::Result<()>> {
        loop {
            let blocked = {
                let mut session = self.session()?;
                while !bytes.is_empty() {
                    // 0 once SEND_BUFFER_LIMIT bytes wait: send those first.
                    let n = session.writer().write(bytes)?;
                    if n == 0 {
                        break;
                    }
                    *bytes = &bytes[n..];
                }
                match send_queued(&mut session, stream.get_ref()) {
                    Ok(()) => false,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            };
            if blocked {
                // Ready means the socket became writable since: try again.
                ready!(stream.poll_writable(cx))?;
            } else if bytes.is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Queues close_notify after everything written so far; a write (of
    /// nothing) sends it.
    pub(crate) fn queue_close_notify(&self) {
        // Without a session (cannot happen: the writer starts after the
        // handshake) there is nothing to close, and the write reports it.
        if let Ok(mut session) = self.session() {
            session.send_close_notify();
        }
    }
}

/// Writes what rustls has ready to send until done or the socket is full.
fn send_queued(session: &mut ServerConnection, mut stream: &TcpStream) -> io::Result<()> {
    while session.wants_write() {
        session.write_tls(&mut stream)?;
    }
    Ok(())
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
