//! `storm`: N clients connect and register all at once; measures each one's
//! registration latency (connect start to `WELCOME`), how many registered,
//! and how long until all of them had.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use serde::Serialize;

use crate::client::{Conn, Dialect, End, Quiet};
use crate::report::{latency_cell, Report, Table};
use crate::runtime::{self, Counters, Ctx, Stage, Totals};
use crate::stats::{Batch, SharedLatency, Summary};

#[derive(FromArgs, Debug)]
/// N clients connect and register at once: registration latency and the time
/// until all registered
#[argh(subcommand, name = "storm")]
pub(crate) struct StormArgs {
    /// clients (default 10000)
    #[argh(option, short = 'n', default = "10000")]
    clients: usize,
    /// connects and registrations in flight at once, for this scenario instead
    /// of the global --connect-concurrency (default 1000)
    #[argh(option, default = "1000")]
    concurrency: usize,
    /// seconds to wait for all clients to register before closing them all
    /// (default 60)
    #[argh(option, default = "60.0")]
    wait: f64,
    /// seconds within which all should have registered, for the verdict
    /// (default 20)
    #[argh(option, default = "20.0")]
    target: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct StormReport {
    clients: usize,
    concurrency: usize,
    registered: u64,
    /// Connect start (after waiting for a connect slot) to `WELCOME`.
    registration: Summary,
    /// From the first connect to the last `WELCOME`, if all registered.
    all_registered_s: Option<f64>,
    /// From the first connect to the last `WELCOME` that came.
    last_registered_s: f64,
    target_s: f64,
    /// All registered within the target.
    target_met: bool,
    /// Registered connections the server closed while the others registered.
    closed_while_waiting: u64,
    #[serde(flatten)]
    totals: Totals,
}

impl Report for StormReport {
    fn table(&self) -> Table {
        let t = &self.totals;
        let table = Table::new(format!(
            "storm: {} clients, {} connecting at once",
            self.clients, self.concurrency
        ))
        .row(
            "registered",
            format!(
                "{} of {} ({} failed, {} closed by the server while waiting)",
                self.registered, self.clients, t.connections_failed, self.closed_while_waiting
            ),
        )
        .row(
            "all registered after",
            self.all_registered_s.map_or_else(
                || format!("not all (last at {:.2} s)", self.last_registered_s),
                |s| format!("{s:.2} s"),
            ),
        )
        .row(
            "target",
            format!(
                "all within {} s: {}",
                self.target_s,
                if self.target_met { "met" } else { "MISSED" }
            ),
        )
        .row(
            "registration p50/p90/p95/p99/max",
            latency_cell(&self.registration),
        )
        .row(
            "received",
            format!("{} lines, {} bytes", t.lines_received, t.bytes_received),
        )
        .row("malformed lines", t.malformed_lines);
        t.add_notes(table)
    }
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: StormArgs) -> Result<StormReport, String> {
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let wait = runtime::secs("--wait", args.wait)?;
    let target = runtime::secs("--target", args.target)?;
    let ctx = Arc::new(ctx.with_connect_concurrency(args.concurrency));
    let stage = Arc::new(Stage::new());
    let counters = &stage.counters;
    let hist = Arc::new(SharedLatency::new());
    // Nanoseconds from t0 to the latest WELCOME.
    let last_ns = Arc::new(AtomicU64::new(0));
    let progress = stage.progress(&ctx, format!("storm n={}", args.clients), "storming");
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| {
            let (ctx, stage, hist, last_ns) =
                (ctx.clone(), stage.clone(), hist.clone(), last_ns.clone());
            ctx.ex.clone().spawn(async move {
                let counters = &stage.counters;
                let opened = Conn::open(
                    &ctx,
                    counters,
                    Dialect::Native,
                    ctx.name("w", i),
                    None,
                    None,
                )
                .await;
                if let Ok(conn) = &opened {
                    let now = Instant::now();
                    let mut batch = Batch::default();
                    batch.push(now.saturating_duration_since(conn.started));
                    hist.flush(&mut batch);
                    let ns = u64::try_from(now.saturating_duration_since(t0).as_nanos());
                    last_ns.fetch_max(ns.unwrap_or(u64::MAX), Relaxed);
                    Counters::add(&counters.received, 1);
                }
                // Reported once recorded: the last WELCOME is in `last_ns`
                // when all are ready.
                stage.report_ready(opened.is_ok()).await;
                let Ok(mut conn) = opened else { return };
                // Reads (the later clients' JOINs) until all registered, so
                // no client is a slow consumer.
                let end = stage.drive_until_stop(&ctx, &mut conn, &mut Quiet).await;
                if !matches!(end, End::Signalled) {
                    conn.ended_early(counters, &end, "a registered client");
                }
            })
        })
        .collect();
    stage.await_ready(args.clients, ctx.bound(t0 + wait)).await;
    counters.require_connected(ctx.addr)?;
    progress.set_phase("closing");
    stage.stop.fire();
    for t in tasks {
        if runtime::until(ctx.deadline + Duration::from_secs(1), t)
            .await
            .is_none()
        {
            break;
        }
    }
    progress.finish().await;
    let totals = counters.totals();
    let registered = totals.connections_ok;
    let last_registered_s = last_ns.load(Relaxed) as f64 / 1e9;
    let all = registered == args.clients as u64;
    let all_registered_s = all.then_some(last_registered_s);
    Ok(StormReport {
        clients: args.clients,
        concurrency: args.concurrency,
        registered,
        registration: hist.snapshot().summary(),
        all_registered_s,
        last_registered_s,
        target_s: target.as_secs_f64(),
        target_met: all && last_registered_s <= target.as_secs_f64(),
        closed_while_waiting: totals.closed_early,
        totals,
    })
}
