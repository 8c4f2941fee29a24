//! `handshakes`: fresh connections one after another on `-c` workers for `-d`
//! seconds, each ending once the server's first line (`HELLO`) arrived; with
//! `--tls` every one is a full handshake (no resumption). Reports connections
//! per second, their latency, and, with `--pid`, the server's CPU seconds, so
//! that handshakes per second on one core reads off directly.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use serde::Serialize;

use crate::client::Conn;
use crate::report::{latency_cell, Report, Table};
use crate::runtime::{self, Counters, Ctx, Stage, Totals};
use crate::stats::{Batch, SharedLatency, Summary};

#[derive(FromArgs, Debug)]
/// fresh connections (full TLS handshakes with --tls) per second, each
/// closed once the server's HELLO arrived
#[argh(subcommand, name = "handshakes")]
pub(crate) struct HandshakesArgs {
    /// connections in flight at once (default 8)
    #[argh(option, short = 'c', default = "8")]
    concurrency: usize,
    /// seconds of connecting (default 10)
    #[argh(option, short = 'd', default = "10.0")]
    duration: f64,
    /// stop after this many connections in all (default 1000000)
    #[argh(option, default = "1_000_000")]
    max: u64,
    /// the server's pid: report its CPU time over the run (from /proc)
    #[argh(option)]
    pid: Option<u32>,
}

#[derive(Debug, Serialize)]
pub(crate) struct HandshakesReport {
    concurrency: usize,
    /// Connections that got the server's first line.
    completed: u64,
    /// Connections whose connect, handshake or first line failed.
    failed: u64,
    /// Completed connections whose first line was not `HELLO` (a refusal).
    refused: u64,
    duration_s: f64,
    per_second: f64,
    /// TCP connect plus TLS handshake, per completed connection.
    handshake: Summary,
    /// From the connect to the first line's first byte.
    to_first_line: Summary,
    /// The server's user + system CPU seconds during the run (`--pid`).
    server_cpu_s: Option<f64>,
    /// Completed connections per CPU second of the server: per second on one
    /// core when the server is the bottleneck.
    per_server_cpu_s: Option<f64>,
    /// chatload's own CPU seconds: near duration x threads means the tester,
    /// not the server, was the limit.
    client_cpu_s: Option<f64>,
    #[serde(flatten)]
    totals: Totals,
}

impl Report for HandshakesReport {
    fn table(&self) -> Table {
        let t = &self.totals;
        let what = if t.tls {
            "TLS handshakes"
        } else {
            "TCP connects"
        };
        let mut table = Table::new(format!(
            "handshakes: fresh {what}, {} at once",
            self.concurrency
        ))
        .row(
            "completed",
            format!(
                "{} in {:.1} s ({} failed, {} refused)",
                self.completed, self.duration_s, self.failed, self.refused
            ),
        )
        .row("per second", format!("{:.0}", self.per_second))
        .row(
            "connect+handshake p50/p90/p95/p99/max",
            latency_cell(&self.handshake),
        )
        .row(
            "to first line p50/p90/p95/p99/max",
            latency_cell(&self.to_first_line),
        );
        if let (Some(cpu), Some(per)) = (self.server_cpu_s, self.per_server_cpu_s) {
            table = table.row("server CPU", format!("{cpu:.2} s: {per:.0} per CPU second"));
        }
        if let Some(cpu) = self.client_cpu_s {
            table = table.row("chatload CPU", format!("{cpu:.2} s"));
        }
        t.add_notes(table)
    }
}

/// User plus system CPU seconds of a process, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_seconds(&stat)
}

/// utime and stime are the 14th and 15th fields, in USER_HZ ticks (100 per
/// second on Linux); the command name before them may hold spaces, so count
/// from its closing parenthesis.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The outcome of one fresh connection.
enum Outcome {
    /// Connect (and handshake) took the first, the first line came after the second.
    Hello(Duration, Duration),
    Refused,
    Failed(String),
}

async fn one(ctx: &Ctx, end: Instant) -> Outcome {
    let t0 = Instant::now();
    let stream = match runtime::until(end, Conn::connect(ctx.addr, ctx.tls.as_ref(), None)).await {
        Some(Ok(s)) => s,
        Some(Err(e)) => return Outcome::Failed(format!("connect: {e}")),
        None => return Outcome::Failed("connect: not done by the end".to_owned()),
    };
    let handshake = t0.elapsed();
    let mut stream = stream;
    let mut first = [0u8; 5];
    // The first five bytes (or fewer if the server closes first).
    let got = runtime::until(end, async {
        let mut have = 0;
        while have < first.len() {
            stream.readable().await?;
            match stream.try_read(&mut first[have..])? {
                Some(0) => break,
                Some(n) => have += n,
                None => {}
            }
        }
        Ok::<_, std::io::Error>(have)
    })
    .await;
    match got {
        Some(Ok(5)) if &first == b"HELLO" => Outcome::Hello(handshake, t0.elapsed()),
        Some(Ok(0)) => Outcome::Failed("closed before its first line".to_owned()),
        Some(Ok(_)) => Outcome::Refused,
        Some(Err(e)) => Outcome::Failed(format!("first line: {e}")),
        None => Outcome::Failed("first line: not there by the end".to_owned()),
    }
    // Dropping the stream closes it (with close_notify for TLS).
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: HandshakesArgs) -> Result<HandshakesReport, String> {
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let duration = runtime::secs("--duration", args.duration)?;
    let pid = args.pid.map(|p| p.to_string());
    let server_before = match &pid {
        Some(p) => Some(cpu_seconds(p).ok_or_else(|| format!("--pid {p}: no /proc/{p}/stat"))?),
        None => None,
    };
    let client_before = cpu_seconds("self");
    let stage = Stage::new();
    let counters = stage.counters.clone();
    let handshake = Arc::new(SharedLatency::new());
    let to_first = Arc::new(SharedLatency::new());
    let refused = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));
    let progress = stage.progress(
        &ctx,
        format!("handshakes c={}", args.concurrency),
        "connecting",
    );
    let t0 = Instant::now();
    let end = ctx.bound(t0 + duration);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (ctx, counters, handshake, to_first, refused, started) = (
                ctx.clone(),
                counters.clone(),
                handshake.clone(),
                to_first.clone(),
                refused.clone(),
                started.clone(),
            );
            let max = args.max;
            ctx.ex.clone().spawn(async move {
                let (mut hs, mut first) = (Batch::default(), Batch::default());
                // Samples are flushed to the shared histograms every 64.
                let mut batched = 0;
                while Instant::now() < end && started.fetch_add(1, Relaxed) < max {
                    match one(&ctx, end).await {
                        Outcome::Hello(h, f) => {
                            Counters::add(&counters.connected, 1);
                            Counters::add(&counters.received, 1);
                            // Its own histograms hold the times: the report's
                            // `connect` would only repeat `handshake`.
                            if ctx.tls.is_some() {
                                counters.set_tls();
                            }
                            hs.push(h);
                            first.push(f);
                            batched += 1;
                        }
                        Outcome::Refused => {
                            Counters::add(&counters.connected, 1);
                            refused.fetch_add(1, Relaxed);
                        }
                        Outcome::Failed(e) => {
                            // A connect cut short by the end is no failure.
                            if Instant::now() < end {
                                Counters::add(&counters.failed, 1);
                                counters.error(e);
                            }
                        }
                    }
                    Counters::add(&counters.sent, 1);
                    if batched >= 64 {
                        handshake.flush(&mut hs);
                        to_first.flush(&mut first);
                        batched = 0;
                    }
                }
                handshake.flush(&mut hs);
                to_first.flush(&mut first);
            })
        })
        .collect();
    for w in workers {
        if runtime::until(ctx.deadline + Duration::from_secs(1), w)
            .await
            .is_none()
        {
            break;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let server_cpu_s = match (&pid, server_before) {
        (Some(p), Some(before)) => cpu_seconds(p).map(|after| after - before),
        _ => None,
    };
    let client_cpu_s = client_before.and_then(|b| cpu_seconds("self").map(|a| a - b));
    progress.finish().await;
    counters.require_connected(ctx.addr)?;
    let totals = counters.totals();
    let refused = refused.load(Relaxed);
    let completed = totals.connections_ok - refused;
    Ok(HandshakesReport {
        concurrency: args.concurrency,
        completed,
        failed: totals.connections_failed,
        refused,
        duration_s: elapsed,
        per_second: completed as f64 / elapsed.max(1e-9),
        handshake: handshake.snapshot().summary(),
        to_first_line: to_first.snapshot().summary(),
        per_server_cpu_s: server_cpu_s
            .filter(|c| *c > 0.0)
            .map(|c| completed as f64 / c),
        server_cpu_s,
        client_cpu_s,
        totals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_from_proc_stat() {
        // A command name with spaces and parentheses, utime 250, stime 50.
        let stat = "1234 (chat d (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_cpu_seconds("1234 (x) S 1"), None);
        assert_eq!(parse_cpu_seconds("garbage"), None);
        assert!(cpu_seconds("self").is_some());
    }
}
