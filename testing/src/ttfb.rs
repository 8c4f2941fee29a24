//! `ttfb`: N registered clients each send `/users` at R requests/s; measures
//! the time from sending a request to the first byte of its reply. With
//! `--sweep`, repeats with growing N until a stop criterion trips.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use chatproto::Event;
use serde::Serialize;
use smol::Timer;

use crate::client::{Behavior, Dialect, End, Incoming, Quiet, Schedule};
use crate::report::{latency_cell, ms, percent, Report, Table};
use crate::runtime::{self, settle, Counters, Ctx, Stage, Totals};
use crate::stats::{Batch, SharedLatency, Summary};

/// Requests one client may have unanswered before it skips sends: bounds
/// its memory when a server stops answering.
const MAX_OUTSTANDING: usize = 1024;

#[derive(FromArgs, Debug)]
/// time to first byte of `/users` replies from N clients at R requests/s each
#[argh(subcommand, name = "ttfb")]
pub(crate) struct TtfbArgs {
    /// clients (default 200)
    #[argh(option, short = 'n', default = "200")]
    clients: usize,
    /// requests per second per client (default 0.5)
    #[argh(option, short = 'r', default = "0.5")]
    rate: f64,
    /// seconds of sending per run or sweep step (default 20)
    #[argh(option, short = 'd', default = "20.0")]
    duration: f64,
    /// grow the client count: `start:step:stop`, e.g. 1000:1000:10000
    #[argh(option)]
    sweep: Option<String>,
    /// sweep stop criterion: failed connections, percent (default 1)
    #[argh(option, default = "1.0")]
    max_fail_pct: f64,
    /// sweep stop criterion: unanswered requests, percent (default 0)
    #[argh(option, default = "0.0")]
    max_unanswered_pct: f64,
    /// sweep stop criterion: p50 limit in ms (default 50)
    #[argh(option, default = "50.0")]
    p50_limit_ms: f64,
    /// seconds to wait for late replies after sending stops (default 5)
    #[argh(option, default = "5.0")]
    drain: f64,
    /// at most this many seconds waiting for the server to go quiet after
    /// registrations, before measuring (default 30)
    #[argh(option, default = "30.0")]
    settle_max: f64,
    /// seconds between sweep steps, for the server to drop the last step's
    /// clients (default 2)
    #[argh(option, default = "2.0")]
    step_pause: f64,
}

/// One run of N clients.
#[derive(Debug, Serialize)]
pub(crate) struct TtfbRun {
    clients: usize,
    /// What the clients spoke (`--dialect`).
    dialect: &'static str,
    rate_per_client: f64,
    requests_sent: u64,
    responses: u64,
    unanswered: u64,
    error_replies: u64,
    skipped_sends: u64,
    ttfb: Summary,
    connect_s: f64,
    settle_s: f64,
    duration_s: f64,
    #[serde(flatten)]
    totals: Totals,
}

impl TtfbRun {
    fn failed_pct(&self) -> f64 {
        percent(self.totals.connections_failed, self.clients as u64)
    }

    fn unanswered_pct(&self) -> f64 {
        percent(self.unanswered, self.requests_sent)
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct SweepStep {
    #[serde(flatten)]
    run: TtfbRun,
    passed: bool,
    verdict: String,
}

/// `ttfb`'s report: one run, or every sweep step.
#[derive(Debug, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub(crate) enum TtfbReport {
    // Boxed: a run is far larger than the sweep's vector.
    Single(Box<TtfbRun>),
    Sweep {
        steps: Vec<SweepStep>,
        /// The largest client count that passed every criterion.
        peak_stable_clients: Option<usize>,
        /// Why the sweep ended without a report for its last step.
        stopped_because: Option<String>,
        criteria: String,
    },
}

impl Report for TtfbReport {
    fn table(&self) -> Table {
        match self {
            Self::Single(r) => run_table(r),
            Self::Sweep {
                steps,
                peak_stable_clients,
                stopped_because,
                criteria,
            } => {
                let rows = steps
                    .iter()
                    .map(|s| {
                        let r = &s.run;
                        vec![
                            r.clients.to_string(),
                            r.totals.connections_ok.to_string(),
                            r.totals.connections_failed.to_string(),
                            r.requests_sent.to_string(),
                            r.responses.to_string(),
                            ms(r.ttfb.p50_ms),
                            ms(r.ttfb.p99_ms),
                            ms(r.ttfb.max_ms),
                            format!("{:.1}", r.connect_s),
                            s.verdict.clone(),
                        ]
                    })
                    .collect();
                let table = Table::new("ttfb sweep")
                    .row("criteria", criteria)
                    .row(
                        "peak stable clients",
                        peak_stable_clients.map_or("none".to_owned(), |n| n.to_string()),
                    )
                    .grid(
                        &[
                            "clients",
                            "ok",
                            "failed",
                            "sent",
                            "answered",
                            "p50 ms",
                            "p99 ms",
                            "max ms",
                            "connect s",
                            "verdict",
                        ],
                        rows,
                    );
                match stopped_because {
                    Some(why) => table.note(format!("stopped: {why}")),
                    None => table,
                }
            }
        }
    }
}

fn run_table(r: &TtfbRun) -> Table {
    let t = &r.totals;
    let dialect = match r.dialect {
        "native" => "",
        "mix" => " (half of them IRC)",
        _ => " (IRC)",
    };
    let table = Table::new(format!(
        "ttfb: {} clients{dialect}, {} req/s each",
        r.clients, r.rate_per_client
    ))
    .row(
        "connections",
        format!("{} ok, {} failed", t.connections_ok, t.connections_failed),
    )
    .row(
        "requests",
        format!(
            "{} sent, {} answered, {} unanswered, {} error replies, {} skipped",
            r.requests_sent, r.responses, r.unanswered, r.error_replies, r.skipped_sends
        ),
    )
    .row("ttfb p50/p90/p95/p99/max", latency_cell(&r.ttfb))
    .row(
        "bytes",
        format!("{} sent, {} received", t.bytes_sent, t.bytes_received),
    )
    .row(
        "duration",
        format!(
            "{:.1} s measuring (connect {:.1} s, settle {:.1} s)",
            r.duration_s, r.connect_s, r.settle_s
        ),
    )
    .row("closed by server", t.closed_early)
    .row("malformed lines", t.malformed_lines);
    t.add_notes(table)
}

/// Sends `/users` on a fixed schedule and times each reply's first byte.
/// Also `slowreader`'s probe.
pub(crate) struct Requester {
    schedule: Schedule,
    outstanding: VecDeque<Instant>,
    pub(crate) sent: u64,
    pub(crate) answered: u64,
    pub(crate) errors: u64,
    pub(crate) skipped: u64,
    batch: Batch,
    answered_flushed: u64,
    hist: Arc<SharedLatency>,
    counters: Arc<Counters>,
    dialect: Dialect,
}

impl Requester {
    pub(crate) fn new(
        first: Instant,
        interval: Duration,
        end: Instant,
        hist: Arc<SharedLatency>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            schedule: Schedule::new(first, interval, end),
            outstanding: VecDeque::new(),
            sent: 0,
            answered: 0,
            errors: 0,
            skipped: 0,
            batch: Batch::default(),
            answered_flushed: 0,
            hist,
            counters,
            dialect: Dialect::Native,
        }
    }

    /// The same requester speaking `dialect` (`NAMES &global` over IRC).
    pub(crate) fn speaking(self, dialect: Dialect) -> Self {
        Self { dialect, ..self }
    }

    pub(crate) fn unanswered(&self) -> u64 {
        self.outstanding.len() as u64
    }
}

impl Behavior for Requester {
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
            self.dialect.users(out);
            self.outstanding.push_back(now);
            self.sent += 1;
            Counters::add(&self.counters.sent, 1);
        }
        self.skipped += missed;
    }

    fn line(&mut self, line: Incoming<'_>, first_byte: Instant, _: &mut Vec<u8>) {
        match line {
            Incoming::Users => {
                if let Some(sent) = self.outstanding.pop_front() {
                    self.batch.push(first_byte.saturating_duration_since(sent));
                    self.answered += 1;
                }
            }
            Incoming::Event(Event::Err { .. }) if self.outstanding.pop_front().is_some() => {
                self.errors += 1;
                self.answered += 1;
            }
            _ => {}
        }
    }

    fn read_done(&mut self) {
        self.hist.flush(&mut self.batch);
        Counters::add(
            &self.counters.received,
            self.answered - self.answered_flushed,
        );
        self.answered_flushed = self.answered;
    }
}

/// What one client task hands back.
#[derive(Default)]
struct Outcome {
    sent: u64,
    answered: u64,
    errors: u64,
    skipped: u64,
    unanswered: u64,
}

struct Run {
    clients: usize,
    interval: Duration,
    duration: Duration,
    stage: Stage,
    hist: Arc<SharedLatency>,
}

async fn client(ctx: Arc<Ctx>, run: Arc<Run>, i: usize) -> Outcome {
    let dialect = ctx.dialect.for_client(i);
    let opened = run
        .stage
        .open_as(&ctx, dialect, ctx.name("t", i), None, None)
        .await;
    let Some(mut conn) = opened else {
        return Outcome::default();
    };
    let Some(start_at) = conn.await_start(&run.stage, &mut Quiet, ctx.deadline).await else {
        return Outcome::default();
    };
    let counters = &run.stage.counters;
    // Spread the clients' sends evenly over one interval.
    let offset = run.interval.mul_f64(i as f64 / run.clients as f64);
    let mut req = Requester::new(
        start_at + offset,
        run.interval,
        start_at + run.duration,
        run.hist.clone(),
        counters.clone(),
    )
    .speaking(conn.dialect());
    let end = run.stage.drive_until_stop(&ctx, &mut conn, &mut req).await;
    if !matches!(end, End::Signalled) {
        Counters::add(&counters.closed_early, 1);
        if let Some(bye) = &conn.bye {
            counters.error(format!("closed by server: BYE {bye}"));
        }
    }
    Outcome {
        sent: req.sent,
        answered: req.answered,
        errors: req.errors,
        skipped: req.skipped,
        unanswered: req.unanswered(),
    }
}

struct StepPlan {
    rate: f64,
    duration: Duration,
    drain: Duration,
    settle_max: Duration,
}

/// One run of `clients`; an error if none of them connected.
async fn run_once(ctx: &Arc<Ctx>, plan: &StepPlan, clients: usize) -> Result<TtfbRun, String> {
    let stage = Stage::new();
    let counters = stage.counters.clone();
    let run = Arc::new(Run {
        clients,
        interval: Duration::from_secs_f64(1.0 / plan.rate),
        duration: plan.duration,
        stage,
        hist: Arc::new(SharedLatency::new()),
    });
    let progress = run
        .stage
        .progress(ctx, format!("ttfb n={clients}"), "connecting");
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| ctx.ex.spawn(client(ctx.clone(), run.clone(), i)))
        .collect();
    run.stage.await_ready(clients, ctx.deadline).await;
    counters.require_connected(ctx.addr)?;
    let connect_s = t0.elapsed().as_secs_f64();
    progress.set_phase("settling");
    let settle_s = settle(&counters, Duration::from_millis(300), plan.settle_max)
        .await
        .as_secs_f64();
    progress.set_phase("measuring");
    let (start, end) = run.stage.begin(ctx, plan.duration);
    Timer::at(end).await;
    progress.set_phase("draining");
    // Clients refuse to send past the end, but one on another thread may be
    // finishing its last send right now.
    Timer::after(Duration::from_millis(50)).await;
    let drain_end = ctx.bound(Instant::now() + plan.drain);
    while Instant::now() < drain_end
        && Counters::get(&counters.received) < Counters::get(&counters.sent)
    {
        Timer::after(Duration::from_millis(20)).await;
    }
    let duration_s = start.elapsed().as_secs_f64();
    run.stage.stop.fire();
    let mut total = Outcome::default();
    for t in tasks {
        // Every client stops on the signal or the deadline; past the deadline
        // the rest are dropped with the executor.
        let Some(o) = runtime::until(ctx.deadline + Duration::from_secs(1), t).await else {
            break;
        };
        total.sent += o.sent;
        total.answered += o.answered;
        total.errors += o.errors;
        total.skipped += o.skipped;
        total.unanswered += o.unanswered;
    }
    progress.finish().await;
    Ok(TtfbRun {
        clients,
        dialect: ctx.dialect.name(),
        rate_per_client: plan.rate,
        requests_sent: total.sent,
        responses: total.answered - total.errors,
        unanswered: total.unanswered,
        error_replies: total.errors,
        skipped_sends: total.skipped,
        ttfb: run.hist.snapshot().summary(),
        connect_s,
        settle_s,
        duration_s,
        totals: counters.totals(),
    })
}

/// Parses `start:step:stop` into the client counts to try.
pub(crate) fn parse_sweep(s: &str) -> Result<Vec<usize>, String> {
    let bad = || {
        format!("--sweep wants start:step:stop with start, step >= 1 and stop >= start, not {s:?}")
    };
    let parts: Vec<usize> = s
        .split(':')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [start, step, stop] = parts[..] else {
        return Err(bad());
    };
    if start == 0 || step == 0 || stop < start {
        return Err(bad());
    }
    Ok((start..=stop).step_by(step).collect())
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: TtfbArgs) -> Result<TtfbReport, String> {
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 10_000.0) {
        return Err(format!("--rate must be in (0, 10000], not {}", args.rate));
    }
    let plan = StepPlan {
        rate: args.rate,
        duration: runtime::secs("--duration", args.duration)?,
        drain: runtime::secs("--drain", args.drain)?,
        settle_max: runtime::secs("--settle-max", args.settle_max)?,
    };
    let Some(sweep) = &args.sweep else {
        if args.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        return Ok(TtfbReport::Single(Box::new(
            run_once(&ctx, &plan, args.clients).await?,
        )));
    };
    let counts = parse_sweep(sweep)?;
    let pause = runtime::secs("--step-pause", args.step_pause)?;
    let mut steps = Vec::new();
    let mut peak = None;
    let mut stopped_because = None;
    for (k, &n) in counts.iter().enumerate() {
        if Instant::now() >= ctx.deadline {
            break;
        }
        if k > 0 {
            Timer::after(pause).await;
        }
        let run = match run_once(&ctx, &plan, n).await {
            Ok(run) => run,
            // Nothing measured at all: a failed run, not a sweep result.
            Err(e) if k == 0 => return Err(e),
            Err(e) => {
                stopped_because = Some(format!("{n} clients: {e}"));
                break;
            }
        };
        let mut why = Vec::new();
        if run.failed_pct() > args.max_fail_pct {
            why.push(format!("{:.1}% failed", run.failed_pct()));
        }
        if run.unanswered_pct() > args.max_unanswered_pct || run.requests_sent == 0 {
            why.push(format!("{:.2}% unanswered", run.unanswered_pct()));
        }
        if run.ttfb.p50_ms > args.p50_limit_ms {
            why.push(format!("p50 {} ms", ms(run.ttfb.p50_ms)));
        }
        let passed = why.is_empty();
        if passed {
            peak = Some(n);
        }
        steps.push(SweepStep {
            run,
            passed,
            verdict: if passed { "ok".into() } else { why.join(", ") },
        });
        if !passed {
            break;
        }
    }
    Ok(TtfbReport::Sweep {
        steps,
        peak_stable_clients: peak,
        stopped_because,
        criteria: format!(
            "failed <= {}%, unanswered <= {}%, p50 <= {} ms",
            args.max_fail_pct, args.max_unanswered_pct, args.p50_limit_ms
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_specs() {
        assert_eq!(parse_sweep("1000:1000:3000"), Ok(vec![1000, 2000, 3000]));
        assert_eq!(parse_sweep("5:10:20"), Ok(vec![5, 15]));
        assert_eq!(parse_sweep("7:1:7"), Ok(vec![7]));
        for bad in ["", "1:2", "0:1:5", "5:0:9", "9:1:5", "a:b:c", "1:2:3:4"] {
            assert!(parse_sweep(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requester_matches_replies_in_order_and_skips_when_behind() {
        let hist = Arc::new(SharedLatency::new());
        let counters = Arc::new(Counters::default());
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Requester::new(t0, ms(100), t0 + ms(1000), hist.clone(), counters.clone());
        let mut out = Vec::new();
        assert_eq!(r.next_send(), Some(t0));
        r.send(t0, &mut out);
        r.send(t0 + ms(100), &mut out);
        assert_eq!(out, b"/users\n/users\n");
        r.line(Incoming::Users, t0 + ms(5), &mut out);
        r.line(
            Incoming::Event(Event::Err {
                code: chatproto::ErrorCode::RateLimited,
                text: chatproto::Text::lossy("slow down"),
            }),
            t0 + ms(106),
            &mut out,
        );
        r.line(Incoming::Users, t0 + ms(200), &mut out); // nothing outstanding: ignored
        r.read_done();
        assert_eq!((r.sent, r.answered, r.errors, r.unanswered()), (2, 2, 1, 0));
        let s = hist.snapshot().summary();
        assert_eq!(s.count, 1);
        assert!((s.max_ms - 5.0).abs() < 0.01, "{s:?}");
        // Woken 550 ms late: the missed slots are skipped, not sent in a burst.
        r.send(t0 + ms(750), &mut out);
        assert_eq!(r.sent, 3);
        assert!(r.skipped >= 4, "{}", r.skipped);
        assert!(r.next_send().unwrap() > t0 + ms(750));
        assert_eq!(Counters::get(&counters.sent), 3);
        // Woken after the end: sends nothing, and is done.
        r.send(t0 + ms(1001), &mut out);
        assert_eq!((r.sent, r.next_send()), (3, None));
    }
}
