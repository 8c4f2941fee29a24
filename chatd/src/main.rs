//! chatd: the chat server. It drives `chatproto`'s sans-IO state machine over
//! TCP on a smol executor; see README.md for the flags and how it works.
//!
//! Exit status: 0 after a clean shutdown (first SIGINT/SIGTERM), 130 when a
//! second signal cuts the shutdown short, 1 for bad flags or an address that
//! cannot be bound, 2 for a TLS certificate or key that cannot be used (or
//! TLS flags that do not go together) and for a store that cannot be opened
//! (another chatd has it, or its format version is unknown). SIGHUP re-reads the TLS certificate
//! and key and does not stop the server.

#![forbid(unsafe_code)]

mod config;
mod conn;
mod dialect;
mod listener;
mod log_limit;
mod outbox;
mod passwords;
mod shared;
mod store;
mod tls;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use smol::{Executor, Timer};

use crate::config::{Args, Config};
use crate::dialect::Dialect;
use crate::listener::{Limits, Reserve};
use crate::outbox::CLOSE_GRACE;
use crate::shared::Shared;
use crate::store::Store;
use crate::tls::TlsSetup;

/// Exit status when the TLS certificate, key or flags cannot be used.
const EXIT_TLS: u8 = 2;

/// Exit status when the store cannot be opened: in use by another chatd, of
/// an unknown format version, or unreadable.
const EXIT_STORE: u8 = 2;

/// Exit status when a second signal interrupts the shutdown (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: i32 = 130;

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    init_logging(args.log_level.as_deref());
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "chatd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls = match TlsSetup::from_config(&config) {
        Ok(tls) => tls.map(Arc::new),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "chatd: {e}");
            return ExitCode::from(EXIT_TLS);
        }
    };
    // Opened before binding: a second chatd on the same --data-dir fails
    // here, before it takes any port.
    let (answers_tx, answers_rx) = async_channel::unbounded();
    let started = Instant::now();
    let (store, seed) = match Store::open(&config.store, answers_tx) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            let _ = writeln!(std::io::stderr(), "chatd: {e}");
            return ExitCode::from(EXIT_STORE);
        }
    };
    log::info!(
        "store read in {:.0?}: {} accounts, {} stored lines, {} replay lines, next id {}",
        started.elapsed(),
        seed.accounts.len(),
        seed.stored_lines,
        seed.history.len(),
        seed.next_id
    );
    // Every exit from here on closes the store (written, synced, marked
    // clean), so the next start does not take it for a crash.
    let store = Arc::new(store);
    let fd_limit = raise_descriptor_limit();

    // Registered early, so a signal during start-up is queued rather than
    // lost; watched on a thread of its own (below).
    let signals = Signals::new([Signal::Int, Signal::Term, Signal::Hup]);

    let mut listeners = Vec::new();
    for &addr in &config.listen {
        match listener::bind(addr) {
            Ok(l) => listeners.push((l, Dialect::Native, None)),
            // The built-in [::] default may fail on hosts without IPv6.
            Err(e) if !config.listen_explicit && addr.is_ipv6() => {
                log::warn!("not listening on {addr}: {e}");
            }
            Err(e) => {
                log::error!("cannot listen on {addr}: {e}");
                store.close();
                return ExitCode::FAILURE;
            }
        }
    }
    for &addr in &config.irc_listen {
        match listener::bind(addr) {
            Ok(l) => listeners.push((l, Dialect::Irc(config.irc.clone()), None)),
            Err(e) => {
                log::error!("cannot listen for IRC on {addr}: {e}");
                store.close();
                return ExitCode::FAILURE;
            }
        }
    }
    // TlsSetup made sure there is a certificate when there are TLS listeners.
    let tls_config = tls.as_ref().map(|t| t.config().clone());
    let tls_listeners = (config.tls_listen.iter().map(|a| (a, Dialect::Native)))
        .chain((config.irc_tls_listen.iter()).map(|a| (a, Dialect::Irc(config.irc.clone()))));
    for (&addr, dialect) in tls_listeners {
        match listener::bind(addr) {
            Ok(l) => listeners.push((l, dialect, tls_config.clone())),
            Err(e) => {
                log::error!("cannot listen for TLS on {addr}: {e}");
                store.close();
                return ExitCode::FAILURE;
            }
        }
    }
    {
        // The bound addresses, first on stdout, so scripts and tests that
        // asked for port 0 learn the port: native listeners first, then IRC,
        // TLS and IRC over TLS.
        let mut out = std::io::stdout().lock();
        for (l, dialect, tls) in &listeners {
            if let Ok(addr) = l.get_ref().local_addr() {
                let what = match (dialect, tls) {
                    (Dialect::Native, None) => "listening on",
                    (Dialect::Irc(_), None) => "listening for IRC on",
                    (Dialect::Native, Some(_)) => "listening for TLS on",
                    (Dialect::Irc(_), Some(_)) => "listening for IRC over TLS on",
                };
                let _ = writeln!(out, "{what} {addr}");
                log::info!("{what} {addr}");
            }
        }
        let _ = out.flush();
    }

    let (signal_tx, signal_rx) = async_channel::bounded::<()>(1);
    match signals {
        Ok(signals) => {
            // Its own thread, not an executor task: a second signal must exit
            // even if every executor thread is busy.
            let spawned = std::thread::Builder::new()
                .name("chatd-signals".into())
                .spawn(move || smol::block_on(watch_signals(signals, signal_tx, tls)));
            if let Err(e) = spawned {
                // The handlers are installed: nothing would act on SIGTERM.
                log::error!("cannot start the signal thread: {e}");
                store.close();
                return ExitCode::FAILURE;
            }
        }
        Err(e) => log::warn!("no signal handling, SIGINT/SIGTERM will not shut down cleanly: {e}"),
    }

    // Taken last, so the count of descriptors in use includes it.
    let reserve = Arc::new(Reserve::open());
    let max_clients = admission_cap(&config, fd_limit, listeners.len());

    let ex = Arc::new(Executor::new());
    let limits = Arc::new(Limits::new(
        max_clients,
        config.max_per_ip,
        config.ipv6_prefix,
        config.limit_loopback,
    ));
    let threads = config.threads;
    let (shared, kicks) = Shared::new(config, ex.clone(), store.clone(), seed);
    let shared = Arc::new(shared);

    // Worker threads run the executor until `stop` closes; the main thread is one of them.
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    for i in 1..threads {
        let (ex, stop_rx) = (ex.clone(), stop_rx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("chatd-{i}"))
            .spawn(move || smol::block_on(ex.run(stop_rx.recv())));
        if let Err(e) = spawned {
            log::warn!("could not start executor thread {i}: {e}");
        }
    }

    let run = async {
        let acceptors: Vec<_> = listeners
            .into_iter()
            .map(|(l, dialect, tls)| {
                ex.spawn(listener::accept_loop(
                    l,
                    dialect,
                    tls,
                    shared.clone(),
                    limits.clone(),
                    reserve.clone(),
                    ex.clone(),
                ))
            })
            .collect();
        ex.spawn(tick(shared.clone())).detach();
        ex.spawn(shared.clone().kicker(kicks)).detach();
        ex.spawn(shared.clone().answers(answers_rx)).detach();

        let _ = signal_rx.recv().await;
        log::info!("shutting down: {} connections", limits.live());
        for task in acceptors {
            task.cancel().await;
        }
        shared.shutdown().await;
        let deadline = Instant::now() + CLOSE_GRACE;
        while limits.live() > 0 && Instant::now() < deadline {
            Timer::after(Duration::from_millis(20)).await;
        }
        let left = limits.live();
        if left > 0 {
            log::warn!("{left} connections still open: not flushed, or the client did not close");
        }
        // Everything the state machine handed over is written and synced.
        let closing = store.clone();
        smol::unblock(move || closing.close()).await;
        log::info!("store closed; bye");
    };
    smol::block_on(ex.run(run));
    stop_tx.close();
    // Worker threads stop at their next poll; connections left past the
    // deadline are dropped with the process.
    ExitCode::SUCCESS
}

/// Logs to stderr; `--log-level` overrides RUST_LOG, which defaults to info.
/// Per-connection lines are rate-limited (see `log_limit`). env_logger drops
/// write errors, so a closed stderr cannot make a log call panic.
fn init_logging(level: Option<&str>) {
    let env = env_logger::Env::default().default_filter_or("info");
    let mut builder = env_logger::Builder::from_env(env);
    if let Some(level) = level {
        builder.parse_filters(level);
    }
    let _ = log_limit::install(builder.build());
}

/// Acts on signals: the first SIGINT or SIGTERM asks `main` to shut down, a
/// second one exits at once with 130. SIGHUP re-reads the TLS certificate
/// and key, here on the signal thread (file reads, not on an executor
/// thread). Nothing here may panic, even with stderr closed: the log drops
/// write errors and the one direct write ignores its result.
async fn watch_signals(
    mut signals: Signals,
    shutdown: async_channel::Sender<()>,
    tls: Option<Arc<TlsSetup>>,
) {
    let mut stops = 0u32;
    let mut errors = 0u32;
    while let Some(signal) = signals.next().await {
        match signal {
            Ok(Signal::Hup) => match &tls {
                Some(tls) => tls.reload(),
                None => log::info!("SIGHUP: nothing to reload (no TLS); still running"),
            },
            Ok(signal) => {
                stops += 1;
                if stops > 1 {
                    let _ = writeln!(
                        std::io::stderr(),
                        "chatd: second signal ({}), exiting now",
                        signal_name(signal)
                    );
                    std::process::exit(EXIT_INTERRUPTED);
                }
                log::info!(
                    "{}: shutting down; send it again to exit at once",
                    signal_name(signal)
                );
                let _ = shutdown.try_send(());
            }
            Err(e) => {
                // The stream reads a socket pair; give up if it keeps failing
                // rather than spin.
                errors += 1;
                log::warn!("reading signals failed: {e}");
                if errors >= 10 {
                    log::error!("no longer watching signals");
                    break;
                }
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
    // Keep `shutdown` open: dropping it would end `main`'s wait as if asked to stop.
    futures_lite::future::pending::<()>().await;
    drop(shutdown);
}

fn signal_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Int => "SIGINT",
        Signal::Term => "SIGTERM",
        Signal::Hup => "SIGHUP",
        _ => "signal",
    }
}

/// Raises the soft limit on open files to the hard limit (one descriptor per
/// connection) and logs it. Returns the limit now in force, `None` if unlimited.
fn raise_descriptor_limit() -> Option<u64> {
    let old = getrlimit(Resource::Nofile);
    let target = match old.maximum {
        // Linux refuses an unlimited soft limit for open files; its real
        // ceiling is fs.nr_open.
        None => std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok()),
        hard => hard,
    };
    let raise = match (old.current, target) {
        (Some(soft), Some(target)) => target > soft,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if raise {
        let new = Rlimit {
            current: target,
            maximum: old.maximum,
        };
        match setrlimit(Resource::Nofile, new) {
            Ok(()) => {
                log::info!(
                    "descriptor limit {} (raised from {})",
                    show_limit(target),
                    show_limit(old.current)
                );
                return target;
            }
            Err(e) => log::warn!(
                "cannot raise the descriptor limit from {} to {}: {e}",
                show_limit(old.current),
                show_limit(target)
            ),
        }
    } else {
        log::info!("descriptor limit {}", show_limit(old.current));
    }
    old.current
}

fn show_limit(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

/// Descriptors open now, if the platform can list them (`/proc/self/fd`).
fn descriptors_in_use() -> Option<usize> {
    // The directory listing holds a descriptor of its own while it runs.
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(entries.count().saturating_sub(1))
}

/// The number of connections to admit: `--max-clients`, lowered to what the
/// descriptor limit allows, with a warning when it had to be lowered.
fn admission_cap(config: &Config, limit: Option<u64>, listeners: usize) -> usize {
    // Without /proc: stdio, the reactor, the signal pipe and the reserve.
    let in_use = descriptors_in_use().unwrap_or(3 + 2 + 5 + 1 + listeners);
    let cap = listener::admission_cap(config.max_clients, limit, in_use);
    if cap < config.max_clients {
        log::warn!(
            "descriptor limit {} is below --max-clients ({}) plus chatd's own needs \
             ({in_use} open, {} spare): admitting at most {cap} connections; raise the \
             hard limit (ulimit -Hn, LimitNOFILE=) to admit more",
            show_limit(limit),
            config.max_clients,
            listener::SPARE_DESCRIPTORS,
        );
    }
    cap
}

/// Tells the state machine the time about once a second (register and idle
/// timeouts), and reports the per-connection log lines held back. A panic in
/// one tick is logged and the ticking goes on.
async fn tick(shared: Arc<Shared>) {
    let mut ticks = Timer::interval(Duration::from_secs(1));
    while ticks.next().await.is_some() {
        log_limit::report_suppressed(Instant::now());
        if conn::guarded(shared.tick()).await.is_err() {
            log::error!("tick panicked; {}", shared.health().await);
        }
    }
}
