//! Bounds the log that connection attempts write. Every connect, refusal,
//! registration and close is worth a line at `info`, but a script that
//! connects in a loop would otherwise grow the log by ~100 bytes per attempt
//! without end. [`LogLimit`] lets a few such lines through per second; the
//! rest go out at `debug` only and are counted, and the count is logged once a
//! second ([`report_suppressed`]).
//!
//! [`install`] applies [`CONNECTION_EVENTS`] to every `info` line from the
//! per-connection modules ([`CONNECTION_TARGETS`]), so their log calls need no
//! change. Other code can use a [`LogLimit`] of its own directly.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use log::{Level, Log, Metadata, Record, SetLoggerError};

/// Per-connection `info` lines let through per second, across all connections.
pub(crate) const CONNECTION_LINES_PER_SECOND: u32 = 20;

/// Modules whose `info` lines are per-connection events (connected, closed,
/// refused, registered, slow consumer), so a client can cause them at will.
/// Warnings and errors from these modules are never limited.
pub(crate) const CONNECTION_TARGETS: [&str; 3] =
    ["chatd::conn", "chatd::listener", "chatd::shared"];

/// The shared budget for per-connection `info` lines.
pub(crate) static CONNECTION_EVENTS: LogLimit =
    LogLimit::new(CONNECTION_LINES_PER_SECOND, Duration::from_secs(1));

/// At most `per_window` lines per `window` (a fixed window that starts with
/// its first line); counts the lines refused until [`LogLimit::take_suppressed`].
/// The time is passed in, so tests need no clock.
#[derive(Debug)]
pub(crate) struct LogLimit {
    per_window: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Start of the current window; `None` before the first line.
    window_start: Option<Instant>,
    /// Lines allowed in the current window.
    allowed: u32,
    /// Lines refused since the last report, and when the first of them was.
    suppressed: u64,
    suppressed_since: Option<Instant>,
}

impl LogLimit {
    pub(crate) const fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window,
            window,
            state: Mutex::new(State {
                window_start: None,
                allowed: 0,
                suppressed: 0,
                suppressed_since: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing below can panic while holding the lock; the counts stay usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether one more line may be logged at `now`. A refused line is counted.
    pub(crate) fn allow(&self, now: Instant) -> bool {
        let mut s = self.state();
        let expired = s
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            s.window_start = Some(now);
            s.allowed = 0;
        }
        if s.allowed < self.per_window {
            s.allowed += 1;
            return true;
        }
        if s.suppressed == 0 {
            s.suppressed_since = Some(now);
        }
        s.suppressed = s.suppressed.saturating_add(1);
        false
    }

    /// The lines refused since the last call and how long ago the first of
    /// them was, or `None` if there were none. Resets the count.
    pub(crate) fn take_suppressed(&self, now: Instant) -> Option<(u64, Duration)> {
        let mut s = self.state();
        let n = std::mem::take(&mut s.suppressed);
        let since = s.suppressed_since.take()?;
        (n > 0).then(|| (n, now.saturating_duration_since(since)))
    }
}

/// Logs how many per-connection lines [`CONNECTION_EVENTS`] held back since
/// the last call. Called about once a second by main's ticker.
pub(crate) fn report_suppressed(now: Instant) {
    if let Some((n, over)) = CONNECTION_EVENTS.take_suppressed(now) {
        // At least the one second the window lasts: the first refused line
        // was counted up to a second before the ticker fired.
        let secs = over.as_secs_f64().max(1.0);
        log::info!(
            "{n} connection events not logged in the last {secs:.0}s \
             (over {CONNECTION_LINES_PER_SECOND}/s; --log-level debug shows them)"
        );
    }
}

/// Installs `inner` as the logger, with [`CONNECTION_EVENTS`] applied to the
/// `info` lines of [`CONNECTION_TARGETS`].
pub(crate) fn install(inner: env_logger::Logger) -> Result<(), SetLoggerError> {
    let max = inner.filter();
    log::set_boxed_logger(Box::new(Limited { inner }))?;
    log::set_max_level(max);
    Ok(())
}

/// Passes records to `inner`, turning the per-connection `info` lines past the
/// limit into `debug` lines (shown only when debug is enabled).
struct Limited {
    inner: env_logger::Logger,
}

fn is_connection_target(target: &str) -> bool {
    CONNECTION_TARGETS.contains(&target)
}

impl Log for Limited {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if record.level() != Level::Info
            || !is_connection_target(record.target())
            || !self.inner.enabled(record.metadata())
            || CONNECTION_EVENTS.allow(Instant::now())
        {
            self.inner.log(record);
            return;
        }
        let demoted = Record::builder()
            .args(*record.args())
            .level(Level::Debug)
            .target(record.target())
            .module_path(record.module_path())
            .file(record.file())
            .line(record.line())
            .build();
        self.inner.log(&demoted);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn lets_n_through_per_window_and_counts_the_rest() {
        let limit = LogLimit::new(3, SEC);
        let t0 = Instant::now();
        let allowed = (0..10)
            .filter(|i| limit.allow(t0 + Duration::from_millis(i * 10)))
            .count();
        assert_eq!(allowed, 3);
        let (n, over) = limit.take_suppressed(t0 + SEC).unwrap();
        assert_eq!(n, 7);
        // Counted from the first refused line (the fourth, at 30 ms).
        assert_eq!(over, Duration::from_millis(970));
        assert_eq!(limit.take_suppressed(t0 + SEC), None, "the count resets");
    }

    #[test]
    fn a_new_window_lets_lines_through_again() {
        let limit = LogLimit::new(2, SEC);
        let t0 = Instant::now();
        assert!(limit.allow(t0));
        assert!(limit.allow(t0));
        assert!(!limit.allow(t0 + Duration::from_millis(999)));
        assert!(limit.allow(t0 + SEC));
        assert!(limit.allow(t0 + SEC));
        assert!(!limit.allow(t0 + SEC));
        // Suppressed lines of both windows add up until taken.
        assert_eq!(limit.take_suppressed(t0 + SEC).map(|(n, _)| n), Some(2));
    }

    #[test]
    fn a_steady_flood_is_bounded() {
        // 1000 events a second for 10 s: 20 a second get through.
        let limit = LogLimit::new(20, SEC);
        let t0 = Instant::now();
        let mut allowed = 0;
        let mut reported = 0;
        for ms in 0..10_000u64 {
            let now = t0 + Duration::from_millis(ms);
            allowed += u64::from(limit.allow(now));
            if ms % 1000 == 999 {
                reported += limit.take_suppressed(now).map_or(0, |(n, _)| n);
            }
        }
        assert_eq!(allowed, 200);
        assert_eq!(allowed + reported, 10_000, "every event logged or counted");
    }

    #[test]
    fn nothing_to_report_when_quiet() {
        let limit = LogLimit::new(5, SEC);
        assert_eq!(limit.take_suppressed(Instant::now()), None);
        assert!(limit.allow(Instant::now()));
        assert_eq!(limit.take_suppressed(Instant::now()), None);
    }

    #[test]
    fn only_per_connection_modules_are_limited() {
        assert!(is_connection_target("chatd::conn"));
        assert!(is_connection_target("chatd::shared"));
        assert!(is_connection_target("chatd::listener"));
        assert!(!is_connection_target("chatd"));
        assert!(!is_connection_target("chatd::log_limit"));
    }
}
