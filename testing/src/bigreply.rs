//! `bigreply`: with U users registered, one client asks for `/users` as fast
//! as the server lets it; reports how many bytes per second it pulled.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use serde::Serialize;

use crate::client::{Behavior, End, Incoming, Quiet};
use crate::report::{Report, Table};
use crate::runtime::{self, settle, Counters, Ctx, Stage, Totals};

#[derive(FromArgs, Debug)]
/// one client sends `/users` as fast as the server lets it while U users are
/// registered: bytes per second pulled
#[argh(subcommand, name = "bigreply")]
pub(crate) struct BigReplyArgs {
    /// registered users, the requester included (default 3000)
    #[argh(option, short = 'u', default = "3000")]
    users: usize,
    /// requests in flight at once: the next goes out when a reply came
    /// (default 8)
    #[argh(option, default = "8")]
    window: usize,
    /// seconds of requesting (default 20)
    #[argh(option, short = 'd', default = "20.0")]
    duration: f64,
    /// at most this many seconds waiting for the server to go quiet after
    /// registrations (default 30)
    #[argh(option, default = "30.0")]
    settle_max: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct BigReplyReport {
    users: usize,
    window: usize,
    requests_sent: u64,
    replies: u64,
    reply_bytes: u64,
    bytes_per_s: f64,
    replies_per_s: f64,
    duration_s: f64,
    #[serde(flatten)]
    totals: Totals,
}

impl Report for BigReplyReport {
    fn table(&self) -> Table {
        let t = &self.totals;
        let table = Table::new(format!(
            "bigreply: /users as fast as allowed, {} users",
            self.users
        ))
        .row(
            "connections",
            format!("{} ok, {} failed", t.connections_ok, t.connections_failed),
        )
        .row(
            "replies",
            format!(
                "{} ({:.1}/s) to {} requests, {} in flight at once",
                self.replies, self.replies_per_s, self.requests_sent, self.window
            ),
        )
        .row(
            "pulled",
            format!(
                "{} bytes, {:.0} B/s over {:.1} s",
                self.reply_bytes, self.bytes_per_s, self.duration_s
            ),
        )
        .row("closed by server", t.closed_early);
        t.add_notes(table)
    }
}

/// Keeps `window` `/users` requests in flight until `end`: as fast as the
/// server answers, without piling up requests it has not read (a server that
/// reads them all at once would queue every reply, and cut the reader).
struct Puller {
    from: Instant,
    window: usize,
    end: Instant,
    outstanding: usize,
    sent: u64,
    replies: u64,
}

impl Behavior for Puller {
    fn next_send(&self) -> Option<Instant> {
        // Due since the start whenever there is room: a time that is always
        // in the past.
        (self.outstanding < self.window && Instant::now() < self.end).then_some(self.from)
    }

    fn send(&mut self, now: Instant, out: &mut Vec<u8>) {
        while self.outstanding < self.window && now < self.end {
            out.extend_from_slice(b"/users\n");
            self.outstanding += 1;
            self.sent += 1;
        }
    }

    fn line(&mut self, line: Incoming<'_>, first_byte: Instant, _: &mut Vec<u8>) {
        // Replies arriving after the end are not counted.
        if matches!(line, Incoming::Users) && self.outstanding > 0 {
            self.outstanding -= 1;
            if first_byte < self.end {
                self.replies += 1;
            }
        }
    }
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: BigReplyArgs) -> Result<BigReplyReport, String> {
    if args.users == 0 {
        return Err("--users must be at least 1".into());
    }
    let duration = runtime::secs("--duration", args.duration)?;
    let settle_max = runtime::secs("--settle-max", args.settle_max)?;
    let stage = Arc::new(Stage::new());
    let counters = &stage.counters;
    let progress = stage.progress(&ctx, format!("bigreply u={}", args.users), "connecting");
    let idle: Vec<_> = (1..args.users)
        .map(|i| {
            let (ctx, stage) = (ctx.clone(), stage.clone());
            ctx.ex.clone().spawn(async move {
                let Some(mut conn) = stage.open(&ctx, ctx.name("u", i), None, None).await else {
                    return;
                };
                let _ = stage.drive_until_stop(&ctx, &mut conn, &mut Quiet).await;
            })
        })
        .collect();
    // The requester's bytes are the result: its own counters.
    let mine = Arc::new(Counters::default());
    let requester = {
        let window_size = args.window.max(1);
        let (ctx, stage, mine) = (ctx.clone(), stage.clone(), mine.clone());
        ctx.ex.clone().spawn(async move {
            let (mut conn, (from, end)) = stage
                .open_and_await_start(&ctx, ctx.name("u", 0), None)
                .await?;
            let mut flood = Puller {
                from,
                window: window_size,
                end,
                outstanding: 0,
                sent: 0,
                replies: 0,
            };
            // Stops reading at the end: what comes later is not measured.
            let waiter = stage.stop.waiter();
            let ended = conn.pump(&mine, &mut flood, pin!(waiter.recv()), end).await;
            if !matches!(ended, End::Deadline | End::Signalled) {
                conn.ended_early(&stage.counters, &ended, "the requester");
            }
            Some((flood.sent, flood.replies))
        })
    };
    stage.await_ready(args.users, ctx.deadline).await;
    counters.require_connected(ctx.addr)?;
    progress.set_phase("settling");
    settle(counters, Duration::from_millis(300), settle_max).await;
    progress.set_phase("requesting");
    let (from, _) = stage.begin(&ctx, duration);
    let grace = ctx.deadline + Duration::from_secs(1);
    let got = runtime::until(grace, requester).await.flatten();
    let duration_s = from.elapsed().as_secs_f64();
    stage.stop.fire();
    for t in idle {
        if runtime::until(grace, t).await.is_none() {
            break;
        }
    }
    progress.finish().await;
    let Some((queued, replies)) = got else {
        return Err("the requesting client did not register, so nothing was measured".into());
    };
    let reply_bytes = Counters::get(&mine.bytes_in);
    let mut totals = counters.totals();
    totals.bytes_received += reply_bytes;
    totals.bytes_sent += Counters::get(&mine.bytes_out);
    Ok(BigReplyReport {
        users: args.users,
        window: args.window.max(1),
        requests_sent: queued,
        replies,
        reply_bytes,
        bytes_per_s: reply_bytes as f64 / duration_s.max(1e-9),
        replies_per_s: replies as f64 / duration_s.max(1e-9),
        duration_s,
        totals,
    })
}
