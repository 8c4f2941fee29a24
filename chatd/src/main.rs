//! chatd: the chat server. It drives `chatproto`'s sans-IO state machine over
//! TCP on a smol executor; see README.md for the flags and how it works.
//!
//! Exit status: 0 after a clean shutdown (first SIGINT/SIGTERM), 130 when a
//! second signal cuts the shutdown short, 1 for bad flags or an address that
//! cannot be bound.

#![forbid(unsafe_code)]

mod config;
mod conn;
mod listener;
mod outbox;
mod shared;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatproto::server::Input;
use futures_lite::StreamExt;
use smol::{Executor, Timer};

use crate::config::{Args, Config};
use crate::listener::Limits;
use crate::outbox::CLOSE_GRACE;
use crate::shared::Shared;

/// Signals received so far; the second one exits at once.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Exit status when a second signal interrupts the shutdown (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: i32 = 130;

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    init_logging(args.log_level.as_deref());
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chatd: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut listeners = Vec::new();
    for &addr in &config.listen {
        match listener::bind(addr) {
            Ok(l) => listeners.push(l),
            // The built-in [::] default may fail on hosts without IPv6.
            Err(e) if !config.listen_explicit && addr.is_ipv6() => {
                log::warn!("not listening on {addr}: {e}");
            }
            Err(e) => {
                log::error!("cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    {
        // The bound addresses, first on stdout, so scripts and tests that
        // asked for port 0 learn the port.
        let mut out = std::io::stdout().lock();
        for l in &listeners {
            if let Ok(addr) = l.get_ref().local_addr() {
                let _ = writeln!(out, "listening on {addr}");
                log::info!("listening on {addr}");
            }
        }
        let _ = out.flush();
    }

    let (signal_tx, signal_rx) = async_channel::bounded::<()>(1);
    if let Err(e) = ctrlc::set_handler(move || {
        if SIGNALS.fetch_add(1, Ordering::SeqCst) > 0 {
            eprintln!("chatd: second signal, exiting now");
            std::process::exit(EXIT_INTERRUPTED);
        }
        let _ = signal_tx.try_send(());
    }) {
        log::warn!("no signal handler, SIGINT/SIGTERM will not shut down cleanly: {e}");
    }

    let ex = Arc::new(Executor::new());
    let limits = Arc::new(Limits::new(
        config.max_clients,
        config.max_per_ip,
        config.limit_loopback,
    ));
    let threads = config.threads;
    let shared = Arc::new(Shared::new(config, ex.clone()));

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
            .map(|l| {
                ex.spawn(listener::accept_loop(
                    l,
                    shared.clone(),
                    limits.clone(),
                    ex.clone(),
                ))
            })
            .collect();
        ex.spawn(tick(shared.clone())).detach();

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
        log::info!("bye");
    };
    smol::block_on(ex.run(run));
    stop_tx.close();
    // Worker threads stop at their next poll; connections left past the
    // deadline are dropped with the process.
    ExitCode::SUCCESS
}

/// Logs to stderr; `--log-level` overrides RUST_LOG, which defaults to info.
fn init_logging(level: Option<&str>) {
    let env = env_logger::Env::default().default_filter_or("info");
    let mut builder = env_logger::Builder::from_env(env);
    if let Some(level) = level {
        builder.parse_filters(level);
    }
    builder.init();
}

/// Tells the state machine the time about once a second (register and idle
/// timeouts). A panic in one tick is logged and the ticking goes on.
async fn tick(shared: Arc<Shared>) {
    let mut ticks = Timer::interval(Duration::from_secs(1));
    while ticks.next().await.is_some() {
        if conn::guarded(shared.handle(vec![Input::Tick]))
            .await
            .is_err()
        {
            log::error!("tick panicked; {}", shared.health().await);
        }
    }
}
