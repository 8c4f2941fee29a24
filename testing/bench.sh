#!/usr/bin/env bash
# Runs issue 5's performance scenarios and issue 8's attack scenarios with chatload against floorsrv (the
# floor) and chatd, one server at a time, each scenario on a fresh server:
#   floor     floorsrv pinned to CPU 1
#   chatd     chatd pinned to CPU 1 (so it runs one executor thread)
#   chatd-mt  chatd unpinned with its default threads
# The load tester is always pinned to CPU 0. Results: $OUT/<server>.<scenario>.json
# and a summary table at the end (needs jq).
#
# Usage: testing/bench.sh [scenario...]   (default: all, in the order below)
# Scenarios: ttfb200 ttfb5000 sweep fanout100 fanout1000 fanout1000x500 idle10000 slowreader
#   and (issue 8, chatd only; each starts chatd with the flags in chatd_flags_for):
#   storm10000 sendqmem sendqmemping dmflood cascade cascadeloud bigreply
#   and (issue 9, chatd only) fanout1000irc: fanout1000 with every other client
#   speaking IRC to chatd's --irc-listen on $IRC_PORT
#   and (issue 11) ttfb1000 ttfb1000tls fanout1000tls idle10000tls handshakes handshakestls:
#   the *tls ones (chatd only) against chatd's --tls-listen on $TLS_PORT with a
#   P-256 certificate made by openssl in $OUT; chatload's --tls does not verify it
#   (loopback) so that the tester spends no CPU on that; handshakes is the same
#   scenario in plaintext (fresh TCP connections up to HELLO) to compare with
#   and (issue 10, chatd only) the store against --ephemeral:
#   fanout1000x500store fanout1000x500eph ttfb1000store ttfb1000eph: the same load
#     with chatd's store on (its default, in a fresh $OUT/chatd-data) and with $EPHEMERAL
#   replay1000: 1000 clients /join a group holding 20 lines at once (replay1000spread:
#     spread over 2 s); p99 from /join to the last HISTORY line, every replay checked
#   fill1m: FILL_TOTAL (1,000,000) messages through chatd into a fresh store, then
#     RESTARTS (3) restarts of chatd on it timed up to its `listening on` line, and the
#     data directory's size per message: $OUT/chatd.startup1m.json
# Every chatd runs with --data-dir $OUT/chatd-data, emptied before each scenario.
# Environment:
#   SERVERS="floor chatd chatd-mt"  which servers to run
#   DURATION=20        seconds of load per run (slowreader: SLOW_DURATION=60)
#   OUT=target/bench   where results go
#   FLOORSRV=../shared/floorsrv   floorsrv's cargo project
#   PORT=18090 IRC_PORT=$((PORT + 1)) TLS_PORT=$((PORT + 2))   the servers' ports
#                      (IRC: fanout1000irc; TLS: the *tls scenarios)
#   PERF=1             record a cpu-clock profile of each chatd run ($OUT/*.perf.data)
#   EPHEMERAL=--ephemeral  the flag of the *eph scenarios (default: --ephemeral if
#                      `chatd --help` lists it, else nothing: the run then keeps a store too)
#   HISTORY_FLAGS=     more chatd flags for the store scenarios (e.g. --history-replay 20,
#                      --store-flush 100ms)
#   FILL_TOTAL=1000000 FILL_CLIENTS=2000 FILL_FLAGS=   fill1m's messages, clients, and extra
#                      chatload fill options (e.g. "--unpaced" with HISTORY_FLAGS=--flood-rate 0)
#   RESTARTS=3         fill1m's timed restarts
# Every step is bounded: chatload has --timeout, floorsrv --max-runtime, and
# each server is killed after its scenario.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=${SERVERS:-"floor chatd chatd-mt"}
DURATION=${DURATION:-20}
SLOW_DURATION=${SLOW_DURATION:-60}
OUT=${OUT:-target/bench}
FLOORSRV=${FLOORSRV:-../shared/floorsrv}
PORT=${PORT:-18090}
IRC_PORT=${IRC_PORT:-$((PORT + 1))}
TLS_PORT=${TLS_PORT:-$((PORT + 2))}
ALL="ttfb200 ttfb5000 sweep fanout100 fanout1000 fanout1000x500 idle10000 slowreader"
ALL="$ALL storm10000 sendqmem sendqmemping dmflood cascade cascadeloud bigreply"
ALL="$ALL fanout1000irc"
ALL="$ALL ttfb1000 ttfb1000tls fanout1000tls idle10000tls handshakes handshakestls"
ALL="$ALL fanout1000x500store fanout1000x500eph ttfb1000store ttfb1000eph replay1000 replay1000spread fill1m"
SCENARIOS=${*:-$ALL}
mkdir -p "$OUT"
DATA="$OUT/chatd-data"
HISTORY_FLAGS=${HISTORY_FLAGS:-}
FILL_TOTAL=${FILL_TOTAL:-1000000}
FILL_CLIENTS=${FILL_CLIENTS:-2000}
FILL_FLAGS=${FILL_FLAGS:-}
RESTARTS=${RESTARTS:-3}

cargo build --release -p chatd -p chatload
if [[ " $SERVERS " == *" floor "* ]]; then
    cargo build --release --manifest-path "$FLOORSRV/Cargo.toml" --target-dir target/floorsrv
fi
# Private copies: a concurrent cargo run elsewhere in the tree must not swap
# the binaries under a run.
mkdir -p "$OUT/bin"
cp target/release/chatd target/release/chatload "$OUT/bin/"
# The *eph scenarios' flag, working before and after chatd has --ephemeral.
if [[ -z "${EPHEMERAL+set}" ]]; then
    EPHEMERAL=
    if "$OUT/bin/chatd" --help 2>&1 | grep -q -- --ephemeral; then
        EPHEMERAL=--ephemeral
    elif [[ " $SCENARIOS " == *eph\ * ]]; then
        echo "chatd has no --ephemeral yet: the *eph scenarios run with its default" >&2
    fi
fi
[[ " $SERVERS " != *" floor "* ]] || cp target/floorsrv/release/floorsrv "$OUT/bin/"
ulimit -n 20000 2>/dev/null || true
# The certificate the *tls scenarios' chatd serves (P-256, as rcgen and most
# ACME clients make them); made once per $OUT.
if [[ " $SCENARIOS " == *tls* && ! -s "$OUT/tls.key" ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost \
        -keyout "$OUT/tls.key" -out "$OUT/tls.crt" 2>/dev/null
fi

SERVER_PID=
PERF_PID=
stop_server() {
    if [[ -n "$PERF_PID" ]]; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
        PERF_PID=
    fi
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap stop_server EXIT

# chatd flags a scenario needs: no pacing where a flood must fill queues
# within seconds, a small --sendq (which sendqmem and cascade are told) for a
# cascade of kicks.
chatd_flags_for() { # scenario
    case "$1" in
        sendqmem|sendqmemping) echo "--flood-rate 0 --sendq $SENDQ" ;;
        cascade) echo "--flood-rate 0 --sendq 64KiB" ;;
        # Every departure announced to everyone, as before the presence limit:
        # the quadratic cascade the kicker's rounds must keep short.
        cascadeloud) echo "--flood-rate 0 --sendq 64KiB --presence-limit 100000" ;;
        fanout1000irc) echo "--irc-listen 127.0.0.1:$IRC_PORT" ;;
        *tls) echo "--tls-listen 127.0.0.1:$TLS_PORT --tls-cert $OUT/tls.crt --tls-key $OUT/tls.key" ;;
        *eph) echo "$EPHEMERAL" ;;
        *store|replay*|fill*) echo "$HISTORY_FLAGS" ;;
        *) echo "" ;;
    esac
}
SENDQ=${SENDQ:-1MiB}

listening() { # port
    ss -Hltn "sport = :$1" | grep -q .
}

start_server() { # name scenario [keep: reuse $DATA as it is]
    local flags
    flags=$(chatd_flags_for "$2")
    # A fresh data directory for every chatd (a store's files, a run's certificate):
    # never the default chatd-data in the working directory.
    [[ "${3:-}" == keep ]] || rm -rf "$DATA"
    [[ "$1" == floor ]] || flags="--data-dir $DATA $flags"
    case "$1" in
        floor) taskset -c 1 "$OUT/bin/floorsrv" --addr 127.0.0.1 --port "$PORT" --max-runtime 900 \
                   >/dev/null 2>"$OUT/$1.stderr" & ;;
        # shellcheck disable=SC2086 # the flags are meant to split
        chatd) taskset -c 1 "$OUT/bin/chatd" --listen "127.0.0.1:$PORT" --log-level warn $flags \
                   >/dev/null 2>"$OUT/$1.stderr" & ;;
        # shellcheck disable=SC2086
        chatd-mt) "$OUT/bin/chatd" --listen "127.0.0.1:$PORT" --log-level warn $flags \
                   >/dev/null 2>"$OUT/$1.stderr" & ;;
        *) echo "unknown server $1" >&2; exit 2 ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        # With --irc-listen or --tls-listen, that port must be open too.
        if listening "$PORT" && { [[ "$flags" != *--irc-listen* ]] || listening "$IRC_PORT"; } &&
            { [[ "$flags" != *--tls-listen* ]] || listening "$TLS_PORT"; }; then
            if [[ "${PERF:-0}" == 1 && "$1" == chatd* ]]; then
                perf record -F 999 -e cpu-clock -g -p "$SERVER_PID" -o "$OUT/$1.$2.perf.data" \
                    >/dev/null 2>&1 &
                PERF_PID=$!
            fi
            return 0
        fi
        sleep 0.1
    done
    echo "$1 did not listen on $PORT (and $IRC_PORT for IRC, $TLS_PORT for TLS)" >&2
    exit 1
}

args_for() { # scenario
    local d=$DURATION
    case "$1" in
        ttfb200) echo "ttfb -n 200 -r 0.5 -d $d" ;;
        ttfb5000) echo "ttfb -n 5000 -r 0.5 -d $d" ;;
        ttfb1000|ttfb1000tls) echo "ttfb -n 1000 -r 0.5 -d $d" ;;
        sweep) echo "ttfb --sweep 2000:2000:10000 -r 0.5 -d $((d / 4 > 5 ? d / 4 : 5)) --step-pause 5" ;;
        fanout100) echo "fanout -n 100 -s 10 -m 100 -d $d" ;;
        fanout1000) echo "fanout -n 1000 -s 10 -m 20 -d $d" ;;
        # 50 senders at 10 msg/s each stay under chatd's default flood pacing (20/s).
        fanout1000x500) echo "fanout -n 1000 -s 50 -m 500 -d $d" ;;
        fanout1000irc|fanout1000tls) echo "fanout -n 1000 -s 10 -m 20 -d $d" ;;
        idle10000|idle10000tls) echo "idle -n 10000 --pid $SERVER_PID --hold 5" ;;
        # Enough connections in flight to keep one server core busy; 10 s of
        # fresh connections stay within the ephemeral ports (TIME_WAIT is reused
        # on loopback).
        handshakes|handshakestls) echo "handshakes -c 32 -d 10 --pid $SERVER_PID" ;;
        # 40 senders at 5 msg/s of 400 B each: chatd's pacing also charges a token
        # per 250 bytes, so 10/s of 400 B (26 tokens/s) per sender would be paced.
        slowreader) echo "slowreader -n 100 -s 40 -m 200 --size 400 -k 1 -d $SLOW_DURATION" ;;
        storm10000) echo "storm -n 10000 --concurrency 1000 --wait 60" ;;
        sendqmem) echo "sendqmem -k 300 --pid $SERVER_PID --sendq $SENDQ -d $d" ;;
        sendqmemping) echo "sendqmem -k 300 --pid $SERVER_PID --sendq $SENDQ --mode ping -d $d" ;;
        dmflood) echo "dmflood -m 8 -d $d" ;;
        # A ping every millisecond, so the cascade (tens of ms) holds enough samples.
        cascade|cascadeloud) echo "cascade -n 2000 -d 10 --probe-interval-ms 1" ;;
        bigreply) echo "bigreply -u 3000 -d $d" ;;
        fanout1000x500store|fanout1000x500eph) echo "fanout -n 1000 -s 50 -m 500 -d $d" ;;
        ttfb1000store|ttfb1000eph) echo "ttfb -n 1000 -r 0.5 -d $d" ;;
        # 20 lines, chatd's --history-replay default; the filler stays under its pacing.
        replay1000) echo "replay -n 1000 --lines 20 --history-replay 20 --wait 60" ;;
        replay1000spread) echo "replay -n 1000 --lines 20 --history-replay 20 --spread 2 --wait 60" ;;
        # Each client in a group of its own, under chatd's pacing; bounded at 600 s.
        fill1m) echo "fill --total $FILL_TOTAL -c $FILL_CLIENTS -d 600 $FILL_FLAGS" ;;
        *) echo "unknown scenario $1" >&2; exit 2 ;;
    esac
}

# chatload's options before the subcommand a scenario needs.
global_args_for() { # scenario
    case "$1" in
        # Every other client (odd indexes: half the senders and receivers) speaks IRC.
        fanout1000irc) echo "--dialect mix --irc-addr 127.0.0.1:$IRC_PORT" ;;
        *tls) echo "--tls" ;;
        *) echo "" ;;
    esac
}

# After fill1m: chatd stopped (SIGTERM, a clean shutdown), then started RESTARTS
# times on the filled store, each timed from its start to its `listening on` line
# (polled every 10 ms), and the data directory's size divided by the messages taken.
measure_startup() { # server
    local server=$1 taken bytes times=() t0 t1
    taken=$FILL_TOTAL
    if command -v jq >/dev/null && [[ -s "$OUT/$server.fill1m.json" ]]; then
        taken=$(jq -r '.taken' "$OUT/$server.fill1m.json")
    fi
    bytes=$(du -sb "$DATA" | cut -f1)
    for _ in $(seq "$RESTARTS"); do
        local flags
        flags="--data-dir $DATA $(chatd_flags_for fill1m)"
        t0=$(date +%s%N)
        # shellcheck disable=SC2086
        "$OUT/bin/chatd" --listen "127.0.0.1:$PORT" --log-level info $flags \
            >"$OUT/$server.startup.out" 2>"$OUT/$server.startup.stderr" &
        SERVER_PID=$!
        t1=
        for _ in $(seq 6000); do # at most about 60 s
            if grep -q '^listening on' "$OUT/$server.startup.out"; then
                t1=$(date +%s%N)
                break
            fi
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.01
        done
        stop_server
        [[ -n "$t1" ]] || { echo "   (chatd did not start on the filled store)" >&2; break; }
        times+=("$(( (t1 - t0) / 1000000 ))")
    done
    local list
    list=$(IFS=,; echo "${times[*]}")
    printf '{"messages":%s,"data_bytes":%s,"bytes_per_message":%s,"shutdown_after_fill_ms":%s,"startup_ms":[%s]}\n' \
        "$taken" "$bytes" "$(( taken > 0 ? bytes / taken : 0 ))" "$STOP_MS" "$list" \
        >"$OUT/$server.startup1m.json"
    echo "   startup on $taken messages: ${list} ms; $bytes bytes in $DATA; shutdown after the fill $STOP_MS ms" >&2
}

for scenario in $SCENARIOS; do
    for server in $SERVERS; do
        if [[ "$server" == floor && "$scenario" =~ (store|eph|replay|fill) ]]; then
            echo "== $server $scenario: skipped (floorsrv keeps no store)" >&2
            continue
        fi
        if [[ "$scenario" == *irc && "$server" == floor ]]; then
            echo "== $server $scenario: skipped (floorsrv speaks no IRC)" >&2
            continue
        fi
        if [[ "$scenario" == *tls && "$server" == floor ]]; then
            echo "== $server $scenario: skipped (floorsrv speaks no TLS)" >&2
            continue
        fi
        port=$PORT
        [[ "$scenario" != *tls ]] || port=$TLS_PORT
        start_server "$server" "$scenario"
        echo "== $server $scenario: chatload $(global_args_for "$scenario") $(args_for "$scenario")" >&2
        # shellcheck disable=SC2046 # the arguments are meant to split
        taskset -c 0 "$OUT/bin/chatload" --addr "127.0.0.1:$port" --json --timeout 900 \
            $(global_args_for "$scenario") $(args_for "$scenario") \
            >"$OUT/$server.$scenario.json" || echo "   (chatload failed)" >&2
        # After a fill, the SIGTERM's wait is the store writer's backlog being
        # written (chatload counts a line as taken once chatd has handled it).
        stop_at=$(date +%s%N)
        stop_server
        STOP_MS=$(( ($(date +%s%N) - stop_at) / 1000000 ))
        [[ "$scenario" != fill1m ]] || measure_startup "$server"
        sleep 2 # let TIME_WAIT and the kernel settle between runs
    done
done

command -v jq >/dev/null || { echo "results in $OUT (install jq for the summary)"; exit 0; }

metric() { # scenario file
    local f=$2
    [[ -s "$f" ]] || { echo "-"; return; }
    case "$1" in
        ttfb200) jq -r '"p50 \(.ttfb.p50_ms) p99 \(.ttfb.p99_ms) ms"' "$f" ;;
        ttfb1000*) jq -r '"p50 \(.ttfb.p50_ms) p99 \(.ttfb.p99_ms) ms, \(.responses)/\(.requests_sent) answered; connect\(if .tls then "+handshake" else "" end) p50 \(.connect.p50_ms) p99 \(.connect.p99_ms) ms"' "$f" ;;
        ttfb5000) jq -r '"\(if .requests_sent > 0 then (100 * .responses / .requests_sent | floor) else 0 end)% answered, p99 \(.ttfb.p99_ms) ms, \(.connections_failed) failed"' "$f" ;;
        sweep) jq -r '"peak \(.peak_stable_clients // "none"); last: \(.steps[-1].clients) clients p50 \(.steps[-1].ttfb.p50_ms) p99 \(.steps[-1].ttfb.p99_ms) ms \(.steps[-1].verdict)"' "$f" ;;
        fanout*) jq -r '"lost \(.lost) dup \(.duplicated), \(.deliveries_per_s | floor)/s, p50 \(.latency.p50_ms) p99 \(.latency.p99_ms) max \(.latency.max_ms) ms"' "$f" ;;
        idle10000*) jq -r '"\(.bytes_per_connection | floor) B/conn (\(.connections_ok) ok)"' "$f" ;;
        storm10000) jq -r '"\(.registered)/\(.clients) registered, all after \(.all_registered_s // "never") s, p50 \(.registration.p50_ms) p99 \(.registration.p99_ms) max \(.registration.max_ms) ms"' "$f" ;;
        sendqmem*) jq -r '"\(.peak_bytes_per_slow_client | floor) B per slow client = \(.ratio_to_sendq * 100 | floor / 100) x sendq, \(.cut)/\(.slow_clients) cut"' "$f" ;;
        dmflood) jq -r '"victim \(if .victim_cut then "cut after \(.cut_after_s) s (\(.cut_seen_as | join(", ")))" else "survived" end), \(.victim_bytes_per_s | floor) B/s, \(.dms_delivered) DMs"' "$f" ;;
        cascade*) jq -r '"\(.cut)/\(.clients) cut, probe p50 \(.probe_rtt.p50_ms) p99 \(.probe_rtt.p99_ms) max \(.probe_rtt.max_ms) ms (\(.pings_answered)/\(.pings_sent)); during the cascade (\(.pings_during_cascade) pings): p50 \(.probe_rtt_cascade.p50_ms) p99 \(.probe_rtt_cascade.p99_ms) max \(.probe_rtt_cascade.max_ms) ms"' "$f" ;;
        handshakes*) jq -r '"\(.per_second | floor)/s (\(.failed) failed), \(.per_server_cpu_s // 0 | floor) per server CPU s, chatload CPU \(.client_cpu_s) s of \(.duration_s | floor), p50 \(.handshake.p50_ms) p99 \(.handshake.p99_ms) ms"' "$f" ;;
        bigreply) jq -r '"\(.bytes_per_s | floor) B/s, \(.replies_per_s | floor) replies/s"' "$f" ;;
        replay*) jq -r '"/join to last HISTORY p50 \(.to_last_history.p50_ms) p99 \(.to_last_history.p99_ms) max \(.to_last_history.max_ms) ms; to REPLAYED p99 \(.to_replayed.p99_ms) ms; \(.replayed)/\(.joined) replayed, \(.clients_with_errors) with errors"' "$f" ;;
        fill1m) jq -r '"\(.taken)/\(.total_asked) taken in \(.duration_s | floor) s, \(.messages_per_s | floor)/s; " + (input | "startup \(.startup_ms | map(tostring) | join(", ")) ms, \(.bytes_per_message) B/message, shutdown after the fill \(.shutdown_after_fill_ms) ms")' "$f" "${f%fill1m.json}startup1m.json" 2>/dev/null || jq -r '"\(.taken) taken"' "$f" ;;
        slowreader) jq -r '"holds \(.holds): lost \(.lost), cut \(.slow.cut_with_bye + .slow.cut_seen_in_part)/\(.slow.slow_clients) at \(.slow.parts_seen | map(.[1]) | tostring) s, probe \(.slow.probe_answered)/\(.slow.probe_sent), p99 \(.latency.p99_ms) ms"' "$f" ;;
    esac
}

echo
echo "| scenario | $(echo "$SERVERS" | sed 's/ / | /g') |"
echo "|---|$(for _ in $SERVERS; do printf -- '---|'; done)"
for scenario in $SCENARIOS; do
    row="| $scenario |"
    for server in $SERVERS; do
        row="$row $(metric "$scenario" "$OUT/$server.$scenario.json") |"
    done
    echo "$row"
done
