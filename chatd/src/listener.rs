//! Listening sockets ([`bind`]), the accept loop ([`accept_loop`]), the
//! connection limits ([`Limits`]) and what keeps file descriptors from running
//! out ([`admission_cap`], [`Reserve`]).

use std::collections::HashMap;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chatproto::server::PeerKey;
use chatproto::CloseReason;
use futures_rustls::rustls::ServerConfig;
use rustix::io::Errno;
use smol::{Async, Executor, Timer};
use socket2::{Domain, Protocol, Socket, Type};

use crate::conn;
use crate::dialect::Dialect;
use crate::log_limit::LogLimit;
use crate::outbox::ConnIo;
use crate::shared::Shared;

/// Pending connections the kernel queues for us; smol's own bind uses 128,
/// too few for a burst of thousands of clients connecting at once.
const BACKLOG: i32 = 1024;

/// Kernel send buffer per accepted socket, in bytes (Linux doubles it for its
/// bookkeeping). Large enough that coalesced writes of 64 KiB go out in one
/// call; small enough that `--sendq` is what bounds a slow consumer's backlog.
const SEND_BUFFER: usize = 64 * 1024;

/// Binds a listening socket. IPv6 sockets are IPv6-only, so `0.0.0.0:P` and
/// `[::]:P` can both be bound.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<Async<TcpListener>> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Async::new(TcpListener::from(socket))
}

/// Why a newcomer was turned away.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    Total,
    PerIp,
}

/// Counts live connections, in total and per address. Admission hands out a
/// [`Permit`] whose drop gives the place back, so a connection task that ends
/// in any way (a panic included) frees it.
#[derive(Debug)]
pub(crate) struct Limits {
    max_total: usize,
    max_per_ip: usize,
    /// Leading bits of an IPv6 address that count as one address.
    ipv6_prefix: u8,
    limit_loopback: bool,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Limits {
    pub(crate) fn new(
        max_total: usize,
        max_per_ip: usize,
        ipv6_prefix: u8,
        limit_loopback: bool,
    ) -> Self {
        Self {
            max_total,
            max_per_ip,
            ipv6_prefix,
            limit_loopback,
            counts: Mutex::default(),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The critical sections below cannot panic; a poisoned lock still holds
        // consistent counts.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Live connections.
    pub(crate) fn live(&self) -> usize {
        self.counts().total
    }

    /// Admits a connection from `ip`, or says which limit it hit.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Full> {
        let ip = ip.to_canonical();
        let per_ip = self.limit_loopback || !ip.is_loopback();
        let ip = per_ip_key(ip, self.ipv6_prefix);
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(Full::Total);
        }
        if per_ip {
            // Look before inserting: a refused address must leave no entry.
            if counts.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
                return Err(Full::PerIp);
            }
            *counts.per_ip.entry(ip).or_default() += 1;
        }
        counts.total += 1;
        Ok(Permit {
            limits: self.clone(),
            ip: per_ip.then_some(ip),
        })
    }
}

/// The address `--max-per-ip` counts `ip` as. One IPv6 host or site usually
/// holds a whole /64 (SLAAC, privacy addresses), so an address stands for its
/// first `prefix` bits; an IPv4-mapped IPv6 address is its IPv4 address.
fn per_ip_key(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            // Shifting by 128 (prefix 0, refused by the flags) keeps nothing.
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// What the state machine counts failed logins and registrations against:
/// the address as the per-address limit counts it (IPv4, or the leading
/// `ipv6_prefix` bits of IPv6), hashed.
pub(crate) fn peer_key(ip: IpAddr, ipv6_prefix: u8) -> PeerKey {
    let mut h = DefaultHasher::new();
    per_ip_key(ip, ipv6_prefix).hash(&mut h);
    PeerKey::new(h.finish())
}

/// One admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Permit {
    limits: Arc<Limits>,
    ip: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.limits.counts();
        counts.total -= 1;
        if let Some(ip) = self.ip {
            if let Some(n) = counts.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// Descriptors chatd keeps free beyond those open once it is set up: one per
/// listener for a newcomer being refused, and some for the runtime's own use.
pub(crate) const SPARE_DESCRIPTORS: usize = 16;

/// How many connections the descriptors allow: `max_clients`, or fewer when the
/// descriptor limit (`None`: unlimited) minus those `in_use` and
/// [`SPARE_DESCRIPTORS`] leaves less room. Each connection holds one descriptor.
/// At least 1; a newcomer past this gets `BYE server-full`, not silence.
pub(crate) fn admission_cap(max_clients: usize, limit: Option<u64>, in_use: usize) -> usize {
    let Some(limit) = limit else {
        return max_clients;
    };
    let room = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(in_use.saturating_add(SPARE_DESCRIPTORS));
    max_clients.min(room).max(1)
}

/// One descriptor held in reserve (on /dev/null). When `accept` fails because
/// the process or the system is out of descriptors, the waiting connections
/// would get no answer at all; closing the reserve frees a descriptor to
/// accept one of them, tell it `BYE server-full` and close it.
#[derive(Debug)]
pub(crate) struct Reserve {
    file: Mutex<Option<File>>,
}

impl Reserve {
    pub(crate) fn open() -> Self {
        Self {
            file: Mutex::new(Self::reopen()),
        }
    }

    fn reopen() -> Option<File> {
        File::open("/dev/null").ok()
    }

    /// Accepts one waiting connection on the reserve's descriptor and refuses
    /// it with `bye`; then takes the reserve back. Returns the refused peer.
    fn shed(&self, listener: &TcpListener, bye: &[u8]) -> io::Result<SocketAddr> {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        // Without a reserve (taken by someone else last time) try to get it
        // back first; at EMFILE that fails and accept below fails too.
        let reserve = file.take().or_else(Self::reopen);
        drop(reserve);
        let peer = listener.accept().map(|(stream, peer)| {
            refuse(&stream, bye);
            peer
            // The refused socket closes here, freeing the descriptor again.
        });
        *file = Self::reopen();
        peer
    }
}

/// True for EMFILE and ENFILE: the process or the system is out of descriptors.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(Errno::from_io_error(e), Some(Errno::MFILE | Errno::NFILE))
}

/// At most one `accept failed` warning per second per process.
static ACCEPT_ERRORS: LogLimit = LogLimit::new(1, Duration::from_secs(1));

fn warn_accept_failed(e: &io::Error) {
    let now = Instant::now();
    if ACCEPT_ERRORS.allow(now) {
        match ACCEPT_ERRORS.take_suppressed(now) {
            Some((n, _)) => log::warn!("accept failed: {e} ({n} more not logged)"),
            None => log::warn!("accept failed: {e}"),
        }
    }
}

/// Accepts connections forever, spawning one task per admitted connection.
/// With `tls`, each connection's task starts with the handshake (see
/// `conn::serve`): it is admitted and counted first, like any other.
pub(crate) async fn accept_loop(
    listener: Async<TcpListener>,
    dialect: Dialect,
    tls: Option<Arc<ServerConfig>>,
    shared: Arc<Shared>,
    limits: Arc<Limits>,
    reserve: Arc<Reserve>,
    ex: Arc<Executor<'static>>,
) {
    // Over TLS a refusal would cost a handshake first: a refused TLS client
    // sees the connection close without a word.
    let bye_full: Vec<u8> = match tls {
        None => dialect.goodbye(CloseReason::ServerFull),
        Some(_) => Vec::new(),
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if out_of_descriptors(&e) => {
                // Connections wait in the backlog with no answer: refuse one
                // with the reserve's descriptor, then try again at once.
                match reserve.shed(listener.get_ref(), &bye_full) {
                    Ok(peer) => {
                        log::info!("refused {peer}: out of file descriptors");
                        continue;
                    }
                    Err(shed) => {
                        warn_accept_failed(&e);
                        log::debug!("no reserve descriptor to refuse with: {shed}");
                    }
                }
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                // Out of memory and the like: back off instead of spinning.
                warn_accept_failed(&e);
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Lines are small and interactive: send them now, not after Nagle's delay.
        if let Err(e) = stream.get_ref().set_nodelay(true) {
            log::debug!("TCP_NODELAY on {peer}: {e}");
        }
        // A fixed, modest kernel send buffer: left to autotuning it grows past
        // several hundred KiB for a stalled reader, so a slow consumer would be
        // cut long after `--sendq` worth of lines was really waiting for it.
        if let Err(e) = socket2::SockRef::from(stream.get_ref()).set_send_buffer_size(SEND_BUFFER) {
            log::debug!("SO_SNDBUF on {peer}: {e}");
        }
        match limits.admit(peer.ip()) {
            Ok(permit) => {
                let io = ConnIo::new(shared.next_id(), stream, shared.budget().clone())
                    .with_session(dialect.session())
                    .with_tls(tls.clone());
                ex.spawn(conn::serve(shared.clone(), Arc::new(io), peer, permit))
                    .detach();
            }
            Err(full) => {
                log::info!("refused {peer}: {full:?} limit reached");
                refuse(stream.get_ref(), &bye_full);
            }
        }
    }
}

/// Best effort `BYE server-full` to a fresh socket (its send buffer is empty,
/// so the non-blocking write goes through), then closes it.
fn refuse(mut stream: &TcpStream, bye: &[u8]) {
    if !bye.is_empty() {
        let _ = stream.write_all(bye);
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_total_and_per_ip() {
        let limits = Arc::new(Limits::new(3, 2, 64, false));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let p1 = limits.admit(a).unwrap();
        let p2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Full::PerIp);
        let p3 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Full::Total);
        drop(p1);
        let p4 = limits.admit(a).unwrap();
        assert_eq!(limits.live(), 3);
        drop((p2, p3, p4));
        assert_eq!(limits.live(), 0);
        assert!(limits.counts().per_ip.is_empty(), "no address left behind");
    }

    #[test]
    fn a_refused_address_leaves_no_entry() {
        // --max-per-ip 0 refuses every address; none may stay in the map.
        let limits = Arc::new(Limits::new(10, 0, 64, false));
        for last in 0..100 {
            let ip: IpAddr = [10, 0, 0, last].into();
            assert_eq!(limits.admit(ip).unwrap_err(), Full::PerIp);
        }
        assert!(limits.counts().per_ip.is_empty());
    }

    #[test]
    fn loopback_is_exempt_unless_asked() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let limits = Arc::new(Limits::new(10, 1, 64, false));
        let permits: Vec<_> = (0..5).map(|_| limits.admit(lo).unwrap()).collect();
        assert_eq!(limits.live(), 5);
        drop(permits);
        let strict = Arc::new(Limits::new(10, 1, 64, true));
        let _p = strict.admit(lo).unwrap();
        assert_eq!(strict.admit(lo).unwrap_err(), Full::PerIp);
    }

    fn v6(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_address() {
        let limits = Arc::new(Limits::new(100, 2, 64, false));
        let _a = limits.admit(v6("2001:db8:1:2::1")).unwrap();
        let _b = limits
            .admit(v6("2001:db8:1:2:ffff:ffff:ffff:ffff"))
            .unwrap();
        // A third address in the same /64 is the same host (or site) again.
        assert_eq!(
            limits.admit(v6("2001:db8:1:2:dead:beef::7")).unwrap_err(),
            Full::PerIp
        );
        // The next /64 is someone else.
        let _c = limits.admit(v6("2001:db8:1:3::1")).unwrap();
        assert_eq!(limits.counts().per_ip.len(), 2);
    }

    #[test]
    fn the_ipv6_prefix_is_configurable() {
        let per_address = Arc::new(Limits::new(100, 1, 128, false));
        let _a = per_address.admit(v6("2001:db8::1")).unwrap();
        let _b = per_address.admit(v6("2001:db8::2")).unwrap();
        assert_eq!(
            per_address.admit(v6("2001:db8::1")).unwrap_err(),
            Full::PerIp
        );
        let per_48 = Arc::new(Limits::new(100, 1, 48, false));
        let _c = per_48.admit(v6("2001:db8:1:1::1")).unwrap();
        assert_eq!(
            per_48.admit(v6("2001:db8:1:ffff::1")).unwrap_err(),
            Full::PerIp
        );
        let _d = per_48.admit(v6("2001:db8:2::1")).unwrap();
    }

    #[test]
    fn ipv4_mapped_counts_as_the_ipv4_address() {
        let limits = Arc::new(Limits::new(100, 2, 64, false));
        let _a = limits.admit([192, 0, 2, 7].into()).unwrap();
        let _b = limits.admit(v6("::ffff:192.0.2.7")).unwrap();
        assert_eq!(
            limits.admit([192, 0, 2, 7].into()).unwrap_err(),
            Full::PerIp
        );
        assert_eq!(
            limits.admit(v6("::ffff:192.0.2.7")).unwrap_err(),
            Full::PerIp
        );
        // Another IPv4 address in the mapped range is not lumped in by the /64.
        let _c = limits.admit(v6("::ffff:192.0.2.8")).unwrap();
        // Mapped loopback is loopback, and exempt.
        let _lo: Vec<_> = (0..5)
            .map(|_| limits.admit(v6("::ffff:127.0.0.1")).unwrap())
            .collect();
        assert!(!limits
            .counts()
            .per_ip
            .contains_key(&IpAddr::from([127, 0, 0, 1])));
    }

    #[test]
    fn ipv6_loopback_stays_exempt_under_a_prefix() {
        // ::1 masked to /64 is ::, which is not loopback: exemption is decided first.
        let limits = Arc::new(Limits::new(100, 1, 64, false));
        let permits: Vec<_> = (0..3).map(|_| limits.admit(v6("::1")).unwrap()).collect();
        assert_eq!(permits.len(), 3);
        assert!(limits.counts().per_ip.is_empty());
    }

    #[test]
    fn peer_keys_follow_the_ipv6_prefix() {
        let key = |ip: &str, prefix| peer_key(v6(ip), prefix);
        assert_eq!(key("2001:db8:a:b::1", 64), key("2001:db8:a:b::2", 64));
        assert_ne!(key("2001:db8:a:b::1", 64), key("2001:db8:a:c::1", 64));
        assert_eq!(key("2001:db8:a:b::1", 48), key("2001:db8:a:c::1", 48));
        assert_ne!(key("2001:db8::1", 128), key("2001:db8::2", 128));
        assert_eq!(
            key("::ffff:10.1.2.3", 64),
            peer_key(IpAddr::from([10, 1, 2, 3]), 64)
        );
    }

    #[test]
    fn per_ip_keys() {
        assert_eq!(per_ip_key(v6("2001:db8::1"), 128), v6("2001:db8::1"));
        assert_eq!(
            per_ip_key(v6("2001:db8:a:b:c:d:e:f"), 64),
            v6("2001:db8:a:b::")
        );
        assert_eq!(per_ip_key(v6("ffff::1"), 1), v6("8000::"));
        assert_eq!(
            per_ip_key(v6("::ffff:10.1.2.3"), 64),
            IpAddr::from([10, 1, 2, 3])
        );
        assert_eq!(
            per_ip_key([10, 1, 2, 3].into(), 1),
            IpAddr::from([10, 1, 2, 3])
        );
        // Out-of-range prefixes (refused by the flags) do not panic.
        assert_eq!(per_ip_key(v6("2001:db8::1"), 0), v6("::"));
        assert_eq!(per_ip_key(v6("2001:db8::1"), 255), v6("2001:db8::1"));
    }

    #[test]
    fn the_cap_leaves_room_for_chatd_itself() {
        // Under `ulimit -n 256` with 12 descriptors open: 256 - 12 - 16.
        assert_eq!(admission_cap(400, Some(256), 12), 228);
        assert_eq!(admission_cap(100, Some(256), 12), 100);
        assert_eq!(admission_cap(10_000, None, 12), 10_000);
        assert_eq!(admission_cap(10_000, Some(u64::MAX), 12), 10_000);
        // Too few descriptors for any: one place, and the reserve refuses the rest.
        assert_eq!(admission_cap(10, Some(20), 12), 1);
    }

    #[test]
    fn the_reserve_refuses_a_waiting_connection() {
        use std::io::Read;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reserve = Reserve::open();
        assert!(reserve.file.lock().unwrap().is_some());
        let peer = reserve.shed(&listener, b"BYE server-full\n").unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert_eq!(got, "BYE server-full\n", "then EOF");
        assert!(reserve.file.lock().unwrap().is_some(), "reserve taken back");
        // Nobody waiting: an error, and the reserve is still there.
        listener.set_nonblocking(true).unwrap();
        assert!(reserve.shed(&listener, b"BYE server-full\n").is_err());
        assert!(reserve.file.lock().unwrap().is_some());
    }

    #[test]
    fn emfile_and_enfile_are_out_of_descriptors() {
        assert!(out_of_descriptors(&Errno::MFILE.into()));
        assert!(out_of_descriptors(&Errno::NFILE.into()));
        assert!(!out_of_descriptors(&Errno::NOMEM.into()));
        assert!(!out_of_descriptors(&io::ErrorKind::WouldBlock.into()));
    }
}
