//! What leaves the state machine: events with their stamp ([`Outgoing`]), and
//! the time a driver hands in ([`Time`]).

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use crate::Event;

/// The current time as the driver tells it: a monotonic instant for timeouts
/// and, optionally, the wall clock for stamping events. The state machine
/// never reads a clock itself.
///
/// An `Instant` converts into a `Time` without a wall clock (events are then
/// stamped with time 0), so `server.handle(Instant::now(), input)` works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time {
    /// For timeouts and pacing.
    pub instant: Instant,
    /// Milliseconds since the Unix epoch, for stamps; 0 if unknown.
    pub unix_ms: u64,
}

impl Time {
    /// A time with both clocks, e.g. `Time::new(Instant::now(), SystemTime::now())`.
    /// A wall clock before 1970 counts as unknown.
    pub fn new(instant: Instant, wall: SystemTime) -> Self {
        let unix_ms = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self { instant, unix_ms }
    }
}

impl From<Instant> for Time {
    fn from(instant: Instant) -> Self {
        Self {
            instant,
            unix_ms: 0,
        }
    }
}

/// One event the server sends, with its stamp, shared (in an `Arc`) by every
/// recipient: a broadcast is one `Outgoing`, not one per recipient, and each
/// encoding of it is made once. [`line`](Self::line) is this protocol's
/// encoding; a driver that speaks another dialect encodes [`event`](Self::event)
/// once per dialect the same way.
///
/// Every event made while handling an input gets the next message id (ids only
/// grow) and that input's wall time, except a `HISTORY` event, which has the
/// id and time of the line it repeats (so one id can be live and replayed in
/// the same input's effects). Constant replies (`HELLO`, the `/help`
/// lines, the presence notice) have id 0 and time 0; cached listings (`USERS`,
/// `GROUPS`) keep the stamp of when they were built.
#[derive(Debug)]
pub struct Outgoing {
    event: Event,
    id: u64,
    unix_ms: u64,
    line: OnceLock<Arc<[u8]>>,
}

impl Outgoing {
    pub(super) fn new(event: Event, id: u64, unix_ms: u64) -> Self {
        Self {
            event,
            id,
            unix_ms,
            line: OnceLock::new(),
        }
    }

    /// The event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The message id: unique per server and increasing (0 for constant replies).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When it happened, in milliseconds since the Unix epoch (0 if the driver
    /// gave no wall clock).
    pub fn unix_ms(&self) -> u64 {
        self.unix_ms
    }

    /// The line in this protocol's encoding, LF-terminated: encoded on first
    /// use, then shared by every caller (and so by every recipient).
    pub fn line(&self) -> &Arc<[u8]> {
        self.line.get_or_init(|| self.event.to_bytes().into())
    }
}

impl PartialEq for Outgoing {
    fn eq(&self, other: &Self) -> bool {
        (self.id, self.unix_ms, &self.event) == (other.id, other.unix_ms, &other.event)
    }
}

impl Eq for Outgoing {}
