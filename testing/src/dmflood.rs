//! `dmflood`: M senders send large private messages to one victim as fast as
//! the server lets them, while the victim reads at a limited rate; reports
//! whether (and when) the server cut the victim off, and what it received.

use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use chatproto::Event;
use serde::Serialize;
use smol::Timer;

use crate::client::{Conn, End, Flood, Incoming};
use crate::report::{Report, Table};
use crate::runtime::{self, settle, Counters, Ctx, Stage, Totals};

#[derive(FromArgs, Debug)]
/// M senders flood one victim, which reads at a limited rate, with large
/// private messages: is the victim cut off?
#[argh(subcommand, name = "dmflood")]
pub(crate) struct DmFloodArgs {
    /// senders (default 8)
    #[argh(option, short = 'm', default = "8")]
    senders: usize,
    /// bytes per second the victim reads (default 160000)
    #[argh(option, default = "160000.0")]
    victim_rate: f64,
    /// bytes the victim takes per read (default 4096)
    #[argh(option, default = "4096")]
    victim_chunk: usize,
    /// seconds of flooding (default 20)
    #[argh(option, short = 'd', default = "20.0")]
    duration: f64,
    /// bytes of text per private message (default 4000)
    #[argh(option, default = "4000")]
    size: usize,
    /// at most this many seconds waiting for the server to go quiet after
    /// registrations (default 30)
    #[argh(option, default = "30.0")]
    settle_max: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct DmFloodReport {
    senders: usize,
    message_bytes: usize,
    victim_rate_target: f64,
    victim_cut: bool,
    /// Seconds after the flood started that the cut was first seen.
    cut_after_s: Option<f64>,
    /// How it was seen: `BYE <reason>` to the victim, `PART <reason>` seen by
    /// a sender, or `closed` (the victim's socket).
    cut_seen_as: Vec<String>,
    /// `DM` lines that reached the victim.
    dms_delivered: u64,
    /// `DM` confirmations the senders got back.
    dms_confirmed: u64,
    /// Messages the senders queued for writing (the server decides how fast
    /// they go out).
    dms_queued: u64,
    victim_bytes: u64,
    /// Bytes per second while the victim was connected.
    victim_bytes_per_s: f64,
    /// `ERR` replies to the senders (`no-such-user` once the victim is gone).
    sender_errors: u64,
    duration_s: f64,
    #[serde(flatten)]
    totals: Totals,
}

impl Report for DmFloodReport {
    fn table(&self) -> Table {
        let t = &self.totals;
        let table = Table::new(format!(
            "dmflood: {} senders of {} B private messages, victim reading {:.0} B/s",
            self.senders, self.message_bytes, self.victim_rate_target
        ))
        .row(
            "connections",
            format!("{} ok, {} failed", t.connections_ok, t.connections_failed),
        )
        .row(
            "victim",
            match self.cut_after_s {
                Some(s) => format!("CUT OFF after {s:.2} s ({})", self.cut_seen_as.join(", ")),
                None => "survived".to_owned(),
            },
        )
        .row(
            "victim received",
            format!(
                "{} bytes, {:.0} B/s, {} DMs",
                self.victim_bytes, self.victim_bytes_per_s, self.dms_delivered
            ),
        )
        .row(
            "senders",
            format!(
                "{} DMs queued, {} confirmed, {} ERR replies",
                self.dms_queued, self.dms_confirmed, self.sender_errors
            ),
        )
        .row("duration", format!("{:.1} s", self.duration_s));
        t.add_notes(table)
    }
}

/// What the victim saw.
#[derive(Default)]
struct VictimEnd {
    dms: u64,
    bytes: u64,
    /// Seconds after the start that its connection ended, if it did.
    closed_at: Option<f64>,
    bye: Option<String>,
}

/// Reads at most `chunk` bytes at a time, sleeping between reads so that
/// it takes no more than `rate` bytes/s, from `from` until `end`.
async fn read_slowly(
    conn: &mut Conn,
    rate: f64,
    chunk: usize,
    from: Instant,
    end: Instant,
) -> VictimEnd {
    let counters = Counters::default();
    let mut out = VictimEnd::default();
    // Each pass reads at least a byte, so this bounds the passes too.
    let max_reads = (rate * end.saturating_duration_since(from).as_secs_f64()) as u64 + 1;
    for _ in 0..max_reads {
        if Instant::now() >= end {
            break;
        }
        match runtime::until(end, conn.read_up_to(chunk)).await {
            None => break,
            Some(Ok(Some(at))) => conn.drain(at, |line, _, _| {
                if matches!(line, Incoming::Event(Event::Dm { .. })) {
                    out.dms += 1;
                }
            }),
            Some(Ok(None) | Err(_)) => {
                out.closed_at = Some(from.elapsed().as_secs_f64());
                break;
            }
        }
        // Answers PINGs; a write that cannot finish means the end anyway.
        if runtime::until(end, conn.flush()).await.is_none() {
            break;
        }
        conn.report(&counters, 0);
        let due = from + Duration::from_secs_f64(Counters::get(&counters.bytes_in) as f64 / rate);
        Timer::at(due.min(end)).await;
    }
    conn.report(&counters, 0);
    out.bytes = Counters::get(&counters.bytes_in);
    out.bye = conn.bye.clone();
    out
}

/// What one sender saw.
#[derive(Default)]
struct SenderEnd {
    queued: u64,
    confirmed: u64,
    errors: u64,
    /// The victim's `PART`: reason and seconds after the start.
    part: Option<(String, f64)>,
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: DmFloodArgs) -> Result<DmFloodReport, String> {
    if args.senders == 0 {
        return Err("--senders must be at least 1".into());
    }
    if args.size == 0 || args.size > 4000 {
        return Err("--size must be in 1..=4000 (the protocol's line limit is 4096)".into());
    }
    if !(args.victim_rate.is_finite() && args.victim_rate >= 1.0) {
        return Err(format!(
            "--victim-rate must be at least 1, not {}",
            args.victim_rate
        ));
    }
    let duration = runtime::secs("--duration", args.duration)?;
    let settle_max = runtime::secs("--settle-max", args.settle_max)?;
    let stage = Arc::new(Stage::new());
    let counters = &stage.counters;
    let progress = stage.progress(&ctx, format!("dmflood m={}", args.senders), "connecting");
    let victim_name = ctx.name("v", 0);
    let victim = {
        let (ctx, stage) = (ctx.clone(), stage.clone());
        let (name, rate, chunk) = (victim_name.clone(), args.victim_rate, args.victim_chunk);
        ctx.ex.clone().spawn(async move {
            let (mut conn, (from, end)) = stage.open_and_await_start(&ctx, name, None).await?;
            let seen = read_slowly(&mut conn, rate, chunk, from, end).await;
            // Stays connected until the senders stopped watching, so its
            // leaving is not mistaken for a cut.
            let _ = runtime::until(ctx.deadline, stage.stop.waiter().recv()).await;
            Some(seen)
        })
    };
    // The senders need the victim registered before they address it.
    stage.await_ready(1, ctx.deadline).await;
    counters.require_connected(ctx.addr)?;
    let senders: Vec<_> = (0..args.senders)
        .map(|i| {
            let (ctx, stage) = (ctx.clone(), stage.clone());
            let line = format!("/msg {victim_name} {}\n", "x".repeat(args.size)).into_bytes();
            let victim_name = victim_name.clone();
            ctx.ex.clone().spawn(async move {
                let (mut conn, (from, end)) = stage
                    .open_and_await_start(&ctx, ctx.name("d", i), None)
                    .await?;
                let mut out = SenderEnd::default();
                let (mut confirmed, mut errors, mut part) = (0, 0, None);
                let mut flood = Flood::new(line, None, from, end, |l, at: Instant| match l {
                    Incoming::Event(Event::Dm { .. }) => confirmed += 1,
                    Incoming::Event(Event::Err { .. }) => errors += 1,
                    Incoming::Part { name, reason }
                        if name == victim_name && part.is_none() && at < end =>
                    {
                        let s = at.saturating_duration_since(from).as_secs_f64();
                        part = Some((reason.unwrap_or("").to_owned(), s));
                    }
                    _ => {}
                });
                let end = stage.pump_until_stop(&ctx, &mut conn, &mut flood).await;
                out.queued = flood.sent;
                if !matches!(end, End::Signalled) {
                    conn.ended_early(&stage.counters, &end, "a sender");
                }
                out.confirmed = confirmed;
                out.errors = errors;
                out.part = part;
                Some(out)
            })
        })
        .collect();
    stage.await_ready(args.senders, ctx.deadline).await;
    progress.set_phase("settling");
    settle(counters, Duration::from_millis(300), settle_max).await;
    progress.set_phase("flooding");
    let (from, end) = stage.begin(&ctx, duration);
    Timer::at(end).await;
    let duration_s = from.elapsed().as_secs_f64();
    // Late confirmations and PARTs still arrive; the victim stopped at `end`.
    progress.set_phase("draining");
    Timer::at(ctx.bound(Instant::now() + Duration::from_millis(500))).await;
    stage.stop.fire();

    let grace = ctx.deadline + Duration::from_secs(1);
    let v = runtime::until(grace, victim)
        .await
        .flatten()
        .unwrap_or_default();
    let mut report = DmFloodReport {
        senders: args.senders,
        message_bytes: args.size,
        victim_rate_target: args.victim_rate,
        victim_cut: false,
        cut_after_s: None,
        cut_seen_as: Vec::new(),
        dms_delivered: v.dms,
        dms_confirmed: 0,
        dms_queued: 0,
        victim_bytes: v.bytes,
        // Over the time it was connected.
        victim_bytes_per_s: v.bytes as f64 / v.closed_at.unwrap_or(duration_s).max(1e-3),
        sender_errors: 0,
        duration_s,
        totals: counters.totals(),
    };
    let mut first_cut = v.closed_at;
    if let Some(b) = &v.bye {
        report.cut_seen_as.push(format!("BYE {b}"));
    }
    if v.closed_at.is_some() {
        report.cut_seen_as.push("closed".to_owned());
    }
    let mut part_seen = None;
    for t in senders {
        let Some(s) = runtime::until(grace, t).await else {
            break;
        };
        let Some(s) = s else { continue };
        report.dms_queued += s.queued;
        report.dms_confirmed += s.confirmed;
        report.sender_errors += s.errors;
        if let Some((reason, at)) = s.part {
            first_cut = Some(first_cut.map_or(at, |c: f64| c.min(at)));
            part_seen.get_or_insert(reason);
        }
    }
    if let Some(reason) = part_seen {
        report.cut_seen_as.push(format!("PART {reason}"));
    }
    progress.finish().await;
    report.victim_cut = first_cut.is_some();
    report.cut_after_s = first_cut;
    report.totals = counters.totals();
    Ok(report)
}
