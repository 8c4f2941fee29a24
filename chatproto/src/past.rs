//! [`Past`]: a line said earlier (`MSG`, `ME` or `DM`) with its id and time,
//! as replayed in `HISTORY` and as kept by a server's store.

use crate::{parse_event, Event, ParseError, Scope};

/// A line said earlier: a `MSG`, `ME` or `DM` event with the message id and
/// server time it had when it was live. Sent as `HISTORY <id> <time> <line>`
/// ([`Event::History`]); a server's store keeps it as its id, time and line
/// ([`Past::from_stored`] reads it back).
///
/// ```
/// use chatproto::{parse_event, Event, Past};
/// let past = Past::from_stored(42, 1_764_600_000_000, "MSG rust bob hi").unwrap();
/// assert_eq!(past.scope().unwrap().as_str(), "rust");
/// let line = Event::History(past.clone()).to_string();
/// assert_eq!(line, "HISTORY 42 1764600000000 MSG rust bob hi");
/// assert_eq!(parse_event(&line), Ok(Event::History(past)));
/// assert!(Past::from_stored(1, 0, "JOIN rust bob").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Past {
    id: u64,
    unix_ms: u64,
    event: Box<Event>,
}

impl Past {
    /// A past line; gives `event` back unless it is a `MSG`, `ME` or `DM`.
    pub fn new(id: u64, unix_ms: u64, event: Event) -> Result<Self, Event> {
        match event {
            Event::Msg { .. } | Event::Me { .. } | Event::Dm { .. } => Ok(Self {
                id,
                unix_ms,
                event: Box::new(event),
            }),
            other => Err(other),
        }
    }

    /// A past line from what a store kept: its id, its time and its line
    /// (the event's encoding, with or without the LF).
    pub fn from_stored(id: u64, unix_ms: u64, line: &str) -> Result<Self, ParseError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let event = parse_event(line)?;
        Self::new(id, unix_ms, event).map_err(|_| ParseError::MalformedEvent { tag: "HISTORY" })
    }

    /// The message id it had when it was live.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When it was said, in milliseconds since the Unix epoch (0 if the
    /// server did not know).
    pub fn unix_ms(&self) -> u64 {
        self.unix_ms
    }

    /// The `MSG`, `ME` or `DM` event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// Where it was said: the scope of a `MSG` or `ME`; `None` for a `DM`.
    pub fn scope(&self) -> Option<&Scope> {
        match &*self.event {
            Event::Msg { scope, .. } | Event::Me { scope, .. } => Some(scope),
            _ => None,
        }
    }
}
