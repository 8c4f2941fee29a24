//! `fill`: puts many messages into a server's store quickly: C clients, each
//! alone in its own group (nothing fans out), say lines as fast as the
//! server's pacing lets them until a total is said or the time is up; each
//! then sends `/ping` and counts its lines as taken when the `PONG` comes
//! (the server handles a client's lines in order). Reports messages/s.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use chatproto::{Event, GroupName};
use futures_lite::future;
use serde::Serialize;

use crate::client::{Behavior, End, Incoming};
use crate::report::{Report, Table};
use crate::runtime::{self, Counters, Ctx, Signal, Stage, Totals};

#[derive(FromArgs, Debug)]
/// C clients, each in its own group, say lines as fast as the server's
/// pacing allows until --total are taken: messages per second
#[argh(subcommand, name = "fill")]
pub(crate) struct FillArgs {
    /// messages to say in all (default 1000000)
    #[argh(option, default = "1_000_000")]
    total: u64,
    /// clients, each in a group of its own (default 1000); beyond chatd's
    /// --max-per-ip (64) only from loopback, which it exempts
    #[argh(option, short = 'c', default = "1000")]
    clients: usize,
    /// lines per second per client once its burst is out (default 15: a
    /// line of --size 64 costs chatd about 1.3 of its 20 tokens/s)
    #[argh(option, default = "15.0")]
    rate: f64,
    /// lines each client sends at once first (default 40, under chatd's
    /// --flood-burst 50)
    #[argh(option, default = "40")]
    burst: u64,
    /// as fast as the server reads, ignoring --rate (for a chatd run with
    /// --flood-rate 0; against its default pacing this just waits on it)
    #[argh(switch)]
    unpaced: bool,
    /// bytes of text per message (default 64)
    #[argh(option, default = "64")]
    size: usize,
    /// at most this many seconds of sending (default 300); the lines taken
    /// by then are counted
    #[argh(option, short = 'd', default = "300.0")]
    duration: f64,
    /// seconds to wait for each client's `PONG` after its last line
    /// (default 30)
    #[argh(option, default = "30.0")]
    confirm_wait: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct FillReport {
    clients: usize,
    total_asked: u64,
    sent: u64,
    /// Lines the server had taken when each client's `PONG` came.
    taken: u64,
    /// Clients whose `PONG` never came (their lines are not counted).
    unconfirmed_clients: u64,
    /// From the first line to the last `PONG`.
    duration_s: f64,
    messages_per_s: f64,
    size: usize,
    unpaced: bool,
    #[serde(flatten)]
    totals: Totals,
}

impl Report for FillReport {
    fn table(&self) -> Table {
        let t = &self.totals;
        let table = Table::new(format!(
            "fill: {} messages of {} bytes from {} clients, each in its own group{}",
            self.total_asked,
            self.size,
            self.clients,
            if self.unpaced { ", unpaced" } else { "" }
        ))
        .row(
            "connections",
            format!("{} ok, {} failed", t.connections_ok, t.connections_failed),
        )
        .row(
            "taken",
            format!(
                "{} of {} sent, in {:.2} s: {:.0} messages/s",
                self.taken, self.sent, self.duration_s, self.messages_per_s
            ),
        )
        .row("clients without PONG", self.unconfirmed_clients)
        .row("closed by server", t.closed_early);
        t.add_notes(table)
    }
}

/// Says `quota` lines (the first `burst` at once, then `rate` a second, or
/// as fast as the server reads), stops at `end`, then `/ping`s and notes
/// when the `PONG` comes.
struct Sayer {
    line: Vec<u8>,
    quota: u64,
    burst: u64,
    rate: Option<f64>,
    start: Instant,
    end: Instant,
    sent: u64,
    pinged: bool,
    /// `(lines taken, when)` once the `PONG` came.
    taken: Option<(u64, Instant)>,
    done: Signal,
    /// The run's counters, for the progress line.
    counters: Option<Arc<Counters>>,
}

impl Sayer {
    fn due(&self) -> Instant {
        match self.rate {
            None => self.start,
            Some(r) => {
                let paced = self.sent.saturating_sub(self.burst) as f64 / r;
                self.start + Duration::from_secs_f64(paced)
            }
        }
    }
}

impl Behavior for Sayer {
    fn next_send(&self) -> Option<Instant> {
        if self.pinged {
            return None;
        }
        // Done or out of time: the ping is due now.
        if self.sent >= self.quota || Instant::now() >= self.end {
            return Some(self.start);
        }
        Some(self.due().min(self.end))
    }

    fn send(&mut self, now: Instant, out: &mut Vec<u8>) {
        if self.pinged {
            return;
        }
        // A batch at most: pump asks again while little is queued.
        let mut n = 0;
        while self.sent < self.quota && now < self.end && self.due() <= now && n < 256 {
            out.extend_from_slice(&self.line);
            self.sent += 1;
            n += 1;
        }
        if let Some(c) = &self.counters {
            Counters::add(&c.sent, n);
        }
        if self.sent >= self.quota || now >= self.end {
            out.extend_from_slice(b"/ping filled\n");
            self.pinged = true;
        }
    }

    fn line(&mut self, line: Incoming<'_>, first_byte: Instant, _: &mut Vec<u8>) {
        if let Incoming::Event(Event::Pong(t)) = line {
            if t.as_str() == "filled" && self.pinged && self.taken.is_none() {
                self.taken = Some((self.sent, first_byte));
                self.done.fire();
            }
        }
    }
}

/// The line client `i` says: its text padded to `size` bytes.
fn fill_line(i: usize, size: usize) -> Vec<u8> {
    let mut text = format!("fill {i} ");
    let pad = size.saturating_sub(text.len()).max(1);
    text.extend(std::iter::repeat_n('x', pad));
    text.push('\n');
    text.into_bytes()
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: FillArgs) -> Result<FillReport, String> {
    if args.clients == 0 || args.total == 0 {
        return Err("--clients and --total must be at least 1".into());
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err("--rate must be above 0".into());
    }
    if !(1..=4000).contains(&args.size) {
        return Err("--size must be 1 to 4000 bytes".into());
    }
    let duration = runtime::secs("--duration", args.duration)?;
    let confirm_wait = runtime::secs("--confirm-wait", args.confirm_wait)?;
    let stage = Arc::new(Stage::new());
    let counters = &stage.counters;
    let progress = stage.progress(&ctx, format!("fill c={}", args.clients), "connecting");
    let (share, extra) = (
        args.total / args.clients as u64,
        args.total % args.clients as u64,
    );
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            let (ctx, stage) = (ctx.clone(), stage.clone());
            let quota = share + u64::from((i as u64) < extra);
            let rate = (!args.unpaced).then_some(args.rate);
            let (burst, size) = (args.burst, args.size);
            ctx.ex.clone().spawn(async move {
                let group = GroupName::try_from(format!("f{}-{i}", ctx.tag).as_str()).ok()?;
                let mut conn = stage
                    .open(&ctx, ctx.name("f", i), Some(&group), None)
                    .await?;
                let (from, end) = stage.await_start(&ctx, &mut conn).await?;
                let mut b = Sayer {
                    line: fill_line(i, size),
                    quota,
                    burst,
                    rate,
                    start: from,
                    end,
                    sent: 0,
                    pinged: false,
                    taken: None,
                    done: Signal::new(),
                    counters: Some(stage.counters.clone()),
                };
                let (mine, all) = (b.done.waiter(), stage.stop.waiter());
                let signal = pin!(future::or(mine.recv(), all.recv()));
                let until = ctx.bound(end + confirm_wait);
                let ended = conn.pump(&stage.counters, &mut b, signal, until).await;
                if let Some((n, _)) = b.taken {
                    Counters::add(&stage.counters.received, n);
                }
                if !matches!(ended, End::Signalled | End::Deadline) {
                    conn.ended_early(&stage.counters, &ended, "a client");
                }
                Some((b.sent, b.taken))
            })
        })
        .collect();
    stage.await_ready(args.clients, ctx.deadline).await;
    counters.require_connected(ctx.addr)?;
    progress.set_phase("filling");
    let (from, _) = stage.begin(&ctx, duration);
    let grace = ctx.bound(from + duration + confirm_wait) + Duration::from_secs(1);
    let (mut sent, mut taken, mut unconfirmed, mut last) = (0, 0, 0, from);
    for t in clients {
        match runtime::until(grace, t).await {
            Some(Some((s, Some((n, at))))) => {
                sent += s;
                taken += n;
                last = last.max(at);
            }
            Some(Some((s, None))) => {
                sent += s;
                unconfirmed += 1;
            }
            Some(None) => {}
            None => unconfirmed += 1,
        }
    }
    stage.stop.fire();
    progress.finish().await;
    let duration_s = last.saturating_duration_since(from).as_secs_f64();
    Ok(FillReport {
        clients: args.clients,
        total_asked: args.total,
        sent,
        taken,
        unconfirmed_clients: unconfirmed,
        duration_s,
        messages_per_s: taken as f64 / duration_s.max(1e-9),
        size: args.size,
        unpaced: args.unpaced,
        totals: counters.totals(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_asked_size() {
        assert_eq!(fill_line(3, 64).len(), 65);
        assert!(fill_line(3, 64).starts_with(b"fill 3 x"));
        // Shorter than its prefix: the prefix and one byte.
        assert_eq!(fill_line(12345, 2), b"fill 12345 x\n");
    }

    #[test]
    fn the_burst_goes_at_once_then_the_rate_and_a_ping_ends_it() {
        let t0 = Instant::now();
        let mut s = Sayer {
            line: b"x\n".to_vec(),
            quota: 12,
            burst: 10,
            rate: Some(10.0),
            start: t0,
            end: t0 + Duration::from_secs(60),
            sent: 0,
            pinged: false,
            taken: None,
            done: Signal::new(),
            counters: None,
        };
        let mut out = Vec::new();
        s.send(t0, &mut out);
        assert_eq!(s.sent, 11, "the burst and the one due at once");
        assert!(!s.pinged);
        assert_eq!(s.next_send(), Some(t0 + Duration::from_millis(100)));
        s.send(t0 + Duration::from_millis(100), &mut out);
        assert_eq!(s.sent, 12);
        assert!(s.pinged);
        assert!(out.ends_with(b"x\n/ping filled\n"));
        assert_eq!(s.next_send(), None);
    }
}
