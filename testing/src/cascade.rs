//! `cascade`: N clients in the global scope stop reading while one sender
//! floods it, so all their queues overflow at about the same moment and the
//! server cuts them all; a probe client that reads sends `/ping <seq>` every
//! few milliseconds and measures the round trips meanwhile.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use chatproto::Event;
use serde::Serialize;
use smol::Timer;

use crate::client::{Behavior, Dialect, Flood, Incoming, Schedule};
use crate::report::{latency_cell, Report, Table};
use crate::runtime::{self, settle, Ctx, Stage, Totals};
use crate::stats::{Latency, Summary};

/// Pings the probe may have unanswered before it skips sends.
const MAX_OUTSTANDING: usize = 1024;

#[derive(FromArgs, Debug)]
/// N clients stop reading at once under a broadcast flood and are all cut;
/// a probe measures `/ping` round trips meanwhile. Start chatd with a small
/// queue and no pacing for a cascade within seconds and pings every 10 ms:
/// `chatd --sendq 64KiB --flood-rate 0`
#[argh(subcommand, name = "cascade")]
pub(crate) struct CascadeArgs {
    /// clients that stop reading (default 2000)
    #[argh(option, short = 'n', default = "2000")]
    clients: usize,
    /// broadcast lines per second from the sender; 0 sends as fast as the
    /// server reads them (default 200)
    #[argh(option, default = "200.0")]
    rate: f64,
    /// bytes of text per broadcast line (default 1000)
    #[argh(option, default = "1000")]
    size: usize,
    /// seconds of flooding and probing (default 10)
    #[argh(option, short = 'd', default = "10.0")]
    duration: f64,
    /// milliseconds between the probe's pings (default 10)
    #[argh(option, default = "10.0")]
    probe_interval_ms: f64,
    /// SO_RCVBUF of the clients that stop reading (default 4096)
    #[argh(option, default = "4096")]
    slow_rcvbuf: usize,
    /// seconds the stopped clients read at the end, to find out whether the
    /// server closed them (default 3)
    #[argh(option, default = "3.0")]
    final_read: f64,
    /// at most this many seconds waiting for the server to go quiet after
    /// registrations (default 30)
    #[argh(option, default = "30.0")]
    settle_max: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct CascadeReport {
    clients: usize,
    rate_target: f64,
    message_bytes: usize,
    /// Round trips of the probe's pings sent while flooding.
    probe_rtt: Summary,
    /// Round trips of the pings sent during the cascade itself: from
    /// [`CASCADE_LEAD`] before the first `PART ... sendq-exceeded` the probe
    /// saw to the last one. The flood before it loads the server on its own.
    probe_rtt_cascade: Option<Summary>,
    pings_during_cascade: u64,
    pings_sent: u64,
    pings_answered: u64,
    pings_skipped: u64,
    /// Stopped clients the server had closed when they read at the end, or
    /// whose `PART ... sendq-exceeded` the probe saw.
    cut: usize,
    cut_with_bye: usize,
    /// `PART * <stopped> sendq-exceeded` the probe saw (a server may not
    /// announce departures in a crowd this large), and when the first and
    /// last came, in seconds after the flood started.
    parts_seen: u64,
    first_part_s: Option<f64>,
    last_part_s: Option<f64>,
    lines_sent: u64,
    duration_s: f64,
    #[serde(flatten)]
    totals: Totals,
}

impl Report for CascadeReport {
    fn table(&self) -> Table {
        let t = &self.totals;
        let s = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} s"));
        let table = Table::new(format!(
            "cascade: {} clients stop reading, {} lines/s of {} B broadcast",
            self.clients, self.rate_target, self.message_bytes
        ))
        .row(
            "connections",
            format!("{} ok, {} failed", t.connections_ok, t.connections_failed),
        )
        .row(
            "cut off",
            format!(
                "{} of {} cut by the server ({} found BYE sendq-exceeded)",
                self.cut, self.clients, self.cut_with_bye
            ),
        )
        .row(
            "PART sendq-exceeded",
            format!(
                "{} seen, first {}, last {}",
                self.parts_seen,
                s(self.first_part_s),
                s(self.last_part_s)
            ),
        )
        .row(
            "probe pings",
            format!(
                "{} sent, {} answered, {} skipped",
                self.pings_sent, self.pings_answered, self.pings_skipped
            ),
        )
        .row(
            "probe rtt p50/p90/p95/p99/max",
            latency_cell(&self.probe_rtt),
        )
        .row(
            "probe rtt during the cascade",
            match &self.probe_rtt_cascade {
                Some(l) => format!("{} ({} pings)", latency_cell(l), self.pings_during_cascade),
                None => "- (the probe saw no PART sendq-exceeded)".to_owned(),
            },
        )
        .row(
            "probe target",
            format!(
                "p99 under 10 ms during the cascade: {}",
                match &self.probe_rtt_cascade {
                    Some(l) if l.p99_ms < 10.0 => "met",
                    Some(_) => "MISSED",
                    None => "not measured",
                }
            ),
        )
        .row(
            "sent",
            format!(
                "{} broadcast lines over {:.1} s",
                self.lines_sent, self.duration_s
            ),
        );
        t.add_notes(table)
    }
}

/// Sends `/ping <seq>` on a schedule and times each `PONG <seq>`; notes the
/// stopped clients' `PART`s.
struct Prober {
    schedule: Schedule,
    from: Instant,
    seq: u64,
    /// (seq, sent at), oldest first: the server answers in order.
    outstanding: VecDeque<(u64, Instant)>,
    rtt: Latency,
    answered: u64,
    skipped: u64,
    slow_prefix: String,
    parted: HashSet<String>,
    first_part: Option<f64>,
    last_part: Option<f64>,
    /// (sent at, in seconds after `from`; round trip in ns) of each answered
    /// ping; at most one per probe interval of the run.
    samples: Vec<(f64, u64)>,
}

/// How long before the first `PART` a ping counts as sent during the cascade:
/// the kicks start before their `PART`s reach the probe.
const CASCADE_LEAD: f64 = 0.05;

impl Prober {
    /// The round trips of pings sent during the cascade, if the probe saw one.
    fn during_cascade(&self) -> Option<(Summary, u64)> {
        let (first, last) = (self.first_part?, self.last_part?);
        let mut rtt = Latency::new();
        let mut n = 0;
        for &(at, ns) in &self.samples {
            if at >= first - CASCADE_LEAD && at <= last {
                rtt.record_ns(ns);
                n += 1;
            }
        }
        (n > 0).then(|| (rtt.summary(), n))
    }
}

impl Behavior for Prober {
    fn next_send(&self) -> Option<Instant> {
        self.schedule.next()
    }

    fn send(&mut self, now: Instant, out: &mut Vec<u8>) {
        let Some(missed) = self.schedule.take(now) else {
            return;
        };
        if self.outstanding.len() >= MAX_OUTSTANDING {
            self.skipped += 1;
        } else {
            Dialect::Native.ping(&self.seq.to_string(), out);
            self.outstanding.push_back((self.seq, now));
            self.seq += 1;
        }
        self.skipped += missed;
    }

    fn line(&mut self, line: Incoming<'_>, first_byte: Instant, _: &mut Vec<u8>) {
        match line {
            Incoming::Event(Event::Pong(token)) => {
                let Ok(seq) = token.as_str().parse::<u64>() else {
                    return;
                };
                // Drops pings answered out of order or never (none should be).
                while let Some(&(s, at)) = self.outstanding.front() {
                    if s > seq {
                        break;
                    }
                    self.outstanding.pop_front();
                    if s == seq {
                        let ns = first_byte.saturating_duration_since(at).as_nanos();
                        let ns = u64::try_from(ns).unwrap_or(u64::MAX);
                        self.rtt.record_ns(ns);
                        self.answered += 1;
                        let sent = at.saturating_duration_since(self.from).as_secs_f64();
                        self.samples.push((sent, ns));
                    }
                }
            }
            Incoming::Part {
                name,
                reason: Some("sendq-exceeded"),
            } if name.starts_with(&self.slow_prefix) => {
                let at = first_byte
                    .saturating_duration_since(self.from)
                    .as_secs_f64();
                self.parted.insert(name.to_owned());
                self.first_part.get_or_insert(at);
                self.last_part = Some(at);
            }
            _ => {}
        }
    }
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: CascadeArgs) -> Result<CascadeReport, String> {
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if args.size == 0 || args.size > 4000 {
        return Err("--size must be in 1..=4000".into());
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err(format!("--rate must be 0 or more, not {}", args.rate));
    }
    if !(args.probe_interval_ms.is_finite() && args.probe_interval_ms >= 0.1) {
        return Err("--probe-interval-ms must be at least 0.1".into());
    }
    let duration = runtime::secs("--duration", args.duration)?;
    let final_read = runtime::secs("--final-read", args.final_read)?;
    let settle_max = runtime::secs("--settle-max", args.settle_max)?;
    let stage = Arc::new(Stage::new());
    let counters = &stage.counters;
    let progress = stage.progress(&ctx, format!("cascade n={}", args.clients), "connecting");
    let slow_prefix = format!("c{}-", ctx.tag);
    let slows: Vec<_> = (0..args.clients)
        .map(|i| {
            let (ctx, stage) = (ctx.clone(), stage.clone());
            let (name, rcvbuf) = (format!("{slow_prefix}{i}"), args.slow_rcvbuf.max(1));
            let me = name.clone();
            ctx.ex.clone().spawn(async move {
                let mut conn = stage.open(&ctx, name, None, Some(rcvbuf)).await?;
                // Reads the other registrations' JOINs until the flood
                // starts, then nothing until it is over.
                let _ = stage.await_start(&ctx, &mut conn).await;
                let _ = runtime::until(ctx.deadline, stage.stop.waiter().recv()).await;
                let closed = conn.read_to_close(&stage.counters, final_read).await;
                Some((me, closed, conn.bye.as_deref() == Some("sendq-exceeded")))
            })
        })
        .collect();
    let sender = {
        let (ctx, stage) = (ctx.clone(), stage.clone());
        let (size, rate) = (args.size, args.rate);
        ctx.ex.clone().spawn(async move {
            let (mut conn, (from, end)) = stage
                .open_and_await_start(&ctx, ctx.name("k", 0), None)
                .await?;
            let line = format!("{}\n", "x".repeat(size)).into_bytes();
            let mut flood = Flood::new(line, Some(rate), from, end, |_, _| {});
            let _ = stage.pump_until_stop(&ctx, &mut conn, &mut flood).await;
            Some(flood.sent)
        })
    };
    let probe = {
        let (ctx, stage) = (ctx.clone(), stage.clone());
        let interval = Duration::from_secs_f64(args.probe_interval_ms / 1e3);
        let slow_prefix = slow_prefix.clone();
        ctx.ex.clone().spawn(async move {
            let (mut conn, (from, end)) = stage
                .open_and_await_start(&ctx, ctx.name("r", 0), None)
                .await?;
            let mut p = Prober {
                schedule: Schedule::new(from, interval, end),
                from,
                seq: 0,
                outstanding: VecDeque::new(),
                rtt: Latency::new(),
                answered: 0,
                skipped: 0,
                slow_prefix,
                parted: HashSet::new(),
                first_part: None,
                last_part: None,
                samples: Vec::new(),
            };
            let _ = stage.drive_until_stop(&ctx, &mut conn, &mut p).await;
            Some(p)
        })
    };
    stage.await_ready(args.clients + 2, ctx.deadline).await;
    counters.require_connected(ctx.addr)?;
    progress.set_phase("settling");
    settle(counters, Duration::from_millis(300), settle_max).await;
    progress.set_phase("flooding");
    let (from, end) = stage.begin(&ctx, duration);
    Timer::at(end).await;
    let duration_s = from.elapsed().as_secs_f64();
    // The last pongs are a round trip away.
    progress.set_phase("draining");
    Timer::at(ctx.bound(Instant::now() + Duration::from_millis(500))).await;
    stage.stop.fire();

    let grace = ctx.deadline + Duration::from_secs(1);
    let lines_sent = runtime::until(grace, sender).await.flatten().unwrap_or(0);
    let p = runtime::until(grace, probe).await.flatten();
    let (mut cut, mut cut_with_bye) = (0, 0);
    for t in slows {
        let Some(end) = runtime::until(grace + final_read, t).await else {
            break;
        };
        if let Some((name, closed, bye)) = end {
            // Closed when it read, or the probe saw it leave for this.
            let parted = p.as_ref().is_some_and(|p| p.parted.contains(&name));
            cut += usize::from(closed || parted);
            cut_with_bye += usize::from(bye);
        }
    }
    progress.finish().await;
    let Some(p) = p else {
        return Err("the probe client did not register, so nothing was measured".into());
    };
    let (probe_rtt_cascade, pings_during_cascade) = match p.during_cascade() {
        Some((summary, n)) => (Some(summary), n),
        None => (None, 0),
    };
    Ok(CascadeReport {
        clients: args.clients,
        rate_target: args.rate,
        message_bytes: args.size,
        probe_rtt: p.rtt.summary(),
        probe_rtt_cascade,
        pings_during_cascade,
        pings_sent: p.seq,
        pings_answered: p.answered,
        pings_skipped: p.skipped,
        cut,
        cut_with_bye,
        parts_seen: p.parted.len() as u64,
        first_part_s: p.first_part,
        last_part_s: p.last_part,
        lines_sent,
        duration_s,
        totals: counters.totals(),
    })
}
