//! `sendqmem`: K clients that never read while the server queues lines for
//! them (a broadcast flood, or their own `/ping` replies); reports the
//! server's peak memory per such client against its `--sendq`, and how many
//! of them were cut off.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use argh::FromArgs;
use chatproto::{Command, Text};
use serde::Serialize;
use smol::Timer;

use crate::client::{Flood, Incoming};
use crate::idle::{read_rss, sample_peak_rss, Rss};
use crate::report::{Report, Table};
use crate::runtime::{self, settle, Ctx, Signal, Stage, Totals};

/// Writes of `/ping a` one never-reading client may make: with 8 KiB per
/// write, far more than any run of minutes can push through a server.
const MAX_PING_WRITES: u64 = 1 << 20;

#[derive(FromArgs, Debug)]
/// server memory per client that never reads, against the server's --sendq.
/// Start chatd with `--flood-rate 0` (or a high rate), else its pacing keeps
/// the queues from filling for minutes.
#[argh(subcommand, name = "sendqmem")]
pub(crate) struct SendqMemArgs {
    /// clients that never read (default 300)
    #[argh(option, short = 'k', default = "300")]
    slow: usize,
    /// the server's process id
    #[argh(option)]
    pid: u32,
    /// what fills the queues: broadcast (one sender floods the global scope)
    /// or ping (the slow clients send `/ping a` without end); default broadcast
    #[argh(option, default = "String::from(\"broadcast\")")]
    mode: String,
    /// the server's --sendq, to compare with: 65536, 64KiB, 1MiB (default 1MiB)
    #[argh(option, default = "String::from(\"1MiB\")")]
    sendq: String,
    /// seconds of flooding (default 20)
    #[argh(option, short = 'd', default = "20.0")]
    duration: f64,
    /// bytes of text per broadcast line (default 64)
    #[argh(option, default = "64")]
    size: usize,
    /// broadcast lines per second; 0 sends as fast as the server reads them
    /// (default 0)
    #[argh(option, default = "0.0")]
    rate: f64,
    /// SO_RCVBUF of the never-reading clients, so the kernel absorbs little
    /// (default 4096)
    #[argh(option, default = "4096")]
    slow_rcvbuf: usize,
    /// milliseconds between reads of the server's VmRSS (default 50)
    #[argh(option, default = "50")]
    sample_ms: u64,
    /// seconds the slow clients read at the end, to find out whether the
    /// server closed them (default 3)
    #[argh(option, default = "3.0")]
    final_read: f64,
    /// at most this many seconds waiting for the server to go quiet after
    /// registrations (default 30)
    #[argh(option, default = "30.0")]
    settle_max: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct SendqMemReport {
    pid: u32,
    mode: String,
    slow_clients: usize,
    sendq_bytes: u64,
    rss_before: Rss,
    rss_after: Rss,
    /// The highest VmRSS seen while flooding (sampled), or VmHWM after if
    /// that rose past VmHWM before.
    peak_rss: u64,
    /// (peak - VmRSS before) / slow clients.
    peak_bytes_per_slow_client: f64,
    /// `peak_bytes_per_slow_client` / sendq (target: at most 1.3).
    ratio_to_sendq: f64,
    /// Slow clients the server had closed by the end.
    cut: usize,
    /// Of those, how many found `BYE sendq-exceeded`.
    cut_with_bye: usize,
    /// `PART * <slow> sendq-exceeded` lines the sender saw (broadcast mode).
    parts_seen: u64,
    /// Broadcast lines queued by the sender (broadcast mode).
    lines_sent: u64,
    duration_s: f64,
    #[serde(flatten)]
    totals: Totals,
}

impl Report for SendqMemReport {
    fn table(&self) -> Table {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
        let t = &self.totals;
        let table = Table::new(format!(
            "sendqmem ({}): {} never-reading clients, pid {}, sendq {} B",
            self.mode, self.slow_clients, self.pid, self.sendq_bytes
        ))
        .row(
            "connections",
            format!("{} ok, {} failed", t.connections_ok, t.connections_failed),
        )
        .row(
            "server VmRSS",
            format!(
                "{} before, peak {}, {} after (VmHWM {} -> {})",
                mib(self.rss_before.vm_rss),
                mib(self.peak_rss),
                mib(self.rss_after.vm_rss),
                mib(self.rss_before.vm_hwm),
                mib(self.rss_after.vm_hwm)
            ),
        )
        .row(
            "peak per slow client",
            format!(
                "{:.0} B = {:.2} x sendq (target <= 1.3: {})",
                self.peak_bytes_per_slow_client,
                self.ratio_to_sendq,
                if self.ratio_to_sendq <= 1.3 {
                    "met"
                } else {
                    "MISSED"
                }
            ),
        )
        .row(
            "cut off",
            format!(
                "{} of {} closed by the server ({} with BYE sendq-exceeded; {} PART sendq-exceeded seen)",
                self.cut, self.slow_clients, self.cut_with_bye, self.parts_seen
            ),
        )
        .row(
            "sent",
            format!(
                "{} broadcast lines, {} bytes in all, over {:.1} s",
                self.lines_sent, t.bytes_sent, self.duration_s
            ),
        );
        t.add_notes(table)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Broadcast,
    Ping,
}

/// What one never-reading client found when it finally read.
struct SlowEnd {
    closed: bool,
    bye_sendq: bool,
}

/// The peak to charge to the run: the sampled one, or the high-water mark
/// if it rose during the run (a peak between two samples).
fn peak_of(before: &Rss, after: &Rss, sampled: u64) -> u64 {
    if after.vm_hwm > before.vm_hwm {
        sampled.max(after.vm_hwm)
    } else {
        sampled
    }
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: SendqMemArgs) -> Result<SendqMemReport, String> {
    let mode = match args.mode.as_str() {
        "broadcast" => Mode::Broadcast,
        "ping" => Mode::Ping,
        m => return Err(format!("--mode must be broadcast or ping, not {m:?}")),
    };
    if args.slow == 0 {
        return Err("--slow must be at least 1".into());
    }
    if args.size == 0 || args.size > 4000 {
        return Err("--size must be in 1..=4000".into());
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err(format!("--rate must be 0 or more, not {}", args.rate));
    }
    let sendq = runtime::parse_size("--sendq", &args.sendq)?;
    let duration = runtime::secs("--duration", args.duration)?;
    let final_read = runtime::secs("--final-read", args.final_read)?;
    let settle_max = runtime::secs("--settle-max", args.settle_max)?;
    let every = Duration::from_millis(args.sample_ms.clamp(1, 10_000));
    let rss_before = read_rss(args.pid)?;

    let stage = Arc::new(Stage::new());
    let counters = &stage.counters;
    let progress = stage.progress(&ctx, format!("sendqmem k={}", args.slow), "connecting");
    let slow_prefix = format!("q{}-", ctx.tag);
    let slows: Vec<_> = (0..args.slow)
        .map(|i| {
            let (ctx, stage) = (ctx.clone(), stage.clone());
            let name = format!("{slow_prefix}{i}");
            let rcvbuf = args.slow_rcvbuf.max(1);
            ctx.ex.clone().spawn(async move {
                let mut conn = stage.open(&ctx, name, None, Some(rcvbuf)).await?;
                // Reads nothing from here on.
                let _ = runtime::until(ctx.deadline, stage.start.waiter().recv()).await;
                let mut write_failed = false;
                if mode == Mode::Ping {
                    let end = stage.window().map_or(ctx.deadline, |w| w.1);
                    let chunk = b"/ping a\n".repeat(1024);
                    write_failed = conn
                        .send_until(&stage.counters, &chunk, end, MAX_PING_WRITES)
                        .await
                        .is_some();
                }
                let _ = runtime::until(ctx.deadline, stage.stop.waiter().recv()).await;
                let closed = conn.read_to_close(&stage.counters, final_read).await || write_failed;
                Some(SlowEnd {
                    closed,
                    bye_sendq: conn.bye.as_deref() == Some("sendq-exceeded"),
                })
            })
        })
        .collect();
    let parts = Arc::new(Mutex::new(0u64));
    let sender = (mode == Mode::Broadcast).then(|| {
        let (ctx, stage, parts) = (ctx.clone(), stage.clone(), parts.clone());
        let (size, rate, prefix) = (args.size, args.rate, slow_prefix.clone());
        ctx.ex.clone().spawn(async move {
            let (mut conn, (from, end)) = stage
                .open_and_await_start(&ctx, ctx.name("b", 0), None)
                .await?;
            let mut line = Vec::new();
            Command::Say(Text::lossy(&"x".repeat(size))).encode(&mut line);
            let mut flood = Flood::new(line, Some(rate), from, end, |l, _| {
                if let Incoming::Part {
                    name,
                    reason: Some("sendq-exceeded"),
                } = l
                {
                    if name.starts_with(&prefix) {
                        *parts.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                    }
                }
            });
            let _ = stage.pump_until_stop(&ctx, &mut conn, &mut flood).await;
            Some(flood.sent)
        })
    });
    let expected = args.slow + usize::from(sender.is_some());
    stage.await_ready(expected, ctx.deadline).await;
    counters.require_connected(ctx.addr)?;
    progress.set_phase("settling");
    settle(counters, Duration::from_millis(300), settle_max).await;

    progress.set_phase("flooding");
    // Samples from just before the start, so the whole flood is covered.
    let sampling = Signal::new();
    let sampler = ctx.ex.spawn(sample_peak_rss(
        args.pid,
        every,
        sampling.waiter(),
        ctx.deadline,
    ));
    let (from, end) = stage.begin(&ctx, duration);
    Timer::at(end).await;
    let duration_s = from.elapsed().as_secs_f64();
    // Before the slow clients read: their queues are still full.
    let rss_after = read_rss(args.pid)?;
    sampling.fire();
    let sampled = sampler.await;
    progress.set_phase("final read");
    stage.stop.fire();

    let grace = ctx.deadline + Duration::from_secs(1);
    let lines_sent = match sender {
        Some(t) => runtime::until(grace, t).await.flatten().unwrap_or(0),
        None => 0,
    };
    let (mut cut, mut cut_with_bye) = (0, 0);
    for t in slows {
        let Some(end) = runtime::until(grace + final_read, t).await else {
            break;
        };
        if let Some(e) = end {
            cut += usize::from(e.closed);
            cut_with_bye += usize::from(e.bye_sendq);
        }
    }
    progress.finish().await;
    let totals = counters.totals();
    let peak_rss = peak_of(&rss_before, &rss_after, sampled);
    let per_client = (peak_rss as f64 - rss_before.vm_rss as f64) / args.slow as f64;
    let parts_seen = *parts.lock().unwrap_or_else(|p| p.into_inner());
    Ok(SendqMemReport {
        pid: args.pid,
        mode: args.mode,
        slow_clients: args.slow,
        sendq_bytes: sendq,
        rss_before,
        rss_after,
        peak_rss,
        peak_bytes_per_slow_client: per_client,
        ratio_to_sendq: per_client / sendq as f64,
        cut,
        cut_with_bye,
        parts_seen,
        lines_sent,
        duration_s,
        totals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_uses_the_high_water_mark_only_if_it_rose() {
        let before = Rss {
            vm_rss: 10,
            rss_anon: 0,
            vm_hwm: 100,
        };
        let rose = Rss {
            vm_hwm: 150,
            ..before
        };
        assert_eq!(peak_of(&before, &before, 40), 40);
        assert_eq!(peak_of(&before, &rose, 40), 150);
        assert_eq!(peak_of(&before, &rose, 160), 160);
    }
}
