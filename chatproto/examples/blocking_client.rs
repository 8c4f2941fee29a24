//! A small blocking chat client on `chatproto`, with std only: the main thread
//! reads the server, a second thread reads stdin.
//!
//! ```text
//! cargo run -p chatproto --example blocking_client -- 127.0.0.1:8080 ann [GROUP]
//! ```
//!
//! It registers as the name given (and exits if the server refuses it), joins
//! the group if one is given, prints every event, answers `PING` through the
//! `Session`, sends each stdin line as the command it spells (`/msg bob hi`,
//! plain text, ...) and exits on `BYE`. At the end of stdin it sends `/quit`.

use std::error::Error;
use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use chatproto::{parse_event, parse_line, Command, Event, LineFramer, Session};

/// The write half and the session, shared by both threads. Every command goes
/// out through `send`, so the session sees each one, in order.
struct Link {
    stream: TcpStream,
    session: Session,
}

impl Link {
    fn send(&mut self, cmd: &Command) -> io::Result<()> {
        self.session.note_sent(cmd);
        self.stream.write_all(&cmd.to_bytes())
    }
}

fn lock(link: &Mutex<Link>) -> MutexGuard<'_, Link> {
    // A thread that panicked while sending left nothing half-changed that matters.
    link.lock().unwrap_or_else(PoisonError::into_inner)
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(name)) = (args.next(), args.next()) else {
        return Err("usage: blocking_client ADDR NAME [GROUP]".into());
    };
    // Checked before connecting: a bad name or group is a usage error.
    let register = Command::nick(&name)?;
    let mut join = args.next().map(|group| Command::join(&group)).transpose()?;

    let mut socket = TcpStream::connect(&addr)?;
    let link = Arc::new(Mutex::new(Link {
        stream: socket.try_clone()?,
        session: Session::new(),
    }));
    lock(&link).send(&register)?;

    // stdin -> server. When stdin ends it says /quit; the server's BYE then
    // ends the main loop, and the process with this thread.
    let typing = Arc::clone(&link);
    thread::spawn(move || -> io::Result<()> {
        for line in io::stdin().lock().lines() {
            match parse_line(&line?) {
                Ok(cmd) => lock(&typing).send(&cmd)?,
                Err(e) => eprintln!("not sent: {e}"),
            }
        }
        lock(&typing).send(&Command::Quit(None))
    });

    // server -> stdout: read, frame, parse, handle.
    let mut framer = LineFramer::for_client();
    let mut buf = [0; 8192];
    loop {
        let n = socket.read(&mut buf)?;
        if n == 0 {
            return Err("the server closed the connection without BYE".into());
        }
        framer.push(&buf[..n]);
        while let Some(line) = framer.next_line() {
            // PROTOCOL.md: skip what cannot be read (a tag from a newer server).
            let event = match line.map(parse_event) {
                Ok(Ok(event)) => event,
                Ok(Err(e)) => {
                    eprintln!("skipped: {e}");
                    continue;
                }
                Err(e) => {
                    eprintln!("skipped: {e}");
                    continue;
                }
            };
            // Display is the wire line; the parser let no control character through.
            println!("{event}");
            let mut link = lock(&link);
            if let Some(reply) = link.session.handle(&event) {
                link.send(&reply)?; // the /pong to a PING
            }
            if let Some(refused) = link.session.take_name_refusal() {
                return Err(format!("{refused} ({})", refused.text()).into());
            }
            if let Event::Welcome(_) = event {
                if let Some(cmd) = join.take() {
                    link.send(&cmd)?;
                }
            }
            if link.session.is_closed() {
                return Ok(());
            }
        }
    }
}
