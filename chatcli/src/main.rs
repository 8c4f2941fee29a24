//! `chatcli`: a terminal client for the chat line protocol (PROTOCOL.md).
//!
//! On a terminal: a prompt with line editing, incoming lines printed above it.
//! On a pipe: each input line is sent, each event printed as one plain line, so
//! `printf 'alice\nhello\n/quit\n' | chatcli` works in scripts.
//!
//! Exit status: 0 when the person leaves (`/quit`, Ctrl+C, Ctrl+D, end of
//! input, SIGTERM), 1 when the server cannot be reached or goes away, 2 for bad
//! arguments.

#![forbid(unsafe_code)]

mod app;
mod complete;
mod editor;
mod fullscreen;
mod fullui;
mod input;
mod keys;
mod linescreen;
mod net;
mod render;
mod roster;
mod sanitize;
mod terminal;
mod tls;
mod views;

use std::process::ExitCode;

use argh::FromArgs;
use chatproto::Name;

/// Terminal client for the chat server.
#[derive(FromArgs, Debug)]
struct Args {
    /// server host name or address (default 127.0.0.1)
    #[argh(option)]
    host: Option<String>,
    /// server port (default 8080)
    #[argh(option)]
    port: Option<u16>,
    /// your name (1-32 of A-Z a-z 0-9 _ -); without it the client asks
    #[argh(option)]
    name: Option<String>,
    /// no colours (also off when NO_COLOR is set or output is not a terminal)
    #[argh(switch)]
    no_color: bool,
    /// the line mode on a terminal: a prompt at the bottom, lines scrolling up
    /// (the full-screen mode is the default on a terminal)
    #[argh(switch)]
    plain: bool,
    /// full-screen mode: no bell for a mention or private message in a view
    /// that is not in front
    #[argh(switch)]
    no_bell: bool,
    /// full-screen mode: show in the window title how many views have a
    /// mention or private message waiting
    #[argh(switch)]
    title: bool,
    /// when the connection is lost, exit (status 1) instead of reconnecting
    #[argh(switch)]
    no_reconnect: bool,
    /// reconnect when the connection is lost (the default; kept for old scripts)
    #[argh(switch)]
    reconnect: bool,
    /// seconds of silence from the server before the client asks for a sign of
    /// life, and again before it gives the connection up (default 60)
    #[argh(option, default = "60")]
    keepalive: u64,
    /// server address as HOST:PORT or HOST, instead of --host and --port
    #[argh(positional)]
    addr: Option<String>,
}

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 8080;

/// `host:port` to connect to, from the flags.
fn address(args: &Args) -> Result<String, String> {
    let join = |host: &str, port: u16| {
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}") // a bare IPv6 address
        } else {
            format!("{host}:{port}")
        }
    };
    match &args.addr {
        Some(_) if args.host.is_some() || args.port.is_some() => {
            Err("give either ADDR or --host/--port, not both".to_owned())
        }
        Some(addr) if addr.parse::<std::net::SocketAddr>().is_ok() => Ok(addr.clone()),
        Some(addr) => match addr.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
                let port: u16 = port.parse().map_err(|_| format!("bad port in {addr:?}"))?;
                Ok(join(host, port))
            }
            _ => Ok(join(addr, DEFAULT_PORT)),
        },
        None => Ok(join(
            args.host.as_deref().unwrap_or(DEFAULT_HOST),
            args.port.unwrap_or(DEFAULT_PORT),
        )),
    }
}

/// Colours unless asked not to (flag or `NO_COLOR`, see no-color.org) or
/// printing to something that is not a terminal.
fn want_colour(no_color_flag: bool) -> bool {
    use std::io::IsTerminal;
    let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color_flag
        && !no_color_env
        && std::io::stdout().is_terminal()
        && std::io::stdin().is_terminal()
}

/// The flags, or the exit status to leave with: 0 after `--help`, 2 for
/// anything argh refuses (an unknown flag, `--port abc`, `--port 99999`), as for
/// the client's own checks; 1 stays for a server that cannot be reached.
fn parse_args(argv: &[String]) -> Result<Args, ExitCode> {
    let command = argv.first().map_or("chatcli", String::as_str);
    let rest: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    Args::from_args(&[command], &rest).map_err(|early| {
        if early.status.is_ok() {
            println!("{}", early.output);
            ExitCode::SUCCESS
        } else {
            eprintln!("{}", early.output.trim_end());
            eprintln!("Run {command} --help for more information.");
            ExitCode::from(2)
        }
    })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let args = match parse_args(&argv) {
        Ok(args) => args,
        Err(status) => return status,
    };
    if args.keepalive == 0 {
        eprintln!("chatcli: --keepalive: must be at least 1 second");
        return ExitCode::from(2);
    }
    if args.reconnect && args.no_reconnect {
        eprintln!("chatcli: give either --reconnect or --no-reconnect, not both");
        return ExitCode::from(2);
    }
    let addr = match address(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chatcli: {e}");
            return ExitCode::from(2);
        }
    };
    let name = match args.name.as_deref().map(Name::try_from).transpose() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("chatcli: --name: {e}");
            return ExitCode::from(2);
        }
    };
    // SIGINT (outside raw mode), SIGTERM and SIGHUP: leave through /quit so the
    // terminal is restored and the server hears a goodbye.
    let (sig_tx, sig_rx) = async_channel::bounded(1);
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = sig_tx.try_send(());
    }) {
        eprintln!("chatcli: no signal handler ({e}); Ctrl+C will not say goodbye");
    }
    let opts = app::Options {
        addr,
        name,
        colour: want_colour(args.no_color),
        reconnect: !args.no_reconnect,
        full_screen: !args.plain,
        alerts: fullui::Alerts {
            bell: !args.no_bell,
            title: args.title,
        },
        keepalive: std::time::Duration::from_secs(args.keepalive),
    };
    match smol::block_on(app::run(opts, sig_rx)) {
        app::Exit::Quit => ExitCode::SUCCESS,
        app::Exit::Lost => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> Args {
        Args::from_args(&["chatcli"], argv).unwrap()
    }

    #[test]
    fn addresses_from_flags() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "127.0.0.1:8080"),
            (&["--port", "9000"], "127.0.0.1:9000"),
            (&["--host", "example.test"], "example.test:8080"),
            (&["--host", "::1", "--port", "1"], "[::1]:1"),
            (&["localhost:7000"], "localhost:7000"),
            (&["localhost"], "localhost:8080"),
            (&["[::1]:7000"], "[::1]:7000"),
            (&["::1"], "[::1]:8080"),
            (&["10.1.2.3:5"], "10.1.2.3:5"),
        ];
        for (argv, want) in cases {
            assert_eq!(address(&args(argv)).as_deref(), Ok(*want), "{argv:?}");
        }
        assert!(address(&args(&["x:1", "--port", "2"])).is_err());
        assert!(address(&args(&["x:notaport"])).is_err());
    }

    #[test]
    fn bad_flags_exit_2_and_help_exits_0() {
        let argv = |a: &[&str]| -> Vec<String> {
            std::iter::once("chatcli")
                .chain(a.iter().copied())
                .map(str::to_owned)
                .collect()
        };
        for bad in [
            &["--port", "99999"][..],
            &["--port", "abc"],
            &["--bogus"],
            &["--name"],
        ] {
            assert_eq!(
                parse_args(&argv(bad)).unwrap_err(),
                ExitCode::from(2),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_args(&argv(&["--help"])).unwrap_err(),
            ExitCode::SUCCESS
        );
        assert!(parse_args(&argv(&["--port", "9000"])).is_ok());
    }
}
