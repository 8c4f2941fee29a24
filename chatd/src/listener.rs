//! Listening sockets ([`bind`]), the accept loop ([`accept_loop`]) and the
//! connection limits ([`Limits`]).

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chatproto::{CloseReason, Event};
use smol::{Async, Executor, Timer};
use socket2::{Domain, Protocol, Socket, Type};

use crate::conn;
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
    limit_loopback: bool,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Limits {
    pub(crate) fn new(max_total: usize, max_per_ip: usize, limit_loopback: bool) -> Self {
        Self {
            max_total,
            max_per_ip,
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
        let per_ip = self.limit_loopback || !ip.is_loopback();
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

/// Accepts connections forever, spawning one task per admitted connection.
pub(crate) async fn accept_loop(
    listener: Async<TcpListener>,
    shared: Arc<Shared>,
    limits: Arc<Limits>,
    ex: Arc<Executor<'static>>,
) {
    let bye_full: Vec<u8> = Event::Bye(CloseReason::ServerFull).to_bytes();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("accept failed: {e}");
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
            Ok(permit) => ex
                .spawn(conn::serve(shared.clone(), stream, peer, permit))
                .detach(),
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
    let _ = stream.write_all(bye);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_total_and_per_ip() {
        let limits = Arc::new(Limits::new(3, 2, false));
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
        let limits = Arc::new(Limits::new(10, 0, false));
        for last in 0..100 {
            let ip: IpAddr = [10, 0, 0, last].into();
            assert_eq!(limits.admit(ip).unwrap_err(), Full::PerIp);
        }
        assert!(limits.counts().per_ip.is_empty());
    }

    #[test]
    fn loopback_is_exempt_unless_asked() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let limits = Arc::new(Limits::new(10, 1, false));
        let permits: Vec<_> = (0..5).map(|_| limits.admit(lo).unwrap()).collect();
        assert_eq!(limits.live(), 5);
        drop(permits);
        let strict = Arc::new(Limits::new(10, 1, true));
        let _p = strict.admit(lo).unwrap();
        assert_eq!(strict.admit(lo).unwrap_err(), Full::PerIp);
    }
}
