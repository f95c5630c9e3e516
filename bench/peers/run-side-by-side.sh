#!/usr/bin/env bash
# Holdfast beside a socket.io 4 relay, under one Node.js load generator (socketio/bench.js), in
# the same minutes: ROUNDS times, a fresh Holdfast then a fresh socket.io relay, each driven by
# PAIRS visitor-agent pairs for SECONDS. Prints bench.js's line of each run (with the server's
# peak RSS), then a summary: the mean server CPU per relayed message of each and their ratio,
# msgs/s and p99.
#
# Usage: bench/peers/run-side-by-side.sh [PAIRS=100] [SECONDS=10] [ROUNDS=3]
#   HOLDFAST_BIN  the holdfast binary (default target/release/holdfast of this checkout)
#
# Holdfast runs on a fresh temporary data dir (embedded SQLite), provisioned by
# `holdfast storm provision`: a site, its widget key, and PAIRS agents, online, one per pair
# (adapters/holdfast.js logs each in and lets routing give it its pair's conversation).
set -u -o pipefail

pairs=${1:-100}
seconds=${2:-10}
rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peer="$here/socketio"
bin=${HOLDFAST_BIN:-$root/target/release/holdfast}

die() { echo "run-side-by-side: $*" >&2; exit 1; }

for n in "$pairs" "$seconds" "$rounds"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "PAIRS, SECONDS and ROUNDS must be positive integers (usage: $0 [PAIRS] [SECONDS] [ROUNDS])"
done
[ -x "$bin" ] || die "no holdfast binary at $bin (build it with 'cargo build --release', or set HOLDFAST_BIN)"
command -v node >/dev/null || die "node is not installed"
command -v curl >/dev/null || die "curl is not installed"
if [ ! -d "$peer/node_modules" ]; then
  echo "run-side-by-side: npm install in $peer" >&2
  (cd "$peer" && npm install -q --no-audit --no-fund >&2) || die "npm install failed in $peer"
fi
# 2 sockets per pair in the load generator and in the server.
want=$((2 * pairs + 1024))
[ "$(ulimit -n)" -ge "$want" ] || ulimit -n "$want" 2>/dev/null || die "need $want open files (ulimit -n), have $(ulimit -n)"

work=$(mktemp -d "${TMPDIR:-/tmp}/side-by-side.XXXXXX")
srv=""
stop_server() {
  [ -n "$srv" ] || return 0
  kill "$srv" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$srv" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$srv" 2>/dev/null
  wait "$srv" 2>/dev/null
  srv=""
}
trap 'stop_server; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# Wait until the command $1 succeeds, while the server lives (30 s at most).
wait_up() {
  for _ in $(seq 300); do
    kill -0 "$srv" 2>/dev/null || return 1
    eval "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

peak_rss_mb() { awk '/VmHWM/{print int($2/1024)}' "/proc/$1/status" 2>/dev/null; }

# bench.js against the server $srv; its line, with the server's peak RSS appended, in $out.
measure() { # ADAPTER URL
  local line
  line=$(cd "$peer" && SERVER_PID=$srv node bench.js "$1" "$2" "$pairs" "$seconds") || return 1
  [[ $line == adapter=* ]] || return 1
  out="$line server_peak_rss_mb=$(peak_rss_mb "$srv")"
}

run_holdfast() {
  local data="$work/holdfast-$1" port key log="$work/holdfast-$1.log"
  mkdir -p "$data"
  key=$("$bin" storm provision --agents "$pairs" --data "$data" 2>>"$log" | sed -n 's/.*widget key \([^ ]*\).*/\1/p')
  [ -n "$key" ] || { tail -n 20 "$log" >&2; die "holdfast storm provision gave no widget key"; }
  port=$(free_port)
  RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --data "$data" --max-connections-per-address 0 \
    >>"$log" 2>&1 &
  srv=$!
  wait_up "curl -fsS http://127.0.0.1:$port/readyz" ||
    { tail -n 20 "$log" >&2; die "holdfast did not come up on 127.0.0.1:$port (log above)"; }
  HOLDFAST_WIDGET_KEY=$key measure holdfast "http://127.0.0.1:$port" ||
    { tail -n 20 "$log" >&2; die "bench.js holdfast failed (server log above)"; }
  stop_server
}

run_sio() {
  local port log="$work/sio-$1.log"
  port=$(free_port)
  (cd "$peer" && exec node sio-server.js "$port") >>"$log" 2>&1 &
  srv=$!
  wait_up "grep -q 'sio relay on' '$log'" || { cat "$log" >&2; die "the socket.io relay did not come up on 127.0.0.1:$port"; }
  measure sio "http://127.0.0.1:$port" || { cat "$log" >&2; die "bench.js sio failed"; }
  stop_server
}

echo "run-side-by-side: $pairs pairs, $seconds s, $rounds rounds; holdfast $bin" >&2
lines=()
for r in $(seq "$rounds"); do
  for peer_run in run_holdfast run_sio; do
    out=""
    "$peer_run" "$r"
    echo "round=$r $out"
    lines+=("round=$r $out")
  done
done

printf '%s\n' "${lines[@]}" | awk -v pairs="$pairs" -v seconds="$seconds" -v rounds="$rounds" '
  { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    a = v["adapter"]; n[a]++
    cpu[a] += v["server_cpu_us_per_msg"]; rate[a] += v["msgs_per_s"]; p99[a] += v["p99_ms"]
    dup += v["duplicated"]; if (v["delivered"] + 0 == 0) empty++
    # What persisting costs Holdfast: its SQLite writer and checkpointer threads.
    if (a == "holdfast") { t = split(v["server_threads_us_per_msg"], th, ",")
      for (j = 1; j <= t; j++) { split(th[j], nt, ":"); if (nt[1] ~ /^sqlite-(writer|checkpoi)/) writing += nt[2] } } }
  END {
    if (!n["holdfast"] || !n["sio"]) exit 1
    h = cpu["holdfast"] / n["holdfast"]; s = cpu["sio"] / n["sio"]
    w = writing / n["holdfast"]
    printf "summary pairs=%d seconds=%d rounds=%d holdfast_server_cpu_us_per_msg=%.1f sio_server_cpu_us_per_msg=%.1f cpu_ratio_holdfast_over_sio=%.2f holdfast_writing_us_per_msg=%.1f holdfast_rest_us_per_msg=%.1f rest_ratio_over_sio=%.2f holdfast_msgs_per_s=%.0f sio_msgs_per_s=%.0f holdfast_p99_ms=%.1f sio_p99_ms=%.1f duplicated=%d\n",
      pairs, seconds, rounds, h, s, (s > 0 ? h / s : 0), w, h - w, (s > 0 ? (h - w) / s : 0),
      rate["holdfast"] / n["holdfast"], rate["sio"] / n["sio"], p99["holdfast"] / n["holdfast"], p99["sio"] / n["sio"], dup
    if (dup > 0 || empty > 0) { print "run-side-by-side: duplicated or undelivered messages (see the lines above)" > "/dev/stderr"; exit 2 }
  }' || exit $?
