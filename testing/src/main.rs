//! `chatload`: a load tester for chat line protocol servers (chatd, floorsrv).
//! See testing/README.md for each subcommand.

#![forbid(unsafe_code)]

mod bigreply;
mod cascade;
mod client;
mod dmflood;
mod fanout;
mod fill;
mod handshakes;
mod idle;
mod replay;
mod report;
mod runtime;
mod sendqmem;
mod slowreader;
mod stats;
mod storm;
mod transport;
mod ttfb;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use async_lock::Semaphore;

use crate::client::DialectMode;
use crate::report::{render, Report};
use crate::runtime::Ctx;
use crate::transport::TlsSettings;

#[derive(FromArgs, Debug)]
/// Load tester for chat line protocol servers. Options before the subcommand
/// apply to every scenario, e.g. `chatload --addr 127.0.0.1:8080 --json ttfb -n 200`.
struct Args {
    /// server address (default 127.0.0.1:8080)
    #[argh(option, default = "String::from(\"127.0.0.1:8080\")")]
    addr: String,
    /// the protocol clients speak: native, irc, or mix (every other client
    /// speaks IRC); ttfb, fanout and slowreader only (default native)
    #[argh(option, default = "String::from(\"native\")")]
    dialect: String,
    /// chatd's IRC listener (`chatd --irc-listen`), for --dialect irc or mix
    #[argh(option)]
    irc_addr: Option<String>,
    /// allow a server address that is not loopback
    #[argh(switch)]
    allow_remote: bool,
    /// connect over TLS (to chatd's --tls-listen, and --irc-addr to its
    /// --irc-tls-listen); full handshakes, no resumption. Without --ca-file
    /// the certificate is not verified (loopback only, or --tls-insecure)
    #[argh(switch)]
    tls: bool,
    /// with --tls: trust only the certificates in this PEM file (chatd's
    /// self-signed certificate, or its CA) and check the name; implies --tls
    #[argh(option)]
    ca_file: Option<PathBuf>,
    /// with --tls: accept any certificate, also from a non-loopback server;
    /// implies --tls
    #[argh(switch)]
    tls_insecure: bool,
    /// with --tls: the server name sent (SNI) and checked with --ca-file
    /// (default localhost)
    #[argh(option, default = "String::from(\"localhost\")")]
    tls_name: String,
    /// print the report as JSON
    #[argh(switch)]
    json: bool,
    /// executor threads (default: the CPUs this process may run on)
    #[argh(option)]
    threads: Option<usize>,
    /// the whole run ends after this many seconds, whatever happens (default 600)
    #[argh(option, default = "600.0")]
    timeout: f64,
    /// seconds one connect plus registration may take (default 30)
    #[argh(option, default = "30.0")]
    connect_timeout: f64,
    /// connects and registrations in flight at once (default 64)
    #[argh(option, default = "64")]
    connect_concurrency: usize,
    /// no progress line on stderr
    #[argh(switch, short = 'q')]
    quiet: bool,
    #[argh(subcommand)]
    scenario: Scenario,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Scenario {
    Ttfb(ttfb::TtfbArgs),
    Fanout(fanout::FanoutArgs),
    Idle(idle::IdleArgs),
    SlowReader(slowreader::SlowReaderArgs),
    Storm(storm::StormArgs),
    SendqMem(sendqmem::SendqMemArgs),
    DmFlood(dmflood::DmFloodArgs),
    Cascade(cascade::CascadeArgs),
    BigReply(bigreply::BigReplyArgs),
    Handshakes(handshakes::HandshakesArgs),
    Replay(replay::ReplayArgs),
    Fill(fill::FillArgs),
}

/// Resolves `addr` (given as `flag`), refusing anything but loopback unless
/// allowed.
fn target(flag: &str, addr: &str, allow_remote: bool) -> Result<SocketAddr, String> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("{flag} {addr:?}: {e}"))?
        .collect();
    let first = *resolved
        .first()
        .ok_or_else(|| format!("{flag} {addr:?}: no address"))?;
    if !allow_remote && !resolved.iter().all(|a| a.ip().is_loopback()) {
        return Err(format!(
            "{flag} {addr:?} is not a loopback address; pass --allow-remote to load a remote server"
        ));
    }
    Ok(first)
}

/// The dialect setting, checked against the scenario and `--irc-addr`.
fn dialect_for(
    dialect: &str,
    irc_addr: Option<SocketAddr>,
    scenario: &Scenario,
) -> Result<DialectMode, String> {
    let mode = DialectMode::parse(dialect)?;
    if mode == DialectMode::Native {
        return Ok(mode);
    }
    if irc_addr.is_none() {
        return Err(format!(
            "--dialect {dialect} needs --irc-addr (chatd's --irc-listen address)"
        ));
    }
    match scenario {
        Scenario::Ttfb(_) | Scenario::Fanout(_) | Scenario::SlowReader(_) => Ok(mode),
        _ => Err(format!(
            "--dialect {dialect} works with ttfb, fanout and slowreader only"
        )),
    }
}

/// The TLS settings asked for, if any. Without `--ca-file` nothing is
/// verified, which `--tls-insecure` must confirm for a non-loopback server.
fn tls_for(args: &Args, remote: bool) -> Result<Option<TlsSettings>, String> {
    if !(args.tls || args.ca_file.is_some() || args.tls_insecure) {
        return Ok(None);
    }
    if args.ca_file.is_some() && args.tls_insecure {
        return Err("--ca-file and --tls-insecure exclude each other".to_owned());
    }
    if remote && args.ca_file.is_none() && !args.tls_insecure {
        return Err(
            "--tls to a non-loopback server needs --ca-file, or --tls-insecure to skip verification"
                .to_owned(),
        );
    }
    TlsSettings::new(args.ca_file.as_deref(), &args.tls_name).map(Some)
}

fn emit<R: Report>(json: bool, result: Result<R, String>) -> Result<(), String> {
    print!("{}", render(&result?, json));
    Ok(())
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatload: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let addr = target("--addr", &args.addr, args.allow_remote)?;
    let irc_addr = args
        .irc_addr
        .as_deref()
        .map(|a| target("--irc-addr", a, args.allow_remote))
        .transpose()?;
    let dialect = dialect_for(&args.dialect, irc_addr, &args.scenario)?;
    let remote = !addr.ip().is_loopback() || irc_addr.is_some_and(|a| !a.ip().is_loopback());
    let tls = tls_for(&args, remote)?;
    let timeout = runtime::secs("--timeout", args.timeout)?;
    let connect_timeout = runtime::secs("--connect-timeout", args.connect_timeout)?;
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .clamp(1, 256);
    let json = args.json;
    let now = Instant::now();
    let scenario = args.scenario;
    runtime::run_on_threads(threads, |ex| async move {
        let ctx = Arc::new(Ctx {
            ex,
            addr,
            irc_addr,
            dialect,
            tls,
            epoch: now,
            connect_slots: Semaphore::new(args.connect_concurrency.max(1)),
            connect_timeout: connect_timeout.max(Duration::from_millis(100)),
            deadline: now + timeout,
            tag: format!("{:x}", std::process::id()),
            progress: !args.quiet,
        });
        // The scenarios bound themselves by the deadline; this is the backstop.
        let hard = now + timeout + Duration::from_secs(5);
        let outcome = runtime::until(hard, async move {
            match scenario {
                Scenario::Ttfb(a) => emit(json, ttfb::run(ctx, a).await),
                Scenario::Fanout(a) => emit(json, fanout::run(ctx, a).await),
                Scenario::Idle(a) => emit(json, idle::run(ctx, a).await),
                Scenario::SlowReader(a) => emit(json, slowreader::run(ctx, a).await),
                Scenario::Storm(a) => emit(json, storm::run(ctx, a).await),
                Scenario::SendqMem(a) => emit(json, sendqmem::run(ctx, a).await),
                Scenario::DmFlood(a) => emit(json, dmflood::run(ctx, a).await),
                Scenario::Cascade(a) => emit(json, cascade::run(ctx, a).await),
                Scenario::BigReply(a) => emit(json, bigreply::run(ctx, a).await),
                Scenario::Handshakes(a) => emit(json, handshakes::run(ctx, a).await),
                Scenario::Replay(a) => emit(json, replay::run(ctx, a).await),
                Scenario::Fill(a) => emit(json, fill::run(ctx, a).await),
            }
        })
        .await;
        outcome.unwrap_or_else(|| Err(format!("gave up after --timeout {timeout:?}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_allowed() {
        let t = |a, remote| target("--addr", a, remote);
        assert!(t("127.0.0.1:8080", false).is_ok());
        assert!(t("[::1]:8080", false).is_ok());
        assert!(t("10.1.2.3:8080", false)
            .unwrap_err()
            .contains("--allow-remote"));
        assert_eq!(t("10.1.2.3:8080", true).unwrap().port(), 8080);
        assert!(t("nonsense", false).is_err());
    }

    #[test]
    fn tls_flags_imply_tls_and_a_remote_server_needs_a_choice() {
        let args = |s: &[&str]| Args::from_args(&["chatload"], s).unwrap();
        assert!(tls_for(&args(&["ttfb"]), false).unwrap().is_none());
        assert!(tls_for(&args(&["--tls", "ttfb"]), false).unwrap().is_some());
        assert!(tls_for(&args(&["--tls-insecure", "ttfb"]), true)
            .unwrap()
            .is_some());
        assert!(tls_for(&args(&["--tls", "ttfb"]), true)
            .unwrap_err()
            .contains("--tls-insecure"));
        let both = args(&["--ca-file", "x.pem", "--tls-insecure", "ttfb"]);
        assert!(tls_for(&both, false).unwrap_err().contains("exclude"));
        // --ca-file implies --tls and is read at once.
        let missing = args(&["--ca-file", "/nonexistent/ca.pem", "ttfb"]);
        assert!(tls_for(&missing, false)
            .unwrap_err()
            .starts_with("--ca-file /nonexistent/ca.pem: "));
        let bad_name = args(&["--tls", "--tls-name", "a b", "ttfb"]);
        assert!(tls_for(&bad_name, false)
            .unwrap_err()
            .contains("--tls-name"));
    }

    #[test]
    fn irc_dialects_need_an_irc_address_and_a_scenario_that_speaks_it() {
        let args = |s: &[&str]| Args::from_args(&["chatload"], s).unwrap();
        let irc: SocketAddr = "127.0.0.1:6667".parse().unwrap();
        let fanout = args(&["fanout"]).scenario;
        assert_eq!(
            dialect_for("native", None, &fanout),
            Ok(DialectMode::Native)
        );
        assert_eq!(dialect_for("mix", Some(irc), &fanout), Ok(DialectMode::Mix));
        assert!(dialect_for("irc", None, &fanout)
            .unwrap_err()
            .contains("--irc-addr"));
        assert!(dialect_for("klingon", Some(irc), &fanout).is_err());
        let storm = args(&["storm"]).scenario;
        assert!(dialect_for("irc", Some(irc), &storm)
            .unwrap_err()
            .contains("only"));
        let parsed = args(&["--dialect", "mix", "--irc-addr", "127.0.0.1:1", "ttfb"]);
        assert_eq!(parsed.dialect, "mix");
        assert_eq!(parsed.irc_addr.as_deref(), Some("127.0.0.1:1"));
    }
}
