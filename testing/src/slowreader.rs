//! `slowreader`: a fanout run plus clients that never read, and a probe
//! sending `/users`; checks that the readers' latency and loss hold, that the
//! slow clients are cut with `BYE sendq-exceeded`, and that `/users` is
//! answered throughout.

use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use serde::Serialize;

use crate::fanout::{self, FanoutReport, Plan};
use crate::report::{latency_cell, Report, Table};
use crate::runtime::{self, Ctx};

#[derive(FromArgs, Debug)]
/// a fanout run plus clients that never read: are they cut, do the others hold?
#[argh(subcommand, name = "slowreader")]
pub(crate) struct SlowReaderArgs {
    /// reading clients in the scope, senders included (default 100)
    #[argh(option, short = 'n', default = "100")]
    clients: usize,
    /// how many of the reading clients send (default 10)
    #[argh(option, short = 's', default = "10")]
    senders: usize,
    /// messages per second, all senders together (default 200)
    #[argh(option, short = 'm', default = "200.0")]
    rate: f64,
    /// seconds of sending (default 20)
    #[argh(option, short = 'd', default = "20.0")]
    duration: f64,
    /// bytes of message text (default 400)
    #[argh(option, default = "400")]
    size: usize,
    /// clients that never read (default 1)
    #[argh(option, short = 'k', default = "1")]
    slow: usize,
    /// SO_RCVBUF of the never-reading clients, so the kernel does not absorb
    /// the whole run for them (default 4096)
    #[argh(option, default = "4096")]
    slow_rcvbuf: usize,
    /// requests per second of `/users` from the probe client (default 2)
    #[argh(option, default = "2.0")]
    probe_rate: f64,
    /// join this group instead of using the global scope (chatd only)
    #[argh(option)]
    group: Option<String>,
    /// seconds to wait for deliveries in flight when sending stops (default 5)
    #[argh(option, default = "5.0")]
    drain: f64,
    /// seconds the slow clients finally read, looking for BYE (default 5)
    #[argh(option, default = "5.0")]
    final_read: f64,
    /// at most this many seconds waiting for the server to go quiet after
    /// registrations (default 30)
    #[argh(option, default = "30.0")]
    settle_max: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct SlowReaderReport {
    /// Everything held: no loss or duplication for the readers, every slow
    /// client cut for sendq-exceeded (its `BYE`, or its closed socket plus
    /// the readers' `PART * <it> sendq-exceeded`), every probe request answered.
    holds: bool,
    verdict: Vec<String>,
    #[serde(flatten)]
    fanout: FanoutReport,
}

impl Report for SlowReaderReport {
    fn table(&self) -> Table {
        let f = &self.fanout;
        let mut t = f.base_table(format!(
            "slowreader: {} readers + slow clients in {}, {} senders, {} msg/s of {} B",
            f.clients, f.scope, f.senders, f.rate_target, f.message_bytes
        ));
        if let Some(s) = &f.slow {
            let parts: Vec<String> = s
                .parts_seen
                .iter()
                .map(|(n, at)| format!("{n} at {at:.1} s"))
                .collect();
            t = t
                .row(
                    "slow clients",
                    format!(
                        "{}: {} found BYE sendq-exceeded, {} closed without a BYE reaching them but seen in PART sendq-exceeded, {} closed in all, other BYE {:?}",
                        s.slow_clients, s.cut_with_bye, s.cut_seen_in_part, s.closed, s.other_bye
                    ),
                )
                .row(
                    "PART sendq-exceeded",
                    if parts.is_empty() {
                        "none seen".to_owned()
                    } else {
                        parts.join(", ")
                    },
                )
                .row(
                    "probe /users",
                    format!(
                        "{} sent, {} answered, {} unanswered",
                        s.probe_sent, s.probe_answered, s.probe_unanswered
                    ),
                )
                .row(
                    "probe ttfb p50/p90/p95/p99/max",
                    latency_cell(&s.probe_ttfb),
                );
        }
        t = t.row(
            "holds",
            if self.holds {
                "yes".to_owned()
            } else {
                "NO".to_owned()
            },
        );
        for v in &self.verdict {
            t = t.note(v.clone());
        }
        t
    }
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: SlowReaderArgs) -> Result<SlowReaderReport, String> {
    if args.slow == 0 {
        return Err("--slow must be at least 1 (else run fanout)".into());
    }
    let plan = Plan {
        clients: args.clients,
        senders: args.senders,
        rate: args.rate,
        duration: runtime::secs("--duration", args.duration)?,
        size: args.size,
        group: fanout::parse_group(args.group.as_deref())?,
        drain: runtime::secs("--drain", args.drain)?,
        settle_max: runtime::secs("--settle-max", args.settle_max)?,
        slow: args.slow,
        slow_rcvbuf: args.slow_rcvbuf.max(1),
        slow_final_read: runtime::secs("--final-read", args.final_read)?
            .max(Duration::from_millis(100)),
        probe_rate: Some(args.probe_rate),
    };
    let label = format!("slowreader n={}+{}", plan.clients, plan.slow);
    let fanout = fanout::run_plan(ctx, plan, &label).await?;
    let (holds, verdict) = judge(&fanout);
    Ok(SlowReaderReport {
        holds,
        verdict,
        fanout,
    })
}

/// Whether the run shows what slowreader checks, and what failed.
fn judge(f: &FanoutReport) -> (bool, Vec<String>) {
    let mut why = Vec::new();
    if f.lost > 0 || f.duplicated > 0 {
        why.push(format!(
            "readers lost {} and got {} duplicated deliveries",
            f.lost, f.duplicated
        ));
    }
    if f.totals.connections_failed > 0 {
        why.push(format!(
            "{} connections failed",
            f.totals.connections_failed
        ));
    }
    if f.messages_sent == 0 {
        why.push("nothing was sent".to_owned());
    }
    match &f.slow {
        None => why.push("no slow clients ran".to_owned()),
        Some(s) => {
            if s.cut_with_bye + s.cut_seen_in_part < s.slow_clients {
                why.push(format!(
                    "{} of {} slow clients were cut for sendq-exceeded ({} closed at all)",
                    s.cut_with_bye + s.cut_seen_in_part,
                    s.slow_clients,
                    s.closed
                ));
            }
            if s.probe_sent == 0 || s.probe_unanswered > 0 || s.probe_answered < s.probe_sent {
                why.push(format!(
                    "probe: {} /users sent, {} answered",
                    s.probe_sent, s.probe_answered
                ));
            }
        }
    }
    (why.is_empty(), why)
}
