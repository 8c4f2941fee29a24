//! TLS to the server: which certificates to trust (`--ca-file`, `--fingerprint`,
//! `--insecure`, else the system's roots), a [`TlsConnector`] built from that, and
//! [`connect`], which turns every verification failure into one line saying what did
//! not match and which flag fixes it.
//!
//! rustls with the `ring` provider, set explicitly on every config (with aws-lc-rs also
//! in the tree rustls would panic choosing a process default). TLS 1.2 and 1.3 only.
//! The system's roots come from `rustls-platform-verifier`: on Debian it reads
//! /etc/ssl/certs (kept by update-ca-certificates, local CAs included) where
//! `webpki-roots` would compile Mozilla's list into the binary and ignore them.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::client::TlsStream;
use futures_rustls::pki_types::pem::PemObject;
use futures_rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use futures_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use futures_rustls::rustls::client::WebPkiServerVerifier;
use futures_rustls::rustls::crypto::{ring as ring_provider, CryptoProvider};
use futures_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use futures_rustls::TlsConnector;

/// Printed by the caller on every connect made with `insecure`.
pub(crate) const INSECURE_WARNING: &str = "WARNING: --insecure: the server's certificate is NOT \
     verified; anyone between you and the server can read and change this chat";

/// How chatcli decides to trust a server. At most one of the three may be set; none
/// means the system's roots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TlsOptions {
    /// `--ca-file PEM`: trust these certificates instead of the system's roots: a
    /// private CA, or a self-signed server certificate itself. Name and expiry are
    /// still checked.
    pub(crate) ca_file: Option<PathBuf>,
    /// `--fingerprint SHA256`: accept exactly the server certificate whose SHA-256 is
    /// this (`AB:CD:..` as `openssl x509 -fingerprint -sha256` prints it, or plain
    /// hex; any case). The pin replaces chain verification: the certificate's names
    /// and validity dates are NOT checked, only that the server holds its key.
    pub(crate) fingerprint: Option<String>,
    /// `--insecure`: accept any certificate. Still encrypted, but anyone on the path
    /// can pose as the server; print [`INSECURE_WARNING`] on every connect.
    pub(crate) insecure: bool,
}

/// Why TLS could not be set up or the handshake failed. Each is one line for the
/// user (`Display`), naming the flag that fixes it where one does.
#[derive(Debug)]
pub(crate) enum TlsError {
    /// A flag's value is unusable: an unreadable or empty `--ca-file`, a malformed
    /// `--fingerprint`, flags that exclude each other, a bad server name.
    Setup(String),
    /// The server's certificate was refused: what did not match, and which flag fixes it.
    Untrusted(String),
    /// The port does not speak TLS (a plaintext port, say).
    NotTls(String),
    /// The handshake failed otherwise (closed, refused us).
    Handshake(String),
    /// The connection failed during the handshake.
    Io(io::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setup(s) | Self::Untrusted(s) | Self::NotTls(s) | Self::Handshake(s) => {
                f.write_str(s)
            }
            Self::Io(e) => write!(f, "TLS handshake: {e}"),
        }
    }
}

impl TlsError {
    /// A failure that trying again cannot fix: the certificate is not trusted,
    /// the port speaks no TLS, a flag is unusable. A reconnecting client stops
    /// at it rather than retry forever.
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, Self::Setup(_) | Self::Untrusted(_) | Self::NotTls(_))
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> Self {
        match e {
            TlsError::Io(e) => e,
            TlsError::Setup(_) => Self::new(io::ErrorKind::InvalidInput, e),
            TlsError::Untrusted(_) | TlsError::NotTls(_) | TlsError::Handshake(_) => {
                Self::new(io::ErrorKind::InvalidData, e)
            }
        }
    }
}

/// The SHA-256 fingerprint of a DER certificate as `openssl x509 -fingerprint
/// -sha256` prints it: upper-case hex pairs joined by colons.
pub(crate) fn fingerprint(cert_der: &[u8]) -> String {
    hex_pairs(ring::digest::digest(&ring::digest::SHA256, cert_der).as_ref())
}

fn hex_pairs(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Parses a `--fingerprint`: 32 bytes as 64 hex digits, either in pairs separated
/// by `:` or plain, any case. Pasted `openssl` output (`sha256 Fingerprint=AB:..`) and
/// a `SHA256 ` prefix are tolerated.
pub(crate) fn parse_fingerprint(s: &str) -> Result<[u8; 32], TlsError> {
    let bad = || {
        TlsError::Setup(format!(
            "--fingerprint {s:?} is not a SHA-256 fingerprint: expected 64 hex digits, \
             plain or in pairs separated by ':' (as `openssl x509 -noout -fingerprint -sha256` prints)"
        ))
    };
    let mut t = s.trim();
    if let Some(eq) = t.rfind('=') {
        t = &t[eq + 1..]; // "sha256 Fingerprint=AB:CD:.."
    }
    // "SHA256 AB:CD:.." as our own messages print it ('s' is no hex digit).
    if t.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("sha256")) {
        t = t[6..].trim_start_matches([':', ' ']);
    }
    let digits: Vec<u8> = if t.contains(':') {
        let pairs: Vec<&str> = t.split(':').collect();
        if pairs.iter().any(|p| p.len() != 2) {
            return Err(bad());
        }
        pairs.concat().into_bytes()
    } else {
        t.as_bytes().to_vec()
    };
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let hi = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
        let lo = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
        // Both are below 16, so the byte cannot overflow.
        *o = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

/// Reads every certificate in a PEM file (`--ca-file`).
pub(crate) fn read_pem_certificates(
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let setup = |why: String| TlsError::Setup(format!("--ca-file {}: {why}", path.display()));
    // Read first so that a missing file says so (the PEM reader would call it a PEM error).
    let bytes = std::fs::read(path).map_err(|e| setup(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setup(format!("not a valid PEM file ({e})")))?;
    if certs.is_empty() {
        return Err(setup(
            "holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    Ok(certs)
}

/// Builds the connector for `opts`: reads `--ca-file`, parses `--fingerprint`, loads
/// the system's roots if neither (nor `insecure`) is given.
pub(crate) fn connector(opts: &TlsOptions) -> Result<TlsConnector, TlsError> {
    let set = [
        opts.ca_file.is_some(),
        opts.fingerprint.is_some(),
        opts.insecure,
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err(TlsError::Setup(
            "--ca-file, --fingerprint and --insecure exclude each other: pass one".to_owned(),
        ));
    }
    let provider = Arc::new(ring_provider::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = if let Some(fp) = &opts.fingerprint {
        Arc::new(Pinned {
            want: Some(parse_fingerprint(fp)?),
            provider: provider.clone(),
        })
    } else if opts.insecure {
        Arc::new(Pinned {
            want: None,
            provider: provider.clone(),
        })
    } else if let Some(path) = &opts.ca_file {
        let mut roots = RootCertStore::empty();
        for cert in read_pem_certificates(path)? {
            roots.add(cert).map_err(|e| {
                TlsError::Setup(format!(
                    "--ca-file {}: a certificate cannot serve as a root: {e}",
                    path.display()
                ))
            })?;
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsError::Setup(format!("--ca-file {}: {e}", path.display())))?;
        Arc::new(Explained {
            inner,
            roots: format!("--ca-file {}", path.display()),
        })
    } else {
        let inner = rustls_platform_verifier::Verifier::new(provider.clone()).map_err(|e| {
            TlsError::Setup(format!(
                "the system's root certificates: {e}: pass --ca-file or --fingerprint"
            ))
        })?;
        Arc::new(Explained {
            inner: Arc::new(inner),
            roots: "the system's roots".to_owned(),
        })
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Runs the TLS handshake over `tcp` (a `smol::net::TcpStream` or an
/// `Async<TcpStream>`), for `server_name` (the host the user typed: a DNS name or an
/// IP address, checked against the certificate unless pinned or insecure).
pub(crate) async fn connect<S>(
    connector: &TlsConnector,
    server_name: &str,
    tcp: S,
) -> Result<TlsStream<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
        TlsError::Setup(format!(
            "{server_name:?} is neither a DNS name nor an IP address, so no certificate can match it"
        ))
    })?;
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| handshake_error(server_name, e))
}

/// One line for a failed handshake: the verifiers' own messages, or what rustls said.
fn handshake_error(server_name: &str, e: io::Error) -> TlsError {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => TlsError::Handshake(format!(
                "{server_name} closed the connection during the TLS handshake \
                 (not a TLS port, or it refused us)"
            )),
            _ => TlsError::Io(e),
        };
    };
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(other))) => {
            match other.downcast_ref::<Refused>() {
                Some(r) => TlsError::Untrusted(r.0.clone()),
                None => TlsError::Untrusted(format!("certificate of {server_name} refused: {tls}")),
            }
        }
        rustls::Error::InvalidCertificate(_) => {
            TlsError::Untrusted(format!("certificate of {server_name} refused: {tls}"))
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            TlsError::NotTls(format!(
                "{server_name} does not speak TLS on this port ({tls}): is it a plaintext port?"
            ))
        }
        rustls::Error::AlertReceived(alert) => TlsError::Handshake(format!(
            "{server_name} refused the TLS handshake (alert: {alert:?})"
        )),
        _ => TlsError::Handshake(format!("TLS handshake with {server_name}: {tls}")),
    }
}

/// A complete, user-facing verification failure, carried through rustls as a
/// `CertificateError::Other` and unwrapped by [`handshake_error`].
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(message: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refused(
        message,
    )))))
}

fn time(t: UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(
            || format!("{} s after 1970", t.as_secs()),
            |ts| ts.to_string(),
        )
}

/// `localhost` from webpki's `DnsName("localhost")` (and `IpAddress(..)` alike).
fn bare_name(presented: &str) -> &str {
    match presented.split_once('(') {
        Some((_, inner)) => inner.trim_end_matches(')').trim_matches('"'),
        None => presented,
    }
}

fn name_of(n: &ServerName<'_>) -> String {
    match n {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => format!("{n:?}"),
    }
}

/// Chain verification (the system's roots or `--ca-file`) whose failures name the
/// server's fingerprint and the flag that would help.
#[derive(Debug)]
struct Explained {
    inner: Arc<dyn ServerCertVerifier>,
    /// "the system's roots" or "--ca-file PATH", for messages.
    roots: String,
}

impl ServerCertVerifier for Explained {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let err = match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => return Ok(v),
            Err(rustls::Error::InvalidCertificate(e)) => e,
            Err(other) => return Err(other),
        };
        let name = name_of(server_name);
        let fp = fingerprint(end_entity);
        let pin = format!("--fingerprint {fp} (once the server's operator confirms it)");
        let roots = &self.roots;
        let message = match err {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "certificate for {name} is not trusted by {roots} (self-signed, or from a private CA?): \
                 pass --ca-file with the server's certificate or its CA, or {pin}"
            ),
            CertificateError::NotValidForName => format!(
                "certificate is not valid for the name {name}: connect with a name it lists, or {pin}"
            ),
            CertificateError::NotValidForNameContext { presented, .. } => format!(
                "certificate is for {}, not for {name}: connect with one of those names, or {pin}",
                presented.iter().map(|p| bare_name(p)).collect::<Vec<_>>().join(", ")
            ),
            CertificateError::Expired => format!(
                "certificate for {name} has expired: the server must renew it, or {pin} (a pin skips the dates)"
            ),
            CertificateError::ExpiredContext { not_after, .. } => format!(
                "certificate for {name} expired at {}: the server must renew it, or {pin} (a pin skips the dates)",
                time(not_after)
            ),
            CertificateError::NotValidYet => format!(
                "certificate for {name} is not valid yet (check this machine's clock), or {pin}"
            ),
            CertificateError::NotValidYetContext { not_before, .. } => format!(
                "certificate for {name} is valid only from {} (check this machine's clock), or {pin}",
                time(not_before)
            ),
            other => format!(
                "certificate for {name} refused ({}) by {roots}: {pin}",
                rustls::Error::InvalidCertificate(other)
            ),
        };
        Err(refused(message))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `--fingerprint` (`want` set: the end-entity certificate must have that SHA-256)
/// or `--insecure` (`want` None: any certificate). Either way the handshake
/// signature is verified against the presented certificate, so the server must hold
/// its private key: without that a pin would accept anyone replaying the certificate.
#[derive(Debug)]
struct Pinned {
    want: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(want) = self.want else {
            return Ok(ServerCertVerified::assertion());
        };
        let got = ring::digest::digest(&ring::digest::SHA256, end_entity);
        if got.as_ref() == want {
            return Ok(ServerCertVerified::assertion());
        }
        Err(refused(format!(
            "certificate for {} has fingerprint SHA256 {}, not the pinned --fingerprint {}: \
             if the server's certificate changed, pin the new one only once its operator confirms it",
            name_of(server_name),
            hex_pairs(got.as_ref()),
            hex_pairs(&want),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::net::{SocketAddr, TcpListener};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use futures_lite::{future, AsyncReadExt as _};
    use futures_rustls::pki_types::PrivateKeyDer;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    use super::*;

    /// What the in-process server sends once the handshake is done.
    const GREETING: &[u8] = b"HELLO tls\n";

    /// A server certificate chain and its key (PKCS#8 DER).
    #[derive(Clone)]
    struct Identity {
        chain: Vec<CertificateDer<'static>>,
        key: Vec<u8>,
    }

    fn self_signed(name: &str) -> (Identity, String) {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let pem = ck.cert.pem();
        let id = Identity {
            chain: vec![ck.cert.der().clone()],
            key: ck.signing_key.serialize_der(),
        };
        (id, pem)
    }

    /// A CA (its PEM) and a leaf for `name` it signed, valid until `not_after` if given.
    fn ca_and_leaf(name: &str, not_after: Option<(i32, u8, u8)>) -> (Identity, String) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let mut leaf_params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        if let Some((y, m, d)) = not_after {
            leaf_params.not_before = rcgen::date_time_ymd(y - 1, m, d);
            leaf_params.not_after = rcgen::date_time_ymd(y, m, d);
        }
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        let id = Identity {
            chain: vec![leaf.der().clone(), ca.as_ref().der().clone()],
            key: leaf_key.serialize_der(),
        };
        (id, ca.as_ref().pem())
    }

    /// Serves one TLS connection on 127.0.0.1 from a thread: the handshake, then
    /// [`GREETING`]. The handle tells how the server's side went.
    fn serve_once(id: Identity) -> (SocketAddr, JoinHandle<Result<(), String>>) {
        let provider = Arc::new(ring_provider::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(id.chain, PrivateKeyDer::Pkcs8(id.key.into()))
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().map_err(|e| e.to_string())?;
            // Bounds the thread if the client never finishes.
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            tcp.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            tls.write_all(GREETING).map_err(|e| e.to_string())?;
            tls.conn.send_close_notify();
            tls.flush().map_err(|e| e.to_string())
        });
        (addr, server)
    }

    /// Connects to `addr` as `name` with `opts` and reads the greeting.
    fn greet(opts: &TlsOptions, addr: SocketAddr, name: &str) -> Result<Vec<u8>, TlsError> {
        let connector = connector(opts)?;
        let exchange = async {
            let tcp = smol::net::TcpStream::connect(addr)
                .await
                .map_err(TlsError::Io)?;
            let mut tls = connect(&connector, name, tcp).await?;
            let mut got = vec![0; GREETING.len()];
            tls.read_exact(&mut got).await.map_err(TlsError::Io)?;
            Ok(got)
        };
        smol::block_on(future::or(exchange, async {
            smol::Timer::after(Duration::from_secs(10)).await;
            Err(TlsError::Handshake("test: no answer in 10 s".to_owned()))
        }))
    }

    /// A file in the temporary directory holding `text`, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str, text: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("chatcli-tls-{}-{tag}.pem", std::process::id()));
            std::fs::write(&path, text).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn ca_file(path: &TempFile) -> TlsOptions {
        TlsOptions {
            ca_file: Some(path.0.clone()),
            ..TlsOptions::default()
        }
    }

    fn pin(fp: &str) -> TlsOptions {
        TlsOptions {
            fingerprint: Some(fp.to_owned()),
            ..TlsOptions::default()
        }
    }

    #[test]
    fn system_roots_refuse_a_self_signed_certificate_naming_the_fixes() {
        let (id, _) = self_signed("localhost");
        let fp = fingerprint(&id.chain[0]);
        let (addr, server) = serve_once(id);
        let err = greet(&TlsOptions::default(), addr, "localhost").unwrap_err();
        let TlsError::Untrusted(msg) = &err else {
            panic!("expected a verification failure, got {err:?}");
        };
        assert!(
            msg.starts_with("certificate for localhost is not trusted by the system's roots"),
            "{msg}"
        );
        assert!(msg.contains("--ca-file"), "{msg}");
        assert!(msg.contains(&format!("--fingerprint {fp}")), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert!(server.join().unwrap().is_err(), "the server saw no refusal");
    }

    #[test]
    fn ca_file_with_the_self_signed_certificate_is_accepted() {
        let (id, pem) = self_signed("localhost");
        let file = TempFile::new("selfsigned", &pem);
        let (addr, server) = serve_once(id);
        assert_eq!(greet(&ca_file(&file), addr, "localhost").unwrap(), GREETING);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn ca_file_with_a_private_ca_accepts_its_leaf_and_checks_the_name() {
        let (id, ca_pem) = ca_and_leaf("localhost", None);
        let file = TempFile::new("privateca", &ca_pem);
        let again = id.clone();
        let (addr, server) = serve_once(id);
        assert_eq!(greet(&ca_file(&file), addr, "localhost").unwrap(), GREETING);
        server.join().unwrap().unwrap();

        let (addr, _server) = serve_once(again);
        let err = greet(&ca_file(&file), addr, "chat.example.org").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("certificate is for localhost, not for chat.example.org"),
            "{msg}"
        );
        assert!(msg.contains("--fingerprint"), "{msg}");
    }

    #[test]
    fn ca_file_refuses_an_expired_certificate_with_its_date() {
        let (id, ca_pem) = ca_and_leaf("localhost", Some((2001, 2, 3)));
        let file = TempFile::new("expired", &ca_pem);
        let (addr, _server) = serve_once(id);
        let msg = greet(&ca_file(&file), addr, "localhost")
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("certificate for localhost expired at 2001-02-03"),
            "{msg}"
        );
        assert!(msg.contains("renew"), "{msg}");
    }

    #[test]
    fn the_right_fingerprint_is_accepted_in_either_form_without_a_name_check() {
        for form in ["colons lower", "plain"] {
            let (id, _) = self_signed("localhost");
            let fp = fingerprint(&id.chain[0]);
            let given = match form {
                "plain" => fp.replace(':', ""),
                _ => fp.to_lowercase(),
            };
            let (addr, server) = serve_once(id);
            // The pin replaces chain and name checks: any name will do.
            assert_eq!(
                greet(&pin(&given), addr, "elsewhere.example").unwrap(),
                GREETING,
                "{form}"
            );
            server.join().unwrap().unwrap();
        }
    }

    #[test]
    fn a_wrong_fingerprint_is_refused_showing_both() {
        let (id, _) = self_signed("localhost");
        let actual = fingerprint(&id.chain[0]);
        let pinned = fingerprint(b"some other certificate");
        let (addr, server) = serve_once(id);
        let err = greet(&pin(&pinned), addr, "localhost").unwrap_err();
        let TlsError::Untrusted(msg) = &err else {
            panic!("expected a verification failure, got {err:?}");
        };
        assert!(msg.contains(&actual), "{msg}");
        assert!(msg.contains(&pinned), "{msg}");
        assert!(msg.contains("--fingerprint"), "{msg}");
        assert!(server.join().unwrap().is_err());
    }

    #[test]
    fn insecure_accepts_any_certificate() {
        let (id, _) = self_signed("somewhere.else");
        let (addr, server) = serve_once(id);
        let opts = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        assert_eq!(greet(&opts, addr, "localhost").unwrap(), GREETING);
        server.join().unwrap().unwrap();
        assert!(INSECURE_WARNING.contains("NOT verified"));
    }

    #[test]
    fn a_plaintext_server_is_named_as_such() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let _ = tcp.write_all(b"HELLO chatd 1\n");
        });
        let (id, pem) = self_signed("localhost");
        drop(id);
        let file = TempFile::new("plaintext", &pem);
        let err = greet(&ca_file(&file), addr, "localhost").unwrap_err();
        assert!(matches!(err, TlsError::NotTls(_)), "{err:?}");
        assert!(err.to_string().contains("plaintext port"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn a_ca_file_that_is_not_pem_or_missing_is_a_clear_setup_error() {
        let file = TempFile::new("notpem", "this is not a certificate\n");
        let err = connector(&ca_file(&file)).err().unwrap();
        assert!(matches!(err, TlsError::Setup(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("--ca-file "), "{msg}");
        assert!(msg.contains("holds no PEM certificate"), "{msg}");

        let broken = TempFile::new(
            "brokenpem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let msg = connector(&ca_file(&broken)).err().unwrap().to_string();
        assert!(msg.contains("not a valid PEM file"), "{msg}");

        let missing = TlsOptions {
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..TlsOptions::default()
        };
        let msg = connector(&missing).err().unwrap().to_string();
        assert!(msg.starts_with("--ca-file /nonexistent/ca.pem: "), "{msg}");
        assert!(msg.contains("No such file"), "{msg}");
    }

    #[test]
    fn trust_flags_exclude_each_other() {
        let both = TlsOptions {
            ca_file: Some(PathBuf::from("x.pem")),
            insecure: true,
            ..TlsOptions::default()
        };
        assert!(connector(&both)
            .err()
            .unwrap()
            .to_string()
            .contains("exclude each other"));
    }

    #[test]
    fn fingerprints_print_as_openssl_does() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn fingerprint_forms() {
        let fp = fingerprint(b"abc");
        let want = parse_fingerprint(&fp).unwrap();
        assert_eq!(want[..3], [0xBA, 0x78, 0x16]);
        for ok in [
            fp.to_lowercase(),
            fp.replace(':', ""),
            fp.replace(':', "").to_lowercase(),
            format!("sha256 Fingerprint={fp}"),
            format!("SHA256 {fp}"),
            format!("  {fp}\n"),
        ] {
            assert_eq!(parse_fingerprint(&ok).unwrap(), want, "{ok:?}");
        }
        for bad in [
            "",
            "AB:CD",
            &fp[3..],                      // 31 bytes
            &format!("{fp}:00"),           // 33 bytes
            &fp.replace(':', "")[1..],     // odd digit count
            &fp.replacen("BA", "GA", 1),   // not hex
            &fp.replacen("BA:", "B:A", 1), // misplaced colon
            &fp.replacen("BA", "É", 1),    // not ASCII
        ] {
            let err = parse_fingerprint(bad).unwrap_err();
            assert!(err.to_string().starts_with("--fingerprint "), "{bad:?}");
        }
    }
}
