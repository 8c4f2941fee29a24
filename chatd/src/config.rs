//! Command-line flags ([`Args`]) and the settings the server runs with ([`Config`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;

use crate::store::StoreConfig;
use chatproto::irc::IrcConfig;
use chatproto::server::{AccountsConfig, HistoryConfig, ServerConfig};
use chatproto::{Name, Text, Token};

/// chatd: a chat server for the line protocol in PROTOCOL.md (try `nc localhost 8080`).
///
/// Durations take a unit (`500ms`, `30s`, `2m`, `1h`); sizes take an optional
/// one (`65536`, `64KiB`, `1MiB`). Logs go to stderr; RUST_LOG or --log-level
/// sets the level (default info).
#[derive(FromArgs, Debug)]
pub(crate) struct Args {
    /// Where to listen. (The help text is an attribute because rustdoc would
    /// read the IPv6 address in brackets as a link.)
    #[argh(
        option,
        description = "address to listen on, repeatable (default: 0.0.0.0:8080 and [::]:8080 \
                       where IPv6 is available); port 0 picks a free port"
    )]
    pub(crate) listen: Vec<SocketAddr>,

    /// address to listen on for IRC clients (irssi, weechat, HexChat, bots),
    /// repeatable; none unless given (6667 is IRC's port)
    #[argh(option)]
    pub(crate) irc_listen: Vec<SocketAddr>,

    /// address to listen on for this protocol over TLS, repeatable; needs
    /// --tls-cert and --tls-key, or --tls-self-signed
    #[argh(option)]
    pub(crate) tls_listen: Vec<SocketAddr>,

    /// address to listen on for IRC over TLS, repeatable (6697 is IRC's TLS
    /// port); same certificate as --tls-listen
    #[argh(option)]
    pub(crate) irc_tls_listen: Vec<SocketAddr>,

    /// PEM file with the server's certificate chain, leaf first (e.g.
    /// certbot's fullchain.pem); re-read on SIGHUP
    #[argh(option)]
    pub(crate) tls_cert: Option<PathBuf>,

    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1);
    /// re-read on SIGHUP
    #[argh(option)]
    pub(crate) tls_key: Option<PathBuf>,

    /// without a certificate: make a self-signed one on first start, in
    /// --data-dir (tls-self-signed.crt and .key), reuse it afterwards, and
    /// log its SHA-256 fingerprint for clients to pin
    #[argh(switch)]
    pub(crate) tls_self_signed: bool,

    /// directory for the server's files (the store chatd.redb: accounts,
    /// history, offline messages), created mode 0700 on first start
    /// (default chatd-data, in the working directory)
    #[argh(option, default = "PathBuf::from(\"chatd-data\")")]
    pub(crate) data_dir: PathBuf,

    /// keep accounts, history and offline messages in memory only, lost at
    /// exit (tests, throwaway servers); no store file is touched
    #[argh(switch)]
    pub(crate) ephemeral: bool,

    /// longest a stored write may wait before it is synced to disk: the most
    /// a crash or kill -9 can lose; a clean shutdown or SIGTERM loses nothing
    /// (default 100ms)
    #[argh(
        option,
        default = "Duration::from_millis(100)",
        from_str_fn(parse_duration)
    )]
    pub(crate) store_flush: Duration,

    /// lines of history kept per scope (global, each group); older ones are
    /// deleted; 0 keeps no history at all (/history is unavailable, nothing
    /// is replayed) (default 10000)
    #[argh(option, default = "10_000")]
    pub(crate) history_lines: u64,

    /// days a line of history is kept (default 30)
    #[argh(option, default = "30")]
    pub(crate) history_days: u32,

    /// latest lines of a group replayed on /join, and of the global scope on
    /// registration (default 20)
    #[argh(option, default = "20")]
    pub(crate) history_replay: usize,

    /// private messages kept per offline account until its next login; 0
    /// keeps none (default 100)
    #[argh(option, default = "100")]
    pub(crate) offline_dms: usize,

    /// the server's name, in HELLO and as the IRC server name (default chatd)
    #[argh(option, default = "String::from(\"chatd\")")]
    pub(crate) server_name: String,

    /// the IRC channel that stands for the global scope, starting with & (a
    /// server-local channel), or none (default &global)
    #[argh(option, default = "String::from(\"&global\")")]
    pub(crate) irc_global_channel: String,

    /// a file whose lines IRC clients get as the message of the day (default:
    /// none, answered with 422)
    #[argh(option)]
    pub(crate) motd: Option<PathBuf>,

    /// longest accepted line in bytes, line ending excluded, at most 1MiB;
    /// longer lines get ERR line-too-long and are skipped without being
    /// buffered (default 4096)
    #[argh(
        option,
        default = "chatproto::DEFAULT_MAX_LINE",
        from_str_fn(parse_size)
    )]
    pub(crate) max_line: usize,

    /// most connections at once, lowered at start if the descriptor limit
    /// cannot hold them; a newcomer past it gets BYE server-full (default 10000)
    #[argh(option, default = "10000")]
    pub(crate) max_clients: usize,

    /// most connections at once from one IP address (an IPv6 address counts
    /// with its --ipv6-prefix), loopback exempt; set it to --max-clients to
    /// turn the per-address limit off (default 64)
    #[argh(option, default = "64")]
    pub(crate) max_per_ip: usize,

    /// leading bits of an IPv6 address that --max-per-ip counts as one
    /// address, 1 to 128: one host usually holds a whole /64 (default 64)
    #[argh(option, default = "64")]
    pub(crate) ipv6_prefix: u8,

    /// apply --max-per-ip to loopback addresses too (for testing the limit)
    #[argh(switch)]
    pub(crate) limit_loopback: bool,

    /// time to send a valid name before BYE register-timeout (default 30s)
    #[argh(
        option,
        default = "Duration::from_secs(30)",
        from_str_fn(parse_duration)
    )]
    pub(crate) register_timeout: Duration,

    /// silence after which a registered client gets a PING (default 60s)
    #[argh(
        option,
        default = "Duration::from_secs(60)",
        from_str_fn(parse_duration)
    )]
    pub(crate) ping_after: Duration,

    /// silence after which a registered client gets BYE ping-timeout
    /// (default 120s)
    #[argh(
        option,
        default = "Duration::from_secs(120)",
        from_str_fn(parse_duration)
    )]
    pub(crate) idle_timeout: Duration,

    /// bytes queued for one client before it is cut off as a slow consumer
    /// with BYE sendq-exceeded, at least 16KiB (default 1MiB)
    #[argh(option, default = "1 << 20", from_str_fn(parse_size))]
    pub(crate) sendq: usize,

    /// bytes queued for all clients together; past it, a client with a
    /// backlog is cut off like a slow consumer, while one that keeps up is
    /// not; at least --sendq (default 512MiB)
    #[argh(option, default = "512 << 20", from_str_fn(parse_size))]
    pub(crate) sendq_total: usize,

    /// users up to which arrivals and departures are announced to everyone
    /// (JOIN * / PART *); above it only a departure's group hears of it, so a
    /// reconnect storm costs linear, not quadratic, work (default 1000)
    #[argh(option, default = "1000")]
    pub(crate) presence_limit: usize,

    /// lines a client may send at once before pacing starts (default 50)
    #[argh(option, default = "50")]
    pub(crate) flood_burst: u32,

    /// lines per second a client may send after its burst; past it the server
    /// stops reading that client until it may go on, dropping nothing;
    /// 0 turns pacing off (default 20)
    #[argh(option, default = "20")]
    pub(crate) flood_rate: u32,

    /// executor threads (default: the number of cores)
    #[argh(option)]
    pub(crate) threads: Option<usize>,

    /// log filter such as `debug` or `chatd=debug`; overrides RUST_LOG
    /// (default info)
    #[argh(option)]
    pub(crate) log_level: Option<String>,
}

/// Largest `--max-line`: lines are for chatting, and each connection may
/// buffer up to one (a value near `u64::MAX` also overflowed the framer).
pub(crate) const MAX_LINE_CEILING: usize = 1 << 20;

/// Smallest `--sendq`: four lines of the default 4096-byte maximum. Below it
/// a client that reads at all could still be cut off by one burst.
pub(crate) const MIN_SENDQ: usize = 16 << 10;

/// Everything the server needs, checked and with defaults filled in.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Where to listen; `explicit` is false for the built-in defaults, whose
    /// IPv6 half may fail without stopping the server.
    pub(crate) listen: Vec<SocketAddr>,
    pub(crate) listen_explicit: bool,
    pub(crate) max_line: usize,
    pub(crate) max_clients: usize,
    pub(crate) max_per_ip: usize,
    pub(crate) ipv6_prefix: u8,
    pub(crate) limit_loopback: bool,
    pub(crate) sendq: usize,
    pub(crate) sendq_total: usize,
    pub(crate) flood_burst: u32,
    pub(crate) flood_rate: u32,
    pub(crate) threads: usize,
    pub(crate) server: ServerConfig,
    /// Where to listen for IRC, and how IRC connections are told about this
    /// server.
    pub(crate) irc_listen: Vec<SocketAddr>,
    pub(crate) irc: Arc<IrcConfig>,
    /// Where to listen over TLS (this protocol, IRC), and the certificate:
    /// checked and loaded by `tls::TlsSetup`.
    pub(crate) tls_listen: Vec<SocketAddr>,
    pub(crate) irc_tls_listen: Vec<SocketAddr>,
    pub(crate) tls: TlsFlags,
    pub(crate) store: StoreConfig,
}

/// The certificate flags as given; `tls::TlsSetup` checks their combination
/// (its errors exit 2, as the file errors do).
#[derive(Clone, Debug)]
pub(crate) struct TlsFlags {
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) self_signed: bool,
    pub(crate) data_dir: PathBuf,
}

impl Config {
    /// Checks the flags' combinations and fills in defaults.
    pub(crate) fn from_args(args: Args) -> Result<Self, String> {
        if args.max_line == 0 {
            return Err("--max-line must be at least 1".into());
        }
        if args.max_line > MAX_LINE_CEILING {
            return Err(format!(
                "--max-line {} is too large: at most {MAX_LINE_CEILING} (1MiB); a longer \
                 chat line is no chat line, and each connection may buffer one",
                args.max_line
            ));
        }
        if args.sendq < MIN_SENDQ {
            return Err(format!(
                "--sendq {} is too small: at least {MIN_SENDQ} (16KiB), so a few maximal \
                 lines fit; a smaller queue cuts off clients that are merely busy",
                args.sendq
            ));
        }
        if args.sendq_total < args.sendq {
            return Err(format!(
                "--sendq-total {} is smaller than --sendq {}: one client's queue must fit",
                args.sendq_total, args.sendq
            ));
        }
        if args.max_per_ip == 0 {
            return Err(
                "--max-per-ip 0 would refuse everyone; to turn the per-address \
                 limit off, set it to --max-clients"
                    .into(),
            );
        }
        if !(1..=128).contains(&args.ipv6_prefix) {
            return Err(format!(
                "--ipv6-prefix {} is out of range: 1 to 128 bits (128 counts each \
                 IPv6 address on its own)",
                args.ipv6_prefix
            ));
        }
        if args.max_clients == 0 {
            return Err("--max-clients must be at least 1".into());
        }
        if args.ping_after >= args.idle_timeout {
            return Err(format!(
                "--ping-after ({:?}) must be shorter than --idle-timeout ({:?})",
                args.ping_after, args.idle_timeout
            ));
        }
        let threads = match args.threads {
            Some(0) => return Err("--threads must be at least 1".into()),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let listen_explicit = !args.listen.is_empty();
        let listen = if listen_explicit {
            args.listen
        } else {
            vec![
                SocketAddr::from(([0, 0, 0, 0], 8080)),
                SocketAddr::from(([0u16; 8], 8080)),
            ]
        };
        let server_name = Token::try_from(args.server_name.as_str())
            .ok()
            .filter(|_| Name::try_from(args.server_name.as_str()).is_ok())
            .ok_or_else(|| {
                format!(
                    "--server-name {:?}: 1 to 32 of A-Z a-z 0-9 _ - (it is also the IRC server name)",
                    args.server_name
                )
            })?;
        let global_channel = match args.irc_global_channel.as_str() {
            "none" => None,
            c if c.len() >= 2
                && c.starts_with('&')
                && c.len() <= 50
                && c[1..].chars().all(|ch| ch.is_ascii_graphic() && ch != ',') =>
            {
                Some(c.to_owned())
            }
            c => {
                return Err(format!(
                    "--irc-global-channel {c:?}: & and 1 to 49 visible characters without a comma, or none"
                ))
            }
        };
        let motd = match &args.motd {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--motd {}: {e}", path.display()))?;
                // Control characters would end an IRC line early or smuggle one.
                Some(text.lines().map(|l| Text::lossy(l).to_string()).collect())
            }
        };
        if args.history_days == 0 {
            return Err(
                "--history-days must be at least 1 (--history-lines 0 keeps no history)".into(),
            );
        }
        if args.store_flush.is_zero() || args.store_flush > Duration::from_secs(60) {
            return Err(format!(
                "--store-flush {:?}: 1ms to 60s (it bounds what a crash loses)",
                args.store_flush
            ));
        }
        let mut irc = IrcConfig::default();
        // SASL PLAIN, PASS and NickServ map onto the native account commands.
        irc.accounts = true;
        irc.server_name = server_name.to_string();
        irc.network = server_name.to_string();
        irc.global_channel = global_channel;
        irc.motd = motd;
        let mut server = ServerConfig::default();
        server.server_name = server_name;
        server.register_timeout = args.register_timeout;
        server.ping_after = args.ping_after;
        server.idle_timeout = args.idle_timeout;
        server.presence_limit = args.presence_limit;
        let mut accounts = AccountsConfig::default();
        accounts.offline_dms = args.offline_dms;
        server.accounts = Some(accounts);
        if args.history_lines > 0 {
            let mut history = HistoryConfig::default();
            // The ring never holds more than the store keeps.
            history.replay = args
                .history_replay
                .min(usize::try_from(args.history_lines).unwrap_or(usize::MAX));
            server.history = Some(history);
        }
        let store = StoreConfig {
            dir: (!args.ephemeral).then(|| args.data_dir.clone()),
            flush: args.store_flush,
            history_lines: args.history_lines,
            history_days: args.history_days,
            replay: server.history.as_ref().map_or(0, |h| h.replay),
        };
        Ok(Self {
            listen,
            listen_explicit,
            max_line: args.max_line,
            max_clients: args.max_clients,
            max_per_ip: args.max_per_ip,
            ipv6_prefix: args.ipv6_prefix,
            limit_loopback: args.limit_loopback,
            sendq: args.sendq,
            sendq_total: args.sendq_total,
            flood_burst: args.flood_burst,
            flood_rate: args.flood_rate,
            threads,
            server,
            irc_listen: args.irc_listen,
            irc: Arc::new(irc),
            tls_listen: args.tls_listen,
            irc_tls_listen: args.irc_tls_listen,
            tls: TlsFlags {
                cert: args.tls_cert,
                key: args.tls_key,
                self_signed: args.tls_self_signed,
                data_dir: args.data_dir,
            },
            store,
        })
    }
}

/// Splits `12ms` into (12, "ms").
fn number_and_unit(s: &str) -> Result<(u64, &str), String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = s[..digits]
        .parse::<u64>()
        .map_err(|_| format!("{s:?} does not start with a whole number"))?;
    let unit = s[digits..].trim_start();
    if unit.starts_with('.') {
        return Err(format!("{s:?}: whole numbers only (use a smaller unit)"));
    }
    Ok((n, unit))
}

/// Parses `500ms`, `30s`, `2m`, `1h`. A unit is required so `30` cannot be
/// taken for milliseconds by mistake.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = number_and_unit(s)?;
    let secs = |mul: u64| {
        n.checked_mul(mul)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" | "min" => secs(60),
        "h" => secs(3600),
        "" => Err(format!("{s:?} needs a unit: ms, s, m or h")),
        _ => Err(format!("{s:?} has an unknown unit; use ms, s, m or h")),
    }
}

/// Parses a byte count: `4096`, `64KiB`, `1MiB`, `1GiB` (also `k`/`KB`/`M`/`MB`,
/// read as powers of 1024 too: this is a buffer size, not a disk label).
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let (n, unit) = number_and_unit(s)?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("{s:?} has an unknown unit; use KiB, MiB or GiB")),
    };
    n.checked_mul(1 << shift)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
        for bad in [
            "",
            "30",
            "s",
            "1.5s",
            "-1s",
            "3days",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration(&format!("{}h", u64::MAX)).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2mb"), Ok(2 << 20));
        assert_eq!(parse_size("1k"), Ok(1024));
        for bad in ["", "MiB", "1.5MiB", "1TiB", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_match_the_issue() {
        let args = Args::from_args(&["chatd"], &[]).unwrap();
        let c = Config::from_args(args).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert!(!c.listen_explicit);
        assert_eq!(c.listen[0].port(), 8080);
        assert_eq!(c.max_line, 4096);
        assert_eq!(c.max_clients, 10000);
        assert_eq!(c.max_per_ip, 64);
        assert_eq!(c.sendq, 1 << 20);
        assert_eq!((c.flood_burst, c.flood_rate), (50, 20));
        assert_eq!(c.server.register_timeout, Duration::from_secs(30));
        assert_eq!(c.server.ping_after, Duration::from_secs(60));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(120));
        assert!(c.threads >= 1);
    }

    #[test]
    fn flags_are_parsed_and_checked() {
        let args = Args::from_args(
            &["chatd"],
            &[
                "--listen",
                "127.0.0.1:0",
                "--listen",
                "[::1]:0",
                "--sendq",
                "64KiB",
                "--ping-after",
                "1s",
                "--idle-timeout",
                "2s",
                "--threads",
                "3",
            ],
        )
        .unwrap();
        let c = Config::from_args(args).unwrap();
        assert!(c.listen_explicit);
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.sendq, 65536);
        assert_eq!(c.threads, 3);
        let args =
            Args::from_args(&["chatd"], &["--ping-after", "5s", "--idle-timeout", "5s"]).unwrap();
        assert!(Config::from_args(args).is_err());
        assert!(Args::from_args(&["chatd"], &["--sendq", "lots"]).is_err());
    }

    /// The checked result of `flags`, or the message of the refusal.
    fn check(flags: &[&str]) -> Result<Config, String> {
        Config::from_args(Args::from_args(&["chatd"], flags).map_err(|e| e.output)?)
    }

    #[test]
    fn irc_flags() {
        let c = check(&["--irc-listen", "127.0.0.1:0", "--server-name", "hub"]).unwrap();
        assert_eq!(c.irc_listen.len(), 1);
        assert_eq!(c.server.server_name.as_str(), "hub");
        assert_eq!(c.irc.server_name, "hub");
        assert_eq!(c.irc.global_channel.as_deref(), Some("&global"));
        assert!(
            check(&[]).unwrap().irc_listen.is_empty(),
            "no IRC unless asked"
        );
        let none = check(&["--irc-global-channel", "none"]).unwrap();
        assert_eq!(none.irc.global_channel, None);
        for bad in ["#global", "&", "&a,b", "& x"] {
            let e = check(&["--irc-global-channel", bad]).unwrap_err();
            assert!(e.contains("--irc-global-channel"), "{bad}: {e}");
        }
        for bad in ["a b", "x.y", ""] {
            let e = check(&["--server-name", bad]).unwrap_err();
            assert!(e.contains("--server-name"), "{bad}: {e}");
        }
        let e = check(&["--motd", "/nonexistent/motd"]).unwrap_err();
        assert!(e.contains("--motd /nonexistent/motd"), "{e}");
    }

    #[test]
    fn tls_flags() {
        let c = check(&[]).unwrap();
        assert!(c.tls_listen.is_empty() && c.irc_tls_listen.is_empty());
        assert_eq!(c.tls.data_dir, PathBuf::from("chatd-data"));
        assert!(!c.tls.self_signed && c.tls.cert.is_none());
        let c = check(&[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-listen",
            "[::1]:0",
            "--irc-tls-listen",
            "127.0.0.1:0",
            "--tls-self-signed",
            "--data-dir",
            "/var/lib/chatd",
        ])
        .unwrap();
        assert_eq!((c.tls_listen.len(), c.irc_tls_listen.len()), (2, 1));
        assert!(c.tls.self_signed);
        assert_eq!(c.tls.data_dir, PathBuf::from("/var/lib/chatd"));
    }

    #[test]
    fn max_line_is_at_most_one_mib() {
        assert_eq!(check(&["--max-line", "1MiB"]).unwrap().max_line, 1 << 20);
        // Near u64::MAX the framer's limit + 1 wrapped and every line was refused.
        let max = usize::MAX.to_string();
        for huge in ["1048577", "1GiB", max.as_str()] {
            let e = check(&["--max-line", huge]).unwrap_err();
            assert!(e.contains("--max-line") && e.contains("1MiB"), "{e}");
        }
        assert!(check(&["--max-line", "0"]).is_err());
    }

    #[test]
    fn sendq_must_hold_a_few_lines() {
        assert_eq!(check(&["--sendq", "16KiB"]).unwrap().sendq, 16 << 10);
        for small in ["0", "1", "16383"] {
            let e = check(&["--sendq", small]).unwrap_err();
            assert!(e.contains("--sendq") && e.contains("16KiB"), "{e}");
        }
    }

    #[test]
    fn max_per_ip_zero_is_refused_with_the_way_out() {
        let e = check(&["--max-per-ip", "0"]).unwrap_err();
        assert!(e.contains("--max-clients"), "says how to turn it off: {e}");
        assert_eq!(check(&["--max-per-ip", "1"]).unwrap().max_per_ip, 1);
    }

    #[test]
    fn ipv6_prefix_is_1_to_128() {
        assert_eq!(check(&[]).unwrap().ipv6_prefix, 64);
        assert_eq!(check(&["--ipv6-prefix", "1"]).unwrap().ipv6_prefix, 1);
        assert_eq!(check(&["--ipv6-prefix", "128"]).unwrap().ipv6_prefix, 128);
        let e = check(&["--ipv6-prefix", "0"]).unwrap_err();
        assert!(e.contains("1 to 128"), "{e}");
        assert!(check(&["--ipv6-prefix", "129"]).is_err());
        assert!(
            check(&["--ipv6-prefix", "256"]).is_err(),
            "does not fit in u8"
        );
        assert!(check(&["--ipv6-prefix", "-1"]).is_err());
    }

    #[test]
    fn store_flags() {
        let c = check(&[]).unwrap();
        assert_eq!(c.store.dir, Some(PathBuf::from("chatd-data")));
        assert_eq!(c.store.flush, Duration::from_millis(100));
        assert_eq!((c.store.history_lines, c.store.history_days), (10_000, 30));
        assert_eq!(c.server.accounts.as_ref().map(|a| a.offline_dms), Some(100));
        assert_eq!(c.server.history.as_ref().map(|h| h.replay), Some(20));
        assert!(c.irc.accounts, "IRC listeners offer SASL");

        let c = check(&[
            "--ephemeral",
            "--history-replay",
            "50",
            "--history-lines",
            "30",
        ])
        .unwrap();
        assert_eq!(c.store.dir, None);
        assert_eq!(c.server.history.as_ref().map(|h| h.replay), Some(30));
        assert_eq!(c.store.replay, 30, "no more replayed than kept");
        let c = check(&["--history-lines", "0", "--offline-dms", "0"]).unwrap();
        assert!(c.server.history.is_none());
        assert_eq!(c.server.accounts.as_ref().map(|a| a.offline_dms), Some(0));
        for bad in [
            &["--store-flush", "0ms"][..],
            &["--store-flush", "2m"],
            &["--history-days", "0"],
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }
}
