//! `idle`: N registered connections that say nothing; reports how much
//! resident memory the server spends per connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use serde::Serialize;
use smol::Timer;

use crate::client::{End, Quiet};
use crate::report::{Report, Table};
use crate::runtime::{self, settle, Ctx, Stage, Totals};

#[derive(FromArgs, Debug)]
/// server memory per idle registered connection (reads `/proc/<pid>/status`)
#[argh(subcommand, name = "idle")]
pub(crate) struct IdleArgs {
    /// idle connections (default 1000)
    #[argh(option, short = 'n', default = "1000")]
    clients: usize,
    /// the server's process id
    #[argh(option)]
    pid: u32,
    /// seconds to hold the connections after they are all registered and the
    /// server went quiet, before measuring again (default 5)
    #[argh(option, default = "5.0")]
    hold: f64,
    /// at most this many seconds waiting for the server to go quiet (default 30)
    #[argh(option, default = "30.0")]
    settle_max: f64,
}

/// Resident memory figures of a process, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Rss {
    pub(crate) vm_rss: u64,
    pub(crate) rss_anon: u64,
    /// The peak of VmRSS over the process's life (`VmHWM`).
    pub(crate) vm_hwm: u64,
}

/// Reads `VmRSS`, `RssAnon` and `VmHWM` from the text of `/proc/<pid>/status`.
pub(crate) fn parse_status(status: &str) -> Result<Rss, String> {
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    };
    let vm_rss = field("VmRSS:").ok_or("no VmRSS line (a kernel thread, or not Linux?)")?;
    Ok(Rss {
        vm_rss,
        rss_anon: field("RssAnon:").unwrap_or(0),
        vm_hwm: field("VmHWM:").unwrap_or(0),
    })
}

pub(crate) fn read_rss(pid: u32) -> Result<Rss, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_status(&text).map_err(|e| format!("{path}: {e}"))
}

/// Reads `/proc/<pid>/status` every `every` until `stop` fires or `deadline`
/// passes; returns the highest VmRSS seen (0 if no read succeeded).
pub(crate) async fn sample_peak_rss(
    pid: u32,
    every: Duration,
    stop: async_channel::Receiver<()>,
    deadline: Instant,
) -> u64 {
    let mut peak = 0;
    while Instant::now() < deadline {
        if let Ok(rss) = read_rss(pid) {
            peak = peak.max(rss.vm_rss);
        }
        let stopped = runtime::until(deadline.min(Instant::now() + every), stop.recv()).await;
        if stopped.is_some() {
            break;
        }
    }
    peak
}

#[derive(Debug, Serialize)]
pub(crate) struct IdleReport {
    pid: u32,
    clients: usize,
    rss_before: Rss,
    rss_after: Rss,
    rss_after_hold: Rss,
    /// (VmRSS after hold - before) / connections held.
    bytes_per_connection: f64,
    anon_bytes_per_connection: f64,
    still_open_after_hold: u64,
    connect_s: f64,
    settle_s: f64,
    hold_s: f64,
    #[serde(flatten)]
    totals: Totals,
}

impl Report for IdleReport {
    fn table(&self) -> Table {
        let kib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
        let t = &self.totals;
        let table = Table::new(format!(
            "idle: {} connections to pid {}",
            self.clients, self.pid
        ))
        .row(
            "connections",
            format!(
                "{} ok, {} failed, {} still open after hold",
                t.connections_ok, t.connections_failed, self.still_open_after_hold
            ),
        )
        .row(
            "server VmRSS",
            format!(
                "{} before, {} registered, {} after hold",
                kib(self.rss_before.vm_rss),
                kib(self.rss_after.vm_rss),
                kib(self.rss_after_hold.vm_rss)
            ),
        )
        .row(
            "per connection",
            format!(
                "{:.0} B resident ({:.0} B anonymous)",
                self.bytes_per_connection, self.anon_bytes_per_connection
            ),
        )
        .row(
            "duration",
            format!(
                "connect {:.1} s, settle {:.1} s, hold {:.1} s",
                self.connect_s, self.settle_s, self.hold_s
            ),
        );
        t.add_notes(table)
    }
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: IdleArgs) -> Result<IdleReport, String> {
    let hold = runtime::secs("--hold", args.hold)?;
    let settle_max = runtime::secs("--settle-max", args.settle_max)?;
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let rss_before = read_rss(args.pid)?;
    let stage = Arc::new(Stage::new());
    let counters = &stage.counters;
    let progress = stage.progress(&ctx, format!("idle n={}", args.clients), "connecting");
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| {
            let (ctx, stage) = (ctx.clone(), stage.clone());
            ctx.ex.clone().spawn(async move {
                let Some(mut conn) = stage.open(&ctx, ctx.name("i", i), None, None).await else {
                    return false;
                };
                // Keeps reading (JOINs of later clients, PINGs) until told.
                let end = stage.drive_until_stop(&ctx, &mut conn, &mut Quiet).await;
                matches!(end, End::Signalled)
            })
        })
        .collect();
    stage.await_ready(args.clients, ctx.deadline).await;
    counters.require_connected(ctx.addr)?;
    let connect_s = t0.elapsed().as_secs_f64();
    progress.set_phase("settling");
    let settle_s = settle(counters, Duration::from_millis(500), settle_max)
        .await
        .as_secs_f64();
    let rss_after = read_rss(args.pid)?;
    progress.set_phase("holding");
    let hold_start = Instant::now();
    Timer::at(ctx.bound(hold_start + hold)).await;
    let rss_after_hold = read_rss(args.pid)?;
    let hold_s = hold_start.elapsed().as_secs_f64();
    stage.stop.fire();
    let mut still_open = 0;
    for t in tasks {
        match runtime::until(ctx.deadline + Duration::from_secs(1), t).await {
            Some(true) => still_open += 1,
            Some(false) => {}
            None => break,
        }
    }
    progress.finish().await;
    let totals = counters.totals();
    let held = totals.connections_ok.max(1) as f64;
    Ok(IdleReport {
        pid: args.pid,
        clients: args.clients,
        rss_before,
        rss_after,
        rss_after_hold,
        bytes_per_connection: (rss_after_hold.vm_rss as f64 - rss_before.vm_rss as f64) / held,
        anon_bytes_per_connection: (rss_after_hold.rss_anon as f64 - rss_before.rss_anon as f64)
            / held,
        still_open_after_hold: still_open,
        connect_s,
        settle_s,
        hold_s,
        totals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let status = "Name:\tchatd\nVmPeak:\t  100 kB\nVmHWM:\t    4096 kB\nVmRSS:\t    2048 kB\nRssAnon:\t     1024 kB\nRssFile:\t 1024 kB\n";
        assert_eq!(
            parse_status(status),
            Ok(Rss {
                vm_rss: 2048 * 1024,
                rss_anon: 1024 * 1024,
                vm_hwm: 4096 * 1024,
            })
        );
        assert!(parse_status("Name:\tkthreadd\n").is_err());
    }

    #[test]
    fn reads_own_rss() {
        let rss = read_rss(std::process::id()).unwrap();
        assert!(rss.vm_rss > 0);
        assert!(rss.vm_hwm >= rss.vm_rss);
        assert!(read_rss(u32::MAX).is_err());
    }
}
