//! `fanout`: N clients in one scope, S of them sending at a total of M
//! messages/s. Each message carries its sender, sequence number and send time,
//! so every receiver measures end-to-end latency and counts lost and
//! duplicated deliveries. `slowreader` reuses this with extra clients that
//! never read and a `/users` probe.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argh::FromArgs;
use chatproto::{Event, GroupName};
use serde::Serialize;
use smol::Timer;

use crate::client::{irc_text_budget, Behavior, Dialect, DialectMode, End, Incoming, Quiet};
use crate::report::{latency_cell, Report, Table};
use crate::runtime::{self, settle, Counters, Ctx, Stage, Totals};
use crate::stats::{Batch, SharedLatency, Summary};
use crate::ttfb::Requester;

#[derive(FromArgs, Debug)]
/// broadcast latency, throughput, loss and duplication in one scope
#[argh(subcommand, name = "fanout")]
pub(crate) struct FanoutArgs {
    /// clients in the scope, senders included (default 100)
    #[argh(option, short = 'n', default = "100")]
    clients: usize,
    /// how many of the clients send (default 10)
    #[argh(option, short = 's', default = "10")]
    senders: usize,
    /// messages per second, all senders together (default 100)
    #[argh(option, short = 'm', default = "100.0")]
    rate: f64,
    /// seconds of sending (default 20)
    #[argh(option, short = 'd', default = "20.0")]
    duration: f64,
    /// bytes of message text, at least what the stamp needs (default 64)
    #[argh(option, default = "64")]
    size: usize,
    /// join this group instead of using the global scope (chatd only)
    #[argh(option)]
    group: Option<String>,
    /// seconds to wait for deliveries still in flight when sending stops (default 5)
    #[argh(option, default = "5.0")]
    drain: f64,
    /// at most this many seconds waiting for the server to go quiet after
    /// registrations (default 30)
    #[argh(option, default = "30.0")]
    settle_max: f64,
}

/// The common shape of `fanout` and `slowreader` runs.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) clients: usize,
    pub(crate) senders: usize,
    pub(crate) rate: f64,
    pub(crate) duration: Duration,
    pub(crate) size: usize,
    pub(crate) group: Option<GroupName>,
    pub(crate) drain: Duration,
    pub(crate) settle_max: Duration,
    /// Extra clients that never read (slowreader).
    pub(crate) slow: usize,
    pub(crate) slow_rcvbuf: usize,
    /// How long the slow clients read at the end, looking for `BYE`.
    pub(crate) slow_final_read: Duration,
    /// `/users` per second from an extra probe client (slowreader).
    pub(crate) probe_rate: Option<f64>,
}

impl Plan {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.clients < 2 {
            return Err("--clients must be at least 2 (a sender and a receiver)".into());
        }
        if self.senders == 0 || self.senders > self.clients {
            return Err(format!("--senders must be in 1..={}", self.clients));
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1e6) {
            return Err(format!("--rate must be in (0, 1000000], not {}", self.rate));
        }
        if self.size > 4000 {
            return Err(
                "--size must be at most 4000 bytes (the protocol's line limit is 4096)".into(),
            );
        }
        if let Some(r) = self.probe_rate {
            if !(r.is_finite() && r > 0.0 && r <= 1000.0) {
                return Err(format!("--probe-rate must be in (0, 1000], not {r}"));
            }
        }
        Ok(())
    }
}

pub(crate) fn plan_from(args: &FanoutArgs) -> Result<Plan, String> {
    Ok(Plan {
        clients: args.clients,
        senders: args.senders,
        rate: args.rate,
        duration: runtime::secs("--duration", args.duration)?,
        size: args.size,
        group: parse_group(args.group.as_deref())?,
        drain: runtime::secs("--drain", args.drain)?,
        settle_max: runtime::secs("--settle-max", args.settle_max)?,
        slow: 0,
        slow_rcvbuf: 0,
        slow_final_read: Duration::ZERO,
        probe_rate: None,
    })
}

/// Refuses a message size that an IRC client would not get in one line (chatd
/// splits longer text, and the pieces would not parse as stamps): the text is
/// `--size` bytes, or the stamp if that is longer, and the longest name is
/// client `clients - 1`'s.
fn check_irc_size(plan: &Plan, ctx: &Ctx) -> Result<(), String> {
    if ctx.dialect == DialectMode::Native {
        return Ok(());
    }
    let nick = ctx.name("f", plan.clients.saturating_sub(1));
    let channel = Dialect::irc_channel(plan.group.as_ref());
    let budget = irc_text_budget(&nick, &channel);
    // "<sender> <seq> <stamp-ns>": at most 20 digits for each u64.
    let stamp = plan.senders.to_string().len() + 1 + 20 + 1 + 20;
    let text = plan.size.max(stamp);
    if text > budget {
        return Err(format!(
            "--size {}: an IRC line (512 bytes) holds at most {budget} bytes of text from {nick} to {channel} (a stamp needs up to {stamp})",
            plan.size
        ));
    }
    Ok(())
}

pub(crate) fn parse_group(g: Option<&str>) -> Result<Option<GroupName>, String> {
    g.map(|g| GroupName::try_from(g).map_err(|e| format!("--group {g:?}: {e}")))
        .transpose()
}

/// What the never-reading clients and the probe saw (slowreader only).
#[derive(Debug, Serialize)]
pub(crate) struct SlowOutcome {
    pub(crate) slow_clients: usize,
    /// Slow clients that found `BYE sendq-exceeded` when they finally read.
    pub(crate) cut_with_bye: usize,
    /// Slow clients the server had closed (with or without `BYE`).
    pub(crate) closed: usize,
    /// Slow clients closed without a `BYE` reaching them, whose `PART * <name>
    /// sendq-exceeded` the readers saw: a server can only write the `BYE`
    /// behind data the client never read, so if it gives up on flushing
    /// (chatd shuts the socket after a grace period) the `BYE` is lost.
    pub(crate) cut_seen_in_part: usize,
    /// Other `BYE` reasons the slow clients found.
    pub(crate) other_bye: Vec<String>,
    /// `PART * <slow> sendq-exceeded` as seen by a reading client: who, and
    /// seconds after sending started.
    pub(crate) parts_seen: Vec<(String, f64)>,
    pub(crate) probe_sent: u64,
    pub(crate) probe_answered: u64,
    pub(crate) probe_unanswered: u64,
    pub(crate) probe_ttfb: Summary,
}

#[derive(Debug, Serialize)]
pub(crate) struct FanoutReport {
    pub(crate) clients: usize,
    /// What the clients spoke (`--dialect`).
    pub(crate) dialect: &'static str,
    pub(crate) senders: usize,
    pub(crate) scope: String,
    pub(crate) rate_target: f64,
    pub(crate) message_bytes: usize,
    pub(crate) messages_sent: u64,
    pub(crate) expected_deliveries: u64,
    pub(crate) deliveries: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    /// `MSG` lines that were not this run's (another scope or client).
    pub(crate) foreign: u64,
    pub(crate) deliveries_per_s: f64,
    pub(crate) latency: Summary,
    /// How late the senders sent, at worst (a tester that keeps up stays
    /// well under a millisecond).
    pub(crate) max_send_lag_ms: f64,
    pub(crate) connect_s: f64,
    pub(crate) settle_s: f64,
    pub(crate) duration_s: f64,
    pub(crate) drain_s: f64,
    pub(crate) slow: Option<SlowOutcome>,
    #[serde(flatten)]
    pub(crate) totals: Totals,
}

impl FanoutReport {
    pub(crate) fn base_table(&self, title: String) -> Table {
        let t = &self.totals;
        let table = Table::new(title)
            .row(
                "connections",
                format!("{} ok, {} failed", t.connections_ok, t.connections_failed),
            )
            .row(
                "messages sent",
                format!(
                    "{} ({:.1}/s; worst send lag {:.3} ms)",
                    self.messages_sent,
                    self.messages_sent as f64 / self.duration_s.max(1e-9),
                    self.max_send_lag_ms
                ),
            )
            .row(
                "deliveries",
                format!(
                    "{} of {} expected, {:.0}/s",
                    self.deliveries, self.expected_deliveries, self.deliveries_per_s
                ),
            )
            .row(
                "lost / duplicated",
                format!("{} / {}", self.lost, self.duplicated),
            )
            .row("latency p50/p90/p95/p99/max", latency_cell(&self.latency))
            .row(
                "bytes",
                format!("{} sent, {} received", t.bytes_sent, t.bytes_received),
            )
            .row(
                "duration",
                format!(
                    "{:.1} s sending, {:.1} s draining (connect {:.1} s, settle {:.1} s)",
                    self.duration_s, self.drain_s, self.connect_s, self.settle_s
                ),
            )
            .row("closed by server", t.closed_early)
            .row(
                "foreign / malformed lines",
                format!("{} / {}", self.foreign, t.malformed_lines),
            );
        t.add_notes(table)
    }
}

impl Report for FanoutReport {
    fn table(&self) -> Table {
        let dialect = match self.dialect {
            "native" => "",
            "mix" => ", half of them IRC",
            _ => ", all IRC",
        };
        self.base_table(format!(
            "fanout: {} clients in {}{dialect}, {} senders, {} msg/s of {} B",
            self.clients, self.scope, self.senders, self.rate_target, self.message_bytes
        ))
    }
}

/// Shared by the tasks of one run.
struct Run {
    plan: Plan,
    scope: String,
    stage: Stage,
    hist: Arc<SharedLatency>,
    /// Messages sent so far, per sender.
    sent: Vec<AtomicU64>,
    max_lag_ns: AtomicU64,
    /// The IRC channel of the scope.
    channel: String,
    slow_prefix: String,
    parts_seen: Mutex<Vec<(String, f64)>>,
}

/// A member of the scope: receives and checks every message; senders also
/// send on their schedule.
struct Member {
    run: Arc<Run>,
    epoch: Instant,
    sender: Option<Sending>,
    seqs: Sequences,
    unique_flushed: u64,
    foreign: u64,
    /// Watches for the slow clients being cut (one member does).
    watcher: bool,
    batch: Batch,
    text: String,
    dialect: Dialect,
}

struct Sending {
    me: usize,
    next: Instant,
    interval: Duration,
    end: Instant,
    seq: u64,
}

impl Behavior for Member {
    fn next_send(&self) -> Option<Instant> {
        self.sender
            .as_ref()
            .and_then(|s| (s.next < s.end).then_some(s.next))
    }

    fn send(&mut self, now: Instant, out: &mut Vec<u8>) {
        let Some(s) = self.sender.as_mut() else {
            return;
        };
        if now >= s.end {
            // Woken late: sending time is over and the coordinator may
            // already be counting deliveries.
            s.next = s.end;
            return;
        }
        let lag = now.saturating_duration_since(s.next);
        self.run
            .max_lag_ns
            .fetch_max(u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        self.text.clear();
        let stamp =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(0);
        use std::fmt::Write as _;
        let _ = write!(self.text, "{} {} {}", s.me, s.seq, stamp);
        if self.text.len() + 1 < self.run.plan.size {
            self.text.push(' ');
            while self.text.len() < self.run.plan.size {
                self.text.push('x');
            }
        }
        // Digits, spaces and x: always valid text.
        self.dialect.say(&self.run.channel, &self.text, out);
        s.seq += 1;
        self.run.sent[s.me].store(s.seq, Relaxed);
        Counters::add(&self.run.stage.counters.sent, 1);
        // Behind schedule the sender catches up one message per wake-up;
        // the lag above says how far behind it was.
        s.next += s.interval;
    }

    fn line(&mut self, line: Incoming<'_>, first_byte: Instant, _: &mut Vec<u8>) {
        match line {
            Incoming::Msg { scope, text, .. } if scope == self.run.scope => {
                let Some((sender, seq, stamp)) = parse_stamp(text) else {
                    self.foreign += 1;
                    return;
                };
                match self.seqs.accept(sender, seq) {
                    Some(true) => {
                        let sent = self.epoch + Duration::from_nanos(stamp);
                        self.batch.push(first_byte.saturating_duration_since(sent));
                    }
                    Some(false) => {}
                    None => self.foreign += 1,
                }
            }
            Incoming::Msg { .. } => self.foreign += 1,
            Incoming::Event(Event::Err { code, text }) => {
                // A refused message is a lost one; say why in the report.
                self.run
                    .stage
                    .counters
                    .error(format!("server replied ERR {code} {text}"));
            }
            Incoming::Part {
                name,
                reason: Some("sendq-exceeded"),
            } if self.watcher && name.starts_with(&self.run.slow_prefix) => {
                let at = self.run.stage.window().map_or(0.0, |(s, _)| {
                    first_byte.saturating_duration_since(s).as_secs_f64()
                });
                let mut seen = self
                    .run
                    .parts_seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                seen.push((name.to_owned(), at));
            }
            _ => {}
        }
    }

    fn read_done(&mut self) {
        self.run.hist.flush(&mut self.batch);
        Counters::add(
            &self.run.stage.counters.received,
            self.seqs.unique_total - self.unique_flushed,
        );
        self.unique_flushed = self.seqs.unique_total;
    }
}

/// One receiver's view of each sender's sequence numbers.
#[derive(Debug)]
struct Sequences {
    /// Per sender: the next sequence number expected.
    expected: Vec<u64>,
    /// Per sender: distinct messages received.
    unique: Vec<u64>,
    unique_total: u64,
    /// Messages at or below one already seen (a duplicate, or a reordering,
    /// which the protocol forbids within a scope as well).
    duplicated: u64,
}

impl Sequences {
    fn new(senders: usize) -> Self {
        Self {
            expected: vec![0; senders],
            unique: vec![0; senders],
            unique_total: 0,
            duplicated: 0,
        }
    }

    /// Notes message `seq` of `sender`: `Some(true)` if new, `Some(false)` if
    /// a duplicate, `None` if there is no such sender. A gap is not an error
    /// here: the missing messages count as lost at the end (sent - unique).
    fn accept(&mut self, sender: usize, seq: u64) -> Option<bool> {
        let expected = self.expected.get_mut(sender)?;
        if seq >= *expected {
            *expected = seq + 1;
            self.unique[sender] += 1;
            self.unique_total += 1;
            Some(true)
        } else {
            self.duplicated += 1;
            Some(false)
        }
    }
}

/// `<sender> <seq> <stamp-ns>[ padding]`.
fn parse_stamp(text: &str) -> Option<(usize, u64, u64)> {
    let mut f = text.split(' ');
    let sender = f.next()?.parse().ok()?;
    let seq = f.next()?.parse().ok()?;
    let stamp = f.next()?.parse().ok()?;
    Some((sender, seq, stamp))
}

#[derive(Default)]
struct MemberOutcome {
    unique: Vec<u64>,
    duplicated: u64,
    foreign: u64,
    opened: bool,
}

async fn member(ctx: Arc<Ctx>, run: Arc<Run>, i: usize) -> MemberOutcome {
    let plan = &run.plan;
    let dialect = ctx.dialect.for_client(i);
    let opened = run
        .stage
        .open_as(&ctx, dialect, ctx.name("f", i), plan.group.as_ref(), None)
        .await;
    let Some(mut conn) = opened else {
        return MemberOutcome::default();
    };
    let s = plan.senders;
    let mut m = Member {
        run: run.clone(),
        epoch: ctx.epoch,
        sender: None,
        seqs: Sequences::new(s),
        unique_flushed: 0,
        foreign: 0,
        watcher: i == plan.clients - 1,
        batch: Batch::default(),
        text: String::with_capacity(plan.size + 32),
        dialect,
    };
    // Receives (and counts) while waiting for the start too: the senders that
    // start first may reach this member before it sees the signal.
    let Some(start_at) = conn.await_start(&run.stage, &mut m, ctx.deadline).await else {
        return MemberOutcome::default();
    };
    m.sender = (i < s).then(|| Sending {
        me: i,
        next: start_at + Duration::from_secs_f64(i as f64 / plan.rate),
        interval: Duration::from_secs_f64(s as f64 / plan.rate),
        end: start_at + plan.duration,
        seq: 0,
    });
    let end = run.stage.drive_until_stop(&ctx, &mut conn, &mut m).await;
    if !matches!(end, End::Signalled) {
        conn.ended_early(&run.stage.counters, &end, "a reading client");
    }
    MemberOutcome {
        unique: m.seqs.unique,
        duplicated: m.seqs.duplicated,
        foreign: m.foreign,
        opened: true,
    }
}

/// A client that registers and then never reads until the run is over.
async fn slow(ctx: Arc<Ctx>, run: Arc<Run>, i: usize) -> Option<(String, Option<String>, bool)> {
    let plan = &run.plan;
    let name = format!("{}{i}", run.slow_prefix);
    let mut conn = run
        .stage
        .open(&ctx, name, plan.group.as_ref(), Some(plan.slow_rcvbuf))
        .await?;
    let _ = runtime::until(ctx.deadline, run.stage.stop.waiter().recv()).await;
    let closed = conn
        .read_to_close(&run.stage.counters, plan.slow_final_read)
        .await;
    Some((conn.name.clone(), conn.bye.clone(), closed))
}

async fn probe(
    ctx: Arc<Ctx>,
    run: Arc<Run>,
    rate: f64,
    hist: Arc<SharedLatency>,
) -> Option<Requester> {
    // Its own counters: the probe's replies are not deliveries.
    let counters = Arc::new(Counters::default());
    let mut conn = run
        .stage
        .open(&ctx, ctx.name("p", 0), run.plan.group.as_ref(), None)
        .await?;
    let start = run.stage.start.waiter();
    let waited = conn
        .drive(&counters, &mut Quiet, pin!(start.recv()), ctx.deadline)
        .await;
    let (start_at, _) = run
        .stage
        .window()
        .filter(|_| matches!(waited, End::Signalled))?;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut req = Requester::new(
        start_at,
        interval,
        start_at + run.plan.duration,
        hist,
        counters.clone(),
    );
    let stop = run.stage.stop.waiter();
    let _ = conn
        .drive(&counters, &mut req, pin!(stop.recv()), ctx.deadline)
        .await;
    Some(req)
}

pub(crate) async fn run_plan(
    ctx: Arc<Ctx>,
    plan: Plan,
    label: &str,
) -> Result<FanoutReport, String> {
    plan.check()?;
    check_irc_size(&plan, &ctx)?;
    let stage = Stage::new();
    let counters = stage.counters.clone();
    let (clients, senders, slow_n, probe_rate) =
        (plan.clients, plan.senders, plan.slow, plan.probe_rate);
    let run = Arc::new(Run {
        scope: plan
            .group
            .as_ref()
            .map_or("*".to_owned(), |g| g.as_str().to_owned()),
        sent: (0..senders).map(|_| AtomicU64::new(0)).collect(),
        channel: Dialect::irc_channel(plan.group.as_ref()),
        plan,
        stage,
        hist: Arc::new(SharedLatency::new()),
        max_lag_ns: AtomicU64::new(0),
        slow_prefix: format!("s{}-", ctx.tag),
        parts_seen: Mutex::new(Vec::new()),
    });
    let progress = run.stage.progress(&ctx, label.to_owned(), "connecting");
    let t0 = Instant::now();
    let members: Vec<_> = (0..clients)
        .map(|i| ctx.ex.spawn(member(ctx.clone(), run.clone(), i)))
        .collect();
    let slows: Vec<_> = (0..slow_n)
        .map(|i| ctx.ex.spawn(slow(ctx.clone(), run.clone(), i)))
        .collect();
    let probe_hist = Arc::new(SharedLatency::new());
    let probe_task = probe_rate.map(|r| {
        ctx.ex
            .spawn(probe(ctx.clone(), run.clone(), r, probe_hist.clone()))
    });
    let expected_ready = clients + slow_n + usize::from(probe_rate.is_some());
    run.stage.await_ready(expected_ready, ctx.deadline).await;
    counters.require_connected(ctx.addr)?;
    let connect_s = t0.elapsed().as_secs_f64();
    progress.set_phase("settling");
    let settle_s = settle(&counters, Duration::from_millis(300), run.plan.settle_max)
        .await
        .as_secs_f64();
    progress.set_phase("sending");
    let (start, end) = run.stage.begin(&ctx, run.plan.duration);
    Timer::at(end).await;
    let duration_s = start.elapsed().as_secs_f64();
    progress.set_phase("draining");
    // Senders stop by their own schedule; give their last writes a moment.
    Timer::after(Duration::from_millis(50)).await;
    let drain_start = Instant::now();
    let drain_end = ctx.bound(drain_start + run.plan.drain);
    let receivers = Counters::get(&counters.connected)
        .saturating_sub((slow_n + usize::from(probe_rate.is_some())) as u64);
    let expected_now = || {
        let sent: u64 = run.sent.iter().map(|s| s.load(Relaxed)).sum();
        sent * receivers.saturating_sub(1)
    };
    while Instant::now() < drain_end && Counters::get(&counters.received) < expected_now() {
        Timer::after(Duration::from_millis(20)).await;
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    run.stage.stop.fire();
    if slow_n > 0 {
        progress.set_phase("final read");
    }

    let sent: Vec<u64> = run.sent.iter().map(|s| s.load(Relaxed)).collect();
    let grace = ctx.deadline + Duration::from_secs(1);
    let (mut deliveries, mut lost, mut duplicated, mut foreign, mut expected) = (0, 0, 0, 0, 0);
    for (i, task) in members.into_iter().enumerate() {
        let Some(o) = runtime::until(grace, task).await else {
            break;
        };
        if !o.opened {
            continue;
        }
        for (s, &n) in sent.iter().enumerate() {
            if s == i {
                continue; // not echoed to the sender
            }
            let got = o.unique.get(s).copied().unwrap_or(0);
            expected += n;
            deliveries += got.min(n);
            lost += n.saturating_sub(got);
        }
        duplicated += o.duplicated;
        foreign += o.foreign;
    }
    let slow_outcome = if slow_n > 0 || probe_rate.is_some() {
        let mut out = SlowOutcome {
            slow_clients: slow_n,
            cut_with_bye: 0,
            closed: 0,
            cut_seen_in_part: 0,
            other_bye: Vec::new(),
            parts_seen: run
                .parts_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            probe_sent: 0,
            probe_answered: 0,
            probe_unanswered: 0,
            probe_ttfb: probe_hist.snapshot().summary(),
        };
        for task in slows {
            let Some(Some((name, bye, closed))) =
                runtime::until(grace + run.plan.slow_final_read, task).await
            else {
                continue;
            };
            match bye.as_deref() {
                Some("sendq-exceeded") => out.cut_with_bye += 1,
                Some(other) => out.other_bye.push(other.to_owned()),
                None => {}
            }
            out.closed += usize::from(closed);
            let parted = out.parts_seen.iter().any(|(n, _)| *n == name);
            if closed && parted && bye.is_none() {
                out.cut_seen_in_part += 1;
            }
        }
        if let Some(task) = probe_task {
            if let Some(Some(req)) = runtime::until(grace, task).await {
                out.probe_sent = req.sent;
                out.probe_answered = req.answered;
                out.probe_unanswered = req.unanswered();
            }
        }
        Some(out)
    } else {
        None
    };
    progress.finish().await;
    let plan = &run.plan;
    Ok(FanoutReport {
        clients: plan.clients,
        dialect: ctx.dialect.name(),
        senders: plan.senders,
        scope: run.scope.clone(),
        rate_target: plan.rate,
        message_bytes: plan.size,
        messages_sent: sent.iter().sum(),
        expected_deliveries: expected,
        deliveries,
        lost,
        duplicated,
        foreign,
        deliveries_per_s: deliveries as f64 / duration_s.max(1e-9),
        latency: run.hist.snapshot().summary(),
        max_send_lag_ms: run.max_lag_ns.load(Relaxed) as f64 / 1e6,
        connect_s,
        settle_s,
        duration_s,
        drain_s,
        slow: slow_outcome,
        totals: counters.totals(),
    })
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: FanoutArgs) -> Result<FanoutReport, String> {
    let plan = plan_from(&args)?;
    let label = format!("fanout n={}", plan.clients);
    run_plan(ctx, plan, &label).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_parse_with_and_without_padding() {
        assert_eq!(parse_stamp("3 17 123456789"), Some((3, 17, 123456789)));
        assert_eq!(parse_stamp("0 0 5 xxxxxxxx"), Some((0, 0, 5)));
        assert_eq!(parse_stamp("hello world"), None);
        assert_eq!(parse_stamp("1 2"), None);
        assert_eq!(parse_stamp("-1 2 3"), None);
    }

    #[test]
    fn sequences_count_new_duplicated_and_gaps() {
        let mut s = Sequences::new(2);
        let got: Vec<Option<bool>> = [(0, 0), (0, 1), (1, 0), (0, 1), (0, 4), (0, 3), (2, 0)]
            .iter()
            .map(|&(sender, seq)| s.accept(sender, seq))
            .collect();
        let (new, dup) = (Some(true), Some(false));
        assert_eq!(got, vec![new, new, new, dup, new, dup, None]);
        // Sender 0 sent 5 (0..=4): 3 arrived, so 2 are lost; 2 duplicates.
        assert_eq!(
            (s.unique.clone(), s.unique_total, s.duplicated),
            (vec![3, 1], 4, 2)
        );
    }

    #[test]
    fn plans_are_checked() {
        let args = FanoutArgs {
            clients: 10,
            senders: 2,
            rate: 10.0,
            duration: 1.0,
            size: 64,
            group: Some("bench".into()),
            drain: 1.0,
            settle_max: 1.0,
        };
        let plan = plan_from(&args).unwrap();
        assert!(plan.check().is_ok());
        assert_eq!(plan.group.as_ref().map(GroupName::as_str), Some("bench"));
        for bad in [
            Plan {
                clients: 1,
                ..plan_from(&args).unwrap()
            },
            Plan {
                senders: 11,
                ..plan_from(&args).unwrap()
            },
            Plan {
                senders: 0,
                ..plan_from(&args).unwrap()
            },
            Plan {
                rate: f64::NAN,
                ..plan_from(&args).unwrap()
            },
            Plan {
                size: 5000,
                ..plan_from(&args).unwrap()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert!(parse_group(Some("no spaces")).is_err());
    }
}
