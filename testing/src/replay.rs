//! `replay`: a filler says H numbered lines in group g; then N registered
//! clients `/join g` (all at once, or spread over a time) and each measures
//! from sending `/join` to its last `HISTORY` line and to `REPLAYED g`, and
//! checks it got exactly the latest lines, in order, once each, and (with
//! `--live-rate`) that the live lines go on from there without a gap.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use chatproto::{Event, GroupName};
use serde::Serialize;

use crate::client::{Behavior, End, Incoming};
use crate::report::{latency_cell, Report, Table};
use crate::runtime::{self, settle, Counters, Ctx, Stage, Totals};
use crate::stats::{Batch, SharedLatency, Summary};

#[derive(FromArgs, Debug)]
/// N clients `/join` a group holding H lines: time to the replay's end, and
/// whether each got exactly the latest lines, in order, without duplicates
#[argh(subcommand, name = "replay")]
pub(crate) struct ReplayArgs {
    /// clients that join (default 1000)
    #[argh(option, short = 'n', default = "1000")]
    clients: usize,
    /// lines the filler says in the group before anyone joins (default 20)
    #[argh(option, default = "20")]
    lines: u64,
    /// lines the server replays on `/join`, chatd's --history-replay
    /// (default 20): each joiner expects min(--lines, this)
    #[argh(option, default = "20")]
    history_replay: u64,
    /// seconds over which the joins are spread evenly; 0 sends them all at
    /// once (default 0)
    #[argh(option, default = "0.0")]
    spread: f64,
    /// lines per second the filler says, below the server's pacing
    /// (chatd: --flood-rate 20) once its first 40 are out (default 15)
    #[argh(option, default = "15.0")]
    fill_rate: f64,
    /// lines per second the filler goes on saying while the others join;
    /// each joiner then checks that the live lines follow the replay without
    /// a gap or a repeat (default 0: none)
    #[argh(option, default = "0.0")]
    live_rate: f64,
    /// the group (default a name with this run's tag)
    #[argh(option, short = 'g')]
    group: Option<String>,
    /// at most this many seconds waiting for the server to go quiet after
    /// registrations (default 30)
    #[argh(option, default = "30.0")]
    settle_max: f64,
    /// at most this many seconds for every replay to end after the last
    /// `/join` went out (default 60)
    #[argh(option, default = "60.0")]
    wait: f64,
}

/// The filler's lines say the group was filled by this run, and their number.
const LINE_PREFIX: &str = "replay-line";

/// Lines the filler sends at once before it paces itself (chatd's
/// --flood-burst is 50).
const FILL_BURST: u64 = 40;

/// The text of the filler's line number `seq`.
fn line_text(tag: &str, seq: u64) -> String {
    format!("{LINE_PREFIX} {tag} {seq}")
}

/// The number in a filler line of run `tag`, if `text` is one.
fn line_seq(tag: &str, text: &str) -> Option<u64> {
    let rest = text.strip_prefix(LINE_PREFIX)?.strip_prefix(' ')?;
    let (t, n) = rest.split_once(' ')?;
    if t != tag {
        return None;
    }
    n.parse().ok()
}

/// What one joiner saw of group g, checked against what it should see: the
/// latest `expected` filler lines, consecutive and each once, ending at or
/// after `filled` (exactly at it without live lines), then `REPLAYED g
/// expected`, then live lines going on from the last replayed one.
#[derive(Debug)]
pub(crate) struct ReplayCheck {
    expected: u64,
    filled: u64,
    live: bool,
    history: Vec<u64>,
    replayed: Option<u32>,
    live_last: Option<u64>,
    live_seen: u64,
    problems: Vec<String>,
}

impl ReplayCheck {
    pub(crate) fn new(expected: u64, filled: u64, live: bool) -> Self {
        Self {
            expected,
            filled,
            live,
            history: Vec::new(),
            replayed: None,
            live_last: None,
            live_seen: 0,
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, p: String) {
        // A few say what went wrong; a flood of them says nothing more.
        if self.problems.len() < 4 {
            self.problems.push(p);
        }
    }

    /// A `HISTORY` line of g with filler line `seq`.
    pub(crate) fn history(&mut self, seq: u64) {
        if self.replayed.is_some() {
            self.problem(format!("HISTORY {seq} after REPLAYED"));
            return;
        }
        if let Some(&last) = self.history.last() {
            if seq <= last {
                self.problem(format!(
                    "HISTORY {seq} after {last} (repeat or out of order)"
                ));
            } else if seq != last + 1 {
                self.problem(format!("HISTORY {seq} after {last}: a gap"));
            }
        }
        self.history.push(seq);
    }

    /// `REPLAYED g count`.
    pub(crate) fn replayed(&mut self, count: u32) {
        if self.replayed.is_some() {
            self.problem("REPLAYED twice".into());
            return;
        }
        self.replayed = Some(count);
        let got = self.history.len() as u64;
        if u64::from(count) != got {
            self.problem(format!("REPLAYED {count} after {got} HISTORY lines"));
        }
        if got != self.expected {
            self.problem(format!("{got} lines replayed, {} expected", self.expected));
        }
        if let Some(&last) = self.history.last() {
            if last < self.filled || (!self.live && last != self.filled) {
                self.problem(format!(
                    "the replay ends at line {last}, the group had {}",
                    self.filled
                ));
            }
        }
    }

    /// A live `MSG` of g with filler line `seq`.
    pub(crate) fn live(&mut self, seq: u64) {
        if self.replayed.is_none() {
            self.problem(format!("live line {seq} before REPLAYED"));
            return;
        }
        self.live_seen += 1;
        let before = self.live_last.or_else(|| self.history.last().copied());
        if let Some(prev) = before {
            if seq <= prev {
                self.problem(format!("live line {seq} after {prev}: a repeat"));
            } else if seq != prev + 1 {
                self.problem(format!("live line {seq} after {prev}: a gap"));
            }
        }
        self.live_last = Some(seq);
    }

    /// Something in g that is not a filler line of this run, or an error.
    pub(crate) fn foreign(&mut self, what: String) {
        self.problem(what);
    }

    pub(crate) fn done(&self) -> bool {
        self.replayed.is_some()
    }

    /// The problems seen, plus a missing `REPLAYED`.
    pub(crate) fn verdict(mut self) -> Vec<String> {
        if self.replayed.is_none() {
            let got = self.history.len();
            self.problem(format!("no REPLAYED (after {got} HISTORY lines)"));
        }
        self.problems
    }
}

/// A client that joins g at `join_at` and checks what it gets.
struct Joiner {
    tag: Arc<str>,
    group: GroupName,
    name: String,
    join_at: Instant,
    sent_at: Option<Instant>,
    last_history: Option<Instant>,
    replayed_at: Option<Instant>,
    check: ReplayCheck,
    done: async_channel::Sender<()>,
}

impl Behavior for Joiner {
    fn next_send(&self) -> Option<Instant> {
        self.sent_at.is_none().then_some(self.join_at)
    }

    fn send(&mut self, now: Instant, out: &mut Vec<u8>) {
        if self.sent_at.is_none() {
            out.extend_from_slice(format!("/join {}\n", self.group).as_bytes());
            self.sent_at = Some(now);
        }
    }

    fn line(&mut self, line: Incoming<'_>, first_byte: Instant, _: &mut Vec<u8>) {
        if self.sent_at.is_none() {
            return;
        }
        let g = self.group.as_str();
        match line {
            Incoming::Msg { scope, text } if scope == g => match line_seq(&self.tag, text) {
                Some(seq) => self.check.live(seq),
                None => self.check.foreign(format!("a foreign line in {g}: {text}")),
            },
            Incoming::Event(Event::History(past)) => {
                let Event::Msg { scope, text, .. } = past.event() else {
                    return;
                };
                if scope.as_str() != g {
                    return;
                }
                match line_seq(&self.tag, text.as_str()) {
                    Some(seq) => {
                        self.check.history(seq);
                        self.last_history = Some(first_byte);
                    }
                    None => self
                        .check
                        .foreign(format!("a foreign HISTORY line in {g}: {}", text.as_str())),
                }
            }
            Incoming::Event(Event::Replayed { scope, count }) if scope.as_str() == g => {
                let first = !self.check.done();
                self.check.replayed(count);
                if first {
                    self.replayed_at = Some(first_byte);
                    let _ = self.done.try_send(());
                }
            }
            Incoming::Event(Event::Err { code, text }) => {
                let (c, t) = (code.as_str().to_owned(), text.as_str().to_owned());
                self.check.foreign(format!("{}: ERR {c} {t}", self.name));
            }
            _ => {}
        }
    }
}

/// Where the filler is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FillPhase {
    /// `/join g` and a `/ping` went out; the `PONG` tells whether `REPLAYED`
    /// came first (the server keeps history).
    Probing,
    Filling,
    /// Its last line and a `/ping` went out.
    Confirming,
    /// Saying live lines, or done.
    Live,
}

/// Joins g, says `lines` numbered lines paced under the server's limit,
/// reports through `filled` when the server has taken them all (`PONG`),
/// then says live lines at `live_rate` until stopped.
struct Filler {
    tag: Arc<str>,
    group: GroupName,
    lines: u64,
    fill_rate: f64,
    live_rate: f64,
    phase: FillPhase,
    probe_sent: bool,
    has_history: bool,
    start: Instant,
    live_start: Instant,
    seq: u64,
    live_sent: u64,
    /// `Ok(())` once filled, `Err` if the server keeps no history.
    filled: async_channel::Sender<Result<(), String>>,
}

impl Filler {
    fn say(&mut self, out: &mut Vec<u8>) {
        self.seq += 1;
        out.extend_from_slice(line_text(&self.tag, self.seq).as_bytes());
        out.push(b'\n');
    }
}

impl Behavior for Filler {
    fn next_send(&self) -> Option<Instant> {
        match self.phase {
            FillPhase::Probing => (!self.probe_sent).then_some(self.start),
            FillPhase::Confirming => None,
            FillPhase::Filling => {
                let paced = self.seq.saturating_sub(FILL_BURST) as f64 / self.fill_rate;
                Some(self.start + Duration::from_secs_f64(paced))
            }
            FillPhase::Live if self.live_rate > 0.0 => Some(
                self.live_start + Duration::from_secs_f64(self.live_sent as f64 / self.live_rate),
            ),
            FillPhase::Live => None,
        }
    }

    fn send(&mut self, now: Instant, out: &mut Vec<u8>) {
        match self.phase {
            FillPhase::Filling => {
                while self.seq < self.lines && self.next_send().is_some_and(|t| t <= now) {
                    self.say(out);
                }
                if self.seq >= self.lines {
                    out.extend_from_slice(b"/ping filled\n");
                    self.phase = FillPhase::Confirming;
                }
            }
            FillPhase::Live => {
                self.say(out);
                self.live_sent += 1;
            }
            FillPhase::Probing if !self.probe_sent => {
                // `REPLAYED g` before the `PONG` means the server keeps history.
                out.extend_from_slice(format!("/join {}\n/ping probe\n", self.group).as_bytes());
                self.probe_sent = true;
            }
            FillPhase::Probing | FillPhase::Confirming => {}
        }
    }

    fn line(&mut self, line: Incoming<'_>, _: Instant, _: &mut Vec<u8>) {
        match line {
            Incoming::Event(Event::Replayed { scope, .. })
                if scope.as_str() == self.group.as_str() =>
            {
                self.has_history = true;
            }
            Incoming::Event(Event::Pong(t)) if t.as_str() == "probe" => {
                if self.has_history {
                    self.phase = FillPhase::Filling;
                    self.start = Instant::now();
                } else {
                    let _ = self.filled.try_send(Err(
                        "the server keeps no history: /join got no REPLAYED (chatd without its store?)"
                            .into(),
                    ));
                    self.phase = FillPhase::Live;
                    self.live_rate = 0.0;
                }
            }
            Incoming::Event(Event::Pong(t)) if t.as_str() == "filled" => {
                self.phase = FillPhase::Live;
                self.live_start = Instant::now();
                let _ = self.filled.try_send(Ok(()));
            }
            Incoming::Event(Event::Err { code, text }) => {
                let _ = self.filled.try_send(Err(format!(
                    "the filler was refused: ERR {} {}",
                    code.as_str(),
                    text.as_str()
                )));
            }
            _ => {}
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ReplayReport {
    clients: usize,
    group: String,
    lines: u64,
    expected_per_client: u64,
    spread_s: f64,
    live_rate: f64,
    fill_s: f64,
    /// From sending `/join` to the last `HISTORY` line of the replay.
    to_last_history: Summary,
    /// From sending `/join` to `REPLAYED`.
    to_replayed: Summary,
    joined: u64,
    /// Joiners whose replay ended (`REPLAYED` came).
    replayed: u64,
    /// Joiners that saw a wrong count, a gap, a repeat, disorder, a foreign
    /// line, an `ERR`, or no `REPLAYED`.
    clients_with_errors: u64,
    /// Live lines checked after the replays (with `--live-rate`).
    live_lines_checked: u64,
    #[serde(flatten)]
    totals: Totals,
}

impl Report for ReplayReport {
    fn table(&self) -> Table {
        let t = &self.totals;
        let how = if self.spread_s > 0.0 {
            format!("spread over {:.1} s", self.spread_s)
        } else {
            "all at once".to_owned()
        };
        let table = Table::new(format!(
            "replay: {} clients /join {} holding {} lines ({how})",
            self.clients, self.group, self.lines
        ))
        .row(
            "connections",
            format!("{} ok, {} failed", t.connections_ok, t.connections_failed),
        )
        .row(
            "fill",
            format!("{} lines in {:.2} s", self.lines, self.fill_s),
        )
        .row(
            "/join to last HISTORY",
            format!(
                "p50/p90/p95/p99/max {}",
                latency_cell(&self.to_last_history)
            ),
        )
        .row(
            "/join to REPLAYED",
            format!("p50/p90/p95/p99/max {}", latency_cell(&self.to_replayed)),
        )
        .row(
            "replays",
            format!(
                "{} of {} joiners ended, {} lines each expected",
                self.replayed, self.joined, self.expected_per_client
            ),
        )
        .row("clients with errors", self.clients_with_errors)
        .row("live lines checked", self.live_lines_checked)
        .row("closed by server", t.closed_early);
        t.add_notes(table)
    }
}

/// What one joiner found.
struct Outcome {
    to_history: Option<Duration>,
    to_replayed: Option<Duration>,
    problems: Vec<String>,
    live_seen: u64,
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: ReplayArgs) -> Result<ReplayReport, String> {
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if args.lines == 0 {
        return Err("--lines must be at least 1".into());
    }
    if !(args.fill_rate.is_finite() && args.fill_rate > 0.0) {
        return Err("--fill-rate must be above 0".into());
    }
    if !(args.live_rate.is_finite() && args.live_rate >= 0.0) {
        return Err("--live-rate must be 0 or more".into());
    }
    let spread = runtime::secs("--spread", args.spread)?;
    let settle_max = runtime::secs("--settle-max", args.settle_max)?;
    let wait = runtime::secs("--wait", args.wait)?;
    let group_name = args
        .group
        .clone()
        .unwrap_or_else(|| format!("replay{}", ctx.tag));
    let group = GroupName::try_from(group_name.as_str())
        .map_err(|e| format!("--group {group_name:?}: {e}"))?;
    let tag: Arc<str> = ctx.tag.clone().into();
    let expected = args.lines.min(args.history_replay);
    let live = args.live_rate > 0.0;
    let stage = Arc::new(Stage::new());
    let counters = &stage.counters;
    let progress = stage.progress(&ctx, format!("replay n={}", args.clients), "filling");

    // The filler first: the joiners register only once the group is full,
    // so the fill's pace is not slowed by their registrations.
    let (filled_tx, filled_rx) = async_channel::bounded(2);
    let filler = {
        let (ctx, stage, tag, group) = (ctx.clone(), stage.clone(), tag.clone(), group.clone());
        let (lines, fill_rate, live_rate) = (args.lines, args.fill_rate, args.live_rate);
        let filled_tx = filled_tx.clone();
        ctx.ex.clone().spawn(async move {
            let Some(mut conn) = stage.open(&ctx, ctx.name("fill", 0), None, None).await else {
                let _ = filled_tx.try_send(Err("the filler did not register".to_owned()));
                return;
            };
            let now = Instant::now();
            let mut b = Filler {
                tag,
                group: group.clone(),
                lines,
                fill_rate,
                live_rate,
                phase: FillPhase::Probing,
                probe_sent: false,
                has_history: false,
                start: now,
                live_start: now,
                seq: 0,
                live_sent: 0,
                filled: filled_tx.clone(),
            };
            let ended = {
                let waiter = stage.stop.waiter();
                conn.drive(&stage.counters, &mut b, pin!(waiter.recv()), ctx.deadline)
                    .await
            };
            if !matches!(ended, End::Signalled | End::Deadline) {
                conn.ended_early(&stage.counters, &ended, "the filler");
                let _ = filled_tx.try_send(Err(format!("the filler ended early: {ended}")));
            }
        })
    };
    let fill_start = Instant::now();
    let fill_result = runtime::until(ctx.deadline, filled_rx.recv()).await;
    let fill_s = fill_start.elapsed().as_secs_f64();
    let why = match fill_result {
        Some(Ok(Ok(()))) => None,
        Some(Ok(Err(why))) => Some(why),
        Some(Err(_)) | None => Some("the group was not filled in time".to_owned()),
    };
    if let Some(why) = why {
        stage.stop.fire();
        let _ = runtime::until(ctx.deadline + Duration::from_secs(1), filler).await;
        progress.finish().await;
        return Err(why);
    }

    progress.set_phase("connecting");
    let latency_history = Arc::new(SharedLatency::new());
    let latency_replayed = Arc::new(SharedLatency::new());
    let (done_tx, done_rx) = async_channel::unbounded();
    let joiners: Vec<_> = (0..args.clients)
        .map(|i| {
            let (ctx, stage, tag, group) = (ctx.clone(), stage.clone(), tag.clone(), group.clone());
            let done_tx = done_tx.clone();
            let (n, filled) = (args.clients, args.lines);
            ctx.ex.clone().spawn(async move {
                let name = ctx.name("rj", i);
                let mut conn = stage.open(&ctx, name.clone(), None, None).await?;
                let (from, _) = stage.await_start(&ctx, &mut conn).await?;
                let offset = spread.mul_f64(i as f64 / n as f64);
                let mut b = Joiner {
                    tag,
                    group,
                    name,
                    join_at: from + offset,
                    sent_at: None,
                    last_history: None,
                    replayed_at: None,
                    check: ReplayCheck::new(expected, filled, live),
                    done: done_tx,
                };
                let ended = stage.drive_until_stop(&ctx, &mut conn, &mut b).await;
                if !matches!(ended, End::Signalled | End::Deadline) {
                    conn.ended_early(&stage.counters, &ended, "a joiner");
                }
                let since = |t: Option<Instant>| Some(t?.saturating_duration_since(b.sent_at?));
                Some(Outcome {
                    to_history: since(b.last_history),
                    to_replayed: since(b.replayed_at),
                    live_seen: b.check.live_seen,
                    problems: b.check.verdict(),
                })
            })
        })
        .collect();
    drop(done_tx);
    // The filler reported too, before them.
    stage.await_ready(args.clients + 1, ctx.deadline).await;
    progress.set_phase("settling");
    settle(counters, Duration::from_millis(300), settle_max).await;
    progress.set_phase("joining");
    let (from, _) = stage.begin(&ctx, spread + wait);
    let joined = Counters::get(&counters.connected).saturating_sub(1);
    // Every replay ended, or the wait is over.
    let all_by = ctx.bound(from + spread + wait);
    for _ in 0..joined {
        if runtime::until(all_by, done_rx.recv()).await.is_none() {
            break;
        }
    }
    if live {
        // Some live lines after the last replay, for the gap check.
        let after = Duration::from_secs_f64((5.0 / args.live_rate).clamp(0.5, 5.0));
        runtime::until(ctx.deadline, smol::Timer::after(after)).await;
    }
    stage.stop.fire();
    let grace = ctx.deadline + Duration::from_secs(1);
    let (mut replayed, mut with_errors, mut live_checked) = (0, 0, 0);
    let (mut hb, mut rb) = (Batch::default(), Batch::default());
    for t in joiners {
        let Some(Some(o)) = runtime::until(grace, t).await else {
            continue;
        };
        if let Some(d) = o.to_history {
            hb.push(d);
        }
        if let Some(d) = o.to_replayed {
            rb.push(d);
            replayed += 1;
        }
        live_checked += o.live_seen;
        if !o.problems.is_empty() {
            with_errors += 1;
            counters.error(format!("a joiner: {}", o.problems.join("; ")));
        }
    }
    latency_history.flush(&mut hb);
    latency_replayed.flush(&mut rb);
    let _ = runtime::until(grace, filler).await;
    progress.finish().await;
    Ok(ReplayReport {
        clients: args.clients,
        group: group.to_string(),
        lines: args.lines,
        expected_per_client: expected,
        spread_s: spread.as_secs_f64(),
        live_rate: args.live_rate,
        fill_s,
        to_last_history: latency_history.snapshot().summary(),
        to_replayed: latency_replayed.snapshot().summary(),
        joined,
        replayed,
        clients_with_errors: with_errors,
        live_lines_checked: live_checked,
        totals: counters.totals(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_lines_round_trip_and_other_runs_do_not_count() {
        assert_eq!(line_seq("ab", &line_text("ab", 17)), Some(17));
        assert_eq!(line_seq("ab", &line_text("cd", 17)), None);
        assert_eq!(line_seq("ab", "replay-line ab x"), None);
        assert_eq!(line_seq("ab", "hello"), None);
    }

    fn fed(expected: u64, filled: u64, live: bool, history: &[u64], replayed: u32) -> ReplayCheck {
        let mut c = ReplayCheck::new(expected, filled, live);
        for &s in history {
            c.history(s);
        }
        c.replayed(replayed);
        c
    }

    #[test]
    fn the_latest_lines_in_order_pass() {
        assert!(fed(3, 5, false, &[3, 4, 5], 3).verdict().is_empty());
        // Fewer lines than the replay holds: all of them.
        assert!(fed(2, 2, false, &[1, 2], 2).verdict().is_empty());
        // Live lines meanwhile: the replay may end later, and live goes on.
        let mut c = fed(3, 5, true, &[5, 6, 7], 3);
        c.live(8);
        c.live(9);
        assert!(c.verdict().is_empty());
    }

    #[test]
    fn gaps_repeats_disorder_and_wrong_counts_are_problems() {
        let bad = |c: ReplayCheck, what: &str| {
            let v = c.verdict();
            assert!(v.iter().any(|p| p.contains(what)), "{what}: {v:?}");
        };
        bad(fed(3, 5, false, &[3, 5], 2), "a gap");
        bad(fed(3, 5, false, &[3, 4, 4, 5], 4), "repeat");
        bad(fed(3, 5, false, &[4, 3, 5], 3), "out of order");
        bad(fed(3, 5, false, &[3, 4, 5], 2), "REPLAYED 2 after 3");
        bad(fed(3, 5, false, &[2, 3, 4], 3), "ends at line 4");
        bad(fed(3, 5, false, &[4, 5], 2), "2 lines replayed, 3 expected");
        let mut c = ReplayCheck::new(3, 5, false);
        c.history(3);
        bad(c, "no REPLAYED");
        let mut c = fed(2, 5, true, &[4, 5], 2);
        c.live(5);
        bad(c, "a repeat");
        let mut c = fed(2, 5, true, &[4, 5], 2);
        c.live(7);
        bad(c, "a gap");
        let mut c = ReplayCheck::new(2, 5, true);
        c.live(6);
        bad(c, "before REPLAYED");
    }
}
